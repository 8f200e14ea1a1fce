"""Whether the Hugging Face hub can serve a repository right now, asked once with a short timeout.

An offline machine is told at once, in one line, instead of after the hub client's retries
(about half a minute of warnings per file). ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` are the hub
client's own settings.
"""
from __future__ import annotations

PROBE_TIMEOUT_S = 5.0


def hub_problem(repo_id: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub cannot serve ``repo_id`` now (offline, unreachable, no such repository), or None."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        response = get_session().head(f"{constants.ENDPOINT}/api/models/{repo_id}", timeout=timeout_s)
    except Exception as error:  # the HTTP client raises many types; all mean "not reachable from here"
        return f"{constants.ENDPOINT} not reachable: {type(error).__name__}: {error}"
    if response.status_code == 404:
        return f"no repository {repo_id} on {constants.ENDPOINT}"
    return None


def cached_file(repo_id: str, filename: str) -> str | None:
    """The path of ``filename`` of ``repo_id`` in the local hub cache, if it was downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) else None
