"""Resolve what a user typed (a run id prefix, a task id) into ledger rows, with errors that help."""

from __future__ import annotations

from harness_opt.errors import UserError
from harness_opt.ledger.ledger import Ledger
from harness_opt.records import Rollout


def resolve_run(ledger: Ledger, prefix: str) -> dict:
    rows = ledger.query(
        "SELECT run_id, config FROM runs WHERE starts_with(run_id, ?) ORDER BY started", [prefix]
    )
    if not rows:
        raise UserError(f"no run matches '{prefix}'", fix="list recent runs with `harness-opt runs`")
    exact = [r for r in rows if r["run_id"] == prefix]
    if len(rows) > 1 and not exact:
        raise UserError(f"'{prefix}' matches {len(rows)} runs", fix="type more of the run id")
    return exact[0] if exact else rows[0]


def run_rollouts(prefix: str, ledger: Ledger | None = None) -> list[Rollout]:
    """Rollouts a run produced, plus the ones it reused from earlier runs of the same key set."""
    import json

    ledger = ledger or Ledger()
    run = resolve_run(ledger, prefix)
    own = ledger.rollouts(run_id=run["run_id"])
    config = run["config"] if isinstance(run["config"], dict) else json.loads(run["config"] or "{}")
    if not config.get("version_hash"):
        return own
    keys = ledger.rollouts(
        version_hash=config["version_hash"],
        suite=config.get("suite"),
        split=config.get("split"),
        model=config.get("model"),
    )
    merged = {(r.task_id, r.trial): r for r in keys}
    merged.update({(r.task_id, r.trial): r for r in own})
    return sorted(merged.values(), key=lambda r: (r.task_id, r.trial))


def find_run_rollout(prefix: str, task_id: str, trial: int = 0, ledger: Ledger | None = None) -> Rollout:
    rows = run_rollouts(prefix, ledger)
    for r in rows:
        if r.task_id == task_id and r.trial == trial:
            return r
    sample = ", ".join(sorted({r.task_id for r in rows})[:5])
    raise UserError(
        f"run '{prefix}' has no rollout for task '{task_id}' trial {trial}",
        fix=f"pick a task of this run (e.g. {sample}) or see `harness-opt traces list {prefix}`",
    )
