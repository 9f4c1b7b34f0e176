"""The Proposer contract: read train evidence and the history of tries, return candidate edits.

A proposer sees the current version's files, raw train traces (failing first) with scorer feedback,
train tasks with their answers, the *aggregate* val score, and what was tried before with its outcome.
It never sees val or test tasks, traces or answers: `ProposalInput` has no field that could carry them.
Each `Proposal` is one mechanism with one stated hypothesis, so an accepted gain can be attributed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
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


class CheckResult(BaseModel):
    """What a proposer's `check` of a candidate directory found: train evidence only."""

    ok: bool = Field(description="It loads and its train task ran without a crash, timeout or limit.")
    report: str = Field(description="Load result, then the train task's score, feedback and raw trace.")


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
    history_dir: Path | None = Field(
        default=None,
        description="The run's history filesystem (`propose/history_fs.py`): INDEX.md and one folder "
        "per candidate with its files, outcome, per-task train scores and raw train traces. Built "
        "from train rollouts only; None when the proposer does not read one.",
    )
    checker: Callable[[Path, str | None], CheckResult] | None = Field(
        default=None,
        exclude=True,
        description="Checks a candidate directory the way the loop validates one (loads, renders, "
        "compiles, runs one train task); the second argument picks the train task. None: no check.",
    )


class MetaSpend(BaseModel):
    """What the meta-model (or coding agent) cost to make one proposal, or to fail to make one."""

    model: str | None = Field(default=None, description="The meta-model or agent command.")
    calls: int = Field(default=0, description="Meta-model calls made.")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    seconds: float = Field(default=0.0, description="Wall time of the proposal.")
    context_tokens: int | None = Field(
        default=None, description="The context window the prompts were budgeted to."
    )
    largest_call_tokens: int = Field(
        default=0, description="Prompt + completion tokens of the largest single call (as reported)."
    )
    overflows: int = Field(default=0, description="Calls the model refused as longer than its context.")

    def add(self, other: MetaSpend) -> MetaSpend:
        """Both spends together (a round's total, a run's total)."""
        return MetaSpend(
            model=self.model or other.model,
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            cost_usd=self.cost_usd + other.cost_usd,
            seconds=self.seconds + other.seconds,
            context_tokens=self.context_tokens or other.context_tokens,
            largest_call_tokens=max(self.largest_call_tokens, other.largest_call_tokens),
            overflows=self.overflows + other.overflows,
        )


class FailedProposal(BaseModel):
    """An attempt that produced no candidate: why, and what it cost (the loop records both)."""

    reason: str
    spend: MetaSpend = Field(default_factory=MetaSpend)


class Proposal(BaseModel):
    """One candidate: a single mechanism, its hypothesis, and the file edits that implement it."""

    proposer: str = Field(description="'llm', 'agent', 'operators:<name>', ...")
    mechanism: str = Field(description="Short name of the one mechanism this candidate changes.")
    hypothesis: str = Field(description="Why this should raise the score, in one or two sentences.")
    changes: list[str] = Field(default_factory=list, description="One line per change made.")
    edits: dict[str, str | None] = Field(description="Relative path -> new content (None deletes).")
    meta: dict[str, Any] = Field(default_factory=dict, description="Proposer-specific extras (cost...).")
    spend: MetaSpend | None = Field(
        default=None, description="Meta-model spend of this proposal (None: the proposer calls no model)."
    )


@runtime_checkable
class Proposer(Protocol):
    name: str

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        """Return up to `n` proposals, each a different mechanism where possible.

        Never raise for a bad idea: return fewer proposals. Raise `UserError` only for a
        misconfiguration the user must fix (e.g. the external agent command does not exist).

        Optional members the loop reads with `getattr` (a proposer without them keeps the defaults):
        `reads_history` (False; True: the loop builds `ProposalInput.history_dir` for it),
        `exhaustible` (True: an empty answer means nothing is left to try and the run stops;
        False: it means the attempts failed, and only a streak of failed rounds stops the run), and
        `failures` (a list of `FailedProposal` for the last call, each recorded with its spend).
        """
        ...
