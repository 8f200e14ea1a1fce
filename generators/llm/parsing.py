"""Reading model answers: a tolerant parser for near-JSON and validators for each stage.

Models wrap JSON in code fences, add prose around it, use single quotes, Python literals,
trailing commas or comments, and get cut off by ``max_tokens``. ``parse_json_answer`` repairs
those; whatever cannot be read, or does not pass a validator, raises :class:`Rejection` with a
reason that the generator counts in the manifest.
"""
from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from linkscan.generators.llm.screening import normalise_question, speaks_to_model
from linkscan.generators.wording import content_stems, content_words, is_copy, mentions, stem


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
    shared: str  # what both ends are about, as the model named it


# A reason that describes the prompt instead of the document ("The anchor mentions ...", "in the
# candidates", "sentence 12"): the model explains what it was shown, not what connects the units.
_REASON_ABOUT_PROMPT = re.compile(
    r"\b(?:the|this|that|each|both|other)\s+(?:anchor|window|candidate|passage|chunk|excerpt)s?"
    r"(?:\s+(?:sentence|passage|text)s?)?\s+(?:also\s+)?(?:mentions?|says?|states?|describes?|discusses?|talks?|"
    r"provides?|refers?|asks?|explains?|notes?|gives?|is about|are about|contains?|focus(?:es)?)\b"
    r"|\b(?:in|from|of|to) the (?:anchor|candidates?|window)\b"
    r"|\b(?:ANCHOR|WINDOW|CANDIDATES?)\b"
    r"|\b(?:sentence|passage|unit|index|id|candidate)\s*(?:#\s*)?\d+",
    re.IGNORECASE,
)
# Words a reason uses to say that two sentences share something without saying what connects
# them ("Godfrey is mentioned in both sentences"): a reason needs two content words besides these
# and the shared thing.
_SAYS_ONLY_SHARED = frozenset(
    "sentence sentences both mention mentions mentioned passage passages text texts discuss discusses discussed "
    "describe describes refer refers referred talk talks connect connects connected connection relate relates "
    "related topic same word words appear appears appeared present concept term terms".split()
)
# Fewer items than this in a row of neighbouring units is a choice; this many or more, with
# nothing else, is the model listing the window instead of choosing from it.
_RUN_OF_NEIGHBOURS = 3


def validate_links(answer: ParsedAnswer, anchor: Sequence[str], window: Sequence[str], item_rejections: Counter,
                   window_units: Sequence[int] | None = None) -> list[ParsedLink]:
    """Links with ids inside the window that name what connects them; bad items are counted in
    ``item_rejections`` and skipped.

    An item is kept only when its ``shared`` thing occurs in the anchor and in the linked unit
    (``wording.mentions``; an id pointing at a unit that does not name it is moved to the one other
    unit shown that does, counted as ``index_corrected``), and its reason is the model's own words about the document: not a
    description of the prompt, not a copy of a unit, not the reason of an earlier item. An answer
    that lists only a run of neighbouring units (``window_units`` gives each id's unit index) is
    rejected whole. Raises Rejection when nothing usable is left (the reason of the most common
    bad item, or ``no_links`` when the model found none).
    """
    items = _field(answer.value, "links")
    if not isinstance(items, list):
        raise Rejection("wrong_schema", f"links is a {type(items).__name__}, not a list")
    _check_not_a_run(items, len(window), window_units)
    links: dict[int, ParsedLink] = {}
    reasons: set[str] = set()
    bad: Counter = Counter()
    for item in items:
        if isinstance(item, dict):
            index = _as_int(item.get("index", item.get("id")))
            reason = item.get("reason") or item.get("explanation") or ""
            shared = item.get("shared") or ""
            strength = item.get("strength", 1)
        else:
            index, reason, shared, strength = _as_int(item), "", "", 1
        reason = " ".join(reason.split()) if isinstance(reason, str) else ""
        shared = " ".join(shared.split()) if isinstance(shared, str) else ""
        problem, index = _link_problem(index, shared, reason, anchor, window, links, reasons, bad)
        if problem:
            bad[problem] += 1
            continue
        reasons.add(reason.lower())
        links[index] = ParsedLink(index, reason, _strength(strength), shared)
    item_rejections.update(bad)
    if not links:
        rejected = Counter({k: v for k, v in bad.items() if k != "index_corrected"})
        raise Rejection(rejected.most_common(1)[0][0] if rejected else "no_links")
    return list(links.values())


def _link_problem(index, shared, reason, anchor, window, links, reasons, counts) -> tuple[str | None, int]:
    """What is wrong with one link item (None when nothing is), and the id it stands for (an id
    pointing at a unit that does not name the shared thing moves to the one unit shown that does)."""
    if index is None:
        return "link_without_index", index
    if not 0 <= index < len(window):
        return "index_out_of_range", index
    if not reason:
        return "link_without_reason", index
    if index in links:
        return "duplicate_link", index
    if not shared:
        return "link_without_shared", index
    if not mentions(" ".join(anchor), shared):
        return "shared_not_in_both", index
    if not mentions(window[index], shared):
        meant = [j for j in range(len(window)) if j != index and j not in links and mentions(window[j], shared)]
        if len(meant) != 1:
            return "shared_not_in_both", index
        index = meant[0]
        counts["index_corrected"] += 1
    if _REASON_ABOUT_PROMPT.search(reason):
        return "reason_about_prompt", index
    if len(content_stems(reason) - content_stems(shared) - {stem(w) for w in _SAYS_ONLY_SHARED}) < 2:
        return "reason_without_content", index
    if is_copy(reason, [*anchor, window[index]]):
        return "reason_copied", index
    if reason.lower() in reasons:
        return "duplicate_reason", index
    return None, index


def _check_not_a_run(items: list, window_size: int, window_units: Sequence[int] | None) -> None:
    """Reject an answer whose links, all of them, are one run of neighbouring units."""
    ids = [_as_int(item.get("index", item.get("id")) if isinstance(item, dict) else item) for item in items]
    if len(ids) < _RUN_OF_NEIGHBOURS or any(i is None or not 0 <= i < window_size for i in ids):
        return
    units = sorted({window_units[i] if window_units is not None else i for i in ids})
    if len(units) == len(ids) and units[-1] - units[0] == len(units) - 1:
        raise Rejection("consecutive_run", f"units {units[0]}..{units[-1]}")


def _strength(value: object) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError, OverflowError):
        return 1.0
    if score != score or score in (float("inf"), float("-inf")):  # nan, inf
        return 1.0
    return score


# Phrases that only make sense next to the prompt: the question is not self-contained.
_NOT_SELF_CONTAINED = re.compile(
    r"\b(?:the|this|that|these|those|above|following|given|provided|said)\s+"
    r"(?:chunks?|passages?|texts?|excerpts?|snippets?|paragraphs?|sections?|contexts?|sentences?|"
    r"units?|documents?|candidates?|connections?|stor(?:y|ies)|books?|articles?|"
    r"chapters?|essays?|reports?)\b"
    # ... unless a specifier follows: "in the context of", "the text of the statute", "the
    # connection between them", "the passage of the Act" name something in the document.
    r"(?!\s+(?:of|between|from)\b)"
    r"|\b(?:sentence|passage|unit|index|id|candidate)\s*(?:#\s*)?\d+"
    r"|\bpassage[_ ]?[ab]\b"
    r"|\b(?:mentioned|described|stated|discussed|listed)\s+(?:above|earlier|below)\b"
    r"|\baccording to (?:the )?(?:text|author|document|passage)\b",
    re.IGNORECASE,
)
# The prompt's own section headings, as the model copies them ("What is the purpose of the atomic
# group in PASSAGE?"): case-sensitive, so a document's "rite of passage", a ship's anchor and a
# shop window are still questions.
_PROMPT_HEADING = re.compile(r"\b(?:PASSAGE(?:_?[AB])?|ANCHOR|WINDOW|CANDIDATES?)\b")
def validate_question(answer: ParsedAnswer, max_words: int = 60) -> str:
    """One self-contained question, normalised (``screening.normalise_question``); raises Rejection
    with the reason it is not one."""
    if answer.truncated:
        raise Rejection("truncated_json")
    question = _field(answer.value, "question")
    if not isinstance(question, str) or not question.strip():
        raise Rejection("no_question")
    if "\ufffd" in question:  # the server sent bytes that are not UTF-8: the text is not what was written
        raise Rejection("invalid_text", repr(question[:80]))
    question = normalise_question(question)
    if not question.endswith("?"):
        raise Rejection("not_a_question", question[:80])
    words = len(question.split())
    if words < 4:
        raise Rejection("too_short", question)
    if words > max_words:
        raise Rejection("too_long", question[:80])
    screened = speaks_to_model(question)
    if screened:
        raise Rejection(screened, question[:80])
    if len(content_words(question)) < 2:  # "What is the answer to this question?"
        raise Rejection("no_content", question[:80])
    match = _NOT_SELF_CONTAINED.search(question) or _PROMPT_HEADING.search(question)
    if match:
        raise Rejection("not_self_contained", f"{match.group(0)!r} in {question[:80]!r}")
    return question


def validate_evidence(answer: ParsedAnswer, n_candidates: int, keys: Sequence[str] = ("evidence",)) -> list[int]:
    """Candidate ids from the answer's lists (``keys``; a single ``evidence`` list or a bare list is
    taken too), in range, deduplicated and sorted; raises Rejection otherwise."""
    if answer.truncated:
        raise Rejection("truncated_json")
    value = answer.value
    if isinstance(value, dict) and len(keys) > 1 and any(key in value for key in keys):
        lists = [value.get(key, []) for key in keys]
    else:
        lists = [_field(value, "evidence")]
    if not all(isinstance(items, list) for items in lists):
        raise Rejection("wrong_schema", "evidence is not a list")
    items = [item for group in lists for item in group]
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
