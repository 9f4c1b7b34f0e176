"""The figures printed at the end of an evaluation, computed from ledger rows only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from harness_opt.evaluate.stats import mean_ci_clustered, percentile, wilson
from harness_opt.records import Rollout


class EvalSummary(BaseModel):
    n_rollouts: int
    n_tasks: int
    score: float
    score_ci: tuple[float, float]
    pass_rate: float
    pass_ci: tuple[float, float]
    cost_usd: float
    tokens_in: int
    tokens_out: int
    latency_p50_s: float
    latency_p95_s: float
    errors: dict[str, int]


def summarize(rollouts: Sequence[Rollout]) -> EvalSummary:
    """Score with a 95% CI clustered by task (trials of one task are not independent)."""
    by_task: dict[str, list[float]] = {}
    for r in rollouts:
        by_task.setdefault(r.task_id, []).append(r.score)
    mean, lo, hi = mean_ci_clustered(by_task) if by_task else (0.0, 0.0, 0.0)
    passed = sum(r.passed for r in rollouts)
    p_lo, p_hi = wilson(passed, len(rollouts)) if rollouts else (0.0, 0.0)
    latencies = [r.latency_s for r in rollouts]
    return EvalSummary(
        n_rollouts=len(rollouts),
        n_tasks=len(by_task),
        score=mean,
        score_ci=(lo, hi),
        pass_rate=passed / len(rollouts) if rollouts else 0.0,
        pass_ci=(p_lo, p_hi),
        cost_usd=sum(r.cost_usd for r in rollouts),
        tokens_in=sum(r.tokens_in for r in rollouts),
        tokens_out=sum(r.tokens_out for r in rollouts),
        latency_p50_s=percentile(latencies, 50) if latencies else 0.0,
        latency_p95_s=percentile(latencies, 95) if latencies else 0.0,
        errors=dict(Counter(r.error for r in rollouts if r.error)),
    )
