"""The ``evaluate`` flow: score a trained checkpoint (and the baselines) on the evaluation sets.

``evaluate/default`` is started by ``linkscan.model.trained`` with the event's checkpoint.
"""
from __future__ import annotations

from typing import Optional

from prefect import flow, get_run_logger

from flows.runtime import resolve_data_root


@flow(name="evaluate", persist_result=False)
def evaluate(checkpoint: Optional[str] = None, data_root: Optional[str] = None) -> dict:
    """Evaluate ``checkpoint`` (a folder under ``<data>/models``) on the configured benchmarks."""
    logger = get_run_logger()
    root = resolve_data_root(data_root)
    logger.warning(
        "the evaluation stage is not wired into the evaluate flow yet: nothing was evaluated for checkpoint %s",
        checkpoint,
    )
    return {"checkpoint": checkpoint, "data_root": str(root), "evaluated": False}
