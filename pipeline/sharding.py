"""Shards planned over the corpus's content, not its files: one large file can feed every worker.

The corpus (its files in ``list_inputs`` order) is read as one sequence of bytes and cut into
``num_shards`` contiguous ranges of about equal size, so the shards follow corpus order. A cut
that falls inside a file is moved to the nearest place where a document starts:

- JSONL (plain): the first line start at or after the cut (a byte offset, found by reading to the
  next newline), so a document is never split or read twice;
- Parquet with several row groups: the nearest row-group boundary;
- anything else (text, Markdown and HTML files are one document each; a ``.jsonl.gz`` cannot be
  entered in the middle, and a Parquet file of one row group has no inner boundary): the cut moves
  to the file's nearer end, and the plan says so.

Shards that end up empty are dropped, so a corpus may give fewer shards than asked for; the
plan's ``notes`` say why. The plan depends only on the files' bytes and ``num_shards``, so the same
corpus gives the same shards whatever runs them.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputPiece:
    """One file, or a part of one that starts where a document starts.

    ``unit`` says what ``start`` and ``end`` count: ``file`` (the whole file), ``bytes`` (a JSONL
    byte range) or ``row_groups`` (a Parquet row-group range); ``end`` is exclusive, None for the
    end of the file. ``first_record`` is the file-wide number of the piece's first record (the line
    number, from 1, or the row index, from 0), so documents are named as if the file were read whole.
    """

    path: str
    unit: Literal["file", "bytes", "row_groups"] = "file"
    start: int = 0
    end: int | None = None
    first_record: int = 0
    size: int = 0  # bytes of the file this piece covers (for progress)

    def describe(self) -> str:
        if self.unit == "file":
            return self.path
        what = "bytes" if self.unit == "bytes" else "row groups"
        return f"{self.path} [{what} {self.start}-{'end' if self.end is None else self.end}]"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, value: "InputPiece | dict | str") -> "InputPiece":
        if isinstance(value, InputPiece):
            return value
        if isinstance(value, str):
            return cls(value)
        return cls(**value)


@dataclass(frozen=True)
class ShardPlan:
    shards: tuple[tuple[InputPiece, ...], ...]
    notes: tuple[str, ...]  # why fewer shards than asked, and which files could not be split


@dataclass(frozen=True)
class _Cuttable:
    """Where a file may be cut: offsets (in the file's bytes) at which a document starts, and for
    each the record number and the ``start`` value its piece would get."""

    path: Path
    size: int
    unit: str
    offsets: list[int]  # byte positions of the allowed cuts, increasing, excluding 0 and size
    records: list[int]  # first_record of the piece starting at each offset
    starts: list[int]  # the piece's ``start`` at each offset (a byte offset or a row-group index)
    why_whole: str | None  # why the file has no inner cut


def plan_shards(files: Sequence[Path], num_shards: int) -> ShardPlan:
    """Up to ``num_shards`` contiguous shards of about equal size over ``files`` (in their order)."""
    sizes = [path.stat().st_size if path.is_file() else 0 for path in files]
    total = sum(sizes)
    if num_shards <= 1 or total == 0:
        pieces = tuple(InputPiece(str(path), size=size) for path, size in zip(files, sizes))
        return ShardPlan((pieces,) if pieces else (), ())
    wanted = [total * k / num_shards for k in range(1, num_shards)]  # global byte positions of cuts
    base = 0
    cuts: set[tuple[int, int]] = set()  # (file index, offset in the file); offset 0 falls between files
    cuttables: dict[int, _Cuttable] = {}
    notes: list[str] = []
    for index, (path, size) in enumerate(zip(files, sizes)):
        inside = [w - base for w in wanted if base < w < base + size]
        if any(w == base for w in wanted):
            cuts.add((index, 0))
        if inside:
            cuttable = cuttables[index] = _cuttable(path, size, inside)
            if cuttable.why_whole is not None:
                notes.append(f"{path}: not split ({cuttable.why_whole})")
            for w in inside:
                offset = _nearest(cuttable.offsets, w, size)
                cuts.add((index, offset) if offset < size else (index + 1, 0))
        base += size
    cuts = {(i, o) for i, o in cuts if (i, o) != (0, 0) and i < len(files)}
    shards = _split(files, sizes, sorted(cuts), cuttables)
    if len(shards) < num_shards:
        notes.insert(0, f"num_shards {num_shards}: the corpus gives {len(shards)} shard(s) "
                        "(cuts fall only where a document starts)")
    return ShardPlan(tuple(shards), tuple(notes))


def _nearest(offsets: list[int], wanted: float, size: int) -> int:
    """The allowed cut nearest ``wanted`` (0 or ``size`` when none is nearer)."""
    candidates = [0, *offsets, size]
    at = bisect.bisect_left(candidates, wanted)
    options = candidates[max(0, at - 1): at + 1]
    return min(options, key=lambda offset: (abs(offset - wanted), offset))


def _split(files: Sequence[Path], sizes: list[int], cuts: list[tuple[int, int]],
           cuttables: dict[int, _Cuttable]) -> list[tuple[InputPiece, ...]]:
    """The shards between consecutive cuts; a cut at offset 0 of a file falls between files."""

    def piece(index: int, start: int, end: int | None) -> InputPiece:
        path, size = files[index], sizes[index]
        if start == 0 and end is None:
            return InputPiece(str(path), size=size)
        cuttable = cuttables[index]
        at = {offset: i for i, offset in enumerate(cuttable.offsets)}
        first = cuttable.records[at[start]] if start else (1 if cuttable.unit == "bytes" else 0)
        begin = cuttable.starts[at[start]] if start else 0
        stop = None if end is None else cuttable.starts[at[end]]
        return InputPiece(str(path), cuttable.unit, begin, stop, first, (size if end is None else end) - start)

    shards: list[tuple[InputPiece, ...]] = []
    bounds = [(0, 0), *cuts, (len(files), 0)]
    for (file_a, offset_a), (file_b, offset_b) in zip(bounds, bounds[1:]):
        pieces = []
        for index in range(file_a, min(file_b, len(files) - 1) + 1):
            if index == file_b and offset_b == 0:
                break
            start = offset_a if index == file_a else 0
            end = offset_b if index == file_b else None
            pieces.append(piece(index, start, end))
        if pieces:
            shards.append(tuple(pieces))
    return shards


def _cuttable(path: Path, size: int, wanted: list[float] | None) -> _Cuttable:
    """The allowed cuts of one file near ``wanted`` offsets (all known cuts when None)."""
    from linkscan.pipeline.readers import format_of

    kind = format_of(path)
    name = path.name.lower()
    if kind == "jsonl" and not name.endswith(".gz"):
        return _jsonl_cuts(path, size, wanted)
    if kind == "parquet":
        return _parquet_cuts(path, size)
    why = {"jsonl": "gzip cannot be entered in the middle; split the file, or give it uncompressed",
           "text": "one document", "markdown": "one document", "html": "one document"}.get(kind or "", "unknown format")
    return _Cuttable(path, size, "file", [], [], [], why)


def _jsonl_cuts(path: Path, size: int, wanted: list[float] | None) -> _Cuttable:
    """Line starts at or after each wanted offset, with the line numbers there (one pass to count)."""
    targets = sorted(set(wanted or []))
    offsets: list[int] = []
    with open(path, "rb") as handle:
        for target in targets:
            handle.seek(max(0, int(target) - 1))
            handle.readline()  # to the end of the line holding byte target - 1
            offset = handle.tell()
            if 0 < offset < size and (not offsets or offset > offsets[-1]):
                offsets.append(offset)
        # line numbers at the offsets: newlines counted before each
        records, lines, position = [], 0, 0
        handle.seek(0)
        for offset in offsets:
            while position < offset:
                block = handle.read(min(_READ_BLOCK, offset - position))
                lines += block.count(b"\n")
                position += len(block)
            records.append(lines + 1)
    return _Cuttable(path, size, "bytes", offsets, records, list(offsets), None)


def _parquet_cuts(path: Path, size: int) -> _Cuttable:
    """Row-group boundaries, placed at the byte where each row group's data starts."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as error:  # an unreadable file is counted by the reader; here it is one piece
        return _Cuttable(path, size, "file", [], [], [], f"not readable as Parquet ({type(error).__name__})")
    if metadata.num_row_groups < 2:
        return _Cuttable(path, size, "file", [], [], [], "one row group")
    offsets, records, starts, rows = [], [], [], 0
    for group in range(metadata.num_row_groups):
        if group:
            column = metadata.row_group(group).column(0)
            start = column.dictionary_page_offset or column.data_page_offset
            if 0 < start < size and (not offsets or start > offsets[-1]):
                offsets.append(start)
                records.append(rows)
                starts.append(group)
        rows += metadata.row_group(group).num_rows
    return _Cuttable(path, size, "row_groups", offsets, records, starts, None)
