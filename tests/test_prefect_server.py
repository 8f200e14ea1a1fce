"""The flows against a real Prefect server on 127.0.0.1 (one server for this module).

- `linkscan serve` serves the deployments; `prefect deployment run 'generate/default'` publishes a
  version, the event fires, the train deployment runs on that version, and its event starts the
  evaluate deployment on the new checkpoint.
- A generate run killed with SIGKILL after a shard and rerun gives the same bytes as a clean run.
- The generate flow runs its shards on a local Dask cluster.

Every process a test starts runs in its own session and is stopped in a ``finally``.
"""
from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from linkscan.flows import events
from linkscan.flows.server import server_env, start_server, stop_process, wait_healthy
from linkscan.pipeline.store import VersionStaging

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LINKSCAN = str(Path(sys.executable).with_name("linkscan"))
PREFECT = str(Path(sys.executable).with_name("prefect"))


@dataclass
class Server:
    api_url: str
    home: Path
    env: dict

    def post(self, route: str, body: dict) -> dict | list:
        response = httpx.post(f"{self.api_url}{route}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def get(self, route: str) -> dict:
        response = httpx.get(f"{self.api_url}{route}", timeout=30)
        response.raise_for_status()
        return response.json()

    def flow_runs(self, flow_name: str) -> list[dict]:
        return self.post("/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}})

    def wait_for_events(self, event: str, resource_id: str, timeout: float = 60, accept=lambda event: True) -> list[dict]:
        """Events of that name on that resource that pass ``accept``, once there are any (the server
        stores them async)."""
        body = {"filter": {"event": {"name": [event]}, "resource": {"id": [resource_id]}}}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.post("/events/filter", body)["events"] if accept(e)]
            if found:
                return found
            time.sleep(1)
        pytest.fail(f"no {event} event on {resource_id} within {timeout:.0f} s")

    def wait_for_flow_run(self, flow_name: str, accept, timeout: float, what: str) -> dict:
        """The first run of ``flow_name`` that is final and passes ``accept``; fail on a crash or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.flow_runs(flow_name):
                if run["state_type"] in {"FAILED", "CRASHED"} and accept(run):
                    pytest.fail(f"{flow_name} run {run['name']} ended {run['state_type']}: {run['state']['message']}")
                if run["state_type"] == "COMPLETED" and accept(run):
                    return run
            time.sleep(1)
        pytest.fail(f"no completed {flow_name} run {what} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    home = tmp_path_factory.mktemp("prefect-home")
    process, api_url = start_server(home, ui=False)
    try:
        wait_healthy(api_url, timeout=120, process=process)
        yield Server(api_url, home, server_env(home, api_url))
    finally:
        stop_process(process)


SMALL_CORPUS_DOCS = ["pydoc311-library-ast", "pydoc311-library-re", "pydoc311-library-unittest", "pydoc311-library-unittest-mock"]


def small_corpus(dev_corpus: Path, target: Path) -> Path:
    """Four Python library docs from the dev corpus, one JSONL file each (so four shards)."""
    target.mkdir()
    with gzip.open(dev_corpus / "pydocs.jsonl.gz", "rt") as handle:
        for line in handle:
            doc = json.loads(line)
            if doc["id"] in SMALL_CORPUS_DOCS:
                (target / f"{doc['id']}.jsonl").write_text(line if line.endswith("\n") else line + "\n")
    assert len(list(target.iterdir())) == len(SMALL_CORPUS_DOCS)
    return target


def small_config(corpus: Path, tokenizer_path: Path) -> dict:
    return {
        "name": "flowtest",
        "corpus": [str(corpus)],
        "generator": "offline",
        "num_shards": 4,
        "corpus_config": {"tokenizer": str(tokenizer_path)},
    }


def run_python(code: str, server: Server, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [PYTHON, "-c", code, *args],
        env=server.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        stop_process(process)
    return subprocess.CompletedProcess(process.args, process.returncode, output)


RUN_GENERATE = """
import json, sys
from linkscan.flows.generate import generate
from linkscan.flows.runtime import TaskRunnerConfig
from linkscan.generators.config import GenerateConfig
result = generate(
    config=GenerateConfig.model_validate(json.loads(sys.argv[1])),
    data_root=sys.argv[2],
    task_runner=TaskRunnerConfig.model_validate(json.loads(sys.argv[3])),
)
print("RESULT", json.dumps(result))
"""

# Runs the flow with generate_shard wrapped so that the process SIGKILLs itself right after the
# shard with index sys.argv[4] is written: a real kill, at a point the test knows.
KILL_AFTER_SHARD = """
import os, signal, sys
from linkscan.generators import stage
write_shard = stage.generate_shard
def write_then_die(plan, index, **options):
    result = write_shard(plan, index, **options)
    if index == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
stage.generate_shard = write_then_die
""" + RUN_GENERATE


# The same, killed right after the version is published, before its event is emitted.
KILL_AFTER_PUBLISH = """
import os, signal
from linkscan.generators import stage
publish = stage.publish_generation
def publish_then_die(plan, writer=None):
    publish(plan, writer)
    os.kill(os.getpid(), signal.SIGKILL)
stage.publish_generation = publish_then_die
""" + RUN_GENERATE


def shard_bytes(version_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(version_dir)): path.read_bytes()
        for path in sorted(version_dir.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dev_corpus, tokenizer_path):
    """The small config's dataset, generated without Prefect: the bytes every flow run must match."""
    from linkscan.generators.config import GenerateConfig
    from linkscan.generators.stage import run_generation

    corpus = small_corpus(dev_corpus, tmp_path_factory.mktemp("corpus") / "pydocs")
    config = small_config(corpus, tokenizer_path)
    result = run_generation(GenerateConfig.model_validate(config), tmp_path_factory.mktemp("reference"))
    assert result.manifest["counts"]["examples"] > 0
    return config, Path(result.path)


def test_served_generate_publishes_and_triggers_training_then_evaluation(server, tmp_path, dev_evalsets):
    """`make demo` first (its event goes to a temporary server that is gone), then the served chain:
    `generate/default` finds the demo version published, announces it to this server, and the chain
    trains and evaluates on it. A partial version's event, sent meanwhile, trains nothing."""
    workdir = tmp_path / "served"
    workdir.mkdir()
    data_root = workdir / "data"
    env = {**server.env, "LINKSCAN_DATA": str(data_root)}
    demo_env = server_env(tmp_path / "demo-prefect-home")
    demo_env.pop("PREFECT_API_URL", None)
    demo = subprocess.run([LINKSCAN, "demo", "--data", str(data_root)], env=demo_env, cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    demo_version = (data_root / "datasets" / "demo" / "LATEST").read_text().strip()
    assert not events.dataset_announced(data_root, "demo", demo_version, server.api_url)
    # Deployment defaults keep the chain short: one training step, two questions of one benchmark.
    train_defaults = {"options": {"max_steps": 1, "validate_every": 1, "checkpoint_every": 1}}
    evaluate_defaults = {"benchmarks": str(dev_evalsets), "options": {"only": ["paperqa_4k"], "max_questions": 2}}
    command = [
        LINKSCAN, "serve",
        "--defaults", "train=" + json.dumps(train_defaults),
        "--defaults", "evaluate=" + json.dumps(evaluate_defaults),
    ]
    with open(tmp_path / "serve.log", "wb") as log:
        serving = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(server.post("/deployments/filter", {"deployments": {"name": {"any_": ["default"]}}})) < 3:
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "linkscan serve did not register 3 deployments in 120 s"
            time.sleep(1)
        run = subprocess.run(
            [PREFECT, "deployment", "run", "generate/default"],
            env=env, cwd=workdir, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr

        partial = run_python(EMIT_PARTIAL, Server(server.api_url, server.home, env), str(data_root))
        assert partial.returncode == 0, partial.stdout[-3000:]

        server.wait_for_flow_run("generate", lambda r: r["deployment_id"] is not None, 420, "of generate/default")
        version = (data_root / "datasets" / "demo" / "LATEST").read_text().strip()
        assert version == demo_version  # the demo's version, published before the server existed
        version_dir = data_root / "datasets" / "demo" / version
        assert (version_dir / "dataset.json").is_file()
        published = server.wait_for_events(events.DATASET_PUBLISHED, "linkscan.dataset.demo")
        assert [(e["payload"]["version"], e["payload"]["path"], e["payload"]["complete"]) for e in published] == [
            (version, str(version_dir), True)]
        assert events.dataset_announced(data_root, "demo", version, server.api_url)

        trained = server.wait_for_flow_run(
            "train", lambda r: r["parameters"].get("version") == version, 300, f"on version {version}"
        )
        assert trained["parameters"]["dataset"] == "demo"
        assert trained["parameters"]["data_root"] == str(data_root)
        (checkpoint,) = (data_root / "models" / "demo").glob(f"{version}-*/checkpoints/step-00000001")
        (trained_event,) = server.wait_for_events(events.MODEL_TRAINED, "linkscan.model.demo")
        assert trained_event["payload"]["checkpoint"] == str(checkpoint)
        assert trained_event["payload"]["retriever"] == f"scanner:{checkpoint}"
        assert trained_event["payload"]["dataset_version"] == version

        evaluated = server.wait_for_flow_run(
            "evaluate", lambda r: r["parameters"].get("checkpoint") == str(checkpoint), 300, f"of {checkpoint}"
        )
        assert evaluated["parameters"]["tokenizer"] == str(data_root / "tokenizers" / "all-MiniLM-L6-v2" / "tokenizer.json")
        (report,) = (data_root / "evals").glob("*/report.md")
        assert f"scanner:{checkpoint}" in report.read_text()

        # The dense target, run by hand on the same version: its event evaluates dense:<folder>.
        dense_options = {"max_steps": 2, "batch_size": 4, "validate_every": 2, "checkpoint_every": 2}
        run = subprocess.run(
            [PREFECT, "deployment", "run", "train/default", "--params",
             json.dumps({"dataset": "demo", "version": version, "target": "dense", "dense_options": dense_options})],
            env=env, cwd=workdir, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        server.wait_for_flow_run("train", lambda r: r["parameters"].get("target") == "dense", 420, "of the dense target")
        (model,) = (data_root / "models" / "demo").glob(f"{version}-dense-*")
        assert (model / "linkscan_dense.json").is_file()
        (dense_event,) = server.wait_for_events(events.MODEL_TRAINED, "linkscan.model.demo",
                                                accept=lambda e: e["payload"]["retriever"].startswith("dense:"))
        assert dense_event["payload"]["retriever"] == f"dense:{model}"
        server.wait_for_flow_run("evaluate", lambda r: r["parameters"].get("retriever") == f"dense:{model}", 300,
                                 f"of dense:{model}")
        reports = [path.read_text() for path in (data_root / "evals").glob("*/report.md")]
        assert len(reports) == 2 and any(f"dense:{model}" in text and "scanner:" not in text for text in reports)
        # The partial version's event was stored long before the chain finished; it trained nothing.
        assert server.wait_for_events(events.DATASET_PUBLISHED, "linkscan.dataset.partial")[0]["payload"]["complete"] is False
        assert [r for r in server.flow_runs("train") if r["parameters"].get("dataset") == "partial"] == []
    finally:
        stop_process(serving)


# The event of a version published with allow_partial (the version itself does not matter here).
EMIT_PARTIAL = """
import sys
from pathlib import Path
from linkscan.flows import events
root = Path(sys.argv[1])
events.emit_dataset_published("partial", "0123456789ab", root / "datasets" / "partial" / "0123456789ab", root, complete=False)
"""


def test_generate_killed_after_a_shard_resumes_to_the_same_bytes(server, reference, tmp_path):
    config, reference_dir = reference
    data_root = tmp_path / "data"
    threads = json.dumps({"kind": "threads", "max_workers": 1})
    killed = run_python(KILL_AFTER_SHARD, server, json.dumps(config), str(data_root), threads, "1")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]
    dataset = data_root / "datasets" / config["name"]
    staging = VersionStaging(data_root, config["name"], reference_dir.name).dir
    assert 1 <= len(list((staging / "data").glob("train-*.parquet"))) < config["num_shards"]
    assert not (dataset / "LATEST").exists()
    written_before_kill = {str(p.relative_to(staging)): p.stat().st_mtime_ns for p in staging.rglob("*.parquet")}

    rerun = run_python(RUN_GENERATE, server, json.dumps(config), str(data_root), threads)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    version_dir = dataset / reference_dir.name
    assert shard_bytes(version_dir) == shard_bytes(reference_dir)
    for folder in ("data", "chunks", "links", "documents"):
        assert len(list((version_dir / folder).iterdir())) == config["num_shards"], folder
    assert not staging.exists()
    # The shards finished before the kill were kept, not written again.
    assert {name: (version_dir / name).stat().st_mtime_ns for name in written_before_kill} == written_before_kill


def test_generate_runs_its_shards_on_a_local_dask_cluster(server, reference, tmp_path):
    config, reference_dir = reference
    data_root = tmp_path / "data"
    dask = json.dumps({"kind": "dask", "n_workers": 2, "processes": False})
    result = run_python(RUN_GENERATE, server, json.dumps(config), str(data_root), dask)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Creating a new Dask cluster with `distributed.deploy.local.LocalCluster`" in result.stdout
    version_dir = data_root / "datasets" / config["name"] / reference_dir.name
    assert shard_bytes(version_dir) == shard_bytes(reference_dir)


def test_generate_rerun_reuses_the_published_version_without_a_new_event(server, reference, tmp_path):
    config, reference_dir = reference
    threads = json.dumps({"kind": "threads", "max_workers": 2})
    results = []
    for _ in range(2):
        done = run_python(RUN_GENERATE, server, json.dumps(config), str(tmp_path / "data"), threads)
        assert done.returncode == 0, done.stdout[-3000:]
        results.append(json.loads(done.stdout.rsplit("RESULT ", 1)[1].splitlines()[0]))
    assert [r["newly_published"] for r in results] == [True, False]
    assert results[0]["path"] == results[1]["path"] == str(tmp_path / "data" / "datasets" / "flowtest" / reference_dir.name)
    events_of_this_root = [
        e for e in server.wait_for_events(events.DATASET_PUBLISHED, "linkscan.dataset.flowtest")
        if e["payload"]["data_root"] == str(tmp_path / "data")
    ]
    assert len(events_of_this_root) == 1
    # Each run leaves its artifacts: the counts and drops table, the dataset card, the link to the shards.
    version = reference_dir.name
    by_key = {key: server.post("/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}})
              for key in ("dataset-flowtest-counts", "dataset-flowtest-card", "dataset-flowtest-shards")}
    def text(artifact: dict) -> str:
        return artifact["data"] if isinstance(artifact["data"], str) else json.dumps(artifact["data"])

    assert any(a["type"] == "table" and version in a["description"] and '"name": "examples"' in text(a)
               for a in by_key["dataset-flowtest-counts"])
    assert any(a["type"] == "markdown" and version in text(a) for a in by_key["dataset-flowtest-card"])
    # (Prefect stores a link artifact as Markdown.)
    assert any(f"datasets/flowtest/{version})](file://" in text(a) for a in by_key["dataset-flowtest-shards"])


def test_a_run_killed_between_publishing_and_its_event_announces_the_version_on_rerun(server, reference, tmp_path):
    config, reference_dir = reference
    data_root = tmp_path / "data"
    threads = json.dumps({"kind": "threads", "max_workers": 2})
    killed = run_python(KILL_AFTER_PUBLISH, server, json.dumps(config), str(data_root), threads)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]
    assert (data_root / "datasets" / config["name"] / reference_dir.name / "dataset.json").is_file()
    for _ in range(2):  # the first rerun announces the version, the second finds it announced
        done = run_python(RUN_GENERATE, server, json.dumps(config), str(data_root), threads)
        assert done.returncode == 0, done.stdout[-3000:]
        assert json.loads(done.stdout.rsplit("RESULT ", 1)[1].splitlines()[0])["newly_published"] is False
    def announced() -> list[str]:
        return [e["payload"]["version"] for e in server.wait_for_events(events.DATASET_PUBLISHED, "linkscan.dataset.flowtest")
                if e["payload"]["data_root"] == str(data_root)]

    deadline = time.monotonic() + 60
    while not announced() and time.monotonic() < deadline:  # the server stores events asynchronously
        time.sleep(1)
    time.sleep(3)  # and a second announcement, had there been one, would be stored by now
    assert announced() == [reference_dir.name]


def test_linkscan_demo_generates_the_demo_dataset_and_prints_how_to_look_at_it(server, tmp_path):
    # `make demo` runs `linkscan demo`; here against the test server (the command itself starts a
    # temporary one when PREFECT_API_URL is unset).
    done = subprocess.run([LINKSCAN, "demo", "--data", str(tmp_path / "data")], env=server.env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    version = out.split("dataset demo version ", 1)[1].split()[0]
    assert (tmp_path / "data" / "datasets" / "demo" / version / "dataset.json").is_file()
    rows = dict(line.strip().rstrip(" rows").split(": ") for line in out.splitlines()
                if line.startswith("  ") and line.strip().endswith(" rows"))
    assert set(rows) == {"documents", "chunks", "links", "examples"} and int(rows["examples"].replace(",", "")) > 10
    samples = out.split("sample questions (DuckDB):\n", 1)[1].split("look at it:", 1)[0].splitlines()
    assert len(samples) == 3 and all(s.startswith("  - ") and "?" in s and "link distance" in s for s in samples)
    assert f"linkscan inspect demo --data {tmp_path / 'data'}" in out


RETRYING_TASKS = """
import json
from prefect import flow, task
from linkscan.flows.runtime import retry_transient
calls = {"transient": 0, "permanent": 0}

@task(retries=1, retry_condition_fn=retry_transient, persist_result=False)
def flaky(kind: str) -> str:
    calls[kind] += 1
    if calls[kind] == 1:
        raise ConnectionResetError("peer reset") if kind == "transient" else FileNotFoundError("corpus/missing.jsonl")
    return "ok"

@flow(persist_result=False)
def both() -> dict:
    results = {}
    for kind in calls:
        state = flaky(kind, return_state=True)
        results[kind] = state.type.value
    return results

print("RESULT", json.dumps({"states": both(), "calls": calls}))
"""


def test_prefect_retries_a_transient_failure_once_and_a_permanent_one_never(server):
    done = run_python(RETRYING_TASKS, server)
    assert done.returncode == 0, done.stdout[-3000:]
    result = json.loads(done.stdout.rsplit("RESULT ", 1)[1].splitlines()[0])
    assert result == {"states": {"transient": "COMPLETED", "permanent": "FAILED"},
                      "calls": {"transient": 2, "permanent": 1}}


LLM_KEY = "sk-live-linkscan-flow-test-key-42c1"


def test_llm_generate_flow_reports_tokens_and_cost_and_keeps_the_key_out_of_prefect(server, reference, tmp_path):
    from tests.llm_server import LLMTestServer, Reply, request_stage

    config, _ = reference
    with LLMTestServer() as llm:
        # One transient failure, retried by the client, shows up in the usage table.
        llm.inject(Reply(status=500), times=1, match=lambda request: request_stage(request) == "links")
        llm_config = {
            **config, "name": "flowllm", "generator": "llm", "concurrency": 8,
            "llm": {"base_url": llm.url, "model": "test-model", "api_key_env": "LINKSCAN_FLOW_TEST_KEY",
                    "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        }
        env = {**server.env, "LINKSCAN_FLOW_TEST_KEY": LLM_KEY}
        threads = json.dumps({"kind": "threads", "max_workers": 2})
        done = run_python(RUN_GENERATE, Server(server.api_url, server.home, env), json.dumps(llm_config),
                          str(tmp_path / "data"), threads)
        assert done.returncode == 0, done.stdout[-3000:]
        assert llm.authorizations == {f"Bearer {LLM_KEY}"}
        requests = llm.requests

    (artifact,) = server.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["dataset-flowllm-llm-usage"]}}})
    rows = {row["stage"]: row for row in json.loads(artifact["data"])}
    assert set(rows) == {"links", "question", "evidence", "total"}
    assert rows["total"]["requests"] == sum(rows[s]["requests"] for s in ("links", "question", "evidence"))
    assert rows["total"]["attempts"] == requests  # every request that reached the server, the 500 included
    assert rows["total"]["prompt_tokens"] > 0 and "cost_usd" in rows["total"]
    # The key was read from the environment inside the tasks: no flow run parameter holds it.
    runs = server.post("/flow_runs/filter", {"flows": {"name": {"any_": ["generate", "generate-shards"]}}})
    assert runs and LLM_KEY not in json.dumps([r["parameters"] for r in runs])
    assert LLM_KEY not in done.stdout


def test_prefect_yaml_deploys_three_deployments_with_their_triggers(server):
    """`prefect deploy --all` registers prefect.yaml on a process work pool (last: it replaces the served ones)."""
    def prefect(*args: str) -> None:
        # PWD as a shell in the repository root sets it: prefect.yaml's pull step reads {{ $PWD }}.
        env = {**server.env, "PWD": str(REPO)}
        done = subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    prefect("work-pool", "create", "linkscan", "--type", "process", "--overwrite")
    prefect("deploy", "--all")
    deployed = server.post("/deployments/filter", {"work_pools": {"name": {"any_": ["linkscan"]}}})
    assert sorted(d["entrypoint"] for d in deployed) == [
        "flows/evaluate.py:evaluate", "flows/generate.py:generate", "flows/train.py:train"
    ]
    assert all(d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO) for d in deployed)
    by_id = {d["id"]: d["entrypoint"] for d in deployed}
    automations = {
        by_id[a["actions"][0]["deployment_id"]]: a
        for a in server.post("/automations/filter", {})
        if a["actions"][0].get("deployment_id") in by_id
    }
    assert automations["flows/train.py:train"]["trigger"]["expect"] == [events.DATASET_PUBLISHED]
    assert automations["flows/train.py:train"]["actions"][0]["parameters"] == events.TRAIN_ON_PUBLISHED["parameters"]
    assert automations["flows/evaluate.py:evaluate"]["trigger"]["expect"] == [events.MODEL_TRAINED]


def test_a_generate_flow_with_chunks_waiting_for_the_llm_fails_with_how_to_resume(server, reference, tmp_path):
    """Under Prefect: the shard tasks are retried (transient), the flow run ends Failed with the
    waiting chunks counted, nothing is published, and a run after the outage completes."""
    from tests.llm_server import LLMTestServer, Reply

    config, _ = reference
    data_root = tmp_path / "data"
    threads = json.dumps({"kind": "threads", "max_workers": 2})
    with LLMTestServer() as llm:
        llm.inject(Reply(status=503), times=10**9)
        llm_config = {**config, "name": "flowdown", "corpus": [config["corpus"][0] + "/pydoc311-library-re.jsonl"],
                      "num_shards": 1, "generator": "llm",
                      "llm": {"base_url": llm.url, "model": "test-model", "max_attempts": 2,
                              "backoff_base_s": 0.01, "backoff_max_s": 0.02}}
        failed = run_python(RUN_GENERATE, server, json.dumps(llm_config), str(data_root), threads)
        assert failed.returncode != 0
        assert "wait for the LLM (server_error:" in failed.stdout
        assert not list(data_root.glob("datasets/flowdown/*/dataset.json"))
        (flow_run,) = [r for r in server.flow_runs("generate") if (r["parameters"].get("config") or {}).get("name") == "flowdown"]
        assert flow_run["state_type"] == "FAILED" and "Rerun the same command" in flow_run["state"]["message"]
        (subflow,) = [r for r in server.flow_runs("generate-shards") if r["parent_task_run_id"]
                      and server.get(f"/task_runs/{r['parent_task_run_id']}")["flow_run_id"] == flow_run["id"]]
        (shard_run,) = server.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [subflow["id"]]}}})
        assert (shard_run["name"], shard_run["run_count"]) == ("shard-0", 3)  # the first try and both retries

        llm.clear_faults()
        done = run_python(RUN_GENERATE, server, json.dumps(llm_config), str(data_root), threads)
        assert done.returncode == 0, done.stdout[-3000:]
    assert len(list(data_root.glob("datasets/flowdown/*/dataset.json"))) == 1


@pytest.fixture(scope="module")
def one_file_reference(tmp_path_factory, dev_corpus, tokenizer_path):
    """One JSONL file of the small corpus's documents, cut into 4 shards by content, generated
    without Prefect: the bytes every task runner must give."""
    from linkscan.generators.config import GenerateConfig
    from linkscan.generators.stage import run_generation

    corpus = small_corpus(dev_corpus, tmp_path_factory.mktemp("one-file-corpus") / "pydocs")
    joined = corpus.parent / "all.jsonl"
    joined.write_text("".join(path.read_text() for path in sorted(corpus.iterdir())))
    config = {**small_config(joined, tokenizer_path), "name": "onefile"}
    result = run_generation(GenerateConfig.model_validate(config), tmp_path_factory.mktemp("one-file-reference"))
    assert len(result.manifest["shard_inputs"]) >= 3 and result.manifest["counts"]["examples"] > 0  # cut by content
    return config, Path(result.path)


@pytest.mark.parametrize("runner", [
    {"kind": "threads", "max_workers": 2},
    {"kind": "dask", "n_workers": 2, "processes": True},
    {"kind": "ray"},
], ids=["threads", "dask-processes", "ray"])
def test_every_task_runner_gives_the_same_bytes_from_one_file_in_several_shards(server, one_file_reference, tmp_path, runner):
    config, reference_dir = one_file_reference
    result = run_python(RUN_GENERATE, server, json.dumps(config), str(tmp_path / "data"), json.dumps(runner), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    version_dir = tmp_path / "data" / "datasets" / config["name"] / reference_dir.name
    assert shard_bytes(version_dir) == shard_bytes(reference_dir)
