"""The training loop on CPU: loss, schedule, optimizer groups, learning, exact resume, DDP with gloo, CLI."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from linkscan.training.configs import TrainConfig, model_shape
from linkscan.training.loop import accumulate_gradients, configure_optimizer, constant_bce, lr_factor, masked_bce, train
from linkscan.training.model import ScannerModel
from tests.probe_data import dev_probe_dataset

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory, tokenizer_path, dev_corpus) -> Path:
    return dev_probe_dataset(dev_corpus, tokenizer_path, tmp_path_factory.mktemp("data"), "probe",
                             n_examples=64, num_shards=4, seed=1)


def _config(dataset_path: Path, out: Path, **overrides) -> TrainConfig:
    options = dict(dataset=str(dataset_path), out=str(out), shape="small", backend="hf", device="cpu",
                   precision="fp32", max_steps=8, tokens_per_step=2048, micro_batch_tokens=1024,
                   length_buckets=[512, 1024], max_seq_tokens=1024, lr=3e-3, min_lr=3e-4, validate_every=4,
                   checkpoint_every=4, validation_examples=8, recall_k=[1, 5], progress=False)
    return TrainConfig(**{**options, **overrides})


def test_masked_bce_weights_positives_by_negatives_over_positives():
    logits = torch.tensor([[0.0, 2.0, -1.0, 5.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])  # the last position is padding
    loss, pos_weight = masked_bce(logits, labels, mask)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = (2.0 * softplus(-0.0) + softplus(2.0) + softplus(-1.0)) / 3
    assert float(pos_weight) == 2.0
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_constant_bce_is_the_lowest_loss_of_an_input_blind_model():
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])  # one positive, two negatives: pos_weight 2, best logit 0
    assert constant_bce(labels, mask) == pytest.approx(4 * math.log(2) / 3, rel=1e-6)
    for logit in (-1.0, -0.1, 0.1, 1.0):
        assert float(masked_bce(torch.full((1, 4), logit), labels, mask)[0]) > constant_bce(labels, mask)
    assert math.isnan(constant_bce(torch.zeros(1, 4), mask))  # no positive: no base rate to learn


def test_lr_warms_up_over_ten_percent_then_decays_by_cosine_to_the_minimum():
    config = TrainConfig(dataset="-", out="-", max_steps=100, lr=1e-4, min_lr=1e-5)
    factors = [lr_factor(step, config) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert lr_factor(100, config) == pytest.approx(0.1)  # 1e-5 / 1e-4
    assert factors[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))  # halfway: 0.55


def test_weight_decay_applies_to_matrices_only():
    model = ScannerModel(model_shape("small"))
    optimizer = configure_optimizer(model, TrainConfig(dataset="-", out="-"), torch.device("cpu"))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in plain["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].split(".")[-1] for p in plain["params"]} == {"A_log", "D", "dt_bias", "bias", "weight"}
    assert all(names[id(p)].endswith(("norm.weight", "norm_f.weight", "bias", "A_log", "D", "dt_bias"))
               for p in plain["params"])


def test_a_tiny_model_trains_and_its_loss_falls(dataset_path, tmp_path):
    result = train(_config(dataset_path, tmp_path / "run", max_steps=30, validate_every=30, checkpoint_every=30))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert {"val_loss", "val_constant_loss", "val_recall@5", "val_random_recall@5"} <= set(result["last_metrics"])
    assert 0 < result["last_metrics"]["val_constant_loss"] < 2 * math.log(2)
    assert (tmp_path / "run" / "checkpoints" / "step-00000030" / "model.safetensors").is_file()


def test_resume_after_an_interruption_continues_exactly_where_it_stopped(dataset_path, tmp_path):
    from safetensors.torch import load_file

    straight = train(_config(dataset_path, tmp_path / "straight"))
    stopped = train(_config(dataset_path, tmp_path / "resumed"), stop_after=4)
    assert stopped["step"] == 4
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["data"]["micro_batches_per_rank"] == 4 * straight["accumulation_steps"]
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as metrics:  # a kill after step 5 was logged
        metrics.write(json.dumps({"step": 5, "loss": -1.0}) + "\n")
    resumed = train(_config(dataset_path, tmp_path / "resumed"), resume=True)
    assert resumed["resumed_from_step"] == 4 and resumed["step"] == 8
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 9)) and all(row["loss"] > 0 for row in rows)
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-00000008" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "step-00000008" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert resumed["last_metrics"]["loss"] == pytest.approx(straight["last_metrics"]["loss"], rel=1e-5)


def _micro_batches(dataset_path: Path, n: int) -> list[dict]:
    from linkscan.pipeline.store import open_dataset
    from linkscan.training.data import ExampleStream

    stream = ExampleStream(open_dataset(dataset_path).shard_paths(), micro_batch_tokens=1024, buckets=[512, 1024])
    return list(itertools.islice(iter(stream), n))


def _ddp_gradients(rank: int, world_size: int, init_file: str, batches: list, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = ScannerModel(model_shape("small"))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    config = TrainConfig(dataset="-", out="-", precision="fp32")
    accumulate_gradients(ddp, batches[rank::world_size], config, torch.device("cpu"))
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out)
    torch.distributed.destroy_process_group()


def test_ddp_on_two_cpu_processes_matches_single_process_gradients(dataset_path, tmp_path):
    batches = _micro_batches(dataset_path, 4)
    torch.manual_seed(0)
    model = ScannerModel(model_shape("small"))
    accumulate_gradients(model, batches, TrainConfig(dataset="-", out="-", precision="fp32"), torch.device("cpu"))
    mp.spawn(_ddp_gradients, args=(2, str(tmp_path / "init"), batches, str(tmp_path / "grads.pt")), nprocs=2)
    distributed = torch.load(tmp_path / "grads.pt")
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(distributed[name], parameter.grad, rtol=1e-4, atol=1e-6)


def test_linkscan_train_writes_a_loadable_checkpoint_and_metrics(dataset_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app
    from linkscan.training.checkpoint import load_model

    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, [
        "train", "--dataset", str(dataset_path), "--out", str(out), "--shape", "small", "--backend", "hf",
        "--device", "cpu", "--max-steps", "3", "--tokens-per-step", "1024", "--micro-batch-tokens", "1024",
        "--precision", "fp32", "--checkpoint-every", "3",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["step"] == 3
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    model = load_model(out)  # a run folder resolves to its latest checkpoint
    assert model.shape == model_shape("small")


def test_linkscan_train_under_torchrun_with_two_cpu_processes(dataset_path, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp-run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "linkscan.flows.cli_train", "--dataset", str(dataset_path), "--out", str(out), "--shape", "small",
               "--backend", "hf", "--device", "cpu", "--max-steps", "2", "--tokens-per-step", "2048",
               "--micro-batch-tokens", "1024", "--precision", "fp32", "--checkpoint-every", "2"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent.parent)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout[finished.stdout.index("{"):])
    assert (report["world_size"], report["accumulation_steps"], report["step"]) == (2, 1, 2)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["LATEST", "step-00000002"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 alone writes metrics


def test_linkscan_train_names_a_missing_dataset_and_exits_with_an_error(tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app

    result = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "nothing"), "--out", str(tmp_path / "run"),
                                      "--device", "cpu", "--max-steps", "1"])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nothing'}: not a dataset version folder" in result.output


@pytest.fixture(scope="module")
def one_shard_dataset(tmp_path_factory, tokenizer_path, dev_corpus) -> Path:
    """The probe examples as a dataset of one shard, as a one-file corpus gives."""
    return dev_probe_dataset(dev_corpus, tokenizer_path, tmp_path_factory.mktemp("one-shard"), "one",
                             n_examples=48, num_shards=1, seed=2)


def test_a_dataset_of_one_shard_trains_holding_out_whole_documents(one_shard_dataset, tmp_path):
    result = train(_config(one_shard_dataset, tmp_path / "run", max_steps=2, validate_every=2, checkpoint_every=2))
    held, total = (int(n) for n in result["validation"].removeprefix("documents: ").split(" held out")[0].split(" of "))
    assert total == 48 and 1 <= held < total
    assert result["train_shards"] == 1 and result["last_metrics"]["val_examples"] == held


def test_validation_by_shards_on_one_shard_is_refused_with_the_way_out(one_shard_dataset, tmp_path):
    with pytest.raises(ValueError, match="use validation 'documents'"):
        train(_config(one_shard_dataset, tmp_path / "run", validation="shards"))


def test_training_checks_every_shard_before_the_first_step_and_names_a_damaged_one(tmp_path, dataset_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset_path, copy)
    shard = copy / "data" / "train-00002-of-00004.parquet"
    payload = bytearray(shard.read_bytes())
    payload[len(payload) // 2] ^= 0x10  # one flipped bit, which Parquet itself may read without complaint
    shard.write_bytes(bytes(payload))
    from linkscan.pipeline.store import ChecksumError

    with pytest.raises(ChecksumError, match=r"train-00002-of-00004.parquet: sha256 .* does not match .*--repair"):
        train(_config(copy, tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_partial_version_is_trained_on_only_when_asked(tmp_path, dataset_path):
    import shutil

    from linkscan.pipeline.store import StoreError

    copy = tmp_path / "partial"
    shutil.copytree(dataset_path, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    (copy / "dataset.json").write_text(json.dumps({**manifest, "complete": False, "pending_chunks": {"timeout": 3}}))
    with pytest.raises(StoreError, match="is partial \\(3 chunks were still pending"):
        train(_config(copy, tmp_path / "run"))
    assert train(_config(copy, tmp_path / "run", max_steps=1, allow_partial=True))["step"] == 1


def test_train_into_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(dataset_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app

    out = tmp_path / "run"
    train(_config(dataset_path, out, max_steps=4))
    before = (out / "metrics.jsonl").read_text()
    args = ["train", "--dataset", str(dataset_path), "--out", str(out), "--shape", "small", "--backend", "hf",
            "--device", "cpu", "--max-steps", "2", "--tokens-per-step", "1024", "--micro-batch-tokens", "1024",
            "--precision", "fp32", "--checkpoint-every", "2"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (f"error: {out}: already holds a training run (latest checkpoint step-00000004); "
                                      "pass --resume to continue it, --overwrite to start it again from scratch, or a new --out")
    assert (out / "metrics.jsonl").read_text() == before
    again = CliRunner().invoke(app, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["LATEST", "step-00000002"]


def _state_spaces_folder(folder: Path, d_model: int = 64, n_layer: int = 2) -> dict[str, torch.Tensor]:
    """A checkpoint folder laid out as state-spaces/mamba2-* on the hub: its config.json fields and
    a pytorch_model.bin under MambaLMHeadModel's key names (tied lm_head), shapes written out here
    from mamba_ssm's Mamba2 defaults (d_state 128, headdim 64, expand 2, ngroups 1, d_conv 4)."""
    d_inner, d_state, nheads, vocab = 2 * d_model, 128, 2 * d_model // 64, 50288
    generator = torch.Generator().manual_seed(5)
    state = {"backbone.embedding.weight": torch.randn(vocab, d_model, generator=generator)}
    for i in range(n_layer):
        layer = f"backbone.layers.{i}."
        state.update({
            layer + "mixer.dt_bias": torch.randn(nheads, generator=generator),
            layer + "mixer.A_log": torch.rand(nheads, generator=generator),
            layer + "mixer.D": torch.ones(nheads),
            layer + "mixer.in_proj.weight": torch.randn(2 * d_inner + 2 * d_state + nheads, d_model, generator=generator) * 0.02,
            layer + "mixer.conv1d.weight": torch.randn(d_inner + 2 * d_state, 1, 4, generator=generator) * 0.1,
            layer + "mixer.conv1d.bias": torch.zeros(d_inner + 2 * d_state),
            layer + "mixer.norm.weight": torch.ones(d_inner),
            layer + "mixer.out_proj.weight": torch.randn(d_model, d_inner, generator=generator) * 0.02,
            layer + "norm.weight": torch.ones(d_model),
        })
    state["backbone.norm_f.weight"] = torch.ones(d_model)
    state["lm_head.weight"] = state["backbone.embedding.weight"]  # tied, as the hub file stores it
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "d_model": d_model, "d_intermediate": 0, "n_layer": n_layer, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
        "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 16, "tie_embeddings": True}))
    torch.save(state, folder / "pytorch_model.bin")
    return state


def test_linkscan_train_starts_from_a_folder_in_the_hubs_state_spaces_layout(dataset_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app
    from linkscan.training.checkpoint import load_model

    hub = _state_spaces_folder(tmp_path / "mamba2-tiny")
    loaded = load_model(tmp_path / "mamba2-tiny", require_head=False).canonical_state_dict()
    assert set(loaded) == (set(hub) - {"lm_head.weight"}) | {"binary_head.weight", "binary_head.bias"}
    for key, value in hub.items():
        if key != "lm_head.weight":
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--dataset", str(dataset_path), "--out", str(out), "--model", str(tmp_path / "mamba2-tiny"),
        "--backend", "hf", "--device", "cpu", "--max-steps", "2", "--tokens-per-step", "1024",
        "--micro-batch-tokens", "1024", "--precision", "fp32", "--checkpoint-every", "2"])
    assert result.exit_code == 0, result.output
    trained = load_model(out).canonical_state_dict()  # the scanner now has its head
    assert not torch.equal(trained["backbone.layers.1.mixer.in_proj.weight"], hub["backbone.layers.1.mixer.in_proj.weight"])
    assert trained["backbone.embedding.weight"].shape == hub["backbone.embedding.weight"].shape


def test_the_match_objective_logs_its_loss_and_resumes_exactly_with_its_head(dataset_path, tmp_path):
    from safetensors.torch import load_file

    options = dict(match_loss_weight=1.0, max_steps=6, validate_every=6, checkpoint_every=3)
    straight = train(_config(dataset_path, tmp_path / "straight", **options))
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(0 < r["match_loss"] < 10 for r in rows)
    saved = torch.load(tmp_path / "straight" / "checkpoints" / "step-00000003" / "optimizer.pt", weights_only=True)
    assert set(saved["modules"]["match_head"]) == {"weight", "bias"}
    assert not any(k.startswith("match_head") for k in load_file(
        str(tmp_path / "straight" / "checkpoints" / "step-00000006" / "model.safetensors")))  # training-only
    train(_config(dataset_path, tmp_path / "resumed", **options), stop_after=3)
    resumed = train(_config(dataset_path, tmp_path / "resumed", **options), resume=True)
    assert resumed["last_metrics"]["match_loss"] == pytest.approx(straight["last_metrics"]["match_loss"], rel=1e-5)
    assert resumed["last_metrics"]["loss"] == pytest.approx(straight["last_metrics"]["loss"], rel=1e-5)


def test_metrics_are_read_back_every_log_every_steps_yet_written_for_every_step(dataset_path, tmp_path):
    train(_config(dataset_path, tmp_path / "run", max_steps=6, log_every=3, validate_every=100, checkpoint_every=100))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["tokens_per_s"] == rows[2]["tokens_per_s"] != rows[3]["tokens_per_s"]  # one timing per window
    assert len({r["loss"] for r in rows}) == 6  # but each step's own loss


@pytest.mark.parametrize("options, message", [
    ({"pack": True}, "pack needs the mamba_ssm back end"),
    ({"cuda_graphs": True}, "cuda_graphs needs one CUDA process and packed rows"),
])
def test_packing_and_cuda_graphs_are_refused_where_they_cannot_run(dataset_path, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        train(_config(dataset_path, tmp_path / "run", **options))
    assert not (tmp_path / "run").exists()


def test_a_preset_sets_its_values_and_options_given_beside_it_win(dataset_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app
    from linkscan.training.configs import PRESETS

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--dataset", str(dataset_path), "--out", str(out), "--preset", "cpu-example",
                                      "--max-steps", "2", "--checkpoint-every", "2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["max_steps"], saved["checkpoint_every"]) == (2, 2)
    for key in ("shape", "tokens_per_step", "micro_batch_tokens", "lr", "precision"):
        assert saved[key] == PRESETS["cpu-example"][key]
    unknown = CliRunner().invoke(app, ["train", "--dataset", str(dataset_path), "--out", str(tmp_path / "x"), "--preset", "fast"])
    assert unknown.exit_code == 2 and "unknown preset 'fast'" in unknown.output


def test_train_settings_come_from_a_file_and_set_over_the_preset(dataset_path, tmp_path):
    from typer.testing import CliRunner

    from linkscan.flows.cli import app

    settings = tmp_path / "train.yaml"
    settings.write_text("max_steps: 3\nlr: 0.002\nlength_buckets: [512, 1024]\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--dataset", str(dataset_path), "--out", str(out), "--preset", "cpu-example",
                                      "--config", str(settings), "--max-steps", "2", "--set", "lr=0.003",
                                      "--set", "checkpoint_every=2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "train_config.json").read_text())
    # the file over the preset, the options over the file, --set last
    assert (saved["max_steps"], saved["lr"], saved["checkpoint_every"], saved["length_buckets"]) == (2, 0.003, 2, [512, 1024])
    bad = CliRunner().invoke(app, ["train", "--dataset", str(dataset_path), "--out", str(tmp_path / "y"), "--set", "lr"])
    assert bad.exit_code == 2 and "use --set key.path=value" in bad.output


def _train_cli(dataset_path: Path, out: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "linkscan.flows.cli", "train", "--dataset", str(dataset_path), "--out", str(out),
            "--shape", "small", "--backend", "hf", "--device", "cpu", "--precision", "fp32", "--tokens-per-step", "1024",
            "--micro-batch-tokens", "1024", *extra]


@pytest.mark.parametrize("signum", [15, 2], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_train_exits_128_plus_the_signal_with_one_line(dataset_path, tmp_path, signum):
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    process = subprocess.Popen(_train_cli(dataset_path, out, "--max-steps", "10000", "--checkpoint-every", "1"),
                               cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "LATEST").is_file():  # training has begun: the loop, not the start-up, is hit
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint in 300 s"
        time.sleep(0.1)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "error:" not in stderr and "Traceback" not in stderr
    assert "\r" not in stderr  # no progress bar redraws in a log: lines
    assert f"interrupted ({name}); rerun with --resume to continue from the last checkpoint" in stderr.splitlines()


def test_progress_in_a_log_is_a_line_every_interval_and_at_the_last_step(caplog):
    from linkscan.training.loop import ProgressLines

    now = [0.0]
    progress = ProgressLines(total=5, step=0, interval_s=30, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="linkscan.training"):
        for seconds in (10, 25, 10, 10, 1):  # lines at 35 s (step 2) and at the last step, not at 45 or 55 s
            now[0] += seconds
            progress.set_postfix(loss=f"{now[0] / 100:.4f}")
            progress.update(1)
    assert [r.getMessage() for r in caplog.records] == ["train: step 2 of 5, loss 0.3500",
                                                        "train: step 5 of 5, loss 0.5600"]


@pytest.mark.parametrize("size", ["6m", "20m"], ids=["weights-do-not-fit", "optimizer-does-not-fit"])
def test_a_full_disk_while_writing_a_checkpoint_is_one_line_naming_the_file_and_leaves_no_temporary(
        dataset_path, small_tmpfs, size):
    """The small shape's weights take 13 MB and its optimizer state 26 MB: a tmpfs of 6 MB fails in
    safetensors, one of 20 MB in torch.save."""
    import re
    import subprocess

    out = small_tmpfs(size) / "run"
    result = subprocess.run(_train_cli(dataset_path, out, "--max-steps", "2", "--checkpoint-every", "1"),
                            cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "enforce fail" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    checkpoint = re.escape(str(out / "checkpoints" / ".step-00000001.tmp"))
    assert re.fullmatch(rf"error: {checkpoint}/(model\.safetensors|optimizer\.pt): no space left on device; "
                        rf"free space under {re.escape(str(out))} \(or pass --out on another disk\), then rerun "
                        r"with --resume to continue from the last checkpoint", line), line
    assert [p.name for p in (out / "checkpoints").iterdir()] == []  # the temporary folder is gone


def test_a_signal_during_torch_save_stays_an_interrupt(tmp_path):
    """torch.save turns an exception raised in its writes into 'enforce fail at inline_container.cc';
    SIGTERM's KeyboardInterrupt landing there must still end the run as an interrupt (exit 143).
    The file is a pipe nobody reads, so the save blocks in a write until the signal comes."""
    import os
    import signal

    from linkscan.training.checkpoint import _torch_save

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    pipe = tmp_path / "optimizer.pt"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # open, never read: the pipe fills at 64 KiB
    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            _torch_save({"moments": torch.ones(1_000_000)}, pipe)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(reader)


def test_a_failed_torch_save_write_is_an_oserror_naming_the_file():
    import errno

    from linkscan.training.checkpoint import _torch_save

    with pytest.raises(OSError) as raised:  # /dev/full answers every write with ENOSPC, as a full disk does
        _torch_save({"moments": torch.ones(1_000_000)}, Path("/dev/full"))
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, "/dev/full")
