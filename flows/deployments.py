"""The three deployments, ``generate/default``, ``train/default`` and ``evaluate/default``.

``linkscan serve`` serves them in one process (``prefect.serve``); ``prefect.yaml`` declares the
same deployments and triggers for ``prefect deploy`` with a process work pool.
"""
from __future__ import annotations

DEPLOYMENT = "default"
TAGS = ["linkscan"]


FLOWS = ("generate", "train", "evaluate")


def runner_deployments(defaults: dict[str, dict] | None = None) -> list:
    """The three deployments; ``defaults`` maps a flow name to default parameters of its deployment
    (a trigger's parameters are applied on top of them)."""
    from prefect.types.entrypoint import EntrypointType

    from linkscan.flows import events
    from linkscan.flows.evaluate import evaluate
    from linkscan.flows.generate import generate
    from linkscan.flows.train import train

    # Module entrypoints (linkscan.flows.generate.generate), so the served runs import the installed
    # package whatever the working directory.
    defaults = defaults or {}
    unknown = set(defaults) - set(FLOWS)
    if unknown:
        raise ValueError(f"default parameters for unknown flow(s) {sorted(unknown)}: use {', '.join(FLOWS)}")
    common = {"tags": TAGS, "entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        generate.to_deployment(DEPLOYMENT, parameters=defaults.get("generate"), **common),
        train.to_deployment(
            DEPLOYMENT, parameters=defaults.get("train"),
            triggers=[events.deployment_trigger(events.TRAIN_ON_PUBLISHED)], **common,
        ),
        evaluate.to_deployment(
            DEPLOYMENT, parameters=defaults.get("evaluate"),
            triggers=[events.deployment_trigger(events.EVALUATE_ON_TRAINED)], **common,
        ),
    ]


def serve_deployments(defaults: dict[str, dict] | None = None, limit: int | None = None) -> None:
    """Register the deployments (and their triggers) with the Prefect API and run their flow runs."""
    from prefect import serve

    serve(*runner_deployments(defaults), limit=limit)
