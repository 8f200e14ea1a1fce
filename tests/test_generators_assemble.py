"""Assembly: question ids, label positions and the checks on what goes into an example."""
from __future__ import annotations

import pytest

from linkscan.pipeline.assemble import AssemblyError, assemble_example, question_token_ids
from tests.generators_data import chunk_from_units, dev_document_text, units_of


@pytest.fixture(scope="module")
def chunk(dev_corpus, tokenizer):
    units = units_of(dev_document_text(dev_corpus, "pg-2814", 12_000), tokenizer)
    return chunk_from_units(units[:30], tokenizer, doc_id="pg-2814")


def build(chunk, tokenizer, **changes):
    parts = dict(
        question="Who kept the candles burning for Father Flynn?", positives=[2, 17], anchor=[0, 1, 2, 3, 4],
        method="link", generator="offline", prompt_version="offline-v1", tokenizer=tokenizer,
        link_target=17, link_distance=13,
    )
    parts.update(changes)
    return assemble_example(chunk, **parts)


def test_question_ids_are_the_question_and_a_newline(tokenizer):
    ids = question_token_ids("Who kept the candles?", tokenizer)
    assert tokenizer.decode(ids) == "Who kept the candles?\n"


def test_label_i_sits_at_the_last_token_of_unit_i(chunk, tokenizer):
    example = build(chunk, tokenizer)
    model_input = example.question_ids + example.token_ids
    offset = len(example.question_ids)
    positions = example.label_positions()
    assert positions == [offset + end for end in chunk.sentence_ends]
    for i in (0, 2, 17, len(chunk.sentences) - 1):
        # Decoding the chunk's tokens up to unit i's label position gives exactly units 0..i.
        text = tokenizer.decode(model_input[offset:positions[i] + 1])
        assert text == "".join(chunk.sentences[: i + 1])


def test_example_carries_the_whole_chunk_and_its_provenance(chunk, tokenizer):
    example = build(chunk, tokenizer)
    assert example.token_ids == chunk.token_ids and example.sentences == chunk.sentences
    assert (example.chunk_id, example.doc_id, example.method) == (chunk.chunk_id, "pg-2814", "link")
    assert example.n_tokens == len(example.question_ids) + len(chunk.token_ids)
    assert example.positives == [2, 17]


def test_example_id_is_stable_and_depends_on_the_question(chunk, tokenizer):
    assert build(chunk, tokenizer).example_id == build(chunk, tokenizer).example_id
    assert build(chunk, tokenizer).example_id != build(chunk, tokenizer, question="Why was the blind drawn?").example_id


@pytest.mark.parametrize("changes, message", [
    ({"question": "   "}, "question is empty"),
    ({"positives": []}, "no positive units"),
    ({"positives": [2, 30]}, r"positives \[30\] outside units 0\.\.29"),
    ({"link_target": 31}, "link_target 31 outside"),
])
def test_bad_parts_are_refused_naming_the_chunk(chunk, tokenizer, changes, message):
    with pytest.raises(AssemblyError, match=message) as error:
        build(chunk, tokenizer, **changes)
    assert chunk.chunk_id in str(error.value)
