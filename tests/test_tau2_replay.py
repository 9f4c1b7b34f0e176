"""Gold replay: the task's own gold actions, run through our tools as an agent would, must earn reward 1
on every one of the 114 τ² retail tasks, and one changed argument must earn 0.

Each rollout environment is independent of the scorer's cached gold state (a fresh DB view), so this
checks that our tools are deterministic, that failing gold actions fail identically, and that the
DB comparison and COMMUNICATE check accept a faithful run. The data is read from HARNESS_OPT_TAU2_DATA
or ../shared/data/tau2 (not in the repository).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from harness_opt.records import Task
from harness_opt.suites.base import ToolError
from harness_opt.suites.loader import load_suite

SUITE_DIR = Path(__file__).resolve().parents[1] / "tasks" / "tau2-retail"


@pytest.fixture(scope="module")
def suite() -> Any:
    given = os.environ.get("HARNESS_OPT_TAU2_DATA")
    data = Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "data" / "tau2"
    if not (data / "retail" / "db.json").is_file():
        pytest.fail(f"τ² retail data not found at {data} (set HARNESS_OPT_TAU2_DATA)")
    return load_suite(SUITE_DIR, data=str(data))


def all_tasks(suite: Any) -> list[Task]:
    return [t for split in suite.split_names() for t in suite.tasks(split)]


def act(env: Any, actions: list[dict[str, Any]]) -> list[str]:
    """Run actions as an agent's tool calls; returns the error texts the agent would have read."""
    errors = []
    for action in actions:
        try:
            env.call_tool(action["name"], copy.deepcopy(action["arguments"]))
        except ToolError as exc:
            errors.append(str(exc))
    return errors


def test_every_task_replays_its_gold_actions_to_reward_one(suite: Any) -> None:
    tasks = all_tasks(suite)
    assert len(tasks) == 114
    failures, error_paths = [], 0
    for task in tasks:
        env = suite.environment(task)
        errors = act(env, task.expected["actions"])
        error_paths += len(errors)
        for said in task.expected.get("communicate_info") or []:
            env.say(said)
        score = suite.score(task, None, env)
        info = env.reward_info
        if not (
            score.score == 1.0
            and score.passed
            and info.db_check.db_match
            and all(c.met for c in info.communicate_checks or [])
            and all(c.action_match for c in info.action_checks or [])
        ):
            failures.append(f"{task.id}: {score.feedback}")
    assert not failures, "\n".join(failures)
    assert error_paths > 0  # some gold actions are meant to fail; they must fail the same way each time


def test_the_scorers_gold_state_is_tau2s_hash_of_a_separate_replay(suite: Any) -> None:
    for task in all_tasks(suite)[:12]:
        env = suite.fresh_environment()
        act(env, task.expected["actions"])
        gold_db, _ = suite.gold_state(task)
        assert env.db.state_hash() == gold_db.state_hash()


def test_failing_gold_writes_leave_the_state_as_if_they_were_never_made(suite: Any) -> None:
    """Tasks whose gold includes a write that is meant to fail: skipping it gives the same state."""
    checked = 0
    for task in all_tasks(suite):
        _, failed = suite.gold_state(task)
        if not failed:
            continue
        failed_ids = {f["action_id"] for f in failed}
        env = suite.environment(task)
        act(env, [a for a in task.expected["actions"] if a["action_id"] not in failed_ids])
        for said in task.expected.get("communicate_info") or []:
            env.say(said)
        assert suite.score(task, None, env).score == 1.0, task.id
        checked += 1
    assert checked >= 1


def _mutated(task: Task, tool: str, change: Any) -> list[dict[str, Any]]:
    actions = copy.deepcopy(task.expected["actions"])
    target = next(a for a in actions if a["name"] == tool)
    change(target["arguments"])
    return actions


@pytest.mark.parametrize(
    ("tool", "change"),
    [
        (
            "cancel_pending_order",
            lambda a: a.update(
                reason="ordered by mistake" if a["reason"] == "no longer needed" else "no longer needed"
            ),
        ),
        ("modify_pending_order_address", lambda a: a.update(zip=str(int(a["zip"]) + 1))),
        (
            "return_delivered_order_items",
            lambda a: a.update(item_ids=a["item_ids"][:-1] or a["item_ids"] * 2),
        ),
    ],
)
def test_one_changed_argument_scores_zero(suite: Any, tool: str, change: Any) -> None:
    task = next(t for t in all_tasks(suite) if any(a["name"] == tool for a in t.expected["actions"]))
    env = suite.environment(task)
    act(env, _mutated(task, tool, change))
    for said in task.expected.get("communicate_info") or []:
        env.say(said)
    score = suite.score(task, None, env)
    assert score.score == 0.0 and not score.passed
    assert env.reward_info.db_check.db_reward == 0.0 and env.reward_info.reward_breakdown["DB"] == 0.0
    assert "differs from the one the gold actions produce" in score.feedback


def test_doing_nothing_scores_zero_where_the_task_changes_the_db(suite: Any) -> None:
    writes = {"cancel_pending_order", "modify_pending_order_items", "exchange_delivered_order_items"}
    task = next(t for t in all_tasks(suite) if any(a["name"] in writes for a in t.expected["actions"]))
    env = suite.environment(task)
    assert suite.score(task, None, env).score == 0.0
