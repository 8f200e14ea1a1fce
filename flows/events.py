"""The events that chain the stages, and the deployment triggers that listen to them.

``generate`` publishes a dataset version and emits ``linkscan.dataset.published`` on the resource
``linkscan.dataset.<name>`` (payload: name, version, path, data_root); ``train/default`` is triggered by it
and trains on exactly that version. ``train`` emits ``linkscan.model.trained`` on
``linkscan.model.<name>`` (payload: name, run, checkpoint, dataset, dataset version, data_root and
the dataset's tokenizer), which triggers
``evaluate/default``.

A published version is announced at least once to each Prefect server it is run against: after
its event is handed to Prefect, the marker ``<data>/events/linkscan.dataset.published/<name>/<version>``
records the API URL it went to (``null`` for a temporary server, which nothing listens to). A rerun
that finds the version published but not announced to the server in use now (the run was killed
between publishing and announcing, or the version was made by `make demo` and the chain is now
served) emits the event then, so the retraining it triggers is not lost.

The event says whether the version is complete; the training trigger fires for complete versions
only (a partial one, published with allow_partial, is trained on only when asked).
"""
from __future__ import annotations

import json
from pathlib import Path

from linkscan.pipeline.layout import DataLayout, atomic_write

DATASET_PUBLISHED = "linkscan.dataset.published"
MODEL_TRAINED = "linkscan.model.trained"
DATASET_RESOURCE = "linkscan.dataset"
MODEL_RESOURCE = "linkscan.model"


def dataset_resource_id(name: str) -> str:
    return f"{DATASET_RESOURCE}.{name}"


def model_resource_id(name: str) -> str:
    return f"{MODEL_RESOURCE}.{name}"


def _announced_marker(data_root: Path, name: str, version: str) -> Path:
    return DataLayout(data_root).event_marker(DATASET_PUBLISHED, name, version)


def current_api_url() -> str | None:
    """The Prefect API this process reports to, or None for a temporary (ephemeral) server."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def _announced_to(data_root: Path, name: str, version: str) -> list:
    marker = _announced_marker(data_root, name, version)
    try:
        servers = json.loads(marker.read_text() or "{}").get("servers", [])
    except (OSError, ValueError, AttributeError):
        return []  # no marker, or one from before servers were recorded: announce again
    return servers if isinstance(servers, list) else []


def dataset_announced(data_root: Path, name: str, version: str, api_url: str | None) -> bool:
    """Whether the version's event was sent to the Prefect server at ``api_url``. Never true for a
    temporary server (``None``): such an event reached no trigger."""
    return api_url is not None and api_url in _announced_to(data_root, name, version)


def emit_dataset_published(name: str, version: str, path: Path, data_root: Path, *, complete: bool = True) -> str | None:
    """Emit ``linkscan.dataset.published`` and record the server it went to; returns that API URL."""
    from prefect.events import emit_event

    api_url = current_api_url()
    emit_event(
        event=DATASET_PUBLISHED,
        resource={
            "prefect.resource.id": dataset_resource_id(name),
            "prefect.resource.name": name,
            "linkscan.version": version,
            "linkscan.complete": str(complete).lower(),
        },
        payload={"name": name, "version": version, "path": str(path), "data_root": str(data_root),
                 "complete": complete},
    )
    servers = _announced_to(data_root, name, version)
    if api_url not in servers:
        servers.append(api_url)
    marker = _announced_marker(data_root, name, version)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, json.dumps({"servers": servers}) + "\n")
    return api_url


def emit_model_trained(
    name: str, run: str, checkpoint: Path, dataset: str, dataset_version: str, data_root: Path, tokenizer: str | None = None,
    retriever: str | None = None,
) -> None:
    """``tokenizer`` (the dataset's) goes into the payload when known, so evaluation segments alike;
    ``retriever`` is how evaluate loads the model (default ``scanner:<checkpoint>``; a dense run's
    ``dense:<folder>``)."""
    from prefect.events import emit_event

    extra = {"tokenizer": tokenizer} if tokenizer else {}
    emit_event(
        event=MODEL_TRAINED,
        resource={"prefect.resource.id": model_resource_id(name), "prefect.resource.name": name, "linkscan.run": run},
        payload={
            "name": name,
            "run": run,
            "checkpoint": str(checkpoint),
            "retriever": retriever or f"scanner:{checkpoint}",
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
    # A partial version (allow_partial) is announced too, but trains only when asked for by hand.
    "match": {"prefect.resource.id": f"{DATASET_RESOURCE}.*", "linkscan.complete": "true"},
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
        "retriever": "{{ event.payload.retriever }}",
        "data_root": "{{ event.payload.data_root }}",
        "tokenizer": "{{ event.payload.tokenizer }}",
    },
}


def deployment_trigger(definition: dict):
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(**definition)
