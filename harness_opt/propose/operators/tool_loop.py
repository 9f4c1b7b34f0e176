"""Tool-loop operators for agents made by `harness-opt init` (the task agent): how the loop ends.

A small model calling tools tends to repeat the same call until a guard stops it, and then has no
answer at all. These operators change only the loop's config: stop at the first repeated call and
answer from the results so far, and write the answer in a separate call without tools (where a JSON
schema can constrain it). They apply when the suite has tools and agent.py is init's loop or the
task agent; a hand-written agent.py only gets the tool-description operators.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.operator import make_proposal
from harness_opt.propose.operators.tool_docs import repeated_calls
from harness_opt.propose.operators.workspace import Workspace


def _loop_fits(ws: Workspace) -> bool:
    return bool(ws.tools) and ws.task_agent_fits


@dataclass(frozen=True)
class RepeatGuard:
    """End the tool loop at the first repeated identical call; answer from the results already in."""

    name: str = "repeat_guard"
    mechanism: str = "stop repeated tool calls"

    def propose(self, ws: Workspace) -> Proposal | None:
        if not _loop_fits(ws) or ws.enabled("repeat_guard"):
            return None
        repeats = repeated_calls([*ws.inp.failing_traces, *ws.inp.passing_traces])
        if not repeats:
            return None
        edits, notes = ws.config_edits({"repeat_guard": True})
        return make_proposal(
            self,
            f"In {repeats} train rollouts the model made the same tool call again, with the same "
            "arguments, until the loop guard ended it without an answer; the result is already in the "
            "conversation, so a repeat ends the loop and the answer is asked for instead.",
            [
                *notes,
                "agent_config.json: repeat_guard = true (a repeated identical call ends the loop, "
                "then one call without tools writes the answer)",
            ],
            edits,
        )


@dataclass(frozen=True)
class FinalAnswerCall:
    """After the tool loop, one call without tools writes the answer (constrained when a schema is on)."""

    name: str = "final_answer_call"
    mechanism: str = "final answer call without tools"

    def propose(self, ws: Workspace) -> Proposal | None:
        if not _loop_fits(ws) or ws.enabled("final_call") or not ws.shape.has_answers:
            return None
        edits, notes = ws.config_edits({"final_call": True})
        return make_proposal(
            self,
            "With tools on offer, a small model answers in prose or calls another tool instead of "
            "writing the answer; a last call with the tool results but no tools asks only for the "
            "answer, and with a schema switched on it is grammar-constrained to it.",
            [*notes, "agent_config.json: final_call = true"],
            edits,
        )
