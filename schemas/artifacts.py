"""Arrow schemas of every artifact linkscan writes, with their versions.

One place defines what goes to disk. Each schema carries its artifact name and schema version in
the Arrow metadata, so a shard read back on its own says what it is.
"""
from __future__ import annotations

import pyarrow as pa

ARTIFACT_KEY = b"linkscan.artifact"
VERSION_KEY = b"linkscan.schema_version"

# Bump a version when a field is added, removed or changes type; readers refuse other versions.
SCHEMA_VERSIONS: dict[str, int] = {
    "documents": 1,
    "chunks": 1,
    "links": 1,
    "examples": 1,
    "predictions": 1,
}

_token_list = pa.list_(pa.int32())
_text_list = pa.list_(pa.string())


def _schema(artifact: str, fields: list[pa.Field]) -> pa.Schema:
    metadata = {ARTIFACT_KEY: artifact.encode(), VERSION_KEY: str(SCHEMA_VERSIONS[artifact]).encode()}
    return pa.schema(fields, metadata=metadata)


DOCUMENTS = _schema("documents", [
    pa.field("doc_id", pa.string(), nullable=False),  # content hash of the cleaned text
    pa.field("source", pa.string(), nullable=False),  # file path (and line or row) it came from
    pa.field("title", pa.string()),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("lang", pa.string(), nullable=False),
    pa.field("lang_score", pa.float32(), nullable=False),
    pa.field("n_chars", pa.int64(), nullable=False),
])

CHUNKS = _schema("chunks", [
    pa.field("chunk_id", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("chunk_index", pa.int32(), nullable=False),
    pa.field("token_ids", _token_list, nullable=False),
    # sentence_ends[i] is the position in token_ids of the last token of unit i
    pa.field("sentence_ends", _token_list, nullable=False),
    pa.field("sentences", _text_list, nullable=False),  # the retrieval units' text
    pa.field("tokenizer", pa.string(), nullable=False),
])

LINKS = _schema("links", [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("chunk_id", pa.string(), nullable=False),
    pa.field("src", pa.int32(), nullable=False),  # unit index inside the chunk
    pa.field("dst", pa.int32(), nullable=False),
    pa.field("distance", pa.int32(), nullable=False),  # |dst - src| in units
    pa.field("score", pa.float32(), nullable=False),
    pa.field("finder", pa.string(), nullable=False),  # "offline" or "llm:<model>"
    pa.field("reason", pa.string()),
])

EXAMPLES = _schema("examples", [
    pa.field("example_id", pa.string(), nullable=False),
    pa.field("chunk_id", pa.string(), nullable=False),
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),  # link | chunk | pair
    pa.field("generator", pa.string(), nullable=False),  # offline | llm:<model>
    pa.field("prompt_version", pa.string(), nullable=False),
    pa.field("question", pa.string(), nullable=False),
    pa.field("question_ids", _token_list, nullable=False),  # the question plus a newline
    pa.field("positives", _token_list, nullable=False),  # unit indices labelled 1
    pa.field("anchor", _token_list, nullable=False),  # unit indices of the anchor (or passage)
    pa.field("link_target", pa.int32()),  # unit index the anchor links to (link method only)
    pa.field("link_distance", pa.int32()),
    pa.field("token_ids", _token_list, nullable=False),  # the chunk's tokens
    pa.field("sentence_ends", _token_list, nullable=False),
    pa.field("sentences", _text_list, nullable=False),
    pa.field("n_tokens", pa.int32(), nullable=False),  # len(question_ids) + len(token_ids)
])

PREDICTIONS = _schema("predictions", [
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("benchmark", pa.string(), nullable=False),
    pa.field("question_id", pa.string(), nullable=False),
    pa.field("retriever", pa.string(), nullable=False),
    pa.field("scores", pa.list_(pa.float32()), nullable=False),  # one score per unit
    pa.field("top_k", _token_list, nullable=False),  # unit indices, best first
])

SCHEMAS: dict[str, pa.Schema] = {
    "documents": DOCUMENTS,
    "chunks": CHUNKS,
    "links": LINKS,
    "examples": EXAMPLES,
    "predictions": PREDICTIONS,
}


def schema_for(artifact: str) -> pa.Schema:
    try:
        return SCHEMAS[artifact]
    except KeyError:
        raise ValueError(f"unknown artifact {artifact!r}; known: {', '.join(SCHEMAS)}") from None
