"""Trials are independent everywhere: against a loopback OpenAI-compatible server that answers the same
request differently each time, k trials of a τ²-retail task make k agent calls, k customer
conversations and k judge calls, and their replies differ; another version of the harness asking the
same thing gets its own replies (optimize's candidate vs incumbent); doctor's noise rerun is answered
afresh, the simulated customer included. Yet a rollout evaluated again is served whole from the ledger,
and re-run without the ledger it replays its own replies from the response cache.

At 3f91a99 the cache served trial 2.. from trial 1's replies (at temperature 0), so each of these
counts was a fraction of what it is here.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.llm.client import LLMConfig
from harness_opt.records import LLMCallEvent, UserTurnEvent
from harness_opt.suites.loader import load_suite
from harness_opt.trust.doctor import QUICK_TASKS, doctor
from tests.support.loopback_llm import loopback_llm

REPO = Path(__file__).resolve().parents[1]
SUITE_DIR = REPO / "tasks" / "tau2-retail"
SEED = REPO / "harnesses" / "tau2-retail" / "v0001"
DATA = Path(os.environ.get("HARNESS_OPT_TAU2_DATA") or REPO.parent / "shared" / "data" / "tau2")
K = 4


def respond(request: dict[str, Any], n: int) -> str:
    """The agent says something new each call; the customer answers once, then stops; the judge
    answers τ²'s JSON with every assertion met."""
    model, messages = request["model"], request["messages"]
    if model == "judge":
        prompt = messages[-1]["content"]
        assertions = ast.literal_eval(prompt.split("expectedOutcomes:\n", 1)[1].strip())  # a Python list
        return json.dumps(
            {
                "results": [
                    {"expectedOutcome": a, "reasoning": "ok", "metExpectation": True} for a in assertions
                ]
            }
        )
    if model == "customer":
        return f"customer reply #{n}" if len(messages) <= 2 else f"bye #{n} ###STOP###"
    return f"agent reply #{n}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    if not (DATA / "retail" / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {DATA} (set HARNESS_OPT_TAU2_DATA)")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    with loopback_llm(respond) as lb:
        monkeypatch.setenv("OPENAI_BASE_URL", lb.url)  # the suite's own client (customer, judge)
        yield lb


def config(server: Any, **changes: Any) -> EvalConfig:
    base = {"split": "val", "limit": 3, "trials": K, "model": "openai/agent", "concurrency": 4}
    return EvalConfig(llm=LLMConfig(api_base=server.url), **{**base, **changes})


def suite() -> Any:
    return load_suite(SUITE_DIR, data=str(DATA), user_model="openai/customer", judge_model="openai/judge")


def with_assertions(tasks: list[Any]) -> int:
    return sum(1 for t in tasks if t.expected.get("nl_assertions"))


def test_k_trials_make_k_calls_per_task_and_their_replies_differ(server: Any) -> None:
    tau2 = suite()
    tasks = tau2.tasks("val")[:3]
    result = evaluate(SEED, tau2, config(server))
    calls = {m: len(server.calls(m)) for m in ("agent", "customer", "judge")}
    print(f"\n{len(tasks)} tasks x {K} trials: model calls {calls}")
    assert calls == {"agent": 3 * K, "customer": 2 * 3 * K, "judge": K * with_assertions(tasks)}
    replies: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for rollout in result.rollouts:
        trace = read_trace(rollout.trace_ref)
        agent = next(e for e in trace.events if isinstance(e, LLMCallEvent))
        turn = next(e for e in trace.events if isinstance(e, UserTurnEvent))
        assert not agent.cached
        replies[rollout.task_id].append((agent.response["content"], turn.reply))
    for task_replies in replies.values():
        assert len(set(task_replies)) == K  # every trial had its own conversation


def test_an_evaluated_rollout_is_reused_and_a_rerun_replays_its_own_replies(server: Any) -> None:
    tau2 = suite()
    first = evaluate(SEED, tau2, config(server))
    asked = len(server.requests)
    again = evaluate(SEED, tau2, config(server))
    assert again.reused == 3 * K and len(server.requests) == asked  # from the ledger
    rerun = evaluate(SEED, tau2, config(server, reuse=False))
    assert rerun.executed == 3 * K and rerun.model_calls == 0 and len(server.requests) == asked
    assert [r.score for r in rerun.rollouts] == [r.score for r in first.rollouts]
    for before, after in zip(first.rollouts, rerun.rollouts, strict=True):
        said = [e.reply for e in read_trace(before.trace_ref).events if isinstance(e, UserTurnEvent)]
        assert said == [e.reply for e in read_trace(after.trace_ref).events if isinstance(e, UserTurnEvent)]


def test_another_version_asking_the_same_gets_its_own_replies(server: Any, tmp_path: Path) -> None:
    tau2 = suite()
    evaluate(SEED, tau2, config(server, trials=1))
    twin = tmp_path / "tau2-retail" / "v0002"
    shutil.copytree(SEED, twin)
    (twin / "agent.py").write_text((SEED / "agent.py").read_text() + "\n# a candidate: same requests\n")
    asked = len(server.calls("agent"))
    evaluate(twin, tau2, config(server, trials=1))
    assert len(server.calls("agent")) == 2 * asked  # the candidate's first request is the seed's, asked again


def test_doctors_noise_rerun_asks_every_participant_again(server: Any, tmp_path: Path) -> None:
    folder = tmp_path / "tau2-retail"
    shutil.copytree(SUITE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (folder / "suite.toml").read_text()
    toml = toml.replace('user_model = "local/smollm2"', f'user_model = "openai/customer"\ndata = "{DATA}"')
    (folder / "suite.toml").write_text(toml.replace('judge_model = "agent"', 'judge_model = "openai/judge"'))
    report = doctor(folder, SEED, model="openai/agent", quick=True)
    noise = next(line for line in report.lines if line.check == "noise")
    assert "rerun changed" in noise.detail
    assert len(server.calls("agent")) == 2 * QUICK_TASKS  # baseline and rerun
    assert len(server.calls("customer")) == 2 * 2 * QUICK_TASKS  # the rerun's customer is asked afresh


def test_a_rubric_judge_grades_each_trial_on_its_own(server: Any) -> None:
    from harness_opt.llm.cache import rollout_scope
    from harness_opt.records import RolloutKey, Task
    from harness_opt.suites.judge import LLMJudge

    judge = LLMJudge("Be polite.", "openai/rubric")
    task = Task(id="t", input={"question": "refund?"})
    for trial in range(K):
        key = RolloutKey(version_hash="v", suite="s", split="val", task_id="t", trial=trial, model="m")
        with rollout_scope(key):
            judge(task, "We will refund you.")
    assert len(server.calls("rubric")) == K  # the same output, judged afresh in every trial
