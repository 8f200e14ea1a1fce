"""Small real example shards for store tests: real text from the dev corpus, the real tokenizer."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from tokenizers import Tokenizer

from linkscan.schemas import Example, records_to_table

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TOKENIZER = SHARED / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"


def real_sentences(limit: int = 400) -> list[str]:
    """Sentences of the Python tutorial from the dev corpus (a crude split is enough here)."""
    with gzip.open(SHARED / "corpora" / "dev" / "pydocs.jsonl.gz", "rt") as handle:
        for line in handle:
            doc = json.loads(line)
            if doc["id"] == "pydoc311-tutorial":
                text = " ".join(doc["text"].split())
                return [s + " " for s in re.split(r"(?<=[.!?]) ", text) if len(s) > 20][:limit]
    raise AssertionError("pydoc311-tutorial not found in the dev corpus")


def example_table(n_examples: int = 6, units_per_example: int = 30, offset: int = 0):
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    sentences = real_sentences()
    examples = []
    for e in range(n_examples):
        units = sentences[offset + e * units_per_example: offset + (e + 1) * units_per_example]
        token_ids: list[int] = []
        sentence_ends: list[int] = []
        for unit in units:
            token_ids += tokenizer.encode(unit, add_special_tokens=False).ids
            sentence_ends.append(len(token_ids) - 1)
        question = f"What does the tutorial say in passage {e}?"
        question_ids = tokenizer.encode(question + "\n", add_special_tokens=False).ids
        examples.append(Example(
            example_id=f"ex-{offset}-{e}", chunk_id=f"doc-{e:04d}", doc_id="pydoc311-tutorial",
            method="link", generator="offline", prompt_version="test-v1", question=question,
            question_ids=question_ids, positives=[1, 2, 20 + e % 5], anchor=[0, 1, 2, 3, 4],
            link_target=20 + e % 5, link_distance=18 + e % 5, token_ids=token_ids,
            sentence_ends=sentence_ends, sentences=units,
        ))
    return records_to_table("examples", examples)


CONFIG = {"method": "link", "chunk_tokens": 2000, "seed": 0}
INPUTS = {"corpus/a.jsonl": "sha256:abc"}


def publish(root: Path, name: str = "demo", shards: int = 2) -> Path:
    """A published version of ``shards`` example shards of real text (6 examples each)."""
    from linkscan.pipeline.store import DatasetWriter, version_id

    version = version_id(CONFIG, INPUTS)
    with DatasetWriter(root, name, version, CONFIG, INPUTS) as writer:
        for index in range(shards):
            if not writer.has_shard("examples", index, shards):
                writer.write_shard("examples", index, shards, example_table(offset=index * 180))
        return writer.publish({"counts": {"examples": 6 * shards}, "drop_reasons": {}}, "# demo\n")


def publish_partial(root: Path, name: str = "demo", version: str = "v-partial", pending: int = 3) -> Path:
    """A version published with allow_partial while ``pending`` chunks waited: complete: false, 2 examples."""
    from linkscan.pipeline.store import DatasetWriter

    with DatasetWriter(root, name, version, {**CONFIG, "allow_partial": True}, INPUTS) as writer:
        writer.write_shard("examples", 0, 1, example_table(n_examples=2))
        return writer.publish({"complete": False, "pending_chunks": {"server_error": pending},
                               "counts": {"examples": 2}}, "# partial\n")
