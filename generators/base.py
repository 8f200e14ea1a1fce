"""The generator interface: methods ask a back end three questions; back ends only answer.

A *method* (link, chunk, pair) owns sampling and filtering: which anchor, which window, which link
to keep, whether the evidence covers both sides. A *back end* (offline, llm) answers:

1. ``find_links``: which units of a window are connected to an anchor, and why;
2. ``write_question``: one self-contained question for a link, a passage or a passage pair;
3. ``pick_evidence``: which candidate units help answer that question.

Back ends are async so the LLM back end can keep many requests in flight across chunks; the
offline back end answers at once. A back end returns ``None`` or an empty list when it has no
answer and says why through ``Refusal``; methods count every refusal under its reason. A back
end that can answer later but not now raises ``Pending``, which no method catches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Refusal(Exception):
    """A back end could not answer; ``reason`` is a short snake_case name counted in the manifest."""

    reason: str
    detail: str = ""


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


@dataclass(frozen=True)
class QuestionRequest:
    chunk_id: str
    units: Sequence[str]
    # The passages the question must need: for the link method [anchor units, target neighbourhood];
    # for the chunk method one passage; for the pair method two passages.
    passages: Sequence[Sequence[int]]
    link: LinkCandidate | None = None


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


class Backend(Protocol):
    name: str  # "offline" or "llm:<model>"; stored as the examples' ``generator``
    prompt_version: str  # stored with every example

    async def find_links(self, request: LinkRequest) -> list[LinkCandidate]: ...

    async def write_question(self, request: QuestionRequest) -> QuestionDraft: ...

    async def pick_evidence(self, request: EvidenceRequest) -> list[int]: ...
