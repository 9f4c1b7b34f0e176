"""`eval --executor ray`: rollouts on a local Ray instance's worker processes, each sandboxed as here.

The agent and the simulated user are scripted models registered in this process's litellm only, so a
rollout can only pass if its model calls came back to the driver: a node has no client of its own.
The Ray run must give the same rows and traces as a local run, its worker processes must have no key
variable in their environment, and every trace and ledger row must arrive at the driver's ledger.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from harness_opt.cli.app import run_command
from harness_opt.errors import UserError
from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.ledger import Ledger
from harness_opt.llm.client import LLMConfig
from harness_opt.propose.base import Proposal
from harness_opt.search.budget import Budget
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.support.optimize import (
    MARKER,
    ScriptedProposer,
    gold_by_text,
    prompt_sensitive_responder,
    run_scripted,
)

REPO = Path(__file__).resolve().parents[1]
CHATTY = REPO / "tests" / "fixtures" / "suites" / "chatty"
KEY_VAR, OWN_KEY_VAR = "OPENAI_API_KEY", "RAYTEST_ENDPOINT_KEY"
TOOLS = (
    '[{"type": "function", "function": {"name": "get_price", "description": "Price of an item.", '
    '"parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}}}]'
)


def chatter(root: Path) -> Path:
    """The seed τ²-retail agent loop (ctx.say, ctx.llm, ctx.call_tool) with a tiny prompt."""
    folder = root / "chatter" / "v0001"
    (folder / "prompts").mkdir(parents=True)
    shutil.copy(REPO / "harnesses" / "tau2-retail" / "v0001" / "agent.py", folder / "agent.py")
    (folder / "tools.json").write_text(TOOLS)
    (folder / "prompts" / "system.j2").write_text("You sell things. Use get_price, then tell the price.")
    (folder / "harness.toml").write_text(
        '[harness]\nname = "chatter"\nversion = 1\nproposer = "human"\nhypothesis = "test"\n\n'
        '[model]\nname = "local/smollm2"\nparams = { temperature = 0 }\n\n'
        '[runtime]\nentrypoint = "agent.py:run"\n\n[runtime.limits]\nwall_time_s = 60\nmax_steps = 30\n'
    )
    return folder


EDGES = """
def run(task, ctx):
    deep = leaf = {}
    for _ in range(40):  # deeper than the channel allows: refused before any environment sees it
        leaf["a"] = {}
        leaf = leaf["a"]
    seen = [ctx.call_tool("get_price", deep), ctx.call_tool("get_price", {"item": "unicorn"})]
    seen.append(ctx.call_tool("no_such_tool", {}))
    while True:  # until the step limit ends the rollout
        seen.append(ctx.call_tool("get_price", {"item": "mug"}))
"""
"""Tool calls at the edges of the broker's rules: each must be refused, raised or cut off on a node
exactly as here (the node fetches a tool's reply only when the local session would call the tool)."""


def shop_agent(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> Any:
    last = messages[-1]
    if last["role"] == "tool":
        return f"The price is {last['content']}."
    match = re.search(r"price of the (\w+)", last.get("content") or "")
    return (
        {"tool_calls": [{"name": "get_price", "arguments": {"item": match[1]}}]} if match else "Which item?"
    )


def customer(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
    item = re.search(r"price of the (\w+)", messages[0]["content"])
    assert item
    if re.search(r"\d+\.\d\d", messages[-1]["content"]):
        return "Great, thanks! ###STOP###"
    return f"What is the price of the {item[1]}?"


def ray_processes() -> dict[int, str]:
    """pid -> command line of every process of the Ray instance this test process started (workers,
    raylet, GCS: all its descendants; another test run's Ray on the same machine is not ours)."""
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    ours, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in ours} - ours
        ours |= more
        grew = bool(more)
    out = {}
    for pid in ours - {os.getpid()}:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in cmd for mark in ("ray::", "default_worker.py", "raylet", "gcs_server")):
            out[pid] = cmd
    return out


def environment_names(pid: int) -> set[str]:
    """The variable names a process was started with (/proc/PID/environ: what it inherited)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return {entry.split(b"=", 1)[0].decode(errors="replace") for entry in raw.split(b"\0") if entry}


@pytest.fixture
def keys_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The driver holds keys (a provider's and an --api-key-env one); Ray is shut down afterwards."""
    monkeypatch.setenv(KEY_VAR, "sk-test-must-not-reach-a-node")
    monkeypatch.setenv(OWN_KEY_VAR, "sk-test-own-endpoint-key")
    if ray.is_initialized():
        ray.shutdown()
    try:
        yield
    finally:
        ray.shutdown()


def comparable(result: EvalResult) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """What a rollout's row and trace say, without times and run ids."""
    out = []
    for r in sorted(result.rollouts, key=lambda r: (r.task_id, r.trial)):
        trace = read_trace(r.trace_ref)
        events = [
            e.model_dump(mode="json", exclude={"latency_s", "started", "ended", "t", "at", "time"})
            for e in trace.events
        ]
        row = (r.task_id, r.trial, r.score, r.passed, r.error, r.cost_usd, r.tokens_in, r.tokens_out)
        out.append((row, (r.user_cost_usd, r.user_tokens, trace.output, events)))
    return out


@pytest.mark.slow  # starts a Ray instance: 30-50 s on the 2-core box
def test_eval_on_a_local_ray_equals_a_local_eval_and_keeps_keys_on_the_driver(
    tmp_path: Path, keys_here: None
) -> None:
    version = chatter(tmp_path)
    seen: dict[int, tuple[str, set[str]]] = {}

    def watch(done: int, total: int, rollout: object) -> None:
        # while the rollouts run: every Ray process's inherited environment
        for pid, cmd in ray_processes().items():
            with contextlib.suppress(OSError):  # ended meanwhile
                seen[pid] = (cmd, environment_names(pid))

    with (
        scripted_model("ray-agent", shop_agent, cost_per_token=1e-6) as agent,
        scripted_model("ray-user", customer, cost_per_token=1e-5) as user,
    ):
        suite = load_suite(CHATTY, user_model=user.model)
        base = {
            "split": "val",
            "model": agent.model,
            "llm_cache": False,
            "llm": LLMConfig(api_key_env=OWN_KEY_VAR),
        }
        local = evaluate(version, suite, EvalConfig(**base, concurrency=2))
        remote = evaluate(
            version, suite, EvalConfig(**base, concurrency=4, reuse=False, executor="ray"), progress=watch
        )
        edges = chatter(tmp_path / "edges")
        (edges / "agent.py").write_text(EDGES)
        edges_local = evaluate(edges, suite, EvalConfig(**base, limit=1))
        edges_remote = evaluate(edges, suite, EvalConfig(**base, limit=1, reuse=False, executor="ray"))
    assert edges_local.rollouts[0].error == "step_limit"
    assert comparable(edges_remote) == comparable(edges_local)
    assert len(remote.rollouts) == len(local.rollouts) >= 2 and remote.executed == len(local.rollouts)
    assert all(r.passed for r in remote.rollouts)  # the model and the user answered from the driver
    assert comparable(remote) == comparable(local)
    assert remote.summary.score == local.summary.score and remote.summary.cost_usd == local.summary.cost_usd
    # the same requests were counted (the per-rollout accounts live on the driver)
    assert remote.requests.answered == local.requests.answered > 0
    # sandboxed by bubblewrap on the worker processes: two hosts (one per CPU of the instance)
    assert remote.isolation.startswith("bwrap") and "ray: 2 hosts" in remote.isolation, remote.isolation
    # every row reached the one ledger, under the Ray run, and the run records where it ran
    rows = Ledger().rollouts(run_id=remote.run_id)
    assert sorted((r.task_id, r.trial, r.score) for r in rows) == sorted(
        (r.task_id, r.trial, r.score) for r in local.rollouts
    )
    run = Ledger().query("SELECT status, isolation FROM runs WHERE run_id = ?", [remote.run_id])[0]
    assert run["status"] == "ok" and "ray" in run["isolation"]
    # no Ray process — the two rollout hosts, the relay, the raylet — was started with a key variable
    hosts = [pid for pid, (cmd, _) in seen.items() if "RolloutHost" in cmd]
    assert len(hosts) == 2 and any("raylet" in cmd for cmd, _ in seen.values()), seen
    keys = {KEY_VAR, OWN_KEY_VAR}
    leaked = {f"{pid} {cmd[:60]}": names & keys for pid, (cmd, names) in seen.items() if names & keys}
    assert leaked == {}, leaked


def test_a_bad_address_is_one_error_line(
    tmp_path: Path, keys_here: None, capsys: pytest.CaptureFixture
) -> None:
    version = chatter(tmp_path)
    with pytest.raises(UserError, match=r"cannot reach a Ray cluster at '127\.0\.0\.1:1'"):
        evaluate(version, CHATTY, EvalConfig(executor="ray", address="127.0.0.1:1", model="scripted/x"))
    code = run_command(
        ["eval", str(version), "--suite", str(CHATTY), "--executor", "ray", "--address", "nowhere"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "--address" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not ray.is_initialized()


@pytest.mark.slow  # starts a Ray instance: 30-50 s on the 2-core box
def test_optimize_on_ray_keeps_the_real_gain(seed_copy: Path, keys_here: None) -> None:
    """optimize --executor ray: every evaluation of the loop (baseline, noise, candidates) on Ray."""
    gold = gold_by_text()
    system = (seed_copy / "prompts" / "system.j2").read_text()
    gain = Proposal(
        proposer="scripted",
        mechanism="think-first",
        hypothesis="asking to think helps",
        edits={"prompts/system.j2": MARKER + "\n" + system},
    )
    ledger = Ledger()
    result = run_scripted(
        seed_copy,
        prompt_sensitive_responder(gold),
        ScriptedProposer([[gain]]),
        ledger=ledger,
        executor="ray",
        budget=Budget(iterations=2),
    )
    assert [(c.mechanism, c.outcome) for c in result.candidates] == [
        ("baseline", "baseline"),
        ("think-first", "accepted"),
    ]
    assert result.baseline_val.score == 0.0 and result.best_val.score == 1.0
    (run,) = ledger.query("SELECT isolation FROM runs WHERE run_id = ?", [result.run_id])
    assert "ray: 2 hosts" in run["isolation"] and run["isolation"].startswith("bwrap"), run
