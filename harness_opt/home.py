"""Where harness-opt keeps its state: one relocatable home directory (`HARNESS_OPT_HOME`).

Default `.harness-opt/` under the current directory, so a project's ledger, cache and traces live next
to its harnesses. Tests point it at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """The state directory, created on first use."""
    root = Path(os.environ.get("HARNESS_OPT_HOME", ".harness-opt")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def ledger_path() -> Path:
    return Path(os.environ.get("HARNESS_OPT_LEDGER", str(home_dir() / "ledger.duckdb")))


def cache_dir() -> Path:
    path = Path(os.environ.get("HARNESS_OPT_CACHE_DIR", str(home_dir() / "cache")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def traces_dir() -> Path:
    """Trace JSONL files: `traces/` in the project (DESIGN layout) unless `HARNESS_OPT_TRACES` moves it.

    Trace refs in the ledger are relative to this directory, so a project folder can be moved whole.
    """
    path = Path(os.environ.get("HARNESS_OPT_TRACES", "traces")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
