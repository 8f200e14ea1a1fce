"""The dataset store: versioned Parquet shard sets with a manifest, written atomically.

Layout (see DESIGN.md)::

    <data>/datasets/<name>/<version>/dataset.json, README.md, data/, chunks/, links/
    <data>/datasets/<name>/LATEST        the newest complete version (a partial one is opened by its folder)

A version is built in a hidden staging folder ``<name>/.partial/<version>/`` (one level deeper than a
published version, so no glob over published versions can reach it): each shard is written
to a dot-prefixed temporary file and renamed into place, the card and the manifest come last, and
only then is the whole folder renamed to ``<name>/<version>/``. A killed writer therefore leaves
nothing that a reader (or a glob such as ``*/data/train-*.parquet``) can see, and a rerun finds the
finished shards in the staging folder and continues from there. A second writer of the same
version is refused through an advisory lock, which the kernel drops when its holder dies.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from linkscan.pipeline.layout import DataLayout, atomic_write, canonical_json, content_hash, naming_file
from linkscan.schemas import SCHEMA_VERSIONS, check_schema, validate_table

MANIFEST = "dataset.json"
SPLIT = "train"  # the examples' split name in shard file names
CARD = "README.md"
LATEST = "LATEST"

# Where each artifact lives inside a version and how its shard files are named. The examples of
# a split go to data/<split>-00000-of-00008.parquet, following Hugging Face conventions.
_ARTIFACT_DIRS = {"examples": "data", "chunks": "chunks", "links": "links", "documents": "documents"}
_ROW_GROUP_ROWS = {"examples": 128, "chunks": 256, "links": 65536, "documents": 256}
# Dataset names and version ids: one path component, no dot first (so never "." or ".."), no
# trailing newline (fullmatch), short enough for every file system.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PUBLISHING = ".publishing-"  # <name>/.publishing-<version>: a publication that may not have reached LATEST


class StoreError(RuntimeError):
    """The store refused an operation; the message says which dataset and what to do."""


class DatasetLockedError(StoreError):
    """Another process is writing the same dataset version."""


class ChecksumError(StoreError):
    """A shard's bytes do not match the sha256 recorded in the manifest."""


@dataclass(frozen=True)
class ShardInfo:
    artifact: str
    file: str  # relative to the version folder
    rows: int
    bytes: int
    sha256: str


def version_id(config: dict, fingerprints: dict) -> str:
    """A short, stable id of the resolved config plus the input fingerprints."""
    return content_hash({"config": config, "inputs": fingerprints})[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_name(artifact: str, index: int, num_shards: int) -> str:
    """Relative path of one shard, e.g. data/train-00003-of-00008.parquet (examples are the "train"
    split, as Hugging Face names it)."""
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} outside 0..{num_shards - 1}")
    stem = SPLIT if artifact == "examples" else artifact
    return f"{_ARTIFACT_DIRS[artifact]}/{stem}-{index:05d}-of-{num_shards:05d}.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def dataset_dir(data_root: Path | str, name: str) -> Path:
    if not is_valid_name(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise StoreError(
            f"dataset name {shown!r}: use 1 to 100 letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return DataLayout(data_root).datasets / name


def published_version(data_root: Path | str, name: str, version: str) -> Path | None:
    """The folder of a finished version, or None if it was never published."""
    path = dataset_dir(data_root, name) / version
    return path if (path / MANIFEST).is_file() else None


class VersionStaging:
    """The staging folder of one unpublished version: where shards are written and resumed.

    Shard writes need no version lock, so shard tasks can run in other threads or processes
    (Dask, Ray) while the coordinator holds the :class:`DatasetWriter` lock; each shard file is
    guarded by a lock of its own, so two workers never write the same shard at once.
    """

    def __init__(self, data_root: Path | str, name: str, version: str) -> None:
        self.root = dataset_dir(data_root, name)
        self.name = name
        self.version = version
        self.dir = self.root / ".partial" / version

    def has_shard(self, artifact: str, index: int, num_shards: int) -> bool:
        """True when this shard was completed by an earlier (possibly killed) run."""
        return (self.dir / shard_name(artifact, index, num_shards)).is_file()

    def write_shard(
        self,
        artifact: str,
        index: int,
        num_shards: int,
        table: pa.Table,
    ) -> ShardInfo:
        """Validate and write one shard (zstd, bounded row groups), then rename it into place."""
        with self.shard_writer(artifact, index, num_shards) as writer:
            writer.write(table)
        return self.describe(artifact, shard_name(artifact, index, num_shards))

    def shard_writer(self, artifact: str, index: int, num_shards: int) -> "ShardWriter":
        """A :class:`ShardWriter` for one shard: rows are written as they come, not held in memory."""
        if not self.dir.is_dir():
            raise StoreError(f"{self.dir}: no staging folder; open a DatasetWriter for this version first")
        return ShardWriter(self, artifact, shard_name(artifact, index, num_shards))

    def describe(self, artifact: str, relative: str) -> ShardInfo:
        path = self.dir / relative
        rows = pq.ParquetFile(path).metadata.num_rows
        return ShardInfo(artifact, relative, rows, path.stat().st_size, file_sha256(path))

    def shard_infos(self) -> list[ShardInfo]:
        """Every finished shard in the staging folder, including those of an earlier run."""
        infos = []
        for artifact, folder in _ARTIFACT_DIRS.items():
            for path in sorted((self.dir / folder).glob("*.parquet")):
                infos.append(self.describe(artifact, f"{folder}/{path.name}"))
        return infos

    # Per-shard statistics (counts, drop reasons, diagnostics) saved next to the shards, so a
    # resumed run can publish totals without recomputing the shards it skips.
    def _stats_path(self, key: str) -> Path:
        return self.dir / ".stats" / f"{key}.json"

    def save_stats(self, key: str, stats: dict) -> None:
        path = self._stats_path(key)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, canonical_json(stats))

    def load_stats(self, key: str) -> dict | None:
        path = self._stats_path(key)
        return json.loads(path.read_text()) if path.is_file() else None


class _file_lock:
    """An exclusive advisory lock on a file, refused at once (not waited for) when held.

    The file is removed on release, so a finished or failed run leaves no lock file behind. That is
    safe because a taker checks, once it holds the lock, that the name still points at the file it
    locked (a releaser may have removed it meanwhile), and starts again if not.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> "_file_lock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DatasetLockedError(
                    f"{self.what} is being written by another process (pid {holder}); "
                    "wait for it to finish, or stop it and rerun to resume"
                ) from None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the releaser removed the file we locked: lock the new one
        self.fd = fd
        try:
            with naming_file(self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)  # who holds it, for the refusal message
        except OSError:  # a full disk: give the lock up again, leaving no file behind
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class ShardWriter:
    """One shard written piece by piece: each ``write`` is validated and buffered until a row group
    is full (zstd, the artifact's row-group size), so a shard of any size needs the memory of one
    row group. The file is a dot-prefixed temporary until the ``with`` block ends without an error;
    then it is synced and renamed into place. The shard's lock is held throughout, so two workers
    never write the same shard; on an error the temporary is removed and nothing is renamed.
    """

    def __init__(self, staging: VersionStaging, artifact: str, relative: str) -> None:
        from linkscan.schemas import schema_for

        self.artifact = artifact
        self.relative = relative
        self.path = staging.dir / relative
        self.rows = 0
        self._schema = schema_for(artifact)
        self._group = _ROW_GROUP_ROWS[artifact]
        self._lock = _file_lock(self.path.with_name(f".{self.path.name}.lock"),
                                f"shard {relative} of {staging.name}/{staging.version}")
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        try:
            with naming_file(self.path):
                self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd", write_statistics=True)
        except BaseException:  # a full disk while writing the header: nothing may be left behind
            self._tmp.unlink(missing_ok=True)
            self._lock.__exit__(None, None, None)
            raise
        return self

    def write(self, table: pa.Table) -> None:
        validate_table(table, self.artifact, source=self.relative, first_row=self.rows)
        self.rows += table.num_rows
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self._group:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        rows = pa.concat_tables(self._buffer).combine_chunks() if self._buffer else self._schema.empty_table()
        full = rows.num_rows if final else rows.num_rows - rows.num_rows % self._group
        if full:
            with naming_file(self.path):  # pyarrow's "No space left on device" names no file
                self._writer.write_table(rows.slice(0, full), row_group_size=self._group)
        rest = rows.slice(full)
        self._buffer, self._buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    def __exit__(self, exc_type, *exc_info: object) -> None:
        try:
            if exc_type is None:
                try:
                    self._flush(final=True)
                    with naming_file(self.path):
                        self._writer.close()
                        with open(self._tmp, "rb") as handle:
                            os.fsync(handle.fileno())
                    os.replace(self._tmp, self.path)
                    _fsync_dir(self.path.parent)
                except BaseException:
                    self._tmp.unlink(missing_ok=True)
                    raise
            else:
                try:
                    self._writer.close()
                except Exception:  # the file is thrown away; its own error (a full disk) adds nothing
                    pass
                self._tmp.unlink(missing_ok=True)
        finally:
            self._lock.__exit__(None, None, None)


class DatasetWriter:
    """Holds the lock on one version of a dataset and publishes it; use as a context manager.

    >>> with DatasetWriter(root, "demo", version, config, fingerprints) as writer:
    ...     if not writer.is_published:
    ...         if not writer.staging.has_shard("examples", 0, 8):
    ...             writer.staging.write_shard("examples", 0, 8, table)
    ...         writer.publish({"counts": ..., "drop_reasons": ...}, card)

    The lock is held from ``__enter__`` to ``__exit__``; a second writer of the same version
    gets :class:`DatasetLockedError` at once. Shard tasks elsewhere write through
    ``VersionStaging(data_root, name, version)`` while this lock is held.
    """

    def __init__(
        self,
        data_root: Path | str,
        name: str,
        version: str,
        config: dict,
        fingerprints: dict,
    ) -> None:
        self.staging = VersionStaging(data_root, name, version)
        self.root = self.staging.root
        self.name = name
        self.version = version
        self.config = config
        self.fingerprints = fingerprints
        self.final_dir = self.root / version
        self._lock = _file_lock(self.root / f".lock-{version}", f"dataset {name!r} version {version}")
        self._locked = False

    def __enter__(self) -> "DatasetWriter":
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        self._locked = True
        if self.is_published:
            self._repair_latest()
        else:
            self.staging.dir.mkdir(parents=True, exist_ok=True)
        return self

    def _repair_latest(self) -> None:
        """Finish a publication cut off between the rename and LATEST (a kill, a full disk): its
        journal entry is still there, or LATEST names no complete published version (missing,
        garbage, a partial version). A partial version never becomes LATEST."""
        journal = self.root / f"{_PUBLISHING}{self.version}"
        if is_complete(_read_manifest(self.final_dir) or {}) and (journal.exists() or read_latest(self.root) is None):
            atomic_write(self.root / LATEST, f"{self.version}\n".encode())
        journal.unlink(missing_ok=True)

    def __exit__(self, *exc_info: object) -> None:
        self._lock.__exit__(*exc_info)
        self._locked = False

    @property
    def is_published(self) -> bool:
        return (self.final_dir / MANIFEST).is_file()

    def write_shard(self, artifact: str, index: int, num_shards: int, table: pa.Table) -> ShardInfo:
        self._require_lock()
        if self.is_published:
            raise StoreError(f"dataset {self.name!r} version {self.version} is already published")
        return self.staging.write_shard(artifact, index, num_shards, table)

    def has_shard(self, artifact: str, index: int, num_shards: int) -> bool:
        return self.staging.has_shard(artifact, index, num_shards)

    def _require_lock(self) -> None:
        if not self._locked:
            raise StoreError("DatasetWriter must be used as a context manager (it holds the version lock)")

    def publish(self, manifest_fields: dict, card: str) -> Path:
        """Write the card and the manifest, move the version into place, and, when it is complete,
        point LATEST at it: a partial version (``complete: false`` in ``manifest_fields``) is
        reachable by its folder only, so no reader of LATEST ever gets it.

        ``manifest_fields`` holds what the stage knows (counts, drop_reasons, tokenizer, generator,
        diagnostics, llm usage...); the store adds identity, config, inputs, shards and versions.
        """
        self._require_lock()
        if self.is_published:
            return self.final_dir
        shards = self.staging.shard_infos()
        manifest = {
            "name": self.name,
            "version": self.version,
            # The version this one follows: what LATEST named when it was published (None: the first).
            "parent_version": read_latest(self.root),
            "code_version": code_version(),
            "schema_versions": dict(SCHEMA_VERSIONS),
            "config": self.config,
            "input_fingerprints": self.fingerprints,
            **manifest_fields,
            "shards": [asdict(s) for s in shards],
        }
        staging = self.staging.dir
        atomic_write(staging / CARD, card.encode())
        atomic_write(
            staging / MANIFEST,
            json.dumps(manifest, indent=2, ensure_ascii=False, default=str).encode() + b"\n",
        )
        _fsync_dir(staging)
        complete = is_complete(manifest)
        journal = self.root / f"{_PUBLISHING}{self.version}"
        if complete:
            journal.touch()
        if self.final_dir.exists():  # a version folder whose manifest was lost: replace it whole
            damaged = self.root / ".partial" / f".damaged-{self.version}-{os.getpid()}"
            os.replace(self.final_dir, damaged)
            shutil.rmtree(damaged, ignore_errors=True)
        os.replace(staging, self.final_dir)
        _fsync_dir(self.root)
        if complete:
            atomic_write(self.root / LATEST, f"{self.version}\n".encode())
            journal.unlink()
        return self.final_dir


def repair_latest(data_root: Path | str, name: str, version: str) -> None:
    """Point LATEST at the published ``version`` if it is complete and LATEST names no complete
    published version (or its publication was cut off before LATEST); otherwise leave LATEST."""
    writer = DatasetWriter(data_root, name, version, {}, {})
    if not writer.is_published:
        raise StoreError(f"dataset {name!r} version {version} is not published; LATEST can only name a published version")
    with writer:  # entering a published version's writer finishes its publication
        pass


def sweep_staging(data_root: Path | str) -> list[Path]:
    """Remove what interrupted writers left in the staging folders of ``data_root``: lock files
    nobody holds, and the temporary shard files beside them. A signal can arrive between taking a
    lock and the ``with`` block that would release it; a file still locked belongs to a live writer
    and is left alone. Returns the files removed."""
    removed = []
    for lock_path in sorted(Path(data_root).glob("datasets/*/.partial/*/**/.*.lock")):
        try:
            lock = _file_lock(lock_path, str(lock_path)).__enter__()
        except (DatasetLockedError, OSError):
            continue  # a live writer holds it
        temporary = lock_path.with_name(lock_path.name.removesuffix(".lock") + ".tmp")
        if temporary.exists():
            temporary.unlink()
            removed.append(temporary)
        lock.__exit__(None, None, None)  # and the lock file goes with the release
        removed.append(lock_path)
    for lock_path in sorted(Path(data_root).glob("datasets/*/.lock-*")):
        try:
            _file_lock(lock_path, str(lock_path)).__enter__().__exit__(None, None, None)
            removed.append(lock_path)
        except (DatasetLockedError, OSError):
            continue
    return removed


# The packages whose code decides a version's bytes (readers, cleaning, segmentation, the methods,
# their validators, the schemas): the same settings and corpus under other code are another version.
OUTPUT_PACKAGES = ("schemas", "pipeline", "generators")


def source_fingerprint(folders: Sequence[Path]) -> str:
    """sha256 of the ``.py`` files below ``folders``: each one's path (from its folder's parent) and bytes."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            data = path.read_bytes()
            digest.update(f"{path.relative_to(Path(folder).parent).as_posix()}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """The fingerprint of the code that makes a version (``OUTPUT_PACKAGES``), as installed."""
    folders = [Path(importlib.import_module(f"linkscan.{name}").__file__).parent for name in OUTPUT_PACKAGES]
    return source_fingerprint(folders)[:16]


def code_version() -> dict:
    """The installed linkscan version, the fingerprint of its generating code and, when run from a
    git checkout, its commit."""
    from importlib import metadata

    try:
        package = metadata.version("linkscan")
    except metadata.PackageNotFoundError:
        package = "unknown"
    commit = None
    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = head.parent / ref[5:]
            commit = ref_file.read_text().strip() if ref_file.exists() else None
        else:
            commit = ref
    except OSError:
        pass
    return {"linkscan": package, "code_fingerprint": code_fingerprint(), "git_commit": commit}


# -- reading --------------------------------------------------------------------------------------
class Dataset:
    """A published dataset version: its manifest, its shards, and streaming readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise StoreError(f"{path}: no {MANIFEST}; this is not a published dataset version")
        self.manifest: dict = json.loads(manifest_path.read_text())

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def complete(self) -> bool:
        """False for a version published with allow_partial while chunks still waited."""
        return is_complete(self.manifest)

    def shard_paths(self, artifact: str = "examples") -> list[Path]:
        """The shards the manifest lists for ``artifact`` (a file dropped into the folder later is
        not part of the version and is not read; ``verify`` reports it)."""
        stem = SPLIT if artifact == "examples" else artifact
        return sorted(self.path / shard["file"] for shard in self.manifest["shards"]
                      if shard["artifact"] == artifact and Path(shard["file"]).name.startswith(f"{stem}-"))

    def num_rows(self, artifact: str = "examples") -> int:
        return sum(s["rows"] for s in self.manifest["shards"] if s["artifact"] == artifact)

    def verify(self) -> None:
        """Check every shard against the manifest's size and sha256; raise ChecksumError naming the
        first bad file and how to repair it."""
        problems = shard_problems(self)
        if problems:
            path, problem = problems[0]
            more = f" ({len(problems) - 1} more bad file(s))" if len(problems) > 1 else ""
            hint = "move it out of the version folder" if problem.startswith("not listed") else REPAIR_HINT
            raise ChecksumError(f"{path}: {problem}{more}; {hint}")

    def validate_rows(self, batch_size: int = 256) -> int:
        """Read every shard whole and check each row's invariants (sentence ends, unit indices,
        link distances, nulls); a violation raises ``SchemaError`` naming the file, row and field.
        Returns the number of rows checked."""
        checked = 0
        for shard in self.manifest["shards"]:
            row = 0
            for batch in iter_shard(self.path / shard["file"], shard["artifact"], batch_size=batch_size):
                validate_table(batch, shard["artifact"], source=shard["file"], first_row=row)
                row += batch.num_rows
            checked += row
        return checked

    def iter_batches(
        self,
        artifact: str = "examples",
        columns: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches shard by shard, reading only ``columns``."""
        for path in self.shard_paths(artifact):
            yield from iter_shard(path, artifact, columns=columns, batch_size=batch_size)

    def read_table(self, artifact: str = "examples", columns: Sequence[str] | None = None) -> pa.Table:
        batches = list(self.iter_batches(artifact, columns=columns))
        if not batches:
            from linkscan.schemas import schema_for

            schema = schema_for(artifact)
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns])
            return schema.empty_table()
        return pa.Table.from_batches(batches)


REPAIR_HINT = (
    "repair the version in place with `linkscan generate --repair --config <version folder>/dataset.json` "
    "(it rebuilds exactly the bad shards)"
)


def shard_problems(dataset: Dataset) -> list[tuple[Path, str]]:
    """Every shard file that does not match the manifest (missing, size, sha256), and every
    Parquet file in the version that the manifest does not list, with what is wrong."""
    problems = []
    for shard in dataset.manifest["shards"]:
        path = dataset.path / shard["file"]
        if not path.is_file():
            problems.append((path, f"listed in {MANIFEST} but missing"))
        elif path.stat().st_size != shard["bytes"]:
            problems.append((path, f"{path.stat().st_size} bytes, the manifest says {shard['bytes']} (corrupt or changed)"))
        elif (actual := file_sha256(path)) != shard["sha256"]:
            problems.append((path, f"sha256 {actual[:16]}... does not match the manifest's {shard['sha256'][:16]}... "
                                   "(corrupt or changed)"))
    listed = {shard["file"] for shard in dataset.manifest["shards"]}
    for folder in sorted(set(_ARTIFACT_DIRS.values())):
        for path in sorted((dataset.path / folder).glob("*.parquet")):
            if f"{folder}/{path.name}" not in listed:
                problems.append((path, f"not listed in {MANIFEST}; it is not part of version {dataset.version}"))
    return problems


def damaged_shards(dataset: Dataset) -> list[str]:
    """The manifest's shard files (relative paths) that are missing or do not match it."""
    listed = {shard["file"] for shard in dataset.manifest["shards"]}
    return sorted(str(path.relative_to(dataset.path)) for path, _ in shard_problems(dataset)
                  if str(path.relative_to(dataset.path)) in listed)


def iter_shard(
    path: Path, artifact: str, columns: Sequence[str] | None = None, batch_size: int = 256
) -> Iterator[pa.RecordBatch]:
    """Stream one shard after checking its schema (a wrong schema names the file and the field;
    a file that is no readable Parquet raises StoreError naming it)."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise StoreError(f"{path}: not a readable Parquet shard ({error}); {REPAIR_HINT}") from None
    check_schema(parquet.schema_arrow, artifact, source=str(path))
    try:
        yield from parquet.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError) as error:
        raise StoreError(f"{path}: the shard cannot be read to its end ({error}); {REPAIR_HINT}") from None


def is_complete(manifest: dict) -> bool:
    """False for a version published with allow_partial while chunks still waited (its manifest
    says ``complete: false``); a manifest from before that field is complete."""
    return manifest.get("complete", True) is not False


def _read_manifest(version_dir: Path) -> dict | None:
    try:
        manifest = json.loads((version_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _published(name_dir: Path) -> dict[str, bool]:
    """Every published version of a dataset folder, and whether it is complete."""
    if not name_dir.is_dir():
        return {}
    versions = {}
    for path in sorted(name_dir.iterdir()):
        if is_valid_name(path.name) and (manifest := _read_manifest(path)) is not None:
            versions[path.name] = is_complete(manifest)
    return versions


def list_versions(data_root: Path | str, name: str) -> list[str]:
    return list(_published(dataset_dir(data_root, name)))


def partial_versions(data_root: Path | str, name: str) -> list[str]:
    """The published versions that are partial (``complete: false``)."""
    return [version for version, done in _published(dataset_dir(data_root, name)).items() if not done]


def _latest_name(name_dir: Path) -> str | None:
    """What LATEST holds, if it is a version-shaped name; it is never followed outside the folder."""
    try:
        with open(name_dir / LATEST, "rb") as handle:
            raw = handle.read(256)
    except OSError:
        return None
    try:
        version = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return version if is_valid_name(version) else None


def read_latest(name_dir: Path) -> str | None:
    """The version LATEST names, if it names a published, complete version of this dataset; else None.

    Whatever the file holds (binary, a path such as ``../other``, a deleted version, a partial
    version written there by an earlier linkscan), it is never followed."""
    version = _latest_name(name_dir)
    if version is None:
        return None
    manifest = _read_manifest(name_dir / version)
    return version if manifest is not None and is_complete(manifest) else None


def latest_version(data_root: Path | str, name: str) -> str | None:
    return read_latest(dataset_dir(data_root, name))


def _why_no_latest(name_dir: Path) -> str:
    """Why a dataset folder has no LATEST to open, and what to do."""
    versions = _published(name_dir)
    complete = [version for version, done in versions.items() if done]
    partial = [version for version, done in versions.items() if not done]
    if not complete:
        if not partial:
            return f"{name_dir}: no version of this dataset is published"
        return (f"{name_dir}: no complete version is published, only the partial {', '.join(partial)}; "
                f"open it by its folder ({name_dir / partial[-1]}), or rerun its generate command without "
                "--allow-partial for the complete version")
    named = _latest_name(name_dir)
    if not (name_dir / LATEST).exists():
        problem = f"missing (published: {', '.join(complete)})"
    elif named in partial:
        problem = f"names {named}, a partial version (LATEST names complete versions only; complete: {', '.join(complete)})"
    else:
        problem = f"does not name a published version (published: {', '.join(complete)})"
    return (f"{name_dir / LATEST}: {problem}; rerun the generate command of the one you want (or "
            "`linkscan generate --repair --config <version folder>/dataset.json`), which repairs LATEST, "
            "or open a version folder directly")


def _is_dataset_folder(path: Path) -> bool:
    """A folder with a LATEST or a published version: a dataset, even when its LATEST is lost."""
    return (path / LATEST).exists() or bool(_published(path))


def open_dataset(target: Path | str, data_root: Path | str | None = None) -> Dataset:
    """Open a version folder, a dataset folder (its LATEST: the current complete version), or a
    dataset name under data_root. A partial version opens by its folder only."""
    path = Path(target)
    if (path / MANIFEST).is_file():
        return Dataset(path)
    candidates = [path]
    if data_root is not None and is_valid_name(str(target)):
        candidates.append(dataset_dir(data_root, str(target)))
    for name_dir in candidates:
        if _is_dataset_folder(name_dir):
            version = read_latest(name_dir)
            if version is None:
                raise StoreError(_why_no_latest(name_dir))
            return Dataset(name_dir / version)
    known = ""
    if data_root is not None:
        names = sorted(p.name for p in DataLayout(data_root).datasets.glob("*") if _is_dataset_folder(p))
        known = f" (datasets there: {', '.join(names)})" if names else " (it holds no dataset yet)"
    raise StoreError(
        f"{target}: not a dataset version folder (with {MANIFEST}), a dataset folder (with {LATEST}), "
        f"or a dataset name under {data_root or '<data>'}/datasets{known}"
    )
