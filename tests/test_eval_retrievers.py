"""Retrievers behind one interface: names, scores per unit, chunk-level baselines, context."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linkscan.evaluation.metrics import rank_units
from linkscan.evaluation.retrievers import (
    BM25Retriever,
    ChunkRetriever,
    DenseRetriever,
    OracleRetriever,
    Query,
    RandomRetriever,
    RetrieverError,
    chunk_units,
    context_text,
    default_dense_model,
    make_retriever,
)
from linkscan.evaluation.units import units_from_texts
from tests.eval_data import CONTRACT_UNITS, benchmark_with_empty_documents

UNITS = CONTRACT_UNITS


@pytest.fixture(scope="module")
def document(tokenizer):
    return units_from_texts("contract", UNITS, tokenizer)


def test_bm25_ranks_the_unit_sharing_rare_terms_first(document) -> None:
    [scores] = BM25Retriever().score_document(document, [Query("q", "Which state's laws govern it? Delaware")])
    assert scores.dtype == np.float32 and scores.shape == (len(UNITS),)
    assert rank_units(scores)[0] == 2


def test_bm25_question_of_stop_words_scores_zero(document) -> None:
    [scores] = BM25Retriever().score_document(document, [Query("q", "what is the")])
    assert scores.tolist() == [0.0] * len(UNITS)


def test_dense_default_model_is_the_packaged_minilm(document) -> None:
    path = default_dense_model()
    assert (path / "model.safetensors").is_file()
    retriever = make_retriever("dense")
    assert retriever.name == "dense"
    questions = [Query("a", "How long does the contract last?"), Query("b", "When must the invoice be paid?")]
    first, second = retriever.score_document(document, questions)
    assert first.shape == (len(UNITS),)
    assert rank_units(first)[0] == 4
    assert rank_units(second)[0] == 1
    assert np.all(first <= 1.0001) and np.all(first >= -1.0001)  # cosine similarities


def test_dense_encodes_each_document_once_for_all_its_questions(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from linkscan.evaluation.retrievers import _load_encoder
    from linkscan.evaluation.run import EvalConfig, run_evaluation
    from linkscan.pipeline.config import CorpusConfig

    model = _load_encoder(str(default_dense_model()), "cpu")
    calls: list[int] = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, **options: calls.append(len(texts)) or encode(texts, **options))
    suite = tmp_path / "suite"
    suite.mkdir()
    benchmark_with_empty_documents(dev_evalsets, suite)  # two paperqa_4k documents with all their questions
    config = EvalConfig(benchmarks=str(suite), retrievers=["dense"], dense_precision="bfloat16", bootstrap_samples=20,
                        corpus=CorpusConfig(tokenizer=str(tokenizer_path)))
    result = run_evaluation(config, tmp_path / "out")
    units = {r["doc_id"]: r["doc_units"] for r in result.rows}
    questions = {}
    for row in result.rows:
        questions[row["doc_id"]] = questions.get(row["doc_id"], 0) + 1
    assert max(questions.values()) > 1  # some document has several questions
    # one call with the document's units and one with its questions, per document
    assert sorted(calls) == sorted([*units.values(), *questions.values()])
    assert result.summary["retrieval"]["dense"]["units"] == sum(units.values())
    assert result.summary["retrieval"]["dense"]["units_per_s"] > 0


def test_dense_in_bfloat16_gives_the_float32_embeddings_closely(document) -> None:
    texts = list(document.units)
    exact = make_retriever("dense").encode(texts)
    fast = make_retriever("dense", dense_precision="bfloat16").encode(texts)
    assert fast.shape == exact.shape == (len(UNITS), 384)
    assert (exact * fast).sum(axis=1).min() > 0.999  # cosine of unit vectors
    questions = [Query("a", "How long does the contract last?"), Query("b", "When must the invoice be paid?")]
    first, second = make_retriever("dense", dense_precision="bfloat16").score_document(document, questions)
    assert (rank_units(first)[0], rank_units(second)[0]) == (4, 1)


def test_dense_with_a_missing_model_folder_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(RetrieverError, match="not a folder; give a local sentence-transformers model folder"):
        make_retriever(f"dense:{tmp_path / 'nope'}")


def test_random_is_seeded_per_question(document) -> None:
    queries = [Query("a", "x"), Query("b", "x")]
    a1, b1 = RandomRetriever(seed=7).score_document(document, queries)
    [b2] = RandomRetriever(seed=7).score_document(document, [queries[1]])
    [a3] = RandomRetriever(seed=8).score_document(document, [queries[0]])
    assert np.array_equal(b1, b2)  # same seed and question: same scores, in any order
    assert not np.array_equal(a1, b1)
    assert not np.array_equal(a1, a3)


def test_oracle_scores_one_on_gold_units(document) -> None:
    [scores] = OracleRetriever().score_document(document, [Query("q", "?", gold_units=(1, 4))])
    assert scores.tolist() == [0, 1, 0, 0, 1, 0]
    assert rank_units(scores)[:2].tolist() == [1, 4]


def test_chunk_units_closes_a_chunk_at_the_word_budget() -> None:
    units = ["one two three ", "four five ", "six ", "seven eight nine ten ", "eleven "]
    assert chunk_units(units, chunk_words=5) == [[0, 1], [2, 3], [4]]
    assert chunk_units(units, chunk_words=100) == [[0, 1, 2, 3, 4]]


def test_chunk_retriever_gives_units_their_chunk_score_and_top_chunks_as_context(document) -> None:
    retriever = ChunkRetriever(BM25Retriever(), chunk_words=22, top_chunks=1)
    assert retriever.name == "bm25-chunks" and retriever.granularity == "chunk"
    chunks = chunk_units(document.units, 22)
    assert chunks == [[0, 1], [2, 3], [4, 5]]
    [scores] = retriever.score_document(document, [Query("q", "Delaware laws")])
    assert scores[2] == scores[3] > scores[0] == scores[1]
    assert rank_units(scores)[:2].tolist() == [2, 3]
    assert retriever.context_units(document, scores, k=50) == [2, 3]


def test_unit_retriever_context_is_top_k_in_document_order(document) -> None:
    retriever = RandomRetriever()
    scores = np.array([0.1, 0.9, 0.0, 0.5, 0.7, 0.2], dtype=np.float32)
    assert retriever.context_units(document, scores, k=3) == [1, 3, 4]


def test_context_text_joins_neighbours_and_marks_gaps() -> None:
    units = ["A. ", "B. ", "C. ", "D."]
    assert context_text(units, [3, 0, 1]) == "A. B. \nD."


def test_make_retriever_names() -> None:
    assert make_retriever("bm25").name == "bm25"
    assert make_retriever("random", seed=3).seed == 3
    assert make_retriever("oracle").name == "oracle"
    assert make_retriever("dense-chunks").name == "dense-chunks"
    assert isinstance(make_retriever("dense-chunks").base, DenseRetriever)
    with pytest.raises(RetrieverError, match="unknown retriever 'bm42'; use one of: scanner:<checkpoint>, bm25"):
        make_retriever("bm42")
    with pytest.raises(RetrieverError, match="scanner: give a checkpoint"):
        make_retriever("scanner")


def test_scanner_retriever_scores_each_unit_with_the_saved_model(tmp_path: Path, tokenizer, document) -> None:
    import torch

    from linkscan.evaluation.scanning import scan_document
    from linkscan.pipeline.assemble import question_token_ids
    from linkscan.training.checkpoint import save_weights
    from linkscan.training.configs import MambaShape
    from linkscan.training.model import ScannerModel

    torch.manual_seed(0)
    shape = MambaShape(d_model=64, n_layer=2, d_state=16, headdim=16, chunk_size=32)
    model = ScannerModel(shape, backend="hf").eval()
    save_weights(model, tmp_path / "ckpt")
    retriever = make_retriever(f"scanner:{tmp_path / 'ckpt'}", tokenizer=tokenizer, segment_tokens=16)
    [scores] = retriever.score_document(document, [Query("q", "Which law governs the agreement?")])
    with torch.inference_mode():
        expected = scan_document(model, question_token_ids("Which law governs the agreement?", tokenizer),
                                 document.token_ids, document.sentence_ends)
    assert scores.shape == (len(UNITS),)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
