"""The parts of the flows that need no Prefect server: demo corpus, artifacts, runtime, prefect.yaml."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from linkscan.flows import artifacts, demo, events
from linkscan.flows.runtime import TaskRunnerConfig, make_task_runner, resolve_data_root
from linkscan.generators.llm.client import LLMRequestError

REPO = Path(__file__).resolve().parent.parent


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demo_corpus_holds_every_python_reference_topic(tmp_path):
    from pydoc_data.topics import topics

    paths = demo.build_demo_corpus(tmp_path, licenses_dir=tmp_path / "absent")
    assert paths == [tmp_path / demo.TOPICS_FILE]
    documents = _read_jsonl(paths[0])
    text = "".join(doc["text"] for doc in documents)
    for name, body in topics.items():
        if body.strip():
            assert body.strip() in text, name
    # Packed documents are long enough for far links; only the last may be short.
    assert all(len(doc["text"]) >= demo.MIN_DOCUMENT_CHARS for doc in documents[:-1])
    assert len({doc["id"] for doc in documents}) == len(documents)


def test_demo_corpus_includes_licence_texts_when_the_folder_exists(tmp_path):
    licenses = tmp_path / "licenses"
    licenses.mkdir()
    (licenses / "MIT").write_text("Permission is hereby granted, free of charge, to any person.\n")
    (licenses / "empty").write_text("\n")
    paths = demo.build_demo_corpus(tmp_path / "corpus", licenses_dir=licenses)
    assert [p.name for p in paths] == [demo.TOPICS_FILE, demo.LICENSES_FILE]
    assert _read_jsonl(paths[1]) == [
        {"id": "license-MIT", "title": "Licence text: MIT", "text": "Permission is hereby granted, free of charge, to any person.\n"}
    ]


def test_demo_corpus_rebuild_leaves_files_untouched(tmp_path):
    """Same bytes and same mtime on a rebuild, so the input fingerprint and the version id stay put."""
    first = demo.build_demo_corpus(tmp_path)
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in first]
    second = demo.build_demo_corpus(tmp_path)
    assert second == first
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in second] == before


def test_bundled_tokenizer_neither_pads_nor_truncates(tmp_path):
    from tokenizers import Tokenizer

    path = demo.bundled_tokenizer(tmp_path)
    tokenizer = Tokenizer.from_file(str(path))
    assert len(tokenizer.encode("lambda", add_special_tokens=False).ids) == 1
    assert len(tokenizer.encode("word " * 300, add_special_tokens=False).ids) == 300
    mtime = path.stat().st_mtime_ns
    assert demo.bundled_tokenizer(tmp_path) == path and path.stat().st_mtime_ns == mtime


def test_counts_table_lists_rows_counts_and_every_drop_reason():
    manifest = {
        "shards": [
            {"artifact": "examples", "rows": 5},
            {"artifact": "examples", "rows": 7},
            {"artifact": "chunks", "rows": 3},
        ],
        "counts": {"documents": 4, "methods": {"link": 12}},
        "drop_reasons": {"duplicate": 2, "too_short": 1},
    }
    assert artifacts.counts_table(manifest) == [
        {"kind": "rows", "name": "chunks", "value": 3},
        {"kind": "rows", "name": "examples", "value": 12},
        {"kind": "count", "name": "documents", "value": 4},
        {"kind": "count", "name": "methods.link", "value": 12},
        {"kind": "dropped", "name": "duplicate", "value": 2},
        {"kind": "dropped", "name": "too_short", "value": 1},
    ]


def test_llm_usage_table_has_one_row_per_stage_and_a_total_and_is_empty_offline():
    totals = {"requests": 4, "cache_hits": 1, "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.5}
    manifest = {
        "llm": {
            "model": "m",
            "usage": {
                "stages": {"links": {**totals, "failures": {"timeout": 2}}, "question": {**totals, "failures": {}}},
                "total": {**totals, "requests": 8, "failures": {"timeout": 2}},
            },
        }
    }
    assert artifacts.llm_usage_table(manifest) == [
        {"stage": "links", **totals, "failures": 2},
        {"stage": "question", **totals, "failures": 0},
        {"stage": "total", **totals, "requests": 8, "failures": 2},
    ]
    assert artifacts.llm_usage_table({"counts": {}, "llm": None}) == []


def test_artifact_keys_use_only_lowercase_letters_digits_and_dashes():
    assert artifacts.artifact_key("dataset", "My_Data.v2") == "dataset-my-data-v2"


def test_data_root_is_the_argument_else_the_environment_else_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKSCAN_DATA", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("LINKSCAN_DATA")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root(None) == tmp_path / "data"


def test_task_runner_config_selects_threads_or_dask():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = make_task_runner(TaskRunnerConfig(max_workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    local = make_task_runner(TaskRunnerConfig(kind="dask", n_workers=2, processes=False))
    assert isinstance(local, DaskTaskRunner)
    assert local.cluster_kwargs["n_workers"] == 2 and local.cluster_kwargs["processes"] is False
    remote = make_task_runner(TaskRunnerConfig(kind="dask", address="tcp://127.0.0.1:8786"))
    assert remote.address == "tcp://127.0.0.1:8786"


def test_ray_without_prefect_ray_installed_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as if the package were absent
    with pytest.raises(RuntimeError, match=r"kind='ray' needs prefect-ray: pip install 'linkscan\[scale\]'"):
        make_task_runner(TaskRunnerConfig(kind="ray"))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionResetError("peer reset"), True),
        (TimeoutError("slow disk"), True),
        (OSError(28, "No space left on device"), True),
        (FileNotFoundError("corpus/missing.jsonl"), False),
        (PermissionError("corpus/locked.jsonl"), False),
        (ValueError("bad config"), False),
        (LLMRequestError("server_error", "HTTP 503"), True),
        (LLMRequestError("http_400", "bad request"), False),
    ],
)
def test_only_transient_failures_are_retried(error, transient):
    from linkscan.flows.runtime import is_transient

    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("flow_name", "definition"),
    [("train", events.TRAIN_ON_PUBLISHED), ("evaluate", events.EVALUATE_ON_TRAINED)],
)
def test_prefect_yaml_triggers_match_the_served_ones(flow_name, definition):
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = [d for d in spec["deployments"] if d["entrypoint"].endswith(f":{flow_name}")]
    (trigger,) = deployment["triggers"]
    assert deployment["name"] == "default"
    assert trigger["expect"] == definition["expect"]
    assert trigger["match"] == definition["match"]
    assert trigger["parameters"] == definition["parameters"]
    assert trigger["name"] == definition["name"]


def test_prefect_yaml_declares_generate_train_and_evaluate_on_one_work_pool():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    entrypoints = sorted(d["entrypoint"] for d in spec["deployments"])
    assert entrypoints == ["flows/evaluate.py:evaluate", "flows/generate.py:generate", "flows/train.py:train"]
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"linkscan"}
    from prefect.flows import Flow, load_flow_from_entrypoint

    for d in spec["deployments"]:  # each entrypoint loads, as `prefect deploy` loads it, into that flow
        loaded = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        assert isinstance(loaded, Flow) and loaded.name == d["entrypoint"].split(":")[1]


def test_serve_defaults_parse_flow_equals_json_pairs():
    from linkscan.flows.cli_flows import parse_defaults

    assert parse_defaults(['train={"options": {"max_steps": 5}}', 'train={"dataset": "demo"}', "evaluate={}"]) == {
        "train": {"options": {"max_steps": 5}, "dataset": "demo"},
        "evaluate": {},
    }


def test_serve_defaults_name_the_bad_value():
    import typer

    from linkscan.flows.cli_flows import parse_defaults

    with pytest.raises(typer.BadParameter, match="train=max_steps"):
        parse_defaults(["train=max_steps"])


def test_deployment_defaults_for_an_unknown_flow_are_refused():
    from linkscan.flows.deployments import runner_deployments

    with pytest.raises(ValueError, match="trian"):
        runner_deployments({"trian": {}})


def test_train_options_keep_demo_defaults_for_fields_left_out():
    from linkscan.flows.train import DEMO_TRAIN_DEFAULTS, TrainOptions

    options = TrainOptions.model_validate({"max_steps": 3})
    assert options.max_steps == 3
    assert options.tokens_per_step == DEMO_TRAIN_DEFAULTS["tokens_per_step"]
    assert "dataset" not in TrainOptions.model_fields and "out" not in TrainOptions.model_fields


def test_generate_config_parameter_keeps_demo_defaults_for_fields_left_out():
    from linkscan.flows.demo import BUNDLED_TOKENIZER
    from linkscan.flows.generate import generate
    from linkscan.generators.config import GenerateConfig

    # The README's --params example: the bundled tokenizer stays (no hub needed), as does nested defaulting.
    config = generate.validate_parameters({"config": {"name": "mine", "corpus": ["corpus/"]}})["config"]
    assert (config.name, config.corpus, config.corpus_config.tokenizer) == ("mine", ["corpus/"], BUNDLED_TOKENIZER)
    nested = generate.validate_parameters({"config": {"corpus_config": {"chunk_tokens": 500}}})["config"]
    assert (nested.name, nested.corpus_config.chunk_tokens, nested.corpus_config.tokenizer) == ("demo", 500, BUNDLED_TOKENIZER)
    # A GenerateConfig built in Python is taken as it is, its own defaults included.
    explicit = generate.validate_parameters({"config": GenerateConfig(name="x", corpus=["a"])})["config"]
    assert explicit.model_dump() == GenerateConfig(name="x", corpus=["a"]).model_dump()


def test_worker_processes_without_a_prefect_server_get_a_warning(monkeypatch, caplog):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    make_task_runner(TaskRunnerConfig(kind="dask", processes=True))
    assert "PREFECT_API_URL is not set" in caplog.text
    caplog.clear()
    make_task_runner(TaskRunnerConfig(kind="dask", processes=False))  # threads in this process: fine
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    make_task_runner(TaskRunnerConfig(kind="dask", processes=True))
    assert "PREFECT_API_URL" not in caplog.text


def test_evaluate_adds_the_trained_model_as_the_event_names_it():
    from linkscan.flows.evaluate import trained_retrievers

    base = ["bm25", "random"]
    assert trained_retrievers(base, "/m/step-1", "dense:/m/run") == ["bm25", "random", "dense:/m/run"]
    assert trained_retrievers(base, "/m/step-1", None) == ["bm25", "random", "scanner:/m/step-1"]
    assert trained_retrievers(base, "/m/step-1", "") == ["bm25", "random", "scanner:/m/step-1"]  # an event without one
    assert trained_retrievers(base, None, None) == base
    assert trained_retrievers(["dense:/m/run"], "/m/run", "dense:/m/run") == ["dense:/m/run"]
