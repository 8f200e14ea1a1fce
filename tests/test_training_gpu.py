"""GPU checks of the training stage (run on the device machine with `pytest -m gpu`).

The learning test needs a dataset generated beforehand (no tokenizer or corpus travels to the GPU
machine): `LINKSCAN_LINK_DATASET` names a version folder that `linkscan generate` made from the dev
corpus; it trains the `from-scratch` preset and checks issue 15's targets on held-out documents.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

pytestmark = pytest.mark.gpu

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _paired_models(shape_name: str):
    from linkscan.training.configs import model_shape
    from linkscan.training.model import ScannerModel

    torch.manual_seed(0)
    shape = model_shape(shape_name)
    fused = ScannerModel(shape, backend="mamba_ssm", device="cuda")
    reference = ScannerModel(shape, backend="hf", device="cuda")
    from linkscan.training.checkpoint import load_state_dict_strict

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


def _examples(lengths: list[int], seed: int):
    from linkscan.training.data import Example

    generator = torch.Generator().manual_seed(seed)
    examples = []
    for length in lengths:
        ids = torch.randint(1, 50000, (length,), generator=generator).tolist()
        ends = list(range(40, length, 37))
        labels = [float(i % 5 == 0) for i in range(len(ends))]
        examples.append(Example(ids, ends, labels, question_length=20))
    return examples


@needs_gpu
def test_a_packed_row_scores_each_example_as_its_own_row():
    from linkscan.training.configs import model_shape
    from linkscan.training.data import collate, pack
    from linkscan.training.model import ScannerModel

    torch.manual_seed(0)
    model = ScannerModel(model_shape("130m"), backend="mamba_ssm", device="cuda").eval()
    examples = _examples([700, 1300, 517], seed=2)
    packed = {k: v.cuda() for k, v in pack(examples, 4096, 512).items()}
    with torch.no_grad():
        together = model(packed["input_ids"], packed["positions"], packed["seq_idx"])[0]
        alone = [model(b["input_ids"].cuda(), b["positions"].cuda())[0] for b in (collate([e]) for e in examples)]
    n = sum(len(e.positions) for e in examples)
    expected = torch.cat(alone)
    assert torch.isfinite(together).all() and packed["mask"].sum() == n
    torch.testing.assert_close(together[:n], expected, rtol=2e-3, atol=2e-3)  # fp32 weights, no autocast


@needs_gpu
def test_cuda_graph_replays_give_the_eager_gradients():
    """Over several micro-batches and two steps: the graphed backward's static buffers must be added
    into ``.grad``, not adopted as it (pytorch/pytorch#181723 doubled the last micro-batch's)."""
    from linkscan.training.configs import TrainConfig, model_shape
    from linkscan.training.data import pack, pack_units
    from linkscan.training.loop import (
        TrainingModel,
        accumulate_gradients,
        clear_gradients,
        configure_optimizer,
        graph_forward,
    )
    from linkscan.training.model import ScannerModel

    config = TrainConfig(dataset="-", out="-", backend="mamba_ssm", device="cuda", micro_batch_tokens=4096,
                         pack=True, cuda_graphs=True, match_loss_weight=1.0)
    device = torch.device("cuda")
    torch.manual_seed(0)
    trained = TrainingModel(ScannerModel(model_shape("130m"), backend="mamba_ssm", device=device))
    batches = [pack(_examples(lengths, seed), 4096, pack_units(4096), with_match=True)
               for seed, lengths in enumerate([[1500, 2500], [4000], [900, 900, 900]])]
    steps = [batches, batches[::-1][:2]]
    expected = []
    for micro_batches in steps:
        trained.zero_grad(set_to_none=True)
        eager = accumulate_gradients(trained, micro_batches, config, device)
        expected.append((eager["loss"], {n: p.grad.clone() for n, p in trained.named_parameters()}))
    trained.zero_grad(set_to_none=True)
    optimizer = configure_optimizer(trained, config, device)  # only its zero_grad is used: the weights stay
    graphed = graph_forward(trained, config, device, pack_units(4096))
    for micro_batches, (loss, grads) in zip(steps, expected):
        replayed = accumulate_gradients(graphed, micro_batches, config, device)
        torch.testing.assert_close(replayed["loss"], loss, rtol=1e-2, atol=1e-3)
        for name, parameter in trained.named_parameters():  # bf16 autocast: a few percent of each gradient's scale
            scale = grads[name].abs().max().item() + 1e-12
            assert (parameter.grad - grads[name]).abs().max().item() <= 0.05 * scale, name
        clear_gradients(optimizer, config)
        assert all(p.grad is not None and not p.grad.any() for p in trained.parameters())


@needs_gpu
def test_the_from_scratch_preset_learns_on_a_generated_dataset(tmp_path):
    """Issue 15's target on held-out documents, in one run of the preset (about 5 minutes)."""
    dataset = os.environ.get("LINKSCAN_LINK_DATASET")
    if not dataset:
        pytest.skip("set LINKSCAN_LINK_DATASET to a version folder that `linkscan generate` made from the dev corpus")
    from linkscan.training.configs import TrainConfig, preset_values
    from linkscan.training.loop import train

    config = TrainConfig(dataset=dataset, out=str(tmp_path / "run"), progress=False, **preset_values("from-scratch"))
    final = train(config)["last_metrics"]
    print(json.dumps(final))
    assert final["val_loss"] <= 0.9 * final["val_constant_loss"]  # more than the base rate was learned
    assert final["val_recall@5"] >= 3 * final["val_random_recall@5"]
