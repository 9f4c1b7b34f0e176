"""The CLI as a user meets it: a table at the end, one clear line (no traceback) for bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness_opt.cli.app import app
from harness_opt.testing import scripted_model

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "harness_opt.cli.app", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=120,
    )


def test_eval_prints_summary_and_second_run_makes_no_calls() -> None:
    runner = CliRunner()
    with scripted_model("cli", lambda m, t, p: "card_arrival") as model:
        args = ["eval", str(SEED), "--suite", str(SUITE), "--limit", "3", "--model", model.model]
        first = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert first.exit_code == 0, first.output
        assert "score (95% CI)" in first.output and "latency p50 / p95" in first.output
        assert "3 model calls made" in first.output
        second = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "0 model calls" in second.output and "served from the ledger" in second.output
    assert len(model.calls) == 3


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["eval", str(SEED), "--suite", "tasks/nope"], "tasks/nope"),
        (["eval", str(SEED), "--suite", str(SUITE), "--split", "dev"], "unknown split 'dev'"),
        (["eval", str(SEED), "--suite", str(SUITE), "--model", "nonsense-model-xyz"], "nonsense-model-xyz"),
        (["eval", "harnesses/none/v0001", "--suite", str(SUITE)], "harnesses/none/v0001"),
        (["traces", "show", "no-such-run", "t1"], "no run matches"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], expected: str):
    result = cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert result.stderr.strip().startswith("error:")


def test_malformed_harness_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "v0002"
    shutil.copytree(SEED, bad)
    (bad / "prompts" / "system.j2").write_text("line one\n{% if %}\n")
    result = cli("eval", str(bad), "--suite", str(SUITE))
    assert result.returncode == 2
    assert "system.j2" in result.stderr and "line 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_teaches():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("eval", "optimize", "models", "traces", "runs"):
        assert command in result.stdout
    eval_help = cli("eval", "--help").stdout
    assert "--trials" in eval_help and "--concurrency" in eval_help and "sealed" in eval_help


def test_models_lists_the_embedded_model():
    result = cli("models")
    assert result.returncode == 0, result.stderr
    assert "local/smollm2" in result.stdout


def test_trace_view_shows_user_turns():
    """Conversational suites (tau2): what the agent said to the simulated user and what it answered."""
    from rich.console import Console

    from harness_opt.cli.traces_cmd import render_trace
    from harness_opt.records import RolloutKey, Trace, UserTurnEvent

    key = RolloutKey(version_hash="h" * 12, suite="s", split="val", task_id="7", trial=0, model="m")
    trace = Trace(
        run_id="r",
        key=key,
        task_input={},
        events=[
            UserTurnEvent(agent_message="Hi! How can I help?", reply="I want to return a lamp.", model="u"),
            UserTurnEvent(agent_message="Done.", reply=None, done=True, stop_reason="stop", model="u"),
        ],
    )
    console = Console(record=True, width=120)
    render_trace(trace, console)
    text = console.export_text()
    assert "[agent → user] Hi! How can I help?" in text and "I want to return a lamp." in text
    assert "(the user has left)" in text and "conversation ended: stop" in text


# ------------------------------------------------------------ options derived from the config models


def all_options() -> list[tuple[str, Any]]:
    """(command path, click option) for every option of every command."""
    from harness_opt.cli.app import command

    out: list[tuple[str, Any]] = []

    def walk(cmd: Any, path: str) -> None:
        out.extend((path, p) for p in cmd.params if p.param_type_name == "option")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(command(), "")
    return out


def test_every_option_reads_its_environment_variable() -> None:
    options = all_options()
    assert len(options) > 60
    for where, option in options:
        long = next(o for o in option.opts if o.startswith("--"))
        wanted = "HARNESS_OPT_" + long[2:].replace("-", "_").upper()
        assert wanted in option.envvar, (where, long, option.envvar)


@pytest.mark.parametrize(
    ("command_name", "model_path", "skipped"),
    [
        ("optimize", "harness_opt.search.config:OptimizeConfig", {"harness", "suite", "llm.cache"}),
        (
            "eval",
            "harness_opt.evaluate.evaluator:EvalConfig",
            {"task_ids", "trial_offset", "allow_test", "llm.cache"},
        ),
    ],
)
def test_every_config_field_is_an_option_with_its_help_and_default(
    command_name: str, model_path: str, skipped: set[str]
) -> None:
    """A field added to the config model is an option of the command, with nothing to restate."""
    import importlib

    from pydantic import BaseModel

    module, name = model_path.split(":")
    model: type[BaseModel] = getattr(importlib.import_module(module), name)
    options = {
        next(o for o in p.opts if o.startswith("--")): p for w, p in all_options() if w == command_name
    }

    def fields(cls: type[BaseModel], prefix: str, default: Any) -> list[tuple[str, Any, Any]]:
        out = []
        for field_name, info in cls.model_fields.items():
            dotted = f"{prefix}{field_name}"
            value = info.get_default(call_default_factory=True)
            value = getattr(default, field_name) if default is not None else value
            inner = [
                a for a in getattr(info.annotation, "__args__", (info.annotation,)) if a is not type(None)
            ]
            if isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
                out += fields(inner[0], f"{dotted}.", value)
            elif dotted not in skipped:
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                out.append((str(extra.get("option", field_name)), info, value))
        return out

    for option_name, info, default in fields(model, "", None):
        flag = "--" + option_name.replace("_", "-")
        assert flag in options, (command_name, flag)
        assert options[flag].help == (info.description or ""), flag
        if isinstance(default, (int, str, bool)) and not isinstance(default, float):
            assert options[flag].default == default, (flag, options[flag].default, default)


def test_choices_come_from_the_model() -> None:
    result = cli("optimize", str(SEED), "--suite", str(SUITE), "--proposer", "nope")
    assert result.returncode == 2 and "operators" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--trials", "0"], {}, "--trials: Input should be greater than or equal to 1"),
        ([], {"HARNESS_OPT_VAL_LIMIT": "0"}, "--val-limit: Input should be greater than or equal to 1"),
        (["--budget", "soon"], {}, "--budget: cannot read the duration 'soon'"),
        (["--alpha", "2"], {}, "--alpha: Input should be less than 1"),
    ],
)
def test_a_value_the_model_refuses_is_one_line_naming_the_option(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness_opt.cli.app", "optimize", str(SEED), "--suite", str(SUITE), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_derivation_flattens_nested_models_and_reads_literals() -> None:
    from typing import Literal

    from pydantic import BaseModel, Field

    from harness_opt.cli.options import field_options
    from harness_opt.search.budget import Duration

    class Inner(BaseModel):
        wait_s: Duration = Field(default=60.0, description="How long.", json_schema_extra={"option": "wait"})

    class Outer(BaseModel):
        mode: Literal["a", "b"] = Field(default="a", description="Which.")
        inner: Inner = Field(default_factory=Inner)
        tags: list[str] = Field(default_factory=list, description="Tags.")

    options = {o.name: o for o in field_options(Outer)}
    assert set(options) == {"mode", "wait", "tags"}
    assert options["wait"].path == ("inner", "wait_s") and options["wait"].flag == "--wait"
    assert options["wait"].annotation is str and options["wait"].default == "60"  # parsed by the model
    assert options["mode"].default == "a" and options["mode"].help == "Which."


def test_eval_judge_model_reaches_the_suite_and_a_score_without_the_judge_says_unofficial(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--judge-model` is a suite option like `--user-model`: `off` leaves τ²'s NL assertions unjudged,
    no judge call is made, and the summary says the scores are unofficial; a judge model is asked."""
    import ast
    import json

    from harness_opt.cli.app import run_command
    from tests.support.loopback_llm import loopback_llm

    data = REPO.parent / "shared" / "data" / "tau2"
    if not (data / "retail" / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {data}")

    def respond(request: dict[str, Any], n: int) -> str:
        model, messages = request["model"], request["messages"]
        if model == "judge":
            said = ast.literal_eval(messages[-1]["content"].split("expectedOutcomes:\n", 1)[1].strip())
            met = [{"expectedOutcome": a, "reasoning": "ok", "metExpectation": True} for a in said]
            return json.dumps({"results": met})
        if model == "customer":
            return "bye ###STOP###"
        return "Hello, how can I help?"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    seed = str(REPO / "harnesses" / "tau2-retail" / "v0001")
    base = [
        "eval",
        seed,
        "--suite",
        str(REPO / "tasks" / "tau2-retail"),
        "--data",
        str(data),
        "--model",
        "openai/agent",
        "--user-model",
        "openai/customer",
        "--limit",
        "6",
    ]
    with loopback_llm(respond) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        assert run_command([*base, "--split", "train", "--judge-model", "off"]) == 0
        off = " ".join(capsys.readouterr().out.split())
        assert not server.calls("judge")
        assert run_command([*base, "--split", "val", "--judge-model", "openai/judge"]) == 0
        judged = capsys.readouterr().out
        asked = len(server.calls("judge"))
    assert "unofficial: 2 of 6 rollouts were scored without the benchmark's NL-assertion judge" in off
    assert asked > 0 and "unofficial" not in judged
