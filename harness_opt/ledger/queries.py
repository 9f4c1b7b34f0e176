"""The SQL behind `diff`, `leaderboard` and `report`: every figure they show is one of these queries.

The rollouts table is append-only, so one (version, suite, split, task, trial, model) key may have
several rows over time (a re-run after a crash, a noise re-run with the cache off). Every query here
reads the *latest* row per key and leaves out infrastructure failures (`records.INFRA_ERRORS`:
`llm_error`, `sandbox`, `scorer`), exactly as `Ledger.cached_rollouts` serves the cache: the figures
shown are the figures a re-evaluation would reuse. Those failures are never dropped silently: each
version's count of them is `VersionAggregate.n_infra`.

Aggregation stays in DuckDB (one pass over the filtered rows); only per-task rows come back to
Python, where `harness_opt.evaluate.stats` turns them into intervals and tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness_opt.ledger.ledger import INFRA, NOT_INFRA, Ledger

_KEY = "version_hash, suite, split, task_id, trial, model"


def latest_rollouts_sql(where: str) -> str:
    """SELECT of the latest row per rollout key among rows matching `where`, infrastructure
    failures left out.

    `where` is applied *before* picking the latest row, so filter on key columns only (a filter on
    score would resurrect an older attempt). Its first parameter is always the list of
    infrastructure error kinds (`INFRA`).
    """
    return (
        f"SELECT * FROM rollouts WHERE {NOT_INFRA} AND ({where}) "
        f"QUALIFY row_number() OVER (PARTITION BY {_KEY} ORDER BY created DESC, rowid DESC) = 1"
    )


# ------------------------------------------------------------------------------------- leaderboard


class VersionAggregate(BaseModel):
    """The figures of one version (and model) on one suite split, over its latest rollouts."""

    version_hash: str
    model: str
    n_rollouts: int
    n_tasks: int
    score: float = Field(description="Mean over tasks of each task's mean score over its trials.")
    pass_rate: float
    cost_usd: float = Field(description="Total cost of the rollouts counted.")
    cost_per_task: float = Field(description="Mean cost of one rollout (one attempt at one task).")
    tokens_per_task: float
    latency_s: float = Field(description="Mean latency of one rollout.")
    n_errors: int
    n_infra: int = Field(
        default=0, description="Rollout keys whose every row is an infrastructure failure (not scored)."
    )
    score_sd: float = Field(default=0.0, description="Standard deviation of the per-task means.")
    binary: bool = Field(default=False, description="Whether every per-task mean is 0 or 1.")


def version_aggregates(
    ledger: Ledger,
    suite: str,
    split: str,
    *,
    model: str | None = None,
    versions: list[str] | None = None,
    cache: bool = True,
) -> list[VersionAggregate]:
    """Per (version, model) figures on `suite`/`split`, recomputed only for versions with new rows.

    The ledger is append-only, so a (version, model)'s rows on a split are unchanged exactly when
    their count and newest `created` are: that fingerprint costs one cheap GROUP BY (~30 ms at 1M
    rows), and aggregates whose fingerprint matches are read from a JSON file under the cache dir.
    A fresh ledger, or a version that gained rows, is aggregated from the rows (`_aggregate`).
    """
    where, params = _filters(suite, split, model, versions)
    with ledger._read() as con:
        prints = {
            (vh, m): [n, str(newest)]
            for vh, m, n, newest in con.execute(
                f"SELECT version_hash, model, count(*), max(created) FROM rollouts WHERE ({where}) "
                "GROUP BY version_hash, model",
                params[1:],
            ).fetchall()
        }
    path = _cache_file(ledger, suite, split)
    stored = _read_cache(path) if cache else {}
    out: dict[tuple[str, str], VersionAggregate] = {}
    for key, fingerprint in prints.items():
        entry = stored.get(f"{key[0]}|{key[1]}")
        if entry and entry.get("fp") == fingerprint:
            out[key] = VersionAggregate.model_validate(entry["agg"])
    stale = sorted({vh for (vh, m) in prints if (vh, m) not in out})
    if stale:
        for agg in _aggregate(ledger, suite, split, model=model, versions=stale):
            out[(agg.version_hash, agg.model)] = agg
            stored[f"{agg.version_hash}|{agg.model}"] = {
                "fp": prints.get((agg.version_hash, agg.model)),
                "agg": agg.model_dump(mode="json"),
            }
        if cache:
            _write_cache(path, stored)
    return [out[k] for k in sorted(out)]


def _cache_file(ledger: Ledger, suite: str, split: str) -> Path:
    from harness_opt.home import cache_dir

    key = hashlib.sha256(f"{ledger.path.resolve()}\0{suite}\0{split}".encode()).hexdigest()[:24]
    return cache_dir() / "ledger-aggregates" / f"{key}.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("schema") == _CACHE_SCHEMA else {}


def _write_cache(path: Path, stored: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file); a read-only home just means no cache."""
    stored["schema"] = _CACHE_SCHEMA
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


_CACHE_SCHEMA = 2  # 2: n_infra


def _aggregate(
    ledger: Ledger, suite: str, split: str, *, model: str | None = None, versions: list[str] | None = None
) -> list[VersionAggregate]:
    """Per (version, model) figures on `suite`/`split`, in one pass over the filtered rows.

    The latest row per key is picked with `arg_max(..., created)` in a GROUP BY (a hash aggregate),
    measured ~20% faster than a window with QUALIFY at 1M rows; two rows of one key with the very
    same microsecond `created` cannot come from one evaluator, so the tie-break by rowid is dropped.
    Per-task means are reduced to their count, sum, standard deviation and whether all are 0/1: all
    `task_interval` needs, so only one row per version comes back to Python.
    """
    where, params = _filters(suite, split, model, versions)
    sql = f"""
        WITH latest AS (
            SELECT version_hash, model, task_id, trial,
                   arg_max(score, created) AS s, arg_max(passed::INTEGER, created) AS p,
                   arg_max(cost_usd, created) AS c,
                   arg_max(coalesce(tokens_in, 0) + coalesce(tokens_out, 0), created) AS tk,
                   arg_max(latency_s, created) AS lat, arg_max((error IS NOT NULL)::INTEGER, created) AS e
            FROM rollouts WHERE {NOT_INFRA} AND ({where})
            GROUP BY version_hash, model, task_id, trial
        ), per_task AS (
            SELECT version_hash, model, task_id, avg(s) AS m, count(*) AS n, sum(p) AS p,
                   sum(coalesce(c, 0)) AS c, sum(tk) AS tk, sum(coalesce(lat, 0)) AS lat, sum(e) AS e
            FROM latest GROUP BY version_hash, model, task_id
        )
        SELECT version_hash, model, count(*) AS n_tasks, avg(m) AS score, coalesce(stddev_samp(m), 0) AS sd,
               bool_and(m = 0 OR m = 1) AS binary, sum(n) AS n_rollouts, sum(p) AS passed, sum(c) AS cost,
               sum(tk) AS tokens, sum(lat) AS latency, sum(e) AS errors
        FROM per_task GROUP BY version_hash, model
    """
    with ledger._read() as con:
        rows = con.execute(sql, params).fetchall()
        infra = _infra_keys(con, where, params)
    out = []
    for vh, m, n_tasks, score, sd, binary, n_rollouts, passed, cost, tokens, latency, errors in rows:
        out.append(
            VersionAggregate(
                version_hash=vh,
                model=m,
                n_rollouts=int(n_rollouts),
                n_tasks=int(n_tasks),
                score=float(score),
                score_sd=float(sd),
                binary=bool(binary),
                pass_rate=float(passed) / n_rollouts,
                cost_usd=float(cost),
                cost_per_task=float(cost) / n_rollouts,
                tokens_per_task=float(tokens) / n_rollouts,
                latency_s=float(latency) / n_rollouts,
                n_errors=int(errors),
                n_infra=infra.pop((vh, m), 0),
            )
        )
    for (vh, m), n in infra.items():  # a version with nothing but infrastructure failures is listed too
        out.append(
            VersionAggregate(
                version_hash=vh,
                model=m,
                n_rollouts=0,
                n_tasks=0,
                score=0.0,
                pass_rate=0.0,
                cost_usd=0.0,
                cost_per_task=0.0,
                tokens_per_task=0.0,
                latency_s=0.0,
                n_errors=0,
                n_infra=n,
            )
        )
    return out


def _infra_keys(con: Any, where: str, params: list[Any]) -> dict[tuple[str, str], int]:
    """Per (version, model), the rollout keys that have rows and every one an infrastructure failure."""
    sql = f"""
        SELECT version_hash, model, count(*) FROM (
            SELECT version_hash, model, task_id, trial,
                   bool_and(list_contains(?::VARCHAR[], coalesce(error, ''))) AS all_infra
            FROM rollouts WHERE ({where}) GROUP BY version_hash, model, task_id, trial
        ) WHERE all_infra GROUP BY version_hash, model
    """
    return {(vh, m): int(n) for vh, m, n in con.execute(sql, params).fetchall()}


def _filters(suite: str, split: str, model: str | None, versions: list[str] | None) -> tuple[str, list[Any]]:
    where = ["suite = ?", "split = ?"]
    params: list[Any] = [INFRA, suite, split]
    if model is not None:
        where.append("model = ?")
        params.append(model)
    if versions is not None:
        where.append("list_contains(?::VARCHAR[], version_hash)")
        params.append(versions)
    return " AND ".join(where), params


# ------------------------------------------------------------------------------------------ diff


class TaskPair(BaseModel):
    """One task seen by both A and B on the same trials: each side's mean score and verdict."""

    task_id: str
    n_trials: int
    score_a: float
    score_b: float
    passed_a: bool = Field(description="A's verdict: the mean of `passed` over the common trials >= 0.5.")
    passed_b: bool
    # A representative trace per side: the worst and the best trial (lowest score, then lowest trial).
    worst_ref_a: str | None = None
    best_ref_a: str | None = None
    worst_ref_b: str | None = None
    best_ref_b: str | None = None
    cost_a: float = 0.0
    cost_b: float = 0.0
    tokens_a: int = 0
    tokens_b: int = 0
    latency_a: float = 0.0
    latency_b: float = 0.0


def paired_tasks(
    ledger: Ledger, a: str, b: str, suite: str, split: str, model_a: str, model_b: str
) -> list[TaskPair]:
    """Per task, A and B over the (task, trial) keys both have, latest rollout of each key."""
    where = "suite = ? AND split = ? AND version_hash IN (?, ?) AND model IN (?, ?)"
    sql = f"""
        WITH latest AS ({latest_rollouts_sql(where)}),
        sa AS (SELECT * FROM latest WHERE version_hash = ? AND model = ?),
        sb AS (SELECT * FROM latest WHERE version_hash = ? AND model = ?)
        SELECT sa.task_id, count(*) AS n,
               avg(sa.score), avg(sb.score), avg(sa.passed::INTEGER), avg(sb.passed::INTEGER),
               arg_min(sa.trace_ref, (sa.score, sa.trial)), arg_max(sa.trace_ref, (sa.score, -sa.trial)),
               arg_min(sb.trace_ref, (sb.score, sb.trial)), arg_max(sb.trace_ref, (sb.score, -sb.trial)),
               coalesce(sum(sa.cost_usd), 0), coalesce(sum(sb.cost_usd), 0),
               coalesce(sum(coalesce(sa.tokens_in, 0) + coalesce(sa.tokens_out, 0)), 0),
               coalesce(sum(coalesce(sb.tokens_in, 0) + coalesce(sb.tokens_out, 0)), 0),
               coalesce(sum(sa.latency_s), 0), coalesce(sum(sb.latency_s), 0)
        FROM sa JOIN sb ON sa.task_id = sb.task_id AND sa.trial = sb.trial
        GROUP BY sa.task_id ORDER BY sa.task_id
    """
    params = [INFRA, suite, split, a, b, model_a, model_b, a, model_a, b, model_b]
    with ledger._read() as con:
        rows = con.execute(sql, params).fetchall()
    return [
        TaskPair(
            task_id=r[0],
            n_trials=r[1],
            score_a=r[2],
            score_b=r[3],
            passed_a=r[4] >= 0.5,
            passed_b=r[5] >= 0.5,
            worst_ref_a=r[6],
            best_ref_a=r[7],
            worst_ref_b=r[8],
            best_ref_b=r[9],
            cost_a=r[10],
            cost_b=r[11],
            tokens_a=int(r[12]),
            tokens_b=int(r[13]),
            latency_a=r[14],
            latency_b=r[15],
        )
        for r in rows
    ]


def side_models(ledger: Ledger, versions: list[str], suite: str, split: str) -> dict[str, dict[str, int]]:
    """{version: {model: rows}} on a suite split (infrastructure failures left out), most rows first."""
    where, params = _filters(suite, split, None, versions)
    sql = (
        "SELECT version_hash, model, count(*) AS n FROM rollouts "
        f"WHERE {NOT_INFRA} AND ({where}) GROUP BY version_hash, model ORDER BY n DESC, model"
    )
    out: dict[str, dict[str, int]] = {v: {} for v in versions}
    with ledger._read() as con:
        for version_hash, m, n in con.execute(sql, params).fetchall():
            out.setdefault(version_hash, {})[m] = n
    return out


def suites_of(ledger: Ledger, versions: list[str] | None = None) -> list[tuple[str, str, int]]:
    """(suite, split, rollouts) with any rollout (of these versions), most rollouts first."""
    sql = "SELECT suite, split, count(*) AS n FROM rollouts"
    params: list[Any] = []
    if versions is not None:
        sql += " WHERE list_contains(?::VARCHAR[], version_hash)"
        params.append(versions)
    sql += " GROUP BY suite, split ORDER BY n DESC, suite, split"
    with ledger._read() as con:
        return [(s, sp, n) for s, sp, n in con.execute(sql, params).fetchall()]


# ------------------------------------------------------------------------------ versions, incumbent


class VersionInfo(BaseModel):
    hash: str
    agent: str
    version: int | None = None
    parent: str | None = None
    path: str | None = None
    proposer: str | None = None
    hypothesis: str | None = None
    changes: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return (
            f"{self.agent}@v{self.version:04d}"
            if self.version is not None
            else f"{self.agent}@{self.hash[:12]}"
        )


def version_infos(ledger: Ledger) -> dict[str, VersionInfo]:
    """Every recorded version by hash (provenance from its manifest when it was evaluated)."""
    rows = ledger.query(
        "SELECT hash, agent, version, parent, path, proposer, hypothesis, changes FROM versions "
        "ORDER BY created, hash"
    )
    out = {}
    for row in rows:
        row["changes"] = json.loads(row["changes"]) if row["changes"] else []
        out[row["hash"]] = VersionInfo.model_validate(row)
    return out


class Incumbent(BaseModel):
    hash: str
    how: str = Field(description="Why this version: the optimize run it won, or 'top score'.")
    run_id: str | None = None


def optimize_incumbent(ledger: Ledger, suite: str, run_id: str | None = None) -> Incumbent | None:
    """The final incumbent of the latest optimize run on `suite` (or of `run_id`), or None.

    That is the candidate of the run's last accepted decision (each acceptance beats the incumbent of
    its time, so the last one is the run's best); with none accepted, the run's baseline. The run's
    suite is found through its candidates' rollouts, since its config holds a path, not the name.
    """
    if run_id is None:
        found = ledger.query(
            "SELECT r.run_id FROM runs r WHERE r.kind = 'optimize' AND r.run_id IN ("
            "  SELECT d.run_id FROM decisions d WHERE d.candidate IN ("
            "    SELECT DISTINCT version_hash FROM rollouts WHERE suite = ?)) "
            "ORDER BY r.started DESC LIMIT 1",
            [suite],
        )
        if not found:
            return None
        run_id = found[0]["run_id"]
    rows = ledger.query(
        "SELECT candidate, accepted, json_extract_string(detail, '$.outcome') AS outcome "
        "FROM decisions WHERE run_id = ? ORDER BY iteration, created",
        [run_id],
    )
    accepted = [r["candidate"] for r in rows if r["accepted"]]
    if accepted:
        return Incumbent(
            hash=accepted[-1], how=f"last accepted candidate of optimize run {run_id}", run_id=run_id
        )
    baseline = [r["candidate"] for r in rows if r["outcome"] == "baseline"]
    if baseline:
        return Incumbent(
            hash=baseline[0], how=f"baseline of optimize run {run_id} (nothing accepted)", run_id=run_id
        )
    return None


# ------------------------------------------------------------------------------------------ report


def latest_rollout_rows(
    ledger: Ledger, version_hash: str, suite: str, split: str, limit: int = 200
) -> list[dict[str, Any]]:
    """The latest rollouts of one version on a suite split (for the report's trace list), by task."""
    where, params = _filters(suite, split, None, [version_hash])
    sql = (
        f"WITH latest AS ({latest_rollouts_sql(where)}) "
        "SELECT task_id, trial, model, score, passed, cost_usd, tokens_in, tokens_out, latency_s, error, "
        "trace_ref FROM latest ORDER BY task_id, trial, model LIMIT ?"
    )
    return ledger.query(sql, [*params, limit])


def optimize_runs(ledger: Ledger) -> list[dict[str, Any]]:
    """Optimize runs, newest first, with their summaries."""
    rows = ledger.query(
        "SELECT run_id, started, status, config, summary FROM runs WHERE kind = 'optimize' "
        "ORDER BY started DESC"
    )
    for row in rows:
        row["config"] = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"] or {}
        row["summary"] = (
            json.loads(row["summary"]) if isinstance(row["summary"], str) else row["summary"] or {}
        )
    return rows


def run_decisions(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    """A run's decision details (CandidateRecord dicts), in order."""
    rows = ledger.query("SELECT detail FROM decisions WHERE run_id = ? ORDER BY iteration, created", [run_id])
    return [json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"] for r in rows]


# ------------------------------------------------------------------------------ per-task wins (GEPA)


class CandidateTaskWins(BaseModel):
    """One decision of a run: on which val tasks the candidate beat, or lost to, its incumbent."""

    candidate: str = Field(description="Candidate version hash.")
    incumbent: str = Field(description="Hash of the incumbent it was compared with.")
    iteration: int
    mechanism: str = ""
    wins: list[str] = Field(default_factory=list, description="Task ids where the candidate scored higher.")
    losses: list[str] = Field(default_factory=list, description="Task ids where it scored lower.")


def candidate_task_wins(
    ledger: Ledger, run_id: str, suite: str, model: str, split: str = "val"
) -> list[CandidateTaskWins]:
    """Per-task wins and losses of every evaluated candidate of an optimize run against its incumbent.

    Read-only; a proposer combining mechanisms that helped on *different* tasks (GEPA's per-instance
    view) needs exactly this. Invalid candidates and the baseline row are left out (no incumbent or
    no val rollouts); ties (equal task means) are neither."""
    rows = ledger.query(
        "SELECT iteration, candidate, incumbent, json_extract_string(detail, '$.mechanism') AS mechanism "
        "FROM decisions WHERE run_id = ? AND incumbent IS NOT NULL AND candidate <> '-' "
        "ORDER BY iteration, created",
        [run_id],
    )
    out = []
    for row in rows:
        pairs = paired_tasks(ledger, row["incumbent"], row["candidate"], suite, split, model, model)
        if not pairs:
            continue
        out.append(
            CandidateTaskWins(
                candidate=row["candidate"],
                incumbent=row["incumbent"],
                iteration=row["iteration"],
                mechanism=row["mechanism"] or "",
                wins=[p.task_id for p in pairs if p.score_b > p.score_a],
                losses=[p.task_id for p in pairs if p.score_b < p.score_a],
            )
        )
    return out
