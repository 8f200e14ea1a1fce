"""Readers for each corpus format, and bad inputs: each is counted, logged once, and never fatal."""
from __future__ import annotations

import gzip
import json
import logging
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkscan.pipeline.config import CorpusConfig
from linkscan.pipeline.corpus import list_inputs
from linkscan.pipeline.drops import Drops
from linkscan.pipeline.readers import decode_bytes, read_documents


@pytest.fixture(scope="module")
def passages(dev_corpus):
    """Three real passages of about 3,000 characters from the dev corpus."""
    with gzip.open(dev_corpus / "scotus.jsonl.gz", "rt") as handle:
        records = [json.loads(next(handle)) for _ in range(3)]
    return [r["text"][5000:8000] for r in records]


def _read(path, **settings):
    drops = Drops()
    documents = list(read_documents(path, CorpusConfig(**settings), drops))
    return documents, drops.as_dict()


# -- formats ------------------------------------------------------------------------------------------
def test_txt_file_is_one_document(tmp_path, passages):
    path = tmp_path / "a.txt"
    path.write_text(passages[0])
    documents, drops = _read(path)
    assert [(d.source, d.text, d.title) for d in documents] == [(str(path), passages[0], None)]
    assert drops == {}


def test_markdown_title_is_the_first_heading(tmp_path, passages):
    path = tmp_path / "notes.md"
    path.write_text(f"Intro line\n\n# The Opinion\n\n{passages[0]}")
    documents, _ = _read(path)
    assert documents[0].title == "The Opinion"


def test_html_file_becomes_its_visible_text(tmp_path, passages):
    path = tmp_path / "page.htm"
    path.write_text(f"<html><head><title>Case</title><script>x()</script></head><body><p>{passages[0]}</p></body></html>")
    documents, _ = _read(path)
    assert documents[0].title == "Case"
    assert "x()" not in documents[0].text
    assert documents[0].text == " ".join(passages[0].split())


def test_jsonl_reads_text_title_and_id(tmp_path, passages):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "title": f"T{i}", "text": t}) + "\n" for i, t in enumerate(passages)))
    documents, _ = _read(path)
    assert [d.text for d in documents] == passages
    assert [d.title for d in documents] == ["T0", "T1", "T2"]
    assert documents[1].source == f"{path}:2#d1"


def test_jsonl_field_names_are_configurable(tmp_path, passages):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"key": "k9", "body": passages[0], "name": "N"}) + "\n")
    documents, _ = _read(path, text_field="body", id_field="key", title_field="name")
    assert [(d.text, d.title, d.source.endswith("#k9")) for d in documents] == [(passages[0], "N", True)]


def test_gzipped_jsonl_is_streamed(tmp_path, passages):
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for text in passages:
            handle.write(json.dumps({"text": text}) + "\n")
    documents, _ = _read(path)
    assert [d.text for d in documents] == passages


def test_parquet_reads_the_text_column_with_ids_and_titles(tmp_path, passages):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "title": ["A", None, "C"], "text": passages}), path, row_group_size=2)
    documents, _ = _read(path)
    assert [d.text for d in documents] == passages
    assert [d.title for d in documents] == ["A", None, "C"]
    assert documents[2].source == f"{path}:row2#c"


def test_parquet_null_text_is_counted_and_the_rest_kept(tmp_path, passages):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [passages[0], None, passages[1]]}), path)
    documents, drops = _read(path)
    assert [d.text for d in documents] == passages[:2]
    assert drops == {"missing_text": 1}


def test_list_inputs_finds_folders_recursively_and_globs_sorted(tmp_path):
    for name in ("b.txt", "a.jsonl.gz", "sub/c.md", "skip.csv", ".hidden.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.name for p in list_inputs(tmp_path)] == ["a.jsonl.gz", "b.txt", "c.md"]
    assert [p.name for p in list_inputs([str(tmp_path / "*.txt"), tmp_path / "b.txt"])] == ["b.txt"]


def test_list_inputs_refuses_a_pattern_that_matches_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\*\.jsonl: no files match this pattern"):
        list_inputs([str(tmp_path / "a.txt"), str(tmp_path / "*.jsonl")])


@pytest.mark.parametrize("name", ["nope.jsonl", "no-such-folder"])
def test_list_inputs_refuses_a_path_that_does_not_exist(tmp_path, name):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=f"{name}: no such file or folder"):
        list_inputs([tmp_path / "a.txt", tmp_path / name])


def test_list_inputs_refuses_a_folder_without_corpus_files(tmp_path):
    (tmp_path / "notes.csv").write_text("x")
    with pytest.raises(ValueError, match="holds no corpus files"):
        list_inputs(tmp_path)


def test_a_file_name_with_glob_characters_is_taken_as_it_is(tmp_path):
    (tmp_path / "doc[1].jsonl").write_text("x")
    (tmp_path / "doc1.jsonl").write_text("y")  # what the name would match as a pattern
    assert list_inputs(tmp_path / "doc[1].jsonl") == [tmp_path / "doc[1].jsonl"]


@pytest.mark.timeout(60)
def test_symbolic_link_loops_end_and_each_real_file_is_listed_once(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "a.txt").write_text("x")
    (corpus / "b.txt").write_text("y")
    (corpus / "loop").symlink_to(".")
    (corpus / "sub" / "up").symlink_to("..")
    (corpus / "b-again.txt").symlink_to("b.txt")
    expected = [corpus / "b-again.txt", corpus / "sub" / "a.txt"]  # b.txt is the same file as b-again.txt
    assert [p.resolve() for p in list_inputs(corpus)] == [p.resolve() for p in expected]
    assert [p.resolve() for p in list_inputs(str(corpus / "**" / "*.txt"))] == [p.resolve() for p in expected]
    assert len(list_inputs([corpus, str(corpus / "**" / "*.txt"), corpus / "loop" / "b.txt"])) == 2


# -- bad input ---------------------------------------------------------------------------------------
def _warnings_naming(caplog, path):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and str(path) in r.getMessage()]


def test_non_utf8_file_is_decoded_with_the_detected_encoding(tmp_path, passages, caplog):
    text = passages[0] + " Café, naïve, façade, résumé, déjà vu, piñata, Zoë and Bodø; « quoted » — end."
    path = tmp_path / "latin.txt"
    path.write_bytes(text.encode("cp1252"))
    documents, drops = _read(path)
    assert documents[0].text == text
    assert drops == {}
    assert len(_warnings_naming(caplog, path)) == 1


def test_declared_encoding_is_used(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Grüße aus Köln".encode("latin-1"))
    documents, _ = _read(path, encoding="latin-1")
    assert documents[0].text == "Grüße aus Köln"


def test_a_wrong_declared_encoding_skips_the_file_with_the_fix(tmp_path, caplog):
    path = tmp_path / "utf16.txt"
    path.write_bytes("\udc80".encode("utf-8", "surrogatepass"))
    documents, drops = _read(path, encoding="ascii")
    assert documents == [] and drops == {"not_decodable": 1}
    assert "fix the encoding setting" in _warnings_naming(caplog, path)[0].getMessage()


def test_binary_file_is_skipped(tmp_path, caplog):
    path = tmp_path / "image.txt"
    path.write_bytes(bytes(range(256)) * 40)
    documents, drops = _read(path)
    assert documents == [] and drops == {"binary": 1}
    assert len(_warnings_naming(caplog, path)) == 1


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl", "empty.jsonl.gz", "empty.html"])
def test_empty_file_is_counted_as_empty(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wb"):
            pass
    else:
        path.write_bytes(b"")
    documents, drops = _read(path)
    assert documents == [] and drops == {"empty": 1}


def test_malformed_jsonl_lines_are_skipped_and_the_rest_kept(tmp_path, passages, caplog):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": passages[0]}), '{"text": "unterminated', "[1, 2]", json.dumps({"title": "no text"}),
             "", json.dumps({"text": passages[1]})]
    path.write_text("\n".join(lines) + "\n")
    documents, drops = _read(path)
    assert [d.text for d in documents] == passages[:2]
    assert drops == {"malformed_line": 2, "missing_text": 1}
    messages = [r.getMessage() for r in _warnings_naming(caplog, path)]
    assert any("skipped 2 record(s) (malformed_line); first at line 2" in m for m in messages)


def test_a_non_utf8_jsonl_line_is_skipped(tmp_path, passages):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "caf\xe9"}\n' + json.dumps({"text": passages[0]}).encode() + b"\n")
    documents, drops = _read(path)
    assert [d.text for d in documents] == [passages[0]]
    assert drops == {"not_utf8": 1}


def test_oversized_single_line_is_skipped_with_bounded_memory(tmp_path, passages):
    path = tmp_path / "huge.jsonl"
    huge = "x" * 20_000_000
    with open(path, "w") as handle:
        handle.write(json.dumps({"text": huge}) + "\n" + json.dumps({"text": passages[0]}) + "\n")
    del huge
    tracemalloc.start()
    documents, drops = _read(path, max_doc_bytes=1_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [d.text for d in documents] == [passages[0]]
    assert drops == {"too_long": 1}
    assert peak < 5_000_000  # a few 1 MiB read pieces, never the 20 MB line


def test_oversized_text_file_is_skipped_without_reading_it(tmp_path, caplog):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as handle:
        handle.truncate(5_000_000)  # sparse: reading it would show as NUL bytes (binary)
    documents, drops = _read(path, max_doc_bytes=1_000_000)
    assert documents == [] and drops == {"too_long": 1}
    assert "raise max_doc_bytes" in _warnings_naming(caplog, path)[0].getMessage()


def test_parquet_without_the_text_column_names_the_columns(tmp_path, caplog):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": ["some text"], "id": ["a"]}), path)
    documents, drops = _read(path)
    assert documents == [] and drops == {"missing_text_column": 1}
    assert "columns: body, id; set text_field" in _warnings_naming(caplog, path)[0].getMessage()


def test_a_file_that_is_not_parquet_is_unreadable(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet at all")
    documents, drops = _read(path)
    assert documents == [] and drops == {"unreadable": 1}


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_path_is_counted_and_named(tmp_path, kind, caplog):
    path = tmp_path / "gone.txt"
    if kind == "directory":
        path.mkdir()
    documents, drops = _read(path)
    assert documents == [] and drops == {"unreadable": 1}
    assert len(_warnings_naming(caplog, path)) == 1


def test_truncated_gzip_keeps_the_documents_before_the_damage(tmp_path, passages, caplog):
    path = tmp_path / "docs.jsonl.gz"
    texts = passages * 20
    payload = gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts).encode(), compresslevel=0)
    path.write_bytes(payload[: len(payload) * 2 // 3])
    documents, drops = _read(path)
    assert 20 < len(documents) < 60
    assert [d.text for d in documents] == texts[: len(documents)]
    assert drops == {"unreadable": 1}
    assert len(_warnings_naming(caplog, path)) == 1


def test_decode_bytes_reads_utf16_with_a_bom():
    assert decode_bytes("Hello, world".encode("utf-16"), None) == ("Hello, world", "utf-16")


def test_unsupported_suffix_is_counted(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    assert _read(path) == ([], {"unsupported_format": 1})


@pytest.mark.slow
def test_a_200_mb_single_line_file_is_skipped_and_the_next_document_kept(tmp_path, passages):
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as handle:
        handle.write('{"text": "')
        block = "lorem ipsum " * 100_000
        for _ in range(200_000_000 // len(block)):
            handle.write(block)
        handle.write('"}\n' + json.dumps({"text": passages[0]}) + "\n")
    tracemalloc.start()
    documents, drops = _read(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [d.text for d in documents] == [passages[0]]
    assert drops == {"too_long": 1}
    assert peak < CorpusConfig().max_doc_bytes * 1.5  # bounded by the limit, not by the line
