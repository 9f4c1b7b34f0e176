"""A small ledger whose figures are easy to compute by hand.

Suite 'toy', split 'val', tasks t1..t4, trials 0 and 1, model 'm'. Scores (= passed):
  A (toy@v0001): t1 [1,1]  t2 [0,0]  t3 [1,0]  t4 [1,1]   cost 0.01, 100+50 tokens, 1 s per rollout
                 plus an *older* row t2 trial 0 = 1, superseded by the latest (0)
  B (toy@v0002): t1 [0,0]  t2 [1,1]  t3 [1,1]  t4 [1,1]   cost 0.02, 200+100 tokens, 2 s per rollout
                 plus a *newer* llm_error row t1 trial 0 = 1 (ignored), and an extra trial 2 on t1 = 0
  C (toy@v0003): one trial: t1 1, t2 0, t3 0, t4 0          cost 0.001 (cheap and weak)
  D (toy@v0004): one trial: t1 1, t2 1, t3 0, t4 0          cost 0.05 (dominated by A)
Optimize run 'opt-toy': baseline C, A accepted, B rejected -> incumbent A although B scores higher.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harness_opt.ledger import DecisionRow, Ledger, VersionRow
from harness_opt.records import Rollout

A, B, C, D = "aaaa" + "0" * 60, "bbbb" + "0" * 60, "cccc" + "0" * 60, "dddd" + "0" * 60
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _r(
    version: str, task: str, trial: int, score: float, *, cost: float, tok: int, lat: float, **kw
) -> Rollout:
    side = {A: "a", B: "b", C: "c", D: "d"}[version]
    return Rollout(
        run_id=kw.pop("run_id", "eval-toy"),
        version_hash=version,
        suite="toy",
        split=kw.pop("split", "val"),
        task_id=task,
        trial=trial,
        model="m",
        score=score,
        passed=score >= 1.0,
        cost_usd=cost,
        tokens_in=tok * 2 // 3,
        tokens_out=tok // 3,
        latency_s=lat,
        trace_ref=f"toy/{side}.jsonl#{task}-{trial}",
        created=kw.pop("created", T0 + timedelta(minutes=1)),
        **kw,
    )


def small_ledger(ledger: Ledger | None = None) -> Ledger:
    ledger = ledger or Ledger()
    for n, h in enumerate((A, B, C, D), 1):
        ledger.add_version(
            VersionRow(
                hash=h,
                agent="toy",
                version=n,
                parent=C if h in (A, D) else A if h == B else None,
                proposer="seed" if h == C else "llm",
                hypothesis=f"hypothesis {n}",
                created=T0 + timedelta(seconds=n),
            )
        )
    rows: list[Rollout] = []
    grid = {
        A: {"t1": [1, 1], "t2": [0, 0], "t3": [1, 0], "t4": [1, 1]},
        B: {"t1": [0, 0], "t2": [1, 1], "t3": [1, 1], "t4": [1, 1]},
        C: {"t1": [1], "t2": [0], "t3": [0], "t4": [0]},
        D: {"t1": [1], "t2": [1], "t3": [0], "t4": [0]},
    }
    money = {A: (0.01, 150, 1.0), B: (0.02, 300, 2.0), C: (0.001, 60, 0.5), D: (0.05, 600, 3.0)}
    for version, tasks in grid.items():
        cost, tok, lat = money[version]
        for task, scores in tasks.items():
            for trial, score in enumerate(scores):
                rows.append(_r(version, task, trial, float(score), cost=cost, tok=tok, lat=lat))
    rows.append(_r(A, "t2", 0, 1.0, cost=0.01, tok=150, lat=1.0, created=T0))  # older attempt
    rows.append(
        _r(B, "t1", 0, 1.0, cost=0.02, tok=300, lat=2.0, created=T0 + timedelta(hours=1), error="llm_error")
    )
    rows.append(_r(B, "t1", 2, 0.0, cost=0.02, tok=300, lat=2.0))  # a trial A does not have
    ledger.add_rollouts(rows)
    ledger.start_run("opt-toy", "optimize", {"suite": "tasks/toy"})
    for iteration, (h, accepted, outcome) in enumerate(
        [(C, False, "baseline"), (A, True, "accepted"), (B, False, "rejected")]
    ):
        ledger.add_decision(
            DecisionRow(
                run_id="opt-toy",
                iteration=iteration,
                candidate=h,
                incumbent=None if iteration == 0 else C,
                accepted=accepted,
                detail={"outcome": outcome},
                created=T0 + timedelta(minutes=iteration),
            )
        )
    return ledger
