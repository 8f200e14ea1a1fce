"""Shared fixtures: paths to the shared material and a Prefect set-up that needs no network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Prefect reads these at import time; tests must never reach the network.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED}: the shared material must sit beside the checkout (../shared)")
    return SHARED


@pytest.fixture(scope="session")
def tokenizer_path(shared_dir: Path) -> Path:
    return shared_dir / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"


@pytest.fixture(scope="session")
def dev_corpus(shared_dir: Path) -> Path:
    return shared_dir / "corpora" / "dev"


@pytest.fixture(scope="session")
def dev_evalsets(shared_dir: Path) -> Path:
    return shared_dir / "evalsets" / "dev"


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path: Path):
    """The GPT-NeoX tokenizer of the Mamba-2 checkpoints (the offline copy in ../shared)."""
    from linkscan.pipeline.tokenize import load_tokenizer

    return load_tokenizer(str(tokenizer_path))


@pytest.fixture(scope="module")
def tiny():
    """A randomly initialised scanner of the small shape (CPU, eval mode), seeded."""
    import torch

    from linkscan.training.configs import model_shape
    from linkscan.training.model import ScannerModel

    torch.manual_seed(0)
    return ScannerModel(model_shape("small")).eval()


@pytest.fixture()
def small_tmpfs(tmp_path):
    """``small_tmpfs("160k")``: a folder on a tmpfs of that size, for real full-disk failures (mounting
    needs root, as CI has; skipped elsewhere); unmounted after the test."""
    import subprocess

    mounts = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk-{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()})")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)
