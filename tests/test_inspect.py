"""`linkscan inspect` on a store made here: JSON statistics and the rendered examples."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from linkscan.pipeline.inspect import render_example
from tests.store_data import publish, publish_partial
import pytest

pytestmark = pytest.mark.integration  # servers, subprocesses or whole runs: not in make test-fast

LINKSCAN = [sys.executable, "-m", "linkscan.flows.cli"]
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LINKSCAN, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_inspect_json_reports_counts_labels_and_samples(tmp_path):
    path = publish(tmp_path)
    result = run_cli("inspect", "demo", "--data", str(tmp_path), "--json", "--sample", "2", "--verify")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["name"] == "demo" and stats["version"] == path.name
    assert stats["versions"] == [path.name]
    assert stats["rows"] == {"examples": 12, "chunks": 0, "links": 0, "documents": 0}
    assert stats["counts"] == {"examples": 12}
    labels = stats["labels"]
    assert labels["examples"] == 12
    assert labels["positives_per_example"] == {"count": 12, "min": 3, "median": 3, "mean": 3.0, "max": 3}
    assert labels["units_per_example"]["min"] == 30
    # link distances per shard are 18, 19, 20, 21, 22, 18: three below 20, three from 20 up
    assert labels["link_distance_histogram"] == {"10-19": 6, "20-49": 6}
    assert [s["example_id"] for s in stats["samples"]] == ["ex-0-0", "ex-0-1"]
    assert stats["verified"] == {"shards": 2, "sha256": "ok", "rows_checked": 12}


def test_inspect_path_prints_the_latest_version_folder(tmp_path):
    path = publish(tmp_path)
    result = run_cli("inspect", "demo", "--data", str(tmp_path), "--path")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}\n"


def test_inspect_renders_questions_and_marks_positives(tmp_path):
    publish(tmp_path)
    result = run_cli("inspect", str(tmp_path / "datasets" / "demo"), "--sample", "1")
    assert result.returncode == 0, result.stderr
    assert "Q: What does the tutorial say in passage 0?" in result.stdout
    assert ">>    1  " in result.stdout and ">>   20  " in result.stdout


def test_inspect_names_a_missing_dataset_and_the_ones_there_are(tmp_path):
    publish(tmp_path)
    result = run_cli("inspect", "nothing-here", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "nothing-here: not a dataset version folder" in result.stderr
    assert result.stderr.strip().endswith("(datasets there: demo)")


def test_inspect_of_a_partial_version_by_its_folder_says_it_is_partial(tmp_path):
    complete = publish(tmp_path)
    partial = publish_partial(tmp_path)
    shown = run_cli("inspect", str(partial), "--json", "--sample", "0")
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)
    assert (stats["version"], stats["complete"], stats["pending_chunks"]) == (partial.name, False, {"server_error": 3})
    assert stats["latest"] == complete.name and stats["versions"] == sorted([complete.name, partial.name])
    assert "PARTIAL" in shown.stderr  # said on stderr too, so a --json reader that pipes stdout still sees it
    table = run_cli("inspect", str(partial), "--sample", "0")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1] == (
        "PARTIAL VERSION (complete: false): 3 chunks were still pending when it was published with --allow-partial "
        f"(server_error: 3); training refuses it without --allow-partial, and LATEST names the complete {complete.name}")
    listed = sorted([f"{complete.name} (LATEST)", f"{partial.name} (partial)"])
    assert f"versions: {', '.join(listed)}" in table.stdout
    assert json.loads(run_cli("inspect", "demo", "--data", str(tmp_path), "--json", "--sample", "0").stdout)["complete"] is True


def test_inspect_of_a_dataset_whose_latest_was_deleted_names_its_versions(tmp_path):
    path = publish(tmp_path)
    (path.parent / "LATEST").unlink()
    result = run_cli("inspect", "demo", "--data", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path.parent / 'LATEST'}: missing (published: {path.name}); rerun")


def test_render_elides_units_far_from_positives():
    row = {
        "example_id": "e", "method": "link", "question": "Why?", "link_distance": 12,
        "positives": [2, 14], "sentences": [f"Unit number {i}." for i in range(20)],
    }
    lines = render_example(row, context=1).splitlines()
    assert lines[:2] == ["[link] e  link distance 12 units", "Q: Why?"]
    assert lines[3] == "       ... 1 units ..."
    assert lines[5] == ">>    2  Unit number 2."
    assert lines[-1] == "       ... 4 units ..."
    whole = render_example(row, context=len(row["sentences"])).splitlines()[3:]  # what --full shows
    assert len(whole) == 20 and "..." not in "\n".join(whole) and whole[14] == ">>   14  Unit number 14."
