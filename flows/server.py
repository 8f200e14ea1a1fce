"""Starting and stopping a local Prefect server (``make serve`` and the tests use the same code).

The server listens on 127.0.0.1 only and keeps its SQLite database under the given
``PREFECT_HOME``; analytics are off, so nothing leaves the machine.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_env(prefect_home: Path, api_url: str | None = None, base: dict | None = None) -> dict[str, str]:
    """The environment for Prefect processes that use ``prefect_home`` (and the server at ``api_url``)."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": env.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"),
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def prefect_executable() -> str:
    """The ``prefect`` command of this Python environment."""
    candidate = Path(sys.executable).with_name("prefect")
    return str(candidate) if candidate.exists() else "prefect"


def start_server(prefect_home: Path, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None, ui: bool = True):
    """Start ``prefect server start`` in its own process group; returns (process, api_url)."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log = open(log_path or prefect_home / "server.log", "ab")
    command = [prefect_executable(), "server", "start", "--host", host, "--port", str(port)]
    if not ui:
        command.append("--no-ui")
    process = subprocess.Popen(
        command,
        env=server_env(prefect_home),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return process, f"http://{host}:{port}/api"


def wait_healthy(api_url: str, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    """Wait until ``<api_url>/health`` answers; raise naming the URL when it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Prefect server for {api_url} exited with code {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Prefect server at {api_url} was not healthy after {timeout:.0f} s; see its log")


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a process started in its own session, and its children: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout)
