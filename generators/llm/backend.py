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
    Pending,
    QuestionDraft,
    QuestionRequest,
    Refusal,
)
from linkscan.generators.llm import prompts
from linkscan.generators.llm.client import LLMClient, LLMRequestError
from linkscan.generators.llm.config import LLMConfig
from linkscan.generators.llm.usage import UsageTracker
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

    async def _ask(self, messages: list[dict], stage: str, response_format: dict, check):
        """The answer to ``messages``, parsed and passed through ``check``.

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
        try:
            return check(parse_json_answer(response.text))
        except Rejection as error:
            raise self._refuse(stage, error.reason, error.detail) from None
        except Exception as error:  # noqa: BLE001 - a validator tripped on an answer it did not expect
            raise self._refuse(stage, "invalid_answer", f"{type(error).__name__}: {error}"[:200]) from None

    def _refuse(self, stage: str, reason: str, detail: str = "") -> Refusal:
        self.rejected_answers[f"{stage}:{reason}"] += 1
        return Refusal(f"llm_{reason}", detail)

    async def find_links(self, request: LinkRequest) -> list[LinkCandidate]:
        window = list(request.window)
        messages = prompts.links_messages(
            [request.units[i] for i in request.anchor], [request.units[i] for i in window]
        )
        links = await self._ask(messages, "links", prompts.LINKS_FORMAT,
                                lambda answer: validate_links(answer, len(window), self.item_rejections))
        return [LinkCandidate(target=window[link.index], score=link.strength, reason=link.reason) for link in links]

    async def write_question(self, request: QuestionRequest) -> QuestionDraft:
        passages = [[request.units[i] for i in passage] for passage in request.passages]
        connection = request.link.reason if request.link is not None else None
        question = await self._ask(prompts.question_messages(request.method, passages, connection), "question",
                                   prompts.QUESTION_FORMAT, validate_question)
        return QuestionDraft(question)

    async def pick_evidence(self, request: EvidenceRequest) -> list[int]:
        candidates = list(request.candidates)
        messages = prompts.evidence_messages(request.question.question, [request.units[i] for i in candidates])
        # Whether the evidence covers every side is the method's check (it counts evidence_one_side).
        picked = await self._ask(messages, "evidence", prompts.EVIDENCE_FORMAT,
                                 lambda answer: validate_evidence(answer, len(candidates)))
        return [candidates[i] for i in picked]

    def stats(self) -> dict:
        """Usage per stage and rejection counts, for the manifest (sum shards with merge_llm_stats)."""
        return {
            "model": self.config.model,
            "prompt_version": self.prompt_version,
            "usage": self.client.usage.as_dict(),
            "rejected_answers": dict(sorted(self.rejected_answers.items())),
            "rejected_items": dict(sorted(self.item_rejections.items())),
        }

    async def aclose(self) -> None:
        await self.client.aclose()

    def close(self) -> None:
        """Close the response cache (after the last event loop that used this back end)."""
        self.client.close_cache()


def merge_llm_stats(parts: list[dict]) -> dict:
    """One ``stats()`` dict from several (one per shard)."""
    from linkscan.generators.llm.usage import merge_usage

    parts = [p for p in parts if p]
    if not parts:
        return {}
    answers: Counter = Counter()
    items: Counter = Counter()
    for part in parts:
        answers.update(part.get("rejected_answers", {}))
        items.update(part.get("rejected_items", {}))
    return {
        "model": parts[0]["model"],
        "prompt_version": parts[0]["prompt_version"],
        "usage": merge_usage([p["usage"] for p in parts]),
        "rejected_answers": dict(sorted(answers.items())),
        "rejected_items": dict(sorted(items.items())),
    }
