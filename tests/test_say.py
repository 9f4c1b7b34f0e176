"""`ctx.say` end to end: the seed τ²-retail agent loop, in the sandbox, talking to a simulated user.

The agent and the user are both scripted models served through litellm, so the broker, the trace,
the user-cost accounting and the ledger columns of m003 are all the real code paths.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.ledger import Ledger
from harness_opt.records import LLMCallEvent, ToolCallEvent, UserTurnEvent
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model

REPO = Path(__file__).resolve().parents[1]
SEED_AGENT = REPO / "harnesses" / "tau2-retail" / "v0001" / "agent.py"
CHATTY = REPO / "tests" / "fixtures" / "suites" / "chatty"

TOOLS = """[{"type": "function", "function": {"name": "get_price", "description": "Price of an item.",
  "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}}}]"""


def make_version(root: Path, agent_source: str | None = None, max_steps: int = 30) -> Path:
    """A harness version running the seed τ²-retail agent.py (or `agent_source`) with a tiny prompt."""
    folder = root / "chatter" / "v0001"
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    if agent_source is None:
        shutil.copy(SEED_AGENT, folder / "agent.py")
    else:
        (folder / "agent.py").write_text(agent_source)
    (folder / "tools.json").write_text(TOOLS)
    (folder / "prompts" / "system.j2").write_text("You sell things. Use get_price, then tell the price.")
    (folder / "harness.toml").write_text(
        '[harness]\nname = "chatter"\nversion = 1\nproposer = "human"\nhypothesis = "test"\n\n'
        '[model]\nname = "local/smollm2"\nparams = { temperature = 0 }\n\n'
        '[runtime]\nentrypoint = "agent.py:run"\n\n'
        f"[runtime.limits]\nwall_time_s = 30\nmax_steps = {max_steps}\n"
    )
    return folder


def shop_agent(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> Any:
    """Looks the price up with the tool, then tells it; asks again when it cannot tell which item."""
    last = messages[-1]
    if last["role"] == "tool":
        return f"The price is {last['content']}."
    match = re.search(r"price of the (\w+)", last.get("content") or "")
    if match:
        return {"tool_calls": [{"name": "get_price", "arguments": {"item": match[1]}}]}
    return "Which item?"


def customer(stop: bool = True):
    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        item = re.search(r"price of the (\w+)", messages[0]["content"])
        assert item, "the scenario reaches the user's system prompt"
        said = messages[-1]["content"]
        if stop and re.search(r"\d+\.\d\d", said):
            return "Great, thanks! ###STOP###"
        return f"What is the price of the {item[1]}?"

    return respond


def test_seed_agent_talks_to_the_user_uses_a_tool_and_passes(tmp_path: Path) -> None:
    version = make_version(tmp_path)
    with (
        scripted_model("shop-agent", shop_agent, cost_per_token=1e-6) as agent,
        scripted_model("customer", customer(), cost_per_token=1e-5) as user,
    ):
        suite = load_suite(CHATTY, user_model=user.model)
        result = evaluate(version, suite, EvalConfig(split="val", model=agent.model, concurrency=2))
    assert [r.passed for r in result.rollouts] == [True, True]
    rollout = result.rollouts[0]
    trace = read_trace(rollout.trace_ref)
    kinds = [e.type for e in trace.events]
    # greeting -> user asks; model -> tool; model -> message -> user stops
    assert kinds == ["user", "llm", "tool", "llm", "user", "output"]
    turns = [e for e in trace.events if isinstance(e, UserTurnEvent)]
    assert turns[0].agent_message == "Hi! How can I help you today?"
    assert turns[0].reply == "What is the price of the chair?" and not turns[0].done
    assert turns[1].agent_message == "The price is 99.00."
    assert turns[1].done and turns[1].stop_reason == "stop" and "###STOP###" in (turns[1].reply or "")
    assert next(e for e in trace.events if isinstance(e, ToolCallEvent)).args == {"item": "chair"}
    assert trace.output == {"ended_by": "user", "model_calls": 2}
    # the user's spend is counted apart from the agent's, and both reach the ledger
    agent_cost = sum(e.cost_usd for e in trace.events if isinstance(e, LLMCallEvent))
    user_cost = sum(e.cost_usd for e in turns)
    assert agent_cost > 0 and user_cost > 0
    assert rollout.cost_usd == pytest.approx(agent_cost)
    assert rollout.user_cost_usd == pytest.approx(user_cost)
    assert rollout.user_tokens == sum(e.tokens_in + e.tokens_out for e in turns) > 0
    (stored,) = [r for r in Ledger().rollouts(run_id=result.run_id) if r.task_id == rollout.task_id]
    assert (stored.user_cost_usd, stored.user_tokens) == (rollout.user_cost_usd, rollout.user_tokens)


def test_a_user_that_never_stops_is_cut_at_max_turns(tmp_path: Path) -> None:
    version = make_version(tmp_path, max_steps=50)
    with (
        scripted_model("shop-agent2", shop_agent) as agent,
        scripted_model("nagging", customer(stop=False)) as user,
    ):
        suite = load_suite(CHATTY, user_model=user.model, max_turns=3)
        result = evaluate(version, suite, EvalConfig(split="val", limit=1, model=agent.model))
    trace = read_trace(result.rollouts[0].trace_ref)
    turns = [e for e in trace.events if isinstance(e, UserTurnEvent)]
    assert [t.done for t in turns] == [False, False, False, True]
    assert turns[-1].stop_reason == "max_turns" and turns[-1].reply is None and turns[-1].tokens_in == 0
    assert trace.output["ended_by"] == "user"
    assert result.rollouts[0].error is None


SAY_WITHOUT_USER = """
def run(task, ctx):
    try:
        ctx.say("hello?")
    except Exception as exc:
        return {"error": str(exc)}
    return {"error": None}
"""


def test_say_in_a_suite_without_a_user_is_an_error_the_harness_can_catch(tmp_path: Path) -> None:
    version = make_version(tmp_path, agent_source=SAY_WITHOUT_USER)
    with scripted_model("unused", ["x"]) as model:
        result = evaluate(version, REPO / "tasks" / "banking77", EvalConfig(limit=1, model=model.model))
    rollout = result.rollouts[0]
    assert rollout.error is None
    assert "no simulated user" in read_trace(rollout.trace_ref).output["error"]


def test_a_failing_user_model_ends_the_rollout_as_llm_error(tmp_path: Path) -> None:
    version = make_version(tmp_path)
    with scripted_model("agent3", shop_agent) as agent, scripted_model("dead-user", []) as user:
        suite = load_suite(CHATTY, user_model=user.model)
        result = evaluate(version, suite, EvalConfig(split="val", limit=1, model=agent.model))
    rollout = result.rollouts[0]
    assert rollout.error == "llm_error" and not rollout.passed
    assert "user simulator failed" in (rollout.error_detail or "")
    turns = [e for e in read_trace(rollout.trace_ref).events if isinstance(e, UserTurnEvent)]
    assert len(turns) == 1 and turns[0].error


def test_say_counts_as_a_step(tmp_path: Path) -> None:
    chatty_loop = 'def run(task, ctx):\n    while ctx.say("hi") is not None:\n        pass\n'

    version = make_version(tmp_path, agent_source=chatty_loop, max_steps=3)
    with scripted_model("agent4", ["x"]) as agent, scripted_model("talker", customer(stop=False)) as user:
        suite = load_suite(CHATTY, user_model=user.model, max_turns=10)
        result = evaluate(version, suite, EvalConfig(split="val", limit=1, model=agent.model))
    assert result.rollouts[0].error == "step_limit"


def test_suite_options_merge_over_suite_toml_and_none_keeps_the_file_value(tmp_path: Path) -> None:
    from harness_opt.cli.suite_options import load_suite_with_options, suite_options
    from harness_opt.errors import UserError

    default = load_suite(CHATTY, user_model=None)
    assert (default.user_model, default.max_turns) == ("local/smollm2", 4)  # [options] of suite.toml
    with scripted_model("opt-user", ["x"]) as user:
        given = load_suite_with_options(CHATTY, user_model=user.model)
    assert (given.user_model, given.max_turns) == (user.model, 4)
    assert suite_options(data=tmp_path) == {"data": str(tmp_path.resolve())}
    with pytest.raises(UserError, match="data folder does not exist"):
        suite_options(data=tmp_path / "nope")
    with pytest.raises(UserError):
        suite_options(user_model="no-such-provider-xyz/model")
