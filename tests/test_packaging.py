"""One import name: the top-level folders install as subpackages of ``linkscan`` (issue 17, item 7).

The folders stay where they are in the repository; ``pyproject.toml`` maps each to
``linkscan.<folder>``. A module imported under its bare folder name as well would be a second copy
of it (its own globals, its own exception classes), so no code may use the bare names."""
import ast
import json
import os
import re
import subprocess
import sys
import tomllib

import pytest

import linkscan

from tests.conftest import REPO

OLD_NAMES = set(linkscan.SUBPACKAGES)
_NAMES = "|".join(sorted(OLD_NAMES))
# Module names inside strings: code run by `python -c` (`from pipeline import x`, `import flows.cli`),
# `-m flows.cli`, and a string that is a module path (`"pipeline.store.f"` as a monkeypatch target,
# `import_module("flows.cli")`, the `"flows.cli"` after "-m").
STRING_REFERENCES = [
    re.compile(rf"(?:^|[\s;\"'(])(?:from|import)\s+({_NAMES})\b", re.M),
    re.compile(rf"-m\s+({_NAMES})\."),
    re.compile(rf"^\s*({_NAMES})(?:\.\w+)+(?::\w+)?\s*$"),
]


# The one deliberate bare name: bench_big_document's --before side runs a tree from before the rename.
BEFORE_THE_RENAME = [("benchmarks/bench_big_document.py", "flows")]


def tracked_python_files() -> list:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split()]


def test_every_package_folder_is_mapped_under_linkscan():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = sorted(
        ".".join(init.parent.relative_to(REPO).parts)
        for name in linkscan.SUBPACKAGES for init in (REPO / name).rglob("__init__.py")
    )
    assert sorted(setuptools["packages"]) == sorted(["linkscan", *(f"linkscan.{folder}" for folder in folders)])
    assert setuptools["package-dir"] == {"linkscan": "linkscan", **{f"linkscan.{name}": name for name in linkscan.SUBPACKAGES}}
    assert sorted(linkscan.SUBPACKAGES) == sorted(folder for folder in folders if "." not in folder)


def test_no_code_imports_a_folder_by_its_bare_name():
    offenders = []
    for path in tracked_python_files():
        source = path.read_text()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [match for pattern in STRING_REFERENCES for match in pattern.findall(node.value)]
            else:
                continue
            offenders += [(path.relative_to(REPO).as_posix(), node.lineno, name)
                          for name in names if name.split(".")[0] in OLD_NAMES]
    assert [(path, name) for path, _, name in offenders] == BEFORE_THE_RENAME, offenders


@pytest.mark.integration
def test_the_installed_package_imports_without_the_checkout_on_the_path(tmp_path):
    """A fresh interpreter outside the checkout (``-I``: no PYTHONPATH, no current folder) imports
    every module of the package by its linkscan name, and no bare folder name appears: a module that
    imported one would fail here, where the checkout is not on the path. (What a wheel holds is
    the next test's.)"""
    modules = sorted(
        f"linkscan.{'.'.join(path.relative_to(REPO).with_suffix('').parts)}".removesuffix(".__init__")
        for name in linkscan.SUBPACKAGES for path in (REPO / name).rglob("*.py")
    )
    code = """
import importlib, json, sys
failed = []
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ImportError as error:  # an optional extra (mamba_ssm, llama_cpp) is fine, our names are not
        if error.name is None or error.name.split(".")[0] in importlib.import_module("linkscan").SUBPACKAGES + ("linkscan",):
            failed.append(f"{name}: {error}")
print(json.dumps({
    "imported": sorted(name for name in sys.modules if name.startswith("linkscan.")),
    "failed": failed,
    "bare": sorted(name for name in sys.modules if name.split(".")[0] in importlib.import_module("linkscan").SUBPACKAGES),
}))
"""
    done = subprocess.run([sys.executable, "-I", "-c", code, json.dumps(modules)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["failed"] == [] and result["bare"] == []
    assert len(modules) >= 70 and set(modules) <= set(result["imported"]), sorted(set(modules) - set(result["imported"]))


@pytest.mark.integration
def test_python_dash_m_linkscan_is_the_command(tmp_path):
    done = subprocess.run([sys.executable, "-I", "-m", "linkscan", "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    from linkscan.pipeline.store import code_fingerprint

    assert done.stdout.startswith("linkscan 0.1.0 (") and f"code {code_fingerprint()})" in done.stdout


@pytest.mark.integration
def test_the_wheel_holds_every_module_under_linkscan_and_imports_from_itself(tmp_path):
    """A wheel built from the tracked files: each folder's modules under ``linkscan/<folder>/``, the
    package data, the console script; unpacked elsewhere, it imports from itself alone."""
    import shutil
    import zipfile

    source = tmp_path / "source"
    for name in subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("linkscan-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        archive.extractall(tmp_path / "site")
    tracked = {f"linkscan/{path.relative_to(source).as_posix()}"
               for name in linkscan.SUBPACKAGES for path in (source / name).rglob("*") if path.suffix in {".py", ".yaml"}}
    assert tracked | {"linkscan/__init__.py", "linkscan/__main__.py"} == {n for n in names if not n.startswith("linkscan-")}
    assert "linkscan = linkscan.flows.cli:main" in entry_points
    code = "import sys; sys.path.insert(0, sys.argv[1]); import linkscan.pipeline.layout as m; print(m.__file__)"
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(tmp_path / "site" / "linkscan" / "pipeline" / "layout.py")
