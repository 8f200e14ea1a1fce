"""The model's tokenizer: loading it, and tokenizing retrieval units with exact sentence ends."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Sequence

from tokenizers import Tokenizer


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> Tokenizer:
    """A Hugging Face fast tokenizer from a local tokenizer.json, a folder holding one, or a hub id.

    Loaded once per process and name (tokenizers are safe to share between threads). Padding and
    truncation stored in the file are switched off: they are settings for embedding short texts
    (a sentence-transformers tokenizer pads every text to 128 tokens), and either would break the
    exact alignment of a document's units with its tokens.
    """
    tokenizer = _load(name_or_path)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def tokenizer_identity(name_or_path: str) -> str:
    """The tokenizer as the version id sees it: a local file or folder by the sha256 of its
    tokenizer.json (so its path does not matter), a hub id as written."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return name_or_path


def _load(name_or_path: str) -> Tokenizer:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{name_or_path}: folder has no tokenizer.json (point tokenizer at the file)")
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception on a bad file
            raise ValueError(f"{path}: not a Hugging Face tokenizer.json ({error})") from None
    if path.suffix == ".json" or name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{name_or_path}: tokenizer file not found (check the tokenizer path)")
    from linkscan.pipeline.hub import cached_file, hub_problem

    cached = cached_file(name_or_path, "tokenizer.json")  # downloaded before: no network needed
    if cached is not None:
        return Tokenizer.from_file(cached)
    problem = hub_problem(name_or_path)
    if problem is not None:
        raise ValueError(
            f"tokenizer {name_or_path!r}: the Hugging Face hub cannot serve it ({problem}) and there is no cached "
            "copy; point the tokenizer at a local tokenizer.json (the scanner's: gpt-neox-20b)"
        )
    try:
        return Tokenizer.from_pretrained(name_or_path)
    except Exception as error:
        raise ValueError(
            f"tokenizer {name_or_path!r}: could not load it from the Hugging Face hub ({error}); "
            "set tokenizer to a local tokenizer.json when offline"
        ) from None


def encode_texts(texts: Sequence[str], tokenizer: Tokenizer) -> list[list[int]]:
    """Token ids of each text, tokenized on its own, without special tokens."""
    return [encoding.ids for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def tokenize_units(units: Sequence[str], tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """Concatenated token ids of ``units`` and, per unit, the position of its last token.

    Each unit is tokenized on its own, so no token straddles two units and the alignment is exact
    by construction: ``token_ids[sentence_ends[i-1]+1 : sentence_ends[i]+1]`` are unit i's tokens.
    """
    token_ids: list[int] = []
    sentence_ends: list[int] = []
    for index, ids in enumerate(encode_texts(units, tokenizer)):
        if not ids:
            raise ValueError(f"unit {index} ({units[index]!r}) has no tokens; units must be non-empty text")
        token_ids.extend(ids)
        sentence_ends.append(len(token_ids) - 1)
    return token_ids, sentence_ends
