"""Schemas: every artifact round-trips through Parquet, and violations name file, row and field."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkscan.schemas import (
    SCHEMAS,
    Chunk,
    Document,
    Example,
    Link,
    Prediction,
    SchemaError,
    records_to_table,
    table_to_records,
    validate_table,
)

RECORDS = {
    "documents": Document("d1", "corpus/a.txt", "A title", "Some text.", "en", 0.875, 10),
    "chunks": Chunk("d1-0000", "d1", 0, [5, 6, 7, 8], [1, 3], ["Some", " text."], "gpt-neox-20b"),
    "links": Link("d1", "d1-0000", 0, 12, 12, 0.75, "offline", "shared: Dublin"),
    "examples": Example(
        "e1", "d1-0000", "d1", "link", "offline", "offline-v1", "Who?", [10, 11, 187],
        [0, 1], [0], 1, 1, [5, 6, 7, 8], [1, 3], ["Some", " text."],
    ),
    "predictions": Prediction("run1", "quality", "q1", "bm25", [0.5, 0.25], [0, 1]),
}


@pytest.mark.parametrize("artifact", sorted(SCHEMAS))
def test_records_round_trip_through_parquet(tmp_path, artifact):
    table = records_to_table(artifact, [RECORDS[artifact]])
    path = tmp_path / f"{artifact}.parquet"
    pq.write_table(table, path)
    read_back = pq.read_table(path)
    assert read_back.schema.equals(SCHEMAS[artifact])
    assert read_back.schema.metadata == SCHEMAS[artifact].metadata
    assert table_to_records(artifact, read_back) == [RECORDS[artifact]]


def test_example_label_positions_follow_the_question():
    example = RECORDS["examples"]
    # label i sits at len(question_ids) + sentence_ends[i]
    assert example.label_positions() == [3 + 1, 3 + 3]
    assert example.n_tokens == 3 + 4


def test_wrong_field_type_is_named():
    table = records_to_table("links", [RECORDS["links"]])
    bad = table.set_column(table.schema.get_field_index("score"), "score", pa.array([0.75], pa.float64()))
    with pytest.raises(SchemaError, match=r"links/x.parquet: field 'score' has type double, expected float"):
        validate_table(bad, "links", source="links/x.parquet")


def test_missing_field_is_named():
    table = records_to_table("chunks", [RECORDS["chunks"]]).drop_columns(["tokenizer"])
    with pytest.raises(SchemaError, match=r"field 'tokenizer' is missing"):
        validate_table(table, "chunks", source="c.parquet")


def test_sentence_ends_must_increase_and_stay_inside_tokens():
    row = RECORDS["chunks"]
    decreasing = Chunk(row.chunk_id, row.doc_id, 0, row.token_ids, [3, 1], row.sentences, row.tokenizer)
    with pytest.raises(SchemaError, match=r"c.parquet: row 0: field 'sentence_ends' is not strictly increasing"):
        validate_table(records_to_table("chunks", [decreasing]), "chunks", source="c.parquet")
    past_end = Chunk(row.chunk_id, row.doc_id, 0, row.token_ids, [1, 4], row.sentences, row.tokenizer)
    with pytest.raises(SchemaError, match=r"points past the end of 'token_ids'"):
        validate_table(records_to_table("chunks", [past_end]), "chunks", source="c.parquet")


def test_positive_outside_the_chunk_is_refused_with_its_row():
    good = RECORDS["examples"]
    bad = Example(**{**good.__dict__, "example_id": "e2", "positives": [0, 7]})
    with pytest.raises(SchemaError, match=r"row 1: field 'positives' has unit index 7 outside 0..1"):
        validate_table(records_to_table("examples", [good, bad]), "examples", source="data/t.parquet")


def test_link_distance_must_match_its_ends():
    bad = Link("d1", "d1-0000", 3, 12, 5, 0.5, "offline")
    with pytest.raises(SchemaError, match=r"field 'distance' is 5, but \|dst - src\| = 9"):
        validate_table(records_to_table("links", [bad]), "links", source="l.parquet")
