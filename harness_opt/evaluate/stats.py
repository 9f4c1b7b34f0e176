"""Statistics the tool reports and decides with: intervals, paired tests, pass^k, detectable effects.

Pure functions over plain numbers. The unit of independence is the *task*: trials of one task share
its difficulty, so intervals and tests are computed over per-task values, never over all trials as
if they were independent (which would make every interval too narrow and every gain look real).
Uses scipy.stats for the t and binomial distributions, imported on first use: the commands that
only list runs must not pay a second of scipy import to start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a pass rate k/n.

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to a point at
    0/n or n/n, which is exactly where small agent benchmarks live.
    """
    if n <= 0:
        raise ValueError("wilson: n must be positive")
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} outside 0..{n}")
    z = _z(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) for independent scores in [0, 1].

    All-binary values use the Wilson interval (a t-interval would give [1, 1] for 10/10 passes);
    otherwise a Student-t interval, clipped to [0, 1]. One value says nothing about spread: [0, 1].
    """
    if len(values) == 0:
        raise ValueError("mean_ci: no values")
    import numpy as np

    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    n = len(arr)
    if _is_binary(values):
        lo, hi = wilson(int(arr.sum()), n, confidence)
        return mean, lo, hi
    if n == 1:
        return mean, 0.0, 1.0
    from scipy import stats as sps

    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def mean_ci_clustered(
    scores_by_task: Mapping[str, Sequence[float]], confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, lo, hi) of the mean of per-task means, with the interval computed over tasks.

    Trials within a task are correlated, so the task means are the independent units: this is the
    cluster-robust interval of Miller (2024, "Adding error bars to evals"). We use the t-interval
    over task means rather than a bootstrap because it is deterministic (the same ledger gives the
    same report), cheap, and the percentile bootstrap under-covers at the 10-50 tasks typical here.
    Tasks with no scores are ignored.
    """
    import numpy as np

    task_means = [float(np.mean(v)) for v in scores_by_task.values() if len(v) > 0]
    return mean_ci(task_means, confidence)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in 0..100), linear interpolation between order statistics."""
    if len(values) == 0:
        raise ValueError("percentile: no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q={q} outside 0..100")
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


_NO_SPREAD = 1e-9
"""Below this sd, differences are equal up to float rounding (0.3 - 0.2 != 0.4 - 0.3) and t is meaningless."""


class PairedResult(NamedTuple):
    """Candidate `b` against baseline `a` over their common tasks; delta = mean_b - mean_a."""

    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_lo: float
    ci_hi: float
    p_value: float
    method: str  # "mcnemar_exact", "paired_t", "sign" or "none"


def _sign_test(diffs: np.ndarray) -> float:
    """Exact two-sided binomial test on the signs of non-zero differences (ties dropped)."""
    wins = int((diffs > 0).sum())
    losses = int((diffs < 0).sum())
    if wins + losses == 0:
        return 1.0
    from scipy import stats as sps

    return float(sps.binomtest(wins, wins + losses, 0.5).pvalue)


def paired_test(a: Mapping[str, float], b: Mapping[str, float], confidence: float = 0.95) -> PairedResult:
    """Paired comparison of per-task scores of `b` (candidate) against `a` (baseline).

    Method, chosen from the data:
    - every score 0 or 1: exact McNemar test (a two-sided binomial test on the discordant tasks:
      those only one side passed); concordant tasks carry no information about the difference.
    - otherwise a paired t-test on the differences; when the differences have no spread at all
      (t undefined), the exact sign test, which is conservative at small n.
    The interval is the t-interval of the mean difference in every case (for binary data it equals
    the Wald interval of the paired-proportion difference up to the t vs z quantile). Fewer than
    two common tasks: p = 1 and the widest interval, so nothing is ever accepted on one task.
    """
    import numpy as np
    from scipy import stats as sps

    common = sorted(set(a) & set(b))
    n = len(common)
    if n == 0:
        return PairedResult(0, math.nan, math.nan, 0.0, -1.0, 1.0, 1.0, "none")
    xa = np.array([a[t] for t in common], dtype=float)
    xb = np.array([b[t] for t in common], dtype=float)
    diffs = xb - xa
    mean_a, mean_b, delta = float(xa.mean()), float(xb.mean()), float(diffs.mean())
    if n < 2:
        return PairedResult(n, mean_a, mean_b, delta, -1.0, 1.0, 1.0, "none")
    sd = float(diffs.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    ci = (max(-1.0, delta - half), min(1.0, delta + half))
    if _is_binary(list(xa)) and _is_binary(list(xb)):
        return PairedResult(n, mean_a, mean_b, delta, *ci, _sign_test(diffs), "mcnemar_exact")
    if sd < _NO_SPREAD:
        return PairedResult(n, mean_a, mean_b, delta, *ci, _sign_test(diffs), "sign")
    t_stat = delta / (sd / math.sqrt(n))
    p_value = float(2 * sps.t.sf(abs(t_stat), n - 1))
    return PairedResult(n, mean_a, mean_b, delta, *ci, p_value, "paired_t")


def pass_hat_k(successes_by_task: Mapping[str, tuple[int, int]], k: int) -> float:
    """pass^k (tau-bench): the chance that k i.i.d. trials of a task *all* pass, averaged over tasks.

    Unbiased per task as C(c, k) / C(n, k) for c passes out of n trials; needs n >= k everywhere.
    """
    if not successes_by_task:
        raise ValueError("pass_hat_k: no tasks")
    if k < 1:
        raise ValueError("pass_hat_k: k must be >= 1")
    total = 0.0
    for task, (c, n) in successes_by_task.items():
        if n < k:
            raise ValueError(f"pass_hat_k: task {task!r} has {n} trials, fewer than k={k}")
        if not 0 <= c <= n:
            raise ValueError(f"pass_hat_k: task {task!r} has {c} successes out of {n}")
        total += math.comb(c, k) / math.comb(n, k)
    return total / len(successes_by_task)


def min_detectable_effect(n_tasks: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference a two-sided paired t-test finds with the given power.

    MDE = (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n), with `sd` the standard deviation of
    per-task differences (measure it from two baseline runs). It tells a user, before spending the
    budget, whether the val split is large enough to see the gains they hope for.
    """
    if n_tasks < 2:
        raise ValueError("min_detectable_effect: need at least 2 tasks")
    if sd < 0:
        raise ValueError("min_detectable_effect: sd must be >= 0")
    from scipy import stats as sps

    df = n_tasks - 1
    factor = float(sps.t.ppf(1 - alpha / 2, df)) + float(sps.t.ppf(power, df))
    return factor * sd / math.sqrt(n_tasks)
