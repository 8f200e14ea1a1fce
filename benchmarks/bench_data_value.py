"""Do our shards teach a pretrained embedder anything? MiniLM fine-tuned on link, chunk and pair data.

The paper's embedding baselines fine-tuned on its link data gained nothing; this measures the same
for our offline data, on CPU, in five stages (rerunning with the same --work reuses what is done):

1. generate: the dev corpus through ``run_generation`` by the link, chunk and pair methods
   (offline generator, one seed, one corpus config: the same chunks for all three).
2. same size: the chunks for which every method made an example; a seeded sample of --chunks of
   them, published as one small version per method (its manifest names the parent version).
3. fine-tune: ``linkscan.training.dense_loop.train_dense`` from the packaged all-MiniLM-L6-v2 on each, with
   the same settings: --pairs pairs each (a seeded sample), --pairs / --batch-size steps.
4. evaluate: one ``run_evaluation`` of bm25, the base model and the three fine-tuned ones on the
   evidence sets (the first --max-questions questions of each).
5. paired bootstrap: per benchmark and metric, the per-question difference fine-tuned - base, its
   mean and 95% interval (``linkscan.evaluation.metrics.bootstrap_ci`` over the differences).

Writes ``<work>/data_value.json`` and ``<work>/data_value.md`` and prints the tables, with wall and
CPU seconds per stage.

    .venv/bin/python benchmarks/bench_data_value.py --work /tmp/data_value
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

METHODS = ("link", "chunk", "pair")
EVIDENCE_SETS = ("legal_contract_qa", "loogle_shortdep_qa_sample", "paperqa_4k")
METRICS = ("recall@50", "recall@10", "mrr")


def timed(stages: dict, name: str, fn):
    """Run ``fn`` and record its wall and CPU seconds (all threads of this process) under ``name``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    stages[name] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    print(f"[{name}] {stages[name]['wall_s']} s wall, {stages[name]['cpu_s']} s CPU", flush=True)
    return value


# -- 1. generate ------------------------------------------------------------------------------
def generate(args: argparse.Namespace, data: Path) -> dict[str, Path]:
    """One published version per method; a version already there is reused (same config, same id)."""
    from linkscan.generators.config import load_config
    from linkscan.generators.stage import run_generation

    versions = {}
    for method in METHODS:
        config = load_config(None, {"corpus": [args.corpus], "name": f"dev-{method}", "method": method,
                                    "generator": "offline", "seed": args.seed,
                                    "corpus_config.tokenizer": args.tokenizer})
        result = run_generation(config, data)
        print(f"  {method}: {result.name} {result.version} "
              f"({'published' if result.newly_published else 'reused'}), {result.manifest['counts']['examples']} examples")
        versions[method] = Path(result.path)
    return versions


# -- 2. same size -------------------------------------------------------------------------------
def common_chunks(versions: dict[str, Path], count: int, seed: int) -> list[str]:
    """A seeded sample of ``count`` chunks for which every method made an example."""
    from linkscan.pipeline.store import open_dataset

    chunk_sets = [set(open_dataset(path).read_table(columns=["chunk_id"]).column("chunk_id").to_pylist())
                  for path in versions.values()]
    common = sorted(set.intersection(*chunk_sets))
    if len(common) < count:
        raise SystemExit(f"only {len(common)} chunks have an example of every method; pass --chunks {len(common)} or less")
    return sorted(random.Random(seed).sample(common, count))


def publish_subset(parent_path: Path, chunk_ids: list[str], data: Path, method: str) -> Path:
    """The examples of ``chunk_ids`` from a parent version, as a version of ``dev-<method>-same``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from linkscan.pipeline.store import DatasetWriter, open_dataset, published_version, version_id

    parent = open_dataset(parent_path)
    config = {"parent": {"name": parent.name, "version": parent.version}, "method": method, "generator": "offline",
              "chunks": len(chunk_ids)}
    fingerprints = {"chunk_ids": hashlib.sha256("\n".join(chunk_ids).encode()).hexdigest()}
    name, version = f"dev-{method}-same", version_id(config, fingerprints)
    with DatasetWriter(data, name, version, config, fingerprints) as writer:
        if not writer.is_published:
            table = parent.read_table("examples")
            table = table.filter(pc.is_in(table["chunk_id"], value_set=pa.array(chunk_ids)))
            writer.write_shard("examples", 0, 1, table)
            writer.publish({"counts": {"examples": table.num_rows}, "drop_reasons": {}},
                           f"# {name}\n\n{table.num_rows} examples of {parent.name} {parent.version}, "
                           f"one per chunk, on chunks shared with the other methods.\n")
    return published_version(data, name, version)


# -- 3. fine-tune ---------------------------------------------------------------------------------
def fine_tune(args: argparse.Namespace, dataset: Path, out: Path) -> dict:
    """``train_dense`` with the benchmark's settings; a finished run with the same settings is reused."""
    from linkscan.training.dense import DenseTrainConfig
    from linkscan.training.dense_loop import PROVENANCE, train_dense

    steps = args.pairs // args.batch_size
    config = DenseTrainConfig(dataset=str(dataset), out=str(out), device="cpu", seed=args.seed, max_steps=steps,
                              batch_size=args.batch_size, max_pairs=args.pairs, hard_negatives=args.hard_negatives,
                              validation_examples=args.validation_examples, validate_every=steps,
                              checkpoint_every=steps, progress=False)
    done = out / PROVENANCE
    if done.is_file() and json.loads((out / "train_config.json").read_text()) == {"target": "dense", **config.model_dump(mode="json")}:
        print(f"  reused {out}")
        return json.loads(done.read_text())
    result = train_dense(config, overwrite=True)
    print(f"  {out.name}: {result['pairs']} pairs, {result['step']} steps in {result['seconds']:.0f} s; held-out "
          f"recall@5 {result['base_validation'].get('val_recall@5', float('nan')):.3f} -> "
          f"{result['last_metrics'].get('val_recall@5', float('nan')):.3f}", flush=True)
    return result


# -- 4. evaluate ----------------------------------------------------------------------------------
def evaluate(args: argparse.Namespace, models: dict[str, Path], out: Path):
    from linkscan.evaluation.run import EvalConfig, run_evaluation
    from linkscan.pipeline.config import CorpusConfig

    retrievers = ["bm25", "dense", *(f"dense:{models[m]}" for m in METHODS)]
    config = EvalConfig(benchmarks=args.evalsets, only=list(args.only), retrievers=retrievers,
                        max_questions=args.max_questions, device="cpu", dense_precision=args.dense_precision,
                        corpus=CorpusConfig(tokenizer=args.tokenizer), seed=args.seed)
    return run_evaluation(config, out)


# -- 5. paired bootstrap --------------------------------------------------------------------------
def paired_differences(rows: list[dict], retriever: str, base: str, benchmark: str, metric: str) -> list[float]:
    """``retriever``'s value minus ``base``'s, question by question (questions both measured)."""
    values = {(r["retriever"], r["question_id"]): r.get(metric) for r in rows if r["benchmark"] == benchmark}
    questions = sorted({q for (name, q) in values if name == base})
    return [values[(retriever, q)] - values[(base, q)] for q in questions
            if values.get((retriever, q)) is not None and values.get((base, q)) is not None]


def mean_of(rows: list[dict], retriever: str, benchmark: str, metric: str) -> float:
    values = [r[metric] for r in rows if r["benchmark"] == benchmark and r["retriever"] == retriever
              and r.get(metric) is not None]
    return sum(values) / len(values) if values else float("nan")


def tables(rows: list[dict], models: dict[str, Path], benchmarks, samples: int, seed: int) -> tuple[dict, str]:
    from linkscan.evaluation.metrics import bootstrap_ci

    results, lines = {}, []
    for metric in METRICS:
        lines += [f"\n{metric} (mean over questions; Δ = fine-tuned - base MiniLM, paired bootstrap 95% CI)\n",
                  "| benchmark (n) | bm25 | base MiniLM | " + " | ".join(f"{m} | Δ {m}" for m in METHODS) + " |",
                  "|---|---:|---:|" + "---:|---:|" * len(METHODS)]
        for benchmark in benchmarks:
            base = mean_of(rows, "dense", benchmark, metric)
            cells, entry = [], {"bm25": mean_of(rows, "bm25", benchmark, metric), "base": base}
            n = 0
            for method in METHODS:
                name = f"dense:{models[method]}"
                estimate = bootstrap_ci(paired_differences(rows, name, "dense", benchmark, metric), samples=samples, seed=seed)
                n = max(n, estimate.n)
                entry[method] = {"mean": mean_of(rows, name, benchmark, metric), "difference": estimate.as_dict()}
                cells.append(f"{entry[method]['mean']:.3f} | {estimate.mean:+.3f} [{estimate.low:+.3f}, {estimate.high:+.3f}]")
            results.setdefault(metric, {})[benchmark] = entry
            lines.append(f"| {benchmark} ({n}) | {entry['bm25']:.3f} | {base:.3f} | " + " | ".join(cells) + " |")
    return results, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="data, models and the evaluation land here (reused on rerun)")
    parser.add_argument("--corpus", default=str(REPO.parent / "shared/corpora/dev/*.jsonl.gz"))
    parser.add_argument("--tokenizer", default=str(REPO.parent / "shared/tokenizers/gpt-neox-20b/tokenizer.json"))
    parser.add_argument("--evalsets", default=str(REPO.parent / "shared/evalsets/dev"))
    parser.add_argument("--only", type=lambda text: text.split(","), default=list(EVIDENCE_SETS))
    parser.add_argument("--chunks", type=int, default=800, help="examples per method (one per shared chunk)")
    parser.add_argument("--pairs", type=int, default=1536, help="training pairs per method (steps = pairs / batch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hard-negatives", type=int, default=1)
    parser.add_argument("--validation-examples", type=int, default=32)
    parser.add_argument("--max-questions", type=int, default=50, help="the first N questions of each evidence set")
    parser.add_argument("--dense-precision", default="float32")
    parser.add_argument("--bootstrap-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = Path(args.work)
    data = work / "data"
    stages: dict = {}
    versions = timed(stages, "generate", lambda: generate(args, data))
    chunk_ids = common_chunks(versions, args.chunks, args.seed)
    subsets = timed(stages, "same size", lambda: {m: publish_subset(versions[m], chunk_ids, data, m) for m in METHODS})
    models, training = {}, {}
    for method in METHODS:
        models[method] = work / "models" / method
        training[method] = timed(stages, f"fine-tune {method}", lambda: fine_tune(args, subsets[method], models[method]))
    evaluation = timed(stages, "evaluate", lambda: evaluate(args, models, work / "eval"))
    results, table = tables(evaluation.rows, models, args.only, args.bootstrap_samples, args.seed)
    held_out = "\n".join(
        f"| {m} | {training[m]['pairs']} | {training[m]['step']} | {training[m]['base_validation'].get('val_recall@5', float('nan')):.3f} | "
        f"{training[m]['last_metrics'].get('val_recall@5', float('nan')):.3f} | {training[m]['last_metrics'].get('val_random_recall@5', float('nan')):.3f} |"
        for m in METHODS)
    report = (f"{table}\n\nHeld-out synthetic examples (documents held out of training), recall@5 of the positives "
              f"among the chunk's units:\n\n| method | pairs | steps | base MiniLM | fine-tuned | random |\n"
              f"|---|---:|---:|---:|---:|---:|\n{held_out}\n\nStages: "
              + "; ".join(f"{name} {v['wall_s']} s wall / {v['cpu_s']} s CPU" for name, v in stages.items()))
    (work / "data_value.md").write_text(report + "\n")
    (work / "data_value.json").write_text(json.dumps({
        "args": vars(args), "versions": {m: str(p) for m, p in versions.items()},
        "subsets": {m: str(p) for m, p in subsets.items()}, "training": training, "results": results,
        "stages": stages, "evaluation": str(evaluation.out_dir),
        "retrieval_speed": evaluation.summary.get("retrieval"),
    }, indent=2, default=str) + "\n")
    print(report)


if __name__ == "__main__":
    main()
