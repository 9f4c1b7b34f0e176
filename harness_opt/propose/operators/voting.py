"""Self-consistency: ask several times and keep the majority answer.

The step limit in harness.toml is frozen by the search (a candidate may not buy itself more calls),
so the number of votes is fitted under it rather than raised past it.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.operator import make_proposal
from harness_opt.propose.operators.workspace import Workspace

MAX_VOTES = 5
VOTE_TEMPERATURE = 0.7


@dataclass(frozen=True)
class SelfConsistency:
    """One greedy answer plus sampled ones; the majority wins, the greedy answer breaks ties."""

    name: str = "self_consistency"
    mechanism: str = "self-consistency voting"

    def propose(self, ws: Workspace) -> Proposal | None:
        """Classification (majority label) or a tool-free JSON suite (majority per field)."""
        fits = ws.classification is not None or (
            ws.task_agent_fits and ws.shape.kind == "json" and not ws.tools
        )
        if not fits or (ws.enabled("vote_n") and int(ws.config["vote_n"]) > 1):
            return None
        votes = min(MAX_VOTES, ws.max_steps)
        votes -= 1 - votes % 2  # odd, so two-way splits have a winner
        if votes < 3:
            return None
        edits, notes = ws.config_edits({"vote_n": votes, "vote_temperature": VOTE_TEMPERATURE})
        return make_proposal(
            self,
            f"A small model's greedy label is often a near miss; {votes} answers ({votes - 1} sampled at "
            f"temperature {VOTE_TEMPERATURE}) with a majority vote correct the unstable cases while the "
            "greedy answer breaks ties.",
            [
                *notes,
                f"agent_config.json: vote_n = {votes}, vote_temperature = {VOTE_TEMPERATURE} "
                f"(fits the frozen limit of {ws.max_steps} steps per task)",
            ],
            edits,
            cost_multiplier=votes,
        )
