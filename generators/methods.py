"""The three generation methods: link (the paper's), chunk and pair (its ablation baselines).

A method owns sampling and filtering: which anchor or passage, which window, which link to keep,
and whether the evidence is good enough. It asks a back end (:mod:`generators.base`) for links,
a question and evidence, and turns one chunk into at most one example plus the links it saw.
Every chunk that yields no example is counted under the reason of its last failed attempt.

All random choices come from a ``random.Random`` seeded with the config seed, the method and the
chunk id, so a chunk's outcome does not depend on which shard or worker processes it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from generators.base import (
    Backend,
    EvidenceRequest,
    LinkCandidate,
    LinkRequest,
    QuestionDraft,
    QuestionRequest,
    Refusal,
)
from generators.config import LinkMethodConfig, Method, PassageMethodConfig
from pipeline.assemble import assemble_example
from schemas import Chunk, Example, Link

@dataclass
class ChunkOutcome:
    """What one chunk gave: at most one example, the links seen, and why not (if not)."""

    example: Example | None = None
    links: list[Link] = field(default_factory=list)
    drop_reason: str | None = None
    # Set when the back end could not answer yet (``Pending``): the chunk waits for a rerun.
    pending_reason: str | None = None
    anchors_tried: int = 0
    anchors_without_link: int = 0


class _Attempt(Exception):
    """One anchor or passage failed; ``reason`` is counted if it was the chunk's last attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def chunk_rng(seed: int, method: str, chunk_id: str) -> random.Random:
    return random.Random(f"{seed}:{method}:{chunk_id}")


def around(units: Sequence[int], context: int, n_units: int) -> list[int]:
    """The units plus ``context`` neighbours on each side, clipped to the chunk."""
    return list(range(max(0, min(units) - context), min(n_units, max(units) + context + 1)))


def link_window(start: int, anchor_units: int, window_units: int, n_units: int, rng: random.Random) -> list[int]:
    """The paper's window: [start-10, start+190) or [start-185, start+15) for 200 units, whichever is
    longer after clipping to the chunk (ties at random); the anchor itself is excluded."""
    before_short, before_long = round(window_units * 0.05), window_units - round(window_units * 0.075)
    options = [
        (max(0, start - before_short), min(n_units, start - before_short + window_units)),
        (max(0, start - before_long), min(n_units, start - before_long + window_units)),
    ]
    lengths = [hi - lo for lo, hi in options]
    if lengths[0] == lengths[1]:
        lo, hi = options[rng.randrange(2)]
    else:
        lo, hi = options[0] if lengths[0] > lengths[1] else options[1]
    anchor = range(start, start + anchor_units)
    return [u for u in range(lo, hi) if u not in anchor]


def gap_to(anchor: Sequence[int], target: int) -> int:
    """Units from the nearest anchor unit to ``target``."""
    return min(abs(target - a) for a in anchor)


def _link_record(chunk: Chunk, anchor: Sequence[int], candidate: LinkCandidate, finder: str) -> Link:
    source = candidate.source if candidate.source in anchor else min(anchor, key=lambda a: (abs(candidate.target - a), a))
    return Link(
        doc_id=chunk.doc_id,
        chunk_id=chunk.chunk_id,
        src=source,
        dst=candidate.target,
        distance=abs(candidate.target - source),
        score=float(candidate.score),
        finder=finder,
        reason=candidate.reason,
    )


async def _question(backend: Backend, request: QuestionRequest) -> QuestionDraft:
    try:
        draft = await backend.write_question(request)
    except Refusal as refusal:
        raise _Attempt(f"question_{refusal.reason}") from None
    if not draft.question.strip():
        raise _Attempt("question_empty")
    if any(len(u.strip()) >= 20 and u.strip() in draft.question for u in request.units):
        raise _Attempt("question_pastes_unit")
    return draft


async def _evidence(backend: Backend, request: EvidenceRequest) -> list[int]:
    try:
        picked = await backend.pick_evidence(request)
    except Refusal as refusal:
        raise _Attempt(f"evidence_{refusal.reason}") from None
    allowed = set(request.candidates)
    evidence = sorted({u for u in picked if u in allowed})
    if not evidence:
        raise _Attempt("evidence_empty")
    for side in request.sides:
        if not set(side) & set(evidence):
            raise _Attempt("evidence_one_side")
    return evidence


async def _question_and_evidence(
    backend: Backend, chunk: Chunk, passages: list[list[int]], sides: list[list[int]], link: LinkCandidate | None = None
) -> tuple[QuestionDraft, list[int]]:
    """Ask for a question over ``passages``, then for evidence among ``sides`` (which it must all cover)."""
    draft = await _question(backend, QuestionRequest(chunk.chunk_id, chunk.sentences, passages, link=link))
    candidates = sorted(set().union(*map(set, sides)))
    evidence = await _evidence(backend, EvidenceRequest(chunk.chunk_id, chunk.sentences, draft, candidates, sides))
    return draft, evidence


def _finish(
    outcome: ChunkOutcome, chunk: Chunk, backend: Backend, tokenizer, draft: QuestionDraft, evidence: list[int], **fields
) -> ChunkOutcome:
    outcome.example = assemble_example(
        chunk, question=draft.question, positives=evidence, generator=backend.name,
        prompt_version=backend.prompt_version, tokenizer=tokenizer, **fields,
    )
    outcome.drop_reason = None
    return outcome


async def link_example(
    chunk: Chunk, backend: Backend, tokenizer, config: LinkMethodConfig, seed: int
) -> ChunkOutcome:
    """The link method: anchor, window, links, longest link >= min distance, question, evidence."""
    outcome = ChunkOutcome()
    n = len(chunk.sentences)
    if n < config.anchor_units + config.min_link_distance:
        outcome.drop_reason = "chunk_too_few_units"
        return outcome
    rng = chunk_rng(seed, "link", chunk.chunk_id)
    starts = list(range(0, n - config.anchor_units + 1))
    rng.shuffle(starts)
    seen: set[tuple[int, int]] = set()
    for start in starts[: config.anchor_attempts]:
        anchor = list(range(start, start + config.anchor_units))
        window = link_window(start, config.anchor_units, config.window_units, n, rng)
        outcome.anchors_tried += 1
        try:
            try:
                found = await backend.find_links(LinkRequest(chunk.chunk_id, chunk.sentences, anchor, window))
            except Refusal as refusal:  # no links found, or none that could be read: no usable link
                outcome.anchors_without_link += 1
                raise _Attempt(f"links_{refusal.reason}") from None
            in_window = set(window)
            found = [c for c in found if c.target in in_window]
            for candidate in found:
                record = _link_record(chunk, anchor, candidate, backend.name)
                if (record.src, record.dst) not in seen:
                    seen.add((record.src, record.dst))
                    outcome.links.append(record)
            usable = [c for c in found if gap_to(anchor, c.target) >= config.min_link_distance]
            if not usable:
                outcome.anchors_without_link += 1
                raise _Attempt("no_usable_link" if not found else "links_too_short")
            # The paper keeps the longest-range link; ties go to the stronger, then the earlier.
            best = max(usable, key=lambda c: (gap_to(anchor, c.target), c.score, -c.target))
            link_side = around([best.target], config.link_context, n)
            sides = [around(anchor, config.anchor_context, n), link_side]
            draft, evidence = await _question_and_evidence(backend, chunk, [anchor, link_side], sides, link=best)
        except _Attempt as failed:
            outcome.drop_reason = failed.reason
            continue
        return _finish(
            outcome, chunk, backend, tokenizer, draft, evidence, anchor=anchor, method="link",
            link_target=best.target, link_distance=gap_to(anchor, best.target),
        )
    return outcome


async def chunk_example(
    chunk: Chunk, backend: Backend, tokenizer, config: PassageMethodConfig, seed: int
) -> ChunkOutcome:
    """The chunk method: one passage, a question about it, evidence from the passage +- context."""
    outcome = ChunkOutcome()
    n = len(chunk.sentences)
    if n < config.passage_units:
        outcome.drop_reason = "chunk_too_few_units"
        return outcome
    rng = chunk_rng(seed, "chunk", chunk.chunk_id)
    starts = list(range(0, n - config.passage_units + 1))
    rng.shuffle(starts)
    for start in starts[: config.attempts]:
        passage = list(range(start, start + config.passage_units))
        outcome.anchors_tried += 1
        try:
            sides = [around(passage, config.passage_context, n)]
            draft, evidence = await _question_and_evidence(backend, chunk, [passage], sides)
        except _Attempt as failed:
            outcome.drop_reason = failed.reason
            continue
        return _finish(outcome, chunk, backend, tokenizer, draft, evidence, anchor=passage, method="chunk")
    return outcome


async def pair_example(
    chunk: Chunk, backend: Backend, tokenizer, config: PassageMethodConfig, seed: int
) -> ChunkOutcome:
    """The pair method: two random passages far apart, a question needing both, evidence from both."""
    outcome = ChunkOutcome()
    n = len(chunk.sentences)
    size = config.passage_units
    if n < 2 * size + config.min_pair_distance:
        outcome.drop_reason = "chunk_too_few_units"
        return outcome
    rng = chunk_rng(seed, "pair", chunk.chunk_id)
    for _ in range(config.attempts):
        first_start = rng.randrange(0, n - 2 * size - config.min_pair_distance + 1)
        second_start = rng.randrange(first_start + size + config.min_pair_distance, n - size + 1)
        first = list(range(first_start, first_start + size))
        second = list(range(second_start, second_start + size))
        outcome.anchors_tried += 1
        sides = [around(first, config.passage_context, n), around(second, config.passage_context, n)]
        try:
            draft, evidence = await _question_and_evidence(backend, chunk, [first, second], sides)
        except _Attempt as failed:
            outcome.drop_reason = failed.reason
            continue
        return _finish(
            outcome, chunk, backend, tokenizer, draft, evidence, anchor=first, method="pair",
            link_target=None, link_distance=gap_to(first, second_start),
        )
    return outcome


async def generate_for_chunk(
    chunk: Chunk,
    backend: Backend,
    tokenizer,
    method: Method,
    link: LinkMethodConfig,
    passage: PassageMethodConfig,
    seed: int,
) -> ChunkOutcome:
    if method == "link":
        return await link_example(chunk, backend, tokenizer, link, seed)
    if method == "chunk":
        return await chunk_example(chunk, backend, tokenizer, passage, seed)
    if method == "pair":
        return await pair_example(chunk, backend, tokenizer, passage, seed)
    raise ValueError(f"method {method!r}: use link, chunk or pair")
