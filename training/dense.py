"""The dense target: its settings, and the training pairs it reads from a dataset version's shards.

The paper's embedding baselines are also fine-tuned on the link data (contrastive loss, one epoch);
this is that, on any published version. Each example gives one pair per positive unit: the question
and that unit, with the other pairs of the batch as negatives (in-batch) and, per pair,
``hard_negatives`` units of the same chunk at least ``negative_distance`` units from every positive.
Far, because the units next to the evidence often continue it without being labelled: as negatives
they would teach the model to push evidence away.

This module is plain data (pyarrow, numpy); ``linkscan.training.dense_loop`` trains with sentence-transformers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_COLUMNS = ["example_id", "doc_id", "question", "positives", "sentences"]


class DenseTrainConfig(BaseModel):
    """Everything one dense fine-tuning run needs; stored in the run folder as ``train_config.json``.

    Names shared with ``TrainConfig`` (the scanner's) mean the same thing."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="a published dataset version folder (or a dataset folder: its LATEST)")
    out: str = Field(description="run folder: the fine-tuned model, README.md card, checkpoints, metrics.jsonl")
    model: str | None = Field(default=None, description="local sentence-transformers folder to start from "
                                                        "(default: the packaged all-MiniLM-L6-v2)")
    device: str = "cpu"
    seed: int = 0
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; default: one epoch over the pairs")
    batch_size: int = Field(default=32, ge=2, description="pairs per step (each one's negatives include the others')")
    lr: float = Field(default=2e-5, gt=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    hard_negatives: int = Field(default=1, ge=0, description="far units of the same chunk per pair (0: in-batch only)")
    negative_distance: int = Field(default=10, ge=1, description="a hard negative is this many units from every positive")
    max_pairs: int | None = Field(default=None, ge=1, description="train on a seeded sample of this many pairs")
    max_seq_length: int | None = Field(default=None, ge=8, description="word pieces per text (default: the model's)")
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast: for GPUs; fp32 on CPU
    # Held-out documents (a stable hash of doc_id, as for the scanner) or nothing.
    validation: Literal["documents", "none"] = "documents"
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    validation_examples: int = Field(default=64, ge=1)
    recall_k: list[int] = Field(default_factory=lambda: [1, 5, 10])
    validate_every: int = Field(default=50, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    log_every: int = Field(default=1, ge=1)
    allow_partial: bool = False
    progress: bool = True


@dataclass(frozen=True)
class HeldOutExample:
    """A held-out example as the evaluator ranks it: the question against every unit of its chunk."""

    question: str
    units: list[str]
    positives: list[int]


@dataclass
class DensePairs:
    """What a dataset version gives the dense target."""

    rows: list[dict]  # question, positive, negative_1..n (the loss reads the columns in this order)
    held_out: list[HeldOutExample]
    examples: int = 0  # training examples the pairs came from
    dropped: dict[str, int] = field(default_factory=dict)  # pairs not made, by reason

    def columns(self) -> dict[str, list[str]]:
        names = list(self.rows[0]) if self.rows else ["question", "positive"]
        return {name: [row[name] for row in self.rows] for name in names}


def far_units(n_units: int, positives: Sequence[int], distance: int) -> list[int]:
    """The units at least ``distance`` units from every positive."""
    return [unit for unit in range(n_units) if all(abs(unit - p) >= distance for p in positives)]


def example_pairs(example_id: str, question: str, units: Sequence[str], positives: Sequence[int],
                  config: DenseTrainConfig) -> tuple[list[dict], dict[str, int]]:
    """One row per positive unit (question, positive, negative_1..n), and the pairs dropped by reason.

    Negatives are drawn per pair from a generator seeded by (seed, example, positive), so a row does
    not change when other examples are added or removed."""
    dropped: dict[str, int] = {}
    candidates = far_units(len(units), positives, config.negative_distance)
    rows = []
    for positive in positives:
        text = units[positive].strip()
        if not text:
            dropped["empty_unit"] = dropped.get("empty_unit", 0) + 1
            continue
        row = {"question": question.strip(), "positive": text}
        if config.hard_negatives:
            if len(candidates) < config.hard_negatives:
                dropped["no_far_unit"] = dropped.get("no_far_unit", 0) + 1
                continue
            rng = random.Random(f"{config.seed}:{example_id}:{positive}")
            for index, unit in enumerate(rng.sample(candidates, config.hard_negatives), start=1):
                row[f"negative_{index}"] = units[unit].strip()
        rows.append(row)
    return rows, dropped


def read_pairs(batches: Iterable, config: DenseTrainConfig, held_out_documents: frozenset[str]) -> DensePairs:
    """Training pairs from the examples of documents not held out; the first ``validation_examples``
    examples of held-out documents for validation. ``batches`` are Arrow record batches of the
    examples artifact with ``EXAMPLE_COLUMNS``."""
    pairs = DensePairs(rows=[], held_out=[])
    for batch in batches:
        columns = {name: batch.column(name).to_pylist() for name in EXAMPLE_COLUMNS}
        for example_id, doc_id, question, positives, units in zip(*(columns[name] for name in EXAMPLE_COLUMNS)):
            if doc_id in held_out_documents:
                if len(pairs.held_out) < config.validation_examples:
                    pairs.held_out.append(HeldOutExample(question, [u.strip() for u in units], list(positives)))
                continue
            rows, dropped = example_pairs(example_id, question, units, positives, config)
            pairs.rows.extend(rows)
            pairs.examples += 1
            for reason, count in dropped.items():
                pairs.dropped[reason] = pairs.dropped.get(reason, 0) + count
    if config.max_pairs is not None and len(pairs.rows) > config.max_pairs:
        pairs.dropped["over_max_pairs"] = len(pairs.rows) - config.max_pairs
        pairs.rows = random.Random(config.seed).sample(pairs.rows, config.max_pairs)
    return pairs


def model_card(dataset: dict, config: DenseTrainConfig, base_model: str, pairs: DensePairs, steps: int,
               metrics: dict, base_metrics: dict) -> str:
    """The README.md of a fine-tuned model: where it came from, how it was trained, how to use it.
    ``metrics`` are the last held-out ones, ``base_metrics`` the base model's (step 0)."""
    def recall(values: dict) -> str:
        return ", ".join(f"recall@{k} {values[f'val_recall@{k}']:.3f}" for k in config.recall_k
                         if f"val_recall@{k}" in values)

    if any(f"val_recall@{k}" in metrics for k in config.recall_k):
        random = ", ".join(f"{metrics[f'val_random_recall@{k}']:.3f}" for k in config.recall_k)
        validation = (f"fine-tuned {recall(metrics)}; base model {recall(base_metrics) or 'not measured (resumed run)'}; "
                      f"random ranking {random}")
    else:
        validation = "not measured (validation: none)"
    negatives = (f"{config.hard_negatives} unit(s) of the same chunk at least {config.negative_distance} units "
                 "from every positive, plus in-batch" if config.hard_negatives else "in-batch only")
    return f"""# Dense retriever fine-tuned on linkscan dataset {dataset['name']} {dataset['version']}

A sentence-transformers model, fine-tuned by `linkscan train --target dense`.

- Dataset: `{dataset['name']}` version `{dataset['version']}` ({dataset['path']}); method {dataset['method']}, generator {dataset['generator']}
- Base model: {base_model}
- Pairs: {len(pairs.rows)} (question, positive unit) pairs from {pairs.examples} examples; pairs not made: {pairs.dropped or 'none'}
- Negatives: {negatives}
- Loss: MultipleNegativesRankingLoss (sentence-transformers trainer), {steps} steps of {config.batch_size} pairs, lr {config.lr}, seed {config.seed}
- Held-out documents ({len(pairs.held_out)} examples), recall@k of the positives among their chunk's units: {validation}

Use it as a retriever: `linkscan evaluate --retriever dense:<this folder>` or
`linkscan retrieve --retriever dense:<this folder> --document FILE --question TEXT`; in Python,
`SentenceTransformer("<this folder>")`. The training settings are in `train_config.json`, the curves
in `metrics.jsonl`.
"""
