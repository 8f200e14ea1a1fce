"""The events that chain the stages, and the deployment triggers that listen to them.

``generate`` publishes a dataset version and emits ``linkscan.dataset.published`` on the resource
``linkscan.dataset.<name>`` (payload: name, version, path, data_root); ``train/default`` is triggered by it
and trains on exactly that version. ``train`` emits ``linkscan.model.trained`` on
``linkscan.model.<name>`` (payload: name, run, checkpoint, dataset, dataset version, data_root and
the dataset's tokenizer), which triggers
``evaluate/default``.

A published version is announced at least once: after its event is handed to Prefect, a marker
``<data>/events/linkscan.dataset.published/<name>/<version>`` is written, and a rerun that finds the
version published but no marker (the run was killed between publishing and announcing) emits the
event then, so the retraining it triggers is not lost.
"""
from __future__ import annotations

from pathlib import Path

DATASET_PUBLISHED = "linkscan.dataset.published"
MODEL_TRAINED = "linkscan.model.trained"
DATASET_RESOURCE = "linkscan.dataset"
MODEL_RESOURCE = "linkscan.model"


def dataset_resource_id(name: str) -> str:
    return f"{DATASET_RESOURCE}.{name}"


def model_resource_id(name: str) -> str:
    return f"{MODEL_RESOURCE}.{name}"


def _announced_marker(data_root: Path, name: str, version: str) -> Path:
    return Path(data_root) / "events" / DATASET_PUBLISHED / name / version


def dataset_announced(data_root: Path, name: str, version: str) -> bool:
    """Whether ``emit_dataset_published`` ran to its end for this version under this data root."""
    return _announced_marker(data_root, name, version).is_file()


def emit_dataset_published(name: str, version: str, path: Path, data_root: Path) -> None:
    from prefect.events import emit_event

    emit_event(
        event=DATASET_PUBLISHED,
        resource={
            "prefect.resource.id": dataset_resource_id(name),
            "prefect.resource.name": name,
            "linkscan.version": version,
        },
        payload={"name": name, "version": version, "path": str(path), "data_root": str(data_root)},
    )
    marker = _announced_marker(data_root, name, version)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def emit_model_trained(
    name: str, run: str, checkpoint: Path, dataset: str, dataset_version: str, data_root: Path, tokenizer: str | None = None
) -> None:
    """``tokenizer`` (the dataset's) goes into the payload when known, so evaluation segments alike."""
    from prefect.events import emit_event

    extra = {"tokenizer": tokenizer} if tokenizer else {}
    emit_event(
        event=MODEL_TRAINED,
        resource={"prefect.resource.id": model_resource_id(name), "prefect.resource.name": name, "linkscan.run": run},
        payload={
            "name": name,
            "run": run,
            "checkpoint": str(checkpoint),
            "dataset": dataset,
            "dataset_version": dataset_version,
            "data_root": str(data_root),
            **extra,
        },
    )


# Trigger definitions as plain dicts: the same values serve `linkscan serve` (through
# DeploymentEventTrigger) and read like the `triggers:` entries of prefect.yaml.
TRAIN_ON_PUBLISHED = {
    "name": "train on every published dataset version",
    "expect": [DATASET_PUBLISHED],
    "match": {"prefect.resource.id": f"{DATASET_RESOURCE}.*"},
    "parameters": {
        "dataset": "{{ event.payload.name }}",
        "version": "{{ event.payload.version }}",
        "data_root": "{{ event.payload.data_root }}",
    },
}
EVALUATE_ON_TRAINED = {
    "name": "evaluate every trained model",
    "expect": [MODEL_TRAINED],
    "match": {"prefect.resource.id": f"{MODEL_RESOURCE}.*"},
    "parameters": {
        "checkpoint": "{{ event.payload.checkpoint }}",
        "data_root": "{{ event.payload.data_root }}",
        "tokenizer": "{{ event.payload.tokenizer }}",
    },
}


def deployment_trigger(definition: dict):
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(**definition)
