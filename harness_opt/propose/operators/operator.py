"""The one-method contract every operator implements, and the proposal it returns.

An operator is one mechanism (constrained output, retrieved demos, voting, ...). It looks at the
workspace, decides whether it applies and is not already applied, and returns a single `Proposal`
whose hypothesis names that mechanism, or None. It never raises for a bad fit: it declines.
"""

from __future__ import annotations

from typing import Protocol

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.workspace import Workspace


class Operator(Protocol):
    @property
    def name(self) -> str:
        """Short id; the proposal's proposer is `operators:<name>`."""
        ...

    @property
    def mechanism(self) -> str:
        """What the history records; a rejected mechanism is not proposed again."""
        ...

    def propose(self, ws: Workspace) -> Proposal | None:
        """A proposal on top of the current files, or None if this operator does not apply."""
        ...


def make_proposal(
    op: Operator, hypothesis: str, changes: list[str], edits: dict[str, str | None], **meta: object
) -> Proposal:
    """A Proposal attributed to `op`, so an accepted gain is traceable to one mechanism."""
    return Proposal(
        proposer=f"operators:{op.name}",
        mechanism=op.mechanism,
        hypothesis=hypothesis,
        changes=changes,
        edits=edits,
        meta={"operator": op.name, **meta},
    )
