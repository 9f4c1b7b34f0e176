"""The training domain's results table: the ledger's `experiments` rows, best first.

The commit-free equivalent of autoresearch's results.tsv: one row per run with the version, the
metric, peak memory, keep / discard / crash and what was tried. Read by `harness-opt leaderboard`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from harness_opt.ledger import Ledger


class ExperimentView(BaseModel):
    run_id: str
    label: str
    version_hash: str
    metric: str
    value: float | None
    memory_gb: float | None
    status: str
    description: str
    created: datetime


def experiment_rows(ledger: Ledger | None = None, run_id: str | None = None) -> list[ExperimentView]:
    """Rows of one optimize run (default: the latest that wrote any); lowest metric first, crashes last."""
    ledger = ledger or Ledger()
    if run_id is None:
        latest = ledger.query("SELECT run_id FROM experiments ORDER BY created DESC LIMIT 1")
        if not latest:
            return []
        run_id = latest[0]["run_id"]
    rows = ledger.query(
        """
        SELECT e.*,
               coalesce(v.agent || '@v' || lpad(CAST(v.version AS VARCHAR), 4, '0'), left(e.version_hash, 12))
                   AS label
        FROM experiments e
        LEFT JOIN (SELECT DISTINCT ON (hash) hash, agent, version FROM versions) v ON v.hash = e.version_hash
        WHERE e.run_id = ?
        ORDER BY e.value IS NULL, e.value, e.created
        """,
        [run_id],
    )
    return [ExperimentView.model_validate({**r, "description": r["description"] or ""}) for r in rows]
