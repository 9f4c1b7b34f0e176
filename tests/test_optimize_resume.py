"""kill -9 an optimize run at several points, resume it each time: no finished rollout (agent harness)
or training run (nanogpt) is lost or duplicated, and the run still reaches its end. The same loop, the
same `--resume`, for both domains."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harness_opt.evaluate.tracestore import iter_traces
from harness_opt.home import home_dir, traces_dir
from harness_opt.ledger import Ledger
from tests.support.nanogpt import training_copy
from tests.support.optimize import MARKER, SEED

REPO = Path(__file__).resolve().parents[1]


def row_count(ledger: Ledger, table: str) -> int:
    try:
        return int(ledger.query(f"SELECT count(*) AS n FROM {table}")[0]["n"])
    except Exception:  # the file may not exist yet, or be locked for a moment
        return 0


def start(domain: str, run_id: str, where: Path, resume: bool) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.support.optimize_run", domain, run_id, str(where)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        args + (["resume"] if resume else []),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_and_resume(
    domain: str, run_id: str, where: Path, kill_points: list[Callable[[], bool]], deadline_s: float
) -> dict[str, str]:
    """Start, kill -9 when each point is reached, resume; return the last run's JSON line."""
    for kills, reached in enumerate(kill_points):
        proc = start(domain, run_id, where, resume=kills > 0)
        deadline = time.monotonic() + deadline_s
        while proc.poll() is None and not reached() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"run ended before kill point {kills}: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = start(domain, run_id, where, resume=True)
    out, err = final.communicate(timeout=900)
    assert final.returncode == 0, err[-3000:]
    result: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return result


def decisions_once(ledger: Ledger, run_id: str) -> list[tuple[int, str]]:
    rows = ledger.query("SELECT iteration, detail FROM decisions WHERE run_id = ?", [run_id])
    keys = [(d["iteration"], json.loads(d["detail"])["mechanism"]) for d in rows]
    assert max(Counter(keys).values()) == 1, keys  # no decision recorded twice
    return keys


def test_agent_run_killed_four_times_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, seed)
    ledger = Ledger()
    run_id = "opt-killtest"
    # Kill points: during the baseline, during the noise rerun, right after a decision of iteration 1
    # was written (before its checkpoint: the resumed run must not write it twice), and during the
    # later candidates' evaluations.
    points = [("rollouts", 15), ("rollouts", 55), ("decisions", 3), ("rollouts", 110)]
    kill_points = [lambda t=table, n=n: row_count(ledger, t) >= n for table, n in points]
    result = kill_and_resume("agent", run_id, seed, kill_points, deadline_s=120)
    assert result["status"] == "finished"

    # no duplicated rollout: each key once in the ledger
    rows = ledger.query("SELECT version_hash, suite, split, task_id, trial, model FROM rollouts")
    keys = Counter(tuple(r.values()) for r in rows)
    assert keys and max(keys.values()) == 1
    # no finished rollout lost or re-run: every trace line is in the ledger, and no key was traced twice
    traced: Counter[tuple[str, ...]] = Counter()
    for path in traces_dir().rglob("*.jsonl"):
        for _, trace in iter_traces(path):
            k = trace.key
            traced[(k.version_hash, k.suite, k.split, k.task_id, str(k.trial), k.model)] += 1
    assert max(traced.values()) == 1
    assert {tuple(str(v) for v in k) for k in keys} == set(traced)
    # and the run reached the same end as an uninterrupted one would
    summary = ledger.query("SELECT status, summary FROM runs WHERE run_id = ?", [run_id])[0]
    assert summary["status"] == "finished"
    state = json.loads(summary["summary"])
    best = Path(state["result"]["best_path"])
    assert MARKER in (best / "prompts" / "system.j2").read_text()
    assert (
        state["checkpoint"]["iteration"] == 4
        and state["checkpoint"]["incumbent"] == state["result"]["best_hash"]
    )
    assert len(decisions_once(ledger, run_id)) == 6  # baseline + the five scripted candidates


@pytest.mark.slow
def test_training_run_killed_three_times_loses_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, _seed = training_copy(tmp_path, budget_s=2.0)
    ledger = Ledger()
    store = home_dir() / "experiments"
    run_id = "opt-train-killtest"

    def stored() -> int:
        return len(list(store.glob("*.json"))) if store.is_dir() else 0

    # Kill points: with one baseline run stored (the other may be running), right after the first
    # candidate decision (before its checkpoint), and during the second wave.
    kill_points = [
        lambda: stored() >= 1,
        lambda: row_count(ledger, "decisions") >= 2,
        lambda: stored() >= 5,
    ]
    result = kill_and_resume("training", run_id, suite, kill_points, deadline_s=300)
    assert result["status"] == "finished"

    status = ledger.query("SELECT status, summary FROM runs WHERE run_id = ?", [run_id])[0]
    assert status["status"] == "finished"
    assert json.loads(status["summary"])["checkpoint"]["iteration"] == 2
    decisions = decisions_once(ledger, run_id)
    assert decisions[0] == (0, "baseline") and {i for i, _ in decisions} == {0, 1, 2}
    # every finished run is stored once, and has exactly one experiments row
    results = [json.loads(p.read_text()) for p in store.glob("*.json")]
    per_version = Counter(r["version_hash"] for r in results)
    rows = ledger.query(
        "SELECT version_hash, count(*) AS n FROM experiments WHERE run_id = ? GROUP BY version_hash", [run_id]
    )
    assert {r["version_hash"]: r["n"] for r in rows} == dict(per_version)
    # a finished run is never made again: re-runs are only runs a kill interrupted (at most two at a
    # time, the wave's width), never one whose result was stored. train.py runs sandboxed and cannot
    # write a log of its own, so the store's journal is the record (a kill may land between storing a
    # result and journalling it, hence done <= stored).
    journal = [json.loads(line) for line in (store / "journal.jsonl").read_text().splitlines()]
    asked = Counter(e["key"] for e in journal if e["event"] == "run")
    done_keys: set[str] = set()
    for event in journal:
        if event["event"] == "done":
            done_keys.add(event["key"])
        else:
            assert event["key"] not in done_keys, f"a stored run was made again: {event}"
    assert sum(asked.values()) - len(asked) <= 2 * len(kill_points)
    assert len(done_keys) <= len(results) and {p.stem for p in store.glob("*.json")} <= set(asked)
