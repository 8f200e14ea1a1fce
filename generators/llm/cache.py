"""The persistent LLM response cache: SQLite in WAL mode, keyed by model, messages and parameters.

It stores the server's raw response body and its token usage, never a parsed answer: parsing
happens after the cache, so a parser fix re-reads old answers without paying for them again, and
a resumed run never repeats a paid call. WAL mode lets several processes (shard workers) read
while one writes; a busy writer is waited for, not failed.

Switching a file to WAL mode takes an exclusive lock that SQLite does not wait for, so shard
workers opening one new cache at the same moment would fail with "database is locked": the
one-time set-up runs under an advisory lock on a `<cache>.lock` file beside it.
"""
from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from linkscan.pipeline.layout import content_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    stage TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS format_fallbacks (
    server TEXT NOT NULL,
    model TEXT NOT NULL,
    asked TEXT NOT NULL,
    used TEXT NOT NULL,
    PRIMARY KEY (server, model, asked)
)
"""


def cache_key(model: str, messages: list[dict], params: dict) -> str:
    """sha256 of the canonical JSON of the request; the same request always has the same key."""
    return content_hash({"model": model, "messages": messages, "params": params})


@dataclass(frozen=True)
class CachedResponse:
    response: str  # the raw JSON body of the chat completion
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            with open(self.path.with_name(self.path.name + ".lock"), "a") as setup_lock:
                fcntl.flock(setup_lock, fcntl.LOCK_EX)
                self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
                if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise RuntimeError(
                f"{self.path}: cannot open the LLM response cache ({error}); "
                "move the file away to start a fresh cache"
            ) from error

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self._db.execute(
                "SELECT response, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return CachedResponse(*row) if row else None

    def put(self, key: str, model: str, stage: str, response: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, stage, response, prompt_tokens, completion_tokens, time.time()),
            )

    def learned_format(self, server: str, model: str, asked: str) -> str | None:
        """The structured-output mode a server was found to take when ``asked`` was refused."""
        with self._lock:
            row = self._db.execute(
                "SELECT used FROM format_fallbacks WHERE server = ? AND model = ? AND asked = ?", (server, model, asked)
            ).fetchone()
        return row[0] if row else None

    def learn_format(self, server: str, model: str, asked: str, used: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO format_fallbacks VALUES (?, ?, ?, ?)", (server, model, asked, used))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
