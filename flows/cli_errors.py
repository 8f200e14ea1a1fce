"""How the `linkscan` commands end when they cannot finish: one `error:` line and an exit code.

| code | meaning | what to do |
|---:|---|---|
| 0 | done | |
| 1 | failed, nothing published (0 examples, a full disk, another writer of the version) | read the line, fix, rerun |
| 2 | bad input or settings (a missing corpus path, a bad dataset name, a wrong tokenizer path) | fix the option, rerun |
| 75 | chunks wait for the LLM (its server was down, busy or slow); nothing published | rerun the same command later |
| 130, 143 | interrupted by SIGINT or SIGTERM; finished shards are kept | rerun the same command to resume |

75 is sysexits' EX_TEMPFAIL ("try again later"); 130 and 143 are the shell's 128 + signal number.
"""
from __future__ import annotations

import errno
import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import typer

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 75


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class _OncePerMessage(logging.Filter):
    """Lets each distinct message through once: the 24 requests in flight that give up on one dead
    server say so in one WARNING line, and the error line that ends the run counts them."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # records come from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        with self._lock:
            if message in self._seen:
                return False
            self._seen.add(message)
            return True


def log_warnings_once() -> None:
    """Warnings (and worse) on stderr as ``WARNING <message>``, each distinct message once."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(_OncePerMessage())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so every ``with`` block below it cleans up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def interruptible(resume_hint: str = "rerun the same command to resume", data_root: Path | None = None,
                  detail: Callable[[], str] | None = None) -> Iterator[None]:
    """Turn SIGTERM into an exception like SIGINT's, and either into one line and exit 128 + signal.

    Temporary files are removed by the ``with`` blocks that made them as the exception passes;
    what a signal landing between two of those steps leaves (a lock file, a temporary shard) is
    swept from ``data_root``'s staging folders. Finished work (shards, checkpoints) stays;
    ``detail()``, read when the signal comes, says what (``": 3 finished benchmark(s) kept in ..."``).
    """

    def on_sigterm(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
        if data_root is not None:
            from linkscan.pipeline.store import sweep_staging

            sweep_staging(data_root)
        said = detail() if detail is not None else ""
        typer.echo(f"interrupted ({signal.Signals(signum).name}){said}; {resume_hint}", err=True)
        raise typer.Exit(128 + signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and (
        error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)
    )


def os_error_line(error: OSError, data_root: Path, option: str = "--data",
                  resume: str = "rerun the same command to resume") -> str:
    """One line for an OSError met while writing under ``data_root`` (the folder ``option`` names),
    naming the file and the fix."""
    where = error.filename or data_root
    if is_disk_full(error):
        return f"{where}: no space left on device; free space under {data_root} (or pass {option} on another disk), then {resume}"
    reason = error.strerror or str(error)
    return f"{where}: {reason}; fix it, then {resume}"
