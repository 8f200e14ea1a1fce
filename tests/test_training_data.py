"""Streaming training batches from examples shards: labels, budgets, ranks, resume, held-out split."""
from __future__ import annotations

import gzip
import itertools
import json

import numpy as np
import pytest

from linkscan.training.data import (
    ExampleStream, bucket_of, count_too_long, examples_from_batch, recall_at_k, relabel, split_files,
    validation_examples,
)
from tests.probe_data import probe_examples, write_probe_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tokenizer_path, dev_corpus):
    """A published dataset of 48 probe examples (real text, real tokenizer) in 4 shards."""
    from tokenizers import Tokenizer

    from linkscan.pipeline.store import open_dataset

    with gzip.open(dev_corpus / "rfc.jsonl.gz", "rt") as handle:
        texts = [json.loads(line)["text"] for line in itertools.islice(handle, 4)]
    examples = probe_examples(texts, Tokenizer.from_file(str(tokenizer_path)), n_examples=48,
                              min_tokens=200, max_tokens=900, seed=0)
    return open_dataset(write_probe_dataset(tmp_path_factory.mktemp("data"), "probe", examples, 4)), examples


def _stream(files, **overrides) -> ExampleStream:
    options = {"micro_batch_tokens": 2048, "buckets": [512, 1024], "seed": 0, "shuffle_buffer": 8}
    return ExampleStream(files, **{**options, **overrides})


def _fingerprint(input_ids) -> int:
    return hash(tuple(input_ids))


def test_labels_sit_at_the_question_length_plus_each_sentence_end(dataset):
    ds, examples = dataset
    batch = next(ds.iter_batches(columns=["question_ids", "token_ids", "sentence_ends", "positives"]))
    first = next(examples_from_batch(batch))
    source = next(e for e in examples if e.token_ids == first.input_ids[len(e.question_ids):])
    assert first.positions == [len(source.question_ids) + end for end in source.sentence_ends]
    assert [i for i, label in enumerate(first.labels) if label == 1.0] == source.positives


def test_a_micro_batch_holds_one_bucket_and_fits_the_token_budget_once_padded(dataset):
    ds, _ = dataset
    for batch in itertools.islice(iter(_stream(ds.shard_paths())), 20):
        rows, length = batch["input_ids"].shape
        assert rows * length <= 2048 or rows == 1
        real = batch["mask"].sum(dim=1)
        assert (real > 0).all()
        lengths = (batch["input_ids"] != 0).sum(dim=1)  # no probe text tokenizes to id 0
        buckets = {bucket_of(int(n), [512, 1024]) for n in lengths}
        assert len(buckets) == 1


def test_each_rank_reads_its_own_shards_and_together_they_read_everything(dataset):
    ds, examples = dataset
    files = ds.shard_paths()
    seen = []
    for rank in range(2):
        stream = _stream(files, rank=rank, world_size=2)
        seen.append({_fingerprint(e.input_ids) for e in stream._examples(rank, 2, epoch=0)})
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == {_fingerprint(e.question_ids + e.token_ids) for e in examples}


def test_with_fewer_shards_than_consumers_rows_are_split_instead(dataset):
    ds, examples = dataset
    files = ds.shard_paths()[:1]
    parts = [{_fingerprint(e.input_ids) for e in _stream(files)._examples(consumer, 3, epoch=0)} for consumer in range(3)]
    assert all(parts) and sum(map(len, parts)) == len(set().union(*parts)) == len(examples) // 4


def test_skipping_consumed_micro_batches_resumes_the_same_stream(dataset):
    ds, _ = dataset
    files = ds.shard_paths()
    continuous = [b["input_ids"] for b in itertools.islice(iter(_stream(files)), 30)]
    resumed = [b["input_ids"] for b in itertools.islice(iter(_stream(files, skip_micro_batches=17)), 13)]
    assert all((a.shape == b.shape) and (a == b).all() for a, b in zip(continuous[17:], resumed))


def test_the_order_depends_on_the_seed_and_changes_between_epochs(dataset):
    ds, _ = dataset
    files = ds.shard_paths()
    order = lambda seed, epoch: [_fingerprint(e.input_ids) for e in _stream(files, seed=seed)._examples(0, 1, epoch)]  # noqa: E731
    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(1, 0)
    assert order(0, 0) != order(0, 1) and sorted(order(0, 0)) == sorted(order(0, 1))


def _shape(example) -> tuple:
    """What relabelling must keep: where each token first occurred (so which tokens repeat where),
    the label positions and the labels."""
    first: dict[int, int] = {}
    return tuple(first.setdefault(t, len(first)) for t in example.input_ids), tuple(example.positions), tuple(example.labels)


def test_relabelled_examples_keep_which_tokens_recur_where_and_nothing_else(dataset):
    ds, _ = dataset
    files = ds.shard_paths()
    plain = list(_stream(files)._examples(0, 1, epoch=0))
    renamed = list(_stream(files, relabel_share=1.0, vocab_size=50277)._examples(0, 1, epoch=0))
    assert sorted(map(_shape, plain)) == sorted(map(_shape, renamed))
    assert not {_fingerprint(e.input_ids) for e in plain} & {_fingerprint(e.input_ids) for e in renamed}
    assert all(0 < t < 50277 for e in renamed for t in e.input_ids)
    again = list(_stream(files, relabel_share=1.0, vocab_size=50277)._examples(0, 1, epoch=0))
    assert [e.input_ids for e in again] == [e.input_ids for e in renamed]  # a pure function of the seed: resume holds


def test_a_relabel_share_renames_about_that_share_of_the_examples(dataset):
    ds, examples = dataset
    originals = {_fingerprint(e.question_ids + e.token_ids) for e in examples}
    stream = _stream(ds.shard_paths(), relabel_share=0.5, vocab_size=50277)
    seen = [e for epoch in range(4) for e in stream._examples(0, 1, epoch)]
    renamed = sum(_fingerprint(e.input_ids) not in originals for e in seen)
    assert 0.3 * len(seen) < renamed < 0.7 * len(seen)


def test_relabelling_keeps_the_pad_id_and_refuses_a_vocabulary_too_small():
    import random

    from linkscan.training.data import PAD_ID, Example

    example = Example([5, 9, 5, PAD_ID, 7, 9], [3, 5], [0.0, 1.0], 2)
    renamed = relabel(example, random.Random(0), 50277)
    assert renamed.input_ids[3] == PAD_ID and renamed.input_ids[0] == renamed.input_ids[2] != renamed.input_ids[1]
    with pytest.raises(ValueError, match="cannot be relabelled"):
        relabel(example, random.Random(0), 3)


def test_examples_longer_than_every_bucket_are_counted_as_too_long(dataset):
    ds, examples = dataset
    expected = sum(e.n_tokens > 600 for e in examples)
    assert expected > 0
    assert count_too_long(ds.shard_paths(), 600) == expected
    streamed = {int((b["input_ids"] != 0).sum(dim=1).max()) for b in itertools.islice(iter(_stream(ds.shard_paths(), buckets=[600])), 40)}
    assert max(streamed) <= 600


def test_the_last_shards_are_held_out_for_validation(dataset):
    ds, _ = dataset
    train, held_out = split_files(ds.shard_paths(), 1)
    assert [p.name for p in held_out] == ["train-00003-of-00004.parquet"] and len(train) == 3
    assert len(validation_examples(held_out, limit=5, max_tokens=10_000)) == 5


def test_holding_out_every_shard_is_refused(dataset):
    ds, _ = dataset
    with pytest.raises(ValueError, match="leaves none to train on"):
        split_files(ds.shard_paths(), 4)


def test_recall_at_k_counts_positives_among_the_top_scores():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.7])
    labels = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    assert recall_at_k(scores, labels, 1) == 1.0 / 2
    assert recall_at_k(scores, labels, 3) == 1.0 / 2
    assert recall_at_k(scores, labels, 5) == 1.0


def test_dataloader_workers_split_the_shards_and_resume_at_the_same_batch(dataset):
    from linkscan.pipeline.store import iter_shard
    from linkscan.training.data import make_loader

    ds, _ = dataset
    files = ds.shard_paths()
    continuous = [b["input_ids"] for b in itertools.islice(iter(make_loader(_stream(files), num_workers=2)), 12)]
    resumed = [b["input_ids"] for b in itertools.islice(iter(make_loader(_stream(files, skip_micro_batches=5), num_workers=2)), 7)]
    assert all(a.shape == b.shape and (a == b).all() for a, b in zip(continuous[5:], resumed))
    # batch i comes from worker i % 2, which reads shard files 0, 2 (worker 0) or 1, 3 (worker 1)
    from linkscan.training.data import examples_from_batch

    owned = [{_fingerprint(e.input_ids) for path in files[w::2] for batch in iter_shard(path, "examples")
              for e in examples_from_batch(batch)} for w in range(2)]
    for index, batch in enumerate(continuous):
        rows = {_fingerprint(row[row != 0].tolist()) for row in batch}  # no probe token is id 0
        assert rows <= owned[index % 2]


def test_held_out_documents_are_stable_and_never_all_or_none():
    from linkscan.training.data import held_out_documents

    doc_ids = [f"doc-{i}" for i in range(200)]
    held = held_out_documents(doc_ids, 0.1)
    assert held == held_out_documents(list(reversed(doc_ids)), 0.1)  # by content, not order
    assert 5 <= len(held) <= 40
    assert len(held_out_documents(["a", "b"], 0.001)) == 1 and len(held_out_documents(["a", "b"], 0.999)) == 1
    with pytest.raises(ValueError, match="needs at least 2"):
        held_out_documents(["only"], 0.1)


def test_the_training_stream_skips_the_held_out_documents(dataset):
    from linkscan.training.data import split_dataset

    ds, examples = dataset
    split = split_dataset(ds.shard_paths(), "documents", 1, 0.3)
    doc_of = {_fingerprint(e.question_ids + e.token_ids): e.doc_id for e in examples}
    assert 1 <= len(split.held_out) < len(doc_of)
    held = validation_examples(split.validation_files, 100, 10_000, split.validation_filter())
    assert {doc_of[_fingerprint(e.input_ids)] for e in held} == split.held_out
    trained = {doc_of[_fingerprint(e.input_ids)] for e in _all_streamed(split)}
    assert trained == set(doc_of.values()) - split.held_out


def _all_streamed(split):
    """Every example of one epoch of the training stream of ``split`` (without batching)."""
    stream = _stream(split.train_files, skip_documents=split.held_out)
    return list(stream._examples(0, 1, 0))


def test_match_labels_mark_the_question_tokens_that_evidence_units_hold_and_few_units_share():
    from linkscan.training.data import Example

    question = [7, 8, 9, 3]  # 3 is common (in every unit), 9 is in no evidence unit
    units = [[7, 3, 1], [2, 3, 4], [8, 3, 5], [1, 3, 2], [9, 3, 6], [4, 3, 5], [1, 3, 4], [2, 3, 6]]
    tokens = [t for unit in units for t in unit]
    ends = [len(question) + 3 * i + 2 for i in range(len(units))]
    labels = [1.0 if i in (0, 2) else 0.0 for i in range(len(units))]
    example = Example(question + tokens, ends, labels, question_length=len(question))
    marked = example.match_labels()
    assert len(marked) == len(tokens)
    assert [tokens[i] for i, label in enumerate(marked) if label == 1.0] == [7, 8]


def test_a_packed_row_holds_whole_examples_end_to_end_with_their_sequence_index():
    from linkscan.training.data import Example, pack

    first = Example([1, 2, 3, 4, 5], [2, 4], [0.0, 1.0], question_length=2)
    second = Example([6, 7, 8], [2], [1.0], question_length=1)
    batch = pack([first, second], length=10, units=4, with_match=True)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 0, 0]]
    assert batch["seq_idx"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 2, 2]]  # the padding is a sequence of its own
    assert batch["positions"].tolist() == [[2, 4, 7, 0]] and batch["labels"].tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert batch["mask"].tolist() == [[True, True, True, False]] and int(batch["n_tokens"]) == 8
    assert batch["match_mask"].tolist() == [[False, False, True, True, True, False, True, True, False, False]]
    with pytest.raises(ValueError, match="do not fit 6 tokens"):
        pack([first, second], length=6, units=4)


def test_packed_micro_batches_have_one_shape_hold_every_example_once_and_resume(dataset):
    from linkscan.training.data import pack_units

    ds, examples = dataset
    stream = _stream(ds.shard_paths(), pack=True, micro_batch_tokens=2048)
    first_epoch, seen = [], 0
    for batch in iter(stream):
        assert batch["input_ids"].shape == (1, 2048) and batch["positions"].shape == (1, pack_units(2048))
        first_epoch.append(batch)
        at_units = batch["seq_idx"][0, batch["positions"][0, batch["mask"][0]]]
        seen += len(set(at_units.tolist()))  # the examples of the row
        if seen >= len(examples):
            break
    assert seen == len(examples)  # every probe example fits a row, and none is split or dropped
    resumed = list(itertools.islice(iter(_stream(ds.shard_paths(), pack=True, micro_batch_tokens=2048,
                                                 skip_micro_batches=3)), 4))
    assert all((a["input_ids"] == b["input_ids"]).all() for a, b in zip(first_epoch[3:7], resumed))


def test_consumer_rows_show_when_small_shards_would_be_oversampled():
    from linkscan.training.data import consumer_rows

    assert consumer_rows([2495, 274, 415, 166], 3) == [2661, 274, 415]  # the dev dataset over 3 workers
    assert consumer_rows([2495, 274, 415, 166], 1) == [3350]
    assert consumer_rows([10, 10], 4) == [5, 5, 5, 5]  # fewer files than consumers: rows are dealt out
