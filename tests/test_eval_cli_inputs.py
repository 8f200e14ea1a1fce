"""`linkscan evaluate` and `linkscan retrieve` check their inputs before any work: the hub tokenizer
with no network and a missing scanner checkpoint each end in one `error:` line naming the input and
the fix, with no traceback and no retries (issue 12, item 9)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkscan.flows.cli import app
from tests.conftest import REPO

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast

runner = CliRunner()


def _closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once, like a machine offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _offline_linkscan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    return subprocess.run([sys.executable, "-m", "linkscan.flows.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def one_error_line(text: str) -> str:
    assert "Traceback" not in text and "Retrying in" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text
    return errors[0]


def test_evaluate_with_the_hub_tokenizer_and_no_network_fails_at_once(dev_evalsets: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _offline_linkscan(tmp_path, "evaluate", "--benchmarks", str(dev_evalsets), "--only", "paperqa_4k", "--out", str(out))
    assert run.returncode == 2, run.stderr
    line = one_error_line(run.stderr)
    assert line.startswith("error: --tokenizer EleutherAI/gpt-neox-20b: tokenizer 'EleutherAI/gpt-neox-20b': "
                           "the Hugging Face hub cannot serve it")
    assert "not reachable" in line and "there is no cached copy" in line
    assert "point the tokenizer at a local tokenizer.json" in line
    assert not out.exists()


def test_retrieve_with_the_hub_tokenizer_and_no_network_fails_at_once(tmp_path: Path) -> None:
    document = tmp_path / "doc.txt"
    document.write_text("The lease ends in March. The rent is paid monthly.")
    run = _offline_linkscan(tmp_path, "retrieve", "--retriever", "bm25", "--document", str(document), "--question", "When?")
    assert run.returncode == 2, run.stderr
    assert one_error_line(run.stderr).startswith("error: --tokenizer EleutherAI/gpt-neox-20b: tokenizer 'EleutherAI/gpt-neox-20b': "
                                                 "the Hugging Face hub cannot serve it")


def test_the_hub_offline_mode_is_named_as_the_reason() -> None:
    result = runner.invoke(app, ["retrieve", "--retriever", "bm25", "--document", str(REPO / "README.md"),
                                 "--question", "?"])  # the tests run with HF_HUB_OFFLINE=1 (conftest)
    assert result.exit_code == 2
    assert "the Hugging Face hub cannot serve it (HF_HUB_OFFLINE is set) and there is no cached copy" in result.output


@pytest.mark.parametrize("command", ["evaluate", "retrieve"])
def test_a_missing_scanner_checkpoint_fails_before_any_work(command: str, dev_evalsets: Path, tokenizer_path: Path,
                                                            tmp_path: Path) -> None:
    args = {"evaluate": ["--benchmarks", str(dev_evalsets), "--only", "paperqa_4k", "--out", str(tmp_path / "out")],
            "retrieve": ["--document", str(REPO / "README.md"), "--question", "?"]}[command]
    result = runner.invoke(app, [command, "--retriever", "scanner:/no/such/dir", "--tokenizer", str(tokenizer_path), *args])
    assert result.exit_code == 2, result.output
    assert one_error_line(result.output) == (
        "error: --retriever scanner:/no/such/dir: no folder /no/such/dir; pass a checkpoint folder "
        "(config.json + model.safetensors), a training run folder (<data>/models/<name>/<run>), or a hub id owner/name")
    assert not (tmp_path / "out").exists()


def test_a_scanner_folder_without_a_checkpoint_is_named(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    result = runner.invoke(app, ["evaluate", "--benchmarks", str(dev_evalsets), "--only", "paperqa_4k",
                                 "--retriever", f"scanner:{folder}", "--tokenizer", str(tokenizer_path),
                                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert line.startswith(f"error: --retriever scanner: {folder}: no config.json; expected a checkpoint folder")
    assert not (tmp_path / "out").exists()


def test_a_hub_scanner_checkpoint_with_no_network_fails_at_once(dev_evalsets: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    run = _offline_linkscan(tmp_path, "evaluate", "--benchmarks", str(dev_evalsets), "--only", "paperqa_4k",
                            "--retriever", "scanner:MambaRetriever/SPScanner-130m", "--tokenizer", str(tokenizer_path),
                            "--out", str(tmp_path / "out"))
    assert run.returncode == 2, run.stderr
    line = one_error_line(run.stderr)
    assert line.startswith("error: --retriever scanner:MambaRetriever/SPScanner-130m: not a local folder, and the "
                           "Hugging Face hub cannot serve it")
    assert "pass its local folder" in line
