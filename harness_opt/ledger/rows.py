"""Typed rows of the ledger tables other than `rollouts` (whose row is `harness_opt.records.Rollout`).

Field order matches the column order of the tables, so a row inserts as `tuple(row.values())`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from harness_opt.records import utcnow

if TYPE_CHECKING:
    from harness_opt.harness.version import HarnessVersion

RunKind = Literal["eval", "optimize"]
ExperimentStatus = Literal["keep", "discard", "crash"]


class VersionRow(BaseModel):
    """A harness version as evaluated: identity (content hash) plus the provenance of its manifest."""

    hash: str = Field(description="Content hash of the version directory.")
    agent: str = Field(description="Agent name (the folder under harnesses/).")
    version: int | None = Field(default=None, description="Version number, e.g. 3 for v0003.")
    parent: str | None = Field(default=None, description="Content hash of the parent version.")
    parent_dir: str | None = Field(default=None, description="Directory name of the parent, e.g. v0002.")
    path: str | None = Field(default=None, description="Where the version directory was when recorded.")
    proposer: str | None = Field(default=None, description="seed, human, llm, agent, operators:<name>.")
    hypothesis: str | None = Field(default=None, description="Why it should beat its parent.")
    changes: list[str] = Field(default_factory=list, description="One line per change made.")
    created: datetime = Field(default_factory=utcnow)

    @classmethod
    def from_version(cls, version: HarnessVersion) -> VersionRow:
        """The row of a loaded version: its hash and the `[harness]` provenance of its manifest."""
        info = version.manifest.harness
        created = info.created or utcnow()
        if created.tzinfo is None:  # a TOML local datetime: harness-opt writes UTC
            created = created.replace(tzinfo=UTC)
        return cls(
            hash=version.hash,
            agent=info.name,
            version=info.version,
            parent=info.parent,
            parent_dir=info.parent_dir,
            path=str(version.path),
            proposer=info.proposer,
            hypothesis=info.hypothesis,
            changes=list(info.changes),
            created=created,
        )


class RunRow(BaseModel):
    """One `eval` or `optimize` invocation; `ended`/`summary` stay empty while it runs (or if killed)."""

    run_id: str
    kind: RunKind
    started: datetime = Field(default_factory=utcnow)
    ended: datetime | None = None
    status: str = Field(default="running", description="running, done, failed, interrupted, ...")
    config: dict[str, Any] = Field(default_factory=dict, description="The resolved options of the run.")
    summary: dict[str, Any] = Field(default_factory=dict, description="Headline figures at the end.")


class DecisionRow(BaseModel):
    """One acceptance decision of the search: candidate vs incumbent on the same val tasks."""

    run_id: str
    iteration: int
    candidate: str = Field(description="Content hash of the candidate version.")
    incumbent: str | None = Field(default=None, description="Content hash of the incumbent, if any.")
    delta: float | None = Field(default=None, description="Mean paired score difference (cand - inc).")
    p_value: float | None = None
    accepted: bool
    reason: str = ""
    detail: dict[str, Any] = Field(
        default_factory=dict, description="The search's full record of the candidate (for --resume)."
    )
    created: datetime = Field(default_factory=utcnow)
    meta_model: str | None = Field(default=None, description="The meta-model (or agent) that proposed it.")
    meta_calls: int = Field(default=0, description="Meta-model calls spent on this proposal.")
    meta_tokens_in: int = 0
    meta_tokens_out: int = 0
    meta_cost_usd: float = Field(default=0.0, description="Meta-model spend on this proposal, USD.")
    meta_seconds: float = Field(default=0.0, description="Wall time the proposer spent on it.")


class ExperimentRow(BaseModel):
    """One training-loop run (the training domain): one metric under a fixed time budget."""

    run_id: str
    version_hash: str
    metric: str = Field(description="Metric name, e.g. val_bpb.")
    value: float | None = Field(default=None, description="Metric value; None when the run crashed.")
    memory_gb: float | None = Field(default=None, description="Peak accelerator memory.")
    status: ExperimentStatus
    description: str = ""
    created: datetime = Field(default_factory=utcnow)
