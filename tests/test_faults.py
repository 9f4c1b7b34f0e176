"""Honest results under faults: a server that fails on purpose (tests/support/faulty_llm.py), and the
figures an evaluation reports set beside the server's own count of what it received.

The one rule: a rollout whose model call failed for an infrastructure reason is counted apart, is not
a 0 in the score and is not dropped; above the threshold the evaluation is degraded. Permanent
failures are not retried; an unreachable endpoint or a refused key fails before the first rollout.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from harness_opt.errors import ModelError
from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.ledger import Ledger
from harness_opt.llm.client import LLMConfig
from harness_opt.suites.loader import load_suite
from tests.support.faulty_llm import faulty_llm

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"
MODEL = "openai/faulty"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def fast(url: str, **changes: object) -> LLMConfig:
    """Retries that give up within a fraction of a second, so an outage of 2 s costs rollouts."""
    return LLMConfig(
        api_base=url, max_retries=2, backoff_base_s=0.05, backoff_max_s=0.2, timeout_s=20, **changes
    )


def config(url: str, **changes: object) -> EvalConfig:
    base: dict[str, object] = {"split": "val", "limit": 40, "model": MODEL, "concurrency": 4}
    base["llm"] = fast(url)
    return EvalConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_an_outage_and_failing_calls_are_counted_as_the_server_counts_them() -> None:
    """30% of calls fail and the server goes down for 2 s: the summary's request figures equal the
    server's own counts, the lost rollouts are counted apart (not a 0 in the score), the run is
    degraded, and a re-run sends exactly one request per lost rollout."""
    suite = load_suite(SUITE)
    ledger = Ledger()
    with faulty_llm(fail_rate=0.3, outage_at=12, outage_s=2.0, seed=3) as server:
        result = evaluate(SEED, suite, config(server.url), ledger=ledger)
        r = result.requests
        unreached = r.refused + r.retries.get("connection", 0) + r.failed.get("connection", 0)
        assert r.refused > 0, f"the outage was not seen: {r}"  # it happened while rollouts ran
        assert server.preflight == r.preflight >= 1
        assert server.received == r.attempts - unreached + r.preflight
        assert server.outcomes["ok"] == r.answered
        assert server.outcomes["500"] == r.retries.get("server_error", 0) + r.failed.get("server_error", 0)
        assert r.attempts == r.answered + sum(r.retries.values()) + sum(r.failed.values())

        s = result.summary
        lost = [x for x in result.rollouts if x.error == "llm_error"]
        assert lost and s.infra_failures == {"llm_error": len(lost)}
        assert s.n_scored == s.n_rollouts - len(lost) == 40 - len(lost)
        scored = [x for x in result.rollouts if x.error != "llm_error"]
        by_task = {x.task_id: x.score for x in scored}
        assert s.score == pytest.approx(statistics.fmean(by_task.values()))  # not diluted by 0s
        assert s.llm_attempts == r.attempts and s.llm_calls_ok == r.answered  # per-rollout figures add up
        assert result.status == "degraded" and result.degraded and "llm_error" in result.degraded
        rows = ledger.rollouts(run_id=result.run_id)
        assert sum(x.llm_attempts for x in rows) == r.attempts
        assert sum(x.llm_retries for x in rows) == sum(r.retries.values())
        run = ledger.query("SELECT status, summary FROM runs WHERE run_id = ?", [result.run_id])[0]
        assert run["status"] == "degraded"

        # the first evaluation can end inside the 2 s outage (its retries give up in 0.25 s): the
        # re-run is about reuse, so it starts once the server is back
        deadline = time.monotonic() + 10
        while server.down_since is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.down_since is None, "the server did not come back from its outage"
        server.fail_rate, before = 0.0, server.received
        again = evaluate(SEED, suite, config(server.url), ledger=ledger)
    assert again.reused == 40 - len(lost) and again.executed == len(lost)
    assert server.received - before == len(lost)  # one request per lost rollout, nothing else
    assert again.status == "ok" and again.summary.n_infra == 0 and again.summary.n_scored == 40


def test_a_context_overflow_is_not_retried_and_is_a_counted_task_failure() -> None:
    suite = load_suite(SUITE)
    ledger = Ledger()
    with faulty_llm(context_words=3) as server:
        first = evaluate(SEED, suite, config(server.url, limit=6), ledger=ledger)
        assert server.received == 6 + first.requests.preflight  # one attempt each: no retries
        again = evaluate(SEED, suite, config(server.url, limit=6), ledger=ledger)
        assert server.received == 6 + first.requests.preflight  # served from the ledger
    assert {x.error for x in first.rollouts} == {"context_overflow"}
    assert first.summary.n_scored == 6 and first.summary.score == 0.0 and first.status == "ok"
    assert first.requests.failed == {"context_overflow": 6} and not first.requests.retries
    assert again.reused == 6


@pytest.mark.parametrize(
    ("settings", "expected"),
    [({"api_key": "the-right-one"}, "refused the key"), ({"models": {"other"}}, "does not serve this model")],
)
def test_a_refused_key_or_an_unknown_model_fails_before_any_rollout(
    settings: dict[str, object], expected: str
) -> None:
    ledger = Ledger()
    with faulty_llm(**settings) as server:
        with pytest.raises(ModelError, match=expected) as info:
            evaluate(SEED, load_suite(SUITE), config(server.url), ledger=ledger)
        assert server.received == 1 and server.preflight == 1  # the pre-flight call, and nothing else
    assert server.url in info.value.message and "\n" not in info.value.message
    assert ledger.rollouts() == []
    assert [r["status"] for r in ledger.query("SELECT status FROM runs")] == ["refused"]


def test_an_unreachable_endpoint_fails_fast_with_one_clear_error() -> None:
    with faulty_llm() as server:
        server.down()
        started = time.monotonic()
        with pytest.raises(ModelError, match="cannot reach") as info:
            evaluate(SEED, load_suite(SUITE), config(server.url, limit=200))
    assert time.monotonic() - started < 30  # not 200 rollouts grinding through retries
    assert "connection refused" in info.value.message and server.url in info.value.message
    assert "InternalServerError" not in info.value.message


def test_the_cli_says_degraded_and_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    from harness_opt.cli.app import run_command

    with faulty_llm(fail_after=4) as server:
        args = [
            "eval",
            str(SEED),
            "--suite",
            str(SUITE),
            "--limit",
            "8",
            "--model",
            MODEL,
            "--api-base",
            server.url,
            "--max-retries",
            "1",
            "--backoff-base-s",
            "0.01",
        ]
        code = run_command(args)
    out = capsys.readouterr().out
    assert code == 3, out
    assert "DEGRADED:" in out and "infrastructure failures (not scored)" in out
    assert "llm_error" in out and "requests sent:" in out


def test_doctor_noise_is_never_pass_when_the_rerun_fails(isolated_home: Path) -> None:
    from harness_opt.trust.doctor import doctor

    # pre-flight and the 10 baseline calls answer; every call of the rerun fails
    with faulty_llm(fail_after=11) as server:
        report = doctor(SUITE, SEED, model=MODEL, llm=fast(server.url))
    lines = {line.check: line for line in report.lines}
    assert lines["noise"].status == "FAIL" and "degraded" in lines["noise"].detail
    assert report.failed


def test_a_degraded_candidate_is_not_judged(seed_copy: Path) -> None:
    """The candidate answers 7 of 10 val tasks right and loses the other 3 to a failing model: scored
    as 0s that looked like a significant gain; now it is not judged at all."""
    from harness_opt.testing import Fail
    from tests.support.optimize import MARKER, ScriptedProposer, gold_by_text, marker_rounds, run_scripted

    gold = gold_by_text()
    from harness_opt.suites.loader import load_suite as load

    lost = {t.input["text"] for t in load(SUITE).tasks("val")[7:10]}

    def respond(messages, tools, params):  # type: ignore[no-untyped-def]
        text = messages[-1]["content"].strip()
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        if MARKER not in system:
            return "not_a_label"
        return Fail("unavailable") if text in lost else gold.get(text, "unknown")

    proposer = ScriptedProposer([marker_rounds()[2]])
    no_retries = LLMConfig(max_retries=0)
    result = run_scripted(seed_copy, respond, proposer, llm=no_retries, budget={"iterations": 1})
    [candidate] = [c for c in result.candidates if c.mechanism == "think-first"]
    assert candidate.outcome == "rejected"
    assert "not judged" in candidate.reason and "degraded" in candidate.reason
    assert result.best_hash == result.baseline_hash


def test_recovery_imports_only_traces_of_runs_this_ledger_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh home beside a traces folder another ledger wrote is fresh: nothing is imported from
    it, the evaluation runs, and its summary does not claim rollouts it never ran."""
    shared = tmp_path / "shared-traces"
    suite = load_suite(SUITE)
    with faulty_llm() as server:
        monkeypatch.setenv("HARNESS_OPT_HOME", str(tmp_path / "a"))
        monkeypatch.setenv("HARNESS_OPT_TRACES", str(shared))
        first = evaluate(SEED, suite, config(server.url, limit=5))
        monkeypatch.setenv("HARNESS_OPT_HOME", str(tmp_path / "b"))  # a new ledger, same traces folder
        before = server.received
        second = evaluate(SEED, suite, config(server.url, limit=5))
        assert server.received - before == 5
    assert second.reused == 0 and second.executed == 5
    assert {r.run_id for r in Ledger().rollouts()} == {second.run_id} != {first.run_id}


def test_traces_live_under_the_home_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from harness_opt.home import traces_dir

    monkeypatch.delenv("HARNESS_OPT_TRACES")
    monkeypatch.setenv("HARNESS_OPT_HOME", str(tmp_path / "h"))
    monkeypatch.chdir(tmp_path)
    assert traces_dir() == tmp_path / "h" / "traces" and not (tmp_path / "traces").exists()
    assert os.environ.get("HARNESS_OPT_TRACES") is None
