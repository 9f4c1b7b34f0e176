"""Red team: candidates built to pass the static scan (`trust/scan.py`) while doing what it rejects.

Static tests: no sandbox needed. Each candidate is the seed plus one trick, scanned against the seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from harness_opt.harness.version import HarnessVersion
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.suites.loader import load_suite
from harness_opt.trust.scan import ScanReport, scan_candidate
from tests.support.hostile import SEED, SUITE_DIR


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


def _scan(tmp_path: Path, suite: Any, files: dict[str, str | bytes], prefix: str = "") -> ScanReport:
    version = tmp_path / "banking77" / "v0002"
    shutil.copytree(SEED, version)
    for rel, content in files.items():
        (version / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (version / rel).write_bytes(content)
        else:
            (version / rel).write_text(content)
    if prefix:
        agent = version / "agent.py"
        agent.write_text(prefix + agent.read_text())
    parent = HarnessVersion.load(SEED)
    return scan_candidate(HarnessVersion.load(version), parent, suite, editable=AGENT_HARNESS_EDITABLE)


@pytest.mark.parametrize(
    "prefix",
    [
        "import confine\nconfine.Confinement.lock = lambda self, limits: None\n",
        "from confine import Confinement\nConfinement.enter = print\n",
        "import zygote\nzygote.SandboxContext.llm = None\n",
        "import harness_opt.runtime.confine\n",
        "import sys\nsys.modules.get('confine').Confinement.lock = print\n",
    ],
)
def test_importing_the_sandbox_runtime_is_rejected(tmp_path: Path, suite: Any, prefix: str) -> None:
    """agent.py is imported in the fork server: the runtime's own modules are right there, and patching
    them at import time turns off every rollout's confinement (test_hostile_isolation's confine_bypass)."""
    report = _scan(tmp_path, suite, {}, prefix)
    assert report.max_severity == "reject", report.summary()
    assert "sandbox-tamper" in {f.kind for f in report.findings}


def test_terminal_control_sequences_in_code_are_flagged(tmp_path: Path, suite: Any) -> None:
    report = _scan(tmp_path, suite, {}, 'TITLE = "\\x1b]0;owned\\x07"\nLTR = "\\u202e"\n')
    assert report.max_severity == "flag", report.summary()
    assert {f.line for f in report.findings if f.kind == "terminal"} == {1, 2}
    clean = _scan(tmp_path / "clean", suite, {}, 'NOTE = "tab\\tand newline\\n are fine"\n')
    assert "terminal" not in {f.kind for f in clean.findings}
