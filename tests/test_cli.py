"""The CLI as a user meets it: a table at the end, one clear line (no traceback) for bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_eval_prints_summary_and_second_run_makes_no_calls():
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
