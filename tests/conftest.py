"""Test isolation: every test gets its own harness-opt home, ledger, cache and traces directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HARNESS_OPT_HOME", str(home))
    monkeypatch.setenv("HARNESS_OPT_TRACES", str(home / "traces"))
    monkeypatch.delenv("HARNESS_OPT_LEDGER", raising=False)
    monkeypatch.delenv("HARNESS_OPT_CACHE_DIR", raising=False)
    return home


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def seed_copy(tmp_path: Path) -> Path:
    """A copy of the banking77 seed version: optimize writes candidates beside their parent, and the
    repo must stay clean."""
    dst = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(REPO / "harnesses" / "banking77" / "v0001", dst)
    return dst
