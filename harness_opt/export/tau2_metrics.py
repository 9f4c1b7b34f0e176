"""The leaderboard figures of a trajectories file, computed exactly as τ²'s `compute_metrics` does.

τ²'s validator compares the pass^k and cost figures of submission.json with its own recomputation
using `!=`, not a tolerance, so "close" is a mismatch warning. Its recomputation is pandas: per task
(grouped by task id, sorted) C(successes, k) / C(trials, k); the task rows sorted by number of gold
actions with numpy's default (unstable) quicksort; then the column mean, which numpy sums pairwise.
Float addition is not associative, so the order matters in the last bits (pass^2 sums sixths). We
reproduce each step with numpy itself, so the figures are τ²'s to the bit, never rounded.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from pydantic import BaseModel, Field

from harness_opt.export.tau2_format import DomainResults
from harness_opt.suites.tau2_models import Results, Task
from harness_opt.suites.tau2_reward import is_successful


class Tau2Metrics(BaseModel):
    """What τ²'s leaderboard takes from one trajectories file (fractions, not percent)."""

    pass_hat_ks: dict[int, float] = Field(description="pass^k for k = 1 .. the fewest trials of a task.")
    avg_agent_cost: float | None = Field(description="Mean agent cost per simulation; None if NaN.")
    simulations: int
    tasks: int


def pass_hat_k(trials: int, successes: int, k: int) -> float:
    """Chance that k trials drawn without replacement from `trials` all succeed."""
    if trials < k:
        raise ValueError(f"{trials} trials are fewer than k={k}")
    return math.comb(successes, k) / math.comb(trials, k)


def num_actions(task: Task) -> int:
    """τ²'s `task_num_actions`: gold actions of agent and user; -1 for a single transfer action."""
    actions = (task.evaluation_criteria.actions if task.evaluation_criteria else None) or []
    if len(actions) == 1 and "transfer" in actions[0].name.lower():
        return -1
    return len(actions)


def _mean(values: list[float]) -> float:
    """pandas' `Series.mean` of a float column: NaN skipped, numpy's pairwise sum / count."""
    array = np.asarray(values, dtype=np.float64)
    nan = np.isnan(array)
    count = int((~nan).sum())
    if count == 0:
        return math.nan
    if nan.any():
        array = np.where(nan, 0.0, array)
    return float(array.sum(dtype=np.float64) / np.float64(count))


def compute_metrics(results: Results) -> Tau2Metrics:
    """pass^k and mean agent cost of `results`, as τ²'s `tau2.metrics.agent_metrics.compute_metrics`.

    Simulations ended by an infrastructure error are left out; k runs to the fewest trials any task
    has (capped by `info.num_trials`). Raises ValueError when a simulation's task is not in
    `results.tasks` (τ² fails there too)."""
    sims = [s for s in results.simulations if s.termination_reason != "infrastructure_error"]
    if not sims:
        return Tau2Metrics(pass_hat_ks={}, avg_agent_cost=0.0, simulations=0, tasks=0)
    tasks = {t.id: t for t in results.tasks}
    by_task: dict[str, list[bool]] = defaultdict(list)
    for sim in sims:
        if sim.task_id not in tasks:
            raise ValueError(f"simulation {sim.id} is of task {sim.task_id!r}, which is not in tasks")
        by_task[sim.task_id].append(is_successful(sim.reward_info.reward if sim.reward_info else None))
    max_k = min(results.info.num_trials, min(len(v) for v in by_task.values()))
    ids = sorted(by_task)  # pandas groupby order
    # sort_values(by="num_actions"): numpy's argsort, default kind, over the int64 column
    order = np.asarray([num_actions(tasks[i]) for i in ids], dtype=np.int64).argsort(kind="quicksort")
    pass_hat_ks = {}
    for k in range(1, max_k + 1):
        per_task = [pass_hat_k(len(by_task[i]), sum(by_task[i]), k) for i in ids]
        pass_hat_ks[k] = _mean([per_task[j] for j in order])
    costs = [math.nan if s.agent_cost is None else s.agent_cost for s in sims]
    cost = _mean(costs)
    return Tau2Metrics(
        pass_hat_ks=pass_hat_ks,
        avg_agent_cost=None if math.isnan(cost) else cost,
        simulations=len(sims),
        tasks=len(by_task),
    )


def leaderboard_figures(metrics: Tau2Metrics) -> DomainResults:
    """submission.json's `results.<domain>`: pass_1..pass_4 in percent (`v * 100`, unrounded, as
    τ²'s prepare and validate compute them) and the mean agent cost."""

    def pct(k: int) -> float | None:
        return metrics.pass_hat_ks[k] * 100 if k in metrics.pass_hat_ks else None

    return DomainResults(
        pass_1=pct(1), pass_2=pct(2), pass_3=pct(3), pass_4=pct(4), cost=metrics.avg_agent_cost
    )
