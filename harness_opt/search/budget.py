"""Budgets for an optimize run: wall time, dollars, iterations, rollouts; whichever ends first.

A stop file ends the run cleanly too: the loop checks it between evaluations, finishes what it must
(the sealed test), and exits with status 'stopped'.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, Field

from harness_opt.errors import UserError
from harness_opt.search.records import StopReason

if TYPE_CHECKING:
    from harness_opt.search.state import RunState

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'20m', '1h30m', '90s', '45' (seconds) -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UserError(f"cannot read the duration '{text}'", fix="write it like 90s, 20m, 1h30m or 8h")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _duration(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return parse_duration(value)
    except UserError as exc:  # pydantic reports it with the field's name
        raise ValueError(exc.message) from None


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds, also written as a duration string ('20m', '1h30m')."""


class Budget(BaseModel):
    """Whichever limit is reached first ends the run. Each is also a command-line option."""

    wall_s: Duration | None = Field(
        default=None,
        gt=0,
        description="Wall time for the whole run, e.g. 20m, 8h.",
        json_schema_extra={"option": "budget"},
    )
    dollars: float | None = Field(default=None, gt=0, description="Model spend, task + meta-agent.")
    meta_dollars: float | None = Field(
        default=None, gt=0, description="Meta-agent spend alone (its proposals), USD."
    )
    iterations: int | None = Field(default=None, ge=1, description="Proposal rounds.")
    rollouts: int | None = Field(
        default=None, ge=1, description="New rollouts executed (reused ones are free)."
    )


class BudgetTracker:
    """Counts a run's spend (kept in its `RunState`) against a `Budget`. The clock starts at the
    state's `elapsed_s`, so a resumed run continues where it stopped."""

    def __init__(self, budget: Budget, state: RunState, stop_file: Path | None = None) -> None:
        self.budget = budget
        self.state = state
        self.stop_file = stop_file
        self.started = time.monotonic() - state.elapsed_s

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def remaining_s(self) -> float | None:
        return None if self.budget.wall_s is None else max(0.0, self.budget.wall_s - self.elapsed_s)

    def exhausted(self, reserve_s: float = 0.0) -> StopReason | None:
        """Why to stop now, or None. `reserve_s` keeps time back for what must run at the end."""
        b, s = self.budget, self.state
        if self.stop_file is not None and self.stop_file.exists():
            return StopReason(kind="stop_file", text=f"stop file {self.stop_file} found")
        if b.wall_s is not None and self.elapsed_s + reserve_s >= b.wall_s:
            text = f"wall-time budget ({b.wall_s:.0f}s, {reserve_s:.0f}s kept for the end)"
            return StopReason(kind="wall_time", text=text)
        if b.dollars is not None and s.cost_usd >= b.dollars:
            return StopReason(kind="dollars", text=f"dollar budget (${b.dollars:.2f}) spent")
        if b.meta_dollars is not None and s.meta.cost_usd >= b.meta_dollars:
            text = f"meta-agent budget (${b.meta_dollars:.2f}) spent"
            return StopReason(kind="meta_dollars", text=text)
        if b.iterations is not None and s.iteration >= b.iterations:
            return StopReason(kind="iterations", text=f"{b.iterations} iterations done")
        if b.rollouts is not None and s.rollouts >= b.rollouts:
            return StopReason(kind="rollouts", text=f"rollout budget ({b.rollouts}) spent")
        return None

    def describe(self) -> str:
        b, s = self.budget, self.state
        parts = []
        if (left := self.remaining_s()) is not None:
            parts.append(f"{left / 60:.1f} min left")
        if b.dollars is not None:
            parts.append(f"${b.dollars - s.cost_usd:.2f} left")
        if b.meta_dollars is not None:
            parts.append(f"${b.meta_dollars - s.meta.cost_usd:.2f} meta left")
        if b.iterations is not None:
            parts.append(f"{b.iterations - s.iteration} iterations left")
        if b.rollouts is not None:
            parts.append(f"{b.rollouts - s.rollouts} rollouts left")
        return ", ".join(parts) or "no budget limit"
