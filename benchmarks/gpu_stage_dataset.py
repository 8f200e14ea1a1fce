"""Copy the examples shards of a dataset version into ``.gpu/`` for a device call (< 64 MiB carried).

Training reads only the ``examples`` artifact; the chunks, links and documents of a version would
not fit one call's transfer beside the mamba_ssm bundle. The copy keeps the shards byte for byte
and a manifest listing only them (so the loader's size and sha256 checks still pass), under
``.gpu/data/datasets/<name>/<version>/``.

    .venv/bin/python benchmarks/gpu_stage_dataset.py /tmp/gpu-data/datasets/dev/9064b13059af
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def stage(version: Path, out: Path) -> Path:
    manifest = json.loads((version / "dataset.json").read_text())
    target = out / "datasets" / version.parent.name / version.name
    shutil.rmtree(target, ignore_errors=True)
    (target / "data").mkdir(parents=True)
    kept = [shard for shard in manifest["shards"] if shard["artifact"] == "examples"]
    for shard in kept:
        shutil.copy2(version / shard["file"], target / shard["file"])
    manifest["shards"] = kept
    manifest["staged_from"] = str(version)
    (target / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / ".gpu" / "data")
    args = parser.parse_args()
    target = stage(args.version, args.out)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
