"""Loading and saving scanner weights, strictly, and full training checkpoints for exact resume.

Accepted sources (a hub id or a local folder holding ``config.json`` plus ``model.safetensors``,
``pytorch_model.bin`` or ``model.bin``):

- ``state-spaces/mamba2-*``: ``backbone.*`` and ``lm_head.weight``; the head starts fresh.
- the paper's checkpoints (``MambaRetriever/SPScanner-130m``, ``-1.3b``): ``backbone.*``,
  ``lm_head.*`` and ``binary_head.*``.
- this project's checkpoints: ``backbone.*`` and ``binary_head.*``.

Loading is strict: the language-model head is the only thing that may be unused, and the binary
head the only thing that may be missing (only when ``require_head`` is false: a base model about to
be trained). Any other missing or unexpected key is an error naming the keys (the paper's loader
used ``strict=False`` and could silently keep a random head).

A training checkpoint is a folder ``<run>/checkpoints/step-00001000/`` with ``config.json``,
``model.safetensors``, ``optimizer.pt`` (optimizer + scheduler state) and ``trainer_state.json``
(step, data position, metrics); ``<run>/checkpoints/LATEST`` names the newest.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from linkscan.pipeline.layout import atomic_write, naming_file

from linkscan.training.configs import MambaShape
from linkscan.training.model import ScannerModel, default_backend, to_backend

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.bin")
LATEST = "LATEST"


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match the model."""


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A local folder with config.json and weights: the path itself, a run's latest checkpoint, or a hub download."""
    path = Path(name_or_path)
    if path.exists():
        if (path / "checkpoints" / LATEST).is_file():
            path = path / "checkpoints"
        if (path / LATEST).is_file():
            path = path / (path / LATEST).read_text().strip()
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json; expected a checkpoint folder (config.json + weights) or a run folder")
        return path
    if str(name_or_path).count("/") != 1:
        raise CheckpointError(f"{name_or_path}: no such folder, and not a hub id of the form owner/name")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=["config.json", *WEIGHT_FILES]))
    except Exception as error:  # the hub client raises many types; all mean "not available here"
        raise CheckpointError(
            f"{name_or_path}: could not download from the Hugging Face hub ({type(error).__name__}: {error}); "
            "download it elsewhere and pass the local folder"
        ) from None


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path))
            state = torch.load(path, map_location="cpu", weights_only=True)
            return state.get("state_dict", state) if isinstance(state, dict) else state
    raise CheckpointError(f"{folder}: no weights file ({', '.join(WEIGHT_FILES)})")


def read_shape(folder: Path) -> MambaShape:
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_path}: unreadable ({error})") from None
    try:
        return MambaShape.from_hub_config(config, source=str(config_path))
    except KeyError as error:
        raise CheckpointError(f"{config_path}: missing field {error}") from None


def load_state_dict_strict(model: ScannerModel, state: dict[str, torch.Tensor], source: str,
                           require_head: bool = True) -> list[str]:
    """Copy canonical (or transformers-named) weights into ``model``; returns the keys ignored (the LM head)."""
    expected = model.canonical_state_dict()
    found: dict[str, torch.Tensor] = {}
    ignored, unexpected = [], []
    for key, value in state.items():
        canonical = key.replace("backbone.embeddings.", "backbone.embedding.", 1)
        if canonical.startswith("lm_head."):
            ignored.append(key)
        elif canonical in expected:
            found[canonical] = value
        else:
            unexpected.append(key)
    missing = [k for k in expected if k not in found]
    head_keys = [k for k in expected if k.startswith("binary_head.")]
    if not require_head and set(missing) == set(head_keys):
        missing = []  # a base language model: the head starts from its initialisation
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match a Mamba-2 scanner of this shape: "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
            + (" (this is a base language model without a binary_head; train it first)"
               if set(missing) == set(head_keys) and not unexpected else "")
        )
    for key, value in found.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}")
    backbone = {to_backend(k[len("backbone."):], model.backend): v for k, v in found.items() if k.startswith("backbone.")}
    model.backbone.load_state_dict(backbone, strict=True)
    head = {k[len("binary_head."):]: v for k, v in found.items() if k.startswith("binary_head.")}
    if head:
        model.binary_head.load_state_dict(head, strict=True)
    return ignored


def load_model(name_or_path: str | Path, *, backend: str | None = None, device: str = "cpu",
               dtype: torch.dtype | None = None, require_head: bool = True) -> ScannerModel:
    """A ScannerModel from a hub id, a checkpoint folder or a run folder (its latest checkpoint)."""
    folder = resolve_checkpoint(name_or_path)
    shape = read_shape(folder)
    backend = backend or default_backend(device)
    model = ScannerModel(shape, backend=backend, device=device)
    load_state_dict_strict(model, read_weights(folder), str(folder), require_head=require_head)
    if dtype is not None:
        model.to(dtype)
    return model.eval()


def save_weights(model: ScannerModel, folder: Path) -> None:
    """``config.json`` + ``model.safetensors`` (canonical names, fp32 or the model's dtype)."""
    from safetensors.torch import save_file

    from safetensors import SafetensorError

    folder.mkdir(parents=True, exist_ok=True)
    with naming_file(folder / "config.json"):
        (folder / "config.json").write_text(json.dumps(model.shape.to_hub_config(), indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.canonical_state_dict().items()}
    weights = folder / "model.safetensors"
    try:
        save_file(state, str(weights), metadata={"format": "pt", "linkscan": "scanner"})
    except SafetensorError as error:  # its I/O errors are no OSError: "... (os error 28)"
        code = re.search(r"os error (\d+)", str(error))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(weights)) from None


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


def save_checkpoint(run_dir: Path, step: int, model: ScannerModel, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, trainer_state: dict,
                    training_modules: dict[str, torch.nn.Module] | None = None) -> Path:
    """Write a full checkpoint atomically (temporary folder, then rename) and point LATEST at it.

    ``training_modules`` (training-only heads, never part of the exported scanner) go into
    ``optimizer.pt`` beside the optimizer state, so a resumed run continues with them."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_weights(model, tmp)
        modules = {name: module.state_dict() for name, module in (training_modules or {}).items()}
        _torch_save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "modules": modules},
                    tmp / "optimizer.pt")
        with naming_file(tmp / "trainer_state.json"):
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
    except BaseException:  # a full disk, a signal: no half checkpoint is left beside the complete ones
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write(final.parent / LATEST, final.name + "\n")
    return final


class _WriteErrors:
    """A binary file that keeps what interrupted a write: torch.save turns any exception raised in
    ``write`` (a full disk's OSError, the KeyboardInterrupt of a SIGINT or SIGTERM arriving meanwhile)
    into ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, naming neither the
    file nor the cause."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: BaseException | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except BaseException as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _torch_save(value: object, path: Path) -> None:
    """``torch.save``, where a failed write is an OSError naming ``path`` and an interrupt stays one."""
    with naming_file(path), open(path, "wb") as handle:
        recorded = _WriteErrors(handle)
        try:
            torch.save(value, recorded)
        except RuntimeError:
            if recorded.error is None:
                raise
            raise recorded.error from None


def latest_checkpoint(run_dir: Path) -> Path | None:
    latest = run_dir / "checkpoints" / LATEST
    if not latest.is_file():
        return None
    path = latest.parent / latest.read_text().strip()
    return path if path.is_dir() else None


def metrics_rows(run_dir: Path) -> list[dict]:
    """The rows of ``<run>/metrics.jsonl`` (none when the run logged nothing yet). A line that is not
    a JSON object (the torn last line of a run killed while writing it) is left out."""
    path = run_dir / "metrics.jsonl"
    rows = []
    for line in path.read_text(errors="replace").splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def drop_metrics_after(run_dir: Path, step: int | None) -> None:
    """Before a resume: drop the rows of ``metrics.jsonl`` that a killed run logged after ``step``,
    its last checkpoint (every row when it left none), since the resumed run logs those steps again."""
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        kept = [row for row in metrics_rows(run_dir) if step is not None and row["step"] <= step]
        atomic_write(path, "".join(json.dumps(row) + "\n" for row in kept))


def load_training_state(folder: Path, model: ScannerModel, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler,
                        training_modules: dict[str, torch.nn.Module] | None = None) -> dict:
    """Restore weights, optimizer, scheduler (and training-only modules) from a checkpoint; returns its trainer_state."""
    load_state_dict_strict(model, read_weights(folder), str(folder), require_head=True)
    states = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    for name, module in (training_modules or {}).items():
        if name not in states.get("modules", {}):
            raise CheckpointError(f"{folder}/optimizer.pt: no state for the training module {name!r} "
                                  "(written by a run with other settings; resume with the same ones)")
        module.load_state_dict(states["modules"][name])
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    return json.loads((folder / "trainer_state.json").read_text())
