"""Prepare what the GPU machine needs, in one ignored folder that a device call carries (< 64 MiB).

    .venv/bin/python benchmarks/gpu_prepare.py            # writes .gpu/ (ignored by git)

It writes:

- ``.gpu/mamba_bundle.tar.xz``: the two sm_90 wheels of ``../shared/gpu`` (causal-conv1d and
  mamba-ssm) unpacked into one tree, without mamba-ssm's 47 MB Mamba-1 ``selective_scan_cuda``
  extension (Mamba-2 never calls it), which is replaced by a stub that fails clearly if imported.
  This fits one call's transfer limit, so a single call can install and run.
- ``.gpu/whl/``: pydantic and its dependencies for Python 3.12 (the GPU machine lacks them;
  ``linkscan.training.configs`` uses pydantic).

Training data for the GPU tests and benchmarks is a version ``linkscan generate`` made from the dev
corpus, staged beside the bundle by ``benchmarks/gpu_stage_dataset.py <version folder>`` (into
``.gpu/data``, examples shards only).

On the GPU machine (one call, ``carry=[".gpu"]``)::

    mkdir -p /tmp/site && tar -xJf .gpu/mamba_bundle.tar.xz -C /tmp/site \\
      && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl \\
      && export PYTHONPATH=/tmp/site:$PWD \\
      && LINKSCAN_LINK_DATASET=$(ls -d $PWD/.gpu/data/datasets/dev/*/) python3 -m pytest -m gpu -p no:cacheprovider \\
           tests/test_scanning_gpu.py tests/test_training_gpu.py
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_GPU = REPO.parent / "shared" / "gpu"
STUB = '''"""Stand-in for mamba_ssm's Mamba-1 selective-scan CUDA extension, left out of the carried bundle
(its 47 MB would not fit the transfer limit). linkscan uses only Mamba-2 kernels (Triton + causal_conv1d)."""


def __getattr__(name):
    raise ImportError(f"selective_scan_cuda.{name}: the Mamba-1 kernels are not installed in this bundle")
'''
# The pydantic stack for CPython 3.12 on x86_64 manylinux, as used on the GPU machine.
PYDANTIC_WHEELS = [
    "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0",
    "typing-extensions==4.16.0", "typing-inspection==0.4.5",
]


def build_bundle(out: Path) -> Path:
    wheels = sorted(SHARED_GPU.glob("wheels-*/*.whl"))
    if len(wheels) != 2:
        sys.exit(f"{SHARED_GPU}: expected the causal-conv1d and mamba-ssm wheels, found {len(wheels)}")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(tree)
        for extension in tree.glob("selective_scan_cuda*.so"):
            extension.unlink()
        (tree / "selective_scan_cuda.py").write_text(STUB)
        target = out / "mamba_bundle.tar.xz"
        with tarfile.open(target, "w:xz") as bundle:
            bundle.add(tree, arcname=".")
    return target


def download_pydantic(out: Path) -> Path:
    folder = out / "whl"
    folder.mkdir(parents=True, exist_ok=True)
    platforms = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(folder)]
    for platform in platforms:
        command += ["--platform", platform]
    subprocess.run(command + PYDANTIC_WHEELS, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".gpu")
    parser.add_argument("--skip", nargs="*", default=[], choices=["bundle", "wheels"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if "bundle" not in args.skip:
        print("bundle", build_bundle(args.out))
    if "wheels" not in args.skip:
        print("wheels", download_pydantic(args.out))
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {total / 2**20:.1f} MiB (one device call carries at most 64 MiB)")


if __name__ == "__main__":
    main()
