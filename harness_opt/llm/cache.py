"""On-disk response cache for deterministic model calls, and the per-rollout scope of its keys.

The cache is one sqlite3 file under `home.cache_dir()`.

Why sqlite3: it is in the standard library, it is safe across processes (WAL journal + a busy
timeout serialise writers; readers never block), and one file is easy to delete or ship. Every
operation opens its own short-lived connection, so the cache holds no connection across threads or
event-loop tasks and two processes (two `eval` runs in one project) can share it.

What is stored: the full `LLMResult` of the original call, keyed by `LLMRequest.cache_key()`. A hit
is served with `cached=True` and the hit's own latency, but keeps the *original* token and cost
figures: the ledger records what the answer cost to produce, and `cached` tells a reader that this
rollout did not spend it again (the client's counters add cost only for real calls).

Trial independence: a model at temperature 0 is still not deterministic (API models are not), and
pass^k exists to measure exactly that. So inside a rollout the key is not the request alone: it is
(the rollout's `CallScope`, how many times this rollout already asked this exact request, the
request). Trial 2 never gets trial 1's reply, a candidate version never gets its parent's, and a
rollout that asks the same thing twice gets two answers; yet an interrupted rollout, re-run under
the same rollout key, replays its own replies in order and resumes where it stopped, and an
unchanged rollout re-run is served whole. The evaluator enters the scope around each rollout
(`rollout_scope`); everything the rollout causes (the agent's calls, the simulated user's, an LLM
judge's) runs inside it. A call outside any rollout (a proposer, doctor's checks) is keyed by the
request alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from pydantic import BaseModel

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


class CallScope:
    """The cache scope of one rollout: its name and how often each request was asked within it.

    Counting repeats per request (not a global call index) keeps a key independent of how the
    agent's, the user simulator's and a judge's calls interleave; the count restarts with every run
    of the rollout, so a re-run asks for the same keys in the same order."""

    def __init__(self, name: str, rollout: BaseModel | None = None) -> None:
        self.name = name
        self.rollout = rollout
        """The rollout key, when the scope is a rollout's (a judge reads the agent's model off it)."""
        self._asked: dict[str, int] = {}
        self._lock = threading.Lock()  # a judge may call from a helper thread

    @classmethod
    def for_rollout(cls, key: BaseModel) -> CallScope:
        """The scope named by a rollout key (version, suite, split, task, trial, model)."""
        return cls(hashlib.sha256(key.model_dump_json().encode()).hexdigest(), key)

    def cache_key(self, request_key: str) -> str:
        """The cache key of the next call of the request with key `request_key` in this rollout."""
        with self._lock:
            nth = self._asked.get(request_key, 0)
            self._asked[request_key] = nth + 1
        return hashlib.sha256(f"{self.name}\n{nth}\n{request_key}".encode()).hexdigest()


_SCOPE: ContextVar[CallScope | None] = ContextVar("harness_opt_call_scope", default=None)


def current_scope() -> CallScope | None:
    """The scope of the rollout this code runs in, or None outside any rollout."""
    return _SCOPE.get()


@contextlib.contextmanager
def rollout_scope(key: BaseModel) -> Iterator[CallScope]:
    """Run the block as rollout `key`: model calls made in it (and in tasks or threads started
    with its context) are cached per rollout. Each asyncio task has its own context, so
    concurrent rollouts never see each other's scope."""
    scope = CallScope.for_rollout(key)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


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
        """Store `result` (as produced by the model: `cached` is stored False). Last writer wins:
        two writers of one key are one rollout run twice at once, or one request outside rollouts."""
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
