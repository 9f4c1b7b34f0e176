"""Scripted meta-model replies (the dspy ChatAdapter sections the `llm` proposer's steps parse), and a
small proposal input with raw traces for the proposer tests."""

from __future__ import annotations

import json
from typing import Any

from harness_opt.propose.base import HistoryEntry, ProposalInput
from harness_opt.records import LLMCallEvent, RolloutKey, Task, ToolCallEvent, Trace


def step_reply(tool: str, args: dict[str, Any] | None = None, thought: str = "next") -> str:
    """One tools-mode step: a thought, a tool name and its arguments, in ChatAdapter format."""
    return (
        f"[[ ## next_thought ## ]]\n{thought}\n\n[[ ## next_tool_name ## ]]\n{tool}\n\n"
        f"[[ ## next_tool_args ## ]]\n{json.dumps(args or {})}\n\n[[ ## completed ## ]]\n"
    )


def transcript(messages: list[dict[str, Any]]) -> str:
    """Every message's text, joined: what the meta-model was shown in one call."""
    return "\n".join(str(m.get("content") or "") for m in messages)


def steps_taken(messages: list[dict[str, Any]]) -> int:
    """How many steps the trajectory shown in this call already holds."""
    shown = transcript(messages).split("[[ ## trajectory ## ]]")[-1].split("[[ ## ")[0]
    return shown.count("[step ")


FILES = {
    "harness.toml": "[harness]\nname = 'clf'\n",
    "prompts/system.j2": "Classify the banking query into one intent.\n",
    "tools.json": "[]\n",
    "agent.py": "def run(task, ctx):\n    return ctx.llm([{'role': 'user', 'content': task['text']}])\n",
}
EDITABLE = ("prompts/*.j2", "tools.json", "agent.py")


def make_trace(
    task_id: str,
    *,
    label: str,
    got: str,
    trial: int = 0,
    passed: bool = False,
    error: str | None = None,
    padding: int = 0,
) -> Trace:
    messages = [
        {"role": "system", "content": "Classify the banking query."},
        {"role": "user", "content": f"query for {task_id}" + " pad" * padding},
    ]
    reply = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps({"q": task_id})},
            }
        ],
    }
    second = [*messages, reply, {"role": "tool", "tool_call_id": "c1", "content": f"RESULT-{task_id}"}]
    return Trace(
        run_id="r1",
        key=RolloutKey(
            version_hash="h",
            suite="banking77",
            split="train",
            task_id=task_id,
            trial=trial,
            model="scripted/agent",
        ),
        task_input={"text": f"query for {task_id}"},
        events=[
            LLMCallEvent(model="scripted/agent", messages=messages, response=reply),
            ToolCallEvent(name="lookup", args={"q": task_id}, result=f"RESULT-{task_id}"),
            LLMCallEvent(
                model="scripted/agent", messages=second, response={"role": "assistant", "content": got}
            ),
        ],
        output=got,
        score=1.0 if passed else 0.0,
        passed=passed,
        error=error,
        feedback="correct" if passed else f"expected {label}, got {got}",
    )


def make_input(**overrides: Any) -> ProposalInput:
    failing = [
        make_trace("t1", label="card_lost", got="card_arrival"),
        make_trace("t2", label="top_up", got="balance"),
    ]
    values: dict[str, Any] = dict(
        agent="clf",
        version_label="clf@v0001",
        files=FILES,
        editable=EDITABLE,
        suite="banking77",
        suite_description="Intent classification, 77 labels.",
        failing_traces=failing,
        passing_traces=[make_trace("t3", label="refund", got="refund", passed=True)],
        train_tasks=[
            Task(id="t1", input={}, expected="card_lost"),
            Task(id="t2", input={}, expected="top_up"),
            Task(id="t3", input={}, expected="refund"),
        ],
        val_score=0.61,
        history=[
            HistoryEntry(
                iteration=1,
                candidate="clf@v0002",
                proposer="llm",
                mechanism="few-shot examples",
                hypothesis="HIST-HYPOTHESIS examples teach the label set",
                outcome="rejected",
                delta=-0.02,
                p_value=0.4,
                reason="no significant gain",
            )
        ],
    )
    values.update(overrides)
    return ProposalInput(**values)
