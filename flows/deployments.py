"""The three deployments, ``generate/default``, ``train/default`` and ``evaluate/default``.

``linkscan serve`` serves them in one process (``prefect.serve``); ``prefect.yaml`` declares the
same deployments and triggers for ``prefect deploy`` with a process work pool.
"""
from __future__ import annotations

DEPLOYMENT = "default"
TAGS = ["linkscan"]


def runner_deployments() -> list:
    from prefect.types.entrypoint import EntrypointType

    from flows import events
    from flows.evaluate import evaluate
    from flows.generate import generate
    from flows.train import train

    # Module entrypoints (flows.generate.generate), so the served runs import the installed
    # package whatever the working directory.
    common = {"tags": TAGS, "entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        generate.to_deployment(DEPLOYMENT, **common),
        train.to_deployment(DEPLOYMENT, triggers=[events.deployment_trigger(events.TRAIN_ON_PUBLISHED)], **common),
        evaluate.to_deployment(DEPLOYMENT, triggers=[events.deployment_trigger(events.EVALUATE_ON_TRAINED)], **common),
    ]


def serve_deployments(limit: int | None = None) -> None:
    """Register the deployments (and their triggers) with the Prefect API and run their flow runs."""
    from prefect import serve

    serve(*runner_deployments(), limit=limit)
