"""Progress of a generation run: documents, chunks, examples, input MB read, MB/s, time left.

The stage reports into a ``GenerationProgress`` (``read`` as each record is read, ``document``
as each document's rows are written, ``skip`` for shards an earlier run finished); the LLM back
end hands it each client's usage tracker. ``show_progress`` displays it: a live line (and the LLM
table) on a terminal, a whole log line (with the LLM totals) every ``interval_s`` seconds elsewhere
(CI, a file, a pipe).
Under Prefect, each shard task logs ``log_line()`` periodically instead.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from linkscan.generators.llm.progress import ProgressBoard
from linkscan.pipeline.sharding import InputPiece


class GenerationProgress:
    """Thread-safe counters of one run over the planned input ``pieces``."""

    def __init__(self, pieces: Sequence[InputPiece], clock=time.monotonic) -> None:
        self.total_bytes = sum(piece.size for piece in pieces)
        self.documents = self.chunks = self.examples = 0
        self.llm = ProgressBoard()
        self._read: dict[InputPiece, float] = {}
        self._skipped = 0
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()

    def read(self, piece: InputPiece, share: float) -> None:
        with self._lock:
            self._read[piece] = share

    def skip(self, pieces: Sequence[InputPiece]) -> None:
        """Pieces finished by an earlier run: counted as read, not in the speed."""
        with self._lock:
            self._skipped += sum(piece.size for piece in pieces)

    def document(self, chunks: int, examples: int) -> None:
        with self._lock:
            self.documents += 1
            self.chunks += chunks
            self.examples += examples

    def bytes_read(self) -> int:
        with self._lock:
            return int(sum(piece.size * share for piece, share in self._read.items()))

    def line(self) -> str:
        """``1,204 documents, 5,310 chunks, 3,622 examples; 96.4 of 312.0 MB (1.9 MB/s), 1:53 left``."""
        read = self.bytes_read()
        elapsed = max(1e-6, self._clock() - self._started)
        rate = read / elapsed
        done = read + self._skipped
        left = (self.total_bytes - done) / rate if rate > 0 else None
        eta = "" if left is None or done >= self.total_bytes else f", {_clock_time(left)} left"
        return (f"{self.documents:,} documents, {self.chunks:,} chunks, {self.examples:,} examples; "
                f"{done / 1e6:,.1f} of {self.total_bytes / 1e6:,.1f} MB ({rate / 1e6:.2f} MB/s){eta}")

    def log_line(self) -> str:
        """``line()`` and, when LLM clients report here, their totals: one line per report in a log."""
        return f"{self.line()}; {self.llm.summary()}" if self.llm.has_clients else self.line()

    def __rich__(self) -> Group:
        return Group(Text(self.line()), *([self.llm] if self.llm.has_clients else []))


def _clock_time(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@contextmanager
def report_every(progress: GenerationProgress, emit, interval_s: float = 30.0,
                 line=None) -> Iterator[GenerationProgress]:
    """Call ``emit(line())`` (default ``progress.line``) every ``interval_s`` seconds while the block
    runs, and once at its end."""
    line = line or progress.line
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(interval_s):
            emit(line())

    reporter = threading.Thread(target=report, name="generate-progress", daemon=True)
    reporter.start()
    try:
        yield progress
    finally:
        stop.set()
        reporter.join()
        emit(line())


@contextmanager
def show_progress(progress: GenerationProgress, console: Console | None = None,
                  interval_s: float = 30.0) -> Iterator[GenerationProgress]:
    """Display ``progress`` on stderr while the block runs (see the module docstring)."""
    console = console or Console(stderr=True)
    if console.is_terminal:
        with Live(progress, console=console, refresh_per_second=2):
            yield progress
        return
    # A log keeps every character: whole lines (never wrapped at the console's width, never
    # redrawn with carriage returns), the LLM totals inside them rather than a table.
    def emit(line: str) -> None:
        console.print(f"progress: {line}", highlight=False, markup=False, soft_wrap=True)

    with report_every(progress, emit, interval_s, line=progress.log_line):
        yield progress
