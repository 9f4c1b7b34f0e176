"""`audit`: the holes in a run's traces (tokens, costs, tool results, final answers, truncation, reasons)."""

from __future__ import annotations

import pytest

from harness_opt.errors import UserError
from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.records import ErrorEvent, LLMCallEvent, OutputEvent, RolloutKey, ToolCallEvent, Trace
from harness_opt.testing import scripted_model
from harness_opt.trust.audit import audit, audit_trace
from tests.support.optimize import SEED, SUITE


def trace(events: list, **fields) -> Trace:
    key = RolloutKey(version_hash="h", suite="s", split="train", task_id="t", trial=0, model="m")
    return Trace(run_id="r", key=key, task_input={}, events=events, **fields)


def test_each_hole_is_counted() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    holes = trace(
        [
            LLMCallEvent(model="m", messages=msgs, response={"role": "assistant", "content": "x"}),
            LLMCallEvent(
                model="m",
                messages=msgs,
                response={"content": "cut"},
                tokens_in=5,
                tokens_out=24,
                params={"max_tokens": 24},
                cost_usd=0.1,
            ),
            LLMCallEvent(model="m", messages=msgs, response=None, tokens_in=1, tokens_out=1, cost_usd=0.1),
            ToolCallEvent(name="lookup", args={}),
            ErrorEvent(kind="crash", reason=" "),
        ],
        error="crash",
        error_detail="",
    )
    counts = audit_trace(holes)
    assert counts == {
        "missing_trace": 0,
        "llm_no_tokens": 1,
        "llm_no_cost": 1,
        "llm_no_response": 1,
        "tool_no_result": 1,
        "no_final_answer": 0,
        "truncated": 1,
        "error_no_reason": 2,
    }
    assert audit_trace(trace([OutputEvent(output="")]))["no_final_answer"] == 1
    good = trace(
        [
            LLMCallEvent(
                model="m", messages=msgs, response={"content": "ok"}, tokens_in=3, tokens_out=1, cost_usd=0.01
            ),
            OutputEvent(output="ok"),
        ],
        output="ok",
    )
    assert sum(audit_trace(good).values()) == 0


def test_audit_of_a_real_run_and_an_unknown_run() -> None:
    with scripted_model("audit", ["card_arrival"] * 10) as model:
        result = evaluate(SEED, SUITE, EvalConfig(split="val", limit=3, model=model.model))
    report = audit(result.run_id[:-2])  # a unique prefix is enough
    assert report.rollouts == 3 and report.llm_calls == 3
    counts = {i.kind: i.count for i in report.issues}
    assert counts["llm_no_tokens"] == 0 and counts["no_final_answer"] == 0 and counts["missing_trace"] == 0
    assert counts["llm_no_cost"] == 3  # the scripted model is free; reported, not held against the run
    assert report.clean and "0  LLM calls without token figures" in report.render()
    with pytest.raises(UserError, match="matches 0 runs"):
        audit("no-such-run")
