"""Where everything lives under a data folder, and the two ways linkscan writes files that matter.

    <data>/datasets/<name>/<version>/ ...     published dataset versions (linkscan.pipeline.store)
    <data>/cache/llm.sqlite                   the LLM response cache
    <data>/models/<dataset>/<run>/            training runs
    <data>/evals/<run>/                       evaluation runs
    <data>/evalsets/                          the default benchmark suite of the evaluate flow
    <data>/events/<event>/<name>/<version>    which Prefect servers a version's event reached
    <data>/corpora/, <data>/tokenizers/       what the demo writes for itself

``atomic_write`` writes a file so that a reader sees the old bytes or the new, never a part;
``canonical_json`` is the one serialisation that names things by content (version ids, run ids,
cache keys): sorted keys, no spaces, UTF-8.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def llm_cache(self) -> Path:
        return self.root / "cache" / "llm.sqlite"

    def models(self, dataset: str) -> Path:
        return self.root / "models" / dataset

    def evals(self, run: str) -> Path:
        return self.root / "evals" / run

    @property
    def evalsets(self) -> Path:
        return self.root / "evalsets"

    def event_marker(self, event: str, name: str, version: str) -> Path:
        return self.root / "events" / event / name / version

    @property
    def corpora(self) -> Path:
        return self.root / "corpora"

    @property
    def tokenizers(self) -> Path:
        return self.root / "tokenizers"


def canonical_json(value: object) -> bytes:
    """``value`` as canonical JSON: sorted keys, no spaces, UTF-8, anything else by ``str``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def content_hash(value: object) -> str:
    """The sha256 (hex) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


@contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """An OSError raised in the block without a file name (a write or flush to a full disk: Python's
    and pyarrow's say only "No space left on device") is raised again naming ``path``, so the one
    line a command prints says which file could not be written."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A dot-prefixed temporary path to write ``path``'s new content to (by any writer: pyarrow,
    torch, ...); renamed into place when the block ends without an error, removed when it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, payload: bytes | str) -> None:
    """Write ``payload`` to ``path`` through a temporary file, synced and renamed into place: a
    crash leaves the old file or the new one, never half of one."""
    data = payload.encode() if isinstance(payload, str) else payload
    with atomic_path(path) as tmp, naming_file(path):
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
