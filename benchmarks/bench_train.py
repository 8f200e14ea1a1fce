"""Training throughput of the whole step on one GPU, side by side with the bare mamba_ssm loop.

For each model and micro-batch size (tokens_per_step = micro_batch_tokens, one optimizer step per
micro-batch, as a from-scratch run at realistic batches does), in one process:

- ``bare``: mamba_ssm's ``MixerModel`` (the backbone of ``MambaLMHeadModel``) forward and backward
  on one row of ``micro_batch_tokens`` random tokens already on the GPU, a ``Linear(d_model, 1)``
  read at unit ends, BCE, fused AdamW. No data loading, no clipping: the floor of what any loop
  around these kernels costs.
- ``loop-padded``: this project's step (``linkscan.training.loop.accumulate_gradients``, grad clipping, fused
  AdamW, scheduler) fed by the real data path (``ExampleStream`` over ``--dataset``'s shards,
  dataloader worker processes, pinned memory), length-bucketed padded micro-batches.
- ``loop-packed``: the same with packed rows (``pack``: one row of exactly micro_batch_tokens,
  ``seq_idx`` restarting the state at each example).
- ``loop-graphs``: packed rows with the forward and backward replayed as CUDA graphs (``cuda_graphs``).
- ``loop-graphs-match``: as ``loop-graphs`` plus the training-only match head and loss (the
  from-scratch preset's objective).

tokens/s counts real (unpadded) tokens of the loop variants and every token of ``bare``; the time
of N steps is measured after warm-up, from the first data fetch to a final synchronisation, so
data loading, copies, launches and the optimizer are all inside it.

    python benchmarks/bench_train.py --dataset <version folder> --models 130m --micro-batches 8192 16384 32768 65536
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from linkscan.training.configs import TrainConfig, model_shape
from linkscan.training.data import ExampleStream, make_loader, pack_units
from linkscan.training.loop import (
    TrainingModel,
    accumulate_gradients,
    clear_gradients,
    configure_optimizer,
    graph_forward,
    lr_factor,
    masked_bce,
)
from linkscan.training.model import ScannerModel


def timed(step, warmup: int, steps: int) -> tuple[float, int]:
    """(seconds per step, real tokens per step) of ``step()`` (which returns its real token count)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    started, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += step()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps, tokens // steps


def bench_bare(name: str, micro_batch_tokens: int, warmup: int, steps: int) -> dict:
    from mamba_ssm.models.mixer_seq_simple import MixerModel

    shape = model_shape(name)
    backbone = MixerModel(d_model=shape.d_model, n_layer=shape.n_layer, d_intermediate=0,
                          vocab_size=shape.padded_vocab_size, ssm_cfg={"layer": "Mamba2"}, rms_norm=True,
                          fused_add_norm=True, residual_in_fp32=True, device="cuda")
    head = torch.nn.Linear(shape.d_model, 1, device="cuda")
    parameters = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, betas=(0.9, 0.95), fused=True)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 50000, (1, micro_batch_tokens), generator=generator).cuda()
    positions = torch.arange(29, micro_batch_tokens, 30, device="cuda")[None]
    labels = (torch.rand(positions.shape, generator=generator) < 0.05).float().cuda()
    mask = torch.ones(positions.shape, dtype=torch.bool, device="cuda")

    def step() -> int:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hidden = backbone(input_ids)
            logits = head(hidden[0, positions[0]]).squeeze(-1).float()[None]
        loss, _ = masked_bce(logits, labels, mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return micro_batch_tokens

    seconds, tokens = timed(step, warmup, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return {"seconds_per_step": seconds, "tokens_per_step": tokens, "peak_gib": peak}


def bench_loop(name: str, micro_batch_tokens: int, dataset: str, variant: str, warmup: int, steps: int,
               num_workers: int) -> dict:
    from linkscan.pipeline.store import open_dataset

    packed = variant != "loop-padded"
    config = TrainConfig(dataset=dataset, out="-", shape=name, backend="mamba_ssm", device="cuda",
                         tokens_per_step=micro_batch_tokens, micro_batch_tokens=micro_batch_tokens,
                         max_seq_tokens=micro_batch_tokens, pack=packed, cuda_graphs=variant.startswith("loop-graphs"),
                         match_loss_weight=1.0 if variant.endswith("match") else 0.0, max_steps=10_000, lr=1e-3)
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = ScannerModel(model_shape(name), backend="mamba_ssm", device=device).train()
    trained = TrainingModel(model) if config.match_loss_weight > 0 else model
    optimizer = configure_optimizer(trained, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    forward = graph_forward(trained, config, device, pack_units(micro_batch_tokens)) if config.cuda_graphs else trained
    buckets = [b for b in config.length_buckets if b < micro_batch_tokens] + [micro_batch_tokens]
    stream = ExampleStream(open_dataset(dataset).shard_paths(), micro_batch_tokens=micro_batch_tokens,
                           buckets=buckets, pack=packed, with_match=config.match_loss_weight > 0)
    batches = iter(make_loader(stream, num_workers=num_workers, pin_memory=True))

    def step() -> int:
        result = accumulate_gradients(forward, [next(batches)], config, device)
        torch.nn.utils.clip_grad_norm_(trained.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        clear_gradients(optimizer, config)
        return result["tokens"]

    seconds, tokens = timed(step, warmup, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return {"seconds_per_step": seconds, "tokens_per_step": tokens, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset version folder (its examples shards feed the loop)")
    parser.add_argument("--models", nargs="+", default=["130m"])
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    parser.add_argument("--variants", nargs="+",
                        default=["bare", "loop-padded", "loop-packed", "loop-graphs", "loop-graphs-match"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    results = []
    for name in args.models:
        for micro_batch_tokens in args.micro_batches:
            bare = None
            for variant in args.variants:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                row = {"model": name, "micro_batch_tokens": micro_batch_tokens, "variant": variant}
                try:
                    if variant == "bare":
                        row.update(bench_bare(name, micro_batch_tokens, args.warmup, args.steps))
                    else:
                        row.update(bench_loop(name, micro_batch_tokens, args.dataset, variant, args.warmup,
                                              args.steps, args.num_workers))
                except Exception as error:  # an OOM or a kernel that cannot be captured: record it, go on
                    row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                if "seconds_per_step" in row:
                    row["tokens_per_s"] = row["tokens_per_step"] / row["seconds_per_step"]
                    if variant == "bare":
                        bare = row
                    if bare is not None:
                        row["vs_bare"] = row["tokens_per_s"] / bare["tokens_per_s"]
                results.append(row)
                print(json.dumps(row), flush=True)
    print(f"{'model':6} {'micro-batch':>11} {'variant':18} {'tokens/s':>10} {'vs bare':>7} {'ms/step':>8} {'peak GiB':>8}")
    for r in results:
        if "tokens_per_s" in r:
            print(f"{r['model']:6} {r['micro_batch_tokens']:>11} {r['variant']:18} {r['tokens_per_s']:>10.0f} "
                  f"{r.get('vs_bare', float('nan')):>7.2f} {1000 * r['seconds_per_step']:>8.1f} {r['peak_gib']:>8.1f}")
        else:
            print(f"{r['model']:6} {r['micro_batch_tokens']:>11} {r['variant']:18} {r['error']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
