"""`linkscan generate` run as a real process: every way it can fail ends in one `error:` (or
`interrupted`) line, a documented exit code, nothing published and no temporary file left; the
rerun of the same command finishes the job with the bytes of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkscan.flows.cli import app
from linkscan.flows.cli_errors import EXIT_FAILED, EXIT_PENDING, EXIT_USAGE
from linkscan.pipeline.store import DatasetWriter, open_dataset
from tests.conftest import REPO
from tests.generators_data import rfc_corpus
from tests.llm_server import LLMTestServer, Reply

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast


@pytest.fixture(scope="module")
def corpus(dev_corpus, tmp_path_factory) -> Path:
    """Four JSONL files of real RFC text (four shards), written at test time."""
    return rfc_corpus(dev_corpus, tmp_path_factory.mktemp("corpus"), 4, 40_000, one_file=False)


def linkscan(*args: str, wait: bool = True, **kwargs):
    command = [sys.executable, "-m", "linkscan.flows.cli", *args]
    if not wait:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)


def generate_args(corpus: Path, data: Path, tokenizer_path: Path, *extra: str) -> list[str]:
    return ["generate", "--corpus", str(corpus), "--data", str(data), "--name", "rfc",
            "--tokenizer", str(tokenizer_path), "--chunk-tokens", "1500", "--num-shards", "4", *extra]


def one_error_line(stderr: str) -> str:
    """The single `error:` line of a failed run (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def leftovers(data: Path) -> list[str]:
    """Temporary and lock files anywhere under the data folder."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.name.endswith((".tmp", ".lock")))


def published(data: Path) -> list[Path]:
    return sorted(data.glob("datasets/*/*/dataset.json"))


def test_a_misspelled_corpus_file_fails_before_any_work(tmp_path, tokenizer_path):
    result = linkscan(*generate_args(tmp_path / "nope.jsonl", tmp_path / "data", tokenizer_path))
    assert result.returncode == EXIT_USAGE
    assert one_error_line(result.stderr) == f"error: {tmp_path / 'nope.jsonl'}: no such file or folder (check the corpus path)"
    assert not (tmp_path / "data" / "datasets").exists()


def test_a_wrong_tokenizer_path_fails_before_any_folder_or_lock_is_made(corpus, tmp_path):
    result = linkscan(*generate_args(corpus, tmp_path / "data", tmp_path / "no-tokenizer.json"))
    assert result.returncode == EXIT_USAGE
    assert "no-tokenizer.json: tokenizer file not found" in one_error_line(result.stderr)
    assert not (tmp_path / "data" / "datasets").exists()


@pytest.mark.parametrize("name", ["trailing\n", "x" * 300, "../escape"])
def test_an_invalid_dataset_name_is_one_line(corpus, tmp_path, tokenizer_path, name):
    args = generate_args(corpus, tmp_path / "data", tokenizer_path)
    args[args.index("rfc")] = name
    result = linkscan(*args)
    assert result.returncode == EXIT_USAGE
    assert "name: Value error, use 1 to 100 letters, digits" in one_error_line(result.stderr)


def test_a_second_writer_of_the_same_version_is_refused_in_one_line(corpus, tmp_path, tokenizer_path):
    from linkscan.generators.config import load_config
    from linkscan.generators.stage import plan_generation

    data = tmp_path / "data"
    config = load_config(None, {"corpus": [str(corpus)], "name": "rfc", "num_shards": 4,
                                "corpus_config.tokenizer": str(tokenizer_path), "corpus_config.chunk_tokens": 1500})
    plan = plan_generation(config, data)
    with DatasetWriter(data, "rfc", plan.version, {}, {}):  # another run holds the version
        result = linkscan(*generate_args(corpus, data, tokenizer_path))
    assert result.returncode == EXIT_FAILED
    assert f"is being written by another process (pid {os.getpid()})" in one_error_line(result.stderr)
    assert published(data) == []


def test_a_run_without_examples_exits_1_and_names_the_cause(tmp_path, tokenizer_path):
    (tmp_path / "short.txt").write_text("Far too short to make a document of.\n")
    result = linkscan(*generate_args(tmp_path / "short.txt", tmp_path / "data", tokenizer_path))
    assert result.returncode == EXIT_FAILED
    assert one_error_line(result.stderr).endswith("0 examples: every document was dropped (too_short: 1); nothing was published")
    assert published(tmp_path / "data") == []


def test_chunks_waiting_for_the_llm_exit_75_with_how_to_resume(tmp_path, tokenizer_path, corpus):
    with LLMTestServer() as server:
        server.inject(Reply(status=503), times=10**9)
        result = CliRunner().invoke(app, [
            *generate_args(corpus / "rfc-0.jsonl", tmp_path, tokenizer_path), "--generator", "llm",
            "--llm-base-url", server.url, "--llm-model", "test-model",
        ])
    assert result.exit_code == EXIT_PENDING
    line = one_error_line(result.stderr)
    assert "wait for the LLM (server_error:" in line and line.endswith(
        "nothing was published. Rerun the same command to retry only those (answers already received come from the cache)")
    assert published(tmp_path) == []


def llm_args(corpus: Path, data: Path, tokenizer_path: Path, url: str, *extra: str) -> list[str]:
    return [*generate_args(corpus, data, tokenizer_path), "--generator", "llm", "--llm-base-url", url,
            "--llm-model", "test-model", "--set", "llm.max_attempts=2", "--set", "llm.backoff_base_s=0.01",
            "--set", "llm.backoff_max_s=0.02", *extra]


def test_an_unreachable_llm_server_is_one_warning_then_the_error_line(corpus, tmp_path, tokenizer_path):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    result = linkscan(*llm_args(corpus, tmp_path / "data", tokenizer_path, url))
    assert result.returncode == EXIT_PENDING, result.stderr
    one_error_line(result.stderr)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING ")]
    assert warnings == [f"WARNING links: test-model request to {url} failed: ConnectError (gave up after 2 attempts; "
                        "check llm.base_url and that the server is up, then rerun to resume)"]
    assert published(tmp_path / "data") == []


def test_a_401_is_one_line_naming_the_key_variable_without_a_traceback(corpus, tmp_path, tokenizer_path):
    data = tmp_path / "data"
    with LLMTestServer() as server:
        server.inject(Reply(status=401, body='{"error": {"message": "Incorrect API key provided", '
                                             '"code": "invalid_api_key"}}'), times=10**9)
        # One shard of all four documents: several documents' requests are in flight when the 401 comes.
        result = linkscan(*llm_args(corpus, data, tokenizer_path, server.url, "--num-shards", "1",
                                    "--set", "llm.api_key_env=LINKSCAN_TEST_KEY"),
                          env={**os.environ, "LINKSCAN_TEST_KEY": "sk-wrong"})
    assert result.returncode == EXIT_USAGE, result.stderr
    assert one_error_line(result.stderr) == (
        f"error: {server.url}: HTTP 401 for model 'test-model'; check the API key in the environment variable "
        "LINKSCAN_TEST_KEY")
    assert "never retrieved" not in result.stderr and "ERROR" not in result.stderr
    assert published(data) == [] and leftovers(data / "datasets") == []  # (the cache's set-up lock stays by design)


@pytest.fixture()
def small_disk(small_tmpfs):
    """A 160 KiB tmpfs: enough to start a run, too small for its shards."""
    return small_tmpfs("160k")


def test_a_full_disk_is_one_line_with_the_path_and_leaves_no_temporary_file(corpus, tokenizer_path, small_disk):
    result = linkscan(*generate_args(corpus, small_disk, tokenizer_path))
    assert result.returncode == EXIT_FAILED
    line = one_error_line(result.stderr)
    # The file that could not be written, not only the data folder.
    written = line.removeprefix("error: ").split(": no space left on device; ")[0]
    assert written.startswith(f"{small_disk}/datasets/rfc/") and Path(written).suffix in (".parquet", ".json", ".npy", ".lock"), line
    assert f"no space left on device; free space under {small_disk} (or pass --data on another disk)" in line
    assert line.endswith("then rerun the same command to resume")
    assert leftovers(small_disk) == []
    assert published(small_disk) == []


def _wait_for_a_finished_shard(data: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not list(data.glob("datasets/rfc/.partial/*/.stats/shard-*.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard finished in 300 s"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_run_in_one_line_and_the_rerun_gives_the_same_bytes(corpus, tokenizer_path, tmp_path, signum):
    data = tmp_path / "data"
    process = linkscan(*generate_args(corpus, data, tokenizer_path), wait=False)
    _wait_for_a_finished_shard(data, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted ({signal.Signals(signum).name}); rerun the same command to resume")
    assert leftovers(data) == [] and published(data) == []

    rerun = linkscan(*generate_args(corpus, data, tokenizer_path))
    assert rerun.returncode == 0, rerun.stderr
    clean = linkscan(*generate_args(corpus, tmp_path / "clean", tokenizer_path))
    digests = lambda root: {s["file"]: s["sha256"] for s in open_dataset("rfc", data_root=root).manifest["shards"]}
    assert digests(data) == digests(tmp_path / "clean")
    assert clean.returncode == 0


def test_repair_rebuilds_exactly_the_damaged_shards_in_place(corpus, tokenizer_path, tmp_path):
    data = tmp_path / "data"
    assert linkscan(*generate_args(corpus, data, tokenizer_path)).returncode == 0
    dataset = open_dataset("rfc", data_root=data)
    flipped = dataset.path / "data" / "train-00001-of-00004.parquet"
    payload = bytearray(flipped.read_bytes())
    payload[len(payload) // 3] ^= 0x01
    flipped.write_bytes(bytes(payload))
    (dataset.path / "links" / "links-00003-of-00004.parquet").unlink()
    untouched = {p: p.stat().st_mtime_ns for p in dataset.path.rglob("*.parquet")}

    checked = linkscan("inspect", str(dataset.path), "--verify")
    assert checked.returncode == 2
    assert "train-00001-of-00004.parquet: sha256" in one_error_line(checked.stderr)
    assert "linkscan generate --repair --config" in checked.stderr

    repaired = linkscan("generate", "--repair", "--config", str(dataset.path / "dataset.json"), "--data", str(data))
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired 2 shard file(s)" in repaired.stderr
    open_dataset(dataset.path).verify()
    assert {p: p.stat().st_mtime_ns for p in untouched if p != flipped} == {
        p: t for p, t in untouched.items() if p != flipped}  # the good shards were not rewritten


@pytest.fixture(scope="module")
def generated(corpus, tokenizer_path, tmp_path_factory) -> Path:
    """A data folder holding one published version of ``corpus`` (copy it before changing it)."""
    data = tmp_path_factory.mktemp("generated") / "data"
    result = linkscan(*generate_args(corpus, data, tokenizer_path))
    assert result.returncode == 0, result.stderr
    return data


@pytest.mark.parametrize("content", [None, b"\x89PNG\r\n\x1a\n\x00", b"../other\n"], ids=["missing", "binary", "path-outside"])
def test_repair_repairs_a_latest_that_names_no_version(generated, tmp_path, content):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(generated, data)
    version = open_dataset("rfc", data_root=data).path
    latest = version.parent / "LATEST"
    latest.unlink() if content is None else latest.write_bytes(content)

    repaired = linkscan("generate", "--repair", "--config", str(version / "dataset.json"), "--data", str(data))
    assert repaired.returncode == 0, repaired.stderr
    assert "nothing to repair" not in repaired.stderr
    assert f"{latest}: named no complete published version; it now names {version.name}" in repaired.stderr
    assert latest.read_text() == f"{version.name}\n"
    assert open_dataset("rfc", data_root=data).path == version
    again = linkscan("generate", "--repair", "--config", str(version / "dataset.json"), "--data", str(data))
    assert again.returncode == 0 and "nothing to repair" in again.stderr  # now there is nothing left to do


def test_inspect_of_a_truncated_shard_is_one_line(corpus, tokenizer_path, tmp_path):
    data = tmp_path / "data"
    assert linkscan(*generate_args(corpus, data, tokenizer_path)).returncode == 0
    shard = open_dataset("rfc", data_root=data).path / "data" / "train-00000-of-00004.parquet"
    shard.write_bytes(shard.read_bytes()[:1000])
    result = linkscan("inspect", "rfc", "--data", str(data))
    assert result.returncode == 2
    assert "train-00000-of-00004.parquet: not a readable Parquet shard" in one_error_line(result.stderr)


def test_a_hub_tokenizer_with_no_network_fails_at_once_in_one_line(corpus, tmp_path):
    from tests.conftest import REPO as repo

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "linkscan.flows.cli", "generate", "--corpus", str(corpus), "--data",
                             str(tmp_path / "data"), "--tokenizer", "EleutherAI/gpt-neox-20b"],
                            cwd=repo, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert "the Hugging Face hub cannot serve it (http://127.0.0.1:9 not reachable" in line
    assert "Retrying" not in result.stderr and time.monotonic() - started < 60
    assert not (tmp_path / "data" / "datasets").exists()
