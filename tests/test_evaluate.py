"""The evaluator end to end with a scripted model: sandbox, scoring, traces, ledger, reuse, sealed test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness_opt.errors import SuiteError
from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.ledger import Ledger
from harness_opt.records import LLMCallEvent, OutputEvent
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"


@pytest.fixture(scope="module")
def suite():
    return load_suite(SUITE)


def oracle_for(suite, split: str, right_every: int = 2):
    """Answers the gold label for every `right_every`-th val task (by order), a wrong one otherwise."""
    gold = {t.input["text"]: t.expected for t in suite.tasks(split)}
    order = {t.input["text"]: i for i, t in enumerate(suite.tasks(split))}

    def respond(messages, tools, params):
        text = messages[-1]["content"].strip()
        return gold[text] if order[text] % right_every == 0 else "not_a_label"

    return respond


def test_eval_scores_records_and_reuses(suite):
    ledger = Ledger()
    with scripted_model("oracle", oracle_for(suite, "val"), cost_per_token=1e-6) as model:
        config = EvalConfig(split="val", limit=10, model=model.model, concurrency=4)
        first = evaluate(SEED, suite, config, ledger=ledger)
        calls_after_first = len(model.calls)
        second = evaluate(SEED, suite, config, ledger=ledger)

    # 10 tasks, every second one answered correctly -> 5 passes, score 0.5
    assert first.summary.n_rollouts == 10
    assert first.summary.score == pytest.approx(0.5)
    assert sum(r.passed for r in first.rollouts) == 5
    assert first.reused == 0 and first.model_calls == 10
    assert first.summary.cost_usd > 0  # the fake price flows through litellm's cost map
    # the second identical run is served from the ledger: zero model calls
    assert calls_after_first == 10 and len(model.calls) == 10
    assert second.reused == 10 and second.model_calls == 0
    assert second.summary.score == first.summary.score
    # one ledger row per rollout, not per evaluation
    rows = ledger.rollouts(version_hash=first.version_hash, split="val")
    assert len(rows) == 10


def test_trace_holds_the_conversation(suite):
    with scripted_model("always-card", ["card_arrival"] * 3) as model:
        result = evaluate(SEED, suite, EvalConfig(split="val", limit=3, model=model.model, concurrency=1))
    rollout = result.rollouts[0]
    trace = read_trace(rollout.trace_ref)
    assert trace.key.task_id == rollout.task_id
    llm = [e for e in trace.events if isinstance(e, LLMCallEvent)]
    assert len(llm) == 1
    assert llm[0].messages[0]["role"] == "system" and "card_arrival" in llm[0].messages[0]["content"]
    assert llm[0].messages[1]["content"] == suite.tasks("val")[0].input["text"]
    assert llm[0].tokens_in > 0 and llm[0].tokens_out == 1
    assert any(isinstance(e, OutputEvent) and e.output == "card_arrival" for e in trace.events)
    assert "expected" in trace.feedback


def test_trials_are_separate_keys(suite):
    with scripted_model("k", lambda m, t, p: "card_arrival") as model:
        result = evaluate(SEED, suite, EvalConfig(split="val", limit=2, trials=3, model=model.model))
    assert sorted((r.task_id, r.trial) for r in result.rollouts) == sorted(
        (t.id, k) for t in suite.tasks("val")[:2] for k in range(3)
    )


def test_test_split_is_sealed(suite):
    with pytest.raises(SuiteError, match="sealed"):
        evaluate(SEED, suite, EvalConfig(split="test", model="scripted/none"))


def test_crashing_harness_scores_zero_with_reason(tmp_path, suite):
    broken = tmp_path / "crashy"
    shutil.copytree(SEED, broken)
    (broken / "agent.py").write_text("def run(task, ctx):\n    raise ValueError('boom')\n")
    with scripted_model("unused", ["x"]) as model:
        result = evaluate(broken, suite, EvalConfig(split="val", limit=2, model=model.model))
    assert all(r.score == 0 and r.error == "crash" for r in result.rollouts)
    assert "boom" in (result.rollouts[0].error_detail or "")
    assert result.summary.errors == {"crash": 2}


def test_killed_run_recovers_unflushed_rollouts_from_traces(suite):
    """A row lost from the in-memory batch is restored from its trace line, not re-run."""
    ledger = Ledger()
    with scripted_model("r", lambda m, t, p: "card_arrival") as model:
        config = EvalConfig(split="val", limit=4, model=model.model)
        first = evaluate(SEED, suite, config, ledger=ledger)
        # simulate a crash between trace write and ledger flush: drop the rows from the ledger file
        import duckdb

        con = duckdb.connect(str(ledger.path))
        con.execute("DELETE FROM rollouts")
        con.close()
        again = evaluate(SEED, suite, config, ledger=ledger)
    assert len(model.calls) == 4  # nothing re-run
    assert again.reused == 4
    assert {r.task_id for r in again.rollouts} == {r.task_id for r in first.rollouts}
    assert len(ledger.rollouts(version_hash=first.version_hash)) == 4


def test_run_row_holds_config_and_summary(suite):
    ledger = Ledger()
    with scripted_model("s", lambda m, t, p: "card_arrival") as model:
        result = evaluate(SEED, suite, EvalConfig(split="val", limit=2, model=model.model), ledger=ledger)
    rows = ledger.query("SELECT kind, status, config, summary FROM runs WHERE run_id = ?", [result.run_id])
    assert rows[0]["kind"] == "eval" and rows[0]["status"] == "ok"
    config = rows[0]["config"] if isinstance(rows[0]["config"], dict) else json.loads(rows[0]["config"])
    assert config["version_hash"] == result.version_hash and config["model"] == model.model


def test_a_failed_judge_call_is_an_infrastructure_failure_not_a_zero(suite):
    """The judge's model refused the call: the suite turned that into a score of 0 with no error; the
    evaluator sees the failed call in the rollout's account and reports it apart, unscored."""
    from harness_opt.suites.judge import LLMJudge
    from harness_opt.testing import Fail

    class Judged:
        def __init__(self, judge: LLMJudge) -> None:
            self.judge = judge

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(suite, name)

        def score(self, task, output, env):  # type: ignore[no-untyped-def]
            return self.judge(task, output)

    ledger = Ledger()
    refusing = scripted_model("judge-j", [Fail("auth")] * 10)
    with scripted_model("agent-j", lambda m, t, p: "card_arrival") as agent, refusing as judge:
        judged = Judged(LLMJudge("Be right.", judge.model))
        result = evaluate(SEED, judged, EvalConfig(limit=3, model=agent.model), ledger=ledger)
    assert {r.error for r in result.rollouts} == {"llm_error"}
    assert all("scorer failed for good" in (r.error_detail or "") for r in result.rollouts)
    assert result.summary.infra_failures == {"llm_error": 3} and result.summary.n_scored == 0
    assert result.status == "degraded"
    assert ledger.cached_rollouts([r.key for r in result.rollouts]) == {}  # retried by the next run


def test_the_summary_scores_only_what_did_not_fail_for_infrastructure_reasons():
    from harness_opt.evaluate.summary import summarize
    from harness_opt.records import Rollout

    def row(task: str, score: float, error: str | None = None, **extra: object) -> Rollout:
        return Rollout(
            run_id="r",
            version_hash="v",
            suite="s",
            split="val",
            task_id=task,
            trial=0,
            model="m",
            score=score,
            passed=score == 1.0,
            error=error,
            **extra,
        )  # type: ignore[arg-type]

    rows = [
        row("a", 1.0, llm_attempts=3, llm_retries=2, llm_retry_causes={"server_error": 2}, llm_calls_ok=1),
        row("b", 0.0, "timeout", llm_attempts=1, llm_calls_ok=1),
        row("c", 0.0, "llm_error", llm_attempts=5, llm_retry_causes={"connection_refused": 4}),
        row("d", 0.0, "sandbox"),
        row("e", 0.0, "context_overflow", llm_attempts=1),
    ]
    s = summarize(rows, max_infra_failures=0.5)
    assert s.n_rollouts == 5 and s.n_scored == 3 and s.n_tasks == 3
    assert s.score == pytest.approx(1 / 3) and s.pass_rate == pytest.approx(1 / 3)  # a, b, e; not c, d
    assert s.infra_failures == {"llm_error": 1, "sandbox": 1}
    assert s.errors == {"timeout": 1, "llm_error": 1, "sandbox": 1, "context_overflow": 1}
    assert s.llm_attempts == 10 and s.llm_calls_ok == 2
    assert s.llm_retries == {"server_error": 2, "connection_refused": 4}
    assert not s.degraded and s.degraded_reason() is None  # 40% <= 50%
    strict = summarize(rows)  # the default 5%
    assert strict.degraded and "2 of 5 rollouts (40.0%)" in (strict.degraded_reason() or "")
    assert strict.model_dump()["degraded"] is True and strict.model_dump()["n_infra"] == 2
