"""Cleaning raw text: HTML to text, Unicode normalisation, control characters, boilerplate."""
from __future__ import annotations

import re
import unicodedata
from collections import Counter

# Elements whose content is never document text.
_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
              "svg", "iframe", "button", "select", "head")
# Elements that break a line of text (everything else is inline).
_BLOCK_TAGS = frozenset(
    "address article blockquote body dd details dialog div dl dt fieldset figcaption figure h1 h2 h3 "
    "h4 h5 h6 hr html li main ol p pre section summary table tbody thead tfoot tr ul caption".split()
)
_CELL_TAGS = frozenset({"td", "th"})

# C0/C1 controls except tab and newline, plus BOM, zero-width and bidi controls, and lone
# surrogates (a JSON "\ud800" escape), which cannot be written as UTF-8.
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff"
    "\ud800-\udfff]"
)
_LINE_BREAKS = re.compile("\r\n?|[\u2028\u2029\x85]")
_TRAILING_SPACE = re.compile(r"[^\S\n]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")

# Project Gutenberg: the text sits between a START and an END marker (old and new styles).
_PG_START = re.compile(
    r"^[^\n]*(?:\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG EBOOK|\*END\*THE SMALL PRINT!)[^\n]*\n",
    re.IGNORECASE | re.MULTILINE,
)
_PG_END = re.compile(
    r"^[^\n]*(?:\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG EBOOK|End of (?:the )?Project Gutenberg'?s?\b)",
    re.IGNORECASE | re.MULTILINE,
)
_MIN_REPEATED_LINE_CHARS = 30


def html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page and its <title>: scripts, styles and navigation removed.

    Block elements become paragraphs, <br> a line break, <pre> keeps its whitespace, and runs of
    whitespace inside inline text collapse to one space, as a browser shows them.
    """
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else None
    tree.strip_tags(list(_DROP_TAGS))
    root = tree.body or tree.root
    parts: list[str] = []
    if root is not None:
        _render(root, parts)
    text = "".join(parts)
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip(), title or None


def _render(root, parts: list[str]) -> None:
    """Depth-first text of a node, with an explicit stack (deep HTML must not hit recursion limits)."""
    stack: list[tuple[object, bool]] = [(root, False)]
    pre_depth = 0
    while stack:
        node, closing = stack.pop()
        tag = node.tag
        if closing:
            if tag == "pre":
                pre_depth -= 1
            parts.append("\n\n" if tag in _BLOCK_TAGS else " " if tag in _CELL_TAGS else "")
            continue
        if tag == "-text":
            text = node.text_content or ""
            if not pre_depth:
                text = re.sub(r"\s+", " ", text)
                if not parts or parts[-1].endswith("\n"):
                    text = text.lstrip(" ")
            parts.append(text)
            continue
        if tag == "br":
            parts.append("\n")
            continue
        if tag in ("-comment", "!doctype"):
            continue
        if tag in _BLOCK_TAGS:
            parts.append("\n\n")
        if tag == "pre":
            pre_depth += 1
        stack.append((node, True))
        children = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, False) for c in reversed(children))


def looks_like_html(text: str) -> bool:
    """True for a whole HTML page (a doctype or an <html> tag at the start), not a stray tag."""
    return re.match(r"\s*<(?:!doctype\s+html|html[\s>])", text[:1000], re.IGNORECASE) is not None


def strip_gutenberg(text: str) -> str:
    """The book between Project Gutenberg's START and END markers (licence and header removed)."""
    lowered = text.lower()  # a cheap scan first: the marker patterns are slow
    if "gutenberg" not in lowered and "small print" not in lowered:
        return text
    start = _PG_START.search(text)
    if start is not None:
        text = text[start.end():]
    end = _PG_END.search(text)
    if end is not None:
        text = text[: end.start()]
    return text


def _repeated_lines(lines: list[str], max_repeats: int) -> frozenset[str]:
    counts = Counter(line for line in lines if len(line) >= _MIN_REPEATED_LINE_CHARS)
    return frozenset(line for line, count in counts.items() if count > max_repeats)


def drop_repeated_lines(text: str, max_repeats: int) -> str:
    """Remove lines of 30+ characters that occur more than ``max_repeats`` times (running heads)."""
    lines = text.split("\n")
    repeated = _repeated_lines([line.strip() for line in lines], max_repeats)
    if not repeated:
        return text
    return "\n".join(line for line in lines if line.strip() not in repeated)


def clean_text(text: str, *, unicode_form: str = "NFC", gutenberg: bool = True, max_line_repeats: int = 0) -> str:
    """Normalised text: line breaks, controls, Unicode form, boilerplate, blank-line runs, edges."""
    ascii_only = text.isascii()
    if "\r" in text or not ascii_only:
        text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    if not ascii_only:
        text = unicodedata.normalize(unicode_form, text)
    if gutenberg:
        text = strip_gutenberg(text)
    # One pass over the lines: trailing whitespace, repeated boilerplate lines, blank-line runs.
    lines = [line.rstrip() for line in text.split("\n")]
    repeated = _repeated_lines([line.lstrip() for line in lines], max_line_repeats) if max_line_repeats else ()
    kept: list[str] = []
    blank = False
    for line in lines:
        if not line:
            if not blank and kept:
                kept.append(line)
            blank = True
        elif not repeated or line.lstrip() not in repeated:
            kept.append(line)
            blank = False
    return "\n".join(kept).strip()
