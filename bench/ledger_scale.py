"""`diff` and `leaderboard` on a ledger of 1,000,000 synthetic rollout rows: do they answer in < 0.5 s?

Run: `python bench/ledger_scale.py [--versions 200 --tasks 1000 --trials 5]`. Builds the ledger in a
temp dir with one DuckDB INSERT ... SELECT over range() (seconds, not minutes), adds 2% re-run rows
and 1% llm_error rows so the latest-row-per-key logic has work to do, records an optimize run's
decisions, then times the library calls the commands make (median and max of --repeat runs, each
opening the file afresh as the CLI does). Prints greppable `key: value` lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness_opt.ledger import DecisionRow, Ledger
from harness_opt.ledger.connection import connect

_COLUMNS = (
    "run_id, version_hash, suite, split, task_id, trial, model, score, passed, cost_usd, tokens_in, "
    "tokens_out, latency_s, n_llm_calls, n_tool_calls, error, error_detail, feedback, trace_ref, created"
)


def build(path: Path, versions: int, tasks: int, trials: int) -> int:
    ledger = Ledger(path)
    with connect(path, read_only=False) as con:
        con.execute(
            "INSERT INTO versions (hash, agent, version, parent, proposer, hypothesis, changes, created) "
            "SELECT 'h' || lpad(v::VARCHAR, 63, '0'), 'bench', v + 1, "
            "CASE WHEN v = 0 THEN NULL ELSE 'h' || lpad((v // 2)::VARCHAR, 63, '0') END, "
            "'llm', 'hypothesis ' || v, '[]', now() FROM range(?) t(v)",
            [versions],
        )
        base = (
            "SELECT 'run-' || (v // 10)::VARCHAR, 'h' || lpad(v::VARCHAR, 63, '0'), 'bench-suite', 'val', "
            "'task-' || lpad(t::VARCHAR, 5, '0'), k::INTEGER, 'gpt-x', s, s >= 1.0, "
            "0.0001 * (1 + v % 7), 900 + (t % 50), 40 + (t % 9), 0.5 + (t % 13) / 10, 1, 0, {err}, "
            "NULL, '', 'bench/h' || v::VARCHAR || '.jsonl#' || (t * 10 + k)::VARCHAR, {created} "
            "FROM (SELECT v, t, k, CASE WHEN hash(v, t, k) % 100 < 40 + (v % 50) THEN 1.0 ELSE 0.0 END AS s "
            "FROM range(?) a(v), range(?) b(t), range(?) c(k)) {filter}"
        )
        con.execute(
            f"INSERT INTO rollouts ({_COLUMNS}) "
            + base.format(err="NULL", created="TIMESTAMPTZ '2026-01-01'", filter=""),
            [versions, tasks, trials],
        )
        # re-runs (newer rows for 2% of keys) and provider outages (newest, ignored) for 1%
        con.execute(
            f"INSERT INTO rollouts ({_COLUMNS}) "
            + base.format(
                err="NULL", created="TIMESTAMPTZ '2026-01-02'", filter="WHERE hash(v, t, k, 1) % 100 < 2"
            ),
            [versions, tasks, trials],
        )
        con.execute(
            f"INSERT INTO rollouts ({_COLUMNS}) "
            + base.format(
                err="'llm_error'",
                created="TIMESTAMPTZ '2026-01-03'",
                filter="WHERE hash(v, t, k, 2) % 100 < 1",
            ),
            [versions, tasks, trials],
        )
        row = con.execute("SELECT count(*) FROM rollouts").fetchone()
        total = int(row[0]) if row else 0
    ledger.start_run("opt-bench", "optimize", {"suite": "bench-suite"})
    for i in range(1, min(versions, 40)):
        ledger.add_decision(
            DecisionRow(
                run_id="opt-bench",
                iteration=i,
                candidate=f"h{i:063d}",
                incumbent=f"h{0:063d}",
                accepted=i % 7 == 0,
                detail={"outcome": "accepted" if i % 7 == 0 else "rejected"},
                created=datetime.now(UTC),
            )
        )
    return total


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from harness_opt.report.compare import diff
    from harness_opt.report.leaderboard import leaderboard

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_OPT_HOME"] = tmp
        path = Path(tmp) / "ledger.duckdb"
        start = time.perf_counter()
        total = build(path, args.versions, args.tasks, args.trials)
        print(f"rows: {total}")
        print(f"build_s: {time.perf_counter() - start:.1f}")
        print(f"file_mb: {path.stat().st_size / 1e6:.0f}")
        ledger = Ledger(path)
        a, b = f"h{3:063d}", f"h{140:063d}"
        cache = Path(tmp) / "cache"

        def cold_leaderboard() -> None:
            shutil.rmtree(cache, ignore_errors=True)  # no cached aggregates: every row is read
            leaderboard("bench-suite", ledger=ledger)

        checks = {
            "diff": lambda: diff(a, b, suite="bench-suite", ledger=ledger),
            "leaderboard_cold": cold_leaderboard,
            "leaderboard_warm": lambda: leaderboard("bench-suite", ledger=ledger),
        }
        result = diff(a, b, suite="bench-suite", ledger=ledger).results
        assert result is not None
        print(f"diff_tasks: {result.n_tasks}  per_side: {result.n_rollouts}  flips: {len(result.flips)}")
        (board,) = leaderboard("bench-suite", ledger=ledger)
        print(f"load_avg: {os.getloadavg()[0]:.1f}  cpus: {os.cpu_count()}")
        how = board.incumbent.how if board.incumbent else None
        print(f"leaderboard_rows: {len(board.rows)}  incumbent: {how}")
        for name, fn in checks.items():
            samples = timed(fn, args.repeat)
            print(
                f"{name}_s: median {statistics.median(samples):.3f}  max {max(samples):.3f}  "
                f"({'OK' if statistics.median(samples) < 0.5 else 'SLOW'} vs 0.5 s)"
            )


if __name__ == "__main__":
    main()
