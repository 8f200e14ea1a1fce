"""Settings for every command, one way: a model's defaults, then a YAML file, then overrides.

``load_settings(Model, "run.yaml", {"corpus_config.chunk_tokens": 500}, ["llm.model=gpt-4o-mini"])``
reads the file (a version's ``dataset.json`` counts as the settings it was made with), applies the
command's own options as dotted keys (None: not given), then ``--set key.path=value`` pairs (the
value read as YAML: ``5``, ``0.1``, ``true``, ``[a, b]``), and validates the result with the model;
any problem raises ``SettingsError`` naming the file or option and the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class SettingsError(ValueError):
    """A settings file, option or --set is not valid; the message names it and the field."""


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a.b=5", "c=[x, y]"]`` as ``{"a.b": 5, "c": ["x", "y"]}`` (values read as YAML)."""
    parsed: dict[str, Any] = {}
    if not pairs:
        return parsed
    import yaml

    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set {pair!r}: use --set key.path=value, e.g. --set corpus_config.chunk_tokens=1000")
        try:
            parsed[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise SettingsError(f"--set {pair!r}: the value is not valid YAML ({error})") from None
    return parsed


def read_settings_file(path: Path | str) -> dict:
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(f"{path}: cannot read the config file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML ({error})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: the config file must be a mapping of settings, got {type(loaded).__name__}")
    if {"config", "version", "shards"} <= loaded.keys():  # a version's dataset.json: its resolved config
        return loaded["config"]
    return loaded


def load_settings(model: type[Model], yaml_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
                  sets: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> Model:
    """``model`` validated from ``base`` (a preset), the file, the options (dotted keys or nested
    dicts) and the ``--set``s, each on top of the one before."""
    data = _merge(dict(base or {}), read_settings_file(yaml_path)) if yaml_path is not None else dict(base or {})
    for layer in (overrides or {}, parse_sets(sets)):
        for key, value in layer.items():
            if value is None:
                continue
            if isinstance(value, Mapping):
                data = _merge(data, {key: value})
            else:
                _set_dotted(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors())
        source = str(yaml_path) if yaml_path is not None else "the command's options"
        raise SettingsError(f"{source}: {problems}") from None


def _set_dotted(target: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _merge(base: dict, override: Mapping) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
