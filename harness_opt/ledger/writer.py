"""One writer per ledger, and a run status that is true however the run ended.

DuckDB serialises writes per statement, but two `optimize` runs on one ledger would still each
evaluate the same rollout keys, both open the sealed test split and both write candidate folders.
So a process that runs evaluations (`eval`, `optimize`, `doctor`, `export`) first takes the ledger's
writer lock: an advisory `flock` on `<ledger>.writer`, whose content names the holder (pid, host,
command, since). A second writer is refused at once with that name, or waits for it when
`HARNESS_OPT_LOCK_WAIT` gives it seconds to wait. The kernel drops the lock when its process dies,
however it dies. Read commands never take it.

`run_guard` closes a run row that an exception leaves `running`: `interrupted` for Ctrl-C, SIGTERM
(which the CLI turns into the same exception) and cancellation, `failed` for anything else. A kill
-9 cannot be caught, so `run_liveness` tells a dead `running` row by its process id (and by the
writer lock being free), for `harness-opt runs` to show as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness_opt.errors import LedgerError


class LedgerBusy(LedgerError):
    """Another process holds the ledger's writer lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds a writer lock, as its holder wrote it into the lock file."""

    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (`{self.command}`, since {self.since})"


def lock_path(ledger_path: Path) -> Path:
    return Path(str(ledger_path) + ".writer")


def lock_wait_s() -> float:
    """Seconds a second writer waits for the lock (`HARNESS_OPT_LOCK_WAIT`, default 0: refuse)."""
    try:
        return max(0.0, float(os.environ.get("HARNESS_OPT_LOCK_WAIT", "0") or 0))
    except ValueError:
        return 0.0


_HELD: dict[str, list[int]] = {}  # resolved lock path -> [fd, depth]; one process is one writer
_HELD_GUARD = threading.Lock()


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return Holder(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _open_lock(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LedgerError(
            f"cannot write beside the ledger ({exc.strerror})",
            where=str(path.parent),
            fix="evaluations write the ledger: use a writable HARNESS_OPT_HOME (or HARNESS_OPT_LEDGER)",
        ) from None


def _busy(ledger_path: Path, holder: Holder | None, waited_s: float) -> LedgerBusy:
    who = holder.describe() if holder else "another process"
    waited = f" (waited {waited_s:.0f} s)" if waited_s else ""
    return LedgerBusy(
        f"another harness-opt process is writing this ledger: {who}{waited}",
        where=str(ledger_path),
        fix="wait for it to finish (or stop it), use another HARNESS_OPT_HOME, or set "
        "HARNESS_OPT_LOCK_WAIT=<seconds> to wait for it",
    )


@contextlib.contextmanager
def writer_lock(ledger_path: Path, what: str, *, wait_s: float | None = None) -> Iterator[None]:
    """Hold the ledger's writer lock for the block; re-entered freely within this process."""
    path = lock_path(ledger_path)
    key = str(path.resolve())
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            held = True
        else:
            held = False
    if held:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key][1] -= 1
        return
    fd = _open_lock(path)
    wait = lock_wait_s() if wait_s is None else wait_s
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited >= wait:
                os.close(fd)
                raise _busy(ledger_path, _read_holder(path), waited) from None
            time.sleep(min(0.5, max(0.01, wait - waited)))
    command = " ".join(["harness-opt", *sys.argv[1:]]) if sys.argv and sys.argv[0] else what
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command[:300] or what,
        "what": what,
        "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    with _HELD_GUARD:
        _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        with _HELD_GUARD:
            _HELD[key][1] -= 1
            last = _HELD[key][1] == 0
            if last:
                del _HELD[key]
        if last:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def active_writer(ledger_path: Path) -> Holder | None:
    """The process holding the ledger's writer lock now (this one included), or None."""
    path = lock_path(ledger_path)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or Holder(0, "?", "unknown", "?")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def run_liveness(row: dict[str, Any], ledger_path: Path) -> str:
    """A run row's status as it really is: a `running` row whose process is gone is `dead`.

    Gone means: recorded on this host with a pid that no longer exists, or the ledger's writer lock
    free (every writer holds it while its run is running) or held by another process."""
    status = str(row.get("status") or "running")
    if status != "running":
        return status
    pid, host = row.get("pid"), row.get("host")
    if isinstance(pid, int) and host == socket.gethostname() and not process_alive(pid):
        return "dead"
    writer = active_writer(ledger_path)
    if writer is None:
        return "dead"
    if isinstance(pid, int) and writer.pid and writer.host == host and writer.pid != pid:
        return "dead"
    return status


# ---------------------------------------------------------------------------------- run status

_INTERRUPTED: list[tuple[str, str]] = []
"""(kind, run_id) of the runs an interruption closed in this process, for the CLI's resume hint."""


def interrupted_runs() -> list[tuple[str, str]]:
    return list(_INTERRUPTED)


@contextlib.contextmanager
def run_guard(ledger: Any, run_id: str, kind: str) -> Iterator[None]:
    """Close the run row if the block raises while it is still `running`: `interrupted` for an
    interruption (KeyboardInterrupt, which SIGTERM becomes in the CLI, or cancellation), `failed`
    for anything else; the row's summary (an optimize checkpoint) is kept, the cause added."""
    try:
        yield
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
        status = "interrupted" if stopped else "failed"
        with contextlib.suppress(Exception):
            closed = ledger.close_running(run_id, status, f"{type(exc).__name__}: {exc}"[:2000])
            if closed and stopped:
                _INTERRUPTED.append((kind, run_id))
        raise
