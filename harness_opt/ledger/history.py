"""The SQL behind what proposers read of earlier candidates (train only) and what they spent.

The proposers' history filesystem (`propose/history_fs.py`) is built from these queries: decisions,
and **train** rollouts, never val or test ones (the split is fixed in the SQL, not a parameter). The
meta-model spend of each proposal is in the `decisions` table (migration m006); `leaderboard`,
`report` and the optimize summary sum it here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.queries import _filters, latest_rollouts_sql

# ------------------------------------------------------------------- the proposers' history (train only)


def history_runs(ledger: Ledger, run_id: str, agent: str | None = None) -> list[str]:
    """The optimize runs whose candidates a proposer's history holds, oldest first: `run_id` alone,
    or (with `agent`) every optimize run that decided on a version of that agent, then `run_id`."""
    if agent is None:
        return [run_id]
    rows = ledger.query(
        "SELECT r.run_id FROM runs r WHERE r.kind = 'optimize' AND r.run_id <> ? AND r.run_id IN ("
        "  SELECT d.run_id FROM decisions d JOIN versions v ON v.hash = d.candidate WHERE v.agent = ?) "
        "ORDER BY r.started",
        [run_id, agent],
    )
    return [*(r["run_id"] for r in rows), run_id]


def history_decisions(ledger: Ledger, run_ids: list[str]) -> list[dict[str, Any]]:
    """Every decision of these runs in order (run, iteration, written), with its record (`detail`),
    incumbent and the meta-model spend of its proposal."""
    rows = ledger.query(
        "SELECT d.run_id, d.iteration, d.candidate, d.incumbent, d.detail, d.meta_model, d.meta_calls, "
        "d.meta_tokens_in, d.meta_tokens_out, d.meta_cost_usd, d.meta_seconds "
        "FROM decisions d JOIN runs r ON r.run_id = d.run_id "
        "WHERE list_contains(?::VARCHAR[], d.run_id) ORDER BY r.started, d.iteration, d.created",
        [run_ids],
    )
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"] or {}
    return rows


def train_rollout_rows(
    ledger: Ledger, versions: list[str], suite: str, model: str | None = None
) -> list[dict[str, Any]]:
    """The latest **train** rollouts of these versions on `suite`: the only rollouts a proposer's
    history shows (the split is fixed here, not a parameter, so no caller can ask for val or test)."""
    where, params = _filters(suite, "train", model, versions)
    sql = (
        f"WITH latest AS ({latest_rollouts_sql(where)}) "
        "SELECT version_hash, task_id, trial, model, score, passed, error, feedback, trace_ref "
        "FROM latest ORDER BY version_hash, task_id, trial"
    )
    return ledger.query(sql, params)


SEALED_FINDING_PREFIX = "sealed-"
"""Scan findings of this kind mean the version holds text of a sealed split (val or test)."""


def sealed_versions(ledger: Ledger, versions: list[str]) -> set[str]:
    """Versions any scan found sealed-split text in: their files and traces never reach a proposer."""
    rows = ledger.query(
        "SELECT version_hash, findings FROM scans WHERE list_contains(?::VARCHAR[], version_hash)",
        [versions],
    )
    out = set()
    for row in rows:
        findings = json.loads(row["findings"]) if isinstance(row["findings"], str) else row["findings"]
        if any(str(f.get("kind", "")).startswith(SEALED_FINDING_PREFIX) for f in findings or []):
            out.add(row["version_hash"])
    return out


# ------------------------------------------------------------------------------- meta-model spend


class MetaSpendTotal(BaseModel):
    """Meta-model spend summed over decisions: of one run, or of the proposals that made a version."""

    proposals: int = Field(default=0, description="Proposals (made or failed) counted.")
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    model: str | None = None


def _spend_rows(rows: list[tuple[Any, ...]]) -> dict[str, MetaSpendTotal]:
    return {
        key: MetaSpendTotal(
            proposals=int(n),
            calls=int(calls or 0),
            tokens_in=int(tin or 0),
            tokens_out=int(tout or 0),
            cost_usd=float(cost or 0.0),
            seconds=float(secs or 0.0),
            model=model,
        )
        for key, n, calls, tin, tout, cost, secs, model in rows
    }


_SPEND_COLUMNS = (
    "count(*), sum(meta_calls), sum(meta_tokens_in), sum(meta_tokens_out), sum(meta_cost_usd), "
    "sum(meta_seconds), any_value(meta_model)"
)


def version_meta_spend(ledger: Ledger, versions: list[str] | None = None) -> dict[str, MetaSpendTotal]:
    """Per version hash, what the meta-model spent on the proposals that produced it (every run)."""
    sql = (
        f"SELECT candidate, {_SPEND_COLUMNS} FROM decisions WHERE candidate <> '-' AND meta_model IS NOT NULL"
    )
    params: list[Any] = []
    if versions is not None:
        sql += " AND list_contains(?::VARCHAR[], candidate)"
        params.append(versions)
    with ledger._read() as con:
        return _spend_rows(con.execute(sql + " GROUP BY candidate", params).fetchall())


def run_meta_spend(ledger: Ledger, run_id: str) -> MetaSpendTotal:
    """What the meta-model spent over one optimize run, failed proposals included."""
    sql = (
        f"SELECT run_id, {_SPEND_COLUMNS} FROM decisions "
        "WHERE run_id = ? AND meta_model IS NOT NULL GROUP BY run_id"
    )
    with ledger._read() as con:
        found = _spend_rows(con.execute(sql, [run_id]).fetchall())
    return found.get(run_id, MetaSpendTotal())
