"""Training throughput of the scanner on one GPU: this project's loop vs the paper's configuration.

Side by side, in one process, on 8k-token examples (random token ids, ~1 unit per 30 tokens, 3
positives per example), 64 sequences' worth of tokens... per optimizer step as the paper (its
per-GPU share: 8 sequences of 8k = 64k tokens per step):

- ``paper``: ``MambaLMHeadModel`` with fp32 weights under bf16 autocast, the language-model head
  computed in forward (as the paper's ``train.py`` does) and discarded, micro-batches of 2
  sequences, torch's default AdamW.
- ``ours-mbN``: ``ScannerModel`` (mamba_ssm back end, fp32 master weights, bf16 autocast, no LM
  head, fused AdamW) through ``training.loop.accumulate_gradients``, micro-batches of N tokens.

    python benchmarks/bench_train.py --models 130m 1.3b --json train.json
"""
from __future__ import annotations

import argparse
import json

import torch

from bench_scan import measure  # same timing for both GPU benchmarks (the script folder is on sys.path)
from training.configs import TrainConfig, model_shape
from training.loop import accumulate_gradients, configure_optimizer, masked_bce
from training.model import ScannerModel


def make_micro_batches(n_batches: int, per_batch: int, seq: int, generator: torch.Generator) -> list[dict]:
    batches = []
    for _ in range(n_batches):
        input_ids = torch.randint(0, 50000, (per_batch, seq), generator=generator)
        positions = torch.arange(29, seq, 30).repeat(per_batch, 1)
        labels = torch.zeros(positions.shape)
        labels[:, torch.randint(0, positions.shape[1], (3,), generator=generator)] = 1.0
        batches.append({"input_ids": input_ids, "positions": positions, "labels": labels,
                        "mask": torch.ones(positions.shape, dtype=torch.bool), "n_tokens": torch.tensor(per_batch * seq)})
    return batches


def bench_paper(name: str, seq: int, tokens_per_step: int, steps: int) -> dict:
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    shape = model_shape(name)
    config = MambaConfig(d_model=shape.d_model, n_layer=shape.n_layer, vocab_size=shape.vocab_size,
                         ssm_cfg={"layer": "Mamba2"}, rms_norm=True, residual_in_fp32=True,
                         fused_add_norm=True, pad_vocab_size_multiple=16)
    model = MambaLMHeadModel(config, device="cuda", dtype=torch.float32)
    head = torch.nn.Linear(shape.d_model, 1, device="cuda")
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-4, betas=(0.9, 0.95))
    per_batch = 2
    accum = max(1, tokens_per_step // (per_batch * seq))
    batches = [{k: v.cuda() for k, v in b.items()} for b in make_micro_batches(accum, per_batch, seq, torch.Generator().manual_seed(0))]

    def step():
        for batch in batches:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                hidden = model.backbone(batch["input_ids"])
                lm_logits = model.lm_head(hidden)  # computed and unused, as in the paper's forward
                logits = head(hidden).squeeze(-1)
                picked = torch.gather(logits, 1, batch["positions"])
            loss, _ = masked_bce(picked, batch["labels"], batch["mask"])
            (loss / accum).backward()
            del lm_logits
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, peak = measure(step, steps)
    tokens = accum * per_batch * seq
    result = {"model": name, "variant": "paper", "micro_batch_tokens": per_batch * seq, "tokens_per_step": tokens,
              "seconds_per_step": seconds, "tokens_per_s": tokens / seconds, "peak_gib": peak}
    del model, head, optimizer, batches
    torch.cuda.empty_cache()
    return result


def bench_ours(name: str, seq: int, tokens_per_step: int, micro_batch_tokens: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = ScannerModel(model_shape(name), backend="mamba_ssm", device="cuda").train()
    config = TrainConfig(dataset="-", out="-", backend="mamba_ssm", device="cuda", precision="bf16")
    device = torch.device("cuda")
    optimizer = configure_optimizer(model, config, device)
    per_batch = max(1, micro_batch_tokens // seq)
    accum = max(1, tokens_per_step // (per_batch * seq))
    batches = make_micro_batches(accum, per_batch, seq, torch.Generator().manual_seed(0))
    batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]

    def step():
        accumulate_gradients(model, batches, config, device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, peak = measure(step, steps)
    tokens = accum * per_batch * seq
    result = {"model": name, "variant": f"ours-mb{per_batch * seq // 1024}k", "micro_batch_tokens": per_batch * seq,
              "tokens_per_step": tokens, "seconds_per_step": seconds, "tokens_per_s": tokens / seconds, "peak_gib": peak}
    del model, optimizer, batches
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["130m", "1.3b"])
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--tokens-per-step", type=int, default=65536)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[16384, 32768, 65536])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    results = []
    for name in args.models:
        runs = [lambda: bench_paper(name, args.seq, args.tokens_per_step, args.steps)]
        runs += [lambda mb=mb: bench_ours(name, args.seq, args.tokens_per_step, mb, args.steps) for mb in args.micro_batches]
        for run in runs:
            try:
                result = run()
            except torch.cuda.OutOfMemoryError as error:
                result = {"model": name, "error": f"OOM: {str(error)[:120]}"}
                torch.cuda.empty_cache()
            results.append(result)
            print(json.dumps(result), flush=True)
        paper = next(r for r in results if r.get("model") == name and r.get("variant") == "paper")
        for r in results:
            if r.get("model") == name and "tokens_per_s" in r:
                r["vs_paper"] = r["tokens_per_s"] / paper["tokens_per_s"]
    print(f"{'model':6} {'variant':12} {'micro-batch':>11} {'tokens/s':>10} {'vs paper':>8} {'peak GiB':>8}")
    for r in results:
        if "tokens_per_s" in r:
            print(f"{r['model']:6} {r['variant']:12} {r['micro_batch_tokens']:>11} {r['tokens_per_s']:>10.0f} "
                  f"{r['vs_paper']:>8.2f} {r['peak_gib']:>8.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
