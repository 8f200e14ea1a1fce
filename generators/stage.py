"""The generation stage: corpus -> chunks -> link graphs -> examples, published as a dataset version.

Three steps, so a flow can map the middle one over workers::

    plan = plan_generation(config, data_root)        # version id, shards and their input files
    for index in range(plan.num_shards):
        generate_shard(plan, index)                  # idempotent; writes through VersionStaging
    path = publish_generation(plan)                  # lock, aggregate stats, card, manifest

:func:`run_generation` does all three in one process. The version id is a hash of the resolved
config and the input fingerprints, so a rerun finds the same staging folder: shards finished by an
earlier (killed) run are skipped, the others are rebuilt, and since every choice is seeded from the
config and the chunk, the shards come out byte-identical either way.

A shard is a contiguous range of the corpus's content (``linkscan.pipeline.sharding``: JSONL byte ranges,
Parquet row groups, whole files where they cannot be split), so one large file feeds every
worker. Exact duplicates are removed corpus-wide in two passes: every shard's content keys first
(``shard_keys``, cheap: reading and cleaning), then each shard drops the documents an earlier
shard holds (the first occurrence in corpus order wins) besides its own repeats.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections import Counter, deque
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from linkscan.generators.config import GenerateConfig, version_config
from linkscan.generators.graph import graph_diagnostics, graph_links, link_graph
from linkscan.generators.base import Pending
from linkscan.generators.methods import ChunkOutcome, generate_for_chunk
from linkscan.generators.progress import GenerationProgress
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.layout import DataLayout, atomic_write
from linkscan.pipeline.sharding import InputPiece, plan_shards
from linkscan.pipeline.store import (
    DatasetLockedError, DatasetWriter, ShardWriter, VersionStaging, file_sha256, published_version, shard_name, version_id,
)
from linkscan.schemas import records_to_table

log = logging.getLogger("linkscan")

ARTIFACTS = ("documents", "chunks", "links", "examples")


class GenerationError(RuntimeError):
    """The stage cannot run as asked; the message says what to change."""


class EmptyDatasetError(GenerationError):
    """The run would publish no examples; the message names why (no inputs, every document or
    chunk dropped, with the top reasons). Nothing is published."""


class PendingChunksError(GenerationError):
    """Chunks wait for a back end that could not answer yet (an LLM server down, busy or slow).

    Nothing is published: rerunning the same command retries only the requests that failed, since
    every answer received is in the response cache. ``pending`` counts the chunks by reason.
    Transient, so an orchestrator's retries apply.
    """

    transient = True

    def __init__(self, name: str, version: str, pending: dict[str, int], shards: list[int]) -> None:
        self.name, self.version = name, version
        self.pending = dict(sorted(pending.items()))
        self.shards = sorted(shards)
        waiting = sum(self.pending.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.pending.items())
        super().__init__(
            f"{name} version {version}: {waiting} chunk(s) in shard(s) {', '.join(map(str, self.shards))} wait for "
            f"the LLM ({reasons}); nothing was published. Rerun the same command to retry only those "
            "(answers already received come from the cache)"
        )

    def __reduce__(self):  # picklable for Dask and Ray workers
        return (type(self), (self.name, self.version, self.pending, self.shards))

    @classmethod
    def combine(cls, errors: list["PendingChunksError"]) -> "PendingChunksError":
        pending: Counter = Counter()
        for error in errors:
            pending.update(error.pending)
        return cls(errors[0].name, errors[0].version, dict(pending), [s for e in errors for s in e.shards])


@dataclass(frozen=True)
class GenerationPlan:
    """What every shard task needs (picklable: plain values and the config)."""

    name: str
    version: str
    data_root: str
    config: GenerateConfig
    fingerprints: dict
    shard_inputs: tuple[tuple[InputPiece, ...], ...]
    already_published: str | None = None
    shard_notes: tuple[str, ...] = ()  # why fewer shards than asked, which files could not be split
    # Resolved by the caller from the environment variable the LLM config names; never persisted.
    api_key: str | None = field(default=None, repr=False, compare=False)

    @property
    def num_shards(self) -> int:
        return len(self.shard_inputs)


@dataclass(frozen=True)
class GenerationResult:
    name: str
    version: str
    path: Path
    manifest: dict
    newly_published: bool


def make_backend(config: GenerateConfig, *, cache_path: Path | None = None, api_key: str | None = None,
                 progress: GenerationProgress | None = None):
    """The back end ``config.generator`` names: the offline one, or the LLM one (helper module)."""
    if config.generator == "offline":
        from linkscan.generators.offline import OfflineBackend

        return OfflineBackend(config.offline, seed=config.seed)
    if config.generator == "llm":
        from linkscan.generators.llm.backend import LLMBackend

        return LLMBackend(config.llm, api_key=api_key, cache_path=cache_path,
                          on_usage=progress.llm.register if progress is not None else None)
    raise GenerationError(f"generator {config.generator!r}: use offline or llm")


def plan_generation(config: GenerateConfig, data_root: Path | str, *, api_key: str | None = None) -> GenerationPlan:
    """The version id, the shards and their input files; notes whether the version is already published."""
    from linkscan.pipeline.corpus import content_key, fingerprint_inputs, list_inputs

    if not config.corpus:
        raise GenerationError("no corpus given: pass --corpus PATH (files, folders or globs) or set corpus in the config")
    try:
        files = list_inputs(config.corpus)
    except ValueError as error:
        raise GenerationError(str(error)) from None
    _check_tokenizer(config.corpus_config.tokenizer)  # before any folder or lock is made for the version
    fingerprints = fingerprint_inputs(config.corpus)
    version = version_id(version_config(config), content_key(fingerprints))
    published = published_version(data_root, config.name, version)
    shards = plan_shards(files, config.num_shards)
    for note in shards.notes:
        log.info("%s %s: %s", config.name, version, note)
    return GenerationPlan(
        name=config.name,
        version=version,
        data_root=str(data_root),
        config=config,
        fingerprints=fingerprints,
        shard_inputs=shards.shards,
        already_published=str(published) if published else None,
        shard_notes=shards.notes,
        api_key=api_key,
    )


# -- the corpus-wide dedupe: content keys per shard, then what each shard drops --------------------
def _keys_path(staging: VersionStaging, kind: str, index: int) -> Path:
    return staging.dir / ".dedupe" / f"{kind}-{index:05d}.npy"


def _save_keys(path: Path, keys: np.ndarray) -> None:
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, keys, allow_pickle=False)
    atomic_write(path, buffer.getvalue())


def shard_keys(plan: GenerationPlan, index: int) -> int:
    """The first pass of the dedupe for one shard (idempotent): its documents' content keys, saved
    in the staging folder; returns how many. A flow maps this over the shards."""
    from linkscan.pipeline.corpus import document_keys

    staging = VersionStaging(plan.data_root, plan.name, plan.version)
    path = _keys_path(staging, "keys", index)
    if not path.is_file():
        _save_keys(path, document_keys(plan.shard_inputs[index], plan.config.corpus_config))
    return len(np.load(path, allow_pickle=False))


def prepare_dedupe(plan: GenerationPlan) -> dict:
    """After every shard's keys (computing those not there yet): for each shard, the keys an earlier
    shard holds, which it will drop. Returns the count of documents repeated across shards."""
    from linkscan.pipeline.corpus import keys_kept_earlier

    staging = VersionStaging(plan.data_root, plan.name, plan.version)
    if plan.num_shards < 2:
        return {"cross_shard_repeats": 0}
    for index in range(plan.num_shards):
        shard_keys(plan, index)
    keys = [np.load(_keys_path(staging, "keys", index), allow_pickle=False) for index in range(plan.num_shards)]
    repeated = keys_kept_earlier(keys)
    for index, found in enumerate(repeated):
        _save_keys(_keys_path(staging, "repeated", index), found)
    return {"cross_shard_repeats": int(sum(len(found) for found in repeated))}


def _cross_shard_duplicates(plan: GenerationPlan, staging: VersionStaging, index: int):
    """The content keys shard ``index`` must drop because an earlier shard keeps them (None for a
    plan of one shard)."""
    from linkscan.pipeline.corpus import DigestSet

    if plan.num_shards < 2:
        return None
    path = _keys_path(staging, "repeated", index)
    if not path.is_file():
        prepare_dedupe(plan)
    return DigestSet(np.load(path, allow_pickle=False))


def _check_tokenizer(name_or_path: str) -> None:
    from linkscan.pipeline.tokenize import load_tokenizer

    try:
        load_tokenizer(name_or_path)
    except (OSError, ValueError) as error:
        raise GenerationError(f"corpus_config.tokenizer: {error}") from None


def _shard_key(index: int) -> str:
    return f"shard-{index:05d}"


@dataclass
class _ShardResult:
    # Each document's rows go to the shard writers at once (as Arrow tables), so a shard of any
    # size holds about one row group per artifact in memory, not the whole shard.
    writers: dict[str, ShardWriter] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    drops: Drops = field(default_factory=Drops)
    edge_distances: Counter = field(default_factory=Counter)
    positives: Counter = field(default_factory=Counter)  # positives per example -> examples
    link_distances: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    pending: Counter = field(default_factory=Counter)  # chunks waiting for the back end, by reason
    attempt_reasons: Counter = field(default_factory=Counter)  # every failed attempt, by reason

    def add_document(self, document, chunks, outcomes: list[ChunkOutcome]) -> None:
        """Write one document's rows. Its chunks go out in windows of ``_WRITE_WINDOW``, so a very
        long document (a 50 MB book has 6,500 chunks) never becomes one Arrow table per artifact;
        the rows and their order are the same either way."""
        self.counts["documents"] += 1
        self.counts["chunks"] += len(chunks)
        self.counts["document_chars"] += document.n_chars
        self.sources[document.source.split(":")[0]] += 1
        self.writers["documents"].write(records_to_table("documents", [document]))  # with its language score
        document_links: list = []
        edges = 0
        for start in range(0, len(chunks), _WRITE_WINDOW):
            window = chunks[start:start + _WRITE_WINDOW]
            self.writers["chunks"].write(records_to_table("chunks", window))
            links, examples = self._outcomes(outcomes[start:start + _WRITE_WINDOW])
            # Links never leave their chunk, so the graphs of the windows are disjoint and their
            # diagnostics add up to the document's.
            graph = link_graph(window, links)
            diagnostics = graph_diagnostics(graph)
            self.counts["graph_units"] += diagnostics["units"]
            self.counts["graph_edges"] += diagnostics["edges"]
            self.counts["graph_linked_units"] += diagnostics["linked_units"]
            self.edge_distances.update(diagnostics["distance_histogram"])
            edges += diagnostics["edges"]
            document_links.extend(graph_links(graph))
            self.writers["examples"].write(records_to_table("examples", examples))
            self.counts["examples"] += len(examples)
        self.counts["documents_without_links"] += edges == 0
        document_links.sort(key=lambda link: (link.chunk_id, link.src, link.dst))  # graph_links' order, document-wide
        self.writers["links"].write(records_to_table("links", document_links))
        self.counts["links"] += len(document_links)

    def _outcomes(self, outcomes: list[ChunkOutcome]) -> tuple[list, list]:
        """The links seen and the examples made by some chunks, with their counts."""
        links, examples = [], []
        for outcome in outcomes:
            if outcome.pending_reason is not None:  # neither a drop nor an example: it waits
                self.pending[outcome.pending_reason] += 1
                continue
            links.extend(outcome.links)
            self.counts["anchors_tried"] += outcome.anchors_tried
            self.counts["anchors_without_link"] += outcome.anchors_without_link
            self.counts["anchors_skipped"] += outcome.anchors_skipped
            self.attempt_reasons.update(outcome.attempt_reasons)
            if outcome.example is None:
                # Namespaced apart from the corpus stage's reasons (documents and chunks dropped).
                self.drops.add(f"no_example:{outcome.drop_reason or 'unknown'}")
                continue
            example = outcome.example
            examples.append(example)
            self.positives[len(example.positives)] += 1
            self.counts["units_in_examples"] += len(example.sentences)
            self.counts["positive_units"] += len(example.positives)
            self.counts["example_tokens"] += example.n_tokens
            if example.link_distance is not None:
                self.link_distances[example.link_distance] += 1
        return links, examples


# Chunks of one document written (and their link graph built) together.
_WRITE_WINDOW = 256


async def _generate(plan: GenerationPlan, inputs: list[InputPiece], backend, tokenizer, result: _ShardResult,
                    duplicates, progress: GenerationProgress | None) -> None:
    """Chunks of consecutive documents in flight together (up to ``concurrency``), results in order."""
    from linkscan.pipeline.corpus import corpus_to_chunks

    config = plan.config
    semaphore = asyncio.Semaphore(config.concurrency)

    async def one(chunk) -> ChunkOutcome:
        async with semaphore:
            try:
                return await generate_for_chunk(
                    chunk, backend, tokenizer, config.method, config.link, config.passage, config.seed
                )
            except Pending as waiting:
                return ChunkOutcome(pending_reason=waiting.reason)


    async def finish_oldest() -> int:
        document_done, chunks_done, outcomes = pending.popleft()
        examples_before = result.counts["examples"]
        result.add_document(document_done, chunks_done, await outcomes)
        if progress is not None:
            progress.document(len(chunks_done), result.counts["examples"] - examples_before)
        backend.forget_document(chunks_done)
        return len(chunks_done)

    pending: deque = deque()
    in_flight = 0
    on_read = progress.read if progress is not None else None
    try:
        for document, chunks in corpus_to_chunks(inputs, config.corpus_config, result.drops, listed=True,
                                                 duplicates=duplicates, counts=result.counts, on_read=on_read):
            backend.prepare_document(chunks)  # the offline back end weighs terms over the whole document
            pending.append((document, chunks, asyncio.gather(*(one(c) for c in chunks))))
            in_flight += len(chunks)
            while pending and in_flight >= 2 * config.concurrency:
                in_flight -= await finish_oldest()
            await asyncio.sleep(0)  # let requests start while the next document is read
        while pending:
            await finish_oldest()
    finally:
        # After an error (a 401 for one chunk): the later documents' chunks end before the client
        # closes, and their errors are collected here instead of asyncio logging them as lost.
        for *_, outcomes in pending:
            outcomes.cancel()
        await asyncio.gather(*(outcomes for *_, outcomes in pending), return_exceptions=True)


def _run_backend(plan: GenerationPlan, inputs: list[InputPiece], result: _ShardResult, api_key: str | None,
                 duplicates, progress: GenerationProgress | None) -> dict | None:
    from linkscan.pipeline.tokenize import load_tokenizer

    config = plan.config
    tokenizer = load_tokenizer(config.corpus_config.tokenizer)
    backend = make_backend(config, cache_path=DataLayout(plan.data_root).llm_cache, api_key=api_key, progress=progress)

    async def main() -> None:
        try:
            await _generate(plan, inputs, backend, tokenizer, result, duplicates, progress)
        finally:
            await backend.aclose()

    try:
        asyncio.run(main())
    finally:
        backend.close()
    return backend.stats()


def generate_shard(plan: GenerationPlan, index: int, *, api_key: str | None = None,
                   progress: GenerationProgress | None = None) -> dict:
    """Generate shard ``index`` into the staging folder and return its statistics.

    Idempotent: a shard whose statistics were saved (they are saved after its files) is not
    generated again; its saved statistics are returned. ``api_key`` (for the LLM back end) overrides
    the plan's, so a worker can resolve the key itself and the plan, which an orchestrator may
    store as a parameter, need not carry it.
    """
    if not 0 <= index < plan.num_shards:
        raise GenerationError(f"shard index {index} outside 0..{plan.num_shards - 1} of version {plan.version}")
    staging = VersionStaging(plan.data_root, plan.name, plan.version)
    if plan.already_published:
        return {"shard": index, "already_published": plan.already_published}
    done = staging.load_stats(_shard_key(index))
    if done is not None and all(staging.has_shard(a, index, plan.num_shards) for a in ARTIFACTS):
        log.info("%s %s: shard %d already generated, skipping", plan.name, plan.version, index)
        if progress is not None:
            progress.skip(plan.shard_inputs[index])
        return done
    staging.dir.mkdir(parents=True, exist_ok=True)
    inputs = list(plan.shard_inputs[index])
    duplicates = _cross_shard_duplicates(plan, staging, index)
    with ExitStack() as files:  # each shard file is renamed into place only if the whole shard succeeds
        writers = {a: files.enter_context(staging.shard_writer(a, index, plan.num_shards)) for a in ARTIFACTS}
        result = _ShardResult(writers=writers)
        llm_stats = _run_backend(plan, inputs, result, api_key or plan.api_key, duplicates, progress)
        if result.pending and not plan.config.allow_partial:
            # Raised inside the block: the shard's temporary files are removed, nothing is renamed.
            raise PendingChunksError(plan.name, plan.version, dict(result.pending), [index])
    stats = {
        "shard": index,
        "inputs": [piece.describe() for piece in inputs],
        "counts": dict(sorted(result.counts.items())),
        "drop_reasons": result.drops.as_dict(),
        "edge_distance_histogram": dict(sorted(result.edge_distances.items())),
        "positives_histogram": {str(k): v for k, v in sorted(result.positives.items())},
        "link_distances": {str(k): v for k, v in sorted(result.link_distances.items())},
        "sources": dict(sorted(result.sources.items())),
        "pending_chunks": dict(sorted(result.pending.items())),
        "attempt_reasons": dict(sorted(result.attempt_reasons.items())),
        "llm": llm_stats,
    }
    staging.save_stats(_shard_key(index), stats)
    return stats


def _publish_with(writer: DatasetWriter, plan: GenerationPlan) -> Path:
    from linkscan.generators.report import manifest_fields, render_card, why_empty

    if writer.is_published:
        return writer.final_dir
    shard_stats = []
    missing = []
    for index in range(plan.num_shards):
        stats = writer.staging.load_stats(_shard_key(index))
        if stats is None or not all(writer.has_shard(a, index, plan.num_shards) for a in ARTIFACTS):
            missing.append(index)
        else:
            shard_stats.append(stats)
    if missing:
        raise GenerationError(
            f"{plan.name} version {plan.version}: shard(s) {missing} not generated yet; "
            "run generate_shard for them (or run_generation, which resumes) before publishing"
        )
    fields = manifest_fields(plan.config, plan.shard_inputs, plan.shard_notes, shard_stats)
    if not fields["counts"]["examples"]:
        raise EmptyDatasetError(f"{plan.name} version {plan.version}: {why_empty(fields)}; nothing was published")
    card = render_card(plan.name, plan.version, plan.config.model_dump(mode="json"), plan.fingerprints, fields)
    return writer.publish(fields, card)


def _writer(plan: GenerationPlan) -> DatasetWriter:
    return DatasetWriter(plan.data_root, plan.name, plan.version, plan.config.model_dump(mode="json"), plan.fingerprints)


def holding_version(plan: GenerationPlan) -> DatasetWriter:
    """The version lock for a whole run whose shards are generated elsewhere (flow tasks, cluster
    workers): ``with holding_version(plan) as writer:`` generate the shards, then
    ``publish_generation(plan, writer)``. A second run of the same version is refused at once
    (``DatasetLockedError``, naming the holder's pid) instead of writing the same shards."""
    return _writer(plan)


def publish_generation(plan: GenerationPlan, writer: DatasetWriter | None = None) -> Path:
    """Aggregate the shards' statistics, write card and manifest; the version path. Takes the
    version lock, unless ``writer`` (from ``holding_version``) already holds it."""
    if writer is not None:
        return _publish_with(writer, plan)
    with _writer(plan) as held:
        return _publish_with(held, plan)


def run_generation(config: GenerateConfig, data_root: Path | str, *, api_key: str | None = None,
                   progress: Callable[[GenerationPlan], ContextManager[GenerationProgress]] | None = None,
                   ) -> GenerationResult:
    """Plan, generate every shard (resuming) and publish, in this process, holding the version lock.

    ``progress``, given the plan, opens a display of the run's ``GenerationProgress`` (the CLI's
    ``lambda plan: show_progress(GenerationProgress(...))``)."""
    import json

    from linkscan.pipeline.store import MANIFEST

    plan = plan_generation(config, data_root, api_key=api_key)
    newly = False
    if plan.already_published:
        path = Path(plan.already_published)
        repair_latest(plan)
    else:
        with _writer(plan) as writer, (progress(plan) if progress is not None else nullcontext()) as shown:
            prepare_dedupe(plan)
            waiting = []
            for index in range(plan.num_shards):  # every shard, so one outage leaves all the rest cached
                try:
                    generate_shard(plan, index, progress=shown)
                except PendingChunksError as error:
                    waiting.append(error)
            if waiting:
                raise PendingChunksError.combine(waiting)
            path = _publish_with(writer, plan)
            newly = True
    manifest = json.loads((path / MANIFEST).read_text())
    return GenerationResult(plan.name, plan.version, path, manifest, newly)


def repair_latest(plan: GenerationPlan) -> None:
    """Point LATEST at this published version when its publication was cut off before LATEST was
    written (a kill, a full disk), or LATEST names no published version; otherwise leave it."""
    try:
        with _writer(plan):  # entering a published version's writer finishes its publication
            pass
    except DatasetLockedError:
        pass  # its holder finishes it


@dataclass(frozen=True)
class RepairResult:
    path: Path
    repaired: list[str]  # shard files rewritten, relative to the version folder


def _made_by_other_code(plan: GenerationPlan) -> tuple[str, dict] | None:
    """The published version of ``plan``'s inputs and settings that other code made, with that
    code's ``code_version``, or None."""
    from linkscan.pipeline.corpus import content_key
    from linkscan.pipeline.store import MANIFEST, code_fingerprint, dataset_dir

    for manifest_path in sorted(dataset_dir(plan.data_root, plan.name).glob(f"*/{MANIFEST}")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        code = manifest.get("code_version") or {}
        fingerprint = code.get("code_fingerprint") or ""  # "": made before versions named their code
        if fingerprint != code_fingerprint() and manifest.get("version") == version_id(
                version_config(plan.config, code=fingerprint), content_key(plan.fingerprints)):
            return manifest["version"], code
    return None


def repair_version(config: GenerateConfig, data_root: Path | str, *, api_key: str | None = None) -> RepairResult:
    """Rebuild exactly the damaged shards of a published version, in place.

    Every shard is checked against the manifest (size and sha256); the shard groups with a bad or
    missing file are generated again (the LLM's answers come from the cache) and each rebuilt
    file replaces the damaged one only when its sha256 is the manifest's, so the repaired version
    is byte for byte the one that was published.
    """
    import dataclasses

    from linkscan.pipeline.store import Dataset, damaged_shards

    plan = plan_generation(config, data_root, api_key=api_key)
    if not plan.already_published and (made_by := _made_by_other_code(plan)) is not None:
        version, code = made_by
        raise GenerationError(
            f"{plan.name} version {version} has these inputs and settings but was made by other code "
            f"(linkscan {code.get('linkscan')}, commit {code.get('git_commit') or 'unknown'}); repair it with that "
            "code, or run the same command without --repair to generate a new version with this code"
        )
    if not plan.already_published:
        raise GenerationError(
            f"{plan.name} version {plan.version} is not published (with these inputs and settings); "
            "nothing to repair: run the same command without --repair to generate it"
        )
    dataset = Dataset(Path(plan.already_published))
    bad = damaged_shards(dataset)
    if not bad:
        return RepairResult(dataset.path, [])
    by_file = {shard["file"]: shard for shard in dataset.manifest["shards"]}
    indices = sorted({_shard_index(file) for file in bad})
    rebuild = dataclasses.replace(plan, already_published=None)
    with _writer(plan) as writer:
        staging = writer.staging
        for index in indices:
            for artifact in ARTIFACTS:  # start the group afresh in the staging folder
                relative = shard_name(artifact, index, plan.num_shards)
                (staging.dir / relative).unlink(missing_ok=True)
            (staging.dir / ".stats" / f"{_shard_key(index)}.json").unlink(missing_ok=True)
            generate_shard(rebuild, index)
        for relative in bad:
            rebuilt = staging.dir / relative
            if file_sha256(rebuilt) != by_file[relative]["sha256"]:
                raise GenerationError(
                    f"{dataset.path / relative}: the rebuilt shard differs from the one published (the code, the "
                    "tokenizer or the LLM's answers changed since); generate a new version instead"
                )
        for relative in bad:
            os.replace(staging.dir / relative, dataset.path / relative)
        shutil.rmtree(staging.dir, ignore_errors=True)
    dataset.verify()
    return RepairResult(dataset.path, bad)


def _shard_index(relative: str) -> int:
    """3 from 'data/train-00003-of-00008.parquet'."""
    return int(Path(relative).name.rsplit("-of-", 1)[0].rsplit("-", 1)[1])
