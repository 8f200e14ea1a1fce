"""Reading model answers: a tolerant parser for near-JSON and validators for each stage.

Models wrap JSON in code fences, add prose around it, use single quotes, Python literals,
trailing commas or comments, and get cut off by ``max_tokens``. ``parse_json_answer`` repairs
those; whatever cannot be read, or does not pass a validator, raises :class:`Rejection` with a
reason that the generator counts in the manifest.
"""
from __future__ import annotations

import ast
import functools
import json
import re
from collections import Counter
from dataclasses import dataclass


class Rejection(Exception):
    """An answer that cannot be used; ``reason`` is a short snake_case name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_CLOSERS = {"{": "}", "[": "]"}


class _OutsideStrings:
    """The characters of ``text`` from ``start`` that are not inside a quoted string, with their
    index; ``in_string`` says, once the iteration ends, whether the text ended inside one."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text, self.start, self.in_string = text, start, False

    def __iter__(self):
        quote: str | None = None
        escaped = False
        for i in range(self.start, len(self.text)):
            ch = self.text[i]
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = None
                continue
            if ch in "\"'":
                quote = ch
                continue
            yield i, ch
        self.in_string = quote is not None


def _scan(text: str, start: int) -> tuple[int | None, list[str], bool]:
    """From an opening bracket: (index of the matching close or None, open brackets, inside a string)."""
    stack: list[str] = []
    characters = _OutsideStrings(text, start)
    for i, ch in characters:
        if ch in "{[":
            stack.append(ch)
        elif ch in "}]":
            if stack and _CLOSERS[stack[-1]] == ch:
                stack.pop()
            if not stack:
                return i, [], False
    return None, stack, characters.in_string


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPACES = re.compile(r"\s*")


def _normalise(text: str) -> str:
    """Single-quoted strings to JSON strings, comments out, Python literals and bare keys fixed.

    One pass over the text (patterns match in place, nothing is re-sliced), so a megabyte of
    hostile near-JSON costs milliseconds, not minutes.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            j, buf = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j : j + 2])
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            body = "".join(buf).replace("\\'", "'").replace("\n", "\\n")
            # An unterminated string (the answer was cut off) stays open for _close to finish.
            out.append(f'"{body}"' if j < n else f'"{body}')
            i = j + 1
            continue
        if text.startswith("//", i) or ch == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
            continue
        match = _WORD.match(text, i)
        if match:
            word = match.group(0)
            after = _SPACES.match(text, match.end()).end()
            if text.startswith(":", after):
                out.append(f'"{word}"')
            else:
                out.append({"True": "true", "False": "false", "None": "null"}.get(word, word))
            i = match.end()
            continue
        out.append(ch)
        i += 1
    return re.sub(r",\s*([}\]])", r"\1", "".join(out))


def _close(text: str) -> str:
    """Finish a cut-off JSON text: close the string, drop a dangling key or comma, close brackets."""
    _, stack, in_string = _scan(text, 0)
    if in_string:
        text += '"'
    text = re.sub(r'(,\s*"[^"]*"\s*:?\s*|,\s*|:\s*)$', "", text.rstrip())
    text = re.sub(r'([{,]\s*"[^"]*")\s*$', r"\1: null", text)
    _, stack, _ = _scan(text, 0)
    return text + "".join(_CLOSERS[b] for b in reversed(stack))


@dataclass(frozen=True)
class ParsedAnswer:
    value: object
    truncated: bool  # the JSON was cut off and closed by the parser: later parts may be missing


def parse_json_answer(text: str) -> ParsedAnswer:
    """The JSON value in a model answer, repaired where needed; raises Rejection otherwise.

    Whatever the answer holds (JSON nested thousands deep, Python literals that cannot be built,
    a megabyte of brackets), the outcome is a value or a Rejection, never another exception: the
    raw answer is cached before parsing, so an exception here would fail every rerun the same way.
    """
    if not text or not text.strip():
        raise Rejection("empty_answer")
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced and re.search(r"[\[{]", fenced.group(1)) else text
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise Rejection("not_json", repr(text[:80]))
    start = min(starts)
    end, _, _ = _scan(body, start)
    candidate = body[start : end + 1] if end is not None else body[start:]
    truncated = end is None
    if _nesting_depth(candidate) > MAX_NESTING:
        raise Rejection("too_deep", f"JSON nested deeper than {MAX_NESTING} levels")
    attempts = (
        lambda: json.loads(candidate),
        lambda: json.loads(_close(_normalise(candidate)) if truncated else _normalise(candidate)),
        lambda: ast.literal_eval(candidate),
    )
    for attempt in attempts:
        try:
            return ParsedAnswer(attempt(), truncated)
        except Exception:  # noqa: BLE001 - hostile text may break a parser in any way; try the next
            continue
    raise Rejection("truncated_json" if truncated else "not_json", repr(text[:80]))


# Deeper than any answer our prompts ask for, and far below what recursive parsers survive.
MAX_NESTING = 64


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings (a cheap scan, before any recursive parser)."""
    depth = deepest = 0
    for _, ch in _OutsideStrings(text):
        if ch in "{[(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}])":
            depth = max(0, depth - 1)
    return deepest


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:id|index)?\s*#?\s*(-?\d+)\s*", value, re.IGNORECASE)
        return int(match.group(1)) if match else None
    return None


def _field(value: object, name: str) -> object:
    """``value[name]``, or value itself when the model answered with a bare list or string."""
    if isinstance(value, dict):
        if name in value:
            return value[name]
        if len(value) == 1:  # one key under another name ({"connections": [...]})
            return next(iter(value.values()))
        raise Rejection("wrong_schema", f"no {name!r} in {sorted(map(str, value))[:5]}")
    return value


@dataclass(frozen=True)
class ParsedLink:
    index: int  # local id in the window shown to the model
    reason: str
    strength: float


def validate_links(answer: ParsedAnswer, window_size: int, item_rejections: Counter) -> list[ParsedLink]:
    """Links with ids inside the window; bad items are counted in ``item_rejections`` and skipped.

    Raises Rejection when nothing usable is left (the reason of the most common bad item, or
    ``no_links`` when the model found none).
    """
    items = _field(answer.value, "links")
    if not isinstance(items, list):
        raise Rejection("wrong_schema", f"links is a {type(items).__name__}, not a list")
    links: dict[int, ParsedLink] = {}
    bad: Counter = Counter()
    for item in items:
        if isinstance(item, dict):
            index = _as_int(item.get("index", item.get("id")))
            reason = item.get("reason") or item.get("explanation") or ""
            strength = item.get("strength", 1)
        else:
            index, reason, strength = _as_int(item), "", 1
        if index is None:
            bad["link_without_index"] += 1
        elif not 0 <= index < window_size:
            bad["index_out_of_range"] += 1
        elif not isinstance(reason, str) or not reason.strip():
            bad["link_without_reason"] += 1
        elif index in links:
            bad["duplicate_link"] += 1
        else:
            try:
                score = float(strength)
            except (TypeError, ValueError, OverflowError):
                score = 1.0
            if score != score or score in (float("inf"), float("-inf")):  # nan, inf
                score = 1.0
            links[index] = ParsedLink(index, " ".join(reason.split()), score)
    item_rejections.update(bad)
    if not links:
        raise Rejection(bad.most_common(1)[0][0] if bad else "no_links")
    return list(links.values())


# Phrases that only make sense next to the prompt: the question is not self-contained.
_NOT_SELF_CONTAINED = re.compile(
    r"\b(?:the|this|that|these|those|above|following|given|provided|said)\s+"
    r"(?:chunks?|passages?|texts?|excerpts?|snippets?|paragraphs?|sections?|contexts?|sentences?|"
    r"units?|documents?|anchors?|windows?|candidates?|connections?|stor(?:y|ies)|books?|articles?|"
    r"chapters?|essays?|reports?)\b"
    r"|\b(?:sentence|passage|unit|index|id|candidate)\s*(?:#\s*)?\d+"
    r"|\bpassage[_ ]?[ab]\b"
    r"|\b(?:mentioned|described|stated|discussed|listed)\s+(?:above|earlier|below)\b"
    r"|\baccording to (?:the )?(?:text|author|document|passage)\b",
    re.IGNORECASE,
)
# The prompt's own section headings, as the model copies them ("What is the purpose of the atomic
# group in PASSAGE?"): case-sensitive, so a document's "rite of passage" is still a question.
_PROMPT_HEADING = re.compile(r"\bPASSAGE(?:_?[AB])?\b")
# A question that speaks to the model instead of asking about the text: it obeyed (or passes on)
# an instruction planted in a document. Commands count only in the imperative (at the start of a
# clause), so "Why did the judge ignore the rules of evidence?" is still a question.
_IMPERATIVE = r"(?:^|[.;:!?,]\s*|\b(?:and|then|please|now|so)\s+)"
_INSTRUCTIONS = re.compile(
    _IMPERATIVE + r"(?:ignore|disregard|forget|override|overrule|bypass|skip|abandon)\b.{0,40}"
    r"\b(?:instructions?|rules?|prompts?|directions?|guidelines?|guidance|constraints?|orders?|polic(?:y|ies)|"
    r"everything|anything|all)\b"
    + "|" + _IMPERATIVE + r"(?:reply|respond|answer|say|print|output|write|type|return)\b.{0,25}"
    r"\b(?:only|just|nothing but|exactly)\b"
    r"|\b(?:can|could|will|would) you (?:please )?(?:reply|respond|say|print|output|write)\b.{0,25}"
    r"\b(?:only|just|nothing but|exactly)\b"
    r"|\b(?:system|developer|hidden|original|initial) (?:prompt|message|instructions?)\b"
    r"|\b(?:will|would|do|can) you (?:comply|obey)\b"
    r"|\byou (?:are|will be|must be) now\b|\bfrom now on,? you\b|\bpretend (?:to be|you are)\b"
    r"|\b(?:jailbreak|jailbroken|pwned|developer mode|dan mode)\b|\bhacked:"
    r"|\bas an (?:ai|a\.i\.|language model|llm)\b",
    re.IGNORECASE,
)


# Words that say nothing about a document: a question made only of these and stop words ("What is
# the answer to this question?", "What is described here?") asks about nothing.
_GENERIC_WORDS = frozenset(
    "answer answers question questions information detail details thing things something anything "
    "described describe mentioned mention mentions said says say stated example examples point points "
    "main topic topics idea ideas part parts case fact facts way ways kind type reason reasons "
    "happen happened happens important key specific given following above below here there".split()
)
_QUESTION_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+|\d+")


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(word.lower() for word in STOP_WORDS)


def content_words(question: str) -> list[str]:
    """The words of a question that name something: not stop words, not generic question words."""
    stop = _stop_words()
    return [w for w in (m.group(0).lower() for m in _QUESTION_WORD.finditer(question))
            if w not in stop and w not in _GENERIC_WORDS and (len(w) > 2 or w.isdigit())]


def validate_question(answer: ParsedAnswer, max_words: int = 60) -> str:
    """One self-contained question; raises Rejection with the reason it is not."""
    if answer.truncated:
        raise Rejection("truncated_json")
    question = _field(answer.value, "question")
    if not isinstance(question, str) or not question.strip():
        raise Rejection("no_question")
    question = " ".join(question.split())
    if not question.endswith("?"):
        raise Rejection("not_a_question", question[:80])
    words = len(question.split())
    if words < 4:
        raise Rejection("too_short", question)
    if words > max_words:
        raise Rejection("too_long", question[:80])
    if _INSTRUCTIONS.search(question):
        raise Rejection("follows_injection", question[:80])
    if len(content_words(question)) < 2:  # "What is the answer to this question?"
        raise Rejection("no_content", question[:80])
    match = _NOT_SELF_CONTAINED.search(question) or _PROMPT_HEADING.search(question)
    if match:
        raise Rejection("not_self_contained", f"{match.group(0)!r} in {question[:80]!r}")
    return question


def validate_evidence(answer: ParsedAnswer, n_candidates: int) -> list[int]:
    """Candidate ids, in range, deduplicated and sorted; raises Rejection otherwise."""
    if answer.truncated:
        raise Rejection("truncated_json")
    items = _field(answer.value, "evidence")
    if not isinstance(items, list):
        raise Rejection("wrong_schema", f"evidence is a {type(items).__name__}, not a list")
    ids = set()
    for item in items:
        index = _as_int(item.get("index", item.get("id")) if isinstance(item, dict) else item)
        if index is None:
            raise Rejection("not_an_id", repr(item)[:40])
        if not 0 <= index < n_candidates:
            raise Rejection("index_out_of_range", f"evidence id {index} not in 0..{n_candidates - 1}")
        ids.add(index)
    if not ids:
        raise Rejection("no_evidence")
    return sorted(ids)
