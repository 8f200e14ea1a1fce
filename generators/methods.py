"""The three generation methods: link (the paper's), chunk and pair (its ablation baselines).

A method owns sampling and filtering: which anchor or passage, which window, which link to keep,
and whether the evidence is good enough. It asks a back end (:mod:`linkscan.generators.base`) for links,
a question and evidence, and turns one chunk into at most one example plus the links it saw.
Every chunk that yields no example is counted under the reason of its last failed attempt.

All random choices come from a ``random.Random`` seeded with the config seed, the method and the
chunk id, so a chunk's outcome does not depend on which shard or worker processes it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from linkscan.generators.base import (
    Backend,
    EvidenceRequest,
    LinkCandidate,
    LinkRequest,
    QuestionDraft,
    QuestionRequest,
    Refusal,
)
from linkscan.generators.config import LinkMethodConfig, Method, PassageMethodConfig
from linkscan.pipeline.assemble import assemble_example
from linkscan.schemas import Chunk, Example, Link

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
    backend: Backend, chunk: Chunk, method: str, passages: list[list[int]], sides: list[list[int]],
    link: LinkCandidate | None = None,
) -> tuple[QuestionDraft, list[int]]:
    """Ask for a question over ``passages``, then for evidence among ``sides`` (which it must all cover)."""
    draft = await _question(backend, QuestionRequest(chunk.chunk_id, chunk.sentences, passages, method, link=link))
    candidates = sorted(set().union(*map(set, sides)))
    evidence = await _evidence(backend, EvidenceRequest(chunk.chunk_id, chunk.sentences, draft, candidates, sides))
    return draft, evidence


@dataclass(frozen=True)
class _Made:
    """What one successful attempt gives: the question, its evidence, and the example's fields."""

    draft: QuestionDraft
    evidence: list[int]
    fields: dict


async def _first_that_works(
    outcome: ChunkOutcome, chunk: Chunk, backend: Backend, tokenizer, method: str, attempts, attempt,
) -> ChunkOutcome:
    """The attempt loop every method shares: try ``attempt(candidate)`` for each candidate (an
    anchor, a passage, a pair) until one makes an example; a failed one records its reason, and the
    last failure is the chunk's drop reason."""
    for candidate in attempts:
        outcome.anchors_tried += 1
        try:
            made = await attempt(candidate)
        except _Attempt as failed:
            outcome.drop_reason = failed.reason
            continue
        outcome.example = assemble_example(
            chunk, question=made.draft.question, positives=made.evidence, generator=backend.name,
            prompt_version=backend.prompt_version, tokenizer=tokenizer, method=method, **made.fields,
        )
        outcome.drop_reason = None
        return outcome
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

    async def attempt(start: int) -> _Made:
        anchor = list(range(start, start + config.anchor_units))
        window = link_window(start, config.anchor_units, config.window_units, n, rng)
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
        draft, evidence = await _question_and_evidence(backend, chunk, "link", [anchor, link_side], sides, link=best)
        return _Made(draft, evidence, {"anchor": anchor, "link_target": best.target,
                                       "link_distance": gap_to(anchor, best.target)})

    return await _first_that_works(outcome, chunk, backend, tokenizer, "link", starts[: config.anchor_attempts], attempt)


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

    async def attempt(start: int) -> _Made:
        passage = list(range(start, start + config.passage_units))
        sides = [around(passage, config.passage_context, n)]
        draft, evidence = await _question_and_evidence(backend, chunk, "chunk", [passage], sides)
        return _Made(draft, evidence, {"anchor": passage})

    return await _first_that_works(outcome, chunk, backend, tokenizer, "chunk", starts[: config.attempts], attempt)


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

    def pairs():  # drawn one at a time, as attempts are made, so the random sequence is the same
        for _ in range(config.attempts):
            first_start = rng.randrange(0, n - 2 * size - config.min_pair_distance + 1)
            yield first_start, rng.randrange(first_start + size + config.min_pair_distance, n - size + 1)

    async def attempt(pair: tuple[int, int]) -> _Made:
        first_start, second_start = pair
        first = list(range(first_start, first_start + size))
        second = list(range(second_start, second_start + size))
        sides = [around(first, config.passage_context, n), around(second, config.passage_context, n)]
        draft, evidence = await _question_and_evidence(backend, chunk, "pair", [first, second], sides)
        return _Made(draft, evidence, {"anchor": first, "link_target": None,
                                       "link_distance": gap_to(first, second_start)})

    return await _first_that_works(outcome, chunk, backend, tokenizer, "pair", pairs(), attempt)


# A method is one function and one entry here.
METHODS = {"link": link_example, "chunk": chunk_example, "pair": pair_example}


async def generate_for_chunk(
    chunk: Chunk,
    backend: Backend,
    tokenizer,
    method: Method,
    link: LinkMethodConfig,
    passage: PassageMethodConfig,
    seed: int,
) -> ChunkOutcome:
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use {', '.join(METHODS)}")
    return await METHODS[method](chunk, backend, tokenizer, link if method == "link" else passage, seed)
