"""GPU checks of the training stage (run on the device machine with `pytest -m gpu`).

The learning test needs a probe dataset generated beforehand (no tokenizer or corpus travels to
the GPU machine): `LINKSCAN_PROBE_DATASET` names its version folder; `LINKSCAN_SCANNER_INIT` may name
a pretrained backbone folder (e.g. a local copy of state-spaces/mamba2-130m) to start from.
Measured 2026-11-29 from random init (no pretrained weights on the machine): the loss falls from 2.36
to 1.29 in 400 steps, which is only the level of the best input-blind constant (``val_constant_loss``,
about 1.3 here), and held-out recall@5 stays at the random level, so this test fails from scratch.
CPU runs of a small model on this probe task and on an offline-generated dataset learned no
question-dependent matching in 200-300 steps either: the test needs a pretrained backbone.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

pytestmark = pytest.mark.gpu

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _paired_models(shape_name: str):
    from training.configs import model_shape
    from training.model import ScannerModel

    torch.manual_seed(0)
    shape = model_shape(shape_name)
    fused = ScannerModel(shape, backend="mamba_ssm", device="cuda")
    reference = ScannerModel(shape, backend="hf", device="cuda")
    from training.checkpoint import load_state_dict_strict

    load_state_dict_strict(reference, fused.canonical_state_dict(), "mamba_ssm model")
    return fused.eval(), reference.eval()


@needs_gpu
def test_mamba_ssm_and_hf_backends_give_the_same_scores_on_the_same_weights():
    fused, reference = _paired_models("130m")
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 50000, (2, 4096), generator=generator).cuda()
    positions = torch.sort(torch.randint(0, 4096, (2, 64), generator=generator), dim=1).values.cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        a = fused.score(input_ids, positions)
        b = reference.score(input_ids, positions)
    scale = b.abs().max().item()
    assert torch.isfinite(a).all() and scale > 0
    # bf16 tolerance: a few percent of the logit scale, and near-perfect correlation
    assert (a - b).abs().max().item() <= 0.05 * scale
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item() > 0.999


@needs_gpu
def test_short_training_lowers_loss_and_raises_held_out_recall_above_random(tmp_path):
    dataset = os.environ.get("LINKSCAN_PROBE_DATASET")
    if not dataset:
        pytest.skip("set LINKSCAN_PROBE_DATASET to a probe dataset version folder")
    from training.configs import TrainConfig
    from training.loop import train

    config = TrainConfig(
        dataset=dataset, out=str(tmp_path / "run"), config="130m", model=os.environ.get("LINKSCAN_SCANNER_INIT"),
        backend="mamba_ssm", device="cuda",
        max_steps=int(os.environ.get("LINKSCAN_PROBE_STEPS", "150")), tokens_per_step=65536,
        micro_batch_tokens=32768, max_seq_tokens=8192, lr=1e-3, min_lr=1e-4,
        validate_every=50, checkpoint_every=1000, validation_examples=128, progress=False,
    )
    result = train(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["loss"] for r in rows[:10]) / 10
    last = sum(r["loss"] for r in rows[-10:]) / 10
    final = result["last_metrics"]
    print(json.dumps({"first_loss": first, "last_loss": last, **final}))
    assert last < 0.8 * first
    assert final["val_loss"] < 0.9 * final["val_constant_loss"]  # more than the base rate was learned
    assert final["val_recall@5"] > 2 * final["val_random_recall@5"]
