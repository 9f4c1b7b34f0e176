"""Scripted participants of τ²-retail rollouts: a customer, an agent model that replays a task's gold
actions, and an NL-assertion judge, all as `scripted_model` responders (served through litellm).

The customer names its task in its first message ("I am calling about task 7 (visit 2)."), counting
its visits per task, so one agent model can serve every task and tests can vary behaviour by trial:
`skip_write(task_id, visit)` makes the agent leave out the task's first write action (the DB then
differs), and `unmet(task_id, nth)` makes the judge fail the n-th judgement of a task.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from harness_opt.suites.usersim import format_scenario

DONE = "That is everything."
WRITES = ("cancel", "modify", "return", "exchange")
_TASK = re.compile(r"I am calling about task (\S+) \(visit (\d+)\)")

Responder = Callable[[list[dict[str, Any]], Any, dict[str, Any]], Any]


def all_tasks(suite: Any) -> list[Any]:
    return [t for split in suite.split_names() for t in suite.tasks(split)]


def customer(suite: Any) -> Responder:
    """Names its task and visit, then says ###STOP### once the agent is done."""
    by_scenario = {format_scenario(t.metadata["user_scenario"]): t.id for t in all_tasks(suite)}
    visits: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        system = messages[0]["content"]
        scenario = system.split("<scenario>\n", 1)[1].rsplit("\n</scenario>", 1)[0]
        task_id = by_scenario[scenario]
        if DONE in (messages[-1].get("content") or ""):
            return "Thanks, that is all. ###STOP###"
        with lock:
            visit = visits[task_id]
            visits[task_id] += 1
        return f"I am calling about task {task_id} (visit {visit})."

    return respond


def gold_agent(suite: Any, skip_write: Callable[[str, int], bool] = lambda task, visit: False) -> Responder:
    """Calls the task's gold actions one per turn (the first write left out when `skip_write`), then
    tells the customer every required piece of information and that it is done."""
    tasks = {t.id: t for t in all_tasks(suite)}

    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> Any:
        found = next((m for m in (_TASK.search(x.get("content") or "") for x in messages) if m), None)
        if found is None:
            return "How can I help?"
        task = tasks[found[1]]
        actions = list(task.expected["actions"])
        if skip_write(task.id, int(found[2])):
            first = next((i for i, a in enumerate(actions) if a["name"].startswith(WRITES)), None)
            if first is not None:
                actions.pop(first)
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < len(actions):
            return {"tool_calls": [{"name": actions[done]["name"], "arguments": actions[done]["arguments"]}]}
        told = "; ".join(task.expected.get("communicate_info") or [])
        return f"Done: {told}. {DONE}"

    return respond


def judge(unmet: Callable[[str, int], bool] = lambda task, nth: False) -> Responder:
    """Answers τ²'s judge prompt in τ²'s JSON format: every assertion met, except the `nth` judgement
    of a task for which `unmet(task_id, nth)`."""
    seen: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        prompt = messages[-1]["content"]
        assertions = ast.literal_eval(prompt.split("expectedOutcomes:\n", 1)[1].strip())
        found = _TASK.search(prompt)
        task_id = found[1] if found else "?"
        with lock:
            nth = seen[task_id]
            seen[task_id] += 1
        met = not unmet(task_id, nth)
        return json.dumps(
            {
                "results": [
                    {"expectedOutcome": a, "reasoning": "scripted", "metExpectation": met} for a in assertions
                ]
            }
        )

    return respond
