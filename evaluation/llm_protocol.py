"""The paper's answer-and-judge protocol, through the project's OpenAI-compatible LLM client.

For each question: the retrieved units in document order -> the LLM answers (reasoning after
``REASON:``, the answer after ``ANSWER:``) -> the LLM judges the answer against each gold answer
(``DECISION: YES/NO``); the item is correct when any gold answer is judged YES. Open questions ask
for the paper's answer type (a one-sentence or a one-paragraph answer). Multiple-choice questions
(an options list, or a benchmark of the paper's MCQ list, whose options are in the question text)
ask for the option and use a "same option only" judge prompt. Token F1 (SQuAD) of the answer is
reported for open-ended questions.

Requests go through :class:`linkscan.generators.llm.client.LLMClient`, so they share its response cache,
retries and per-stage token and cost accounting (stages ``eval_answer`` and ``eval_judge``).
A failed request or an unparseable verdict is counted under a named reason, never guessed.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Sequence

from linkscan.evaluation.benchmarks import Question
from linkscan.evaluation.metrics import token_f1

PROMPT_VERSION = "eval-v2"  # v2: multiple choice without an options list (the paper's MCQ benchmarks)
ANSWER_STAGE = "eval_answer"
JUDGE_STAGE = "eval_judge"
_ANSWER_RE = re.compile(r"ANSWER\s*:", re.IGNORECASE)
_DECISION_RE = re.compile(r"DECISION\s*:", re.IGNORECASE)
_LENGTH = {"sentence": "a short one-sentence answer", "paragraph": "a short one-paragraph answer"}

ANSWER_PROMPT = """You are given excerpts from a long document, in document order (a line break marks skipped text), and a question about the document.

Excerpts:
{context}

Question: {question}

First think step by step after "REASON:". Then write {length} after "ANSWER:"."""

MCQ_ANSWER_PROMPT = """You are given excerpts from a long document, in document order (a line break marks skipped text), and a multiple-choice question about the document.

Excerpts:
{context}

Question: {question}
{options_block}
First think step by step after "REASON:". Then write the letter(s) of the correct option(s) and the option text after "ANSWER:"."""

JUDGE_PROMPT = """Judge whether a predicted answer to a question is correct, given the ground-truth answer.
The prediction is correct if it conveys most of the information of the ground truth and does not contradict it. Numbers must match at the precision of the ground truth (e.g. ground truth "3.2 million", prediction "about 3 million": NO; ground truth "3 million", prediction "3.0 million": YES).

Question: {question}
Ground truth: {truth}
Prediction: {prediction}

Explain briefly, then write "DECISION: YES" or "DECISION: NO"."""

MCQ_JUDGE_PROMPT = """Judge whether a predicted answer to a multiple-choice question chose the same option(s) as the ground truth: the same option(s) only, no more and no fewer.

Question: {question}
{options_block}Ground truth: {truth}
Prediction: {prediction}

Write "DECISION: YES" if the prediction chose exactly the ground-truth option(s), else "DECISION: NO"."""


def parse_answer(text: str) -> str:
    """The text after the last ``ANSWER:`` (first non-empty line), else the first 2,000 characters."""
    pieces = _ANSWER_RE.split(text)
    if len(pieces) > 1:
        for line in pieces[-1].strip().splitlines():
            if line.strip():
                return line.strip()
        return ""
    return text.strip()[:2000]


def parse_decision(text: str) -> bool | None:
    """YES/NO after the last ``DECISION:``; without that marker, a lone YES or NO word; else None."""
    pieces = _DECISION_RE.split(text)
    if len(pieces) > 1:
        word = re.match(r"\W*(\w+)", pieces[-1])
        if word and word.group(1).lower() in ("yes", "no"):
            return word.group(1).lower() == "yes"
        return None
    found = {w.lower() for w in re.findall(r"\b(YES|NO|Yes|No)\b", text)}
    if len(found) == 1:
        return found.pop() == "yes"
    return None


def _options_block(question: Question) -> str:
    if question.options:
        return "Options:\n" + "\n".join(question.options) + "\n"
    return "(The options are given in the question.)\n"


def answer_messages(question: Question, context: str) -> list[dict]:
    if question.is_multiple_choice:
        content = MCQ_ANSWER_PROMPT.format(context=context, question=question.question, options_block=_options_block(question))
    else:
        length = _LENGTH.get(question.answer_type, _LENGTH["sentence"])
        content = ANSWER_PROMPT.format(context=context, question=question.question, length=length)
    return [{"role": "user", "content": content}]


def judge_messages(question: Question, truth: str, prediction: str) -> list[dict]:
    if question.is_multiple_choice:
        content = MCQ_JUDGE_PROMPT.format(question=question.question, options_block=_options_block(question),
                                          truth=truth, prediction=prediction)
    else:
        content = JUDGE_PROMPT.format(question=question.question, truth=truth, prediction=prediction)
    return [{"role": "user", "content": content}]


def gold_truths(question: Question) -> list[str]:
    """What the judge compares against: each gold answer, or for multiple choice with an options
    list the correct option(s) as "letters: option text" in one string."""
    if question.options:
        letters = question.answers[0]
        texts = [o for o in question.options if o[:1] in letters] or list(question.answers[1:])
        return [f"{letters}: " + " | ".join(texts)]
    return list(question.answers)


@dataclass
class Judgement:
    answer: str | None
    correct: bool | None  # None: no verdict (failure counted in ``failure``)
    token_f1: float | None  # open-ended questions only
    failure: str | None = None  # llm_answer_failed | llm_judge_failed | judge_unparsed
    transient: bool = False  # the failed request may work later (the server was down or busy): rerun


async def answer_and_judge(client: object, question: Question, context: str) -> Judgement:
    """Run the protocol for one question and its retrieved context."""
    from linkscan.generators.llm.client import LLMRequestError

    try:
        response = await client.chat(answer_messages(question, context), stage=ANSWER_STAGE)
    except LLMRequestError as error:
        return Judgement(None, None, None, "llm_answer_failed", error.transient)
    answer = parse_answer(response.text)
    f1 = None if question.is_multiple_choice else token_f1(answer, question.answers)
    unparsed = False
    for truth in gold_truths(question):
        try:
            verdict = await client.chat(judge_messages(question, truth, answer), stage=JUDGE_STAGE)
        except LLMRequestError as error:
            return Judgement(answer, None, f1, "llm_judge_failed", error.transient)
        decision = parse_decision(verdict.text)
        if decision is None:
            unparsed = True
        elif decision:
            return Judgement(answer, True, f1)
    if unparsed:
        return Judgement(answer, None, f1, "judge_unparsed")
    return Judgement(answer, False, f1)


async def judge_all(client: object, items: Sequence[tuple[Question, str]]) -> list[Judgement]:
    """The protocol for many (question, context) pairs, concurrently (the client bounds concurrency)."""
    return list(await asyncio.gather(*(answer_and_judge(client, question, context) for question, context in items)))
