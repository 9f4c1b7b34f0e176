"""The training-loop domain: a candidate is a version dir with an editable train.py, run against a
frozen prepare.py under a fixed training-time budget, judged by one metric (val_bpb, lower is better).

One experiment is one real subprocess `python train.py` in a scratch copy of the version, with
prepare.py beside it read-only; it is killed at twice the budget. Its result is the `---` block of
`key: value` lines it prints. The runner never raises for one experiment's failure: a crash, a
`FAIL` (NaN or exploding loss), a kill or an overrun of the budget is a result with that status.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.errors import SuiteError
from harness_opt.harness.version import HarnessVersion
from harness_opt.records import Rollout, Score, Task
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


def run_experiment(spec: ExperimentSpec, metric: str = "val_bpb") -> ExperimentResult:
    """Run one experiment as a subprocess; never raises for the run's own failure."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="hopt-train-"))
    try:
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
        env = {
            **os.environ,
            "PYTHONPATH": str(frozen),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NANOGPT_TIME_BUDGET": str(spec.budget_s),
            "NANOGPT_SEED": str(spec.seed),
            "NANOGPT_EVAL_TOKENS": str(spec.eval_tokens),
            "NANOGPT_DATA": spec.data or str(scratch / "corpus.txt"),
        }
        if spec.data_url:
            env["NANOGPT_DATA_URL"], env["NANOGPT_DATA_SHA256"] = spec.data_url, spec.data_sha256
        if spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = spec.gpu
        if spec.threads is not None:
            env["OMP_NUM_THREADS"] = str(spec.threads)
        kill_after = spec.kill_after_s or 2 * spec.budget_s + STARTUP_GRACE_S
        proc = subprocess.Popen(
            [sys.executable, "train.py"],
            cwd=work,
            env=env,
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
            return _result(
                spec,
                "timeout",
                {},
                f"killed after {kill_after:.0f}s (2x budget + start-up)",
                started,
                out,
                err,
            )
        values, failed = parse_result_block(out)
        if failed:
            return _result(spec, "fail", values, "FAIL: NaN or exploding loss", started, out, err)
        if proc.returncode != 0 or metric not in values:
            why = f"exit code {proc.returncode}" if proc.returncode else f"no {metric} line after ---"
            return _result(spec, "crash", values, why, started, out, err)
        trained = values.get("training_seconds", 0.0)
        steps = values.get("num_steps", 0.0)
        step_s = trained / (steps - 2) if steps > 2 else 0.0  # the last step may end late
        if trained > spec.budget_s * _OVERRUN_TOLERANCE + 1.0 + 2 * step_s:
            why = f"trained {trained:.1f}s, over the {spec.budget_s:.0f}s budget"
            return _result(spec, "overrun", values, why, started, out, err)
        return _result(spec, "ok", values, "", started, out, err)
    except OSError as exc:
        return _result(spec, "crash", {}, f"could not start: {exc}", started, "", "")
    finally:
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


@dataclass
class TrainingDomain:
    """The Domain of train.py-under-a-budget. `gpu=True` uses the suite's GPU budget and eval size."""

    gpu: bool = False
    name: str = "training"
    editable: tuple[str, ...] = TRAINING_EDITABLE
    score_direction: Literal["max", "min"] = "min"
    _suites: dict[Path, TrainingSuite] = field(default_factory=dict)

    def load_suite(self, path: Path) -> TrainingSuite:
        from harness_opt.suites.loader import load_suite

        suite = load_suite(path)
        if not isinstance(suite, TrainingSuite):
            raise SuiteError(
                "not a training suite", where=str(path), fix='its suite.toml needs domain = "training"'
            )
        return suite

    def outside_editable(self, edits: dict[str, str | None]) -> list[str]:
        """Edited paths a proposer may not touch (prepare.py, harness.toml, anything but train.py)."""
        return sorted(p for p in edits if not any(fnmatch(p, g) for g in self.editable))

    def spec(self, version: HarnessVersion, suite: TrainingSuite, seed: int) -> ExperimentSpec:
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
            budget_s=s.gpu_time_budget_s if self.gpu else s.time_budget_s,
            seed=seed,
            eval_tokens=s.gpu_eval_tokens if self.gpu else s.eval_tokens,
            data=suite.data_path() if Path(suite.data_path() or "/nonexistent").is_file() else "",
            data_url=s.data_url,
            data_sha256=s.data_sha256,
        )

    def evaluate(
        self, version: HarnessVersion, tasks: list[Task], trials: int, *, suite: TrainingSuite
    ) -> list[Rollout]:
        """`trials` runs with seeds 0..trials-1, one after the other, as rollouts (score = the metric)."""
        metric = suite.settings.metric
        results = [run_experiment(self.spec(version, suite, seed), metric) for seed in range(trials)]
        return [experiment_rollout(r, suite, metric) for r in results]

    def optimizer(self, config: Any, **kwargs: Any) -> Any:
        from harness_opt.domains.training_search import TrainingOptimizer

        return TrainingOptimizer(config, domain=self, **kwargs)

    def reflect(self, results: list[ExperimentResult]) -> list[str]:
        """What a proposer reads: each run's status, figures and the tail of its log."""
        return [
            f"{r.label} seed {r.seed}: {r.status} {r.reason}\n"
            + "\n".join(f"{k}: {v}" for k, v in r.values.items())
            + (f"\nlog tail:\n{r.log_tail[-800:]}" if not r.ok else "")
            for r in results
        ]


def experiment_rollout(result: ExperimentResult, suite: TrainingSuite, metric: str) -> Rollout:
    value = result.metric(metric)
    return Rollout(
        run_id="-",
        version_hash=result.version_hash,
        suite=suite.name,
        split="val",
        task_id=metric,
        trial=result.seed,
        model="train.py",
        score=value if value is not None else float("nan"),
        passed=result.ok,
        latency_s=result.wall_s,
        error=None if result.ok else result.status,
        error_detail=result.reason or None,
        feedback=result.log_tail[-500:],
    )
