"""The NL-assertion judge and τ²'s reward around it: τ²'s prompt and output format, the verdict
multiplied into the reward over the task's basis, the judge model defaulting to the agent's, its
figures kept apart, an unjudged reward marked unofficial, and a reused rollout judged at export.
Also τ²'s ends for our rollout errors (a wall-clock timeout is `timeout`, not `max_steps`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.export.tau2 import _simulations
from harness_opt.export.tau2_convert import error_end, trace_messages
from harness_opt.llm.cache import rollout_scope
from harness_opt.llm.client import LLMClient
from harness_opt.records import RolloutKey, ToolCallEvent, Trace, UserTurnEvent
from harness_opt.suites import tau2_reward
from harness_opt.suites.base import ToolError
from harness_opt.suites.loader import load_suite
from harness_opt.suites.nl_judge import JUDGE_SYSTEM, NLAssertionJudge, judge_request, parse_verdicts
from harness_opt.suites.tau2_models import AssistantMessage, EvaluationCriteria, RewardInfo, Task, UserMessage
from harness_opt.testing import scripted_model
from tests.support import tau2_scripts

REPO = Path(__file__).resolve().parents[1]
SUITE_DIR = REPO / "tasks" / "tau2-retail"
SEED = REPO / "harnesses" / "tau2-retail" / "v0001"
DATA = Path(os.environ.get("HARNESS_OPT_TAU2_DATA") or REPO.parent / "shared" / "data" / "tau2")
TAU2_JUDGE_SYSTEM_SHA256 = "994b7abd2d3d869adbc2ce1dce85be5b2ab0243e04f086994737e4fc5e5fd24b"
"""sha256 of the system prompt in tau2/evaluator/evaluator_nl_assertions.py at a2c0247."""


@pytest.fixture(scope="module")
def data() -> Path:
    if not (DATA / "retail" / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {DATA} (set HARNESS_OPT_TAU2_DATA)")
    return DATA


def judged_task(suite: Any) -> Any:
    return next(t for t in suite.tasks("val") if t.expected.get("nl_assertions"))


def gold_env(suite: Any, task: Any) -> Any:
    env = suite.environment(task)
    for action in task.expected["actions"]:
        with contextlib.suppress(ToolError):
            env.call_tool(action["name"], dict(action["arguments"]))
    return env


def test_the_request_is_taus_prompt_and_conversation() -> None:
    assert hashlib.sha256(JUDGE_SYSTEM.encode()).hexdigest() == TAU2_JUDGE_SYSTEM_SHA256
    said = [
        AssistantMessage(role="assistant", content="Hi!"),
        UserMessage(role="user", content="It's 'me'"),
        AssistantMessage(role="assistant", tool_calls=[]),
    ]
    request = judge_request("m", said, ["Agent greets", "Agent's refund is 'fast'"])
    assert request.params == {"temperature": 0.0} and request.messages[0]["content"] == JUDGE_SYSTEM
    user = request.messages[1]["content"]
    assert "conversation:\n        assistant: Hi!\nuser: It's 'me'\nassistant: None\n" in user
    assert user.endswith(
        "expectedOutcomes:\n        ['Agent greets', \"Agent's refund is 'fast'\"]\n        "
    )


def test_verdicts_are_read_from_taus_json_format() -> None:
    reply = {
        "results": [
            {"expectedOutcome": "a", "reasoning": "r", "metExpectation": True},
            {"expectedOutcome": "b", "reasoning": "s", "metExpectation": False},
        ]
    }
    checks = parse_verdicts(json.dumps(reply))
    assert [(c.nl_assertion, c.met, c.justification) for c in checks] == [("a", True, "r"), ("b", False, "s")]
    assert parse_verdicts("```json\n" + json.dumps(reply) + "\n```") == checks
    for bad in ("The agent did fine.", '{"results": [{"met": true}]}', "[1, 2]"):
        with pytest.raises((ValueError, KeyError)):
            parse_verdicts(bad)


def test_a_judge_that_fails_or_rambles_scores_zero_with_the_reason() -> None:
    said = [AssistantMessage(role="assistant", content="Hi!")]
    with scripted_model("rambler", ["I think it went well."], cost_per_token=1e-3) as m:
        verdict = asyncio.run(NLAssertionJudge(m.model, LLMClient().complete).judge(said, ["x"]))
    assert verdict.reward == 0.0 and "not τ²'s JSON" in verdict.error and verdict.cost_usd > 0
    with scripted_model("down", []) as m:
        verdict = asyncio.run(NLAssertionJudge(m.model, LLMClient().complete).judge(said, ["x"]))
    assert verdict.reward == 0.0 and verdict.error.startswith("judge call failed")


def test_the_verdict_multiplies_into_the_reward_and_defaults_to_the_agents_model(data: Path) -> None:
    suite = load_suite(SUITE_DIR, data=str(data))  # judge_model = "agent"
    task = judged_task(suite)
    outcomes = {}
    for name, unmet in (("agent-judge-yes", False), ("agent-judge-no", True)):
        with scripted_model(name, tau2_scripts.judge(lambda t, n, u=unmet: u), cost_per_token=1e-4) as judge:
            key = RolloutKey(
                version_hash="v",
                suite="tau2-retail",
                split="val",
                task_id=task.id,
                trial=0,
                model=judge.model,
            )
            env = gold_env(suite, task)
            with rollout_scope(key):  # the rollout of agent model `judge.model`
                score = asyncio.run(suite.score_async(task, "All done.", env))
            assert len(judge.calls) == 1 and judge.calls[0].messages[0]["content"] == JUDGE_SYSTEM
            outcomes[name] = (score, env.reward_info)
    yes, yes_info = outcomes["agent-judge-yes"]
    no, no_info = outcomes["agent-judge-no"]
    assert yes.score == 1.0 and yes_info.reward_breakdown == {"DB": 1.0, "NL_ASSERTION": 1.0}
    assert [c.nl_assertion for c in yes_info.nl_assertions] == task.expected["nl_assertions"]
    assert no.score == 0.0 and no_info.db_check.db_match and no_info.reward_breakdown["NL_ASSERTION"] == 0.0
    judge_figures = no_info.info["harness_opt"]["judge"]
    assert judge_figures["model"] == "scripted/agent-judge-no" and judge_figures["cost_usd"] > 0
    assert "NL_ASSERTION NOT met" in no.feedback


def test_judge_off_means_no_call_and_an_unofficial_reward(data: Path) -> None:
    suite = load_suite(SUITE_DIR, data=str(data), judge_model="off")
    task = judged_task(suite)
    assert suite.deterministic_scorer
    env = gold_env(suite, task)
    score = suite.score(task, None, env)
    assert score.score == 1.0 and not tau2_reward.is_official(env.reward_info)
    assert "UNOFFICIAL" in score.feedback and env.reward_info.nl_assertions is None


def test_a_rollout_scored_without_a_judge_is_judged_at_export(data: Path) -> None:
    probe = load_suite(SUITE_DIR, data=str(data))
    task = judged_task(probe)
    with (
        scripted_model("gold", tau2_scripts.gold_agent(probe)) as agent,
        scripted_model("customer", tau2_scripts.customer(probe)) as user,
        scripted_model("late-judge", tau2_scripts.judge(), cost_per_token=1e-4) as judge,
    ):
        unjudged = load_suite(SUITE_DIR, data=str(data), user_model=user.model, judge_model="off")
        result = evaluate(SEED, unjudged, EvalConfig(split="val", task_ids=[task.id], model=agent.model))
        record = RewardInfo.model_validate_json(result.rollouts[0].feedback.splitlines()[0])
        assert record.nl_assertions is None and not tau2_reward.is_official(record)
        tasks = {t["id"]: Task.model_validate(t) for t in probe.tau2_tasks() if t["id"] == task.id}
        (sim,) = _simulations(unjudged.with_judge(judge.model), [result], tasks)
        assert len(judge.calls) == 1
    assert tau2_reward.is_official(sim.reward_info) and sim.reward_info.reward == 1.0
    assert sim.reward_info.reward_breakdown == {"DB": 1.0, "NL_ASSERTION": 1.0}
    assert sim.reward_info.info["harness_opt"]["judge"]["when"] == "at export"


def test_a_rejudged_record_recombines_over_the_basis() -> None:
    criteria = EvaluationCriteria(reward_basis=["DB", "NL_ASSERTION"], nl_assertions=["x"], actions=[])
    record = tau2_reward.reward_info(
        criteria, termination="user_stop", db_match=False, messages=[], tool_types=None, nl=None
    )
    assert record.reward == 0.0 and not tau2_reward.is_official(record)
    judged = tau2_reward.with_nl(record, tau2_reward.NLPart(checks=[], reward=1.0, judge={"model": "j"}))
    assert judged.reward == 0.0 and judged.reward_breakdown == {"DB": 0.0, "NL_ASSERTION": 1.0}
    assert tau2_reward.is_official(judged) and tau2_reward.judged_by(judged) == "j"


def _trace(error: str | None, events: list[Any]) -> Trace:
    key = RolloutKey(version_hash="v", suite="s", split="test", task_id="1", trial=0, model="m")
    return Trace(run_id="r", key=key, task_input={}, events=events, error=error, started=datetime.now(UTC))


@pytest.mark.parametrize(
    ("error", "end"),
    [
        ("timeout", "timeout"),
        ("step_limit", "max_steps"),
        ("token_limit", "max_steps"),
        ("crash", "agent_error"),
        ("memory", "agent_error"),
        ("llm_error", "agent_error"),
        ("sandbox", "infrastructure_error"),
    ],
)
def test_our_rollout_errors_end_as_tau2_names_them(error: str, end: str) -> None:
    assert error_end(_trace(error, [])) == end


def test_a_failing_user_simulator_is_a_user_error() -> None:
    turn = UserTurnEvent(agent_message="hi", done=True, error="RateLimitError")
    assert error_end(_trace("llm_error", [turn])) == "user_error"


def test_a_too_many_errors_conversation_ends_at_the_last_counted_error() -> None:
    events = [
        ToolCallEvent(name="get_order_details", args={}, error="Error: Order not found") for _ in range(3)
    ]
    messages = trace_messages(_trace(None, events), cut_after_errors=2)
    assert [m.role for m in messages] == ["assistant", "tool", "assistant", "tool"]
    assert all(m.error for m in messages if m.role == "tool")
