"""The agent-harness domain: prompts + tools + agent.py, evaluated in the sandbox on a suite's tasks.

Baseline: the seed on val twice (the rerun, response cache off, measures noise) after the doctor's
pre-flight. A candidate is scanned (sealed-data literals, escapes) and must run one train task
before it costs a val evaluation. The proposer reads raw train traces, failing first. The sealed test
split is evaluated once, at the end, for the baseline and the best version.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from harness_opt.domains.train_check import INVALID_ERRORS, TrainCheck
from harness_opt.errors import UserError
from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate_async
from harness_opt.evaluate.stats import paired_test
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger.queries import candidate_task_wins
from harness_opt.llm.catalog import validate_model
from harness_opt.propose.base import ProposalInput, Proposer, TaskWins, opaque_task_key
from harness_opt.propose.history_fs import HistorySource, build_history
from harness_opt.records import Trace
from harness_opt.search.acceptance import task_means
from harness_opt.search.candidates import describe_failure
from harness_opt.search.config import AGENT_HARNESS_EDITABLE, OptimizeConfig
from harness_opt.search.domain import RunContext
from harness_opt.search.measurement import Measurement
from harness_opt.search.records import CandidateRecord, SealedTest, SplitFigures
from harness_opt.suites.base import Suite
from harness_opt.suites.loader import load_suite
from harness_opt.trust.scan import ScanReport, scan_and_record

PASSING_SHOWN = 5
"""Passing train traces a proposer sees beside all the failing ones."""


def proposer_safe(scan: ScanReport, limit: int = 3) -> str:
    """The scan's verdict as a decision reason, which proposers read in their history: a finding of
    sealed-split text says its kind and where, never the text, its task or its split (those stay in
    the ledger's `scans` table, which `harness-opt diff` shows)."""
    parts = []
    for f in scan.findings[:limit]:
        where = f"{f.file}{f':{f.line}' if f.line else ''}"
        said = "text of a sealed split" if f.kind.startswith("sealed-") else f.message
        parts.append(f"{f.severity} {f.kind} ({where}): {said}")
    more = f" (+{len(scan.findings) - limit} more)" if len(scan.findings) > limit else ""
    return f"scan: {'; '.join(parts) or 'clean'}{more}"


def measurement(version: HarnessVersion, result: EvalResult) -> Measurement:
    s = result.summary
    return Measurement(
        degraded=result.degraded,
        version_hash=version.hash,
        label=version.label,
        values=task_means(result.scores_by_task()),
        score=s.score,
        ci=s.score_ci,
        cost_usd=s.cost_usd,
        tokens_per_rollout=(s.tokens_in + s.tokens_out) / max(1, s.n_rollouts),
    )


class AgentHarnessDomain:
    name = "agent-harness"
    editable: tuple[str, ...] = AGENT_HARNESS_EDITABLE
    acceptance = "paired"
    direction = "max"
    metric = "val score"

    def __init__(self) -> None:
        self.eval_seconds: dict[str, float] = {}
        self.imported: list[Trace] = []
        self.evidence_ids: list[str] = []
        """The train tasks of this iteration's evidence: a candidate runs the first `history_train`."""

    # ------------------------------------------------------------------------- set-up

    def start(self, seed: HarnessVersion, config: OptimizeConfig) -> str:
        data = str(config.data) if config.data is not None else None
        self.suite: Suite = load_suite(
            config.suite, user_model=config.user_model, judge_model=config.judge_model, data=data
        )
        self.model = config.model or seed.manifest.model.name
        validate_model(self.model)
        if not self.suite.tasks("train"):
            raise UserError(f"suite {self.suite.name} has no train tasks", fix="the loop learns from train")
        from harness_opt.traces_import import read_imported

        # Imported production traces (--evidence): read once, so a bad file fails before the run.
        self.imported = [t for path in config.evidence for t in read_imported(path)]
        return self.model

    def operators(self) -> Proposer:
        from harness_opt.propose.operators import OperatorsProposer

        return OperatorsProposer()

    async def _eval(
        self,
        version: HarnessVersion,
        split: str,
        run: RunContext,
        *,
        what: str,
        trial_offset: int = 0,
        task_ids: list[str] | None = None,
        llm_cache: bool = True,
        limit: int | None = None,
    ) -> EvalResult:
        cfg = run.config
        eval_cfg = EvalConfig(
            split=split,
            trials=cfg.trials if split == "val" else 1,
            model=self.model,
            concurrency=cfg.concurrency,
            limit=limit,
            task_ids=task_ids,
            trial_offset=trial_offset,
            isolation=cfg.isolation,
            llm_cache=llm_cache,
            allow_test=(split == "test"),
            max_infra_failures=cfg.max_infra_failures,
            executor=cfg.executor,
            address=cfg.address,
            llm=cfg.llm,
        )
        started = time.monotonic()
        result = await evaluate_async(
            version,
            self.suite,
            eval_cfg,
            ledger=run.ledger,
            run_id=run.run_id,
            record_run=False,
            progress=lambda done, total, _r: run.display.eval_progress(what, done, total),
        )
        # Reused rollouts cost nothing now; only what this call executed counts against the budget.
        run.charge(result.executed_cost_usd, result.executed)
        self.eval_seconds[f"{version.hash}:{split}"] = time.monotonic() - started
        return result

    # ----------------------------------------------------------------------- baseline

    async def baseline(self, seed: HarnessVersion, run: RunContext) -> list[Measurement]:
        if not run.resumed:
            await self._preflight(run)
        limit = run.config.val_limit
        run.display.status(f"baseline {seed.label}: evaluating on val")
        base = await self._eval(seed, "val", run, what=f"baseline {seed.label} · val", limit=limit)
        run.display.status("re-running the baseline to measure noise (response cache off)")
        rerun = await self._eval(
            seed,
            "val",
            run,
            what="baseline rerun · val (noise)",
            trial_offset=run.config.trials,
            llm_cache=False,
            limit=limit,
        )
        return [measurement(seed, base), measurement(seed, rerun)]

    async def _preflight(self, run: RunContext) -> None:
        """Refuse an overnight run whose set-up cannot be trusted (doctor FAIL), unless forced."""
        from harness_opt.trust.doctor import doctor

        cfg = run.config
        run.display.status("doctor: checking splits, scorer, sandbox, model and noise before the run")
        # doctor drives its own event loop (it is also a CLI command), so it runs in a worker thread.
        report = await asyncio.to_thread(
            doctor,
            cfg.suite,
            cfg.harness,
            model=self.model,
            budget=cfg.budget,
            isolation=cfg.isolation,
            ledger=run.ledger,
            llm=cfg.llm,
        )
        if report.failed:
            failed = "; ".join(f"{ln.check}: {ln.detail}" for ln in report.lines if ln.status == "FAIL")
            if not cfg.force:
                raise UserError(
                    f"doctor found problems: {failed}",
                    fix="fix them (see `harness-opt doctor`), or pass --force to run anyway",
                )
            run.display.status(f"doctor FAIL overridden by --force: {failed}")

    # ------------------------------------------------------------------ candidates

    async def evaluate(
        self,
        candidates: list[HarnessVersion],
        incumbent: HarnessVersion,
        run: RunContext,
        *,
        attempt: int = 0,
        units: int | None = None,
    ) -> list[Measurement]:
        """One after the other: admission (scan, one train task), then val: the first `units` val
        tasks (default `--val-limit`). `attempt` n runs trials numbered after the first n attempts'."""
        out = []
        for candidate in candidates:
            try:
                refused, flagged = await self._admit(candidate, incumbent, run)
            except Exception as exc:  # a candidate that breaks the scan or the smoke test is invalid
                refused, flagged = f"cannot be checked: {describe_failure(exc)}", None
            if refused is not None:
                out.append(Measurement(version_hash=candidate.hash, label=candidate.label, invalid=refused))
                continue
            result = await self._eval(
                candidate,
                "val",
                run,
                what=f"candidate {candidate.label} · val",
                trial_offset=attempt * run.config.trials,
                limit=units or run.config.val_limit,
            )
            out.append(measurement(candidate, result).model_copy(update={"flagged": flagged}))
            if attempt == 0:
                await self._train_for_history(candidate, run)
        return out

    async def _train_for_history(self, candidate: HarnessVersion, run: RunContext) -> None:
        """The candidate on the first `history_train` tasks of this iteration's evidence, so the
        proposers' history holds its raw train traces and its per-task train wins and losses against
        the incumbent (which ran the same tasks). Only for proposers that read a history."""
        ids = self.evidence_ids[: run.config.history_train]
        if run.history_dir is None or not ids or self._admitted(candidate, run):
            return
        try:
            await self._eval(candidate, "train", run, what=f"train traces · {candidate.label}", task_ids=ids)
        except Exception as exc:  # the history lacks its traces; the decision stands
            run.display.status(f"train traces of {candidate.label} not recorded: {describe_failure(exc)}")

    @staticmethod
    def _admitted(candidate: HarnessVersion, run: RunContext) -> bool:
        """The seed, or a version this run already accepted (checked and measured before)."""
        return any(r.hash == candidate.hash and r.outcome in ("accepted", "baseline") for r in run.records)

    async def _admit(
        self, candidate: HarnessVersion, parent: HarnessVersion, run: RunContext
    ) -> tuple[str | None, str | None]:
        """(why it is refused, why it may never be the incumbent). The seed, and a version this run
        already accepted, were admitted before (a resume or a re-test measures the incumbent again)."""
        if self._admitted(candidate, run):
            return None, None
        scan = scan_and_record(
            candidate, parent, self.suite, editable=self.editable, ledger=run.ledger, run_id=run.run_id
        )
        if scan.rejected:
            return f"rejected by the {proposer_safe(scan)}", None
        flagged = proposer_safe(scan) if scan.blocks_incumbent else None
        probe = self.suite.tasks("train")[:1]
        smoke = await self._eval(
            candidate, "train", run, what=f"validating {candidate.label}", task_ids=[t.id for t in probe]
        )
        errors = [r for r in smoke.rollouts if r.error in INVALID_ERRORS]
        if errors:
            detail = (errors[0].error_detail or "")[:300]
            return f"fails on a train task: {errors[0].error}: {detail}", flagged
        return None, flagged

    async def evidence(
        self, incumbent: HarnessVersion, measurement: Measurement, run: RunContext
    ) -> ProposalInput:
        cfg = run.config
        train = self.suite.tasks("train")
        rng = random.Random(cfg.seed * 100_003 + run.iteration)
        sample = rng.sample(train, min(cfg.train_sample, len(train)))
        self.evidence_ids = [t.id for t in sample]
        result = await self._eval(
            incumbent,
            "train",
            run,
            what=f"train evidence · {incumbent.label}",
            task_ids=[t.id for t in sample],
        )
        failing: list[Trace] = []
        passing: list[Trace] = []
        for rollout in result.rollouts:
            if rollout.trace_ref is None:
                continue
            if not rollout.passed:
                failing.append(read_trace(rollout.trace_ref))
            elif len(passing) < PASSING_SHOWN:
                passing.append(read_trace(rollout.trace_ref))
        files = {
            p: b.decode("utf-8", "replace")
            for p, b in incumbent.files().items()
            if not p.startswith("data/") and len(b) < 200_000
        }
        files["harness.toml"] = (incumbent.path / "harness.toml").read_text()
        return ProposalInput(
            agent=incumbent.name,
            version_label=incumbent.label,
            files=files,
            editable=self.editable,
            suite=self.suite.name,
            suite_description=getattr(self.suite, "description", ""),
            failing_traces=failing,
            passing_traces=passing,
            train_tasks=train,
            val_score=measurement.mean,
            history=run.history(),
            task_wins=self._task_wins(run),
            retest_val_limit=self._retest_limit(cfg),
            imported_traces=self.imported,
            seed=cfg.seed + run.iteration,
            history_dir=await self._history(incumbent, run),
            checker=self._checker(incumbent, run),
        )

    async def _history(self, incumbent: HarnessVersion, run: RunContext) -> Path | None:
        """The history filesystem, rebuilt for this iteration (None when the proposer reads none)."""
        if run.history_dir is None:
            return None
        source = HistorySource(
            ledger=run.ledger,
            run_id=run.run_id,
            agent=incumbent.name,
            suite=self.suite.name,
            model=self.model,
            train_tasks=self.suite.tasks("train"),
            all_runs=run.config.meta_history == "agent",
        )
        stats = await asyncio.to_thread(build_history, source, run.history_dir)
        run.display.status(
            f"iteration {run.iteration}: history of {stats.candidates} candidates, {stats.traces} train "
            f"traces, in {run.history_dir}"
        )
        return run.history_dir

    def _checker(self, incumbent: HarnessVersion, run: RunContext) -> TrainCheck | None:
        """`check` for the proposers that read a history (one train task per check)."""
        cfg = run.config
        if run.history_dir is None or cfg.max_checks == 0:
            return None
        limit = cfg.max_checks * cfg.parallel
        loop = asyncio.get_running_loop()
        return TrainCheck(self.suite, self.model, self.editable, run, incumbent, loop, limit)

    def _task_wins(self, run: RunContext) -> list[TaskWins]:
        """Earlier candidates against their incumbents, val task by val task, with the task ids made
        opaque (a proposer never learns which val tasks they are)."""
        labels = {r.hash: r.label for r in run.records if r.hash}
        return [
            TaskWins(
                candidate=labels.get(w.candidate, w.candidate[:12]),
                mechanism=w.mechanism,
                incumbent=labels.get(w.incumbent, w.incumbent[:12]),
                wins=[opaque_task_key(run.run_id, t) for t in w.wins],
                losses=[opaque_task_key(run.run_id, t) for t in w.losses],
            )
            for w in candidate_task_wins(run.ledger, run.run_id, self.suite.name, self.model)
            if w.iteration < run.iteration
        ]

    def _retest_limit(self, cfg: OptimizeConfig) -> int | None:
        """A near miss may be re-tested on twice the usual val tasks (a paired test's interval
        narrows by about 1.4x); None when the run already uses every val task."""
        n_val = len(self.suite.tasks("val"))
        if cfg.val_limit is None or cfg.val_limit >= n_val:
            return None
        return min(n_val, 2 * cfg.val_limit)

    # ----------------------------------------------------------------------------- end

    def reserve_s(self, seed: HarnessVersion, incumbent: HarnessVersion, run: RunContext) -> float:
        """Seconds to keep for the sealed test evaluation of baseline and best at the end."""
        cfg = run.config
        if cfg.skip_test or "test" not in self.suite.split_names():
            return 0.0
        n_val = max(1, len(self.suite.tasks("val")[: cfg.val_limit or None]))
        n_test = len(self.suite.tasks("test")[: cfg.test_limit or None])
        per_task = [self.eval_seconds.get(f"{v.hash}:val", 0.0) / n_val for v in (seed, incumbent)]
        # 1.5x: the machine may be busier at the end than when the val timings were taken.
        return 1.5 * n_test * sum(per_task) + 15.0

    async def finish(self, seed: HarnessVersion, best: HarnessVersion, run: RunContext) -> SealedTest | None:
        cfg = run.config
        if cfg.skip_test or "test" not in self.suite.split_names():
            return None
        run.display.status("sealed test split: evaluating baseline and best once")
        limit = cfg.test_limit
        base = await self._eval(seed, "test", run, what=f"baseline {seed.label} · test", limit=limit)
        if best.hash == seed.hash:
            return SealedTest(baseline=_figures(base), best=_figures(base))
        top = await self._eval(best, "test", run, what=f"best {best.label} · test", limit=limit)
        p = paired_test(task_means(base.scores_by_task()), task_means(top.scores_by_task())).p_value
        return SealedTest(baseline=_figures(base), best=_figures(top), p_value=p)

    def decided(self, record: CandidateRecord, measurement: Measurement | None, run: RunContext) -> None:
        """Nothing to add: the evaluator wrote every rollout as it finished."""


def _figures(result: EvalResult) -> SplitFigures:
    s = result.summary
    return SplitFigures(score=s.score, ci=s.score_ci, n_tasks=s.n_tasks)
