"""The seed τ²-retail harness end to end on the real suite: sandboxed agent.py, broker, tools, simulated
user, scorer, traces. Both models are scripted (served through litellm): the agent's replays a task's
gold actions as tool calls and then states the required information; the customer stops once told.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.records import ToolCallEvent, UserTurnEvent
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.support import tau2_scripts

REPO = Path(__file__).resolve().parents[1]
SUITE_DIR = REPO / "tasks" / "tau2-retail"
SEED = REPO / "harnesses" / "tau2-retail" / "v0001"
DONE = "That is everything."


@pytest.fixture(scope="module")
def data() -> Path:
    given = os.environ.get("HARNESS_OPT_TAU2_DATA")
    path = Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "data" / "tau2"
    if not (path / "retail" / "db.json").is_file():
        pytest.fail(f"τ² retail data not found at {path} (set HARNESS_OPT_TAU2_DATA)")
    return path


def gold_agent(actions: list[dict[str, Any]], tell: list[str], skip: int | None = None) -> Any:
    """A model that calls the gold actions in order (leaving out action `skip`), then tells `tell`."""
    plan = [a for i, a in enumerate(actions) if i != skip]

    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> Any:
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < len(plan):
            action = plan[done]
            return {"tool_calls": [{"name": action["name"], "arguments": action["arguments"]}]}
        return f"Done: {'; '.join(tell)}. {DONE}"

    return respond


def customer(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
    assert "<scenario>" in messages[0]["content"]
    return "Thanks! ###STOP###" if DONE in messages[-1]["content"] else "I need help with my orders."


def test_the_seed_harness_replaying_gold_actions_passes_and_the_trace_shows_the_conversation(
    data: Path,
) -> None:
    probe = load_suite(SUITE_DIR, data=str(data))
    task = next(
        t
        for t in probe.tasks("val")
        if t.expected["communicate_info"]
        and any(
            a["name"].startswith(("modify", "cancel", "return", "exchange")) for a in t.expected["actions"]
        )
    )
    actions, tell = task.expected["actions"], task.expected["communicate_info"]
    write = next(
        i for i, a in enumerate(actions) if a["name"].startswith(("modify", "cancel", "return", "exchange"))
    )
    with (
        scripted_model("gold-agent", gold_agent(actions, tell)) as good,
        scripted_model("lazy-agent", gold_agent(actions, tell, skip=write)) as lazy,
        scripted_model("customer", customer, cost_per_token=1e-5) as user,
        scripted_model("judge", tau2_scripts.judge(), cost_per_token=1e-4) as judge,
    ):
        suite = load_suite(SUITE_DIR, data=str(data), user_model=user.model, judge_model=judge.model)
        config = {"split": "val", "task_ids": [task.id], "concurrency": 1}
        passed = evaluate(SEED, suite, EvalConfig(model=good.model, **config))
        failed = evaluate(SEED, suite, EvalConfig(model=lazy.model, **config))
    [rollout] = passed.rollouts
    assert rollout.passed and rollout.score == 1.0, rollout.feedback
    record = json.loads(rollout.feedback.splitlines()[0])
    assert record["db_check"] == {"db_match": True, "db_reward": 1.0}
    if task.expected.get("nl_assertions"):  # judged once per rollout, its cost kept apart
        assert record["reward_breakdown"] == {"DB": 1.0, "NL_ASSERTION": 1.0}
        assert [c["nl_assertion"] for c in record["nl_assertions"]] == task.expected["nl_assertions"]
        assert record["info"]["harness_opt"]["judge"]["model"] == judge.model and len(judge.calls) == 2
        assert record["info"]["harness_opt"]["judge"]["cost_usd"] > 0
    assert rollout.user_cost_usd > 0 and rollout.cost_usd == 0
    trace = read_trace(rollout.trace_ref)
    tools = [e for e in trace.events if isinstance(e, ToolCallEvent)]
    turns = [e for e in trace.events if isinstance(e, UserTurnEvent)]
    assert [e.name for e in tools] == [a["name"] for a in actions]
    assert turns[0].reply == "I need help with my orders." and turns[-1].done
    [bad] = failed.rollouts
    assert bad.score == 0.0 and "differs from the one the gold actions produce" in bad.feedback
