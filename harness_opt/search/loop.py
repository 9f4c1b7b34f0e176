"""The optimize loop: propose from failing train traces, validate, evaluate on val, keep only real gains.

Every rollout and every decision is in the ledger as it happens, and the loop's state is rebuilt from
the ledger on `--resume`: finished rollouts are reused (never re-run, never duplicated), an
interrupted iteration is redone with the same proposals (proposers are seeded; identical candidates
map to the same version by content hash), and the budget clock continues where it stopped. The
test split is touched once, at the end, for the baseline and the best version.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from harness_opt.domains.base import Domain, domain_for_suite
from harness_opt.errors import UserError
from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate_async, new_run_id
from harness_opt.evaluate.stats import paired_test
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import home_dir
from harness_opt.ledger import DecisionRow, Ledger
from harness_opt.llm.catalog import validate_model
from harness_opt.propose.base import Proposal, ProposalInput, Proposer
from harness_opt.records import Trace
from harness_opt.search.acceptance import acceptance_rule, task_means
from harness_opt.search.budget import BudgetTracker
from harness_opt.search.candidates import find_version, history_of, materialize
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.records import (
    CandidateRecord,
    OptimizeDisplay,
    OptimizeResult,
    QuietDisplay,
    SplitFigures,
    default_plot_path,
)
from harness_opt.suites.base import Suite
from harness_opt.suites.loader import load_suite
from harness_opt.trust.scan import scan_and_record

_INVALID_ERRORS = {"crash", "sandbox", "invalid_output", "timeout", "memory", "step_limit", "token_limit"}


def make_proposer(config: OptimizeConfig) -> Proposer:
    if config.proposer == "operators":
        from harness_opt.propose.operators import OperatorsProposer

        return OperatorsProposer()
    if config.proposer == "llm":
        if not config.meta_model:
            raise UserError(
                "the llm proposer needs a meta-model",
                fix="pass --meta-model, e.g. --meta-model openai/gpt-4.1 or local/smollm2",
            )
        validate_model(config.meta_model)
        from harness_opt.propose.llm import LLMProposer

        return LLMProposer(config.meta_model)
    if not config.agent_cmd:
        raise UserError("the agent proposer needs a command", fix="pass --agent-cmd 'your-coding-agent ...'")
    from harness_opt.propose.agent_cli import AgentCLIProposer

    return AgentCLIProposer(config.agent_cmd)


def _figures(result: EvalResult) -> SplitFigures:
    s = result.summary
    return SplitFigures(score=s.score, ci=s.score_ci, n_tasks=s.n_tasks)


def _text_size(version: HarnessVersion) -> int:
    """Simplicity proxy for ties: bytes of code and prompts (data files do not count)."""
    return sum(len(b) for p, b in version.files().items() if not p.startswith("data/"))


def _tokens_per_rollout(result: EvalResult) -> float:
    s = result.summary
    return (s.tokens_in + s.tokens_out) / max(1, s.n_rollouts)


def _simpler(cand: HarnessVersion, cand_res: EvalResult, inc: HarnessVersion, inc_res: EvalResult) -> bool:
    """A tie goes to the candidate only if it is smaller AND no more expensive to run: fewer bytes that
    spend more tokens (voting, longer demos) is not simpler, it is a costlier way to the same score."""
    cheaper_or_equal = _tokens_per_rollout(cand_res) <= _tokens_per_rollout(inc_res)
    cost_ok = cand_res.summary.cost_usd <= inc_res.summary.cost_usd
    return _text_size(cand) < _text_size(inc) and cheaper_or_equal and cost_ok


class Optimizer:
    """One optimize run. Use `optimize()` / `optimize_async()` unless you need the pieces."""

    def __init__(
        self,
        config: OptimizeConfig,
        *,
        ledger: Ledger | None = None,
        display: OptimizeDisplay | None = None,
        resume: str | None = None,
        proposer: Proposer | None = None,
        run_id: str | None = None,
        domain: Domain | None = None,
    ) -> None:
        self.config = config
        self.domain: Domain = domain or domain_for_suite(config.suite)
        self.ledger = ledger or Ledger()
        self.display = display or QuietDisplay()
        self.resume = resume
        self.run_id = resume or run_id or new_run_id("opt")
        self.rule = acceptance_rule(config.acceptance, config.alpha)
        self.proposer = proposer or make_proposer(config)
        self.records: list[CandidateRecord] = []
        self.cost_usd = 0.0
        self.rollouts_run = 0
        self.eval_seconds: dict[str, float] = {}
        self.flagged: dict[str, str] = {}
        # Imported production traces (--evidence): read once, so a bad file fails before the run.
        from harness_opt.traces_import import read_imported

        self.imported = [t for path in config.evidence for t in read_imported(path)]
        """Candidates the scan flagged (hash -> summary): evaluated, but never made the incumbent."""

    # ------------------------------------------------------------------ evaluation helpers

    async def _eval(
        self,
        version: HarnessVersion,
        split: str,
        *,
        what: str,
        trial_offset: int = 0,
        task_ids: list[str] | None = None,
        llm_cache: bool = True,
        limit: int | None = None,
    ) -> EvalResult:
        cfg = self.config
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
        )
        started = time.monotonic()
        result = await evaluate_async(
            version,
            self.suite,
            eval_cfg,
            ledger=self.ledger,
            run_id=self.run_id,
            record_run=False,
            progress=lambda done, total, _r: self.display.eval_progress(what, done, total),
        )
        # Reused rollouts cost nothing now; only what this call executed counts against the budget.
        self.cost_usd += result.executed_cost_usd
        self.rollouts_run += result.executed
        if self.tracker:
            self.tracker.dollars = self.cost_usd
            self.tracker.rollouts = self.rollouts_run
        self.eval_seconds[f"{version.hash}:{split}"] = time.monotonic() - started
        return result

    # ----------------------------------------------------------------------------- the run

    async def run(self) -> OptimizeResult:
        cfg = self.config
        self.tracker: BudgetTracker | None = None
        seed_version = HarnessVersion.load(cfg.harness)
        self.suite: Suite = load_suite(cfg.suite)
        self.model = cfg.model or seed_version.manifest.model.name
        validate_model(self.model)
        if not self.suite.tasks("train"):
            raise UserError(f"suite {self.suite.name} has no train tasks", fix="the loop learns from train")
        started = time.monotonic()  # the budget clock covers the pre-flight too
        # The run row exists before anything slow happens, so a kill at any moment can be resumed.
        checkpoint = self._start_or_resume(seed_version)
        if not self.resume:
            try:
                await self._preflight()
            except UserError as exc:
                self.ledger.end_run(self.run_id, "refused", {"reason": exc.message})
                raise
        already = checkpoint.get("elapsed_s", 0.0) + (time.monotonic() - started)
        self.tracker = BudgetTracker(cfg.budget, cfg.stop_file, already)
        self.tracker.iterations = checkpoint.get("iteration", 0)
        self.cost_usd = checkpoint.get("cost_usd", 0.0)
        self.rollouts_run = checkpoint.get("rollouts", 0)

        self.display.status(f"baseline {seed_version.label}: evaluating on val")
        base = await self._eval(
            seed_version, "val", what=f"baseline {seed_version.label} · val", limit=cfg.val_limit
        )
        self.display.status("re-running the baseline to measure noise (response cache off)")
        rerun = await self._eval(
            seed_version,
            "val",
            what="baseline rerun · val (noise)",
            trial_offset=cfg.trials,
            llm_cache=False,
            limit=cfg.val_limit,
        )
        base_means = task_means(base.scores_by_task())
        rerun_means = task_means(rerun.scores_by_task())
        # Noise = how far the same version moves when simply re-run: the observed shift, or the
        # half-width of its 95% CI when answers flip both ways and the means happen to agree.
        rerun_test = paired_test(base_means, rerun_means)
        noise = max(abs(rerun_test.delta), (rerun_test.ci_hi - rerun_test.ci_lo) / 2)
        if not self.records:
            self._record(
                CandidateRecord(
                    iteration=0,
                    label=seed_version.label,
                    hash=seed_version.hash,
                    proposer="seed",
                    mechanism="baseline",
                    hypothesis=seed_version.manifest.harness.hypothesis,
                    outcome="baseline",
                    val_score=base.summary.score,
                    reason=f"baseline; rerun noise {noise:.3f}",
                ),
                incumbent=None,
            )

        incumbent = self._incumbent(seed_version)
        inc_result = (
            base
            if incumbent.hash == seed_version.hash
            else await self._eval(
                incumbent, "val", what=f"incumbent {incumbent.label} · val", limit=cfg.val_limit
            )
        )
        self.display.incumbent(incumbent.label, inc_result.summary.score, self.tracker.describe())

        stop_reason = ""
        invalid_streak = 0
        while True:
            reason = self.tracker.exhausted(reserve_s=self._test_reserve(seed_version, incumbent))
            if reason:
                stop_reason = reason
                break
            iteration = self.tracker.iterations + 1
            self.display.status(f"iteration {iteration}: gathering train evidence for {incumbent.label}")
            inp = await self._proposal_input(incumbent, inc_result, iteration)
            self.display.status(f"iteration {iteration}: asking the {cfg.proposer} proposer")
            proposals = await asyncio.to_thread(self.proposer.propose, inp, cfg.parallel)
            if not proposals:
                stop_reason = f"the {cfg.proposer} proposer has no further proposals"
                break
            outcomes: list[tuple[HarnessVersion, EvalResult, CandidateRecord]] = []
            for proposal in proposals:
                self.cost_usd += float(proposal.meta.get("cost_usd", 0.0) or 0.0)
                candidate, record = await self._validate(proposal, incumbent, iteration)
                if candidate is None:
                    self._record(record, incumbent=incumbent.hash)
                    continue
                result = await self._eval(
                    candidate, "val", what=f"candidate {candidate.label} · val", limit=cfg.val_limit
                )
                decision = self.rule.decide(
                    task_means(inc_result.scores_by_task()),
                    task_means(result.scores_by_task()),
                    noise=noise,
                    simpler=_simpler(candidate, result, incumbent, inc_result),
                )
                record.outcome = "accepted" if decision.accepted else "rejected"
                if candidate.hash in self.flagged:  # flagged by the scan: evaluated, never the incumbent
                    record.outcome = "rejected"
                    decision_reason_suffix = f"; never the incumbent: {self.flagged[candidate.hash]}"
                else:
                    decision_reason_suffix = ""
                record.val_score = result.summary.score
                record.delta, record.p_value, record.reason = (
                    decision.delta,
                    decision.p_value,
                    decision.reason + decision_reason_suffix,
                )
                outcomes.append((candidate, result, record))
            accepted = [o for o in outcomes if o[2].outcome == "accepted"]
            best = max(accepted, key=lambda o: o[2].delta or 0.0) if accepted else None
            for _candidate, _result, record in outcomes:
                if best is not None and record is not best[2] and record.outcome == "accepted":
                    record.outcome = "rejected"
                    record.reason += f"; {best[0].label} gained more this iteration"
                self._record(record, incumbent=incumbent.hash)
            if best is not None:
                incumbent, inc_result = best[0], best[1]
            invalid_streak = invalid_streak + 1 if not outcomes else 0
            self.tracker.iterations = iteration
            self._checkpoint(incumbent, noise)
            self.display.incumbent(incumbent.label, inc_result.summary.score, self.tracker.describe())
            if invalid_streak >= cfg.max_invalid_streak:
                stop_reason = f"{invalid_streak} rounds in a row produced no valid candidate"
                break

        return await self._finish(seed_version, base, incumbent, inc_result, noise, stop_reason)

    # -------------------------------------------------------------------------- the pieces

    async def _preflight(self) -> None:
        """Refuse an overnight run whose set-up cannot be trusted (doctor FAIL), unless forced."""
        from harness_opt.trust.doctor import doctor

        cfg = self.config
        self.display.status("doctor: checking splits, scorer, sandbox, model and noise before the run")
        # doctor drives its own event loop (it is also a CLI command), so it runs in a worker thread.
        report = await asyncio.to_thread(
            doctor,
            cfg.suite,
            cfg.harness,
            model=self.model,
            budget=cfg.budget,
            isolation=cfg.isolation,
            ledger=self.ledger,
        )
        if report.failed:
            failed = "; ".join(f"{ln.check}: {ln.detail}" for ln in report.lines if ln.status == "FAIL")
            if not cfg.force:
                raise UserError(
                    f"doctor found problems: {failed}",
                    fix="fix them (see `harness-opt doctor`), or pass --force to run anyway",
                )
            self.display.status(f"doctor FAIL overridden by --force: {failed}")

    def _start_or_resume(self, seed_version: HarnessVersion) -> dict[str, Any]:
        if not self.resume:
            self.ledger.start_run(
                self.run_id,
                "optimize",
                {**self.config.model_dump(mode="json"), "seed_hash": seed_version.hash, "model": self.model},
            )
            return {}
        rows = self.ledger.query(
            "SELECT summary FROM runs WHERE run_id = ? AND kind = 'optimize'", [self.run_id]
        )
        if not rows:
            raise UserError(
                f"no optimize run '{self.run_id}' in the ledger", fix="see `harness-opt runs` for run ids"
            )
        self.ledger.start_run(
            self.run_id,
            "optimize",
            {**self.config.model_dump(mode="json"), "seed_hash": seed_version.hash, "model": self.model},
        )
        for row in self.ledger.query(
            "SELECT detail FROM decisions WHERE run_id = ? ORDER BY iteration, created", [self.run_id]
        ):
            self.records.append(CandidateRecord.model_validate(_json(row["detail"])))
        return _json(rows[0]["summary"]).get("checkpoint", {})

    def _incumbent(self, seed_version: HarnessVersion) -> HarnessVersion:
        accepted = [r for r in self.records if r.outcome == "accepted"]
        if not accepted:
            return seed_version
        return find_version(seed_version, accepted[-1].hash) or seed_version

    def _checkpoint(self, incumbent: HarnessVersion, noise: float) -> None:
        assert self.tracker is not None
        self.ledger.end_run(
            self.run_id,
            "running",
            {
                "checkpoint": {
                    "iteration": self.tracker.iterations,
                    "elapsed_s": self.tracker.elapsed_s,
                    "cost_usd": self.cost_usd,
                    "rollouts": self.rollouts_run,
                    "incumbent": incumbent.hash,
                    "noise": noise,
                }
            },
        )

    def _record(self, record: CandidateRecord, *, incumbent: str | None) -> None:
        key = (record.iteration, record.proposer, record.mechanism, record.hash)
        if any((r.iteration, r.proposer, r.mechanism, r.hash) == key for r in self.records):
            # A resumed run redoes the iteration it was killed in; proposals and evaluations are
            # deterministic (seeded, reused from the ledger), so a decision it already wrote is not
            # written again.
            return
        self.records.append(record)
        self.ledger.add_decision(
            DecisionRow(
                run_id=self.run_id,
                iteration=record.iteration,
                candidate=record.hash or "-",
                incumbent=incumbent,
                delta=record.delta,
                p_value=record.p_value,
                accepted=record.outcome == "accepted",
                reason=record.reason,
                detail=record.model_dump(mode="json"),
            )
        )
        self.display.candidate(record)

    def _test_reserve(self, seed: HarnessVersion, incumbent: HarnessVersion) -> float:
        """Seconds to keep for the sealed test evaluation of baseline and best at the end."""
        if self.config.skip_test:
            return 0.0
        n_val = max(1, len(self.suite.tasks("val")[: self.config.val_limit or None]))
        n_test = len(self.suite.tasks("test")[: self.config.test_limit or None])
        per_task = [self.eval_seconds.get(f"{v.hash}:val", 0.0) / n_val for v in (seed, incumbent)]
        # 1.5x: the machine may be busier at the end than when the val timings were taken.
        return 1.5 * n_test * sum(per_task) + 15.0

    async def _proposal_input(
        self, incumbent: HarnessVersion, inc_result: EvalResult, iteration: int
    ) -> ProposalInput:
        cfg = self.config
        train = self.suite.tasks("train")
        rng = random.Random(cfg.seed * 100_003 + iteration)
        sample = rng.sample(train, min(cfg.train_sample, len(train)))
        result = await self._eval(
            incumbent, "train", what=f"train evidence · {incumbent.label}", task_ids=[t.id for t in sample]
        )
        failing: list[Trace] = []
        passing: list[Trace] = []
        for rollout in result.rollouts:
            if rollout.trace_ref is None:
                continue
            bucket = passing if rollout.passed else failing
            if (bucket is passing and len(passing) < 5) or bucket is failing:
                bucket.append(read_trace(rollout.trace_ref))
        files = {
            p: b.decode("utf-8", "replace")
            for p, b in incumbent.files().items()
            if not p.startswith("data/") and len(b) < 200_000
        }
        files["harness.toml"] = (incumbent.path / "harness.toml").read_text()
        history = history_of(self.records)
        return ProposalInput(
            agent=incumbent.name,
            version_label=incumbent.label,
            files=files,
            editable=self.domain.editable,
            suite=self.suite.name,
            suite_description=getattr(self.suite, "description", ""),
            failing_traces=failing,
            passing_traces=passing,
            train_tasks=train,
            val_score=inc_result.summary.score,
            history=history,
            imported_traces=self.imported,
            seed=cfg.seed + iteration,
        )

    async def _validate(
        self, proposal: Proposal, incumbent: HarnessVersion, iteration: int
    ) -> tuple[HarnessVersion | None, CandidateRecord]:
        """A candidate must load, render, compile and run one train task before it costs a val eval."""
        candidate, record = materialize(
            proposal,
            incumbent,
            iteration,
            outside=self.domain.outside_editable(proposal.edits),
            editable=self.domain.editable,
            ledger=self.ledger,
        )
        if candidate is None:
            return None, record
        scan = scan_and_record(
            candidate,
            incumbent,
            self.suite,
            editable=self.domain.editable,
            ledger=self.ledger,
            run_id=self.run_id,
        )
        if scan.rejected:
            record.reason = f"rejected by the {scan.summary()}"
            return None, record
        if scan.blocks_incumbent:
            self.flagged[candidate.hash] = scan.summary()
        probe = self.suite.tasks("train")[:1]
        smoke = await self._eval(
            candidate, "train", what=f"validating {candidate.label}", task_ids=[t.id for t in probe]
        )
        errors = [r for r in smoke.rollouts if r.error in _INVALID_ERRORS]
        if errors:
            record.reason = (
                f"fails on a train task: {errors[0].error}: {(errors[0].error_detail or '')[:300]}"
            )
            return None, record
        return candidate, record

    async def _finish(
        self,
        seed: HarnessVersion,
        base: EvalResult,
        best: HarnessVersion,
        best_val: EvalResult,
        noise: float,
        stop_reason: str,
    ) -> OptimizeResult:
        cfg = self.config
        base_test = best_test = None
        test_p = None
        if not cfg.skip_test and "test" in self.suite.split_names():
            self.display.status("sealed test split: evaluating baseline and best once")
            base_res = await self._eval(
                seed, "test", what=f"baseline {seed.label} · test", limit=cfg.test_limit
            )
            best_res = (
                base_res
                if best.hash == seed.hash
                else await self._eval(best, "test", what=f"best {best.label} · test", limit=cfg.test_limit)
            )
            base_test, best_test = _figures(base_res), _figures(best_res)
            if best.hash != seed.hash:
                test_p = paired_test(
                    task_means(base_res.scores_by_task()), task_means(best_res.scores_by_task())
                ).p_value
        assert self.tracker is not None
        result = OptimizeResult(
            run_id=self.run_id,
            status="stopped" if "stop file" in stop_reason else "finished",
            stop_reason=stop_reason,
            model=self.model,
            baseline_label=seed.label,
            baseline_hash=seed.hash,
            best_label=best.label,
            best_hash=best.hash,
            best_path=str(best.path),
            baseline_val=_figures(base),
            best_val=_figures(best_val),
            baseline_test=base_test,
            best_test=best_test,
            test_p_value=test_p,
            noise=noise,
            candidates=self.records,
            cost_usd=self.cost_usd,
            rollouts_run=self.rollouts_run,
            elapsed_s=self.tracker.elapsed_s,
        )
        try:
            from harness_opt.report.progress_plot import plot_progress

            result.plot = str(plot_progress(result, default_plot_path(self.run_id, home_dir())))
        except ImportError:  # matplotlib missing: the summary still stands
            result.plot = None
        self.ledger.end_run(
            self.run_id,
            result.status,
            {
                "result": result.model_dump(mode="json", exclude={"candidates"}),
                "checkpoint": {
                    "iteration": self.tracker.iterations,
                    "elapsed_s": self.tracker.elapsed_s,
                    "cost_usd": self.cost_usd,
                    "rollouts": self.rollouts_run,
                    "incumbent": best.hash,
                    "noise": noise,
                },
            },
        )
        return result


def _json(value: Any) -> dict[str, Any]:
    import json

    if isinstance(value, dict):
        return value
    return json.loads(value) if value else {}


async def optimize_async(
    config: OptimizeConfig,
    *,
    ledger: Ledger | None = None,
    display: OptimizeDisplay | None = None,
    resume: str | None = None,
    proposer: Proposer | None = None,
    run_id: str | None = None,
) -> OptimizeResult:
    # The suite's domain builds the run (agent-harness: the Optimizer above; training: its own loop).
    domain = domain_for_suite(config.suite)
    runner = domain.optimizer(
        config, ledger=ledger, display=display, resume=resume, proposer=proposer, run_id=run_id
    )
    result: OptimizeResult = await runner.run()
    return result


def optimize(
    config: OptimizeConfig,
    *,
    ledger: Ledger | None = None,
    display: OptimizeDisplay | None = None,
    resume: str | None = None,
    proposer: Proposer | None = None,
    run_id: str | None = None,
) -> OptimizeResult:
    """Run the overnight loop (blocking). From a notebook: `harness_opt.optimize(OptimizeConfig(...))`."""
    return asyncio.run(
        optimize_async(
            config, ledger=ledger, display=display, resume=resume, proposer=proposer, run_id=run_id
        )
    )
