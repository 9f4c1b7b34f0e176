"""Start-up a person notices: the CLI's import and its listing commands load no heavy library.

Not a timing test (a loaded CI machine would make one flaky): each check runs a fresh interpreter
and reads `sys.modules`, which says exactly what was imported. litellm (~1-2 s), dspy, scipy (~0.5-1
s), numpy, matplotlib and datasets belong to the commands that call a model, compute a statistic
over real data or draw a plot, never to `--help`, `runs`, `leaderboard` or `traces show`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("litellm", "dspy", "scipy", "numpy", "matplotlib", "datasets", "ray", "llama_cpp", "openai")
REPO = Path(__file__).resolve().parents[1]


def loaded_after(code: str, home: Path) -> list[str]:
    """The heavy top-level packages a fresh interpreter holds after running `code`."""
    probe = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    env = {
        **os.environ,
        "HARNESS_OPT_HOME": str(home / "home"),
        "HARNESS_OPT_TRACES": str(home / "traces"),
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_library(tmp_path: Path) -> None:
    assert loaded_after("import harness_opt.cli.app", tmp_path) == []


def test_importing_the_package_and_its_eval_config_loads_no_heavy_library(tmp_path: Path) -> None:
    code = "import harness_opt\nfrom harness_opt.evaluate.config import EvalConfig\nEvalConfig()"
    assert loaded_after(code, tmp_path) == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["runs"], ["leaderboard"], ["traces", "show", "no-such-run", "t1"], ["eval", "--help"]],
    ids=["help", "runs", "leaderboard", "traces-show", "eval-help"],
)
def test_listing_commands_load_no_heavy_library(tmp_path: Path, argv: list[str]) -> None:
    code = (
        "from harness_opt.cli.app import run_command\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    code = run_command({argv!r})\n"
        "assert code in (0, 2), code\n"
    )
    assert loaded_after(code, tmp_path) == []
