"""`harness-opt leaderboard` shows the sandbox each version's rollouts ran in (LeaderboardRow.isolation)."""

from __future__ import annotations

from rich.console import Console

from harness_opt.cli.leaderboard_cmd import print_board
from harness_opt.report.leaderboard import leaderboard
from tests.support.ledger import D, _r, small_ledger


def test_the_table_has_a_sandbox_column_from_each_versions_runs() -> None:
    ledger = small_ledger()
    ledger.start_run("eval-toy", "eval", {})
    ledger.record_isolation("eval-toy", "bwrap")
    # one more rollout of D from a run a user ran without a sandbox
    ledger.start_run("eval-weak", "eval", {})
    ledger.record_isolation("eval-weak", "none")
    ledger.add_rollouts([_r(D, "t1", 5, 1.0, cost=0.05, tok=600, lat=3.0, run_id="eval-weak")])
    (board,) = leaderboard("toy", ledger=ledger)
    console = Console(record=True, width=300, color_system=None)
    print_board(board, console)
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "version" in line and "score" in line)
    assert header.split()[-1] == "sandbox"
    by_label = {label: next(line for line in lines if label in line) for label in ("toy@v0001", "toy@v0004")}
    assert by_label["toy@v0001"].rstrip().endswith("bwrap")
    # D ran in both: the weak one shows beside bwrap
    assert by_label["toy@v0004"].rstrip().endswith(("bwrap; none", "none; bwrap"))
