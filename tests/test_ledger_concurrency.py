"""Two processes on one ledger: reads during a long write, durability under kill -9, lock timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness_opt.errors import LedgerError
from harness_opt.ledger import Ledger

BATCH = 5

# Appends BATCH rollouts per call, forever or for argv[2] seconds, printing the total after each
# add_rollouts returns: every printed total is a promise that those rows are on disk.
WRITER = f"""
import sys, time
from pathlib import Path
from harness_opt.ledger import Ledger
from harness_opt.records import Rollout

ledger = Ledger(Path(sys.argv[1]))
seconds = float(sys.argv[2])
print("ready", flush=True)
total = 0
started = time.monotonic()
while seconds <= 0 or time.monotonic() - started < seconds:
    ledger.add_rollouts([
        Rollout(run_id="w", version_hash="v", suite="s", split="val", task_id=f"t{{total + i}}",
                trial=0, model="m", score=1.0, passed=True)
        for i in range({BATCH})
    ])
    total += {BATCH}
    print(total, flush=True)
    time.sleep(0.05)  # the evaluator flushes every 0.25 s; this is 5x as eager
print("done", flush=True)
"""

# Holds the file read-write for argv[2] seconds, like a DuckDB shell left open.
HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first in ("ready", "holding"), (
        f"child failed to start: {first!r} {proc.stderr.read() if proc.stderr else ''}"
    )
    return proc


def _count(ledger: Ledger) -> int:
    return int(ledger.query("SELECT count(*) AS n FROM rollouts")[0]["n"])


def test_reads_succeed_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    reader = Ledger(path, timeout_s=10)
    writer = _spawn(WRITER, str(path), "3")
    counts: list[int] = []
    waits: list[float] = []
    try:
        while writer.poll() is None:
            started = time.monotonic()
            counts.append(_count(reader))
            waits.append(time.monotonic() - started)
            time.sleep(0.005)
        out, err = writer.communicate(timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == 0, err
    lines = out.split()
    assert lines[-1] == "done"
    written = int(lines[-2])
    assert len(counts) >= 10, f"only {len(counts)} reads in 3 s, slowest {max(waits):.2f} s"
    assert counts == sorted(counts), "a reader saw the row count go down"
    assert counts[-1] > 0 and written > counts[0]
    assert _count(reader) == written


def test_kill_9_loses_no_acknowledged_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    Ledger(path)
    writer = _spawn(WRITER, str(path), "0")
    assert writer.stdout is not None
    try:
        for _ in range(30):  # let ~30 batches land, then kill it mid-flight
            writer.stdout.readline()
        os.kill(writer.pid, signal.SIGKILL)
        rest = writer.stdout.read()
    finally:
        writer.kill()
        writer.wait()
    acknowledged = max(int(x) for x in rest.split()) if rest.split() else 30 * BATCH
    stored = _count(Ledger(path))
    # every acknowledged row survived; at most the batch in flight at the kill was lost or kept
    assert acknowledged <= stored <= acknowledged + BATCH
    assert stored % BATCH == 0, "a batch was half-written"


def test_lock_held_too_long_names_the_holder_and_short_holds_are_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    Ledger(path).add_rollouts([])
    holder = _spawn(HOLDER, str(path), "1.5")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerError, match=rf"locked by .*PID {holder.pid}.*HARNESS_OPT_LEDGER_TIMEOUT"):
            Ledger(path, timeout_s=0.3).runs()
        assert 0.3 <= time.monotonic() - started < 1.5
        # a patient reader gets in once the holder lets go
        assert Ledger(path, timeout_s=20).runs() == []
        assert holder.wait(timeout=20) == 0
    finally:
        holder.kill()
        holder.wait()
