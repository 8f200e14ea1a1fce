"""The generator interface: methods ask a back end three questions; back ends only answer.

A *method* (link, chunk, pair) owns sampling and filtering: which anchor, which window, which link
to keep, whether the evidence covers both sides. A *back end* (offline, llm) answers:

1. ``find_links``: which units of a window are connected to an anchor, and why;
2. ``write_question``: one self-contained question for a link, a passage or a passage pair;
3. ``pick_evidence``: which candidate units help answer that question.

Back ends are async so the LLM back end can keep many requests in flight across chunks; the
offline back end answers at once. A back end returns ``None`` or an empty list when it has no
answer and says why through ``Refusal``; methods count every refusal under its reason
(``NothingToAsk``, a refusal that cost nothing, is not counted as an attempt). A back end that can
answer later but not now raises ``Pending``, which no method catches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence


class Refusal(Exception):
    """A back end could not answer; ``reason`` is a short snake_case name counted in the manifest."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NothingToAsk(Refusal):
    """A back end had nothing to ask about this request (no window unit shares anything with the
    anchor) and spent nothing on it: the method tries another anchor without counting an attempt."""


class Pending(Exception):
    """A back end cannot answer *yet* (an LLM request given up on because the server was down,
    busy or slow): the chunk is neither an example nor a drop, it waits for a rerun. Methods do
    not catch it; the stage counts the chunk as pending by ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LinkRequest:
    chunk_id: str
    units: Sequence[str]  # every unit of the chunk, by index
    anchor: Sequence[int]  # unit indices of the anchor (consecutive)
    window: Sequence[int]  # unit indices the back end may link to (anchor excluded)


@dataclass(frozen=True)
class LinkCandidate:
    target: int  # a unit index from the window
    score: float  # higher is a stronger link
    reason: str  # why the units are connected (shared terms, or the LLM's explanation)
    terms: tuple[str, ...] = ()  # the linking terms, when the back end knows them
    # The anchor unit the link starts from, when the back end knows it; otherwise the method uses
    # the anchor unit nearest to the target.
    source: int | None = None
    # Support for the link beside its score (the LLM back end: the weight of the rare terms both
    # units share); between links of equal score the better supported one is kept.
    support: float = 0.0


@dataclass(frozen=True)
class QuestionRequest:
    chunk_id: str
    units: Sequence[str]
    # The passages the question must need: for the link method [anchor units, target neighbourhood];
    # for the chunk method one passage; for the pair method two passages.
    passages: Sequence[Sequence[int]]
    method: str  # the method that asks: "link", "chunk" or "pair" (back ends never guess it)
    link: LinkCandidate | None = None
    # The method's checks on a draft question: None when it passes, else what to change, in a
    # sentence a model can act on. A back end may use it to revise a draft once before answering;
    # the method checks the answer it gets either way.
    critique: Callable[[str], str | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        wanted = {"link": 2, "chunk": 1, "pair": 2}.get(self.method)
        if wanted is None:
            raise ValueError(f"QuestionRequest.method {self.method!r}: use link, chunk or pair")
        if len(self.passages) != wanted:
            raise ValueError(f"the {self.method} method asks about {wanted} passage(s), not {len(self.passages)}")


@dataclass(frozen=True)
class QuestionDraft:
    question: str
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvidenceRequest:
    chunk_id: str
    units: Sequence[str]
    question: QuestionDraft
    candidates: Sequence[int]  # unit indices the evidence may be picked from
    sides: Sequence[Sequence[int]] = field(default_factory=tuple)  # the passages evidence must cover
    max_picks: int | None = None  # at most this many units (the method rejects more)


class Backend:
    """What a back end is: a name, a prompt version, the three answers, and lifecycle hooks that
    do nothing unless a back end needs them (the stage calls them all, never checks for them)."""

    name: str  # "offline" or "llm:<model>"; stored as the examples' ``generator``
    prompt_version: str  # stored with every example

    async def find_links(self, request: LinkRequest) -> list[LinkCandidate]:
        raise NotImplementedError

    async def write_question(self, request: QuestionRequest) -> QuestionDraft:
        raise NotImplementedError

    async def pick_evidence(self, request: EvidenceRequest) -> list[int]:
        raise NotImplementedError

    def prepare_document(self, chunks: Sequence) -> None:
        """Before a document's chunks are asked about (the offline back end counts its terms)."""

    def forget_document(self, chunks: Sequence) -> None:
        """After a document's chunks were asked about: drop what ``prepare_document`` kept."""

    async def aclose(self) -> None:
        """At the end of the event loop that used the back end (the LLM client's connections)."""

    def close(self) -> None:
        """After the last event loop (the LLM response cache)."""

    def stats(self) -> dict | None:
        """Statistics for the manifest (the LLM's usage and rejections), or None."""
        return None
