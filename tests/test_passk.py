"""pass^k tables from rollouts: the unbiased estimator, errored trials, uneven trial counts."""

from __future__ import annotations

import math

import pytest

from harness_opt.evaluate.passk import pass_k_table, successes_by_task
from harness_opt.records import Rollout


def roll(task: str, trial: int, passed: bool, error: str | None = None) -> Rollout:
    return Rollout(
        run_id="r",
        version_hash="v",
        suite="s",
        split="test",
        task_id=task,
        trial=trial,
        model="m",
        score=float(passed),
        passed=passed,
        error=error,
    )


def test_pass_k_matches_the_combinatorial_formula() -> None:
    # task a: 3 of 4 pass; task b: 4 of 4; task c: 1 of 4 (one trial errored)
    rows = [roll("a", t, t != 2) for t in range(4)] + [roll("b", t, True) for t in range(4)]
    rows += [roll("c", 0, True), roll("c", 1, False), roll("c", 2, False, "timeout"), roll("c", 3, False)]
    table = pass_k_table(rows)
    assert list(table) == [1, 2, 3, 4]
    for k in range(1, 5):
        expected = (math.comb(3, k) + math.comb(4, k) + math.comb(1, k)) / math.comb(4, k) / 3
        assert table[k] == pytest.approx(expected)
    assert table[1] == pytest.approx(8 / 12)
    assert table[4] == pytest.approx(1 / 3)  # only task b passes every trial
    assert table[1] >= table[2] >= table[3] >= table[4]


def test_table_stops_at_the_smallest_trial_count_and_at_max_k() -> None:
    rows = [roll("a", t, True) for t in range(4)] + [roll("b", t, True) for t in range(2)]
    assert list(pass_k_table(rows)) == [1, 2]
    assert list(pass_k_table(rows, max_k=1)) == [1]
    assert successes_by_task(rows) == {"a": (4, 4), "b": (2, 2)}


def test_no_rollouts_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="no rollouts"):
        pass_k_table([])
