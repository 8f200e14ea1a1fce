"""The generation stage end to end on a small real corpus: determinism, resume, manifest, card, config."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from linkscan.generators.config import ConfigFileError, GenerateConfig, load_config, version_config
from linkscan.generators.stage import (
    EmptyDatasetError,
    GenerationError,
    generate_shard,
    holding_version,
    plan_generation,
    publish_generation,
    repair_version,
    run_generation,
)
from linkscan.pipeline.store import open_dataset

DOCS = {
    "scotus.jsonl.gz": ["scotus-2009-berghuis-v-thompkins", "scotus-2010-stern-v-marshall"],
    "pydocs.jsonl.gz": ["pydoc311-tutorial"],
}


@pytest.fixture(scope="module")
def corpus(dev_corpus, tmp_path_factory) -> Path:
    """Two JSONL files with the first 40k characters of three dev documents, written at test time."""
    folder = tmp_path_factory.mktemp("corpus")
    for name, ids in DOCS.items():
        with gzip.open(dev_corpus / name, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        kept = [dict(row, text=row["text"][:40_000]) for row in rows if row["id"] in ids]
        assert len(kept) == len(ids)
        (folder / name.replace(".gz", "")).write_text("".join(json.dumps(r) + "\n" for r in kept))
    return folder


@pytest.fixture(scope="module")
def config(corpus, tokenizer_path) -> GenerateConfig:
    return load_config(None, {
        "name": "small",
        "corpus": [str(corpus)],
        "num_shards": 2,
        "corpus_config.tokenizer": str(tokenizer_path),
        "corpus_config.chunk_tokens": 1500,
    })


@pytest.fixture(scope="module")
def first_run(config, tmp_path_factory):
    return run_generation(config, tmp_path_factory.mktemp("data-a"))


def shard_digests(manifest: dict) -> dict[str, str]:
    return {s["file"]: s["sha256"] for s in manifest["shards"]}


def test_two_runs_give_the_same_version_and_identical_shards(config, first_run, tmp_path):
    second = run_generation(config, tmp_path)
    assert second.version == first_run.version
    assert shard_digests(second.manifest) == shard_digests(first_run.manifest)
    assert len(shard_digests(first_run.manifest)) == 8  # examples, chunks, links, documents x 2 shards


def test_a_killed_run_resumes_to_the_same_bytes(config, first_run, tmp_path):
    plan = plan_generation(config, tmp_path)
    generate_shard(plan, 0)
    staging = tmp_path / "datasets" / "small" / ".partial" / plan.version
    finished = staging / "data" / "train-00000-of-00002.parquet"
    finished_mtime = finished.stat().st_mtime_ns
    # The kill: shard 1 was half written (a temporary file) and its statistics never saved.
    (staging / "links").mkdir(exist_ok=True)
    (staging / "links" / ".links-00001-of-00002.parquet.tmp").write_bytes(b"PAR1 half a shard")
    resumed = run_generation(config, tmp_path)
    assert shard_digests(resumed.manifest) == shard_digests(first_run.manifest)
    assert (resumed.path / "data" / finished.name).stat().st_mtime_ns == finished_mtime  # not rewritten


def test_a_second_run_of_a_held_version_is_refused_while_the_holder_generates_and_publishes(config, first_run, tmp_path):
    from linkscan.pipeline.store import DatasetLockedError

    plan = plan_generation(config, tmp_path)
    with holding_version(plan) as writer:
        with pytest.raises(DatasetLockedError, match=f"version {plan.version} is being written by another process"):
            with holding_version(plan_generation(config, tmp_path)):
                pass
        for index in range(plan.num_shards):  # shard workers write under the holder's lock
            generate_shard(plan, index)
        path = publish_generation(plan, writer)
    assert shard_digests(open_dataset(path).manifest) == shard_digests(first_run.manifest)


def test_publishing_with_a_shard_missing_is_refused(config, tmp_path):
    plan = plan_generation(config, tmp_path)
    generate_shard(plan, 1)
    with pytest.raises(GenerationError, match=r"shard\(s\) \[0\] not generated"):
        publish_generation(plan)


def test_a_published_version_is_reused(config, first_run):
    again = run_generation(config, first_run.path.parent.parent.parent)
    assert (again.version, again.newly_published) == (first_run.version, False)


def test_a_new_seed_is_a_new_version(config, first_run, tmp_path):
    plan = plan_generation(config.model_copy(update={"seed": 1}), tmp_path)
    assert plan.version != first_run.version


def test_every_example_is_a_long_link_with_evidence_on_both_sides(first_run):
    dataset = open_dataset(first_run.path)
    rows = dataset.read_table("examples").to_pylist()
    assert len(rows) >= 5
    questions_per_chunk: dict[str, set] = {}
    for row in rows:
        assert row["method"] == "link" and row["link_distance"] >= 10
        anchor_side = set(range(row["anchor"][0] - 2, row["anchor"][-1] + 3))
        link_side = set(range(row["link_target"] - 3, row["link_target"] + 4))
        assert set(row["positives"]) & anchor_side and set(row["positives"]) & link_side
        assert row["question"].strip()
        questions_per_chunk.setdefault(row["chunk_id"], set()).add(row["question"])
    assert all(len(q) == 1 for q in questions_per_chunk.values())  # one example per chunk
    assert len({r["chunk_id"] for r in rows}) == len(rows)


def test_documents_artifact_keeps_each_document_with_its_language_score(first_run):
    documents = open_dataset(first_run.path).read_table("documents").to_pylist()
    assert len(documents) == first_run.manifest["counts"]["documents"] == 3
    assert all(d["lang"] == "en" and 0.5 <= d["lang_score"] <= 1.0 for d in documents)
    chunks = open_dataset(first_run.path).read_table("chunks").to_pylist()
    for document in documents:  # the document's units, in chunk order, are its cleaned text
        own = sorted((c for c in chunks if c["doc_id"] == document["doc_id"]), key=lambda c: c["chunk_index"])
        assert "".join(u for c in own for u in c["sentences"]) == document["text"]
        assert document["n_chars"] == len(document["text"])


def test_offline_questions_pass_the_self_contained_check_llm_questions_must_pass(first_run):
    from linkscan.generators.llm.parsing import _NOT_SELF_CONTAINED

    questions = open_dataset(first_run.path).read_table("examples").column("question").to_pylist()
    assert len(questions) >= 10
    assert [q for q in questions if _NOT_SELF_CONTAINED.search(q) or "n't " in q] == []


def test_manifest_holds_counts_drops_diagnostics_and_the_resolved_config(config, first_run):
    manifest = first_run.manifest
    counts = manifest["counts"]
    assert counts["documents"] == 3
    assert counts["examples"] == open_dataset(first_run.path).num_rows("examples")
    # Every chunk gave an example or was counted under a reason.
    without_example = {k: v for k, v in manifest["drop_reasons"].items() if k.startswith("no_example:")}
    assert counts["chunks"] - counts["examples"] == sum(without_example.values()) > 0
    graph = manifest["diagnostics"]["link_graph"]
    assert graph["edges"] == counts["links"] > 0
    assert graph["edges_per_unit"] == round(graph["edges"] / graph["units"], 4)
    assert 0 < graph["share_of_anchors_without_usable_link"] < 1
    assert graph["documents_without_links"] == 0  # every small test document has some rare shared terms
    assert sum(graph["distance_histogram"].values()) == graph["edges"]
    assert manifest["config"] == config.model_dump(mode="json")
    assert manifest["generator"] == "offline" and manifest["method"] == "link"
    assert manifest["labels"]["min_link_distance"] >= 10


def test_links_artifact_rows_are_the_graph_edges(first_run):
    links = open_dataset(first_run.path).read_table("links").to_pylist()
    assert len(links) == first_run.manifest["counts"]["links"]
    assert all(link["finder"] == "offline" and link["reason"].startswith("shares rare terms") for link in links)
    assert len({(l["chunk_id"], min(l["src"], l["dst"]), max(l["src"], l["dst"])) for l in links}) == len(links)


def test_card_reports_counts_and_how_to_load(first_run):
    card = (first_run.path / "README.md").read_text()
    examples = first_run.manifest["counts"]["examples"]
    assert f"| examples | {examples:,} |" in card
    for needle in ("## Dropped, by reason", "## Labels", "## Link graph", "## Sources", "duckdb", "polars",
                   "load_dataset", "'data/train-*.parquet'", f"small/{first_run.version}/"):
        assert needle in card


def test_pair_method_through_the_stage(config, tmp_path):
    result = run_generation(config.model_copy(update={"method": "pair", "num_shards": 1}), tmp_path)
    rows = open_dataset(result.path).read_table("examples", columns=["method", "link_target"]).to_pylist()
    assert rows and all(r["method"] == "pair" and r["link_target"] is None for r in rows)


def test_no_corpus_is_an_error_that_says_what_to_pass(tmp_path):
    with pytest.raises(GenerationError, match="--corpus"):
        plan_generation(GenerateConfig(name="empty"), tmp_path)


def test_config_file_is_read_and_options_override_it(tmp_path):
    path = tmp_path / "generate.yaml"
    path.write_text("name: books\nseed: 3\nmethod: chunk\ncorpus_config:\n  chunk_tokens: 5000\nlink:\n  anchor_units: 4\n")
    config = load_config(path, {"seed": 7, "corpus_config.chunk_tokens": None, "method": None})
    assert (config.name, config.seed, config.method) == ("books", 7, "chunk")
    assert config.corpus_config.chunk_tokens == 5000 and config.link.anchor_units == 4


def test_config_errors_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("link:\n  anchor_unitz: 4\n")
    with pytest.raises(ConfigFileError, match=r"bad\.yaml: link\.anchor_unitz: Extra inputs"):
        load_config(path)


def test_version_ignores_throughput_settings_only():
    base = GenerateConfig(name="x", corpus=["a"])
    assert version_config(base) == version_config(base.model_copy(update={"concurrency": 64, "corpus": ["b"]}))
    assert version_config(base) != version_config(base.model_copy(update={"seed": 1}))


def test_the_source_fingerprint_follows_every_byte_of_the_code(tmp_path):
    from linkscan.pipeline.store import source_fingerprint

    package = tmp_path / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("RULE = 1\n")
    (package / "sub" / "b.py").write_text("x = 2\n")
    reference = source_fingerprint([package])
    (package / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"compiled")
    (package / "notes.txt").write_text("not code")
    assert source_fingerprint([package]) == reference  # only the sources count
    (package / "a.py").write_text("RULE = 2\n")
    assert source_fingerprint([package]) != reference
    (package / "a.py").write_text("RULE = 1\n")
    (package / "sub" / "b.py").rename(package / "b.py")  # the same bytes in another module
    assert source_fingerprint([package]) != reference


def test_other_generating_code_is_another_version_and_repair_names_the_code_that_made_it(
        first_run, config, monkeypatch, tmp_path_factory):
    import shutil

    from linkscan.pipeline import store

    code = first_run.manifest["code_version"]
    assert code["code_fingerprint"] == store.code_fingerprint()
    assert code["code_fingerprint"] == store.source_fingerprint(
        [Path(store.__file__).resolve().parent.parent / name for name in store.OUTPUT_PACKAGES])[:16]
    data_root = first_run.path.parent.parent.parent
    assert plan_generation(config, data_root).already_published == str(first_run.path)

    monkeypatch.setattr(store, "code_fingerprint", lambda: "0" * 16)  # new validators, say
    plan = plan_generation(config, data_root)
    assert plan.version != first_run.version and plan.already_published is None
    with pytest.raises(GenerationError, match=rf"small version {first_run.version} has these inputs and settings but "
                                              rf"was made by other code \(linkscan 0\.1\.0, commit "):
        repair_version(config, data_root)
    monkeypatch.undo()

    # A version made before versions named their code: its id has no code field, its manifest no fingerprint.
    from linkscan.generators.stage import _made_by_other_code
    from linkscan.pipeline.corpus import content_key

    old_id = store.version_id(version_config(config, code=""), content_key(plan.fingerprints))
    old_root = tmp_path_factory.mktemp("data-old")
    old = old_root / "datasets" / "small" / old_id
    shutil.copytree(first_run.path, old)
    manifest = json.loads((old / "dataset.json").read_text())
    manifest["version"], manifest["code_version"] = old_id, {"linkscan": "0.1.0", "git_commit": "5454302"}
    (old / "dataset.json").write_text(json.dumps(manifest))
    assert _made_by_other_code(plan_generation(config, old_root)) == (old_id, manifest["code_version"])
    with pytest.raises(GenerationError, match=rf"small version {old_id} .* made by other code \(linkscan 0\.1\.0, commit 5454302\)"):
        repair_version(config, old_root)


def test_the_version_follows_content_not_how_paths_are_written(config, corpus, tokenizer_path, tmp_path, monkeypatch):
    import os
    import shutil

    reference = plan_generation(config, tmp_path).version
    copy = shutil.copytree(corpus, tmp_path / "elsewhere" / "corpus")
    tokenizer_copy = tmp_path / "tok" / "tokenizer.json"
    tokenizer_copy.parent.mkdir()
    shutil.copy(tokenizer_path, tokenizer_copy)
    monkeypatch.chdir(tmp_path)
    for corpus_path, tokenizer in [(os.path.relpath(corpus, tmp_path), str(tokenizer_path)),  # relative
                                   (str(copy), str(tokenizer_copy.parent)),  # a copy; the tokenizer's folder
                                   (f"{copy}/*.jsonl", "tok/tokenizer.json")]:  # a glob; a relative tokenizer
        moved = config.model_copy(update={"corpus": [corpus_path], "corpus_config": config.corpus_config.model_copy(
            update={"tokenizer": tokenizer})})
        assert plan_generation(moved, tmp_path).version == reference, (corpus_path, tokenizer)
    edited = next(copy.glob("*.jsonl"))
    edited.write_text(edited.read_text().replace("the", "thee", 1))
    assert plan_generation(config.model_copy(update={"corpus": [str(copy)]}), tmp_path).version != reference


def test_card_loading_code_runs_in_the_version_folder(first_run, monkeypatch):
    card = (first_run.path / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(first_run.path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    examples = first_run.manifest["counts"]["examples"]
    assert namespace["table"].num_rows == namespace["frame"].height == len(namespace["dataset"]) == examples


def test_example_config_file_loads_with_the_papers_defaults():
    config = load_config(Path(__file__).resolve().parent.parent / "generators" / "configs" / "example.yaml")
    assert (config.name, config.method, config.generator) == ("dev-link", "link", "offline")
    assert config.link == GenerateConfig().link  # the file repeats the defaults, which are the paper's


def test_a_corpus_without_links_publishes_nothing_and_says_why(config, tmp_path):
    strict = config.model_copy(update={"offline": config.offline.model_copy(update={"min_link_score": 1e9})})
    with pytest.raises(EmptyDatasetError, match=r"none of the (\d+) chunks of 3 documents gave one \(no_usable_link: \1\)"):
        run_generation(strict, tmp_path)
    assert list((tmp_path / "datasets" / "small").glob("*/dataset.json")) == []


def test_corpus_stage_drops_reach_the_manifest_by_reason(dev_corpus, tokenizer_path, tmp_path):
    from tests.generators_data import dev_document_text

    court = dev_document_text(dev_corpus, "scotus-2009-berghuis-v-thompkins", 30_000)
    french = ("La cour suprême a examiné la question de savoir si le suspect avait renoncé à son droit de "
              "garder le silence. Les juges ont longuement débattu des circonstances de l'interrogatoire, "
              "qui avait duré près de trois heures sans que le suspect ne réponde. ") * 8
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(
        json.dumps({"id": "court", "text": court}) + "\n"
        + json.dumps({"id": "copy", "text": court}) + "\n"  # the same text again
        + json.dumps({"id": "fr", "text": french}) + "\n"
        + "{broken\n"
        + json.dumps({"id": "short", "text": "Too short to keep."}) + "\n"
    )
    config = load_config(None, {"name": "drops", "corpus": [str(corpus)],
                                "corpus_config.tokenizer": str(tokenizer_path), "corpus_config.chunk_tokens": 1500})
    manifest = run_generation(config, tmp_path / "data").manifest
    drops = manifest["drop_reasons"]
    assert {k: drops.get(k) for k in ("duplicate", "not_english", "malformed_line", "too_short")} == {
        "duplicate": 1, "not_english": 1, "malformed_line": 1, "too_short": 1}
    assert manifest["counts"]["documents"] == 1
