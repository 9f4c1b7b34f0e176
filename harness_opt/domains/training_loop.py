"""Training runs: a version dir with an editable train.py, run against a frozen prepare.py under a
fixed training-time budget, judged by one metric (val_bpb, lower is better).

One experiment is one real subprocess `python train.py` in a scratch copy of the version, with
prepare.py beside it read-only; it is killed at twice the budget, and with its parent (a kill -9 of
the optimize run leaves no orphan training). Its result is the `---` block of `key: value` lines it
prints. The runner never raises for one experiment's failure: a crash, a `FAIL` (NaN or exploding
loss), a kill or an overrun of the budget is a result with that status. A finished result is stored
by the content of its spec, so the same run is never made twice (a resumed optimize reuses it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.errors import SuiteError
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import home_dir
from harness_opt.records import Score, Task
from harness_opt.suites.base import Environment, NoTools

PREPARE_FILE = "prepare.py"
TRAINING_EDITABLE: tuple[str, ...] = ("train.py",)
"""Only train.py may change: prepare.py (data, tokenizer, metric, budget) and harness.toml are frozen."""
STARTUP_GRACE_S = 30.0
"""Added to the 2x-budget kill: interpreter start, torch import, data load and the final evaluation
are not training time, and on a 20 s CPU budget they are a large part of the wall time."""
_OVERRUN_TOLERANCE = 1.10
"""A run may report at most 10% more training seconds than the budget (one step of slack)."""


class TrainingSettings(BaseModel):
    """The `[training]` table of a training suite's suite.toml."""

    seed_version: str = Field(description="Seed version dir, relative to the suite folder.")
    metric: str = "val_bpb"
    time_budget_s: float = Field(default=20.0, gt=0, description="Training seconds per run on CPU.")
    gpu_time_budget_s: float = Field(default=300.0, gt=0, description="Training seconds per run on a GPU.")
    eval_tokens: int = Field(default=8192, ge=64)
    gpu_eval_tokens: int = Field(default=1 << 20, ge=64)
    data: str = Field(default="", description="Corpus path, relative to the suite folder.")
    data_url: str = ""
    data_sha256: str = ""
    baseline_runs: int = Field(default=2, ge=2, description="Baseline seeds; their spread is the noise.")


@dataclass
class TrainingSuite:
    """A training suite: one task (the metric) and the settings; runs go through `run_experiment`."""

    name: str
    path: Path
    description: str
    settings: TrainingSettings
    deterministic_scorer: bool = False
    domain: str = "training"

    @classmethod
    def from_config(cls, path: Path, config: dict[str, Any]) -> TrainingSuite:
        info = config.get("suite") or {}
        table = config.get("training")
        if not isinstance(table, dict):
            raise SuiteError(
                "a training suite needs a [training] table",
                where=str(path / "suite.toml"),
                fix="add [training] with seed_version = '...' (see tasks/nanogpt/suite.toml)",
            )
        return cls(
            name=str(info.get("name", path.name)),
            path=path,
            description=str(info.get("description", "")),
            settings=TrainingSettings.model_validate(table),
        )

    def split_names(self) -> tuple[str, ...]:
        return ("val",)

    def tasks(self, split: str) -> list[Task]:
        if split != "val":
            raise SuiteError(f"training suites have only a val split, not {split!r}", fix="use --split val")
        return [Task(id=self.settings.metric, input={})]

    def environment(self, task: Task) -> Environment:
        return NoTools()

    def score(self, task: Task, output: Any, env: Environment) -> Score:
        raise SuiteError(
            "training suites are scored by their own runs, not by a scorer",
            fix="use harness-opt optimize on the suite folder",
        )

    @property
    def prepare_path(self) -> Path:
        return self.path / PREPARE_FILE

    @property
    def seed_path(self) -> Path:
        return (self.path / self.settings.seed_version).resolve()

    def data_path(self) -> str:
        return str((self.path / self.settings.data).resolve()) if self.settings.data else ""


class ExperimentSpec(BaseModel):
    """Everything one run needs, self-contained (files by content) so a Ray worker on another node can
    run it without the checkout."""

    label: str
    version_hash: str
    files: dict[str, str] = Field(description="train.py and any other version files, by relative path.")
    prepare: str = Field(description="Content of the frozen prepare.py.")
    budget_s: float
    seed: int = 0
    eval_tokens: int = 8192
    data: str = ""
    data_url: str = ""
    data_sha256: str = ""
    gpu: str | None = Field(default=None, description="CUDA_VISIBLE_DEVICES for this run; None = inherit.")
    kill_after_s: float | None = Field(
        default=None, description="Default: twice the budget plus STARTUP_GRACE_S."
    )
    threads: int | None = Field(default=None, description="OMP threads for a CPU run (parallel CPU runs).")


ExperimentStatus = Literal["ok", "fail", "crash", "timeout", "overrun"]


class ExperimentResult(BaseModel):
    label: str
    version_hash: str
    seed: int
    status: ExperimentStatus
    values: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    wall_s: float = 0.0
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def metric(self, name: str) -> float | None:
        return self.values.get(name) if self.ok else None


def parse_result_block(stdout: str) -> tuple[dict[str, float], bool]:
    """The `key: value` lines after the last `---`, and whether the run printed FAIL."""
    lines = stdout.splitlines()
    failed = any(line.strip() == "FAIL" for line in lines)
    if "---" not in (s.strip() for s in lines):
        return {}, failed
    start = max(i for i, line in enumerate(lines) if line.strip() == "---")
    values: dict[str, float] = {}
    for line in lines[start + 1 :]:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = float(value.strip())
        except ValueError:
            continue
    return values, failed


_LAUNCHER = """
import ctypes, os, runpy, signal, sys
try:  # PR_SET_PDEATHSIG: die with the optimize process, however it ends
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(os.environ.pop("HOPT_PARENT_PID", os.getppid())):
    sys.exit("the optimize process ended before this run started")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""Starts train.py so that it dies with its parent (Linux; elsewhere it just runs train.py)."""


def _scratch(spec: ExperimentSpec) -> Path:
    """A scratch dir: the version's files in `work/`, prepare.py read-only in `frozen/`."""
    scratch = Path(tempfile.mkdtemp(prefix="hopt-train-"))
    work, frozen = scratch / "work", scratch / "frozen"
    work.mkdir()
    frozen.mkdir()
    for rel, text in spec.files.items():
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    (frozen / PREPARE_FILE).write_text(spec.prepare, encoding="utf-8")
    (frozen / PREPARE_FILE).chmod(0o444)
    frozen.chmod(0o555)
    return scratch


def _environment(spec: ExperimentSpec, scratch: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(scratch / "frozen"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NANOGPT_TIME_BUDGET": str(spec.budget_s),
        "NANOGPT_SEED": str(spec.seed),
        "NANOGPT_EVAL_TOKENS": str(spec.eval_tokens),
        "NANOGPT_DATA": spec.data or str(scratch / "corpus.txt"),
        "HOPT_PARENT_PID": str(os.getpid()),
    }
    if spec.data_url:
        env["NANOGPT_DATA_URL"], env["NANOGPT_DATA_SHA256"] = spec.data_url, spec.data_sha256
    if spec.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu
    if spec.threads is not None:
        env["OMP_NUM_THREADS"] = str(spec.threads)
    return env


def judge_output(
    spec: ExperimentSpec, out: str, returncode: int, metric: str
) -> tuple[ExperimentStatus, dict[str, float], str]:
    """(status, values, reason) of a run that ended by itself, from what it printed."""
    values, failed = parse_result_block(out)
    if failed:
        return "fail", values, "FAIL: NaN or exploding loss"
    if returncode != 0 or metric not in values:
        return "crash", values, f"exit code {returncode}" if returncode else f"no {metric} line after ---"
    trained = values.get("training_seconds", 0.0)
    steps = values.get("num_steps", 0.0)
    step_s = trained / (steps - 2) if steps > 2 else 0.0  # the last step may end late
    if trained > spec.budget_s * _OVERRUN_TOLERANCE + 1.0 + 2 * step_s:
        return "overrun", values, f"trained {trained:.1f}s, over the {spec.budget_s:.0f}s budget"
    return "ok", values, ""


def run_experiment(spec: ExperimentSpec, metric: str = "val_bpb") -> ExperimentResult:
    """Run one experiment as a subprocess; never raises for the run's own failure."""
    started = time.monotonic()
    scratch: Path | None = None
    try:
        scratch = _scratch(spec)
        kill_after = spec.kill_after_s or 2 * spec.budget_s + STARTUP_GRACE_S
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, "train.py"],
            cwd=scratch / "work",
            env=_environment(spec, scratch),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so a kill takes the whole process group (dataloader workers too)
        )
        try:
            out, err = proc.communicate(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            why = f"killed after {kill_after:.0f}s (2x budget + start-up)"
            return _result(spec, "timeout", {}, why, started, out, err)
        status, values, why = judge_output(spec, out, proc.returncode, metric)
        return _result(spec, status, values, why, started, out, err)
    except OSError as exc:
        return _result(spec, "crash", {}, f"could not start: {exc}", started, "", "")
    finally:
        if scratch is not None:
            for path in (scratch / "frozen", scratch):
                if path.exists():
                    path.chmod(0o755)
            shutil.rmtree(scratch, ignore_errors=True)


def _result(
    spec: ExperimentSpec,
    status: ExperimentStatus,
    values: dict[str, float],
    reason: str,
    started: float,
    out: str,
    err: str,
) -> ExperimentResult:
    return ExperimentResult(
        label=spec.label,
        version_hash=spec.version_hash,
        seed=spec.seed,
        status=status,
        values=values,
        reason=reason,
        wall_s=time.monotonic() - started,
        log_tail=(out[-1500:] + "\n" + err[-2500:]).strip(),
    )


def load_training_suite(path: Path) -> TrainingSuite:
    from harness_opt.suites.loader import load_suite

    suite = load_suite(path)
    if not isinstance(suite, TrainingSuite):
        raise SuiteError(
            "not a training suite", where=str(path), fix='its suite.toml needs domain = "training"'
        )
    return suite


def experiment_spec(
    version: HarnessVersion, suite: TrainingSuite, seed: int, *, gpu: bool = False
) -> ExperimentSpec:
    """One run of `version` with `seed`: the GPU budget and eval size when `gpu`, else the CPU ones."""
    s = suite.settings
    files = {
        rel: data.decode("utf-8")
        for rel, data in version.files().items()
        if rel != "harness.toml" and rel != PREPARE_FILE
    }
    return ExperimentSpec(
        label=version.label,
        version_hash=version.hash,
        files=files,
        prepare=suite.prepare_path.read_text(encoding="utf-8"),
        budget_s=s.gpu_time_budget_s if gpu else s.time_budget_s,
        seed=seed,
        eval_tokens=s.gpu_eval_tokens if gpu else s.eval_tokens,
        data=suite.data_path() if Path(suite.data_path() or "/nonexistent").is_file() else "",
        data_url=s.data_url,
        data_sha256=s.data_sha256,
    )


class ExperimentStore:
    """Finished results by the content of their spec (files, prepare.py, budget, seed, data), one JSON
    file each under `<home>/experiments/`, written atomically the moment a run ends."""

    _WHERE = frozenset({"label", "gpu", "threads", "kill_after_s"})
    """Where and how a run is placed, not what it computes."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home_dir() / "experiments"
        self.root.mkdir(parents=True, exist_ok=True)

    def key(self, spec: ExperimentSpec) -> str:
        what = spec.model_dump(mode="json", exclude=set(self._WHERE))
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]

    def get(self, spec: ExperimentSpec) -> ExperimentResult | None:
        path = self.root / f"{self.key(spec)}.json"
        try:
            return ExperimentResult.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, spec: ExperimentSpec, result: ExperimentResult) -> None:
        path = self.root / f"{self.key(spec)}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(result.model_dump_json(), encoding="utf-8")
        tmp.replace(path)
