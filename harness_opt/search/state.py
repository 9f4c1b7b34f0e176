"""`RunState`: what a resumed optimize run needs beyond the ledger's rows, written by one checkpoint.

Rollouts, versions and decisions are already rows of the ledger when they happen; the state adds the
counters and the incumbent the loop carries between iterations. It is stored in the run's `summary`
(`{"checkpoint": ...}`) after every iteration and at the end, and read back by `--resume`: the budget
clock continues, the interrupted iteration is redone from the same incumbent, and a decision it
already wrote is not written again.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from harness_opt.errors import UserError
from harness_opt.ledger import Ledger
from harness_opt.propose.base import MetaSpend
from harness_opt.search.measurement import Measurement
from harness_opt.search.records import CandidateRecord, OptimizeResult


class RunState(BaseModel):
    """The loop's state between iterations."""

    iteration: int = Field(default=0, description="Iterations finished.")
    elapsed_s: float = Field(default=0.0, description="Wall time spent, across resumes.")
    cost_usd: float = Field(default=0.0, description="Model spend: task rollouts and the meta-agent.")
    meta: MetaSpend = Field(
        default_factory=MetaSpend,
        description="The meta-agent's spend (its cost is also in cost_usd): calls, tokens, time.",
    )
    rollouts: int = Field(
        default=0, description="Rollouts (or training runs) executed, reused ones excluded."
    )
    incumbent: str | None = Field(default=None, description="Content hash of the incumbent.")
    measured: Measurement | None = Field(
        default=None, description="The incumbent's measurement, so a resumed run compares with the same."
    )
    noise: float | None = Field(default=None, description="Measured on the baseline; None before.")


def checkpoint(
    ledger: Ledger,
    run_id: str,
    state: RunState,
    *,
    status: str = "running",
    result: OptimizeResult | None = None,
) -> None:
    """Write the state (and, at the end, the result) into the run's row."""
    summary: dict[str, Any] = {"checkpoint": state.model_dump(mode="json")}
    if result is not None:
        summary["result"] = result.model_dump(mode="json", exclude={"candidates"})
    ledger.end_run(run_id, status, summary)


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return json.loads(value) if value else {}


def read_back(ledger: Ledger, run_id: str) -> tuple[RunState, list[CandidateRecord]]:
    """The state and decisions of an optimize run, to resume it."""
    rows = ledger.query("SELECT summary FROM runs WHERE run_id = ? AND kind = 'optimize'", [run_id])
    if not rows:
        raise UserError(f"no optimize run '{run_id}' in the ledger", fix="see `harness-opt runs` for run ids")
    state = RunState.model_validate(_json(rows[0]["summary"]).get("checkpoint", {}))
    decisions = ledger.query(
        "SELECT detail FROM decisions WHERE run_id = ? ORDER BY iteration, created", [run_id]
    )
    records = [CandidateRecord.model_validate(_json(row["detail"])) for row in decisions]
    return state, records
