"""Chunks for the generator tests, built from real text with spaCy's sentencizer and the real tokenizer.

Independent of the corpus pipeline on purpose: the method and back-end tests should fail only for
their own reasons. Units are sentences merged up to ``min_tokens``; sentence ends come from the
tokenizer's character offsets.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from linkscan.schemas import Chunk


@lru_cache(maxsize=1)
def _nlp():
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


@lru_cache(maxsize=2)
def load_tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def units_of(text: str, tokenizer, min_tokens: int = 20) -> list[str]:
    """Sentences of ``text`` merged until each has ``min_tokens`` tokens; they concatenate to ``text``."""
    nlp = _nlp()
    doc = nlp(text)
    # Whitespace between sentences opens the next unit (the tokenizer puts a space into the next
    # word's token), so the units cover the text exactly and end on a token boundary.
    ends = [s.end_char for s in doc.sents]
    ends[-1] = len(text)
    pieces = [text[start:end] for start, end in zip([0, *ends[:-1]], ends)]
    units: list[str] = []
    current = ""
    for piece in pieces:
        current += piece
        if len(tokenizer.encode(current, add_special_tokens=False).ids) >= min_tokens:
            units.append(current)
            current = ""
    if current:
        if units:
            units[-1] += current
        else:
            units.append(current)
    return units


def chunk_from_units(units: list[str], tokenizer, doc_id: str = "doc", chunk_index: int = 0) -> Chunk:
    text = "".join(units)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    ends: list[int] = []
    boundary = 0
    token = 0
    for unit in units:
        boundary += len(unit)
        while token + 1 < len(encoding.offsets) and encoding.offsets[token + 1][0] < boundary:
            token += 1
        ends.append(token)
    chunk_id = hashlib.sha256(f"{doc_id}:{chunk_index}:{text}".encode()).hexdigest()[:16]
    return Chunk(chunk_id, doc_id, chunk_index, list(encoding.ids), ends, list(units), "gpt-neox-20b")


def dev_document_text(corpus: Path, doc_id: str, max_chars: int) -> str:
    """The first ``max_chars`` characters (cut at a paragraph) of one dev-corpus document."""
    for path in sorted(corpus.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row["id"] == doc_id:
                    text = row["text"][:max_chars]
                    cut = text.rfind("\n\n")
                    return text[:cut] if cut > 0 else text
    raise KeyError(f"{doc_id} not in {corpus}")


def dev_chunks(corpus: Path, tokenizer, doc_id: str, max_chars: int, units_per_chunk: int = 80) -> list[Chunk]:
    units = units_of(dev_document_text(corpus, doc_id, max_chars), tokenizer)
    return [
        chunk_from_units(units[i:i + units_per_chunk], tokenizer, doc_id, i // units_per_chunk)
        for i in range(0, len(units), units_per_chunk)
        if len(units[i:i + units_per_chunk]) >= 20
    ]


def rfc_corpus(dev_corpus: Path, folder: Path, documents: int, max_chars: int, one_file: bool) -> Path:
    """The first ``documents`` RFCs of the dev corpus cut to ``max_chars`` characters, as one JSONL
    file (returned) or one file each (the folder returned)."""
    with gzip.open(dev_corpus / "rfc.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle][:documents]
    lines = [json.dumps(dict(row, text=row["text"][:max_chars])) + "\n" for row in rows]
    if one_file:
        path = folder / "rfc.jsonl"
        path.write_text("".join(lines))
        return path
    for index, line in enumerate(lines):
        (folder / f"rfc-{index}.jsonl").write_text(line)
    return folder
