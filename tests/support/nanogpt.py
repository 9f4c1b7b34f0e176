"""A throw-away copy of tasks/nanogpt and its seed version, with a tiny budget, for training tests."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tasks" / "nanogpt" / "data" / "input.txt"  # shipped (public domain)


def training_copy(tmp: Path, budget_s: float = 3.0, extra: str = "") -> tuple[Path, Path]:
    """(suite dir, seed version dir) under `tmp`; candidates land beside the seed copy, not in the repo."""
    suite = tmp / "tasks" / "nanogpt"
    seed = tmp / "harnesses" / "nanogpt" / "v0001"
    shutil.copytree(REPO / "tasks" / "nanogpt", suite, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        REPO / "harnesses" / "nanogpt" / "v0001", seed, ignore=shutil.ignore_patterns("__pycache__")
    )
    toml = (suite / "suite.toml").read_text()
    toml = re.sub(r"(?m)^time_budget_s = .*$", f"time_budget_s = {budget_s}", toml)
    toml = re.sub(r"(?m)^eval_tokens = .*$", "eval_tokens = 2048", toml)
    toml = re.sub(r"(?m)^data = .*$", f'data = "{CORPUS}"', toml)
    (suite / "suite.toml").write_text(toml + extra)
    return suite, seed
