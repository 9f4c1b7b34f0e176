"""What one rollout's model calls make of it (the one rule for failed rollouts), and what an
evaluation's rollouts sent, counted as a server would count them.

The runtime records every failed model call as `llm_error`; the cause the client classified
(`llm/failures.py`) decides what the rollout is: the agent's own request refused as too long or
malformed is the version's failure, any other failure for good is the infrastructure's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from harness_opt.llm.failures import REQUEST_FAULTS, describe
from harness_opt.records import CallCounts, Score


class Requests(BaseModel):
    """The model requests this evaluation sent, as a server's own log would count them."""

    attempts: int = Field(default=0, description="Requests of the rollouts run now, retries included.")
    answered: int = Field(default=0, description="Of those, requests answered.")
    retries: dict[str, int] = Field(default_factory=dict, description="Retries by cause.")
    failed: dict[str, int] = Field(default_factory=dict, description="Calls that failed for good, by cause.")
    cached: int = Field(default=0, description="Calls served from the response cache (nothing sent).")
    preflight: int = Field(default=0, description="Pre-flight requests sent before the first rollout.")

    @property
    def refused(self) -> int:
        """Attempts whose connection was refused: they never reached a server."""
        return self.retries.get("connection_refused", 0) + self.failed.get("connection_refused", 0)

    def add(self, counts: CallCounts) -> None:
        self.attempts += counts.attempts
        self.answered += counts.calls_ok
        self.cached += counts.cached
        for cause, n in counts.retries.items():
            self.retries[cause] = self.retries.get(cause, 0) + n
        for cause, n in counts.failed.items():
            self.failed[cause] = self.failed.get(cause, 0) + n


def apply_call_rule(
    score: Score,
    error: str | None,
    detail: str | None,
    calls: CallCounts,
    account_text: str,
    agent_failure: str | None,
) -> tuple[Score, str | None, str | None]:
    """The rollout's error kind as its failed model call says (the runtime calls every failure of a
    model call `llm_error`): a request of the agent's own (`agent_failure`, its cause) that the
    provider refused as too long or malformed is the version's failure (`context_overflow`,
    `bad_request`); any other failure for good is the infrastructure's (`llm_error`), also when the
    call was the suite's (a simulated user, or a judge the suite turned into a 0 without an error).
    One exception on the scorer's side: a judge that overflowed on the output scored an output the
    version chose to make that long, so that is the version's `context_overflow` too (else a harness
    could drop any task from its mean by padding its output past the judge's context)."""
    cause = calls.last_failure
    if cause is None:
        return score, error, detail
    if error == "llm_error" and agent_failure in REQUEST_FAULTS:
        return score, agent_failure, detail
    if error is None and cause == "context_overflow":
        why = f"the output overflowed the scorer's model: {account_text}"
        return Score(score=0.0, passed=False, feedback=why), "context_overflow", why
    if error is None:
        why = f"a model call of the scorer failed for good: {account_text}"
        return Score(score=0.0, passed=False, feedback=why), "llm_error", why
    if error == "llm_error" and detail and describe(cause) not in detail:
        detail = f"{describe(cause)}: {detail}"
    return score, error, detail


def unofficial(env: Any) -> bool:
    """Whether the suite scored this rollout without part of its official reward (τ²'s NL judge)."""
    info = getattr(env, "reward_info", None)
    if info is None:
        return False
    from harness_opt.suites.tau2_reward import is_official

    try:
        return not is_official(info)
    except Exception:  # not a τ² record
        return False
