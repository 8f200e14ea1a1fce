"""Corpus to chunks: the public entry points that chain reading, cleaning, filtering and chunking.

    documents = iter_documents(paths, config, drops)          # read, clean, filter, dedupe
    chunks = document_chunks(document, config, segmenter)     # segment, tokenize, cut
    for document, chunks in corpus_to_chunks(paths, config, drops): ...   # all of it + decontamination

Everything streams: one document is in memory at a time (plus the set of seen content hashes).
"""
from __future__ import annotations

import fnmatch
import functools
import hashlib
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer

from linkscan.pipeline.chunking import chunk_spans
from linkscan.pipeline.clean import clean_text, html_to_text, looks_like_html
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.decontaminate import NgramIndex, index_cache_key
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.language import detect_language
from linkscan.pipeline.readers import FORMATS, format_of, read_documents
from linkscan.pipeline.segment import Segmenter
from linkscan.pipeline.sharding import InputPiece
from linkscan.pipeline.store import file_sha256
from linkscan.pipeline.tokenize import load_tokenizer
from linkscan.schemas import Chunk, Document

log = logging.getLogger("linkscan")

_GLOB_CHARS = frozenset("*?[")


def list_inputs(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Input files from files, folders (searched recursively for supported formats) and globs; sorted.

    Each real file is listed once, however many paths or symbolic links reach it (by its resolved
    path), symbolic-link loops end, and a name that is a file is taken as it is, even when it
    holds glob characters (``doc[1].jsonl``). Hidden files and folders are skipped. Every path
    given must exist, every folder hold a corpus file and every pattern match one: a typo raises
    ValueError naming it, instead of a run that reads nothing.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    items = [str(item) for item in paths]
    if not items:
        raise ValueError(f"no corpus given; give files, folders or globs of {', '.join(FORMATS)}")
    found: dict[str, Path] = {}
    for text in items:
        path = Path(text).expanduser()
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = [f for f in _walk_files(path) if format_of(f) is not None]
            if not candidates:
                raise ValueError(f"{text}: the folder holds no corpus files ({', '.join(FORMATS)})")
        elif _GLOB_CHARS & set(text):
            candidates = _glob_files(text)
            if not candidates:
                raise ValueError(f"{text}: no files match this pattern")
        else:
            raise ValueError(f"{text}: no such file or folder (check the corpus path)")
        for candidate in sorted(candidates):
            found.setdefault(os.path.realpath(candidate), candidate)
    return sorted(found.values())


def _walk_files(folder: Path) -> Iterator[Path]:
    """Every non-hidden file under ``folder``, following symbolic links, each folder entered once."""
    seen: set[tuple[int, int]] = set()
    for current, dirnames, filenames in os.walk(folder, followlinks=True):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(current) / name
            if not name.startswith(".") and path.is_file():
                yield path


def _glob_files(pattern: str) -> list[Path]:
    """The files a glob matches (``*``, ``?``, ``[...]`` within a name, ``**`` across folders), with
    glob's rule that wildcards skip hidden names; ``**`` enters each real folder once, so
    symbolic-link loops end."""
    parts = Path(pattern).expanduser().parts
    literal = next((i for i, part in enumerate(parts) if _GLOB_CHARS & set(part)), len(parts))
    root = Path(*parts[:literal]) if literal else Path(".")
    matches: list[Path] = []
    expanded: set[tuple[tuple[int, int], tuple[str, ...]]] = set()

    def visit(folder: Path, rest: tuple[str, ...]) -> None:
        try:
            stat = folder.stat()
        except OSError:
            return
        state = ((stat.st_dev, stat.st_ino), rest)
        if state in expanded:  # this real folder was matched against this pattern tail already
            return
        expanded.add(state)
        head, tail = rest[0], rest[1:]
        if head == "**":
            if tail:
                visit(folder, tail)
            for child in _children(folder, head):
                if child.is_dir():
                    visit(child, rest)
            return
        for child in _children(folder, head):
            if not fnmatch.fnmatchcase(child.name, head):
                continue
            if tail and child.is_dir():
                visit(child, tail)
            elif not tail and child.is_file():
                matches.append(child)

    if literal < len(parts) and root.is_dir():
        visit(root, parts[literal:])
    return matches


def _children(folder: Path, pattern: str) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [folder / name for name in names if pattern.startswith(".") or not name.startswith(".")]


def fingerprint_inputs(paths: str | Path | Iterable[str | Path]) -> dict:
    """Content fingerprints of the input files (path, size, sha256 of the whole file), for the manifest.

    Every byte is hashed: hashing runs about a thousand times faster than generation reads, and a
    sampled hash would reuse a stale version after an edit between the samples.
    """
    files = []
    for path in list_inputs(paths):
        try:
            files.append({"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)})
        except OSError as error:
            files.append({"path": str(path), "error": f"{type(error).__name__}: {error}"})
    return {"files": files}


def content_key(fingerprints: dict) -> dict:
    """What of ``fingerprints`` names the input for the version id: file names, sizes and hashes in
    input order, not the paths, so the same corpus reached by another path (relative or absolute,
    another working directory, a copy) gives the same version."""
    return {"files": [{k: v for k, v in entry.items() if k != "path"} | {"name": Path(entry["path"]).name}
                      for entry in fingerprints["files"]]}


def iter_documents(
    paths: str | Path | Iterable[str | Path | InputPiece], config: CorpusConfig, drops: Drops, *,
    listed: bool = False, duplicates: DigestSet | None = None, counts: Counter | None = None,
    on_read: Callable[[InputPiece, float], None] | None = None,
) -> Iterator[Document]:
    """Cleaned, language-filtered, exact-deduplicated documents, streamed in input order.

    ``doc_id`` is the first 16 hex digits of the SHA-256 of the cleaned text, so the same text
    gets the same id in any corpus; a second copy is dropped as ``duplicate``. ``listed`` says
    ``paths`` are a shard's inputs as planned (files or ``InputPiece`` parts of them): they are read
    as named, never expanded again. ``duplicates`` holds the content keys of documents that an
    earlier shard keeps (the corpus-wide dedupe): those are dropped as ``duplicate`` too, and
    counted in ``counts["cross_shard_duplicates"]``. ``on_read(piece, share)`` hears, after each
    record, how much of its piece has been read (for progress).
    """
    seen: set[bytes] = set()
    pieces = map(InputPiece.of, paths) if listed else (InputPiece(str(p)) for p in list_inputs(paths))
    for piece in pieces:
        for raw in read_documents(Path(piece.path), config, drops, piece):
            if on_read is not None:
                on_read(piece, raw.read)
            text, title = _cleaned(raw, config)
            if len(text) < config.min_doc_chars:
                drops.add("too_short")
                log.debug("%s: dropped (too_short): %d chars < min_doc_chars", raw.source, len(text))
                continue
            digest = hashlib.sha256(text.encode()).digest()
            if digest in seen or (duplicates is not None and content_key_of(digest) in duplicates):
                drops.add("duplicate")
                if digest not in seen and counts is not None:
                    counts["cross_shard_duplicates"] += 1
                seen.add(digest)
                log.debug("%s: dropped (duplicate)", raw.source)
                continue
            seen.add(digest)
            language, score = detect_language(text)
            if config.language is not None and (language != config.language or score < config.min_language_score):
                reason = "not_english" if config.language == "en" else f"not_{config.language}"
                drops.add(reason)
                log.debug("%s: dropped (%s): %s %.2f", raw.source, reason, language, score)
                continue
            document = Document(
                doc_id=digest.hex()[:16],
                source=raw.source,
                title=title,
                text=text,
                lang=language,
                lang_score=score,
                n_chars=len(text),
            )
            del raw, text  # only the cleaned text stays alive while the document is worked on
            yield document


def _cleaned(raw, config: CorpusConfig) -> tuple[str, str | None]:
    """A raw document's cleaned text and its title (from the record, else from its HTML)."""
    text, title = raw.text, raw.title
    if looks_like_html(text):
        text, html_title = html_to_text(text)
        title = title or html_title
    text = clean_text(text, unicode_form=config.unicode_form, gutenberg=config.strip_gutenberg,
                      max_line_repeats=config.max_line_repeats)
    return text, title


# -- the corpus-wide dedupe -----------------------------------------------------------------------
# A document's content key: the first 16 bytes of the sha256 of its cleaned text (a collision is
# expected once in about 10^19 pairs). Keys are kept in sorted numpy arrays, 16 bytes a document.
KEY_BYTES = 16


def content_key_of(digest: bytes) -> bytes:
    return digest[:KEY_BYTES]


class DigestSet:
    """A sorted array of content keys with membership tests (16 bytes a key, not a Python set)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = np.unique(np.asarray(keys, dtype=f"S{KEY_BYTES}"))

    def __contains__(self, key: bytes) -> bool:
        at = int(np.searchsorted(self.keys, np.array(key, dtype=f"S{KEY_BYTES}")))
        return at < len(self.keys) and self.keys[at] == key

    def __len__(self) -> int:
        return len(self.keys)


def document_keys(pieces: Iterable[str | Path | InputPiece], config: CorpusConfig) -> np.ndarray:
    """The content keys of the documents a shard reads that pass the length filter, unique, sorted:
    the first pass of the corpus-wide dedupe (reading and cleaning, no language model, no tokens)."""
    keys: set[bytes] = set()
    drops = Drops()  # counted in the second pass, which reads the same documents
    for piece in map(InputPiece.of, pieces):
        for raw in read_documents(Path(piece.path), config, drops, piece):
            text, _ = _cleaned(raw, config)
            if len(text) >= config.min_doc_chars:
                keys.add(content_key_of(hashlib.sha256(text.encode()).digest()))
    return np.array(sorted(keys), dtype=f"S{KEY_BYTES}")


def keys_kept_earlier(shard_keys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each shard, those of its keys that an earlier shard already holds (corpus order: the
    first occurrence wins), from every shard's ``document_keys``."""
    earlier = np.array([], dtype=f"S{KEY_BYTES}")
    repeated = []
    for keys in shard_keys:
        repeated.append(keys[np.isin(keys, earlier, assume_unique=True)])
        earlier = np.union1d(earlier, keys)
    return repeated


def document_chunks(
    document: Document,
    config: CorpusConfig,
    segmenter: Segmenter,
    tokenizer: Tokenizer | None = None,
    drops: Drops | None = None,
) -> list[Chunk]:
    """The document's chunks of at most ``chunk_tokens`` tokens with exact unit ends.

    Chunks under ``min_chunk_tokens`` are dropped (counted as ``chunk_too_short`` when ``drops``
    is given); only a document shorter than that yields one.
    """
    if tokenizer is not None and tokenizer is not segmenter.tokenizer:
        raise ValueError("document_chunks: the segmenter was built with another tokenizer")
    segmented = segmenter.segment(document.text)
    ends = segmented.sentence_ends
    unit_tokens = [end - previous for previous, end in zip([-1, *ends], ends)]
    chunks = []
    for start, end in chunk_spans(unit_tokens, config.chunk_tokens):
        first_token = ends[start - 1] + 1 if start else 0
        last_token = ends[end - 1] + 1
        n_tokens = last_token - first_token
        if n_tokens < config.min_chunk_tokens or n_tokens > config.chunk_tokens:
            if drops is not None:
                drops.add("chunk_too_short" if n_tokens < config.min_chunk_tokens else "chunk_too_long")
            continue
        chunks.append(Chunk(
            chunk_id=f"{document.doc_id}-{len(chunks):04d}",
            doc_id=document.doc_id,
            chunk_index=len(chunks),
            token_ids=segmented.token_ids[first_token:last_token],
            sentence_ends=[e - first_token for e in ends[start:end]],
            sentences=segmented.units[start:end],
            tokenizer=config.tokenizer,
        ))
    return chunks


def build_decontamination_index(paths: Sequence[str | Path], ngram: int) -> NgramIndex:
    """The n-gram index of the evaluation documents in ``paths`` (any corpus format), cached."""
    try:
        files = list_inputs(paths)
    except ValueError as error:
        raise FileNotFoundError(f"decontaminate: {error} (fix the decontaminate paths)") from None
    return _cached_index(index_cache_key(files), ngram)


@functools.lru_cache(maxsize=2)
def _cached_index(key: tuple, ngram: int) -> NgramIndex:
    drops = Drops()
    reading = CorpusConfig()
    texts = (
        clean_text(raw.text, gutenberg=False)
        for path, _, _ in key
        for raw in read_documents(Path(path), reading, drops)
    )
    index = NgramIndex.from_texts(texts, ngram)
    if drops:
        log.warning("decontamination: some evaluation documents could not be read: %s", drops.as_dict())
    log.info("decontamination: %d %d-grams from %d evaluation documents", len(index), ngram, index.documents)
    return index


def corpus_to_chunks(
    paths: str | Path | Iterable[str | Path | InputPiece], config: CorpusConfig, drops: Drops, *,
    listed: bool = False, duplicates: DigestSet | None = None, counts: Counter | None = None,
    on_read: Callable[[InputPiece, float], None] | None = None,
) -> Iterator[tuple[Document, list[Chunk]]]:
    """Every kept document with its chunks: read, clean, filter, dedupe, segment, chunk, decontaminate.

    A document left with no chunks is not yielded and is counted as ``no_chunks``; ``listed``,
    ``duplicates``, ``counts`` and ``on_read`` as in ``iter_documents``.
    """
    tokenizer = load_tokenizer(config.tokenizer)
    segmenter = Segmenter(config, tokenizer)
    index = build_decontamination_index(config.decontaminate, config.decontamination_ngram) if config.decontaminate else None
    for document in iter_documents(paths, config, drops, listed=listed, duplicates=duplicates, counts=counts,
                                   on_read=on_read):
        chunks = document_chunks(document, config, segmenter, drops=drops)
        if index is not None:
            kept = []
            for chunk in chunks:
                overlap = index.overlap(chunk.sentences)
                if overlap > config.decontamination_threshold:
                    drops.add("decontaminated")
                    log.info("%s: chunk %s dropped (decontaminated): %.1f%% of units overlap evaluation documents",
                             document.source, chunk.chunk_id, 100 * overlap)
                else:
                    kept.append(chunk)
            chunks = kept
        if not chunks:
            drops.add("no_chunks")
            continue
        yield document, chunks
