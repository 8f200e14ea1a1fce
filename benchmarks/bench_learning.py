"""Does a scanner learn from scratch? One training run of a preset on a dataset, with its curves.

Runs ``linkscan.training.loop.train`` (no CLI, so it also runs where typer is not installed) with a named
preset plus overrides, into a run folder, then copies ``metrics.jsonl`` and ``train_config.json``
to ``--keep`` (the checkpoints stay behind: 1.5 GB for 130m) and prints the last validation next
to the targets of issue 15: held-out recall@5 at least 3x the random ranking's and validation
loss at least 10% under ``val_constant_loss``. ``--plot`` draws the curves of one or more kept
runs into a PNG (on any machine with matplotlib).

    python benchmarks/bench_learning.py run --dataset <version> --preset from-scratch --out /tmp/run --keep results/a
    python benchmarks/bench_learning.py run ... --set match_loss_weight=0 --set lr=3e-3
    python benchmarks/bench_learning.py plot results/a results/b --png curves.png
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def parse_overrides(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def targets(metrics: dict) -> dict:
    return {
        "recall@5_vs_random": metrics["val_recall@5"] / metrics["val_random_recall@5"],
        "val_loss_vs_constant": metrics["val_loss"] / metrics["val_constant_loss"],
        "met": metrics["val_recall@5"] >= 3 * metrics["val_random_recall@5"]
        and metrics["val_loss"] <= 0.9 * metrics["val_constant_loss"],
    }


def run(args: argparse.Namespace) -> None:
    from linkscan.training.configs import TrainConfig, preset_values
    from linkscan.training.loop import train

    values = {**preset_values(args.preset), **parse_overrides(args.set)}
    config = TrainConfig(dataset=args.dataset, out=args.out, progress=False, **values)
    started = time.perf_counter()
    try:
        result = train(config, overwrite=True)
    except Exception as error:
        if not config.cuda_graphs:
            raise
        # a kernel that cannot be captured: say so, and learn without graphs rather than not at all
        print(json.dumps({"cuda_graphs_failed": f"{type(error).__name__}: {str(error)[:300]}"}), flush=True)
        config = config.model_copy(update={"cuda_graphs": False})
        result = train(config, overwrite=True)
    seconds = time.perf_counter() - started
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "train_config.json"):
        shutil.copy(Path(args.out) / name, keep / name)
    final = result["last_metrics"]
    report = {"seconds": seconds, "steps": result["step"], "validation": result["validation"],
              "cuda_graphs": config.cuda_graphs, **final, **(targets(final) if "val_loss" in final else {})}
    (keep / "result.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, recall_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for folder in map(Path, args.runs):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        validations = [r for r in rows if "val_loss" in r]
        label = folder.name
        line, = loss_axis.plot([r["step"] for r in validations], [r["val_loss"] for r in validations], "o-", label=f"{label} val")
        window = 25  # the per-step training loss is noisy: a running mean over 25 steps
        means = [sum(r["loss"] for r in rows[max(0, i - window + 1):i + 1]) / len(rows[max(0, i - window + 1):i + 1])
                 for i in range(len(rows))]
        loss_axis.plot([r["step"] for r in rows], means, alpha=0.5, color=line.get_color())
        loss_axis.plot([r["step"] for r in validations], [r["val_constant_loss"] for r in validations], ":",
                       color=line.get_color())
        recall_axis.plot([r["step"] for r in validations], [r["val_recall@5"] for r in validations], "o-",
                         color=line.get_color(), label=label)
        recall_axis.plot([r["step"] for r in validations], [3 * r["val_random_recall@5"] for r in validations], ":",
                         color=line.get_color())
    loss_axis.set(xlabel="step", ylabel="unit BCE (pos-weighted)",
                  title="loss: train (25-step mean), held-out (o), best constant (dotted)")
    recall_axis.set(xlabel="step", ylabel="held-out recall@5", title="recall@5 (o) and 3x random (dotted)")
    loss_axis.legend(fontsize=8)
    recall_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.png, dpi=120)
    print(args.png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--dataset", required=True)
    run_parser.add_argument("--preset", default="from-scratch")
    run_parser.add_argument("--out", required=True, help="run folder (checkpoints land here)")
    run_parser.add_argument("--keep", required=True, help="where metrics.jsonl, train_config.json and result.json go")
    run_parser.add_argument("--set", action="append", default=[], help="KEY=VALUE (JSON) overriding the preset")
    plot_parser = commands.add_parser("plot")
    plot_parser.add_argument("runs", nargs="+")
    plot_parser.add_argument("--png", required=True)
    args = parser.parse_args()
    run(args) if args.command == "run" else plot(args)


if __name__ == "__main__":
    sys.exit(main())
