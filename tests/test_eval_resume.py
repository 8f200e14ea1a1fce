"""A long evaluation keeps each benchmark as it finishes: a real SIGTERM to a real `linkscan
evaluate` process leaves the finished benchmarks in place with one line saying so, and rerunning
the same command resumes from them and gives the tables of an uninterrupted run (issue 13, item 3)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from linkscan.evaluation.finished import OutputFolderError, claim_out_dir
from tests.conftest import REPO
from tests.eval_data import link_dev_benchmark

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast

BENCHMARKS = ["a_legal", "b_legal", "c_legal", "d_legal"]
TABLES = ["per_benchmark.json", "per_category.json", "per_length.json", "questions.jsonl"]


@pytest.fixture(scope="module")
def suite(dev_evalsets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four benchmarks (the dev legal_contract_qa under four names; 60 questions each), a second or more each."""
    folder = tmp_path_factory.mktemp("suite")
    for name in BENCHMARKS:
        link_dev_benchmark(dev_evalsets, folder, "legal_contract_qa", name)
    return folder


def evaluate(suite: Path, out: Path, tokenizer_path: Path, wait: bool = True):
    command = [sys.executable, "-m", "linkscan.flows.cli", "evaluate", "--benchmarks", str(suite), "--retriever", "bm25",
               "--retriever", "random", "--retriever", "oracle", "--out", str(out), "--tokenizer", str(tokenizer_path),
               "--max-questions", "60"]
    if not wait:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _wait_for_a_finished_benchmark(out: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not list(out.glob("benchmarks/*/summary.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no benchmark finished in 300 s"
        time.sleep(0.02)


def _tables(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text() for name in TABLES}


@pytest.fixture(scope="module")
def uninterrupted(suite: Path, tokenizer_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    run = evaluate(suite, out, tokenizer_path)
    assert run.returncode == 0, run.stderr
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_keeps_finished_benchmarks_and_the_rerun_gives_the_same_tables(suite, tokenizer_path, tmp_path, uninterrupted, signum):
    out = tmp_path / "out"
    process = evaluate(suite, out, tokenizer_path, wait=False)
    _wait_for_a_finished_benchmark(out, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    kept = sorted(p.parent.name for p in out.glob("benchmarks/*/summary.json"))
    assert 1 <= len(kept) < len(BENCHMARKS), "the signal must land mid-run"
    assert last == (f"interrupted ({signal.Signals(signum).name}): {len(kept)} finished benchmark(s) kept in {out} ({', '.join(kept)}); "
                    "rerun the same command to resume")
    assert not (out / "report.md").exists()
    assert [p.name for p in out.rglob(".*.tmp")] == []

    rerun = evaluate(suite, out, tokenizer_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(kept)} of {len(BENCHMARKS)} benchmarks finished earlier are kept" in rerun.stdout
    for name in kept:
        assert f"  {name}: 60 questions" in rerun.stdout and "(finished earlier: resumed from the output folder)" in rerun.stdout
    assert json.loads((out / "config.json").read_text())["resumed"] == kept
    assert _tables(out) == _tables(uninterrupted)
    assert pq.read_table(out / "predictions.parquet").equals(pq.read_table(uninterrupted / "predictions.parquet"))


def test_a_rerun_of_a_finished_run_reuses_every_benchmark(suite, tokenizer_path, uninterrupted):
    rerun = evaluate(suite, uninterrupted, tokenizer_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(BENCHMARKS)} of {len(BENCHMARKS)} benchmarks finished earlier are kept" in rerun.stdout
    assert "questions done" not in rerun.stdout


def test_an_output_folder_of_another_run_is_refused(uninterrupted: Path) -> None:
    with pytest.raises(OutputFolderError, match="made with other options than this run"):
        claim_out_dir(uninterrupted, "0123456789ab")
