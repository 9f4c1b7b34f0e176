"""Red team: model-written text in a trace must not drive the terminal of whoever reads it.

`harness-opt traces show` printed trace text as is, and rich passes escape sequences through: a harness
(or the model it calls) could set the reader's window title, write their clipboard (OSC 52), clear the
screen or overwrite a PASS line. The attack runs through the real evaluator (bubblewrap), then the real
CLI prints its trace; nothing that a terminal interprets may come out but the CLI's own newlines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness_opt.cli.app import app
from harness_opt.suites.loader import load_suite
from tests.support.hostile import SUITE_DIR, run_attack

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 (but tab and newline), DEL, C1 (0x9b is an 8-bit CSI) and the bidirectional overrides."""


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def test_traces_show_and_list_print_no_control_sequences(
    tmp_path: Path, suite: Any, gold: dict[str, str]
) -> None:
    out = run_attack("terminal_escape", tmp_path, suite, gold, limit=1, concurrency=1)
    assert "\x1b]52;" in str(out.outputs[0])  # the trace holds the sequences as written...
    rollout = out.result.rollouts[0]
    runner = CliRunner()
    shown = runner.invoke(app, ["traces", "show", out.result.run_id, rollout.task_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    listed = runner.invoke(app, ["traces", "list", out.result.run_id], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for text in (shown.output, listed.output):
        assert CONTROL.findall(text) == [], text
    # ...and the reader still sees them, spelled out
    assert "\\x1b]52;" in shown.output and "pwned-title" in shown.output
    assert "stdout" in shown.output and "\\u202e" in shown.output
