"""The optimize loop, the only one: propose from evidence, measure, keep only real gains, for every domain.

`Optimizer.run` is five named steps over one `RunState`: open the run (or read it back), measure the
baseline and its noise, iterate until the budget says stop, then finish (the domain's end step and
the result). Every rollout, run and decision is in the ledger as it happens; the state is written by
one checkpoint after every iteration, so `--resume` continues a killed run: finished rollouts are
reused (never re-run, never duplicated), an interrupted iteration is redone from the same incumbent
with the same proposals (proposers are seeded; identical candidates map to the same version by
content hash), and the budget clock continues where it stopped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypedDict

from typing_extensions import Unpack

from harness_opt.errors import UserError
from harness_opt.evaluate.evaluator import new_run_id
from harness_opt.evaluate.summary import Degraded
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import home_dir
from harness_opt.ledger import DecisionRow, Ledger
from harness_opt.ledger.writer import run_guard, writer_lock
from harness_opt.propose.base import FailedProposal, MetaSpend, Proposal, Proposer
from harness_opt.search.acceptance import Acceptance, Decision, acceptance_rule, refuse_degraded, simpler
from harness_opt.search.budget import BudgetTracker
from harness_opt.search.candidates import find_version, materialize
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.domain import Domain, RunContext, domain_for_suite
from harness_opt.search.measurement import Measurement
from harness_opt.search.proposers import make_proposer
from harness_opt.search.records import (
    CandidateRecord,
    OptimizeDisplay,
    OptimizeResult,
    QuietDisplay,
    SealedTest,
    StopReason,
)
from harness_opt.search.state import RunState, checkpoint, read_back


@dataclass
class _Candidate:
    """A proposal made into a version (None when invalid: the record says why)."""

    version: HarnessVersion | None
    record: CandidateRecord
    units: int | None = None
    """Measure it on this many units (val tasks) instead of the run's usual number: a re-test."""


@dataclass
class _Judged:
    """One candidate of an iteration, measured and decided (not yet written)."""

    version: HarnessVersion
    record: CandidateRecord
    measurement: Measurement


class Optimizer:
    """One optimize run. Use `optimize()` / `optimize_async()` unless you need the pieces."""

    def __init__(self, config: OptimizeConfig, **options: Unpack[RunOptions]) -> None:
        self.config = config
        self.domain: Domain = options.get("domain") or domain_for_suite(config.suite)
        self.ledger = options.get("ledger") or Ledger()
        self.display = options.get("display") or QuietDisplay()
        self.resume = options.get("resume")
        self.run_id = self.resume or options.get("run_id") or new_run_id("opt")
        self.rule: Acceptance = acceptance_rule(
            config.acceptance or self.domain.acceptance, config.alpha, self.domain.direction
        )
        self._proposer = options.get("proposer")

    # ----------------------------------------------------------------------------- the run

    async def run(self) -> OptimizeResult:
        seed = HarnessVersion.load(self.config.harness)
        model = self.domain.start(seed, self.config)
        proposer = self._proposer or make_proposer(self.config, self.domain)
        run = self._open(seed, model)
        if getattr(proposer, "reads_history", False):
            run.history_dir = home_dir() / "runs" / self.run_id / "history"
        tracker = BudgetTracker(self.config.budget, run.state, self.config.stop_file)
        base, noise = await self._baseline(seed, run)
        incumbent, inc_m = await self._incumbent(seed, base, run)
        self.display.incumbent(incumbent.label, inc_m.mean, tracker.describe())
        stop = tracker.exhausted(reserve_s=self.domain.reserve_s(seed, incumbent, run))
        while stop is None:
            run.iteration = run.state.iteration + 1
            incumbent, inc_m, ended = await self._iteration(run, proposer, incumbent, inc_m, noise)
            run.state.iteration, run.state.elapsed_s = run.iteration, tracker.elapsed_s
            run.state.incumbent, run.state.measured = incumbent.hash, inc_m
            checkpoint(self.ledger, self.run_id, run.state)
            self.display.incumbent(incumbent.label, inc_m.mean, tracker.describe())
            stop = ended or tracker.exhausted(reserve_s=self.domain.reserve_s(seed, incumbent, run))
        run.state.elapsed_s = tracker.elapsed_s
        return await self._finish(run, seed, base, incumbent, inc_m, stop, model)

    # -------------------------------------------------------------------------- the steps

    def _open(self, seed: HarnessVersion, model: str) -> RunContext:
        """The run row exists before anything slow happens, so a kill at any moment can be resumed."""
        state, records = RunState(), list[CandidateRecord]()
        if self.resume:
            state, records = read_back(self.ledger, self.run_id)
        config = {
            **self.config.model_dump(mode="json"),
            "seed_hash": seed.hash,
            "model": model,
            "domain": self.domain.name,
        }
        self.ledger.start_run(self.run_id, "optimize", config)
        return RunContext(
            config=self.config,
            run_id=self.run_id,
            ledger=self.ledger,
            display=self.display,
            state=state,
            records=records,
            resumed=bool(self.resume),
        )

    async def _baseline(self, seed: HarnessVersion, run: RunContext) -> tuple[Measurement, float]:
        try:
            repeats = await self.domain.baseline(seed, run)
        except UserError as exc:
            if not run.resumed:  # refused before it began (doctor FAIL, a seed that does not run)
                self.ledger.end_run(self.run_id, "refused", {"reason": exc.message})
            raise
        degraded = next((m.degraded for m in repeats if m.degraded), None)
        if degraded is not None:  # nothing can be judged against a baseline measured through an outage
            why = f"the baseline's evaluation is degraded: {degraded}"
            self.ledger.close_running(self.run_id, "degraded", why)
            raise Degraded(
                f"{why}; resume when the model is reachable: harness-opt optimize ... --resume {self.run_id}"
            )
        base, noise = self.rule.reference(repeats)
        run.state.noise = noise
        record = CandidateRecord(
            iteration=0,
            candidate=seed.label,
            hash=seed.hash,
            proposer="seed",
            mechanism="baseline",
            hypothesis=seed.manifest.harness.hypothesis,
            outcome="baseline",
            val_score=base.mean,
            reason=f"baseline {self.domain.metric} {base.mean:.4g} over {len(repeats)} measurements; "
            f"noise {noise:.4g}",
        )
        self._record(run, record, incumbent=None, measurement=base)
        return base, noise

    async def _incumbent(
        self, seed: HarnessVersion, base: Measurement, run: RunContext
    ) -> tuple[HarnessVersion, Measurement]:
        """The seed, or on resume the incumbent and its measurement as the last checkpoint wrote them."""
        wanted = run.state.incumbent
        if wanted is None or wanted == seed.hash:
            return seed, base
        measured = run.state.measured
        incumbent = find_version(seed, wanted)
        if incumbent is None:
            raise UserError(
                f"the incumbent {wanted[:12]} of run {self.run_id} is no longer on disk",
                where=str(seed.path.parent),
                fix="restore its version directory, or start a new run",
            )
        if measured is None or measured.version_hash != wanted:  # a checkpoint without it: measure again
            [measured] = await self.domain.evaluate([incumbent], seed, run)
        return incumbent, measured

    async def _iteration(
        self,
        run: RunContext,
        proposer: Proposer,
        incumbent: HarnessVersion,
        inc_m: Measurement,
        noise: float,
    ) -> tuple[HarnessVersion, Measurement, StopReason | None]:
        """Evidence → proposals → candidates → measurements → decisions; the best accepted one wins."""
        cfg, it = self.config, run.iteration
        self.display.status(f"iteration {it}: gathering evidence for {incumbent.label}")
        inp = await self.domain.evidence(incumbent, inc_m, run)
        name = str(getattr(proposer, "name", cfg.proposer))
        self.display.status(f"iteration {it}: asking the {name} proposer")
        proposals = await asyncio.to_thread(proposer.propose, inp, cfg.parallel)
        failures: list[FailedProposal] = list(getattr(proposer, "failures", None) or [])
        if not proposals and not failures:
            if getattr(proposer, "exhaustible", True):
                text = f"the {name} proposer has no further proposals"
                return incumbent, inc_m, StopReason(kind="no_proposals", text=text)
            failures = [FailedProposal(reason=f"the {name} proposer returned no candidate")]
        candidates = self._candidates(run, proposals, incumbent)
        candidates += self._failed(run, name, failures)
        judged: list[_Judged] = []
        for units in dict.fromkeys(c.units for c in candidates if c.version is not None):
            group = [c for c in candidates if c.version is not None and c.units == units]
            reference = inc_m if units is None else await self._remeasure(incumbent, run, units)
            judged += await self._judge(run, group, incumbent, reference, noise, units)
        winner = self._settle(judged)
        measured = {id(j.record): j.measurement for j in judged}
        for c in candidates:  # in the order proposed
            self._record(run, c.record, incumbent=incumbent.hash, measurement=measured.get(id(c.record)))
        if winner is not None:
            incumbent, inc_m = winner.version, winner.measurement
        streak = _invalid_streak(run.records)
        if streak >= cfg.max_invalid_streak:
            text = f"{streak} rounds in a row produced no valid candidate"
            return incumbent, inc_m, StopReason(kind="invalid_streak", text=text)
        return incumbent, inc_m, None

    def _candidates(
        self, run: RunContext, proposals: list[Proposal], incumbent: HarnessVersion
    ) -> list[_Candidate]:
        """A version per proposal, or None with the record saying why it is invalid. A proposal with
        `meta["retest"]` asks to be measured on `meta["val_limit"]` units (a near miss, re-tested)."""
        out = []
        for proposal in proposals:
            spend = proposal.spend
            if spend is None and proposal.meta.get("cost_usd"):  # a third-party proposer's own figure
                spend = MetaSpend(cost_usd=float(proposal.meta["cost_usd"]))
            if spend is not None:
                run.charge_meta(spend)
            version, record = materialize(
                proposal, incumbent, run.iteration, editable=self.domain.editable, ledger=self.ledger
            )
            record.spend = spend
            units = proposal.meta.get("val_limit") if proposal.meta.get("retest") else None
            out.append(_Candidate(version, record, int(units) if units else None))
        return out

    def _failed(self, run: RunContext, proposer: str, failures: list[FailedProposal]) -> list[_Candidate]:
        """An attempt that produced no candidate is an invalid decision with its spend: the ledger
        shows what it cost, the proposer's history shows why, and a streak of them ends the run."""
        out = []
        for i, failure in enumerate(failures, 1):
            run.charge_meta(failure.spend)
            record = CandidateRecord(
                iteration=run.iteration,
                candidate="-",
                proposer=proposer,
                mechanism=f"no proposal (attempt {i})",
                hypothesis="",
                outcome="invalid",
                reason=failure.reason,
                spend=failure.spend,
                proposed=False,
            )
            out.append(_Candidate(None, record))
        return out

    async def _remeasure(self, incumbent: HarnessVersion, run: RunContext, units: int) -> Measurement:
        """The incumbent on `units` units, so a re-tested candidate is compared on the same ones."""
        [measured] = await self.domain.evaluate([incumbent], incumbent, run, units=units)
        return measured

    async def _judge(
        self,
        run: RunContext,
        candidates: list[_Candidate],
        incumbent: HarnessVersion,
        inc_m: Measurement,
        noise: float,
        units: int | None,
    ) -> list[_Judged]:
        """Measure the candidates (one more time where the rule asks) and decide each."""
        versions = [c.version for c in candidates if c.version is not None]
        measured = await self.domain.evaluate(versions, incumbent, run, units=units)
        decide = {
            v.hash: self._decide(v, m, incumbent, inc_m, noise)
            for v, m in zip(versions, measured, strict=True)
        }
        again = [i for i, v in enumerate(versions) if (d := decide[v.hash]) is not None and d.more]
        if again:
            again_versions = [versions[i] for i in again]
            more = await self.domain.evaluate(again_versions, incumbent, run, attempt=1, units=units)
            for i, extra in zip(again, more, strict=True):
                measured[i] = measured[i].combined(extra)
                decide[versions[i].hash] = self._decide(versions[i], measured[i], incumbent, inc_m, noise)
        judged = []
        for version, c, m in zip(versions, candidates, measured, strict=True):
            _apply(c.record, m, decide[version.hash])
            judged.append(_Judged(version, c.record, m))
        return judged

    def _decide(
        self, cand: HarnessVersion, m: Measurement, inc: HarnessVersion, inc_m: Measurement, noise: float
    ) -> Decision | None:
        if not m.usable:
            return None
        refused = refuse_degraded(inc_m, m)
        if refused is not None:
            return refused
        return self.rule.decide(inc_m, m, noise=noise, simpler=simpler(cand, m, inc, inc_m))

    def _degraded(self) -> str | None:
        return _run_degraded(self.ledger, self.run_id, self.config.max_infra_failures)

    def _settle(self, judged: list[_Judged]) -> _Judged | None:
        """At most one candidate per iteration replaces the incumbent: the one that gained most."""
        accepted = [j for j in judged if j.record.outcome == "accepted"]
        if not accepted:
            return None
        best = max(accepted, key=lambda j: j.record.delta or 0.0)
        for j in accepted:
            if j is not best:
                j.record.outcome = "rejected"
                j.record.reason += f"; {best.record.label} gained more this iteration"
        return best

    def _record(
        self,
        run: RunContext,
        record: CandidateRecord,
        *,
        incumbent: str | None,
        measurement: Measurement | None,
    ) -> None:
        """Write one decision, once: a resumed run redoes the iteration it was killed in, and its
        proposals and measurements are the same (seeded, reused), so a decision already written is
        not written again."""
        if any(r.key() == record.key() for r in run.records):
            return
        self.domain.decided(record, measurement, run)
        run.records.append(record)
        spend = record.spend or MetaSpend()
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
                meta_model=spend.model,
                meta_calls=spend.calls,
                meta_tokens_in=spend.tokens_in,
                meta_tokens_out=spend.tokens_out,
                meta_cost_usd=spend.cost_usd,
                meta_seconds=spend.seconds,
            )
        )
        self.display.candidate(record)

    async def _finish(
        self,
        run: RunContext,
        seed: HarnessVersion,
        base: Measurement,
        best: HarnessVersion,
        best_m: Measurement,
        stop: StopReason,
        model: str,
    ) -> OptimizeResult:
        sealed: SealedTest | None = await self.domain.finish(seed, best, run)
        degraded = self._degraded()
        result = OptimizeResult(
            run_id=self.run_id,
            status="degraded" if degraded else "stopped" if stop.kind == "stop_file" else "finished",
            degraded=degraded,
            stop_reason=stop.text,
            stop=stop.kind,
            model=model,
            metric=self.domain.metric,
            direction=self.domain.direction,
            baseline_label=seed.label,
            baseline_hash=seed.hash,
            best_label=best.label,
            best_hash=best.hash,
            best_path=str(best.path),
            baseline_val=base.figures(),
            best_val=best_m.figures(),
            baseline_test=sealed.baseline if sealed else None,
            best_test=sealed.best if sealed else None,
            test_p_value=sealed.p_value if sealed else None,
            noise=run.state.noise or 0.0,
            candidates=run.records,
            cost_usd=run.state.cost_usd,
            meta=run.state.meta,
            rollouts_run=run.state.rollouts,
            elapsed_s=run.state.elapsed_s,
        )
        run.state.incumbent = best.hash
        checkpoint(self.ledger, self.run_id, run.state, status=result.status, result=result)
        return result


def _run_degraded(ledger: Ledger, run_id: str, threshold: float) -> str | None:
    """Why the run as a whole is degraded (its rollouts lost to infrastructure failures above
    `threshold`), or None."""
    keys, infra = ledger.infra_failures(run_id)
    lost = sum(infra.values())
    if not keys or lost / keys <= threshold:
        return None
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(infra.items()))
    return f"{lost} of {keys} rollouts ({lost / keys:.1%}) failed for infrastructure reasons ({kinds})"


def _apply(record: CandidateRecord, m: Measurement, decision: Decision | None) -> None:
    """A measurement and its decision, written into the candidate's record."""
    if m.invalid is not None:
        record.outcome, record.reason = "invalid", m.invalid
        return
    record.val_score = m.mean if m.values else None
    if decision is None:
        record.outcome, record.reason = "rejected", m.failure or "no measurement"
        return
    record.delta, record.p_value = decision.delta, decision.p_value
    record.outcome = "accepted" if decision.accepted else "rejected"
    record.reason = decision.reason
    if decision.more:
        record.reason += " (still borderline after another measurement)"
    if m.flagged is not None:  # flagged by the scan: evaluated, never the incumbent
        record.outcome = "rejected"
        record.reason += f"; never the incumbent: {m.flagged}"


def _invalid_streak(records: list[CandidateRecord]) -> int:
    """Iterations in a row, counting back from the last, whose candidates were all invalid."""
    by_iteration: dict[int, list[CandidateRecord]] = {}
    for r in records:
        if r.outcome != "baseline":
            by_iteration.setdefault(r.iteration, []).append(r)
    streak = 0
    for iteration in sorted(by_iteration, reverse=True):
        if any(r.outcome != "invalid" for r in by_iteration[iteration]):
            break
        streak += 1
    return streak


class RunOptions(TypedDict, total=False):
    """What an optimize run takes beside its config (all optional)."""

    domain: Domain | None
    """Default: the one the suite's suite.toml names."""
    ledger: Ledger | None
    display: OptimizeDisplay | None
    resume: str | None
    """Continue this run (its id) from its last checkpoint."""
    proposer: Proposer | None
    """Default: the one `config.proposer` names."""
    run_id: str | None


async def optimize_async(config: OptimizeConfig, **options: Unpack[RunOptions]) -> OptimizeResult:
    """The overnight loop, awaited: with the ledger's writer lock held (one writer per ledger), and
    the run row closed as interrupted or failed by whatever ends it early."""
    optimizer = Optimizer(config, **options)
    with (
        writer_lock(optimizer.ledger.path, f"optimize {optimizer.run_id}"),
        run_guard(optimizer.ledger, optimizer.run_id, "optimize"),
    ):
        return await optimizer.run()


def optimize(config: OptimizeConfig, **options: Unpack[RunOptions]) -> OptimizeResult:
    """Run the overnight loop (blocking). From a notebook: `harness_opt.optimize(OptimizeConfig(...))`."""
    return asyncio.run(optimize_async(config, **options))
