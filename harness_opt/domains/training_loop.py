"""Training runs: a version dir with an editable train.py, run against a frozen prepare.py under a
fixed training-time budget, judged by one metric (val_bpb, lower is better) that train.py cannot forge.

One experiment is three sandboxed steps (`training_box`, `training_exec`): train.py trains on the train
bytes only and hands its model over a pipe; then two fresh model servers and prepare.py's scorer,
which alone holds the val bytes, compute the metric; the scorer's stdout is the only channel the metric
comes back on, so a train.py that prints `val_bpb: 0.1` is not believed, and a model that looks ahead
fails. train.py is killed at twice the budget (plus start-up), and with its parent (a kill -9 of the
optimize run leaves no orphan training). The runner never raises for one experiment's failure: a
crash, a `FAIL` (NaN or exploding loss, a model that looks ahead), a kill or an overrun of the budget
is a result with that status. A finished result is stored by the content of its spec, so the same run
is never made twice (a resumed optimize reuses it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.domains.training_box import Boxes, BoxSettings, GpuAccess, HostPaths, gpu_access
from harness_opt.domains.training_data import CorpusError, corpus_path, split_corpus
from harness_opt.domains.training_exec import MODEL_BYTES, EvalOutcome, TrainOutcome, run_eval, run_train
from harness_opt.errors import SuiteError
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import home_dir
from harness_opt.records import Score, Task
from harness_opt.runtime.sandbox import Isolation, bwrap_problem
from harness_opt.suites.base import Environment, NoTools

PREPARE_FILE = "prepare.py"
TRAINING_EDITABLE: tuple[str, ...] = ("train.py",)
"""Only train.py may change: prepare.py (data, tokenizer, metric, budget) and harness.toml are frozen."""
STARTUP_GRACE_S = 30.0
"""Added to the 2x-budget kill: interpreter start, torch import, data load and saving the model are not
training time, and on a 20 s CPU budget they are a large part of the wall time."""
EVAL_MIN_S = 60.0
"""The evaluation's deadline is start-up grace + the larger of this and half the budget."""
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
    val_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="The last fraction of the corpus is val (only the scorer sees it).",
    )
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
    val_fraction: float = 0.1
    isolation: Isolation = Field(
        default="bwrap",
        description="The resolved sandbox mode (`runtime.sandbox.resolve_isolation`): part of what a stored "
        "result means, so a result made under a weaker mode is never reused by a bubblewrap run.",
    )
    gpu: str | None = Field(default=None, description="CUDA_VISIBLE_DEVICES for this run; None = inherit.")
    kill_after_s: float | None = Field(
        default=None, description="Default: twice the budget plus STARTUP_GRACE_S."
    )
    eval_kill_after_s: float | None = Field(
        default=None,
        description="Default: STARTUP_GRACE_S plus the larger of EVAL_MIN_S and half the budget.",
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
    isolation: str = Field(default="", description="The sandbox the run's code ran in.")

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


@dataclass(frozen=True)
class _Limits:
    train_s: float
    eval_s: float


def _limits(spec: ExperimentSpec) -> _Limits:
    return _Limits(
        spec.kill_after_s or 2 * spec.budget_s + STARTUP_GRACE_S,
        spec.eval_kill_after_s or STARTUP_GRACE_S + max(EVAL_MIN_S, spec.budget_s / 2),
    )


def _scratch(spec: ExperimentSpec, root: Path) -> HostPaths:
    """The run's private files on the host: the version's files, prepare.py, the two halves of the
    corpus; the parent deletes them all when the run ends."""
    work, frozen, data, homes = root / "work", root / "frozen", root / "data", root / "homes"
    for folder in (work, frozen, data, homes):
        folder.mkdir()
    for rel, text in spec.files.items():
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    (frozen / PREPARE_FILE).write_text(spec.prepare, encoding="utf-8")
    (frozen / PREPARE_FILE).chmod(0o444)
    paths = HostPaths(
        work, frozen / PREPARE_FILE, data / "train.txt", data / "val.txt", root / "model.pt", homes
    )
    corpus = corpus_path(spec.data, spec.data_url, spec.data_sha256)
    split_corpus(corpus, spec.val_fraction, paths.train_data, paths.val_data)
    return paths


@functools.cache
def _host_gpus() -> GpuAccess | None:
    return gpu_access()


def _box_settings(spec: ExperimentSpec) -> BoxSettings:
    visible = spec.gpu if spec.gpu is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
    return BoxSettings(
        mode=spec.isolation,
        threads=spec.threads or os.cpu_count() or 1,
        settings={
            "NANOGPT_TIME_BUDGET": str(spec.budget_s),
            "NANOGPT_SEED": str(spec.seed),
            "NANOGPT_EVAL_TOKENS": str(spec.eval_tokens),
        },
        cuda_visible_devices=visible,
        gpu=_host_gpus() if spec.isolation == "bwrap" else None,
    )


def _overrun(spec: ExperimentSpec, info: dict[str, float]) -> str:
    """Why the run's own training_seconds break the budget, or ''."""
    trained = info.get("training_seconds", 0.0)
    steps = info.get("num_steps", 0.0)
    step_s = trained / (steps - 2) if steps > 2 else 0.0  # the last step may end late
    if trained > spec.budget_s * _OVERRUN_TOLERANCE + 1.0 + 2 * step_s:
        return f"trained {trained:.1f}s, over the {spec.budget_s:.0f}s budget"
    return ""


def judge_training(spec: ExperimentSpec, train: TrainOutcome) -> tuple[ExperimentStatus | None, str]:
    """(status, reason) when the training step alone decides the run, else (None, '')."""
    info, failed = parse_result_block(train.out)
    if train.returncode is None:
        return "timeout", f"killed after {_limits(spec).train_s:.0f}s (2x budget + start-up)"
    if failed:
        return "fail", "FAIL: NaN or exploding loss"
    if train.returncode != 0:
        return "crash", f"exit code {train.returncode}"
    overrun = _overrun(spec, info)
    if overrun:
        return "overrun", overrun
    if train.model_overflow:
        return "crash", f"the model handed over is larger than the {MODEL_BYTES // 2**30} GiB allowed"
    if train.model_bytes == 0:
        return "crash", "train.py handed over no model: call prepare.save_model(model, block_size) at the end"
    return None, ""


def judge_evaluation(
    ev: EvalOutcome, metric: str, limit_s: float
) -> tuple[ExperimentStatus, dict[str, float], str]:
    """(status, values, reason) from the scorer's own output: the only place the metric comes from."""
    if ev.returncode is None:
        return "timeout", {}, f"evaluation killed after {limit_s:.0f}s"
    fail = next((ln for ln in ev.out.splitlines() if ln.startswith("FAIL")), None)
    if fail is not None:
        return "fail", {}, fail.partition(":")[2].strip() or "FAIL"
    values, _ = parse_result_block(ev.out)
    if ev.returncode != 0 or metric not in values:
        said = [ln for ln in (ev.err + "\n" + "\n".join(ev.servers)).splitlines() if ln.strip()]
        return "crash", values, f"the evaluation reported no {metric}: {said[-1] if said else 'no output'}"
    return "ok", values, ""


def _log(train: TrainOutcome | None, ev: EvalOutcome | None) -> str:
    """What a person reads about the run: train.py's output, then the evaluation's."""
    parts = []
    if train is not None:
        parts += ["[train.py]", train.out[-1500:].strip(), train.err[-1500:].strip()]
    if ev is not None:
        servers = "\n".join(s[-400:].strip() for s in ev.servers if s.strip())
        parts += ["[evaluation: prepare.py score]", ev.out[-800:].strip(), ev.err[-600:].strip(), servers]
    return "\n".join(p for p in parts if p)


def _isolation_problem(mode: Isolation) -> str:
    if mode != "bwrap":
        return ""
    problem = bwrap_problem()
    return (
        f"train.py must run in a bubblewrap sandbox, and {problem[0]} (fix: {problem[1]})" if problem else ""
    )


def run_experiment(spec: ExperimentSpec, metric: str = "val_bpb") -> ExperimentResult:
    """Run one experiment in its sandboxes; never raises for the run's own failure."""
    started = time.monotonic()
    problem = _isolation_problem(spec.isolation)
    if problem:  # a Ray worker without bubblewrap refuses its runs: never a silent downgrade
        return _result(spec, "crash", {}, problem, started, "")
    try:
        with tempfile.TemporaryDirectory(prefix="hopt-train-") as tmp:
            paths = _scratch(spec, Path(tmp))
            return _run(spec, Boxes(paths, _box_settings(spec)), paths, metric, started)
    except CorpusError as exc:
        return _result(spec, "crash", {}, f"corpus: {exc.message}", started, "")
    except OSError as exc:
        return _result(spec, "crash", {}, f"could not start: {exc}", started, "")


def _run(
    spec: ExperimentSpec, boxes: Boxes, paths: HostPaths, metric: str, started: float
) -> ExperimentResult:
    limits = _limits(spec)
    train = run_train(boxes, paths.model, limits.train_s)
    info, _ = parse_result_block(train.out)
    status, why = judge_training(spec, train)
    if status is not None:
        return _result(spec, status, {}, why, started, _log(train, None))
    threads = max(1, boxes.s.threads // 2)  # two servers at once
    ev = run_eval(boxes, threads, limits.eval_s)
    status, scored, why = judge_evaluation(ev, metric, limits.eval_s)
    # train.py's own lines are informational; the metric and whatever the scorer reports are the scorer's
    values = {k: v for k, v in info.items() if k != metric and k not in scored}
    values["train_wall_s"] = round(train.wall_s, 1)
    return _result(
        spec, status, {**values, **scored} if status == "ok" else {}, why, started, _log(train, ev)
    )


def _result(
    spec: ExperimentSpec,
    status: ExperimentStatus,
    values: dict[str, float],
    reason: str,
    started: float,
    log: str,
) -> ExperimentResult:
    return ExperimentResult(
        label=spec.label,
        version_hash=spec.version_hash,
        seed=spec.seed,
        status=status,
        values=values,
        reason=reason,
        wall_s=time.monotonic() - started,
        log_tail=log,
        isolation=spec.isolation,
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
    version: HarnessVersion,
    suite: TrainingSuite,
    seed: int,
    *,
    gpu: bool = False,
    isolation: Isolation = "bwrap",
) -> ExperimentSpec:
    """One run of `version` with `seed`: the GPU budget and eval size when `gpu`, else the CPU ones;
    `isolation` is the mode `resolve_isolation` chose."""
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
        val_fraction=s.val_fraction,
        isolation=isolation,
    )


class ExperimentStore:
    """Finished results by the content of their spec (files, prepare.py, budget, seed, data), one JSON
    file each under `<home>/experiments/`, written atomically the moment a run ends; and a journal
    (`journal.jsonl`, append-only) of every run asked for and every result stored, so that what was
    made, twice or cut short by a kill, can be audited afterwards."""

    JOURNAL = "journal.jsonl"

    _WHERE = frozenset({"label", "gpu", "threads", "kill_after_s", "eval_kill_after_s"})
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
        self.note(spec, "done", result)

    def note(
        self, spec: ExperimentSpec, event: Literal["run", "done"], result: ExperimentResult | None = None
    ) -> None:
        """A journal line: `run` when a run is handed to the executor, `done` when its result is stored."""
        line: dict[str, Any] = {
            "at": round(time.time(), 3),
            "event": event,
            "key": self.key(spec),
            "label": spec.label,
            "version_hash": spec.version_hash,
            "seed": spec.seed,
        }
        if result is not None:
            line |= {
                "status": result.status,
                "wall_s": round(result.wall_s, 1),
                "isolation": result.isolation,
            }
        with open(self.root / self.JOURNAL, "a", encoding="utf-8") as fh:  # one short line: an atomic append
            fh.write(json.dumps(line) + "\n")
