"""Statistics against values computed by hand (formulas in the comments, t quantiles from tables)."""

from __future__ import annotations

import math

import pytest

from harness_opt.evaluate.stats import (
    mean_ci,
    mean_ci_clustered,
    min_detectable_effect,
    paired_test,
    pass_hat_k,
    percentile,
    wilson,
)


def test_wilson_matches_hand_values() -> None:
    # p = 0.8, z^2/n = 0.38415: centre 0.71674, half-width 0.22658
    assert wilson(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-4)
    # 0/10 does not collapse to a point: upper bound z^2/(n+z^2) = 0.27753
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-4)
    with pytest.raises(ValueError):
        wilson(3, 0)
    with pytest.raises(ValueError):
        wilson(4, 3)


def test_mean_ci_t_interval_for_continuous_scores() -> None:
    # mean 0.65, sd 0.129099, t(0.975, 3) = 3.182446 -> half-width 0.205428
    mean, lo, hi = mean_ci([0.5, 0.6, 0.7, 0.8])
    assert (mean, lo, hi) == pytest.approx((0.65, 0.444572, 0.855428), abs=1e-5)
    # clipped to [0, 1]
    assert mean_ci([0.0, 0.1, 0.9])[1] == 0.0
    assert mean_ci([0.5]) == (0.5, 0.0, 1.0)
    with pytest.raises(ValueError):
        mean_ci([])


def test_mean_ci_uses_wilson_for_pass_fail() -> None:
    values = [1.0] * 8 + [0.0] * 2
    assert mean_ci(values) == pytest.approx((0.8, *wilson(8, 10)))
    # 10/10 is not "certainly 1.0"
    assert mean_ci([1.0] * 10)[1] == pytest.approx(0.72247, abs=1e-4)


def test_clustered_ci_is_over_task_means() -> None:
    scores = {"a": [0.5, 0.7], "b": [0.6], "c": [0.8, 0.8, 0.8], "d": [0.9, 0.5]}
    # task means 0.6, 0.6, 0.8, 0.7 -> mean 0.675 (a flat mean over the 8 trials would be 0.6875);
    # sd 0.0957427 over 4 tasks, t(0.975, 3) = 3.182446 -> half-width 0.152347
    assert mean_ci_clustered(scores) == pytest.approx((0.675, 0.522653, 0.827347), abs=1e-5)
    # trials add no independent evidence: 3 identical trials per task = the single-trial interval
    single = {"a": [0.2], "b": [0.5], "c": [0.9]}
    tripled = {k: v * 3 for k, v in single.items()}
    assert mean_ci_clustered(tripled) == pytest.approx(mean_ci_clustered(single))
    assert mean_ci_clustered({"a": [0.2], "empty": []}) == (0.2, 0.0, 1.0)


def test_percentile_interpolates() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 25) == 1.75
    assert percentile([1, 2, 3, 4], 100) == 4.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_paired_binary_uses_exact_mcnemar() -> None:
    a = {f"t{i}": 0.0 for i in range(6)} | {f"t{i}": 1.0 for i in range(6, 10)}
    b = {f"t{i}": 1.0 for i in range(10)}
    result = paired_test(a, b)
    # 6 discordant tasks, all won by b: p = 2 * 0.5^6
    assert result.method == "mcnemar_exact"
    assert result.n == 10 and result.mean_a == 0.4 and result.mean_b == 1.0
    assert result.delta == pytest.approx(0.6)
    assert result.p_value == pytest.approx(0.03125)
    # diffs sd 0.516398, t(0.975, 9) = 2.262157 -> half-width 0.369410
    assert (result.ci_lo, result.ci_hi) == pytest.approx((0.230590, 0.969410), abs=1e-5)
    # 6 wins, 1 loss: p = 2 * (1 + 7) / 128
    b2 = dict(b, t9=0.0)
    assert paired_test(a, b2).p_value == pytest.approx(16 / 128)
    # direction matters for delta, not for the two-sided p
    swapped = paired_test(b, a)
    assert swapped.delta == pytest.approx(-0.6) and swapped.p_value == pytest.approx(0.03125)


def test_paired_t_for_continuous_scores_over_common_tasks() -> None:
    a = {"x": 0.2, "y": 0.4, "z": 0.5, "w": 0.3}
    b = {"x": 0.3, "y": 0.6, "z": 0.6, "w": 0.3, "only_b": 1.0}
    result = paired_test(a, b)
    assert result.method == "paired_t" and result.n == 4
    # diffs .1 .2 .1 0: mean .1, sd .0816497, t = 2.449490 with 3 df;
    # closed form for 3 df: F(t) = 1/2 + (t/(sqrt3 (1 + t^2/3)) + atan(t/sqrt3)) / pi = 0.954136
    assert result.delta == pytest.approx(0.1)
    assert result.p_value == pytest.approx(0.091729, abs=1e-5)
    expected_f = 0.5 + (2.449490 / (math.sqrt(3) * 3) + math.atan(2.449490 / math.sqrt(3))) / math.pi
    assert result.p_value == pytest.approx(2 * (1 - expected_f), abs=1e-5)
    assert (result.ci_lo, result.ci_hi) == pytest.approx((-0.029923, 0.229923), abs=1e-5)


def test_paired_degenerate_cases() -> None:
    # identical shift on every task: t undefined -> exact sign test, conservative at n = 3
    same = paired_test({"a": 0.2, "b": 0.3, "c": 0.4}, {"a": 0.3, "b": 0.4, "c": 0.5})
    assert same.method == "sign" and same.p_value == pytest.approx(0.25)
    equal = paired_test({"a": 0.5, "b": 0.7}, {"a": 0.5, "b": 0.7})
    assert equal.delta == 0.0 and equal.p_value == 1.0
    one = paired_test({"a": 0.0}, {"a": 1.0})
    assert one.n == 1 and one.p_value == 1.0 and (one.ci_lo, one.ci_hi) == (-1.0, 1.0)
    none = paired_test({"a": 0.0}, {"b": 1.0})
    assert none.n == 0 and none.p_value == 1.0 and none.method == "none"


def test_pass_hat_k() -> None:
    successes = {"a": (3, 4), "b": (4, 4), "c": (1, 4)}
    # k=1 is the pass rate: (3/4 + 1 + 1/4) / 3
    assert pass_hat_k(successes, 1) == pytest.approx(2 / 3)
    # k=2: C(3,2)/C(4,2) = 1/2, 1, 0
    assert pass_hat_k(successes, 2) == pytest.approx(0.5)
    # k=4: only the task that always passes
    assert pass_hat_k(successes, 4) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="fewer than k=5"):
        pass_hat_k(successes, 5)
    with pytest.raises(ValueError):
        pass_hat_k({}, 1)


def test_min_detectable_effect() -> None:
    # (t(0.975, 24) + t(0.8, 24)) * sd / sqrt(n) = (2.063899 + 0.856952) * 0.5 / 5
    assert min_detectable_effect(25, 0.5) == pytest.approx(0.292085, abs=1e-4)
    # large n tends to the z formula (1.959964 + 0.841621) * sd / sqrt(n)
    assert min_detectable_effect(10_000, 1.0) == pytest.approx(0.0280159, rel=1e-3)
    # more tasks, smaller detectable effect; stricter alpha, larger
    assert min_detectable_effect(100, 0.5) < min_detectable_effect(25, 0.5)
    assert min_detectable_effect(25, 0.5, alpha=0.01) > min_detectable_effect(25, 0.5)
    with pytest.raises(ValueError):
        min_detectable_effect(1, 0.5)
