"""`leaderboard`: figures cross-checked by hand on the small fixture; Pareto set; incumbent definition."""

from __future__ import annotations

import json

import pytest
import typer
from scipy import stats as sps
from typer.testing import CliRunner

from harness_opt.ledger import Ledger
from harness_opt.ledger.ledger import INFRA
from harness_opt.ledger.queries import latest_rollouts_sql
from harness_opt.report.leaderboard import leaderboard, pareto_set
from tests.support.ledger import A, B, C, D, small_ledger


def test_rows_match_hand_computed_figures():
    (board,) = leaderboard("toy", ledger=small_ledger())
    rows = {r.label: r for r in board.rows}
    assert [r.label for r in board.rows] == ["toy@v0002", "toy@v0001", "toy@v0004", "toy@v0003"]
    # B: t1 [0,0,0] (llm_error row ignored, extra trial counted here), t2..t4 1 -> 0.75 over 9 rollouts
    b = rows["toy@v0002"]
    assert (b.score, b.n_tasks, b.n_rollouts) == (pytest.approx(0.75), 4, 9)
    assert b.cost_per_task == pytest.approx(0.02) and b.tokens_per_task == pytest.approx(300)
    assert b.pass_rate == pytest.approx(6 / 9)
    # A: the latest t2 trial-0 row (0) wins over the older 1: 0.625 over 8 rollouts
    a = rows["toy@v0001"]
    assert (a.score, a.n_rollouts) == (pytest.approx(0.625), 8)
    half = sps.t.ppf(0.975, 3) * sps.tstd([1.0, 0.0, 0.5, 1.0]) / 2
    assert a.ci == pytest.approx((max(0, 0.625 - half), min(1, 0.625 + half)))
    # C is all-binary per task: Wilson interval of 1/4
    lo, hi = sps.binomtest(1, 4).proportion_ci(method="wilson")
    assert rows["toy@v0003"].ci == pytest.approx((lo, hi), abs=1e-9)
    assert (rows["toy@v0001"].parent, rows["toy@v0002"].parent, rows["toy@v0003"].parent) == (
        "toy@v0003",
        "toy@v0001",
        "",
    )
    assert rows["toy@v0003"].proposer == "seed"


def test_pareto_and_incumbent():
    (board,) = leaderboard("toy", ledger=small_ledger())
    marks = {r.label: (r.pareto, r.incumbent) for r in board.rows}
    # D (0.5 at $0.05) is beaten by A (0.625 at $0.01) on both axes; the others each win on one
    assert marks == {
        "toy@v0002": (True, False),
        "toy@v0001": (True, True),  # the optimize run accepted A and rejected B: A is the incumbent
        "toy@v0004": (False, False),
        "toy@v0003": (True, False),
    }
    assert board.incumbent is not None and "opt-toy" in board.incumbent.how
    assert pareto_set([(0.5, 1.0), (0.5, 1.0), (0.4, 2.0)]) == [True, True, False]


def test_incumbent_without_optimize_run_is_top_score(isolated_home):
    ledger = small_ledger()
    # a fresh ledger holding only the rollouts (no decisions): the top-scoring version
    other = Ledger(isolated_home / "other.duckdb")
    other.add_rollouts(ledger.rollouts())
    (board,) = leaderboard("toy", ledger=other)
    assert board.incumbent is not None and board.incumbent.hash == B and board.rows[0].incumbent
    assert board.rows[0].label == B[:12]  # no versions rows: labelled by hash


def test_latest_rollout_sql_filters_before_picking():
    ledger = small_ledger()
    rows = ledger.query(
        f"SELECT version_hash, task_id, trial, score FROM ({latest_rollouts_sql('suite = ?')}) "
        "WHERE version_hash IN (?, ?) AND task_id IN ('t1', 't2') AND trial = 0 ORDER BY ALL",
        [INFRA, "toy", A, B],
    )
    assert [(r["version_hash"][:4], r["task_id"], r["score"]) for r in rows] == [
        ("aaaa", "t1", 1.0),
        ("aaaa", "t2", 0.0),
        ("bbbb", "t1", 0.0),
        ("bbbb", "t2", 1.0),
    ]
    assert C and D  # the fixture's other versions exist too


def test_cli_leaderboard_text_json_and_empty():
    from harness_opt.cli import leaderboard_cmd

    app = typer.Typer()
    leaderboard_cmd.register(app)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    empty = runner.invoke(app, ["leaderboard", "--suite", "toy"], env={"COLUMNS": "200"})
    assert (
        empty.exit_code == 0
        and "no results on suite toy" in empty.output
        and "harness-opt eval" in empty.output
    )
    small_ledger()
    text = runner.invoke(app, ["leaderboard"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert (
        "toy@v0001" in text.output
        and "★ incumbent: last accepted candidate of optimize run opt-toy" in text.output
    )
    data = json.loads(runner.invoke(app, ["leaderboard", "--suite", "toy", "--json"]).output)
    assert data[0]["rows"][0]["label"] == "toy@v0002" and data[0]["rows"][0]["score"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    "means", [[1.0, 0.0, 0.5, 1.0], [1.0, 0.0, 0.0, 1.0, 1.0], [0.3], [1.0], [0.2, 0.9, 0.4]]
)
def test_task_interval_equals_mean_ci_clustered(means: list[float]):
    import statistics

    from harness_opt.evaluate.stats import mean_ci_clustered
    from harness_opt.report.leaderboard import task_interval

    _, lo, hi = mean_ci_clustered({f"t{i}": [m] for i, m in enumerate(means)})
    sd = statistics.stdev(means) if len(means) > 1 else 0.0
    binary = all(m in (0.0, 1.0) for m in means)
    assert task_interval(len(means), sum(means) / len(means), sd, binary) == pytest.approx((lo, hi))


def test_cached_aggregates_follow_new_rows():
    from tests.support.ledger import _r

    ledger = small_ledger()
    (first,) = leaderboard("toy", ledger=ledger)
    assert {r.label: r.score for r in first.rows}["toy@v0003"] == pytest.approx(0.25)
    # C's t2 is re-run and now passes: the cached aggregate of C must not be served any more
    ledger.add_rollouts([_r(C, "t2", 0, 1.0, cost=0.001, tok=60, lat=0.5, created=first_time())])
    (second,) = leaderboard("toy", ledger=ledger)
    scores = {r.label: r.score for r in second.rows}
    assert scores["toy@v0003"] == pytest.approx(0.5)
    assert scores["toy@v0001"] == pytest.approx(0.625)  # untouched versions: same figures (from the cache)


def first_time():
    from datetime import UTC, datetime

    return datetime(2030, 1, 1, tzinfo=UTC)
