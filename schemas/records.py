"""Typed records for the rows of each artifact, and their conversion to Arrow tables."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable

import pyarrow as pa

from linkscan.schemas.artifacts import schema_for


@dataclass(frozen=True)
class Document:
    doc_id: str
    source: str
    title: str | None
    text: str
    lang: str
    lang_score: float
    n_chars: int


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    chunk_index: int
    token_ids: list[int]
    sentence_ends: list[int]
    sentences: list[str]
    tokenizer: str


@dataclass(frozen=True)
class Link:
    doc_id: str
    chunk_id: str
    src: int
    dst: int
    distance: int
    score: float
    finder: str
    reason: str | None = None


@dataclass(frozen=True)
class Example:
    example_id: str
    chunk_id: str
    doc_id: str
    method: str
    generator: str
    prompt_version: str
    question: str
    question_ids: list[int]
    positives: list[int]
    anchor: list[int]
    link_target: int | None
    link_distance: int | None
    token_ids: list[int]
    sentence_ends: list[int]
    sentences: list[str]
    n_tokens: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.n_tokens < 0:
            object.__setattr__(self, "n_tokens", len(self.question_ids) + len(self.token_ids))

    def label_positions(self) -> list[int]:
        """Model-input positions of every unit's label: len(question_ids) + sentence_ends[i]."""
        offset = len(self.question_ids)
        return [offset + end for end in self.sentence_ends]


@dataclass(frozen=True)
class Prediction:
    run_id: str
    benchmark: str
    question_id: str
    retriever: str
    scores: list[float]
    top_k: list[int]


RECORD_TYPES: dict[str, type] = {
    "documents": Document,
    "chunks": Chunk,
    "links": Link,
    "examples": Example,
    "predictions": Prediction,
}


def records_to_table(artifact: str, records: Iterable[object]) -> pa.Table:
    """Build an Arrow table with the artifact's exact schema from typed records."""
    schema = schema_for(artifact)
    record_type = RECORD_TYPES[artifact]
    columns: dict[str, list] = {name: [] for name in schema.names}
    for record in records:
        if not isinstance(record, record_type):
            raise TypeError(f"{artifact}: expected {record_type.__name__}, got {type(record).__name__}")
        for name in schema.names:
            columns[name].append(getattr(record, name))
    return pa.Table.from_pydict(columns, schema=schema)


def table_to_records(artifact: str, table: pa.Table) -> list:
    """Typed records back from a table (or record batch) of the artifact."""
    record_type = RECORD_TYPES[artifact]
    names = {f.name for f in dataclasses.fields(record_type)}
    return [record_type(**{k: v for k, v in row.items() if k in names}) for row in table.to_pylist()]
