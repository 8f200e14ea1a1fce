"""The three generation methods: link (the paper's), chunk and pair (its ablation baselines).

A method owns sampling and filtering: which anchor or passage, which window, which link to keep,
and whether the question and the evidence are good enough. It asks a back end
(:mod:`linkscan.generators.base`) for links, a question and evidence, and turns one chunk into at
most one example plus the links it saw. Every chunk that yields no example is counted under the
reason of its last failed attempt, and every failed attempt under its own reason.

The checks are the same whatever answers: a question must not paste or restate a unit, and one
about two passages must name something of each; evidence must hold a unit of each side the
question needs (for a link: of the anchor itself, and of the link's end at least
``min_link_distance`` from it) and at most ``max_evidence_share`` of the candidates.

All random choices come from a ``random.Random`` seeded with the config seed, the method and the
chunk id, so a chunk's outcome does not depend on which shard or worker processes it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from linkscan.generators.base import (
    Backend,
    EvidenceRequest,
    LinkCandidate,
    LinkRequest,
    QuestionDraft,
    QuestionRequest,
    NothingToAsk,
    Refusal,
)
from linkscan.generators.wording import content_stems, one_sided, only_in, restates
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
    # Anchors passed over at no cost: no window unit far enough, or nothing the back end could ask.
    anchors_skipped: int = 0
    # Every failed attempt's reason (the chunk's drop reason is only its last one).
    attempt_reasons: Counter = field(default_factory=Counter)


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


def link_window(start: int, anchor_units: int, window_units: int, n_units: int, rng: random.Random,
                min_distance: int = 1) -> list[int]:
    """The paper's window: [start-10, start+190) or [start-185, start+15) for 200 units, whichever is
    longer after clipping to the chunk (ties at random), without the units closer than
    ``min_distance`` to the anchor (a link to them could never be kept)."""
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
    return [u for u in range(lo, hi) if gap_to(anchor, u) >= min_distance]


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


def question_problem(question: str, units: Sequence[str], passages: Sequence[Sequence[int]]) -> tuple[str, str] | None:
    """Why a question asked over ``passages`` fails the method's checks, as (reason, what to
    change), or None: it must not paste or restate a unit, most of what it names must be in the
    passages (not in the prompt's worked example, not made up), and a two-passage question must
    name something that only the first passage states and something that only the second states."""
    pasted = any(len(u.strip()) >= 20 and u.strip() in question for u in units)
    if pasted or any(restates(question, units[u]) for passage in passages for u in passage):
        advice = ("The question repeats a sentence of the passages nearly word for word, so it gives its own "
                  "answer away. Write a new question in your own words.")
        return ("question_pastes_unit" if pasted else "question_restates_unit"), advice
    shown = " ".join(units[u] for passage in passages for u in passage)
    asked = content_stems(question)
    if asked and len(asked & content_stems(shown)) < 0.5 * len(asked):
        return "question_not_grounded", ("Most of what the question names is in neither passage. Write a new "
                                         "question about what the passages say.")
    if len(passages) == 2:
        sides = [[units[u] for u in passage] for passage in passages]
        missing = one_sided(question, *sides)
        if missing:
            name, side, other = ("PASSAGE_A", sides[0], sides[1]) if missing == "a" else ("PASSAGE_B", sides[1], sides[0])
            words = ", ".join(json.dumps(w) for w in only_in(side, other))
            return "question_one_sided", (
                f"The question takes nothing from {name}: it names none of the things only {name} states "
                f"(such as {words}). Write a new question that needs a fact from PASSAGE_A and a fact from PASSAGE_B.")
    return None


async def _question(backend: Backend, request: QuestionRequest) -> QuestionDraft:
    def critique(question: str) -> str | None:
        problem = question_problem(question, request.units, request.passages)
        return problem[1] if problem else None

    try:
        draft = await backend.write_question(dataclasses.replace(request, critique=critique))
    except Refusal as refusal:
        raise _Attempt(f"question_{refusal.reason}") from None
    if not draft.question.strip():
        raise _Attempt("question_empty")
    problem = question_problem(draft.question, request.units, request.passages)
    if problem:
        raise _Attempt(problem[0])
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
    if request.max_picks is not None and len(evidence) > request.max_picks:
        raise _Attempt("evidence_too_broad")  # nearly every candidate: no choice was made
    for side in request.sides:
        if not set(side) & set(evidence):
            raise _Attempt("evidence_one_side")
    return evidence


async def _question_and_evidence(
    backend: Backend, chunk: Chunk, method: str, passages: list[list[int]], candidates: list[int],
    sides: list[list[int]], max_share: float, link: LinkCandidate | None = None,
) -> tuple[QuestionDraft, list[int]]:
    """Ask for a question over ``passages``, then for evidence among ``candidates`` that holds a
    unit of every one of ``sides`` and at most ``max_share`` of the candidates."""
    draft = await _question(backend, QuestionRequest(chunk.chunk_id, chunk.sentences, passages, method, link=link))
    max_picks = max(len(sides), math.floor(max_share * len(candidates)))
    evidence = await _evidence(backend, EvidenceRequest(chunk.chunk_id, chunk.sentences, draft, sorted(candidates),
                                                        sides, max_picks=max_picks))
    return draft, evidence


@dataclass(frozen=True)
class _Made:
    """What one successful attempt gives: the question, its evidence, and the example's fields."""

    draft: QuestionDraft
    evidence: list[int]
    fields: dict


class _Skipped(Exception):
    """A candidate passed over before anything was asked about it: it costs no attempt."""


async def _first_that_works(
    outcome: ChunkOutcome, chunk: Chunk, backend: Backend, tokenizer, method: str, attempts, attempt, budget: int,
) -> ChunkOutcome:
    """The attempt loop every method shares: try ``attempt(candidate)`` for each candidate (an
    anchor, a passage, a pair) until one makes an example or ``budget`` attempts failed; a failed
    one records its reason, and the last failure is the chunk's drop reason. A candidate skipped
    for free (``_Skipped``) does not count against the budget."""
    tried = 0
    for candidate in attempts:
        if tried == budget:
            break
        try:
            made = await attempt(candidate)
        except _Skipped:
            outcome.anchors_skipped += 1
            continue
        except _Attempt as failed:
            tried += 1
            outcome.anchors_tried += 1
            outcome.drop_reason = failed.reason
            outcome.attempt_reasons[failed.reason] += 1
            continue
        outcome.anchors_tried += 1
        outcome.example = assemble_example(
            chunk, question=made.draft.question, positives=made.evidence, generator=backend.name,
            prompt_version=backend.prompt_version, tokenizer=tokenizer, method=method, **made.fields,
        )
        outcome.drop_reason = None
        return outcome
    if outcome.drop_reason is None:  # every candidate was passed over before anything was asked
        outcome.drop_reason = "nothing_to_ask"
    return outcome


async def link_example(
    chunk: Chunk, backend: Backend, tokenizer, config: LinkMethodConfig, seed: int
) -> ChunkOutcome:
    """The link method: anchor, window of far units, links, the strongest link, question, evidence."""
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
        window = link_window(start, config.anchor_units, config.window_units, n, rng, config.min_link_distance)
        if not window:  # an anchor in the middle of a short chunk: nothing is far enough
            raise _Skipped
        try:
            found = await backend.find_links(LinkRequest(chunk.chunk_id, chunk.sentences, anchor, window))
        except NothingToAsk:
            raise _Skipped from None
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
        if not found:
            outcome.anchors_without_link += 1
            raise _Attempt("no_usable_link")
        # The strongest link, then the better supported, then the longer (the paper keeps the
        # longest, which among links of a window is most often the least related one).
        best = max(found, key=lambda c: (c.score, c.support, gap_to(anchor, c.target), -c.target))
        link_side = around([best.target], config.link_context, n)
        candidates = sorted(set(around(anchor, config.anchor_context, n)) | set(link_side))
        far_end = [u for u in link_side if gap_to(anchor, u) >= config.min_link_distance]
        draft, evidence = await _question_and_evidence(
            backend, chunk, "link", [anchor, link_side], candidates, [anchor, far_end], config.max_evidence_share,
            link=best,
        )
        return _Made(draft, evidence, {"anchor": anchor, "link_target": best.target,
                                       "link_distance": gap_to(anchor, best.target)})

    return await _first_that_works(outcome, chunk, backend, tokenizer, "link", starts, attempt, config.anchor_attempts)


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
        candidates = around(passage, config.passage_context, n)
        draft, evidence = await _question_and_evidence(
            backend, chunk, "chunk", [passage], candidates, [passage], config.max_evidence_share,
        )
        return _Made(draft, evidence, {"anchor": passage})

    return await _first_that_works(outcome, chunk, backend, tokenizer, "chunk", starts, attempt, config.attempts)


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
        candidates = sorted(set(around(first, config.passage_context, n)) | set(around(second, config.passage_context, n)))
        draft, evidence = await _question_and_evidence(
            backend, chunk, "pair", [first, second], candidates, [first, second], config.max_evidence_share,
        )
        return _Made(draft, evidence, {"anchor": first, "link_target": None,
                                       "link_distance": gap_to(first, second_start)})

    return await _first_that_works(outcome, chunk, backend, tokenizer, "pair", pairs(), attempt, config.attempts)


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
