"""The dense target: pairs from the shards, `linkscan train --target dense`, resume, and `evaluate --retriever dense:<out>`."""
from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkscan.flows.cli import app
from linkscan.training.dense import DenseTrainConfig, example_pairs, far_units
from tests.probe_data import probe_examples, write_probe_dataset

pytestmark = pytest.mark.integration  # whole training runs: not in make test-fast
runner = CliRunner()

UNITS = [f"Unit {i} says something about topic {i % 7}. " for i in range(30)]


def _config(**overrides) -> DenseTrainConfig:
    return DenseTrainConfig(**{"dataset": "-", "out": "-", **overrides})


def test_each_positive_makes_a_pair_with_a_far_unit_of_the_same_chunk():
    rows, dropped = example_pairs("ex-1", " Where? ", UNITS, [2, 3, 25], _config(hard_negatives=2, negative_distance=10))
    assert [row["positive"] for row in rows] == [UNITS[2].strip(), UNITS[3].strip(), UNITS[25].strip()]
    assert all(row["question"] == "Where?" for row in rows) and dropped == {}
    assert far_units(30, [2, 3, 25], 10) == [13, 14, 15]  # 10 or more units from 3 and from 25
    far = {UNITS[i].strip() for i in (13, 14, 15)}
    for row in rows:
        assert list(row) == ["question", "positive", "negative_1", "negative_2"]
        assert {row["negative_1"], row["negative_2"]} <= far and row["negative_1"] != row["negative_2"]
    again, _ = example_pairs("ex-1", " Where? ", UNITS, [2, 3, 25], _config(hard_negatives=2, negative_distance=10))
    assert again == rows  # seeded by (seed, example, positive)


def test_a_chunk_without_far_units_drops_its_pairs_by_name_unless_negatives_are_in_batch_only():
    rows, dropped = example_pairs("ex-2", "Q?", UNITS[:12], [5, 6], _config(negative_distance=10))
    assert rows == [] and dropped == {"no_far_unit": 2}
    rows, dropped = example_pairs("ex-2", "Q?", UNITS[:12], [5, 6], _config(hard_negatives=0))
    assert [list(row) for row in rows] == [["question", "positive"]] * 2 and dropped == {}


@pytest.fixture(scope="module")
def probe_dataset(tmp_path_factory, tokenizer_path, dev_corpus) -> Path:
    """A tiny published version: 24 examples of 25-60 units of real text, each its own document."""
    from tokenizers import Tokenizer

    with gzip.open(dev_corpus / "scotus.jsonl.gz", "rt") as handle:
        texts = [json.loads(line)["text"] for line in itertools.islice(handle, 4)]
    examples = probe_examples(texts, Tokenizer.from_file(str(tokenizer_path)), n_examples=24,
                              min_tokens=900, max_tokens=1400, seed=3)
    return write_probe_dataset(tmp_path_factory.mktemp("data"), "probe", examples, 2)


@pytest.fixture(scope="module")
def trained(probe_dataset, tmp_path_factory) -> Path:
    """`linkscan train --target dense`: 4 steps of 4 pairs from the packaged MiniLM, validated at 0, 2 and 4."""
    out = tmp_path_factory.mktemp("dense") / "run"
    result = runner.invoke(app, [
        "train", "--target", "dense", "--dataset", str(probe_dataset), "--out", str(out), "--device", "cpu",
        "--max-steps", "4", "--validate-every", "2", "--checkpoint-every", "2", "--validation-fraction", "0.25",
        "--set", "batch_size=4", "--set", "validation_examples=4", "--set", "progress=false",
    ])
    assert result.exit_code == 0, result.output
    return out


def test_a_dense_run_logs_steps_and_held_out_recall_against_the_base_model(trained):
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    validations = [r for r in rows if "val_recall@5" in r]
    assert [r["step"] for r in validations] == [0, 2, 4]  # step 0: the base model, the bar to beat
    assert all(r["val_examples"] == 4 for r in validations)
    assert validations[0]["val_recall@5"] > validations[0]["val_random_recall@5"]  # MiniLM finds quoted text
    assert json.loads((trained / "train_config.json").read_text())["target"] == "dense"
    assert (trained / "checkpoints" / "LATEST").read_text().strip() == "checkpoint-4"


def test_the_model_card_names_the_dataset_version_and_the_weights_changed(trained, probe_dataset):
    from sentence_transformers import SentenceTransformer

    from linkscan.evaluation.retrievers import default_dense_model

    version = probe_dataset.name
    card = (trained / "README.md").read_text()
    assert f"linkscan dataset probe {version}" in card and str(probe_dataset) in card
    provenance = json.loads((trained / "linkscan_dense.json").read_text())
    assert provenance["dataset"]["version"] == version and "model.safetensors" in provenance["files"]
    text = ["The court held that the statute applies."]
    tuned = SentenceTransformer(str(trained), device="cpu").encode(text)
    base = SentenceTransformer(str(default_dense_model()), device="cpu").encode(text)
    assert abs(tuned - base).max() > 1e-4


def test_evaluate_reads_the_fine_tuned_folder_as_dense(trained, dev_evalsets, tokenizer_path, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, [
        "evaluate", "--benchmarks", str(dev_evalsets), "--only", "paperqa_4k", "--retriever", f"dense:{trained}",
        "--max-questions", "3", "--out", str(out), "--tokenizer", str(tokenizer_path), "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert {r["retriever"] for r in rows} == {f"dense:{trained}"} and len(rows) == 3
    assert all(r["recall@50"] is not None and 0 <= r["recall@50"] <= 1 for r in rows)  # paperqa has gold evidence


def test_an_out_holding_a_dense_run_is_refused_and_overwrite_removes_its_model(trained, probe_dataset, tmp_path):
    from linkscan.training.dense_loop import claim_dense_folder

    result = runner.invoke(app, ["train", "--target", "dense", "--dataset", str(probe_dataset), "--out", str(trained)])
    assert result.exit_code == 2
    assert f"{trained}: already holds a training run (latest checkpoint checkpoint-4); pass --resume" in result.output
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("checkpoints"))
    claim_dense_folder(copy, overwrite=True)
    assert sorted(p.name for p in copy.iterdir()) == []  # the model files, card and provenance went too


def test_scanner_options_are_refused_by_the_dense_target(probe_dataset, tmp_path):
    result = runner.invoke(app, ["train", "--target", "dense", "--dataset", str(probe_dataset), "--out",
                                 str(tmp_path / "x"), "--shape", "small", "--pack"])
    assert result.exit_code == 2
    assert "--shape, --pack: scanner options, not used by --target dense" in result.output
    assert not (tmp_path / "x").exists()


def test_a_resumed_dense_run_ends_with_the_weights_of_an_uninterrupted_one(probe_dataset, tmp_path):
    from safetensors.torch import load_file

    from linkscan.training.dense_loop import train_dense

    def config(out: Path) -> DenseTrainConfig:
        return DenseTrainConfig(dataset=str(probe_dataset), out=str(out), device="cpu", max_steps=4, batch_size=4,
                                checkpoint_every=2, validation="none", progress=False)

    straight = train_dense(config(tmp_path / "straight"))
    stopped = train_dense(config(tmp_path / "resumed"), stop_after=2)
    assert stopped["step"] == 2 and stopped["model"] is None  # no model until the last step
    assert not (tmp_path / "resumed" / "linkscan_dense.json").exists()
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as metrics:  # a kill after step 3 was logged
        metrics.write(json.dumps({"step": 3, "loss": -1.0}) + "\n")
    resumed = train_dense(config(tmp_path / "resumed"), resume=True)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["step"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]
    assert "-1.0" not in (tmp_path / "resumed" / "metrics.jsonl").read_text()  # the row the resumed run redid
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert max(float((a[key] - b[key]).abs().max()) for key in a) < 1e-5
    assert straight["last_metrics"]["loss"] == pytest.approx(resumed["last_metrics"]["loss"], rel=1e-4)

    # A rerun of the finished run (every flow run resumes) returns its result and leaves the model alone.
    exported = (tmp_path / "resumed" / "model.safetensors").stat().st_mtime_ns
    again = train_dense(config(tmp_path / "resumed"), resume=True)
    assert again["already_finished"] and again["model"] == str(tmp_path / "resumed") and again["step"] == 4
    assert again["last_metrics"] == resumed["last_metrics"]
    assert (tmp_path / "resumed" / "model.safetensors").stat().st_mtime_ns == exported
    # Other settings are another run: it continues from the checkpoint.
    longer = train_dense(config(tmp_path / "resumed").model_copy(update={"max_steps": 5}), resume=True)
    assert not longer.get("already_finished") and longer["step"] == 5 and longer["resumed_from"] == "checkpoint-4"


def test_a_resume_without_a_checkpoint_starts_again_without_the_rows_of_the_killed_run(probe_dataset, tmp_path):
    from linkscan.training.dense_loop import train_dense

    out = tmp_path / "run"
    out.mkdir()
    # Ctrl-C before the first checkpoint, in the middle of writing a row.
    killed = [{"step": 0, "val_recall@5": 0.5}, {"step": 1, "loss": -1.0}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in killed) + '{"step": 2, "lo')  # torn
    result = train_dense(DenseTrainConfig(dataset=str(probe_dataset), out=str(out), device="cpu", max_steps=2,
                                          batch_size=4, validation="none", progress=False), resume=True)
    assert result["resumed_from"] is None and result["step"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2] and all(row.get("loss", 1) > 0 for row in rows)
    assert not any("val_recall@5" in row for row in rows)


def test_seconds_per_step_count_training_time_only(tmp_path, monkeypatch):
    """Loading (or a resume's restore), evaluations and checkpoints are not in ``seconds``."""
    from transformers import TrainerState

    from linkscan.training import dense_loop

    clock = iter([0.0, 100.0, 130.0, 500.0, 520.0]).__next__
    monkeypatch.setattr(dense_loop.time, "perf_counter", clock)
    metrics = dense_loop._callbacks(tmp_path, None)[0]  # created at 0 s
    state = TrainerState(global_step=2)  # resumed at step 2
    metrics.on_train_begin(None, state, None)  # 100 s: after loading and the restore
    state.global_step = 4
    metrics.on_log(None, state, None, logs={"loss": 0.5})  # 130 s: two steps of 15 s
    metrics.on_evaluate(None, state, None)  # 500 s: after a long evaluation
    state.global_step = 5
    metrics.on_log(None, state, None, logs={"loss": 0.4})  # 520 s: one step of 20 s
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(row["step"], row["seconds"]) for row in rows] == [(4, 15.0), (5, 20.0)]


class _SavesTwoFiles:
    """Stands in for a SentenceTransformer: ``save_pretrained`` writes two files, or fails after one."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def save_pretrained(self, path: str, create_model_card: bool = False) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "config.json").write_text("{}")
        if self.fail:
            raise OSError(28, "No space left on device", str(Path(path) / "model.safetensors"))
        (Path(path) / "model.safetensors").write_text("new")


def test_a_failed_export_leaves_the_earlier_finished_model_or_no_finished_model(tmp_path, monkeypatch):
    from linkscan.training import dense_loop
    from linkscan.training.dense_loop import PROVENANCE, export_model

    export_model(_SavesTwoFiles(), tmp_path, "card", {"run": 1})
    assert json.loads((tmp_path / PROVENANCE).read_text())["files"] == ["README.md", "config.json", "model.safetensors"]
    with pytest.raises(OSError):  # the disk fills while the new export is staged: the old model stands
        export_model(_SavesTwoFiles(fail=True), tmp_path, "card", {"run": 2})
    assert not (tmp_path / ".export").exists()
    assert json.loads((tmp_path / PROVENANCE).read_text())["run"] == 1

    moved, real_replace = [], os.replace

    def replace_then_die(source, target):
        if moved:
            raise KeyboardInterrupt
        moved.append(target)
        real_replace(source, target)

    monkeypatch.setattr(dense_loop.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):  # cut off while the files are swapped: no folder claims a finished model
        export_model(_SavesTwoFiles(), tmp_path, "card", {"run": 3})
    assert not (tmp_path / PROVENANCE).exists()


def test_an_out_that_cannot_be_written_ends_in_one_line(probe_dataset, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["train", "--target", "dense", "--dataset", str(probe_dataset), "--out",
                                 str(blocker / "run"), "--device", "cpu", "--set", "progress=false"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {blocker}") and "rerun with --resume" in lines[0]


def test_an_interrupted_dense_run_exits_143_with_one_line(probe_dataset, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "linkscan.flows.cli", "train", "--target", "dense", "--dataset", str(probe_dataset),
         "--out", str(out), "--device", "cpu", "--max-steps", "10000", "--validation", "none",
         "--set", "batch_size=4", "--set", "progress=false"],
        cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").is_file() or '"loss"' not in (out / "metrics.jsonl").read_text():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no training step in 300 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    assert "error:" not in stderr and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted (SIGTERM); rerun with --resume to continue from the last checkpoint"
