"""Running the hostile train.py variants of `tests/hostile_training/` through the real runner."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

from harness_opt.domains.training_loop import (
    ExperimentResult,
    ExperimentSpec,
    experiment_spec,
    load_training_suite,
    run_experiment,
)
from harness_opt.harness.version import HarnessVersion
from tests.support.nanogpt import CORPUS, REPO, training_copy

HOSTILE_DIR = REPO / "tests" / "hostile_training"
_TARGETS = re.compile(r"^TARGETS: dict = \{\}$", re.M)
_REPORT = re.compile(r"^HOSTILE (\{.*\})$", re.M)


def hostile_spec(
    tmp: Path, name: str, targets: dict[str, Any] | None = None, **update: Any
) -> ExperimentSpec:
    """The seed's spec with `tests/hostile_training/<name>.py` as its train.py, `targets` filled in
    (the runner takes any train.py: only the loop's candidates go through version loading)."""
    suite_dir, seed_dir = training_copy(tmp, budget_s=1.0)
    source = (HOSTILE_DIR / f"{name}.py").read_text(encoding="utf-8")
    if targets is not None:
        assert _TARGETS.search(source), f"{name}.py has no TARGETS line to fill"
        source = _TARGETS.sub(lambda _: f"TARGETS: dict = {targets!r}", source)
    spec = experiment_spec(HarnessVersion.load(seed_dir), load_training_suite(suite_dir), seed=0)
    return spec.model_copy(update={"files": {"train.py": source}, **update})


def run_hostile(
    tmp: Path, name: str, targets: dict[str, Any] | None = None, **update: Any
) -> tuple[ExperimentResult, dict[str, Any]]:
    """The run's result and the variant's own report of what it tried ({} when it printed none)."""
    result = run_experiment(hostile_spec(tmp, name, targets, **update))
    found = _REPORT.findall(result.log_tail)
    return result, json.loads(found[-1]) if found else {}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (a process a run left behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def val_marker(length: int = 48) -> str:
    """A stretch of the val bytes (the corpus's last tenth) that the train bytes do not contain."""
    data = CORPUS.read_bytes()
    cut = len(data) - int(len(data) * 0.1)
    train, val = data[:cut], data[cut:]
    for start in range(len(val) // 2, len(val) - length, 97):
        piece = val[start : start + length]
        if piece not in train and b"\n" not in piece:
            return piece.decode("ascii")
    raise AssertionError("no val-only stretch found")


def kill_leftovers(pids: list[int]) -> None:
    """End processes a failing test found (only those: their command line carries its marker)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


def load_prepare() -> types.ModuleType:
    """tasks/nanogpt/prepare.py as the module `prepare` (what train.py imports), in this process."""
    path = REPO / "tasks" / "nanogpt" / "prepare.py"
    spec = importlib.util.spec_from_file_location("prepare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare"] = module
    spec.loader.exec_module(module)
    return module


def load_hostile_module(name: str) -> types.ModuleType:
    """A hostile variant imported (not run), as a model server imports train.py."""
    load_prepare()
    spec = importlib.util.spec_from_file_location(f"hostile_{name}", HOSTILE_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_val_tensor(prepare: types.ModuleType, n_bytes: int = 2048 + 64) -> Any:
    """The first bytes of the corpus's val part as the scorer holds them."""
    import torch

    data = CORPUS.read_bytes()
    val = data[len(data) - int(len(data) * 0.1) :][:n_bytes]
    return torch.frombuffer(bytearray(val), dtype=torch.uint8).long()
