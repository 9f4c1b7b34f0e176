"""The optimize loop of the training domain: autoresearch's keep/discard loop, noise-aware.

Baseline: the seed's train.py runs `baseline_runs` times with different seeds (one wave); the spread
of those runs is the noise: `noise = max(range, 2 * sample std)`. A candidate runs once (seed 0 of
the wave) and its gain is `incumbent_mean - value` (lower is better). It is kept only when the gain
exceeds the noise, whatever its sign otherwise. A borderline gain (between 1x and 2x the noise) is
confirmed by a second run with another seed and kept only if the mean of the two still beats the
incumbent by more than the noise: one extra run where a lucky seed is plausible, none where the gain
is clear or absent (CPU time in CI is the scarce thing). Each wave proposes `parallel` candidates and
runs them at once on the executor (one per GPU); the best kept one becomes the incumbent.

Every run is an `experiments` row (keep / discard / crash) and every candidate a `decisions` row,
as in the agent-harness loop; versions go to `versions`.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from harness_opt.domains.executors import Executor, make_executor
from harness_opt.domains.training_loop import ExperimentResult, TrainingDomain, TrainingSuite
from harness_opt.errors import UserError
from harness_opt.evaluate.evaluator import new_run_id
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import DecisionRow, Ledger, VersionRow
from harness_opt.ledger.rows import ExperimentRow
from harness_opt.propose.base import Proposal, ProposalInput, Proposer
from harness_opt.search.budget import BudgetTracker
from harness_opt.search.candidates import history_of, materialize
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.records import (
    CandidateRecord,
    OptimizeDisplay,
    OptimizeResult,
    QuietDisplay,
    SplitFigures,
)


def scalar_noise(values: list[float]) -> float:
    """How far the same train.py moves across seeds: max(range, 2 x sample std)."""
    if len(values) < 2:
        return 0.0
    return max(max(values) - min(values), 2 * statistics.stdev(values))


def make_training_proposer(config: OptimizeConfig) -> Proposer:
    if config.proposer == "operators":
        from harness_opt.propose.operators.training import TrainingOperatorsProposer

        return TrainingOperatorsProposer()
    from harness_opt.search.loop import make_proposer  # llm / agent: the same proposers as agents

    return make_proposer(config)


class TrainingOptimizer:
    def __init__(
        self,
        config: OptimizeConfig,
        *,
        domain: TrainingDomain,
        ledger: Ledger | None = None,
        display: OptimizeDisplay | None = None,
        resume: str | None = None,
        proposer: Proposer | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> None:
        if resume:
            raise UserError(
                "--resume is not supported for training runs yet",
                fix="start a new run; kept versions are already in harnesses/ and the ledger",
            )
        self.config = config
        self.domain = domain
        self.ledger = ledger or Ledger()
        self.display = display or QuietDisplay()
        self.run_id = run_id or new_run_id("opt")
        self.proposer = proposer or make_training_proposer(config)
        self._executor = executor
        self.records: list[CandidateRecord] = []
        self.runs = 0

    # ------------------------------------------------------------------------------ helpers

    def _wave(self, items: list[tuple[HarnessVersion, int]], what: str) -> list[ExperimentResult]:
        specs = [self.domain.spec(v, self.suite, seed) for v, seed in items]
        self.display.eval_progress(what, 0, len(specs))
        results = self.executor.run(specs, self.metric)
        self.display.eval_progress(what, len(specs), len(specs))
        self.runs += len(results)
        return results

    def _experiment(self, result: ExperimentResult, status: str, description: str) -> None:
        mb = result.values.get("peak_vram_mb")
        self.ledger.add_experiment(
            ExperimentRow(
                run_id=self.run_id,
                version_hash=result.version_hash,
                metric=self.metric,
                value=result.metric(self.metric),
                memory_gb=None if mb is None else mb / 1024,
                status=status,  # type: ignore[arg-type]
                description=description,
            )
        )

    def _record(self, record: CandidateRecord, incumbent: str | None) -> None:
        self.records.append(record)
        self.ledger.add_decision(
            DecisionRow(
                run_id=self.run_id,
                iteration=record.iteration,
                candidate=record.hash or "-",
                incumbent=incumbent,
                delta=record.delta,
                p_value=None,
                accepted=record.outcome == "accepted",
                reason=record.reason,
                detail=record.model_dump(mode="json"),
            )
        )
        self.display.candidate(record)

    def _input(self, incumbent: HarnessVersion, value: float, iteration: int) -> ProposalInput:
        files = {p: b.decode("utf-8", "replace") for p, b in incumbent.files().items()}
        files["prepare.py"] = self.suite.prepare_path.read_text(encoding="utf-8")  # to read, not edit
        history = history_of(self.records)
        return ProposalInput(
            agent=incumbent.name,
            version_label=incumbent.label,
            files=files,
            editable=self.domain.editable,
            suite=self.suite.name,
            suite_description=(
                f"{self.suite.description} Metric {self.metric}, lower is better; each run trains for a "
                "fixed time budget set by prepare.py, which is frozen. Edit train.py only."
            ),
            failing_traces=[],
            train_tasks=[],
            val_score=value,
            history=history,
            seed=self.config.seed + iteration,
        )

    def _candidate(
        self, proposal: Proposal, incumbent: HarnessVersion, iteration: int
    ) -> tuple[HarnessVersion | None, CandidateRecord]:
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
        return candidate, record

    # ------------------------------------------------------------------------------ the run

    async def run(self) -> OptimizeResult:
        return await asyncio.to_thread(self._run)

    def _run(self) -> OptimizeResult:
        cfg = self.config
        self.suite: TrainingSuite = self.domain.load_suite(cfg.suite)
        self.metric = self.suite.settings.metric
        self.executor = self._executor or make_executor(
            cfg.executor, parallel=cfg.parallel, address=cfg.address
        )
        self.domain.gpu = self.executor.has_gpu
        seed = HarnessVersion.load(cfg.harness)
        self.ledger.add_version(VersionRow.from_version(seed))
        self.ledger.start_run(
            self.run_id,
            "optimize",
            {
                **cfg.model_dump(mode="json"),
                "seed_hash": seed.hash,
                "model": "train.py",
                "domain": "training",
            },
        )
        tracker = BudgetTracker(cfg.budget, cfg.stop_file)

        n_base = self.suite.settings.baseline_runs
        self.display.status(f"baseline {seed.label}: {n_base} runs with different seeds (noise)")
        base_runs = self._wave([(seed, cfg.seed + i) for i in range(n_base)], f"baseline {seed.label}")
        for r in base_runs:
            self._experiment(r, "keep" if r.ok else "crash", f"baseline seed {r.seed}")
        bad = [r for r in base_runs if not r.ok]
        if bad:
            raise UserError(
                f"the seed version does not train: {bad[0].status}: {bad[0].reason}",
                where=str(seed.path / "train.py"),
                fix=f"run it by hand to see why; log tail:\n{bad[0].log_tail[-600:]}",
            )
        base_values = [r.values[self.metric] for r in base_runs]
        noise = scalar_noise(base_values)
        base_mean = statistics.fmean(base_values)
        wave_s = max(r.wall_s for r in base_runs)
        self._record(
            CandidateRecord(
                iteration=0,
                label=seed.label,
                hash=seed.hash,
                proposer="seed",
                mechanism="baseline",
                hypothesis=seed.manifest.harness.hypothesis,
                outcome="baseline",
                val_score=base_mean,
                reason=f"baseline {self.metric} {base_mean:.4f} over {n_base} seeds; noise {noise:.4f}",
            ),
            None,
        )
        incumbent, inc_values = seed, base_values
        self.display.incumbent(incumbent.label, base_mean, tracker.describe())
        stop_reason, invalid_streak = "", 0
        while True:
            stop_reason = tracker.exhausted(reserve_s=wave_s) or ""
            if stop_reason:
                break
            iteration = tracker.iterations + 1
            inc_mean = statistics.fmean(inc_values)
            proposals = self.proposer.propose(self._input(incumbent, inc_mean, iteration), cfg.parallel)
            if not proposals:
                stop_reason = f"the {cfg.proposer} proposer has no further proposals"
                break
            candidates: list[tuple[HarnessVersion, CandidateRecord]] = []
            for proposal in proposals:
                candidate, record = self._candidate(proposal, incumbent, iteration)
                if candidate is None:
                    self._record(record, incumbent.hash)
                else:
                    candidates.append((candidate, record))
            outcomes, runs_of = self._judge(candidates, incumbent, inc_mean, noise)
            kept = [o for o in outcomes if o[1].outcome == "accepted"]
            best = max(kept, key=lambda o: o[1].delta or 0.0) if kept else None
            for candidate, record, _values in outcomes:
                if best is not None and record is not best[1] and record.outcome == "accepted":
                    record.outcome = "rejected"
                    record.reason += f"; {best[1].label} gained more this wave"
                for result in runs_of[candidate.hash]:
                    status = "keep" if record.outcome == "accepted" else ("discard" if result.ok else "crash")
                    self._experiment(result, status, f"{record.mechanism}: {record.reason}")
                self._record(record, incumbent.hash)
            if best is not None:
                incumbent, inc_values = best[0], best[2]
            invalid_streak = invalid_streak + 1 if not candidates else 0
            tracker.iterations = iteration
            self.display.incumbent(incumbent.label, statistics.fmean(inc_values), tracker.describe())
            if invalid_streak >= cfg.max_invalid_streak:
                stop_reason = f"{invalid_streak} rounds in a row produced no valid candidate"
                break
        return self._finish(seed, base_values, incumbent, inc_values, noise, stop_reason, tracker)

    def _judge(
        self,
        candidates: list[tuple[HarnessVersion, CandidateRecord]],
        incumbent: HarnessVersion,
        inc_mean: float,
        noise: float,
    ) -> tuple[list[tuple[HarnessVersion, CandidateRecord, list[float]]], dict[str, list[ExperimentResult]]]:
        """Run the wave, confirm borderline gains with a second seed, decide keep / discard."""
        seed0 = self.config.seed
        first = self._wave([(c, seed0) for c, _ in candidates], f"wave of {len(candidates)} candidates")
        runs_of: dict[str, list[ExperimentResult]] = {
            c.hash: [r] for (c, _), r in zip(candidates, first, strict=True)
        }
        borderline = [
            c
            for (c, _), r in zip(candidates, first, strict=True)
            if r.ok and noise < inc_mean - r.values[self.metric] <= 2 * noise
        ]
        if borderline:
            again = self._wave([(c, seed0 + 1) for c in borderline], "confirming borderline gains")
            for c, r in zip(borderline, again, strict=True):
                runs_of[c.hash].append(r)
        out: list[tuple[HarnessVersion, CandidateRecord, list[float]]] = []
        for candidate, record in candidates:
            runs = runs_of[candidate.hash]
            crashed = [r for r in runs if not r.ok]
            if crashed:
                record.outcome = "rejected"
                record.reason = f"{crashed[0].status}: {crashed[0].reason}"
                out.append((candidate, record, []))
                continue
            values = [r.values[self.metric] for r in runs]
            mean = statistics.fmean(values)
            gain = inc_mean - mean
            record.val_score, record.delta = mean, gain
            runs_note = f" over {len(values)} seeds" if len(values) > 1 else ""
            if gain > noise:
                record.outcome = "accepted"
                record.reason = f"{self.metric} {mean:.4f}{runs_note}: gain {gain:+.4f} > noise {noise:.4f}"
            else:
                record.outcome = "rejected"
                why = "no gain" if gain <= 0 else "gain within the noise"
                record.reason = f"{self.metric} {mean:.4f}{runs_note}: {why} ({gain:+.4f}, noise {noise:.4f})"
            out.append((candidate, record, values))
        return out, runs_of

    def _finish(
        self,
        seed: HarnessVersion,
        base_values: list[float],
        best: HarnessVersion,
        best_values: list[float],
        noise: float,
        stop_reason: str,
        tracker: BudgetTracker,
    ) -> OptimizeResult:
        def figures(values: list[float]) -> SplitFigures:
            return SplitFigures(
                score=statistics.fmean(values), ci=(min(values), max(values)), n_tasks=len(values)
            )

        result = OptimizeResult(
            run_id=self.run_id,
            status="stopped" if "stop file" in stop_reason else "finished",
            stop_reason=stop_reason,
            model="train.py",
            baseline_label=seed.label,
            baseline_hash=seed.hash,
            best_label=best.label,
            best_hash=best.hash,
            best_path=str(best.path),
            baseline_val=figures(base_values),
            best_val=figures(best_values),
            noise=noise,
            candidates=self.records,
            rollouts_run=self.runs,
            elapsed_s=tracker.elapsed_s,
        )
        summary: dict[str, Any] = {"result": result.model_dump(mode="json", exclude={"candidates"})}
        self.ledger.end_run(self.run_id, result.status, summary)
        return result
