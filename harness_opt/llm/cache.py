"""On-disk response cache for deterministic model calls: one sqlite3 file under `home.cache_dir()`.

Why sqlite3: it is in the standard library, it is safe across processes (WAL journal + a busy
timeout serialise writers; readers never block), and one file is easy to delete or ship. Every
operation opens its own short-lived connection, so the cache holds no connection across threads or
event-loop tasks and two processes (two `eval` runs in one project) can share it.

What is stored: the full `LLMResult` of the original call, keyed by `LLMRequest.cache_key()`. A hit
is served with `cached=True` and the hit's own latency, but keeps the *original* token and cost
figures: the ledger records what the answer cost to produce, and `cached` tells a reader that this
rollout did not spend it again (the client's counters add cost only for real calls).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from harness_opt import home
from harness_opt.llm.types import LLMResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class ResponseCache:
    """Maps a request's cache key to the `LLMResult` it produced. Safe for threads and processes."""

    def __init__(self, path: Path | None = None, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path if path is not None else home.cache_dir() / "llm.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        with self._connect() as conn:
            # WAL lets readers proceed while another process writes; set once, it persists in the file.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        # In WAL mode NORMAL sync cannot corrupt the file; a crash may lose the last answers only.
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            yield conn
        finally:
            conn.close()

    def get(self, key: str) -> LLMResult | None:
        """The stored result for `key`, or None. A row that no longer parses counts as a miss."""
        with self._connect() as conn:
            row = conn.execute("SELECT result FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return LLMResult.model_validate_json(row[0])
        except ValueError:
            return None

    def put(self, key: str, result: LLMResult) -> None:
        """Store `result` (as produced by the model: `cached` is stored False). Last writer wins;
        two writers of one key wrote the answer to the same deterministic request."""
        stored = result.model_copy(update={"cached": False})
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO responses (key, model, result, created) VALUES (?, ?, ?, ?)",
                (key, result.model, stored.model_dump_json(), time.time()),
            )

    def __len__(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM responses")
