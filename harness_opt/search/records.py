"""What an optimize run reports: one record per candidate, why it stopped, and the final result."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import AliasChoices, BaseModel, Field

from harness_opt.propose.base import HistoryEntry, MetaSpend

StopKind = Literal[
    "stop_file",
    "wall_time",
    "dollars",
    "meta_dollars",
    "iterations",
    "rollouts",
    "no_proposals",
    "invalid_streak",
]


class StopReason(BaseModel):
    """Why the loop stopped proposing: `kind` for code, `text` for people."""

    kind: StopKind
    text: str


class CandidateRecord(HistoryEntry):
    """One candidate as the search recorded it: the history entry a proposer reads, plus the version's
    hash and measured score. It is the `detail` of its `decisions` row, read back on `--resume`."""

    candidate: str = Field(
        validation_alias=AliasChoices("candidate", "label"),
        description="Version label, or '-' when the candidate never became a version.",
    )
    outcome: Literal["baseline", "accepted", "rejected", "invalid"]  # type: ignore[assignment]
    hash: str = ""
    val_score: float | None = None
    spend: MetaSpend | None = Field(
        default=None, description="What the meta-model spent proposing it (None: no meta-model)."
    )
    proposed: bool = Field(
        default=True,
        description="False: the proposer produced no candidate this time (its reason and spend are kept).",
    )

    @property
    def label(self) -> str:
        return self.candidate

    def key(self) -> tuple[int, str, str, str]:
        """What identifies a decision within a run: a resumed iteration redoes the same proposals."""
        return (self.iteration, self.proposer, self.mechanism, self.hash)

    def as_history(self) -> HistoryEntry:
        return HistoryEntry.model_validate(self.model_dump(include=set(HistoryEntry.model_fields)))


class SplitFigures(BaseModel):
    score: float
    ci: tuple[float, float]
    n_tasks: int = Field(description="Tasks (agent harnesses) or runs (training) behind the score.")
    interval: str = Field(default="95% CI", description="What `ci` is: a 95% CI, or the range of runs.")


class SealedTest(BaseModel):
    """The sealed test split, evaluated once at the end for the baseline and the best version."""

    baseline: SplitFigures
    best: SplitFigures
    p_value: float | None = Field(default=None, description="Paired test of best vs baseline on test.")


class OptimizeResult(BaseModel):
    run_id: str
    status: Literal["finished", "stopped", "degraded"]
    degraded: str | None = Field(
        default=None, description="Why the run is degraded (too many infrastructure failures), or None."
    )
    stop_reason: str
    stop: StopKind | None = None
    model: str
    metric: str = Field(default="val score", description="What the scores are (val_bpb for training).")
    direction: Literal["max", "min"] = Field(default="max", description="Which way the metric improves.")
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
    cost_usd: float = Field(default=0.0, description="Model spend: task rollouts and the meta-model.")
    meta: MetaSpend = Field(
        default_factory=MetaSpend, description="The meta-model's share: calls, tokens, cost, time."
    )
    rollouts_run: int = 0
    elapsed_s: float = 0.0
    plot: str | None = Field(default=None, description="progress.png, when the caller drew it.")

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
