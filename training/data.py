"""Training batches streamed from the ``examples`` shards of a dataset version.

Each consumer (one dataloader worker of one DDP rank) reads its own shard files (or, when there
are fewer files than consumers, its own rows of every file), keeps a seeded shuffle buffer, puts
examples into length buckets and emits a batch when a bucket's token budget is full, so padding
stays low. The stream repeats epochs forever, reshuffled per epoch; the loop stops by step count.

With ``pack`` (the mamba_ssm back end), a micro-batch is instead one row of exactly
``micro_batch_tokens`` tokens holding several examples end to end, with ``seq_idx`` telling the
kernels where each starts (the SSM and convolution state restart there, so it computes what
separate rows would): no padding between lengths, and one fixed shape for every micro-batch,
which CUDA graphs need.

The stream is a pure function of (files, seed, consumer), so a resumed run reproduces the data
position exactly by skipping the micro-batches it already consumed (without building tensors).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

COLUMNS = ["question_ids", "token_ids", "sentence_ends", "positives", "n_tokens"]
PAD_ID = 0  # GPT-NeoX <|endoftext|>; right padding never reaches earlier positions of a causal model


@dataclass
class Example:
    input_ids: list[int]  # question_ids + token_ids
    positions: list[int]  # label positions: len(question_ids) + sentence_ends[i]
    labels: list[float]  # 1.0 on positives, 0.0 elsewhere
    question_length: int = 0  # len(question_ids): the chunk starts here

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    def match_labels(self, max_unit_share: float = 0.25) -> list[float]:
        """One label per chunk token for the training-only match objective: 1.0 where the token is
        a *telling* question token, one that an evidence unit contains and at most
        ``max_unit_share`` of the chunk's units contain (so not "the", nor a template word), else 0.

        These are the tokens that make the positives positive; predicting them at every position
        teaches the one skill the unit labels need (is this token in the question?) with a label
        per token instead of a few per example.
        """
        start = self.question_length
        units, begin = [], start
        for end in self.positions:
            units.append(set(self.input_ids[begin:end + 1]))
            begin = end + 1
        unit_count: dict[int, int] = {}
        for unit in units:
            for token in unit:
                unit_count[token] = unit_count.get(token, 0) + 1
        in_evidence = set().union(*(units[i] for i, label in enumerate(self.labels) if label > 0.5))
        limit = max(1.0, max_unit_share * len(units))
        telling = {t for t in self.input_ids[:start] if t in in_evidence and unit_count.get(t, 0) <= limit}
        return [1.0 if token in telling else 0.0 for token in self.input_ids[start:]]


def relabel(example: Example, rng: random.Random, vocab_size: int) -> Example:
    """The example with its token ids renamed by a random one-to-one map (the same for question and
    chunk; the pad id kept). Which question tokens recur in which units is unchanged, so matching
    the question still finds the positives, while whatever a model memorised about particular ids
    (this document's rare names) no longer applies."""
    distinct = sorted(set(example.input_ids) - {PAD_ID})
    if len(distinct) >= vocab_size - 1:
        raise ValueError(f"an example of {len(distinct)} distinct tokens cannot be relabelled within a vocabulary of {vocab_size}")
    mapping = dict(zip(distinct, rng.sample(range(1, vocab_size), len(distinct))))
    mapping[PAD_ID] = PAD_ID
    return Example([mapping[t] for t in example.input_ids], example.positions, example.labels, example.question_length)


def examples_from_batch(batch) -> Iterator[Example]:
    """Model examples from an Arrow record batch of the ``examples`` artifact (COLUMNS projected)."""
    columns = {name: batch.column(name).to_pylist() for name in ("question_ids", "token_ids", "sentence_ends", "positives")}
    for question, tokens, ends, positives in zip(columns["question_ids"], columns["token_ids"],
                                                 columns["sentence_ends"], columns["positives"]):
        offset = len(question)
        labels = [0.0] * len(ends)
        for index in positives:
            labels[index] = 1.0
        yield Example(question + tokens, [offset + e for e in ends], labels, offset)


def collate(examples: Sequence[Example], with_match: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids (B, L), positions/labels/mask (B, P), and the real token count;
    ``with_match`` adds match_labels/match_mask (B, L) for the chunk tokens (``Example.match_labels``)."""
    length = max(e.n_tokens for e in examples)
    units = max(len(e.positions) for e in examples)
    input_ids = torch.full((len(examples), length), PAD_ID, dtype=torch.long)
    positions = torch.zeros((len(examples), units), dtype=torch.long)
    labels = torch.zeros((len(examples), units), dtype=torch.float32)
    mask = torch.zeros((len(examples), units), dtype=torch.bool)
    for row, example in enumerate(examples):
        input_ids[row, : example.n_tokens] = torch.tensor(example.input_ids)
        n = len(example.positions)
        positions[row, :n] = torch.tensor(example.positions)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = True
    batch = {
        "input_ids": input_ids,
        "positions": positions,
        "labels": labels,
        "mask": mask,
        "n_tokens": torch.tensor(sum(e.n_tokens for e in examples)),
    }
    if with_match:
        batch["match_labels"] = torch.zeros((len(examples), length), dtype=torch.float32)
        batch["match_mask"] = torch.zeros((len(examples), length), dtype=torch.bool)
        for row, example in enumerate(examples):
            batch["match_labels"][row, example.question_length:example.n_tokens] = torch.tensor(example.match_labels())
            batch["match_mask"][row, example.question_length:example.n_tokens] = True
    return batch


def pack(examples: Sequence[Example], length: int, units: int, with_match: bool = False) -> dict[str, torch.Tensor]:
    """One row of exactly ``length`` tokens holding ``examples`` end to end (then padding), and
    ``units`` label slots; ``seq_idx`` (1, length) numbers the examples (the padding is one more),
    so mamba_ssm restarts its state at each example. Positions are offsets into the row."""
    input_ids = torch.full((1, length), PAD_ID, dtype=torch.long)
    seq_idx = torch.full((1, length), len(examples), dtype=torch.int32)
    positions = torch.zeros((1, units), dtype=torch.long)
    labels = torch.zeros((1, units), dtype=torch.float32)
    mask = torch.zeros((1, units), dtype=torch.bool)
    match_labels = torch.zeros((1, length), dtype=torch.float32)
    match_mask = torch.zeros((1, length), dtype=torch.bool)
    start, slot = 0, 0
    for index, example in enumerate(examples):
        end, n = start + example.n_tokens, len(example.positions)
        if end > length or slot + n > units:
            raise ValueError(f"pack: {len(examples)} examples do not fit {length} tokens and {units} units")
        input_ids[0, start:end] = torch.tensor(example.input_ids)
        seq_idx[0, start:end] = index
        positions[0, slot:slot + n] = torch.tensor(example.positions) + start
        labels[0, slot:slot + n] = torch.tensor(example.labels)
        mask[0, slot:slot + n] = True
        if with_match:
            match_labels[0, start + example.question_length:end] = torch.tensor(example.match_labels())
            match_mask[0, start + example.question_length:end] = True
        start, slot = end, slot + n
    batch = {"input_ids": input_ids, "seq_idx": seq_idx, "positions": positions, "labels": labels, "mask": mask,
             "n_tokens": torch.tensor(start)}
    if with_match:
        batch.update(match_labels=match_labels, match_mask=match_mask)
    return batch


def pack_units(micro_batch_tokens: int) -> int:
    """Label slots of a packed row: one per 8 tokens (retrieval units are at least 20 tokens long)."""
    return max(1, micro_batch_tokens // 8)


def bucket_of(n_tokens: int, buckets: Sequence[int]) -> int | None:
    """Index of the smallest bucket that holds ``n_tokens``, or None when it is too long for all."""
    for index, limit in enumerate(buckets):
        if n_tokens <= limit:
            return index
    return None


class ExampleStream(torch.utils.data.IterableDataset):
    """Infinite stream of collated micro-batches for one DDP rank (split further across workers).

    A micro-batch holds examples of one length bucket, as many as fit ``micro_batch_tokens`` once
    padded to the longest of them (at least one).

    ``skip_micro_batches`` is how many micro-batches this rank consumed before (resume).
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        micro_batch_tokens: int,
        buckets: Sequence[int],
        seed: int = 0,
        shuffle_buffer: int = 256,
        rank: int = 0,
        world_size: int = 1,
        skip_micro_batches: int = 0,
        skip_documents: frozenset[str] = frozenset(),
        pack: bool = False,
        with_match: bool = False,
        relabel_share: float = 0.0,
        vocab_size: int = 50277,
    ) -> None:
        if not files:
            raise ValueError("no examples shards to train on (the dataset's data/train-*.parquet list is empty)")
        self.files = [Path(f) for f in files]
        self.skip_documents = frozenset(skip_documents)  # held out for validation
        self.micro_batch_tokens = micro_batch_tokens
        self.buckets = sorted(buckets)
        self.seed = seed
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.rank = rank
        self.world_size = world_size
        self.skip_micro_batches = skip_micro_batches
        self.pack = pack
        self.with_match = with_match
        self.relabel_share = relabel_share
        self.vocab_size = vocab_size

    def _consumer(self) -> tuple[int, int, int, int]:
        """(consumer index, number of consumers, dataloader workers, this worker's logical index).

        The DataLoader takes batches from its workers round-robin starting at worker 0, so after
        `skip_micro_batches` the next batch must come from the worker that played index
        `skip % workers`: worker w plays logical worker (w + skip) % workers.
        """
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        logical = (worker + self.skip_micro_batches) % workers
        return self.rank * workers + logical, self.world_size * workers, workers, logical

    def _examples(self, consumer: int, consumers: int, epoch: int) -> Iterator[Example]:
        from linkscan.pipeline.store import iter_shard

        rng = random.Random(f"{self.seed}:{epoch}:{consumer}")
        if len(self.files) >= consumers:
            files = self.files[consumer::consumers]
            keep_row = None
        else:  # fewer files than consumers: every consumer reads every file and keeps its rows
            files = self.files
            keep_row = consumer
        files = list(files)
        rng.shuffle(files)
        buffer: list[Example] = []
        for path in files:
            row = 0
            for batch in iter_shard(path, "examples", columns=[*COLUMNS, "doc_id"], batch_size=64):
                doc_ids = batch.column("doc_id").to_pylist()
                for doc_id, example in zip(doc_ids, examples_from_batch(batch)):
                    row += 1
                    if keep_row is not None and (row - 1) % consumers != keep_row:
                        continue
                    if doc_id in self.skip_documents:
                        continue
                    if self.relabel_share and rng.random() < self.relabel_share:
                        example = relabel(example, rng, self.vocab_size)
                    buffer.append(example)
                    if len(buffer) >= self.shuffle_buffer:
                        yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def _batches(self, consumer: int, consumers: int) -> Iterator[list[Example]]:
        """Batches of one length bucket whose padded size (count x longest) stays within the budget."""
        epoch = 0
        while True:
            pending: list[list[Example]] = [[] for _ in self.buckets]
            longest = [0] * len(self.buckets)
            produced = 0
            for example in self._examples(consumer, consumers, epoch):
                index = bucket_of(example.n_tokens, self.buckets)
                if index is None:  # too long for every bucket: counted by count_too_long
                    continue
                grown = max(longest[index], example.n_tokens)
                if pending[index] and (len(pending[index]) + 1) * grown > self.micro_batch_tokens:
                    yield pending[index]
                    produced += 1
                    pending[index], grown = [], example.n_tokens
                pending[index].append(example)
                longest[index] = grown
            for leftover in pending:  # partial batches at the end of an epoch
                if leftover:
                    yield leftover
                    produced += 1
            if produced == 0:
                raise ValueError(
                    f"consumer {consumer} of {consumers} got no trainable example from {len(self.files)} shard(s): "
                    f"all are longer than the largest length bucket ({self.buckets[-1]} tokens); raise max_seq_tokens"
                )
            epoch += 1

    def _packed_rows(self, consumer: int, consumers: int) -> Iterator[list[Example]]:
        """Examples in stream order, as many per row as fit ``micro_batch_tokens`` tokens and the row's label slots."""
        units = pack_units(self.micro_batch_tokens)
        epoch = 0
        while True:
            row: list[Example] = []
            tokens = slots = produced = 0
            for example in self._examples(consumer, consumers, epoch):
                if example.n_tokens > self.micro_batch_tokens or len(example.positions) > units:
                    continue  # too long for a row: counted by count_too_long
                if row and (tokens + example.n_tokens > self.micro_batch_tokens or slots + len(example.positions) > units):
                    yield row
                    produced += 1
                    row, tokens, slots = [], 0, 0
                row.append(example)
                tokens, slots = tokens + example.n_tokens, slots + len(example.positions)
            if row:
                yield row
                produced += 1
            if produced == 0:
                raise ValueError(
                    f"consumer {consumer} of {consumers} got no trainable example from {len(self.files)} shard(s): "
                    f"all are longer than a packed row ({self.micro_batch_tokens} tokens); raise micro_batch_tokens"
                )
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        consumer, consumers, workers, logical = self._consumer()
        # of the first `skip_micro_batches` batches, this logical worker made those with index % workers == logical
        skip = (self.skip_micro_batches - logical + workers - 1) // workers if self.skip_micro_batches > logical else 0
        groups = self._packed_rows(consumer, consumers) if self.pack else self._batches(consumer, consumers)
        for index, examples in enumerate(groups):
            if index < skip:
                continue
            if self.pack:
                yield pack(examples, self.micro_batch_tokens, pack_units(self.micro_batch_tokens), self.with_match)
            else:
                yield collate(examples, self.with_match)


def consumer_rows(shard_rows: Sequence[int], consumers: int) -> list[int]:
    """Examples each of ``consumers`` reads per epoch, for shards of ``shard_rows`` rows (in stream
    order). Every consumer yields micro-batches at the same rate (DDP ranks step together; the
    DataLoader takes its workers' batches in turn), so a consumer with fewer rows repeats its
    examples more often: uneven shares oversample the small shards."""
    if len(shard_rows) >= consumers:
        return [sum(shard_rows[c::consumers]) for c in range(consumers)]
    total = sum(shard_rows)  # fewer files than consumers: rows are dealt out one by one
    return [total // consumers + (1 if c < total % consumers else 0) for c in range(consumers)]


def count_too_long(files: Sequence[Path], max_tokens: int, documents: "DocumentFilter | None" = None) -> int:
    """How many examples the stream drops for being longer than ``max_tokens`` (reads two columns)."""
    from linkscan.pipeline.store import iter_shard

    count = 0
    for path in files:
        for batch in iter_shard(path, "examples", columns=["n_tokens", "doc_id"], batch_size=4096):
            too_long = batch.column("n_tokens").to_numpy() > max_tokens
            if documents is not None:
                too_long &= np.array([documents.keeps(d) for d in batch.column("doc_id").to_pylist()], dtype=bool)
            count += int(np.count_nonzero(too_long))
    return count


def make_loader(stream: ExampleStream, num_workers: int = 0, pin_memory: bool = False,
                prefetch_factor: int = 4) -> torch.utils.data.DataLoader:
    """Micro-batches built in ``num_workers`` processes (0: in this one), each keeping
    ``prefetch_factor`` ready; ``pin_memory`` for asynchronous copies to a GPU."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                                       persistent_workers=num_workers > 0,
                                       prefetch_factor=prefetch_factor if num_workers > 0 else None)


@dataclass(frozen=True)
class DocumentFilter:
    """Keeps the rows of ``documents`` (``inside``) or of every other document."""

    documents: frozenset[str]
    inside: bool

    def keeps(self, doc_id: str) -> bool:
        return (doc_id in self.documents) == self.inside


def validation_examples(files: Sequence[Path], limit: int, max_tokens: int,
                        documents: DocumentFilter | None = None) -> list[Example]:
    """The first ``limit`` held-out examples (in file order) no longer than ``max_tokens``."""
    from linkscan.pipeline.store import iter_shard

    examples: list[Example] = []
    for path in files:
        for batch in iter_shard(path, "examples", columns=[*COLUMNS, "doc_id"], batch_size=64):
            for doc_id, example in zip(batch.column("doc_id").to_pylist(), examples_from_batch(batch)):
                if documents is not None and not documents.keeps(doc_id):
                    continue
                if example.n_tokens <= max_tokens:
                    examples.append(example)
                if len(examples) >= limit:
                    return examples
    return examples


def split_files(files: Sequence[Path], validation_shards: int) -> tuple[list[Path], list[Path]]:
    """(training files, held-out validation files): the last ``validation_shards`` files are held out."""
    files = sorted(files)
    if validation_shards <= 0:
        return files, []
    if len(files) <= validation_shards:
        raise ValueError(
            f"the dataset has {len(files)} examples shard(s); holding out {validation_shards} for validation "
            "leaves none to train on (use validation 'documents', which holds out whole documents, or 'none')"
        )
    return files[:-validation_shards], files[-validation_shards:]


def held_out_documents(doc_ids: Sequence[str], fraction: float) -> frozenset[str]:
    """Documents for validation: those whose stable hash falls under ``fraction`` (the same ones
    for every seed and every run), at least one, and never all of them."""
    ranked = sorted(set(doc_ids), key=lambda d: hashlib.sha256(d.encode()).digest())
    if len(ranked) < 2:
        raise ValueError(
            f"the dataset has {len(ranked)} document(s); holding out documents for validation needs at least 2 "
            "(use validation 'none')"
        )
    chosen = [d for d in ranked if int.from_bytes(hashlib.sha256(d.encode()).digest()[:8], "big") < fraction * 2 ** 64]
    count = min(max(1, len(chosen)), len(ranked) - 1)
    return frozenset(ranked[:count])


@dataclass(frozen=True)
class Split:
    """What trains and what validates: shard files, and the documents held out when a split by
    document is used (``None``: the split is by shard file, or there is no validation)."""

    train_files: list[Path]
    validation_files: list[Path]
    held_out: frozenset[str] | None
    how: str  # for the run summary: "shards: last 1 of 8", "documents: 3 of 31 held out", "none"

    def train_filter(self) -> DocumentFilter | None:
        return None if self.held_out is None else DocumentFilter(self.held_out, inside=False)

    def validation_filter(self) -> DocumentFilter | None:
        return None if self.held_out is None else DocumentFilter(self.held_out, inside=True)


def split_dataset(files: Sequence[Path], how: str, validation_shards: int, validation_fraction: float) -> Split:
    """The train/validation split of a dataset's example shards.

    ``shards`` holds out the last ``validation_shards`` files; ``documents`` holds out whole
    documents (``validation_fraction`` of them, by a stable hash of doc_id), so a dataset of any
    number of shards, even one, can be trained on; ``auto`` takes shards when there are more files
    than that, else documents; ``none`` validates nothing.
    """
    from linkscan.pipeline.store import iter_shard

    files = sorted(files)
    if how == "none":
        return Split(files, [], None, "none")
    if how == "shards" or (how == "auto" and len(files) > validation_shards > 0):
        train, validation = split_files(files, validation_shards)
        return Split(train, validation, None, f"shards: the last {len(validation)} of {len(files)}")
    doc_ids = [d for path in files for batch in iter_shard(path, "examples", columns=["doc_id"], batch_size=65536)
               for d in batch.column("doc_id").to_pylist()]
    held_out = held_out_documents(doc_ids, validation_fraction)
    return Split(files, files, held_out, f"documents: {len(held_out)} of {len(set(doc_ids))} held out")


def recall_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of the positives among the k highest-scoring units."""
    positives = labels > 0.5
    if not positives.any():
        return float("nan")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(positives[top].sum() / positives.sum())
