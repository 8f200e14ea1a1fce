"""Streaming readers for corpus files: text, Markdown, HTML, JSONL (optionally gzipped), Parquet.

Each reader yields raw documents one at a time and never holds more than one document (or one
Parquet batch) in memory. A bad input never raises: it is counted in ``drops`` under a named reason
and logged once, naming the file; the good documents around it are kept.
"""
from __future__ import annotations

import codecs
import gzip
import json
import logging
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from linkscan.pipeline.clean import html_to_text
from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.sharding import InputPiece

log = logging.getLogger("linkscan")

FORMATS = {".txt": "text", ".md": "markdown", ".html": "html", ".htm": "html",
           ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".parquet": "parquet"}
_BINARY_SNIFF_BYTES = 8192
_PARQUET_BATCH_ROWS = 64
_READ_CHUNK = 1 << 20
_CP1252_MARGIN = 0.1


@dataclass(frozen=True)
class RawDocument:
    """A document as read, before cleaning: where it came from, its text and its title."""

    source: str  # the file, plus ":<line>" (JSONL) or ":row<n>" (Parquet) and "#<id>" when given
    text: str
    title: str | None = None
    read: float = 1.0  # the share of the file (or of the piece of it being read) read so far, for progress


class DecodeError(ValueError):
    """Bytes that are not text in any encoding we can trust; ``reason`` names the drop."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def format_of(path: Path) -> str | None:
    """The reader for a path by its suffix (``.jsonl.gz`` included), or None if unsupported."""
    name = path.name.lower()
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    return None


def decode_bytes(data: bytes, encoding: str | None) -> tuple[str, str | None]:
    """Text of ``data`` and, when it was not UTF-8, the encoding used (declared or detected).

    Raises DecodeError("binary" or "not_decodable") for bytes that are no text.
    """
    if encoding is not None:
        try:
            return data.decode(encoding), None
        except (UnicodeDecodeError, LookupError) as error:
            raise DecodeError("not_decodable", f"not {encoding} ({error}); fix the encoding setting") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "utf-16"
    # NUL is valid UTF-8 but never text: a file of NULs (a sparse or zeroed file) is binary.
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        raise DecodeError("binary", "binary file (NUL bytes); not a text document")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        first_bad = error.start
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    best = matches[0] if matches else None
    # Short runs of accents fit several Latin code pages equally well; Windows-1252 is by far the
    # most common of them, so it wins when it is about as plausible as the detector's first pick.
    windows = next((m for m in matches if m.encoding == "cp1252"), None)
    if best is not None and windows is not None and windows.chaos <= best.chaos + _CP1252_MARGIN:
        best = windows
    if best is None:
        raise DecodeError(
            "not_decodable", f"not UTF-8 at byte {first_bad} and no encoding detected (set encoding)"
        )
    return str(best), best.encoding


def read_documents(path: Path, config: CorpusConfig, drops: Drops, piece: InputPiece | None = None) -> Iterator[RawDocument]:
    """Every raw document in one file, or in the ``piece`` of it that a shard reads (a JSONL byte
    range, a Parquet row-group range); unreadable files and bad records are counted, never raised."""
    kind = format_of(path)
    if kind is None:
        drops.add("unsupported_format", str(path), f"no reader for this suffix (use one of {', '.join(FORMATS)})")
        return
    reader = {"text": _read_text, "markdown": _read_text, "html": _read_html,
              "jsonl": _read_jsonl, "parquet": _read_parquet}[kind]
    whole = piece is None or piece.unit == "file"
    try:
        yield from (reader(path, config, drops) if whole else reader(path, config, drops, piece))
    except (OSError, EOFError, zlib.error) as error:
        # Also a truncated or corrupt gzip stream: the documents read before it are kept.
        drops.add("unreadable", str(path), f"{type(error).__name__}: {error}")


def _read_whole_file(path: Path, config: CorpusConfig, drops: Drops) -> str | None:
    size = path.stat().st_size
    if size == 0:
        drops.add("empty", str(path), "empty file")
        return None
    if size > config.max_doc_bytes:
        drops.add("too_long", str(path), f"{size} bytes > max_doc_bytes {config.max_doc_bytes} (raise max_doc_bytes)")
        return None
    try:
        text, detected = decode_bytes(path.read_bytes(), config.encoding)
    except DecodeError as error:
        drops.add(error.reason, str(path), str(error))
        return None
    if detected:
        log.warning("%s: not UTF-8; decoded as %s (set encoding to override)", path, detected)
    return text


def _read_text(path: Path, config: CorpusConfig, drops: Drops) -> Iterator[RawDocument]:
    text = _read_whole_file(path, config, drops)
    if text is None:
        return
    title = None
    if format_of(path) == "markdown":
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    yield RawDocument(str(path), text, title)


def _read_html(path: Path, config: CorpusConfig, drops: Drops) -> Iterator[RawDocument]:
    html = _read_whole_file(path, config, drops)
    if html is None:
        return
    text, title = html_to_text(html)
    yield RawDocument(str(path), text, title)


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _bounded_lines(handle: BinaryIO, limit: int, first: int = 1,
                   end: int | None = None) -> Iterator[tuple[int, bytes | bytearray | None]]:
    """(line number, line) pairs; a line over ``limit`` bytes is read through, not kept, and given as None.

    Lines are read in pieces of at most 1 MiB, so memory stays near ``limit`` whatever the line.
    Numbering starts at ``first``; reading stops at byte ``end`` (a line start), if given.
    """
    number = first - 1
    while True:
        if end is not None and handle.tell() >= end:
            return
        piece = handle.readline(_READ_CHUNK)
        if not piece:
            return
        number += 1
        if piece.endswith(b"\n"):
            yield number, piece
            continue
        line: bytearray | None = bytearray(piece)
        while piece and not piece.endswith(b"\n"):
            piece = handle.readline(_READ_CHUNK)
            if line is not None:
                line += piece
                if len(line) > limit:
                    line = None
        yield number, line


class _FileProblems:
    """Bad records of one file: counted per reason, logged as one line per reason at the end."""

    def __init__(self, path: Path, drops: Drops) -> None:
        self.path = path
        self.drops = drops
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, reason: str, where: str, detail: str) -> None:
        self.counts[reason] += 1
        self.first.setdefault(reason, f"{where}: {detail}")
        self.drops.add(reason)

    def log(self) -> None:
        for reason, count in self.counts.items():
            log.warning("%s: skipped %d record(s) (%s); first at %s", self.path, count, reason, self.first[reason])


def _field(record: dict, name: str) -> str | None:
    value = record.get(name)
    return None if value is None else str(value)


def _source(path: Path, where: str, doc_id: str | None) -> str:
    return f"{path}:{where}" + (f"#{doc_id}" if doc_id else "")


def _read_jsonl(path: Path, config: CorpusConfig, drops: Drops, piece: InputPiece | None = None) -> Iterator[RawDocument]:
    problems = _FileProblems(path, drops)
    seen_any = piece is not None  # a piece of a file is never the whole (empty) file
    start, end, first = (piece.start, piece.end, piece.first_record) if piece is not None else (0, None, 1)
    size = path.stat().st_size
    span = max(1, (size if end is None else end) - start)
    try:
        with _open_binary(path) as handle:
            raw_position = _position_of(handle)
            handle.seek(start)
            for number, line in _bounded_lines(handle, config.max_doc_bytes, first, end):
                seen_any = True
                where = f"line {number}"
                if line is None:
                    problems.add("too_long", where, f"over max_doc_bytes {config.max_doc_bytes}")
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.decode(config.encoding or "utf-8"))
                except UnicodeDecodeError as error:
                    problems.add("not_utf8", where, f"{error} (set encoding)")
                    continue
                except (ValueError, LookupError) as error:
                    problems.add("malformed_line", where, str(error))
                    continue
                if not isinstance(record, dict):
                    problems.add("malformed_line", where, f"a JSON {type(record).__name__}, not an object")
                    continue
                text = record.get(config.text_field)
                if not isinstance(text, str):
                    problems.add("missing_text", where, f"no string field {config.text_field!r} (set text_field)")
                    continue
                document = RawDocument(
                    _source(path, str(number), _field(record, config.id_field)),
                    text,
                    _field(record, config.title_field),
                    min(1.0, (raw_position() - start) / span),
                )
                del line, record, text  # the line's bytes and its parsed copy: not kept while the document is used
                yield document
    finally:
        problems.log()
    if not seen_any:
        drops.add("empty", str(path), "empty file")


def _position_of(handle) -> Callable[[], int]:
    """Bytes of the file read so far: of the compressed file for a gzip stream (its ``fileobj``)."""
    underlying = getattr(handle, "fileobj", None)
    return underlying.tell if underlying is not None else handle.tell


def _read_parquet(path: Path, config: CorpusConfig, drops: Drops, piece: InputPiece | None = None) -> Iterator[RawDocument]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, pa.ArrowException) as error:
        drops.add("unreadable", str(path), f"not a Parquet file ({error})")
        return
    row_groups = None
    if piece is not None:  # the shard's row groups; rows keep their file-wide numbers
        row_groups = list(range(piece.start, parquet.num_row_groups if piece.end is None else piece.end))
    names = parquet.schema_arrow.names
    if config.text_field not in names:
        drops.add(
            "missing_text_column", str(path),
            f"no column {config.text_field!r} (columns: {', '.join(names)}; set text_field)",
        )
        return
    columns = [name for name in (config.text_field, config.id_field, config.title_field) if name in names]
    problems = _FileProblems(path, drops)
    row = piece.first_record if piece is not None else 0
    first_row = row
    metadata = parquet.metadata
    rows_to_read = max(1, sum(metadata.row_group(g).num_rows for g in row_groups) if row_groups is not None
                       else metadata.num_rows)
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns, row_groups=row_groups):
            values = {name: batch.column(name).to_pylist() for name in columns}
            for i, text in enumerate(values[config.text_field]):
                where = f"row {row + i}"
                if isinstance(text, bytes):
                    try:
                        text, _ = decode_bytes(text, config.encoding)
                    except DecodeError as error:
                        problems.add(error.reason, where, str(error))
                        continue
                if not isinstance(text, str):
                    problems.add("missing_text", where, f"column {config.text_field!r} is {text!r}")
                    continue
                if len(text) > config.max_doc_bytes:
                    problems.add("too_long", where, f"over max_doc_bytes {config.max_doc_bytes}")
                    continue
                doc_id = values[config.id_field][i] if config.id_field in values else None
                title = values[config.title_field][i] if config.title_field in values else None
                yield RawDocument(
                    _source(path, f"row{row + i}", None if doc_id is None else str(doc_id)),
                    text,
                    None if title is None else str(title),
                    min(1.0, (row + i + 1 - first_row) / rows_to_read),
                )
            row += batch.num_rows
    except pa.ArrowException as error:
        drops.add("unreadable", str(path), f"Parquet read failed at row {row} ({error})")
    finally:
        problems.log()
