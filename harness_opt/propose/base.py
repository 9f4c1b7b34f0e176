"""The Proposer contract: read train evidence and the history of tries, return candidate edits.

A proposer sees the current version's files, raw train traces (failing first) with scorer feedback,
train tasks with their answers, the *aggregate* val score, and what was tried before with its outcome.
It never sees val or test tasks, traces or answers: `ProposalInput` has no field that could carry them.
Each `Proposal` is one mechanism with one stated hypothesis, so an accepted gain can be attributed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from harness_opt.records import Task, Trace


class HistoryEntry(BaseModel):
    """One earlier candidate and what became of it (the meta-agent learns from its failures too)."""

    iteration: int
    candidate: str = Field(description="Version label, e.g. banking77@v0004, or '-' if invalid.")
    proposer: str
    mechanism: str
    hypothesis: str
    outcome: Literal["accepted", "rejected", "invalid"]
    delta: float | None = Field(default=None, description="Val score change vs the incumbent.")
    p_value: float | None = None
    reason: str = ""


class TaskWins(BaseModel):
    """An earlier candidate against the incumbent it was compared with, val task by val task.

    Val task ids never reach a proposer: `wins` and `losses` hold opaque keys (`opaque_task_key`),
    enough to see that two mechanisms helped on *different* tasks (and so may combine, as in GEPA's
    per-instance Pareto front) without saying which tasks those are."""

    candidate: str = Field(description="Version label of the earlier candidate.")
    mechanism: str
    incumbent: str = Field(description="Version label of the incumbent it was compared with.")
    wins: list[str] = Field(default_factory=list, description="Opaque keys of tasks it scored higher on.")
    losses: list[str] = Field(default_factory=list, description="Opaque keys of tasks it scored lower on.")


def opaque_task_key(salt: str, task_id: str) -> str:
    """A stable stand-in for a val task id within one run (`salt` = the run id)."""
    return hashlib.sha256(f"{salt}\0{task_id}".encode()).hexdigest()[:12]


class ProposalInput(BaseModel):
    """Everything a proposer may read. Train-only by construction."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent: str = Field(description="Agent name (harnesses/<agent>/).")
    version_label: str
    files: dict[str, str] = Field(description="Current version's text files: relative path -> content.")
    editable: tuple[str, ...] = Field(description="Globs a proposal may change; everything else is frozen.")
    suite: str
    suite_description: str = ""
    failing_traces: list[Trace] = Field(description="Raw failing train traces (whole, never summarized).")
    passing_traces: list[Trace] = Field(default_factory=list, description="A few passing train traces.")
    train_tasks: list[Task] = Field(description="Train tasks with expected answers (train gold is allowed).")
    imported_traces: list[Trace] = Field(
        default_factory=list,
        description="Labelled production traces (`traces import`): evidence only, never a score.",
    )
    val_score: float | None = Field(default=None, description="Incumbent's aggregate val score only.")
    history: list[HistoryEntry] = Field(default_factory=list)
    task_wins: list[TaskWins] = Field(
        default_factory=list,
        description="Per-task wins and losses (opaque keys) of earlier candidates of this run against "
        "their incumbents; the loop fills it from `ledger.queries.candidate_task_wins`.",
    )
    retest_val_limit: int | None = Field(
        default=None,
        description="How many val tasks a re-test of a near miss may use (more than a decision "
        "normally uses); None when the loop cannot re-test. A proposal asks for one with "
        "meta['retest'] = True.",
    )
    seed: int = 0


class Proposal(BaseModel):
    """One candidate: a single mechanism, its hypothesis, and the file edits that implement it."""

    proposer: str = Field(description="'llm', 'agent', 'operators:<name>', ...")
    mechanism: str = Field(description="Short name of the one mechanism this candidate changes.")
    hypothesis: str = Field(description="Why this should raise the score, in one or two sentences.")
    changes: list[str] = Field(default_factory=list, description="One line per change made.")
    edits: dict[str, str | None] = Field(description="Relative path -> new content (None deletes).")
    meta: dict[str, Any] = Field(default_factory=dict, description="Proposer-specific extras (cost...).")


@runtime_checkable
class Proposer(Protocol):
    name: str

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        """Return up to `n` proposals, each a different mechanism where possible.

        Never raise for a bad idea: return fewer proposals. Raise `UserError` only for a
        misconfiguration the user must fix (e.g. the external agent command does not exist).
        """
        ...
