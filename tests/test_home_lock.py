"""One writer per ledger, tested with two real processes; and a run's status is true however it ends:
Ctrl-C, SIGTERM, a crash (interrupted / failed, with the resume hint printed), or a kill -9 (the stale
`running` row is shown dead by its process id)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness_opt.ledger import Ledger
from harness_opt.ledger.writer import run_liveness, writer_lock
from tests.support.faulty_llm import FaultyServer, faulty_llm

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"
MODEL = "openai/slow"


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with faulty_llm(delay_s=0.25) as slow:  # one rollout a quarter second: a run that lasts
        yield slow


def harness_opt(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness_opt", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": "sk-test", "COLUMNS": "200", **(env or {})},
        cwd=REPO,
    )


def eval_args(server: FaultyServer, limit: int = 40) -> list[str]:
    return [
        "eval",
        str(SEED),
        "--suite",
        str(SUITE),
        "--limit",
        str(limit),
        "--concurrency",
        "1",
        "--model",
        MODEL,
        "--api-base",
        server.url,
    ]


def wait_for(server: FaultyServer, requests: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the process has sent `requests` requests (it is well inside its run)."""
    deadline = time.monotonic() + timeout
    while server.received < requests:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended early ({proc.returncode}): {out[-2000:]} {err[-2000:]}")
        assert time.monotonic() < deadline, "the process never got going"
        time.sleep(0.1)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def runs() -> list[dict[str, Any]]:
    return Ledger().query("SELECT run_id, kind, status, pid, host FROM runs ORDER BY started")


def test_a_second_eval_or_optimize_on_the_same_ledger_is_refused_naming_the_first(
    server: FaultyServer,
) -> None:
    first = harness_opt(*eval_args(server, limit=200))  # a minute of work: busy all along
    try:
        wait_for(server, 3, first)
        code, _, err = finish(harness_opt(*eval_args(server)))
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1, err
        assert f"another harness-opt process is writing this ledger: pid {first.pid}" in errors[0]
        assert "harness-opt eval" in errors[0] and "HARNESS_OPT_LOCK_WAIT" in errors[0]
        optimize = harness_opt(
            "optimize", str(SEED), "--suite", str(SUITE), "--model", MODEL, "--api-base", server.url
        )
        code, _, err = finish(optimize)
        assert code == 2 and f"pid {first.pid}" in err, err
        assert first.poll() is None  # refused while the first was still writing
    finally:
        first.send_signal(signal.SIGTERM)
        finish(first)
    assert [(r["kind"], r["status"]) for r in runs()] == [("eval", "interrupted")]  # no second run row


def test_a_second_eval_may_wait_for_the_first_instead(server: FaultyServer) -> None:
    first = harness_opt(*eval_args(server, limit=12))
    wait_for(server, 3, first)
    second = harness_opt(*eval_args(server, limit=12), env={"HARNESS_OPT_LOCK_WAIT": "300"})
    code, out, err = finish(second)
    assert finish(first)[0] == 0
    assert code == 0 and "All 12 rollouts were served from the ledger" in out, out + err
    assert [r["status"] for r in runs()] == ["ok", "ok"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_the_eval_interrupted_with_the_resume_hint(
    server: FaultyServer, sig: signal.Signals, code: int
) -> None:
    proc = harness_opt(*eval_args(server))
    wait_for(server, 4, proc)
    proc.send_signal(sig)
    returned, out, err = finish(proc)
    [run] = runs()
    assert returned == code, err
    assert run["status"] == "interrupted"
    assert f"run {run['run_id']} is marked interrupted; re-run the same command to resume" in err
    assert "Traceback" not in out + err


def test_an_interrupted_optimize_prints_how_to_resume_it(server: FaultyServer) -> None:
    proc = harness_opt(
        "optimize",
        str(SEED),
        "--suite",
        str(SUITE),
        "--model",
        MODEL,
        "--api-base",
        server.url,
        "--val-limit",
        "20",
        "--concurrency",
        "1",
        "--force",
    )
    wait_for(server, 6, proc)
    proc.send_signal(signal.SIGINT)
    returned, _, err = finish(proc)
    optimize = [r for r in runs() if r["kind"] == "optimize"]
    assert returned == 130 and optimize and optimize[0]["status"] == "interrupted", err
    assert f"resume: harness-opt optimize ... --resume {optimize[0]['run_id']}" in err


def test_a_killed_run_is_shown_dead_by_its_process_id(server: FaultyServer) -> None:
    proc = harness_opt(*eval_args(server))
    wait_for(server, 3, proc)
    proc.kill()
    proc.wait()
    [run] = runs()
    assert run["status"] == "running" and run["pid"] == proc.pid  # nothing could close it
    assert run_liveness(run, Ledger().path) == "dead"
    code, out, err = finish(harness_opt("runs"))
    assert code == 0 and "dead (was running; its process is gone)" in out, out + err
    assert f"run {run['run_id']} died without closing" in out


def test_a_running_row_of_a_live_writer_is_not_dead(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.start_run("r-live", "eval", {})
    [row] = runs()
    assert run_liveness(row, ledger.path) == "dead"  # recorded by this process, but no writer lock held
    with writer_lock(ledger.path, "test"):
        assert run_liveness(row, ledger.path) == "running"
    assert run_liveness({**row, "pid": 2**22 + 7}, ledger.path) == "dead"  # no such process


def test_a_crash_leaves_the_run_failed() -> None:
    from harness_opt.evaluate.evaluator import EvalConfig, evaluate
    from harness_opt.suites.loader import load_suite
    from harness_opt.testing import scripted_model

    suite = load_suite(SUITE)

    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(suite, name)

        def environment(self, task: Any) -> Any:
            raise RuntimeError("the environment broke")

    with scripted_model("crash", ["x"] * 5) as model, pytest.raises(RuntimeError, match="broke"):
        evaluate(SEED, Broken(), EvalConfig(limit=2, model=model.model))  # type: ignore[arg-type]
    [run] = runs()
    assert run["status"] == "failed"
    summary = Ledger().query("SELECT summary FROM runs")[0]["summary"]
    assert "the environment broke" in summary
