"""A lexical probe dataset: real text, the real tokenizer, questions copied from the positive units.

For tests, benchmarks and GPU checks of the training stage, independent of the generators: each
example is a run of real text cut into units of 15-40 words, and its question quotes a few words
from each of 1-3 positive units far apart. A model that learns anything useful finds those units,
so held-out recall@k must rise well above random. It is not training data for a real scanner.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Sequence

from linkscan.schemas import Example, records_to_table


def _units(words: list[str], rng: random.Random) -> list[str]:
    units, i = [], 0
    while i < len(words):
        n = rng.randint(15, 40)
        units.append(" ".join(words[i:i + n]) + " ")
        i += n
    return units


def probe_examples(texts: Sequence[str], tokenizer, *, n_examples: int, min_tokens: int = 1500,
                   max_tokens: int = 4000, seed: int = 0) -> list[Example]:
    """``n_examples`` examples of ``min_tokens``-``max_tokens`` chunk tokens from ``texts``."""
    rng = random.Random(seed)
    word_lists = [t.split() for t in texts if len(t.split()) > 400]
    if not word_lists:
        raise ValueError("probe_examples needs texts of more than 400 words")
    examples = []
    while len(examples) < n_examples:
        words = rng.choice(word_lists)
        target = rng.randint(min_tokens, max_tokens)
        start = rng.randrange(max(1, len(words) - target))
        units, token_ids, sentence_ends = [], [], []
        for unit in _units(words[start:start + target], rng):  # about 1.3 tokens a word: enough
            ids = tokenizer.encode(unit, add_special_tokens=False).ids
            if len(token_ids) + len(ids) > target:
                break
            units.append(unit)
            token_ids.extend(ids)
            sentence_ends.append(len(token_ids) - 1)
        if len(units) < 12:
            continue
        n_positives = rng.randint(1, 3)
        positives = sorted(rng.sample(range(len(units)), n_positives))
        quotes = []
        for index in positives:
            unit_words = units[index].split()
            at = rng.randrange(max(1, len(unit_words) - 6))
            quotes.append(" ".join(unit_words[at:at + 6]))
        question = "Where does the text say: " + "; ".join(quotes) + "?"
        question_ids = tokenizer.encode(question + "\n", add_special_tokens=False).ids
        digest = hashlib.sha256(f"{seed}:{len(examples)}:{question}".encode()).hexdigest()[:16]
        examples.append(Example(
            example_id=f"probe-{digest}", chunk_id=f"probe-chunk-{digest}", doc_id=f"probe-doc-{digest}",
            method="probe", generator="probe", prompt_version="probe-1", question=question,
            question_ids=question_ids, positives=positives, anchor=positives[:1], link_target=None,
            link_distance=None, token_ids=token_ids, sentence_ends=sentence_ends, sentences=units,
        ))
    return examples


def write_probe_dataset(data_root: Path, name: str, examples: Sequence[Example], num_shards: int) -> Path:
    """Publish ``examples`` as a dataset version of ``num_shards`` examples shards; returns its folder."""
    from linkscan.pipeline.store import DatasetWriter, version_id

    config = {"probe": name, "examples": len(examples), "num_shards": num_shards}
    fingerprints = {"example_ids": hashlib.sha256("".join(e.example_id for e in examples).encode()).hexdigest()}
    version = version_id(config, fingerprints)
    with DatasetWriter(data_root, name, version, config, fingerprints) as writer:
        if not writer.is_published:
            for index in range(num_shards):
                writer.write_shard("examples", index, num_shards, records_to_table("examples", examples[index::num_shards]))
            return writer.publish({"counts": {"examples": len(examples)}, "drop_reasons": {}},
                                  f"# {name}\n\nLexical probe dataset for training tests ({len(examples)} examples).\n")
        return writer.final_dir


def dev_probe_dataset(dev_corpus: Path, tokenizer_path: Path, data_root: Path, name: str, *, n_examples: int,
                      num_shards: int, seed: int, source: str = "scotus", texts: int = 4) -> Path:
    """A published probe dataset from the first ``texts`` documents of one dev-corpus file."""
    import gzip
    import itertools
    import json

    from tokenizers import Tokenizer

    with gzip.open(dev_corpus / f"{source}.jsonl.gz", "rt") as handle:
        documents = [json.loads(line)["text"] for line in itertools.islice(handle, texts)]
    examples = probe_examples(documents, Tokenizer.from_file(str(tokenizer_path)), n_examples=n_examples,
                              min_tokens=250, max_tokens=600, seed=seed)
    return write_probe_dataset(data_root, name, examples, num_shards)
