"""`diff(A, B)`: what changed between two versions and what it did to the results, task by task.

Figures are computed over the (task, trial) keys *both* versions have on the suite split, so a
candidate evaluated on 30 tasks is never compared with a baseline's 60. A task's verdict is the mean
of `passed` over those common trials, >= 0.5 counting as a pass; a *flip* is a task whose verdict
differs: fixed (failed in A, passed in B) or broken (the reverse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.errors import UserError
from harness_opt.evaluate.stats import mean_ci_clustered, paired_test
from harness_opt.evaluate.summary import DEFAULT_MAX_INFRA_FAILURES
from harness_opt.harness.diff import VersionDiff, diff_versions
from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.queries import (
    TaskPair,
    paired_tasks,
    side_models,
    suites_of,
    version_aggregates,
    version_infos,
)
from harness_opt.report.scope import ResolvedVersion, eval_command, resolve, suite_name


class SideFigures(BaseModel):
    label: str
    hash: str
    model: str
    score: float
    ci: tuple[float, float]
    cost_usd: float = Field(description="Total over the common rollouts.")
    tokens: int
    latency_s: float = Field(description="Mean per rollout.")


class Flip(BaseModel):
    task_id: str
    kind: Literal["fixed", "broken"]
    score_a: float
    score_b: float
    trace_a: str | None = Field(
        default=None, description="A's representative trace (its failing or passing trial)."
    )
    trace_b: str | None = None


class ResultsDiff(BaseModel):
    suite: str
    split: str
    n_tasks: int
    n_rollouts: int = Field(description="Rollouts per side on the common (task, trial) keys.")
    a: SideFigures
    b: SideFigures
    delta: float
    delta_ci: tuple[float, float]
    p_value: float
    method: str
    flips: list[Flip]
    tasks: list[TaskPair] = Field(default_factory=list)
    infra_a: int = Field(
        default=0, description="A's rollouts lost to infrastructure failures on this split: not compared."
    )
    infra_b: int = 0
    degraded: list[str] = Field(
        default_factory=list, description="Sides whose infrastructure failures exceed the threshold: why."
    )

    @property
    def fixed(self) -> list[Flip]:
        return [f for f in self.flips if f.kind == "fixed"]

    @property
    def broken(self) -> list[Flip]:
        return [f for f in self.flips if f.kind == "broken"]


class MissingResults(BaseModel):
    label: str
    message: str
    command: str


class DiffReport(BaseModel):
    a_label: str
    a_hash: str
    b_label: str
    b_hash: str
    suite: str | None = None
    split: str
    versions: VersionDiff | None = Field(
        default=None, description="None when a side's directory is not on disk."
    )
    versions_note: str = ""
    results: ResultsDiff | None = None
    missing: list[MissingResults] = Field(default_factory=list)
    scan_findings: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The trust scan's findings on B (latest scan): severity, kind, file, line, message.",
    )
    scan_severity: str | None = None


def compare_results(
    ledger: Ledger,
    a: ResolvedVersion,
    b: ResolvedVersion,
    suite: str,
    split: str,
    model: str | None = None,
    models: dict[str, dict[str, int]] | None = None,
) -> ResultsDiff | None:
    """The paired comparison of B against A; None when they share no (task, trial) key."""
    models = models if models is not None else side_models(ledger, [a.hash, b.hash], suite, split)
    models_a, models_b = models.get(a.hash, {}), models.get(b.hash, {})
    if model is not None:
        model_a = model_b = model
    else:
        common = [m for m in models_a if m in models_b]
        if common:
            model_a = model_b = max(common, key=lambda m: (min(models_a[m], models_b[m]), m))
        elif models_a and models_b:
            model_a, model_b = next(iter(models_a)), next(iter(models_b))
        else:
            return None
    tasks = paired_tasks(ledger, a.hash, b.hash, suite, split, model_a, model_b)
    if not tasks:
        return None
    test = paired_test({t.task_id: t.score_a for t in tasks}, {t.task_id: t.score_b for t in tasks})
    n_rollouts = sum(t.n_trials for t in tasks)

    def side(who: ResolvedVersion, m: str, pick: str) -> SideFigures:
        scores = {t.task_id: [getattr(t, f"score_{pick}")] for t in tasks}
        mean, lo, hi = mean_ci_clustered(scores)
        return SideFigures(
            label=who.label,
            hash=who.hash,
            model=m,
            score=mean,
            ci=(lo, hi),
            cost_usd=sum(getattr(t, f"cost_{pick}") for t in tasks),
            tokens=sum(getattr(t, f"tokens_{pick}") for t in tasks),
            latency_s=sum(getattr(t, f"latency_{pick}") for t in tasks) / n_rollouts,
        )

    flips = [
        Flip(
            task_id=t.task_id,
            kind="fixed" if t.passed_b else "broken",
            score_a=t.score_a,
            score_b=t.score_b,
            trace_a=t.worst_ref_a if t.passed_b else t.best_ref_a,
            trace_b=t.best_ref_b if t.passed_b else t.worst_ref_b,
        )
        for t in tasks
        if t.passed_a != t.passed_b
    ]
    infra = _infra(ledger, suite, split, [(a, model_a), (b, model_b)])
    return ResultsDiff(
        infra_a=infra[0][0],
        infra_b=infra[1][0],
        degraded=[why for _, why in infra if why],
        suite=suite,
        split=split,
        n_tasks=len(tasks),
        n_rollouts=n_rollouts,
        a=side(a, model_a, "a"),
        b=side(b, model_b, "b"),
        delta=test.delta,
        delta_ci=(test.ci_lo, test.ci_hi),
        p_value=test.p_value,
        method=test.method,
        flips=flips,
        tasks=tasks,
    )


def _infra(
    ledger: Ledger, suite: str, split: str, sides: list[tuple[ResolvedVersion, str]]
) -> list[tuple[int, str | None]]:
    """Per side, (rollouts lost to infrastructure failures, why the side is degraded or None): the
    one rule for failed rollouts, as `leaderboard` applies it."""
    aggregates = {
        (g.version_hash, g.model): g
        for g in version_aggregates(ledger, suite, split, versions=[v.hash for v, _ in sides])
    }
    out: list[tuple[int, str | None]] = []
    for version, model in sides:
        agg = aggregates.get((version.hash, model))
        if agg is None or not agg.n_infra:
            out.append((0, None))
            continue
        total = agg.n_rollouts + agg.n_infra
        share = agg.n_infra / total
        lost = f"{agg.n_infra} of {total} rollouts ({share:.0%})"
        degraded = share > DEFAULT_MAX_INFRA_FAILURES
        why = f"{version.label}: {lost} lost to infrastructure failures" if degraded else None
        out.append((agg.n_infra, why))
    return out


def _pick_suite(ledger: Ledger, a: ResolvedVersion, b: ResolvedVersion, split: str) -> str | None:
    """The one suite both versions have results on for `split`; None when they share none."""
    on_a = {s for s, sp, _ in suites_of(ledger, [a.hash]) if sp == split}
    on_b = {s for s, sp, _ in suites_of(ledger, [b.hash]) if sp == split}
    shared = sorted(on_a & on_b)
    if len(shared) > 1:
        raise UserError(
            f"{a.label} and {b.label} both have results on several suites: {', '.join(shared)}",
            fix="pick one with --suite",
        )
    if shared:
        return shared[0]
    either = sorted(on_a | on_b)
    return either[0] if len(either) == 1 else None


def diff_resolved(
    a: ResolvedVersion,
    b: ResolvedVersion,
    *,
    suite: str | Path | None = None,
    split: str = "val",
    model: str | None = None,
    ledger: Ledger | None = None,
) -> DiffReport:
    """`diff` for versions already resolved (the report reuses it for every pair it shows)."""
    ledger = ledger or Ledger()
    name = suite_name(suite) if suite is not None else _pick_suite(ledger, a, b, split)
    report = DiffReport(
        a_label=a.label, a_hash=a.hash, b_label=b.label, b_hash=b.hash, suite=name, split=split
    )
    scans = ledger.scans(b.hash)
    if scans:  # candidates scanned by the optimize loop: show what the trust scan saw in B
        report.scan_findings = list(scans[-1]["findings"])
        report.scan_severity = scans[-1]["max_severity"]
    if a.version is not None and b.version is not None:
        report.versions = diff_versions(a.version, b.version)
    else:
        gone = [v.label for v in (a, b) if v.version is None]
        report.versions_note = (
            f"files not compared: the directory of {' and '.join(gone)} is not on disk (or was edited since)"
        )
    if name is None:
        report.missing = [
            MissingResults(
                label=v.label,
                message=f"{v.label} has no results on any suite's {split} split",
                command=eval_command(v, "tasks/<suite>", split),
            )
            for v in (a, b)
        ]
        return report
    models = side_models(ledger, [a.hash, b.hash], name, split)
    for v in (a, b):
        if not models.get(v.hash):
            report.missing.append(
                MissingResults(
                    label=v.label,
                    message=f"{v.label} has no results on {name}/{split}",
                    command=eval_command(v, suite if suite is not None else name, split),
                )
            )
    if not report.missing:
        report.results = compare_results(ledger, a, b, name, split, model, models)
        if report.results is None:
            report.missing.append(
                MissingResults(
                    label=b.label,
                    message=f"{a.label} and {b.label} share no (task, trial) on {name}/{split}"
                    + (f" with model {model}" if model else ""),
                    command=eval_command(b, suite if suite is not None else name, split),
                )
            )
    return report


def diff(
    a: str | Path,
    b: str | Path,
    *,
    suite: str | Path | None = None,
    split: str = "val",
    model: str | None = None,
    ledger: Ledger | None = None,
    root: str | Path = "harnesses",
) -> DiffReport:
    """Compare version B against version A: files, tools, lineage notes, and paired results.

    A and B are version directories, `agent@vN` specs (under `root`), or hash prefixes in the ledger.
    """
    ledger = ledger or Ledger()
    infos = version_infos(ledger)
    return diff_resolved(
        resolve(a, ledger, root, infos),
        resolve(b, ledger, root, infos),
        suite=suite,
        split=split,
        model=model,
        ledger=ledger,
    )
