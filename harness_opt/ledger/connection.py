"""Short-lived DuckDB connections that wait for the file lock instead of failing.

DuckDB lets one process hold a file read-write *or* several processes hold it read-only, and an open
read-write connection locks everybody else out. So nothing in harness-opt keeps the ledger open: a
writer opens, appends one batch, commits and closes (tens of milliseconds); a reader opens read-only,
queries and closes. Whoever finds the file locked retries with a short, jittered backoff, so a long
eval in one terminal and `harness-opt leaderboard` in another both work. Only a lock held for longer
than the timeout (a process that keeps the file open) becomes a `LedgerError` naming that process.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from harness_opt.errors import LedgerError


def default_timeout_s() -> float:
    """How long to wait for another process's lock (`HARNESS_OPT_LEDGER_TIMEOUT`, default 30 s).

    A healthy writer holds the lock well under 0.1 s at a time, so waiting long only matters when a
    foreign process (a DuckDB shell, a notebook) keeps the file open.
    """
    return float(os.environ.get("HARNESS_OPT_LEDGER_TIMEOUT", "30"))


_FIRST_WAIT_S = 0.005
_MAX_WAIT_S = 0.02  # small cap: the lock is free most of the time, and a long sleep would miss the gap

# One DuckDB database instance per file per process: two threads of this process opening the same
# file with different configurations (read-only vs read-write) would fail, so they take turns.
_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()

_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


def _process_lock(path: Path) -> threading.RLock:
    key = str(path.resolve())
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.RLock())


def is_lock_error(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB saying another process holds the file (the one error worth retrying)."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def lock_holder(exc: BaseException) -> str:
    """'<executable> (PID n)' from DuckDB's lock error, or a generic phrase when it names nobody."""
    match = _HOLDER.search(str(exc))
    return f"{match.group(1)} (PID {match.group(2)})" if match else "another process"


@contextmanager
def connect(
    path: Path, *, read_only: bool, timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path`, retrying while another process holds the lock; always closes on exit.

    Session time zone is UTC so TIMESTAMPTZ values come back the same on every machine.
    """
    with _process_lock(path):
        timeout = default_timeout_s() if timeout_s is None else timeout_s
        con = _open_with_retry(path, read_only=read_only, timeout_s=timeout)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


def _open_with_retry(path: Path, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    wait = _FIRST_WAIT_S
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise LedgerError(
                    f"cannot open the ledger: {exc}",
                    where=str(path),
                    fix="check the path; if the file is corrupt, move it aside and re-run (results are "
                    "recomputed)",
                ) from exc
            if time.monotonic() >= deadline:
                raise LedgerError(
                    f"the ledger stayed locked by {lock_holder(exc)} for {timeout_s:.0f} s",
                    where=str(path),
                    fix="harness-opt only holds the file for a moment; stop the process named (e.g. a "
                    "DuckDB shell or notebook keeping it open), or raise HARNESS_OPT_LEDGER_TIMEOUT",
                ) from exc
        time.sleep(wait * random.uniform(0.5, 1.5))
        wait = min(wait * 2, _MAX_WAIT_S)
