"""Scanning throughput and peak memory on one GPU: carried-state single pass vs one unsegmented pass
vs the paper's sliding windows, for the 130m and 1.3b shapes (random weights, bf16, random tokens,
one unit per 32 tokens).

    python benchmarks/bench_scan.py --json scan.json
    python benchmarks/bench_scan.py --unsegmented 1048576   # one unsegmented 130m pass, in its own
                                                            # process: a kernel fault kills the context
    python benchmarks/bench_scan.py --chunk-sizes 256 512 128 64   # 130m, 1M tokens, carried state:
                                                            # the SSD chunk length (exact either way)
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from linkscan.evaluation.scanning import scan_document
from linkscan.training.configs import model_shape
from linkscan.training.model import ScannerModel


def measure(fn, repeats: int) -> tuple[float, float]:
    """(median seconds, peak GiB) after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unsegmented", type=int, default=None, help="only one unsegmented 130m pass of this many tokens")
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=None,
                        help="only the 130m 1M-token carried pass, once per SSD chunk length (the first is the reference)")
    args = parser.parse_args()
    if args.chunk_sizes:
        return compare_chunk_sizes(args.chunk_sizes, args.repeats, args.json)
    rng = np.random.default_rng(0)
    question = rng.integers(0, 50000, 24)
    plans = {
        # (document tokens, mode, segment tokens or None for one unsegmented pass)
        "130m": [(262144, "single_pass", 131072), (1048576, "single_pass", 65536), (1048576, "single_pass", 131072),
                 (1048576, "single_pass", 262144), (1048576, "single_pass", 524288), (1048576, "sliding_window", 131072)],
        "1.3b": [(262144, "single_pass", 131072), (1048576, "single_pass", 131072), (1048576, "sliding_window", 131072)],
    }
    if args.unsegmented:
        plans = {"130m": [(args.unsegmented, "single_pass", None)]}
    results = []
    for name, runs in plans.items():
        model = ScannerModel(model_shape(name), backend="mamba_ssm", device="cuda").to(torch.bfloat16).eval()
        for n_tokens, mode, segment in runs:
            document = rng.integers(0, 50000, n_tokens)
            ends = np.arange(31, n_tokens, 32)
            if segment is None:
                ids = torch.tensor(np.concatenate([question, document])[None], device="cuda")
                positions = torch.tensor((ends + len(question))[None], device="cuda")
                fn = lambda: model.score(ids, positions)  # noqa: E731
            else:
                fn = lambda: scan_document(model, question, document, ends, mode=mode, segment_tokens=segment)  # noqa: E731
            label = {"model": name, "tokens": n_tokens, "mode": mode, "segment_tokens": segment}
            try:
                seconds, peak = measure(fn, args.repeats if name == "130m" else 1)
                result = {**label, "seconds": seconds, "tokens_per_s": (n_tokens + len(question)) / seconds, "peak_gib": peak}
            except Exception as error:  # an unsegmented pass may fail; record how
                result = {**label, "error": f"{type(error).__name__}: {str(error)[:160]}"}
                torch.cuda.empty_cache()
            results.append(result)
            print(json.dumps(result), flush=True)
        del model
        torch.cuda.empty_cache()
    print(f"{'model':6} {'tokens':>8} {'mode':15} {'segment':>8} {'seconds':>8} {'Mtok/s':>7} {'peak GiB':>8}")
    for r in results:
        if "seconds" in r:
            print(f"{r['model']:6} {r['tokens']:>8} {r['mode']:15} {str(r['segment_tokens']):>8} {r['seconds']:>8.3f} "
                  f"{r['tokens_per_s'] / 1e6:>7.2f} {r['peak_gib']:>8.1f}")
        else:
            print(f"{r['model']:6} {r['tokens']:>8} {r['mode']:15} {str(r['segment_tokens']):>8} {r['error']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, handle, indent=2)


def compare_chunk_sizes(chunk_sizes: list[int], repeats: int, json_path: str | None, n_tokens: int = 1048576,
                        segment: int = 262144) -> None:
    """The SSD chunk length only regroups an exact computation: time each, and check the scores agree."""
    rng = np.random.default_rng(0)
    question, document = rng.integers(0, 50000, 24), rng.integers(0, 50000, n_tokens)
    ends = np.arange(31, n_tokens, 32)
    model = ScannerModel(model_shape("130m"), backend="mamba_ssm", device="cuda").to(torch.bfloat16).eval()
    reference, results = None, []
    for chunk in chunk_sizes:
        model.shape.chunk_size = chunk
        fn = lambda: scan_document(model, question, document, ends, segment_tokens=segment)  # noqa: E731
        seconds, peak = measure(fn, repeats)
        scores = fn()
        reference = scores if reference is None else reference
        scale = float(np.abs(reference).max())
        result = {"model": "130m", "tokens": n_tokens, "segment_tokens": segment, "chunk_size": chunk,
                  "seconds": seconds, "tokens_per_s": (n_tokens + len(question)) / seconds, "peak_gib": peak,
                  "max_abs_diff_vs_first": float(np.abs(scores - reference).max()), "score_scale": scale}
        results.append(result)
        print(json.dumps(result), flush=True)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
