"""Loading the tokenizer and tokenizing units with exact sentence ends."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkscan.pipeline.tokenize import load_tokenizer, tokenize_units


def test_load_tokenizer_from_file_and_folder_give_the_same_vocabulary(tokenizer_path):
    from_file = load_tokenizer(str(tokenizer_path))
    from_folder = load_tokenizer(str(tokenizer_path.parent))
    assert from_file.get_vocab_size() == from_folder.get_vocab_size() == 50277
    assert from_file.encode("Hello world").ids == [12092, 1533]


def test_load_tokenizer_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match="nope/tokenizer.json"):
        load_tokenizer(str(missing))


def test_load_tokenizer_folder_without_tokenizer_json_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(str(tmp_path))


def test_tokenize_units_ends_point_at_each_units_last_token(tokenizer_path):
    tokenizer = load_tokenizer(str(tokenizer_path))
    units = ["The cat sat on the mat.", " It was warm.", "\n\nThe end."]
    token_ids, ends = tokenize_units(units, tokenizer)
    starts = [0] + [e + 1 for e in ends[:-1]]
    for unit, start, end in zip(units, starts, ends):
        assert tokenizer.decode(token_ids[start: end + 1], skip_special_tokens=False) == unit
    assert ends[-1] == len(token_ids) - 1
    assert tokenizer.decode([token_ids[ends[0]]]) == "."


def test_tokenize_units_refuses_an_empty_unit(tokenizer_path):
    tokenizer = load_tokenizer(str(tokenizer_path))
    with pytest.raises(ValueError, match="unit 1"):
        tokenize_units(["Some text.", ""], tokenizer)


def test_padding_and_truncation_stored_in_a_tokenizer_file_are_switched_off(tmp_path, tokenizer_path):
    spec = json.loads(Path(tokenizer_path).read_text(encoding="utf-8"))
    spec["padding"] = {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": None,
                       "pad_id": 1, "pad_type_id": 0, "pad_token": "<|padding|>"}
    spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    padded = tmp_path / "tokenizer.json"
    padded.write_text(json.dumps(spec), encoding="utf-8")
    text = "Ten words and a few more words make this sentence long enough to truncate."
    units = [text, " Short."]
    token_ids, sentence_ends = tokenize_units(units, load_tokenizer(str(padded)))
    expected, expected_ends = tokenize_units(units, load_tokenizer(str(tokenizer_path)))
    assert token_ids == expected and sentence_ends == expected_ends
    assert len(token_ids) > 16
