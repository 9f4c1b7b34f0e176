"""Budgets for an optimize run: wall time, dollars, iterations, rollouts; whichever ends first.

A stop file ends the run cleanly too: the loop checks it between evaluations, finishes what it must
(the sealed test), and exits with status 'stopped'.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from pydantic import BaseModel, Field

from harness_opt.errors import UserError

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


class Budget(BaseModel):
    wall_s: float | None = Field(default=None, gt=0, description="Wall-clock seconds for the whole run.")
    dollars: float | None = Field(default=None, gt=0, description="Model spend, task + meta-agent.")
    iterations: int | None = Field(default=None, ge=1, description="Proposal rounds.")
    rollouts: int | None = Field(
        default=None, ge=1, description="New rollouts executed (reused ones are free)."
    )


class BudgetTracker:
    """Counts spend against a `Budget`. Elapsed time survives a resume via `already_elapsed_s`."""

    def __init__(self, budget: Budget, stop_file: Path | None = None, already_elapsed_s: float = 0.0) -> None:
        self.budget = budget
        self.stop_file = stop_file
        self.started = time.monotonic() - already_elapsed_s
        self.dollars = 0.0
        self.iterations = 0
        self.rollouts = 0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def remaining_s(self) -> float | None:
        return None if self.budget.wall_s is None else max(0.0, self.budget.wall_s - self.elapsed_s)

    def exhausted(self, reserve_s: float = 0.0) -> str | None:
        """The reason to stop now, or None. `reserve_s` keeps time back for the final test evaluation."""
        b = self.budget
        if self.stop_file is not None and self.stop_file.exists():
            return f"stop file {self.stop_file} found"
        if b.wall_s is not None and self.elapsed_s + reserve_s >= b.wall_s:
            return f"wall-time budget ({b.wall_s:.0f}s, {reserve_s:.0f}s kept for the test split)"
        if b.dollars is not None and self.dollars >= b.dollars:
            return f"dollar budget (${b.dollars:.2f}) spent"
        if b.iterations is not None and self.iterations >= b.iterations:
            return f"{b.iterations} iterations done"
        if b.rollouts is not None and self.rollouts >= b.rollouts:
            return f"rollout budget ({b.rollouts}) spent"
        return None

    def describe(self) -> str:
        parts = []
        if (left := self.remaining_s()) is not None:
            parts.append(f"{left / 60:.1f} min left")
        if self.budget.dollars is not None:
            parts.append(f"${self.budget.dollars - self.dollars:.2f} left")
        if self.budget.iterations is not None:
            parts.append(f"{self.budget.iterations - self.iterations} iterations left")
        if self.budget.rollouts is not None:
            parts.append(f"{self.budget.rollouts - self.rollouts} rollouts left")
        return ", ".join(parts) or "no budget limit"
