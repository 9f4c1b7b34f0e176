"""The Suite contract: tasks with sealed splits, a fresh environment per rollout, and a scorer.

A suite never raises for one task's failure while scoring: a malformed output scores 0 with feedback
that says why, so one bad rollout cannot stop an evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness_opt.records import Score, Task


class ToolError(Exception):
    """Raised by an environment tool for bad arguments; its text goes back to the agent as the result."""


@runtime_checkable
class Environment(Protocol):
    """Tools the agent may call, over state that is fresh for each rollout."""

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        """Run one tool. Raise `ToolError` for a bad call; the broker turns it into an error result."""
        ...


class NoTools:
    """The environment of a suite without tools (e.g. classification): every call is an error."""

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        raise ToolError(f"this suite has no tools; '{name}' does not exist")


@runtime_checkable
class Suite(Protocol):
    """A benchmark suite. `tasks('test')` is only ever called by the evaluator's sealed-split gate."""

    name: str
    path: Path
    deterministic_scorer: bool

    def split_names(self) -> tuple[str, ...]: ...

    def tasks(self, split: str) -> list[Task]:
        """Tasks of one split, in a stable order. Unknown split -> `SuiteError` naming the valid ones."""
        ...

    def environment(self, task: Task) -> Environment:
        """A fresh environment (tools + state) for one rollout of `task`."""
        ...

    def score(self, task: Task, output: Any, env: Environment) -> Score:
        """Score a rollout's final output (and the environment's final state)."""
        ...
