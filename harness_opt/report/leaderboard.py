"""`leaderboard()`: every version evaluated on a suite split, ranked by score, with cost and provenance.

Ranking is by mean score over tasks (each task's mean over its trials), ties broken by lower cost.
Versions evaluated on different task subsets are still listed (the `tasks` column says how many);
for a fair head-to-head use `diff`, which pairs tasks and trials.

The **incumbent** of a suite is the final incumbent of the latest optimize run on it (the candidate
of its last accepted decision, or its baseline when nothing was accepted); with no optimize run, the
top-ranked version that is not degraded. Rollouts lost to infrastructure failures (a model outage,
a sandbox that did not start) are not in a score and are counted apart (`infra`); a version with
more of them than the threshold is degraded: listed last, marked, off the Pareto set. The **Pareto
set** holds every version no other version beats on both score (higher) and cost per task (lower):
the choices worth making when money matters. The meta columns are what the meta-model spent
proposing each version (its tokens, cost and time; none for a seed or an offline operator).
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

from harness_opt.evaluate.stats import wilson
from harness_opt.evaluate.summary import DEFAULT_MAX_INFRA_FAILURES
from harness_opt.ledger.history import version_meta_spend
from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.queries import (
    Incumbent,
    optimize_incumbent,
    suites_of,
    version_aggregates,
    version_infos,
)
from harness_opt.report.scope import suite_name


class LeaderboardRow(BaseModel):
    rank: int
    label: str
    hash: str
    model: str
    score: float
    ci: tuple[float, float]
    n_tasks: int
    n_rollouts: int
    pass_rate: float
    cost_per_task: float = Field(description="Mean cost of one rollout, USD.")
    tokens_per_task: float
    latency_s: float = Field(description="Mean latency of one rollout.")
    proposer: str = ""
    parent: str = Field(default="", description="The parent's label ('' for a seed).")
    hypothesis: str = ""
    isolation: str = Field(
        default="", description="The sandbox its rollouts ran in: bwrap, or a weaker mode a user named."
    )
    meta_cost_usd: float | None = Field(
        default=None, description="What the meta-model spent proposing it (None: no meta-model)."
    )
    meta_tokens: int = Field(default=0, description="Meta-model tokens (in + out) spent proposing it.")
    meta_seconds: float = Field(default=0.0, description="Wall time the proposer spent on it.")
    n_infra: int = Field(
        default=0, description="Rollouts lost to infrastructure failures (llm_error, sandbox, scorer)."
    )
    degraded: bool = Field(
        default=False, description="Infrastructure failures above the threshold: ranked last, not incumbent."
    )
    incumbent: bool = False
    pareto: bool = False


class Leaderboard(BaseModel):
    suite: str
    split: str
    rows: list[LeaderboardRow]
    incumbent: Incumbent | None = None


def task_interval(
    n: int, mean: float, sd: float, binary: bool, confidence: float = 0.95
) -> tuple[float, float]:
    """`stats.mean_ci_clustered`'s interval from the moments of the per-task means (n, mean, sd, all 0/1?).

    The query returns these four numbers per version instead of every task mean, which keeps the
    leaderboard one row per version at a million rollouts. Same rule as `mean_ci`: Wilson when every
    task mean is 0 or 1, [0, 1] for one task, else the t-interval clipped to [0, 1];
    tests/test_leaderboard.py checks it against `mean_ci_clustered`.
    """
    if n <= 0:
        return 0.0, 0.0
    if binary:
        return wilson(round(mean * n), n, confidence)
    if n == 1:
        return 0.0, 1.0
    from scipy import stats as sps  # only for non-binary scores: listing stays fast

    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)


def pareto_set(points: list[tuple[float, float]]) -> list[bool]:
    """For (score, cost) points: True where no other point has score >= and cost <=, one strictly."""
    out = []
    for i, (s, c) in enumerate(points):
        dominated = any(
            (s2 >= s and c2 <= c) and (s2 > s or c2 < c) for j, (s2, c2) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


def isolation_by_version(ledger: Ledger, suite: str, split: str) -> dict[str, str]:
    """Per version, the sandbox(es) of the runs that produced its rollouts on `suite`/`split` (runs
    recorded before the `isolation` column say what their summary said, or 'unknown')."""
    rows = ledger.query(
        "SELECT r.version_hash AS h, string_agg(DISTINCT coalesce(runs.isolation, "
        "json_extract_string(runs.summary, '$.isolation'), 'unknown'), '; ') AS iso "
        "FROM (SELECT DISTINCT version_hash, run_id FROM rollouts WHERE suite = ? AND split = ?) r "
        "LEFT JOIN runs ON runs.run_id = r.run_id GROUP BY r.version_hash",
        [suite, split],
    )
    return {row["h"]: row["iso"] or "unknown" for row in rows}


def board(
    ledger: Ledger,
    suite: str,
    split: str,
    *,
    model: str | None = None,
    run_id: str | None = None,
    max_infra_failures: float = DEFAULT_MAX_INFRA_FAILURES,
) -> Leaderboard:
    """The leaderboard of one suite (by name) and split. A version's infrastructure failures are not
    in its score and are counted apart (`n_infra`); above `max_infra_failures` of its rollouts it is
    `degraded`: ranked after the others, off the Pareto set, never the top-score incumbent."""
    aggregates = version_aggregates(ledger, suite, split, model=model)
    infos = version_infos(ledger)
    sandboxes = isolation_by_version(ledger, suite, split)
    spend = version_meta_spend(ledger, [a.version_hash for a in aggregates])
    rows: list[LeaderboardRow] = []
    for agg in aggregates:
        info = infos.get(agg.version_hash)
        meta = spend.get(agg.version_hash)
        lo, hi = task_interval(agg.n_tasks, agg.score, agg.score_sd, agg.binary)
        parent = infos.get(info.parent) if info and info.parent else None
        rows.append(
            LeaderboardRow(
                rank=0,
                label=info.label if info else agg.version_hash[:12],
                hash=agg.version_hash,
                model=agg.model,
                score=agg.score,
                ci=(lo, hi),
                n_tasks=agg.n_tasks,
                n_rollouts=agg.n_rollouts,
                pass_rate=agg.pass_rate,
                cost_per_task=agg.cost_per_task,
                tokens_per_task=agg.tokens_per_task,
                latency_s=agg.latency_s,
                proposer=(info.proposer or "") if info else "",
                parent=parent.label if parent else (info.parent[:12] if info and info.parent else ""),
                hypothesis=(info.hypothesis or "") if info else "",
                isolation=sandboxes.get(agg.version_hash, "unknown"),
                meta_cost_usd=meta.cost_usd if meta else None,
                meta_tokens=(meta.tokens_in + meta.tokens_out) if meta else 0,
                meta_seconds=meta.seconds if meta else 0.0,
                n_infra=agg.n_infra,
                degraded=_degraded(agg.n_rollouts, agg.n_infra, max_infra_failures),
            )
        )
    rows.sort(key=lambda r: (r.degraded, -r.score, r.cost_per_task, r.label, r.model))
    sound = [r for r in rows if not r.degraded]
    front = dict(zip(map(id, sound), pareto_set([(r.score, r.cost_per_task) for r in sound]), strict=True))
    for rank, row in enumerate(rows, 1):
        row.rank = rank
        row.pareto = front.get(id(row), False)
    incumbent = optimize_incumbent(ledger, suite, run_id)
    if incumbent is None or not any(r.hash == incumbent.hash for r in rows):
        incumbent = (
            Incumbent(hash=sound[0].hash, how="top score (no optimize run on this suite)") if sound else None
        )
    if incumbent is not None:
        for row in rows:
            row.incumbent = row.hash == incumbent.hash
    return Leaderboard(suite=suite, split=split, rows=rows, incumbent=incumbent)


def _degraded(scored: int, infra: int, threshold: float) -> bool:
    total = scored + infra
    return total > 0 and (infra / total > threshold or scored == 0)


def leaderboard(
    suite: str | Path | None = None,
    split: str = "val",
    *,
    model: str | None = None,
    ledger: Ledger | None = None,
    max_infra_failures: float = DEFAULT_MAX_INFRA_FAILURES,
) -> list[Leaderboard]:
    """Leaderboards of `suite` (a folder or a name), or of every suite with results on `split`."""
    ledger = ledger or Ledger()
    if suite is not None:
        names = [suite_name(suite)]
    else:
        names = sorted({s for s, sp, _ in suites_of(ledger) if sp == split})
    return [board(ledger, name, split, model=model, max_infra_failures=max_infra_failures) for name in names]
