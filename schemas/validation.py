"""Validation of artifact tables: every error names the shard, the row and the field."""
from __future__ import annotations

import pyarrow as pa

from linkscan.schemas.artifacts import ARTIFACT_KEY, SCHEMA_VERSIONS, VERSION_KEY, schema_for


class SchemaError(ValueError):
    """A shard or table does not match its artifact's schema."""


def check_schema(schema: pa.Schema, artifact: str, source: str) -> None:
    """Refuse a schema that differs from the artifact's (missing, extra or mistyped fields, version)."""
    expected = schema_for(artifact)
    metadata = schema.metadata or {}
    found_artifact = metadata.get(ARTIFACT_KEY, b"").decode() or None
    found_version = metadata.get(VERSION_KEY, b"").decode() or None
    if found_artifact is None or found_version is None:
        raise SchemaError(
            f"{source}: no linkscan artifact and schema version in the file metadata (a file rewritten by "
            f"another tool?); expected {artifact} version {SCHEMA_VERSIONS[artifact]}"
        )
    if found_artifact != artifact:
        raise SchemaError(f"{source}: holds artifact {found_artifact!r}, expected {artifact!r}")
    if found_version != str(SCHEMA_VERSIONS[artifact]):
        raise SchemaError(
            f"{source}: {artifact} schema version {found_version}, this linkscan reads version "
            f"{SCHEMA_VERSIONS[artifact]} (regenerate the dataset or use a matching linkscan)"
        )
    for field in expected:
        if field.name not in schema.names:
            raise SchemaError(f"{source}: field {field.name!r} is missing (expected {field.type})")
        found = schema.field(field.name)
        if not found.type.equals(field.type):
            raise SchemaError(f"{source}: field {field.name!r} has type {found.type}, expected {field.type}")
    extra = [name for name in schema.names if name not in expected.names]
    if extra:
        raise SchemaError(f"{source}: unexpected field(s) {', '.join(map(repr, extra))} for {artifact}")


def _lengths(column: pa.ChunkedArray | pa.Array) -> list[int]:
    """The length of each list in a list column (a null list counts 0)."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.list_value_length(column), 0).to_pylist()


def _check_units(source: str, row: int, tokens: int, ends: list[int], n_sentences: int) -> None:
    if len(ends) != n_sentences:
        raise SchemaError(
            f"{source}: row {row}: field 'sentence_ends' has {len(ends)} entries but 'sentences' has {n_sentences}"
        )
    previous = -1
    for end in ends:
        if end <= previous:
            raise SchemaError(f"{source}: row {row}: field 'sentence_ends' is not strictly increasing at {end}")
        previous = end
    if ends and ends[-1] >= tokens:
        raise SchemaError(
            f"{source}: row {row}: field 'sentence_ends' points past the end of 'token_ids' ({ends[-1]} >= {tokens})"
        )


def _check_indices(source: str, row: int, name: str, indices: list[int] | None, n_units: int) -> None:
    for index in indices or []:
        if not 0 <= index < n_units:
            raise SchemaError(f"{source}: row {row}: field {name!r} has unit index {index} outside 0..{n_units - 1}")


def validate_table(table: pa.Table | pa.RecordBatch, artifact: str, source: str, first_row: int = 0) -> None:
    """Check schema and row invariants; raise SchemaError naming source, row and field."""
    check_schema(table.schema, artifact, source)
    expected = schema_for(artifact)
    for field in expected:
        if not field.nullable and table.column(field.name).null_count:
            column = table.column(field.name)
            row = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
            raise SchemaError(f"{source}: row {first_row + row}: field {field.name!r} is null")
    if artifact in ("chunks", "examples"):
        # Lengths only: the token ids and sentences themselves are never turned into Python objects
        # (for a 50 MB document that took gigabytes).
        tokens = _lengths(table.column("token_ids"))
        units = _lengths(table.column("sentences"))
        ends = table.column("sentence_ends").to_pylist()
        for i, (t, e, n) in enumerate(zip(tokens, ends, units)):
            _check_units(source, first_row + i, t, e, n)
        if artifact == "examples":
            positives = table.column("positives").to_pylist()
            anchors = table.column("anchor").to_pylist()
            targets = table.column("link_target").to_pylist()
            for i, (p, a, target, n) in enumerate(zip(positives, anchors, targets, units)):
                row = first_row + i
                if not p:
                    raise SchemaError(f"{source}: row {row}: field 'positives' is empty")
                _check_indices(source, row, "positives", p, n)
                _check_indices(source, row, "anchor", a, n)
                _check_indices(source, row, "link_target", [target] if target is not None else [], n)
    if artifact == "links":
        for i, (src, dst, dist) in enumerate(zip(*(table.column(n).to_pylist() for n in ("src", "dst", "distance")))):
            if dist != abs(dst - src):
                raise SchemaError(f"{source}: row {first_row + i}: field 'distance' is {dist}, but |dst - src| = {abs(dst - src)}")
