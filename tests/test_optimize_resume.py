"""kill -9 an optimize run at several points, resume it each time: no finished rollout is lost or
duplicated, and the run still reaches the same end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness_opt.evaluate.tracestore import iter_traces
from harness_opt.home import traces_dir
from harness_opt.ledger import Ledger
from tests.optimize_fixtures import MARKER, SEED

DRIVER = Path(__file__).with_name("optimize_fixtures.py")
REPO = Path(__file__).resolve().parents[1]


def row_count(ledger: Ledger, table: str) -> int:
    try:
        return int(ledger.query(f"SELECT count(*) AS n FROM {table}")[0]["n"])
    except Exception:  # the file may not exist yet
        return 0


def rollout_count(ledger: Ledger) -> int:
    return row_count(ledger, "rollouts")


def start(run_id: str, seed: Path, resume: bool) -> subprocess.Popen[str]:
    args = [sys.executable, str(DRIVER), run_id, str(seed)] + (["resume"] if resume else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_kill_nine_then_resume_loses_and_duplicates_nothing(tmp_path: Path):
    seed = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, seed)
    ledger = Ledger()
    run_id = "opt-killtest"
    # Kill points: during the baseline, during the noise rerun, right after a decision of iteration 1
    # was written (before its checkpoint: the resumed run must not write it twice), and during the
    # later candidates' evaluations.
    kill_points = [("rollouts", 15), ("rollouts", 55), ("decisions", 3), ("rollouts", 110)]
    for kills, (table, threshold) in enumerate(kill_points):
        proc = start(run_id, seed, resume=kills > 0)
        deadline = time.monotonic() + 120
        while proc.poll() is None and row_count(ledger, table) < threshold and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"run ended before the kill point: {proc.stderr.read()[-2000:]}"
        before = rollout_count(ledger)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert rollout_count(ledger) >= before  # nothing that was written is gone
    final = start(run_id, seed, resume=True)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"

    # no duplicated rollout: each key once in the ledger
    rows = ledger.query("SELECT version_hash, suite, split, task_id, trial, model FROM rollouts")
    keys = Counter(tuple(r.values()) for r in rows)
    assert keys and max(keys.values()) == 1
    # no finished rollout lost or re-run: every trace line is in the ledger, and no key was traced twice
    traced = Counter()
    for path in traces_dir().rglob("*.jsonl"):
        for _, trace in iter_traces(path):
            k = trace.key
            traced[(k.version_hash, k.suite, k.split, k.task_id, k.trial, k.model)] += 1
    assert max(traced.values()) == 1
    assert set(traced) == set(keys)
    # and the run reached the same end as an uninterrupted one would
    summary = ledger.query("SELECT status, summary FROM runs WHERE run_id = ?", [run_id])[0]
    assert summary["status"] == "finished"
    result = json.loads(summary["summary"]) if isinstance(summary["summary"], str) else summary["summary"]
    best = Path(result["result"]["best_path"])
    assert MARKER in (best / "prompts" / "system.j2").read_text()
    decisions = ledger.query("SELECT iteration, detail FROM decisions WHERE run_id = ?", [run_id])
    mechanisms = Counter(
        (
            d["iteration"],
            (json.loads(d["detail"]) if isinstance(d["detail"], str) else d["detail"])["mechanism"],
        )
        for d in decisions
    )
    assert max(mechanisms.values()) == 1, mechanisms  # no decision recorded twice
