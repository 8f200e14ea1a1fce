"""What Prefect orchestration costs on top of the generation stage, on the embedded demo corpus.

Side by side, each in a fresh process and a fresh data folder, against one local Prefect server:

- ``direct``:  ``linkscan.generators.stage.run_generation`` (no Prefect);
- ``threads``: the ``generate`` flow, shards on the ThreadPoolTaskRunner (2 workers);
- ``dask``:    the ``generate`` flow, shards on a local Dask cluster (2 workers, threads).

Usage: ``.venv/bin/python benchmarks/bench_flows.py [--repeats 3]``; prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from linkscan.flows.server import server_env, start_server, stop_process, wait_healthy  # noqa: E402

RUN = """
import json, sys
from pathlib import Path
from linkscan.flows.generate import demo_config, with_demo_inputs
root = Path(sys.argv[2])
config = with_demo_inputs(demo_config(), root)
if sys.argv[1] == "direct":
    from linkscan.generators.stage import run_generation
    result = run_generation(config, root)
    print("EXAMPLES", result.manifest["counts"]["examples"])
else:
    from linkscan.flows.generate import generate
    from linkscan.flows.runtime import TaskRunnerConfig
    runner = TaskRunnerConfig(kind="threads", max_workers=2) if sys.argv[1] == "threads" else TaskRunnerConfig(kind="dask", n_workers=2)
    result = generate(config=config, data_root=str(root), task_runner=runner)
    manifest = json.loads((Path(result["path"]) / "dataset.json").read_text())
    print("EXAMPLES", manifest["counts"]["examples"])
"""


def one_run(mode: str, env: dict, work: Path) -> tuple[float, int]:
    data_root = work / f"{mode}-{time.monotonic_ns()}"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, mode, str(data_root)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    examples = int(done.stdout.rsplit("EXAMPLES", 1)[1].split()[0])
    return elapsed, examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        process, api_url = start_server(work / "prefect-home", ui=False)
        try:
            wait_healthy(api_url, process=process)
            env = server_env(work / "prefect-home", api_url)
            results: dict[str, list[float]] = {}
            examples: dict[str, int] = {}
            for _ in range(args.repeats):  # interleaved, so load drifts hit every mode alike
                for mode in ("direct", "threads", "dask"):
                    elapsed, n = one_run(mode, env, work)
                    results.setdefault(mode, []).append(elapsed)
                    examples[mode] = n
        finally:
            stop_process(process)
    base = statistics.median(results["direct"])
    print("| mode | median wall s (process start to exit) | runs | examples | ratio to direct |")
    print("|---|---:|---|---:|---:|")
    for mode, times in results.items():
        median = statistics.median(times)
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"| {mode} | {median:.1f} | {runs} | {examples[mode]} | {median / base:.2f} |")
    print(json.dumps({"medians": {m: statistics.median(t) for m, t in results.items()}}))


if __name__ == "__main__":
    main()
