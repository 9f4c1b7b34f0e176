"""pass^k for k = 1..trials from a set of rollouts: the reliability figures τ²-bench reports.

pass^k is the chance that k independent trials of a task *all* succeed, averaged over tasks
(`stats.pass_hat_k`: C(c, k) / C(n, k) per task). With n trials per task it is defined for k <= n,
so the table stops at the smallest trial count of any task.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness_opt.evaluate.stats import pass_hat_k
from harness_opt.records import Rollout


def successes_by_task(rollouts: Iterable[Rollout]) -> dict[str, tuple[int, int]]:
    """{task_id: (passed trials, trials)}. A rollout that errored counts as a failed trial."""
    counts: dict[str, list[int]] = {}
    for r in rollouts:
        c = counts.setdefault(r.task_id, [0, 0])
        c[0] += int(r.passed)
        c[1] += 1
    return {task: (c, n) for task, (c, n) in counts.items()}


def pass_k_table(rollouts: Iterable[Rollout], max_k: int | None = None) -> dict[int, float]:
    """{k: pass^k} for k = 1..min(trials per task, max_k), as fractions in [0, 1].

    Raises ValueError when there are no rollouts, since an empty table would read as a 0% score.
    """
    by_task = successes_by_task(rollouts)
    if not by_task:
        raise ValueError("pass_k_table: no rollouts")
    top = min(n for _, n in by_task.values())
    if max_k is not None:
        top = min(top, max_k)
    return {k: pass_hat_k(by_task, k) for k in range(1, top + 1)}
