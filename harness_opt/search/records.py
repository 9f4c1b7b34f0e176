"""What an optimize run reports: one record per candidate, and the final result."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field


class CandidateRecord(BaseModel):
    iteration: int
    label: str = Field(description="Version label, or '-' when the candidate never became a version.")
    hash: str = ""
    proposer: str
    mechanism: str
    hypothesis: str
    outcome: Literal["baseline", "accepted", "rejected", "invalid"]
    val_score: float | None = None
    delta: float | None = None
    p_value: float | None = None
    reason: str = ""


class SplitFigures(BaseModel):
    score: float
    ci: tuple[float, float]
    n_tasks: int


class OptimizeResult(BaseModel):
    run_id: str
    status: Literal["finished", "stopped"]
    stop_reason: str
    model: str
    baseline_label: str
    baseline_hash: str
    best_label: str
    best_hash: str
    best_path: str
    baseline_val: SplitFigures
    best_val: SplitFigures
    baseline_test: SplitFigures | None = None
    best_test: SplitFigures | None = None
    test_p_value: float | None = Field(default=None, description="Paired test of best vs baseline on test.")
    noise: float = 0.0
    candidates: list[CandidateRecord] = Field(default_factory=list)
    cost_usd: float = 0.0
    rollouts_run: int = 0
    elapsed_s: float = 0.0
    plot: str | None = None

    @property
    def kept(self) -> list[CandidateRecord]:
        return [c for c in self.candidates if c.outcome == "accepted"]


class OptimizeDisplay(Protocol):
    """How the loop tells a person what it is doing; the CLI renders it live, a notebook may log it."""

    def status(self, text: str) -> None: ...

    def eval_progress(self, what: str, done: int, total: int) -> None: ...

    def candidate(self, record: CandidateRecord) -> None: ...

    def incumbent(self, label: str, val_score: float, budget: str) -> None: ...


class QuietDisplay:
    """The library default: say nothing (the ledger has everything)."""

    def status(self, text: str) -> None:
        pass

    def eval_progress(self, what: str, done: int, total: int) -> None:
        pass

    def candidate(self, record: CandidateRecord) -> None:
        pass

    def incumbent(self, label: str, val_score: float, budget: str) -> None:
        pass


def default_plot_path(run_id: str, home: Path) -> Path:
    out = home / "runs" / run_id
    out.mkdir(parents=True, exist_ok=True)
    return out / "progress.png"
