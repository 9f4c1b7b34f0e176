"""Where harness-opt keeps its state: one relocatable home directory (`HARNESS_OPT_HOME`).

Default `.harness-opt/` under the current directory, so a project's ledger, cache and traces live next
to its harnesses (traces in `<home>/traces`, unless `HARNESS_OPT_TRACES` names a shared folder). Tests
point it at a temporary directory.
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
    """Trace JSONL files: `traces/` under the home, so a fresh `HARNESS_OPT_HOME` is fresh (a ledger
    never meets another ledger's traces). Sharing one traces folder between homes is an explicit
    choice: `HARNESS_OPT_TRACES`. Trace refs in the ledger are relative to this directory, so the
    folder can be moved whole.
    """
    given = os.environ.get("HARNESS_OPT_TRACES")
    path = Path(given).expanduser() if given else home_dir() / "traces"
    path.mkdir(parents=True, exist_ok=True)
    return path
