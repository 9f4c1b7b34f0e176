"""The training domain: autoresearch's keep/discard loop as a Domain of the one optimize loop.

Baseline: the seed's train.py runs `baseline_runs` times with different seeds, in one wave; the
acceptance rule ("scalar", lower is better) takes their mean as the reference and their spread as
the noise. A candidate runs once (the run's seed); a borderline gain earns it one more run with the
next seed. Each iteration's candidates run as one wave on the executor (one per GPU, or on Ray).
Every run is a row of the ledger's `experiments` table (keep / discard / crash), written when its
candidate is decided; finished runs are stored by content, so a resumed run makes none twice.

train.py is untrusted code: every run is sandboxed (`training_box`), under the same rule as harness
code (`runtime.sandbox.resolve_isolation`): bubblewrap, or a refusal before the run row exists, unless
the user named `--isolation unshare|none`. The mode used is stored on the run (`runs.isolation`).
"""

from __future__ import annotations

import asyncio
import warnings

from harness_opt.domains.executors import Executor, make_executor
from harness_opt.domains.training_loop import (
    TRAINING_EDITABLE,
    ExperimentResult,
    ExperimentStore,
    TrainingSuite,
    experiment_spec,
    load_training_suite,
)
from harness_opt.errors import UserError
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger.rows import ExperimentRow, ExperimentStatus
from harness_opt.propose.base import ProposalInput, Proposer
from harness_opt.propose.history_fs import HistorySource, build_history
from harness_opt.runtime.sandbox import Isolation, resolve_isolation
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.domain import RunContext
from harness_opt.search.measurement import Measurement
from harness_opt.search.records import CandidateRecord, SealedTest

MODEL = "train.py"
"""What a training run records as its model: the code is what is being optimized."""


class TrainingDomain:
    name = "training"
    editable: tuple[str, ...] = TRAINING_EDITABLE
    acceptance = "scalar"
    direction = "min"

    def __init__(self, executor: Executor | None = None, store: ExperimentStore | None = None) -> None:
        self.executor = executor
        self.store = store
        self.metric = "val_bpb"
        self.runs: dict[str, list[ExperimentResult]] = {}
        """This run's results per version hash (what `decided` writes to `experiments`)."""
        self.wave_s = 0.0
        self.isolation: Isolation = "bwrap"

    def start(self, seed: HarnessVersion, config: OptimizeConfig) -> str:
        self.suite: TrainingSuite = load_training_suite(config.suite)
        self.metric = self.suite.settings.metric
        # bubblewrap or a SandboxError now, before the run row exists (weaker only when named)
        self.isolation, warning = resolve_isolation(config.isolation)
        if warning:
            warnings.warn(f"{warning} (train.py runs with this isolation)", RuntimeWarning, stacklevel=2)
        if self.executor is None:
            self.executor = make_executor(config.executor, parallel=config.parallel, address=config.address)
        self.store = self.store or ExperimentStore()
        return MODEL

    def operators(self) -> Proposer:
        from harness_opt.propose.operators.training import TrainingOperatorsProposer

        return TrainingOperatorsProposer()

    async def _wave(
        self, items: list[tuple[HarnessVersion, int]], what: str, run: RunContext
    ) -> list[ExperimentResult]:
        """Run (or reuse) one experiment per (version, seed), all at once on the executor."""
        assert self.executor is not None and self.store is not None
        store, executor = self.store, self.executor
        specs = [
            experiment_spec(v, self.suite, seed, gpu=executor.has_gpu, isolation=self.isolation)
            for v, seed in items
        ]
        results: list[ExperimentResult | None] = [store.get(s) for s in specs]
        todo = [i for i, r in enumerate(results) if r is None]
        done = len(specs) - len(todo)
        run.display.eval_progress(what, done, len(specs))

        def finished(index: int, result: ExperimentResult) -> None:
            nonlocal done
            store.put(specs[todo[index]], result)  # durable the moment it ends
            done += 1
            run.display.eval_progress(what, done, len(specs))

        if todo:
            for i in todo:
                store.note(specs[i], "run")
            fresh = await asyncio.to_thread(executor.run, [specs[i] for i in todo], self.metric, finished)
            run.charge(executed=len(fresh))
            for i, result in zip(todo, fresh, strict=True):
                results[i] = result
        out = [r.model_copy(update={"label": s.label}) for r, s in zip(results, specs, strict=True) if r]
        for r in out:
            self.runs.setdefault(r.version_hash, []).append(r)
        for mode in sorted({r.isolation for r in out if r.isolation}):  # what the runs really ran in
            await asyncio.to_thread(run.ledger.record_isolation, run.run_id, mode)
        self.wave_s = max([self.wave_s, *(r.wall_s for r in out)])
        return out

    def _measure(self, version: HarnessVersion, result: ExperimentResult) -> Measurement:
        value = result.metric(self.metric)
        return Measurement(
            version_hash=version.hash,
            label=version.label,
            values={} if value is None else {f"seed {result.seed}": value},
            failure=None if result.ok else f"{result.status}: {result.reason}",
        )

    async def baseline(self, seed: HarnessVersion, run: RunContext) -> list[Measurement]:
        n = self.suite.settings.baseline_runs
        run.display.status(f"baseline {seed.label}: {n} runs with different seeds (noise)")
        first = run.config.seed
        results = await self._wave([(seed, first + i) for i in range(n)], f"baseline {seed.label}", run)
        bad = [r for r in results if not r.ok]
        if bad:
            raise UserError(
                f"the seed version does not train: {bad[0].status}: {bad[0].reason}",
                where=str(seed.path / "train.py"),
                fix=f"run it by hand to see why; log tail:\n{bad[0].log_tail[-600:]}",
            )
        return [self._measure(seed, r) for r in results]

    async def evaluate(
        self,
        candidates: list[HarnessVersion],
        incumbent: HarnessVersion,
        run: RunContext,
        *,
        attempt: int = 0,
        units: int | None = None,
    ) -> list[Measurement]:
        """One run each, with seed `config.seed + attempt` (attempt 1 confirms a borderline gain).
        `units` does not apply: one run is one unit, and more seeds are what `attempt` is for."""
        seed = run.config.seed + attempt
        what = f"wave of {len(candidates)} candidates" if attempt == 0 else "confirming borderline gains"
        results = await self._wave([(c, seed) for c in candidates], what, run)
        return [self._measure(c, r) for c, r in zip(candidates, results, strict=True)]

    async def evidence(
        self, incumbent: HarnessVersion, measurement: Measurement, run: RunContext
    ) -> ProposalInput:
        files = {p: b.decode("utf-8", "replace") for p, b in incumbent.files().items()}
        files["prepare.py"] = self.suite.prepare_path.read_text(encoding="utf-8")  # to read, not edit
        if run.history_dir is not None:  # every candidate's train.py, diff and val_bpb (no traces here)
            source = HistorySource(
                ledger=run.ledger,
                run_id=run.run_id,
                agent=incumbent.name,
                all_runs=run.config.meta_history == "agent",
            )
            await asyncio.to_thread(build_history, source, run.history_dir)
        return ProposalInput(
            agent=incumbent.name,
            version_label=incumbent.label,
            files=files,
            editable=self.editable,
            suite=self.suite.name,
            suite_description=(
                f"{self.suite.description} Metric {self.metric}, lower is better; each run trains for a "
                "fixed time budget set by prepare.py, which is frozen. Edit train.py only."
            ),
            failing_traces=[],
            train_tasks=[],
            val_score=measurement.mean,
            history=run.history(),
            seed=run.config.seed + run.iteration,
            history_dir=run.history_dir,
        )

    def reserve_s(self, seed: HarnessVersion, incumbent: HarnessVersion, run: RunContext) -> float:
        """The time of one wave: a wave that cannot finish inside the budget does not start."""
        return self.wave_s

    async def finish(self, seed: HarnessVersion, best: HarnessVersion, run: RunContext) -> SealedTest | None:
        return None  # a training suite has no sealed split: val_bpb is prepare.py's held-out bytes

    def decided(self, record: CandidateRecord, measurement: Measurement | None, run: RunContext) -> None:
        """One `experiments` row per run of the candidate: keep, discard or crash (autoresearch's
        results.tsv). Rows already there (a resumed iteration) are not written again."""
        results = self.runs.get(record.hash, []) if record.hash else []
        if not results or _has_rows(run, record.hash):
            return
        baseline = record.outcome == "baseline"
        for result in results:
            status: ExperimentStatus = (
                "crash"
                if not result.ok
                else "keep"
                if baseline or record.outcome == "accepted"
                else "discard"
            )
            mb = result.values.get("peak_vram_mb")
            run.ledger.add_experiment(
                ExperimentRow(
                    run_id=run.run_id,
                    version_hash=result.version_hash,
                    metric=self.metric,
                    value=result.metric(self.metric),
                    memory_gb=None if mb is None else mb / 1024,
                    status=status,
                    description=f"baseline seed {result.seed}"
                    if baseline
                    else f"{record.mechanism}: {record.reason}",
                )
            )


def _has_rows(run: RunContext, version_hash: str) -> bool:
    rows = run.ledger.query(
        "SELECT count(*) AS n FROM experiments WHERE run_id = ? AND version_hash = ?",
        [run.run_id, version_hash],
    )
    return bool(rows and rows[0]["n"])
