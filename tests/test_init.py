"""`harness-opt init`: the scaffold loads, renders, runs, and says what to fill in."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from harness_opt.errors import HarnessError, UserError
from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.harness.version import HarnessVersion
from harness_opt.scaffold import init_project
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.support.acme import EXAMPLE


def test_init_writes_a_loadable_harness_and_suite(tmp_path):
    result = init_project(
        "acme-support", tmp_path, tools_file=EXAMPLE / "tools.json", system_prompt=EXAMPLE / "prompt.md"
    )
    version = HarnessVersion.load(result.harness_dir)
    assert version.label == "acme-support@v0001"
    assert json.loads((result.harness_dir / "tools.json").read_text()) == json.loads(
        (EXAMPLE / "tools.json").read_text()
    )
    system = (result.harness_dir / "prompts" / "system.j2").read_text()
    assert "Fill in" in system and "check_refund_policy with the order id" in system
    suite_toml = (result.suite_dir / "suite.toml").read_text()
    assert "FILL IN" in suite_toml and "[tools.lookup_order]" in suite_toml
    tools_py = (result.suite_dir / "tools.py").read_text()
    assert "def check_refund_policy(order_id, reason):" in tools_py
    suite = load_suite(result.suite_dir)  # the skeleton itself loads (3 example rows)
    assert [len(suite.tasks(s)) for s in ("train", "val", "test")] == [1, 1, 1]
    # an unimplemented tool is a tool error the agent sees, not a crash
    env = suite.environment(suite.tasks("train")[0])
    with pytest.raises(Exception, match="not implemented yet"):
        env.call_tool("lookup_order", {"order_id": "A1"})
    with pytest.raises(UserError, match="already exists"):
        init_project("acme-support", tmp_path)
    init_project("acme-support", tmp_path, force=True)


def test_default_agent_runs_the_tool_loop(tmp_path):
    from harness_opt.propose.operators.workspace import SCAFFOLD_MARKER

    result = init_project("echo", tmp_path, tools_file=EXAMPLE / "tools.json")
    # the marker lets the offline operators replace this loop by their task agent, and only this one
    assert SCAFFOLD_MARKER in (result.harness_dir / "agent.py").read_text()

    def model(messages, tools, params):
        if messages[-1]["role"] == "tool":
            return "done: " + messages[-1]["content"]
        # user.j2 renders the input columns
        assert tools and messages[-1]["content"].startswith("FILL IN: what a user asks")
        return {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "A1"}}]}

    with scripted_model("init-agent", model) as m:
        out = evaluate(result.harness_dir, result.suite_dir, EvalConfig(split="train", model=m.model))
    rollout = out.rollouts[0]
    assert rollout.error is None and rollout.n_tool_calls == 1 and rollout.n_llm_calls == 2
    assert "not implemented yet" in rollout.feedback  # the tool error came back and was answered


def test_bad_inputs_are_user_errors(tmp_path):
    bad = tmp_path / "tools.json"
    bad.write_text('[{"type": "function", "function": {"description": "no name"}}]')
    with pytest.raises(HarnessError):
        init_project("x", tmp_path, tools_file=bad)
    with pytest.raises(UserError, match="bad agent name"):
        init_project("../evil", tmp_path)
    with pytest.raises(UserError, match="system prompt file not found"):
        init_project("y", tmp_path, system_prompt=tmp_path / "missing.md")


def test_init_cli(tmp_path):
    from harness_opt.cli import init_cmd

    app = typer.Typer()
    app.command("noop")(lambda: None)
    init_cmd.register(app)
    result = CliRunner().invoke(app, ["init", "mybot", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "harness-opt eval" in result.output
    assert (tmp_path / "harnesses" / "mybot" / "v0001" / "agent.py").is_file()
    assert json.loads((tmp_path / "harnesses" / "mybot" / "v0001" / "tools.json").read_text()) == []
