"""The LLM back end: the generator interface answered by a chat model through :class:`LLMClient`.

Each call builds a versioned prompt (``prompts``), asks the client (cache first), parses the
answer tolerantly and validates it (``parsing``); an answer that cannot be used raises
``Refusal("llm_<reason>")``, which the generator method counts; a request the client gave up on
for a transient reason (the server down, busy or slow) raises ``Pending`` instead: that chunk is
not dropped but waits for a rerun. Items rejected inside an answer
that is otherwise used (one out-of-range link among five) are counted in ``item_rejections``.
``stats()`` gives the usage and rejection totals for the manifest.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

from linkscan.generators.base import (
    Backend,
    EvidenceRequest,
    LinkCandidate,
    LinkRequest,
    NothingToAsk,
    Pending,
    QuestionDraft,
    QuestionRequest,
    Refusal,
)
from linkscan.generators.llm import prompts
from linkscan.generators.llm.client import LLMClient, LLMRequestError
from linkscan.generators.llm.config import LLMConfig
from linkscan.generators.llm.usage import UsageTracker
from linkscan.generators.wording import mentions
from linkscan.generators.llm.parsing import Rejection, parse_json_answer, validate_evidence, validate_links, validate_question

class LLMBackend(Backend):
    """``LLMBackend(config, api_key=..., cache_path=DataLayout(data).llm_cache)``; ``await backend.aclose()`` when done."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        api_key: str | None = None,
        cache_path: Path | str | None = None,
        on_usage: Callable[[UsageTracker], None] | None = None,
    ) -> None:
        self.config = config
        self.client = LLMClient(config, api_key=api_key, cache_path=cache_path, on_usage=on_usage)
        self.name = f"llm:{config.model}"
        self.prompt_version = prompts.PROMPT_VERSION
        self.rejected_answers: Counter[str] = Counter()
        self.item_rejections: Counter[str] = Counter()
        self.truncated_answers: Counter[str] = Counter()  # by stage: answers cut off by max_tokens
        self.question_revisions = 0  # draft questions sent back with the method's advice
        from linkscan.generators.offline import OfflineBackend

        # Its rare-term weights rank the window for the links prompt's shortlist.
        self._terms = OfflineBackend()

    async def _ask(self, messages: list[dict], stage: str, response_format: dict, check, *, with_text: bool = False):
        """The answer to ``messages``, parsed and passed through ``check`` (with the raw answer text
        beside it when ``with_text``).

        An unusable answer raises a counted ``Refusal``; a request given up on for a transient
        reason raises ``Pending`` (its chunk waits for a rerun, it is not dropped). ``check`` sees
        hostile text too, so anything it raises is a rejection of that answer, never a crash.
        """
        try:
            response = await self.client.chat(messages, stage, response_format=response_format)
        except LLMRequestError as error:
            if error.transient:
                raise Pending(error.reason, error.detail) from None
            raise self._refuse(stage, f"failed_{error.reason}", error.detail) from None
        if response.finish_reason == "length":
            self.truncated_answers[stage] += 1
        try:
            value = check(parse_json_answer(response.text))
            return (value, response.text) if with_text else value
        except Rejection as error:
            raise self._refuse(stage, error.reason, error.detail) from None
        except Exception as error:  # noqa: BLE001 - a validator tripped on an answer it did not expect
            raise self._refuse(stage, "invalid_answer", f"{type(error).__name__}: {error}"[:200]) from None

    def _refuse(self, stage: str, reason: str, detail: str = "") -> Refusal:
        self.rejected_answers[f"{stage}:{reason}"] += 1
        return Refusal(f"llm_{reason}", detail)

    def prepare_document(self, chunks) -> None:
        if self.config.link_candidates:
            self._terms.prepare_document(chunks)

    def forget_document(self, chunks) -> None:
        self._terms.forget_document(chunks)

    def _shortlist(self, request: LinkRequest) -> tuple[list[int], dict[int, tuple[float, tuple[str, ...]]]]:
        """The window units shown to the model, in document order, and for each one the weight and
        the rare terms it shares with the anchor (the whole window and no terms when
        ``link_candidates`` is 0). A unit is a candidate only when what it shares weighs at least
        the offline generator's ``min_link_score``: one common word is no lead."""
        window = list(request.window)
        if not self.config.link_candidates:
            return window, {}
        index = self._terms.index(request.chunk_id, request.units)
        shared = {}
        for target in window:
            weight, terms = max(self._terms.link_score(index, source, target) for source in request.anchor)
            if weight >= self._terms.config.min_link_score:
                shared[target] = (weight, terms)
        ranked = sorted(shared, key=lambda unit: (-shared[unit][0], unit))[: self.config.link_candidates]
        return sorted(ranked), shared

    async def find_links(self, request: LinkRequest) -> list[LinkCandidate]:
        shown, shared = self._shortlist(request)
        if not shown:
            raise NothingToAsk("no_candidates", "no window unit shares rare terms with the anchor")
        anchor = [request.units[i] for i in request.anchor]
        texts = [request.units[i] for i in shown]
        links = await self._ask(prompts.links_messages(anchor, texts), "links", prompts.LINKS_FORMAT,
                                lambda answer: validate_links(answer, anchor, texts, self.item_rejections, shown))
        return [LinkCandidate(target=shown[link.index], score=link.strength, reason=link.reason, terms=(link.shared,),
                              support=shared[shown[link.index]][0] if shared else 0.0) for link in links]

    async def write_question(self, request: QuestionRequest) -> QuestionDraft:
        link = request.link
        thing = link.terms[0] if link is not None and link.terms else None
        passages = [[request.units[i] for i in self._focus(request, passage, thing)] for passage in request.passages]
        messages = prompts.question_messages(request.method, passages, thing)
        answer_format = prompts.question_format(request.method)
        question, text = await self._ask(messages, "question", answer_format, validate_question, with_text=True)
        for _ in range(self.config.question_revisions if request.critique else 0):
            advice = request.critique(question)
            if advice is None:
                break
            self.question_revisions += 1
            messages = prompts.revision_messages(messages, text, advice)
            question, text = await self._ask(messages, "question", answer_format, validate_question, with_text=True)
        return QuestionDraft(question, _facts(text))

    @staticmethod
    def _focus(request: QuestionRequest, passage, thing: str | None) -> list[int]:
        """The units of a link question's passage that name what the link is about (the whole
        passage when none does, and for the other methods): a small model asks about what it is
        shown, so it is shown the two sentences the link joins."""
        if thing is None:
            return list(passage)
        naming = [u for u in passage if mentions(request.units[u], thing)]
        return naming or list(passage)

    async def pick_evidence(self, request: EvidenceRequest) -> list[int]:
        groups = _by_side(request)
        ordered = [unit for group in groups for unit in group]
        messages = prompts.evidence_messages(request.question.question, [request.units[i] for i in ordered],
                                             facts=request.question.terms,
                                             first_place=len(groups[0]) if len(groups) == 2 else None)
        keys = prompts.EVIDENCE_KEYS[len(groups)]
        # Whether the evidence covers every side, and is not most of the candidates, is the method's
        # check (evidence_one_side, evidence_too_broad); the schema caps the picks where it is enforced.
        picked = await self._ask(messages, "evidence", prompts.evidence_format(request.max_picks, len(groups)),
                                 lambda answer: validate_evidence(answer, len(ordered), keys))
        return [ordered[i] for i in picked]

    def stats(self) -> dict:
        """Usage per stage and rejection counts, for the manifest (sum shards with merge_llm_stats)."""
        return {
            "model": self.config.model,
            "prompt_version": self.prompt_version,
            "usage": self.client.usage.as_dict(),
            "rejected_answers": dict(sorted(self.rejected_answers.items())),
            "rejected_items": dict(sorted(self.item_rejections.items())),
            "truncated_answers": dict(sorted(self.truncated_answers.items())),
            "question_revisions": self.question_revisions,
        }

    async def aclose(self) -> None:
        await self.client.aclose()

    def close(self) -> None:
        """Close the response cache (after the last event loop that used this back end)."""
        self.client.close_cache()


def _by_side(request: EvidenceRequest) -> list[list[int]]:
    """The candidates in one group, or, for a question over two sides, in two: each candidate with
    the side it is nearer to (in document order within each)."""
    candidates = sorted(request.candidates)
    if len(request.sides) != 2:
        return [candidates]
    gap = lambda unit, side: min(abs(unit - s) for s in side)  # noqa: E731
    first = [u for u in candidates if gap(u, request.sides[0]) <= gap(u, request.sides[1])]
    second = [u for u in candidates if u not in set(first)]
    return [first, second] if first and second else [candidates]


def _facts(answer: str) -> tuple[str, ...]:
    """The facts a two-passage question was written from, as its answer copied them (none for a
    chunk question, or when the answer holds none as strings)."""
    try:
        value = parse_json_answer(answer).value
    except Rejection:
        return ()
    if not isinstance(value, dict):
        return ()
    return tuple(" ".join(value[k].split()) for k in ("fact_a", "fact_b") if isinstance(value.get(k), str) and value[k].strip())


def merge_llm_stats(parts: list[dict]) -> dict:
    """One ``stats()`` dict from several (one per shard)."""
    from linkscan.generators.llm.usage import merge_usage

    parts = [p for p in parts if p]
    if not parts:
        return {}
    answers: Counter = Counter()
    items: Counter = Counter()
    truncated: Counter = Counter()
    for part in parts:
        answers.update(part.get("rejected_answers", {}))
        items.update(part.get("rejected_items", {}))
        truncated.update(part.get("truncated_answers", {}))
    return {
        "model": parts[0]["model"],
        "prompt_version": parts[0]["prompt_version"],
        "usage": merge_usage([p["usage"] for p in parts]),
        "rejected_answers": dict(sorted(answers.items())),
        "rejected_items": dict(sorted(items.items())),
        "truncated_answers": dict(sorted(truncated.items())),
        "question_revisions": sum(part.get("question_revisions", 0) for part in parts),
    }
