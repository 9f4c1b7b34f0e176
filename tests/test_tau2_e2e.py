"""End to end on the real tau2-retail suite with the embedded model as the agent AND as the customer.

A 135M model is no support agent, so this asserts the machinery, not the score: each rollout ends
without a harness or broker error, the trace holds the greeting, the customer's replies and any tool
calls, the user's figures are counted apart from the agent's, the reward line is parsed, and the
rollouts convert to simulations in τ²'s schema. To stay within minutes on 2 cores the seed
agent.py runs with a short prompt, three tools, capped tokens and two customer turns.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.export.tau2_convert import reward_record, simulation
from harness_opt.records import LLMCallEvent, UserTurnEvent
from harness_opt.suites.loader import load_suite
from harness_opt.suites.tau2_models import SimulationRun

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "tau2-retail" / "v0001"
DATA = Path(os.environ.get("HARNESS_OPT_TAU2_DATA") or REPO.parent / "shared" / "data" / "tau2")
TOOLS = ("find_user_id_by_email", "find_user_id_by_name_zip", "get_order_details")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _tau2_data_present() -> None:
    """A correctness test never skips: without the data it fails, saying where to put it."""
    if not (DATA / "retail" / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {DATA} (set HARNESS_OPT_TAU2_DATA)")


def small_seed(root: Path) -> Path:
    """The seed harness's agent.py with a prompt and tool list the 135M model can hold in 4k tokens."""
    import json

    folder = root / "tau2-retail" / "v0001"
    (folder / "prompts").mkdir(parents=True)
    shutil.copy(SEED / "agent.py", folder / "agent.py")
    tools = [t for t in json.loads((SEED / "tools.json").read_text()) if t["function"]["name"] in TOOLS]
    (folder / "tools.json").write_text(json.dumps(tools))
    (folder / "prompts" / "system.j2").write_text(
        "You are a retail customer service agent. Find the customer's user id from their email or "
        "name and zip code, then help them with their order. One tool call or one message per turn."
    )
    (folder / "harness.toml").write_text(
        '[harness]\nname = "tau2-retail"\nversion = 1\nproposer = "seed"\nhypothesis = "e2e test"\n\n'
        '[model]\nname = "local/smollm2"\nparams = { temperature = 0, max_tokens = 48 }\n\n'
        '[runtime]\nentrypoint = "agent.py:run"\n\n'
        "[runtime.limits]\nmax_steps = 16\nwall_time_s = 240\n"
    )
    return folder


def test_embedded_agent_and_user_on_three_val_tasks(tmp_path: Path) -> None:
    version = small_seed(tmp_path)
    # No NL judge: a 135M model reading whole conversations would take too long (the score is unofficial).
    suite = load_suite(
        REPO / "tasks" / "tau2-retail",
        data=str(DATA),
        user_model="local/smollm2",
        max_turns=2,
        judge_model="off",
    )
    t0 = time.monotonic()
    result = evaluate(version, suite, EvalConfig(split="val", limit=3, concurrency=2))
    wall = time.monotonic() - t0
    assert len(result.rollouts) == 3
    for rollout in result.rollouts:
        assert rollout.error in (None, "step_limit"), (rollout.error, rollout.error_detail)
        trace = read_trace(rollout.trace_ref)
        turns = [e for e in trace.events if isinstance(e, UserTurnEvent)]
        assert turns[0].agent_message == "Hi! How can I help you today?"
        assert turns[0].reply and turns[0].model == "local/smollm2" and turns[0].tokens_out > 0
        assert any(isinstance(e, LLMCallEvent) for e in trace.events)
        assert rollout.user_tokens == sum(t.tokens_in + t.tokens_out for t in turns) > 0
        assert rollout.tokens_in > 0  # the agent's own tokens, counted apart
        if rollout.error is None:
            record = reward_record(trace.feedback)
            assert record is not None and record.reward == rollout.score
    scores = [r.score for r in result.rollouts]
    print(f"\n3 val tasks, embedded agent + user: {wall:.1f}s wall; scores {scores}")

    for rollout in result.rollouts:  # each rollout is a τ² simulation our models (τ²'s schema) accept
        sim = simulation(rollout, read_trace(rollout.trace_ref), max_errors=suite.max_errors)
        again = SimulationRun.model_validate_json(sim.model_dump_json(exclude_unset=True))
        assert again.reward_info is not None and again.reward_info.reward == rollout.score
        assert again.messages and again.messages[0].content == "Hi! How can I help you today?"
        if rollout.error is None and "NL_ASSERTION" in (again.reward_info.reward_basis or []):
            official = again.reward_info.info["harness_opt"]["official"]
            assert official == (again.reward_info.nl_assertions == [])  # unjudged assertions: unofficial
