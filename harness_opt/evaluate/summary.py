"""The figures printed at the end of an evaluation, computed from ledger rows only.

The one rule for failed rollouts (`records.INFRA_ERRORS`): a rollout that failed for an
infrastructure reason (a model call that failed for good, a sandbox that did not start, a scorer
that crashed) is not a 0 in the score and is not dropped either. The score, its interval and the
pass rate are over the other rollouts; the infrastructure failures are counted apart, by kind; and
an evaluation with more of them than its threshold is `degraded`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field, computed_field

from harness_opt.evaluate.stats import mean_ci_clustered, percentile, wilson
from harness_opt.records import Rollout, is_infra_error


class Degraded(Exception):
    """A run ended degraded (too many infrastructure failures); the command exits 3 (`cli/app.py`).
    `shown`: its figures and the reason were already printed."""

    def __init__(self, reason: str, *, shown: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.shown = shown


DEFAULT_MAX_INFRA_FAILURES = 0.05
"""Share of rollouts that may fail for infrastructure reasons before an evaluation is degraded."""


class EvalSummary(BaseModel):
    n_rollouts: int = Field(description="Every rollout of the evaluation, infrastructure failures included.")
    n_tasks: int = Field(description="Tasks with at least one scored rollout.")
    score: float = Field(description="Mean over tasks of the scored rollouts (infrastructure failures out).")
    score_ci: tuple[float, float]
    pass_rate: float
    pass_ci: tuple[float, float]
    cost_usd: float
    tokens_in: int
    tokens_out: int
    latency_p50_s: float
    latency_p95_s: float
    errors: dict[str, int] = Field(description="Every error kind, task and infrastructure failures alike.")
    n_scored: int = Field(default=0, description="Rollouts the score is over.")
    infra_failures: dict[str, int] = Field(
        default_factory=dict, description="Infrastructure failures by kind (not in the score)."
    )
    max_infra_failures: float = Field(default=DEFAULT_MAX_INFRA_FAILURES)
    llm_attempts: int = Field(default=0, description="Model requests sent for these rollouts (with retries).")
    llm_calls_ok: int = Field(default=0, description="Model requests answered.")
    llm_retries: dict[str, int] = Field(default_factory=dict, description="Retries by cause.")
    unofficial: int = Field(
        default=0, description="Rollouts scored without part of the official reward (τ²'s NL judge)."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_infra(self) -> int:
        return sum(self.infra_failures.values())

    @property
    def infra_share(self) -> float:
        return self.n_infra / self.n_rollouts if self.n_rollouts else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def degraded(self) -> bool:
        """More infrastructure failures than the threshold allows: the score cannot be trusted."""
        return self.n_rollouts > 0 and (self.infra_share > self.max_infra_failures or self.n_scored == 0)

    def degraded_reason(self) -> str | None:
        """One line saying why the evaluation is degraded, or None when it is not."""
        if not self.degraded:
            return None
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.infra_failures.items()))
        return (
            f"{self.n_infra} of {self.n_rollouts} rollouts ({self.infra_share:.1%}) failed for "
            f"infrastructure reasons ({kinds}), above the {self.max_infra_failures:.0%} allowed"
        )


def summarize(
    rollouts: Sequence[Rollout], *, max_infra_failures: float = DEFAULT_MAX_INFRA_FAILURES
) -> EvalSummary:
    """Score with a 95% CI clustered by task (trials of one task are not independent), over the
    rollouts that did not fail for an infrastructure reason; those are counted apart."""
    scored = [r for r in rollouts if not is_infra_error(r.error)]
    by_task: dict[str, list[float]] = {}
    for r in scored:
        by_task.setdefault(r.task_id, []).append(r.score)
    mean, lo, hi = mean_ci_clustered(by_task) if by_task else (0.0, 0.0, 0.0)
    passed = sum(r.passed for r in scored)
    p_lo, p_hi = wilson(passed, len(scored)) if scored else (0.0, 0.0)
    latencies = [r.latency_s for r in scored]
    retries: Counter[str] = Counter()
    for r in rollouts:
        retries.update(r.llm_retry_causes)
    return EvalSummary(
        n_rollouts=len(rollouts),
        n_tasks=len(by_task),
        score=mean,
        score_ci=(lo, hi),
        pass_rate=passed / len(scored) if scored else 0.0,
        pass_ci=(p_lo, p_hi),
        cost_usd=sum(r.cost_usd for r in rollouts),
        tokens_in=sum(r.tokens_in for r in rollouts),
        tokens_out=sum(r.tokens_out for r in rollouts),
        latency_p50_s=percentile(latencies, 50) if latencies else 0.0,
        latency_p95_s=percentile(latencies, 95) if latencies else 0.0,
        errors=dict(Counter(r.error for r in rollouts if r.error)),
        n_scored=len(scored),
        infra_failures=dict(Counter(r.error for r in rollouts if r.error and is_infra_error(r.error))),
        max_infra_failures=max_infra_failures,
        llm_attempts=sum(r.llm_attempts for r in rollouts),
        llm_calls_ok=sum(r.llm_calls_ok for r in rollouts),
        llm_retries=dict(retries),
        unofficial=sum(1 for r in rollouts if r.unofficial),
    )
