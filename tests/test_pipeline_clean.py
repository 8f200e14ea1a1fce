"""Cleaning rules: HTML to text, Unicode, control characters, Gutenberg and repeated boilerplate."""
from __future__ import annotations

from linkscan.pipeline.clean import clean_text, drop_repeated_lines, html_to_text, looks_like_html, strip_gutenberg

PAGE = """<!DOCTYPE html><html><head><title>The  Report</title><style>p {color: red}</style>
<script>var tracking = 1;</script></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<header>Site banner</header>
<h1>Findings</h1>
<p>The committee   met <b>twice</b>
in May.<br>It agreed.</p>
<pre>def f(x):
    return x</pre>
<footer>Copyright notice</footer>
</body></html>"""


def test_html_keeps_visible_text_in_paragraphs():
    text, _ = html_to_text(PAGE)
    assert text == "Findings\n\nThe committee met twice in May.\nIt agreed.\n\ndef f(x):\n    return x"


def test_html_drops_scripts_styles_and_navigation():
    text, _ = html_to_text(PAGE)
    for gone in ("tracking", "color", "Home", "Site banner", "Copyright"):
        assert gone not in text


def test_html_title_is_read_and_whitespace_collapsed():
    assert html_to_text(PAGE)[1] == "The Report"


def test_looks_like_html_needs_a_whole_page():
    assert looks_like_html("  <!doctype html><p>x</p>")
    assert looks_like_html("<html lang='en'><body>x</body></html>")
    assert not looks_like_html("Use the <b> tag for bold text.")


def test_nfc_composes_and_nfkc_folds_compatibility_characters():
    decomposed = "Cafe\u0301 \ufb01ne"  # e + combining acute, "fi" ligature
    assert clean_text(decomposed, unicode_form="NFC") == "Caf\u00e9 \ufb01ne"
    assert clean_text(decomposed, unicode_form="NFKC") == "Caf\u00e9 fine"


def test_control_characters_and_lone_surrogates_are_removed():
    assert clean_text("a\x00b\x07c\u200bd\ufeffe\ud800f\x9bg\th") == "abcdefg\th"


def test_line_breaks_are_normalised_and_blank_runs_collapsed():
    assert clean_text("one\r\ntwo\rthree\u2028four   \n\n\n\n\nfive") == "one\ntwo\nthree\nfour\n\nfive"


def test_gutenberg_header_licence_and_footer_are_cut():
    book = (
        "The Project Gutenberg EBook of Tales, by A. Writer\n\nThis eBook is for the use of anyone anywhere.\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK TALES ***\n\nTALES\n\nOnce upon a time.\n\n"
        "End of the Project Gutenberg EBook of Tales, by A. Writer\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK TALES ***\n\nSection 1. General Terms of Use ..."
    )
    assert clean_text(book) == "TALES\n\nOnce upon a time."


def test_old_style_small_print_header_is_cut():
    book = "Legal small print here\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\nThe story."
    assert strip_gutenberg(book) == "The story."


def test_text_without_gutenberg_markers_is_unchanged():
    text = "A plain text that mentions Project Gutenberg in passing."
    assert strip_gutenberg(text) == text


def test_lines_repeated_more_than_the_limit_are_removed():
    running_head = "ANNUAL REPORT 2023 -- CONFIDENTIAL DRAFT"
    text = "\n".join(f"{running_head}\nPage body number {i} with its own words." for i in range(5))
    cleaned = drop_repeated_lines(text, max_repeats=3)
    assert running_head not in cleaned
    assert cleaned.count("Page body number") == 5


def test_short_or_rare_repeated_lines_are_kept():
    text = "\n".join(["CHAPTER"] * 10 + ["A line that appears twice, long enough to count."] * 2)
    assert drop_repeated_lines(text, max_repeats=3) == text


def test_clean_text_removes_running_heads_only_when_asked():
    running_head = "ANNUAL REPORT 2023 -- CONFIDENTIAL DRAFT   "
    text = "\n".join(f"{running_head}\nPage body number {i} with its own words." for i in range(5))
    assert running_head.strip() in clean_text(text)
    cleaned = clean_text(text, max_line_repeats=3)
    assert running_head.strip() not in cleaned
    assert cleaned.splitlines() == [f"Page body number {i} with its own words." for i in range(5)]
