"""The one rule for failed model calls, at the scorer's side: who a judge's failure belongs to."""

from __future__ import annotations

from harness_opt.evaluate.outcome import apply_call_rule
from harness_opt.records import CallCounts, Score

SCORED = Score(score=0.0, passed=False, feedback="the judge could not answer")


def test_an_output_that_overflows_the_judge_is_the_versions_failure() -> None:
    """Padding an output past the judge's context must not drop the task from the mean."""
    calls = CallCounts(attempts=1, failed={"context_overflow": 1}, last_failure="context_overflow")
    score, error, detail = apply_call_rule(SCORED, None, None, calls, "1 call, 1 failed", None)
    assert (score.score, score.passed, error) == (0.0, False, "context_overflow")
    assert detail is not None and "overflowed" in detail


def test_a_judge_outage_stays_the_infrastructures() -> None:
    calls = CallCounts(attempts=5, failed={"server_error": 1}, last_failure="server_error")
    score, error, detail = apply_call_rule(SCORED, None, None, calls, "5 attempts", None)
    assert error == "llm_error" and detail is not None and "scorer failed for good" in detail
    assert score.score == 0.0


def test_a_rollout_without_a_failed_call_is_left_alone() -> None:
    kept = Score(score=1.0, passed=True)
    assert apply_call_rule(kept, None, None, CallCounts(attempts=1, calls_ok=1), "", None) == (
        kept,
        None,
        None,
    )
