"""Where flows run and write: the data folder and the task runner that shard tasks map over.

This is the one place that resolves run-time settings from the environment (``LINKSCAN_DATA``,
and ``PREFECT_API_URL`` to warn when worker processes would have no server to report to);
library code below ``flows/`` receives the resolved values.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, Field

DATA_ENV = "LINKSCAN_DATA"


def resolve_data_root(data_root: Optional[str] = None) -> Path:
    """The data folder: the argument, else ``$LINKSCAN_DATA``, else ``./data`` (made absolute)."""
    chosen = data_root or os.environ.get(DATA_ENV) or "data"
    return Path(chosen).expanduser().resolve()


class TaskRunnerConfig(BaseModel):
    """How shard tasks run: threads in the flow's process (default), a Dask cluster or a Ray cluster.

    ``kind="dask"`` with no ``address`` starts a local cluster (``n_workers`` workers, as threads
    when ``processes`` is false); with an ``address`` it connects to a running scheduler, such as
    ``tcp://scheduler:8786`` on a cluster. ``kind="ray"`` starts a local Ray instance, or joins
    ``address`` (``ray://head:10001``). Both need the ``scale`` extra (``prefect-dask``, ``prefect-ray``).
    """

    kind: Literal["threads", "dask", "ray"] = Field(
        "threads", description="threads, or dask / ray for a (local or remote) cluster"
    )
    max_workers: int = Field(2, ge=1, description="threads: how many shards run at once")
    address: Optional[str] = Field(None, description="dask or ray: cluster address; none starts a local cluster")
    n_workers: int = Field(2, ge=1, description="dask local cluster: number of workers")
    threads_per_worker: int = Field(1, ge=1, description="dask local cluster: threads per worker")
    processes: bool = Field(False, description="dask local cluster: workers as processes (true) or threads (false)")


def make_task_runner(config: TaskRunnerConfig):
    """The Prefect task runner for ``config``; imports prefect-dask only when asked for."""
    separate_processes = config.kind == "ray" or config.kind == "dask" and (config.processes or config.address)
    if separate_processes and not os.environ.get("PREFECT_API_URL"):
        logging.getLogger("linkscan").warning(
            "task_runner %s runs shards in other processes, but PREFECT_API_URL is not set: each worker "
            "would start its own temporary Prefect server (and they contend for its database). Run a "
            "server (`make serve`) and set PREFECT_API_URL", config.kind,
        )
    if config.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    if config.kind == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as error:
            raise RuntimeError(
                "task_runner.kind='ray' needs prefect-ray: pip install 'linkscan[scale]'"
            ) from error
        return RayTaskRunner(address=config.address) if config.address else RayTaskRunner()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "task_runner.kind='dask' needs prefect-dask: pip install 'linkscan[scale]'"
        ) from error
    if config.address:
        return DaskTaskRunner(address=config.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": config.n_workers,
            "threads_per_worker": config.threads_per_worker,
            "processes": config.processes,
            "dashboard_address": None,
        }
    )


def options_model(name: str, base: type[BaseModel], exclude: set[str], defaults: dict, doc: str) -> type[BaseModel]:
    """A flow parameter model: ``base``'s fields minus ``exclude`` (decided by the flow), typed as in
    ``base`` so the UI shows them, with ``defaults`` replacing some defaults. A partial dict given
    for the parameter keeps these defaults for the fields it leaves out."""
    from pydantic import ConfigDict, create_model
    from pydantic.fields import FieldInfo

    fields = {}
    for field_name, field in base.model_fields.items():
        if field_name in exclude:
            continue
        if field_name in defaults:
            field = FieldInfo.merge_field_infos(field, default=defaults[field_name], default_factory=None)
        fields[field_name] = (field.annotation, field)
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)


# Failures worth retrying: the disk, the network, an LLM server that is busy or restarting.
# Anything else (bad input, a bug) fails at once with its message.
_TRANSIENT_NAMES = {"APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError"}
# OSErrors that say the input is wrong, not that the system hiccuped: retrying cannot help.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(error: BaseException) -> bool:
    """Whether a failure may pass on a retry. Errors that know say so (``transient``: an LLM request
    given up on because the server was down, chunks waiting for it); otherwise the kind decides."""
    flag = getattr(error, "transient", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(error, _PERMANENT_OS_ERRORS):
        return False
    return isinstance(error, (OSError, TimeoutError, ConnectionError)) or type(error).__name__ in _TRANSIENT_NAMES


def retry_transient(task_, task_run, state) -> bool:
    """A task's ``retry_condition_fn``: retry only what ``is_transient`` calls transient."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)
