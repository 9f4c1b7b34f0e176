"""The evaluator: run one harness version on one split of a suite, k trials per task.

It is the single choke point for model spend and for the sealed test split: every rollout goes
through here, is served from the ledger when its (version, suite, split, task, trial, model) key was
already evaluated, and otherwise runs in the sandbox, is scored by the suite, written to a trace file
and appended to the ledger as it finishes (so a killed run loses no finished rollout).

It also applies the one rule for failed rollouts (`records.INFRA_ERRORS`, `summary.py`): a rollout
whose model call failed for good for an infrastructure reason is recorded as `llm_error` (whatever
the suite's scorer made of it), counted apart from the score and retried by the next run; one whose
request the provider refused as too long or malformed is the version's failure. An evaluation with
more infrastructure failures than `max_infra_failures` ends `degraded`. Before the first rollout it
makes one pre-flight call (`LLMClient.preflight`), and while it runs it holds the ledger's writer lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from harness_opt.errors import SuiteError, UserError
from harness_opt.evaluate.config import EvalConfig
from harness_opt.evaluate.outcome import Requests, apply_call_rule, unofficial
from harness_opt.evaluate.summary import EvalSummary, summarize
from harness_opt.evaluate.tracestore import TraceWriter, iter_traces, trace_path
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import traces_dir
from harness_opt.ledger import Ledger, VersionRow
from harness_opt.ledger.writer import run_guard, writer_lock
from harness_opt.llm.cache import rollout_scope
from harness_opt.llm.catalog import validate_model
from harness_opt.llm.client import LLMCallError, LLMClient, call_account
from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.records import (
    CallCounts,
    ErrorEvent,
    OutputEvent,
    Rollout,
    RolloutKey,
    Score,
    Task,
    Trace,
    is_infra_error,
)
from harness_opt.runtime.broker import HarnessRunner, RolloutResult
from harness_opt.runtime.sandbox import resolve_isolation
from harness_opt.suites.base import Suite
from harness_opt.suites.loader import load_suite

if TYPE_CHECKING:
    from harness_opt.evaluate.ray_rollouts import RayRolloutRunner


class EvalResult(BaseModel):
    run_id: str
    version_hash: str
    version_label: str
    suite: str
    split: str
    model: str
    rollouts: list[Rollout]
    reused: int = Field(description="Rollouts served from the ledger (no model call made).")
    executed: int = Field(default=0, description="Rollouts run by this call.")
    executed_cost_usd: float = Field(default=0.0, description="Model spend of the rollouts run now.")
    model_calls: int = Field(description="Model calls actually sent (cache hits excluded).")
    cache_hits: int = 0
    requests: Requests = Field(default_factory=Requests, description="Requests sent by this call.")
    isolation: str = ""
    status: str = Field(default="ok", description="ok, or degraded (too many infrastructure failures).")
    warnings: list[str] = Field(default_factory=list)
    summary: EvalSummary

    def scores_by_task(self) -> dict[str, list[float]]:
        """Scores by task of the scored rollouts (infrastructure failures are not scores)."""
        out: dict[str, list[float]] = {}
        for r in self.rollouts:
            if not is_infra_error(r.error):
                out.setdefault(r.task_id, []).append(r.score)
        return out

    @property
    def degraded(self) -> str | None:
        """Why the evaluation cannot be trusted (too many infrastructure failures), or None."""
        return self.summary.degraded_reason()


ProgressFn = Callable[[int, int, Rollout | None], None]
"""Called as (done, total, rollout) after each rollout; rollout None for the initial call."""


def new_run_id(kind: str = "eval") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


def select_tasks(suite: Suite, split: str, limit: int | None, allow_test: bool) -> list[Task]:
    """The sealed-split gate: test tasks are only ever loaded here, and only with explicit consent."""
    if split not in suite.split_names():
        raise SuiteError(
            f"unknown split '{split}'",
            where=str(suite.path),
            fix=f"use one of: {', '.join(suite.split_names())}",
        )
    if split == "test" and not allow_test:
        raise SuiteError(
            "the test split is sealed",
            fix="evaluate it explicitly with `harness-opt eval ... --split test`; optimize touches it "
            "once, at the end",
        )
    return suite.tasks(split)[:limit] if limit else suite.tasks(split)


class _LedgerBuffer:
    """Batches rollout rows so the ledger file is opened a few times a second, not per rollout.

    Flushes run in a worker thread (opening the DuckDB file can take ~100 ms on a loaded machine) so
    the event loop keeps feeding the sandbox meanwhile. Rows not yet flushed are still safe: their
    traces are on disk and `_recover_unflushed` puts them back after a crash.
    """

    def __init__(self, ledger: Ledger, interval_s: float = 1.0) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self.rows: list[Rollout] = []
        self.last = time.monotonic()
        self.pending: asyncio.Task[None] | None = None

    def add(self, row: Rollout) -> None:
        self.rows.append(row)
        due = time.monotonic() - self.last >= self.interval_s
        if due and (self.pending is None or self.pending.done()):
            rows, self.rows = self.rows, []
            self.last = time.monotonic()
            self.pending = asyncio.ensure_future(asyncio.to_thread(self.ledger.add_rollouts, rows))

    async def flush(self) -> None:
        if self.pending is not None:
            await self.pending
        if self.rows:
            rows, self.rows = self.rows, []
            await asyncio.to_thread(self.ledger.add_rollouts, rows)
        self.last = time.monotonic()


def _recover_unflushed(ledger: Ledger, version: HarnessVersion, suite: str, split: str) -> None:
    """Rows batched in memory die with a killed process, but their traces were already on disk.

    Before reusing the ledger, put back any finished rollout whose trace line exists but whose row
    never reached the ledger, so a kill -9 loses no finished rollout and re-runs none. Only traces
    of runs this ledger started count: a traces folder shared with another ledger (or left over from
    one) must not fill this one with rollouts it never ran. Infrastructure failures are not put back
    (a re-run retries them).
    """
    path = trace_path(version.name, version.hash, suite, split)
    traces = [(off, t) for off, t in iter_traces(path) if not is_infra_error(t.error)]
    if not traces:
        return
    own = ledger.known_runs(sorted({t.run_id for _, t in traces}))
    traces = [(off, t) for off, t in traces if t.run_id in own]
    if not traces:
        return
    present = ledger.cached_rollouts([t.key for _, t in traces])
    rel = path.relative_to(traces_dir()).as_posix()
    missing = {t.key: Rollout.from_trace(t, f"{rel}#{off}") for off, t in traces if t.key not in present}
    if missing:
        ledger.add_rollouts(list(missing.values()))


async def _score(
    suite: Suite, task: Task, result: RolloutResult, env: Any
) -> tuple[Score, str | None, str | None]:
    if result.error:
        reason = f"{result.error}: {result.error_detail or ''}".strip()
        return Score(score=0.0, passed=False, feedback=reason), result.error, result.error_detail
    try:
        # A scorer that calls a model (an LLM judge) offers `score_async`, so its call does not
        # stall the rollouts in flight.
        score_async = getattr(suite, "score_async", None)
        if score_async is not None:
            return await score_async(task, result.output, env), None, None
        return suite.score(task, result.output, env), None, None
    except Exception as exc:  # a scorer bug must not stop the evaluation; it is recorded, scored 0
        return Score(score=0.0, passed=False, feedback=f"scorer failed: {exc!r}"), "scorer", repr(exc)


def _trace(
    run_id: str,
    key: RolloutKey,
    task: Task,
    result: RolloutResult,
    score: Score,
    error: str | None,
    detail: str | None,
    calls: CallCounts | None = None,
    unofficial: bool = False,
) -> Trace:
    events = list(result.events)
    if result.error:
        events.append(ErrorEvent(kind=result.error, reason=result.error_detail or ""))
    else:
        events.append(OutputEvent(output=result.output))
    return Trace(
        run_id=run_id,
        key=key,
        task_input=task.input,
        events=events,
        output=result.output,
        score=score.score,
        passed=score.passed,
        feedback=score.feedback,
        error=error,
        error_detail=detail,
        started=result.started,
        ended=result.ended,
        calls=calls,
        unofficial=unofficial,
    )


def _record(
    writer: TraceWriter,
    run_id: str,
    key: RolloutKey,
    task: Task,
    result: RolloutResult,
    score: Score,
    error: str | None,
    detail: str | None,
    calls: CallCounts,
    unofficial: bool = False,
) -> Rollout:
    """Write the rollout's trace line and return its ledger row. Whatever this rollout's data does to
    the trace (a value pydantic cannot serialise, a gigabyte of logs), it costs this rollout, scored 0
    with the reason, never the evaluation."""
    try:
        trace = _trace(run_id, key, task, result, score, error, detail, calls, unofficial)
        return Rollout.from_trace(trace, writer.append(trace))
    except Exception as exc:
        why = f"harness-opt could not record this rollout's data: {type(exc).__name__}: {str(exc)[:500]}"
        bare = result.model_copy(update={"events": [], "output": None, "error": "crash", "error_detail": why})
        failed = Score(score=0.0, passed=False, feedback=why)
        trace = _trace(run_id, key, task, bare, failed, "crash", why, calls, unofficial)
        return Rollout.from_trace(trace, writer.append(trace))


async def evaluate_async(
    harness: HarnessVersion | Path | str,
    suite: Suite | Path | str,
    config: EvalConfig | None = None,
    *,
    ledger: Ledger | None = None,
    progress: ProgressFn | None = None,
    run_id: str | None = None,
    kind: str = "eval",
    record_run: bool = True,
) -> EvalResult:
    """Evaluate; `record_run=False` when a caller (optimize) owns the run row and passes its run_id
    (and holds the ledger's writer lock)."""
    config = config or EvalConfig()
    version = harness if isinstance(harness, HarnessVersion) else HarnessVersion.load(harness)
    suite_obj = suite if not isinstance(suite, Path | str) else load_suite(suite)
    model = config.model or version.manifest.model.name
    validate_model(model)
    tasks = select_tasks(suite_obj, config.split, config.limit, config.allow_test)
    if config.task_ids is not None:
        wanted = set(config.task_ids)
        tasks = [t for t in tasks if t.id in wanted]
    if not tasks:
        raise UserError(f"split '{config.split}' of {suite_obj.name} has no tasks")
    if config.executor == "ray":  # a cluster that cannot be reached is refused before a run row exists
        from harness_opt.evaluate.ray_rollouts import connect

        connect(config.address, config.llm.api_key_env)  # (its nodes check their own sandbox)
    else:
        resolve_isolation(config.isolation)  # refuses (SandboxError) before a run row exists
    ledger = ledger or Ledger()
    run_id = run_id or new_run_id(kind)
    guard = writer_lock(ledger.path, f"{kind} {run_id}") if record_run else contextlib.nullcontext()
    with guard:
        ledger.add_version(VersionRow.from_version(version))
        if not record_run:
            return await _evaluate_recorded(
                version, suite_obj, config, model, tasks, ledger, progress, run_id, record_run
            )
        ledger.start_run(
            run_id,
            kind,
            {
                **config.model_dump(mode="json", exclude={"llm"}),
                "harness": str(version.path),
                "version_hash": version.hash,
                "suite": suite_obj.name,
                "model": model,
            },
        )
        # A run row is never left `running` by an end this process lives to see.
        with run_guard(ledger, run_id, kind):
            return await _evaluate_recorded(
                version, suite_obj, config, model, tasks, ledger, progress, run_id, record_run
            )


class _Execution:
    """The rollouts an evaluation runs now (the others come from the ledger): each in the sandbox, in
    its cache scope and call account, scored, classified by the one rule, traced and batched."""

    def __init__(
        self,
        version: HarnessVersion,
        suite: Suite,
        config: EvalConfig,
        model: str,
        client: LLMClient,
        ledger: Ledger,
        run_id: str,
        progress: ProgressFn | None,
    ) -> None:
        self.version, self.suite, self.config, self.model = version, suite, config, model
        self.client, self.ledger, self.run_id, self.progress = client, ledger, run_id, progress
        self.executed: list[Rollout] = []
        self.requests = Requests()
        self.isolation = "n/a (all rollouts reused)"
        self.warnings: list[str] = []
        self.finished = 0
        self.total = 0

    async def run(
        self, todo: list[tuple[Task, RolloutKey]], preflight: Awaitable[None]
    ) -> dict[RolloutKey, Rollout]:
        writer = TraceWriter(self.version.name, self.version.hash, self.suite.name, self.config.split)
        buffer = _LedgerBuffer(self.ledger)
        sem = asyncio.Semaphore(self.config.concurrency)
        out: dict[RolloutKey, Rollout] = {}
        try:
            async with self._started(preflight) as runner:
                self.isolation = runner.isolation_label
                await asyncio.to_thread(self.ledger.record_isolation, self.run_id, self.isolation)
                if getattr(runner, "warning", None):
                    self.warnings.append(str(runner.warning))

                async def one(task: Task, key: RolloutKey) -> None:
                    async with sem:
                        row = await self._one(runner, writer, task, key)
                    buffer.add(row)
                    out[key] = row
                    self.executed.append(row)
                    self.finished += 1
                    if self.progress:
                        self.progress(self.finished, self.total, row)

                await asyncio.gather(*(one(task, key) for task, key in todo))
        finally:
            await buffer.flush()
            writer.close()
        return out

    @contextlib.asynccontextmanager
    async def _started(self, preflight: Awaitable[None]) -> AsyncIterator[HarnessRunner | RayRolloutRunner]:
        """The runner, its sandbox started while the pre-flight call is in flight: the two start-up
        costs overlap instead of adding up before the first rollout. A refused pre-flight closes it."""
        runner = self._runner()
        starting = asyncio.ensure_future(runner.__aenter__())
        await asyncio.sleep(0)  # the sandbox's process is spawned before the pre-flight's own work
        try:
            await preflight
            await starting
        except BaseException:
            with contextlib.suppress(BaseException):
                await starting
            await runner.aclose()
            raise
        try:
            yield runner
        finally:
            await runner.aclose()

    def _runner(self) -> HarnessRunner | RayRolloutRunner:
        """Where the rollouts run: this machine's sandbox, or the same sandbox on Ray's nodes."""
        if self.config.executor == "ray":
            from harness_opt.evaluate.ray_rollouts import RayRolloutRunner

            return RayRolloutRunner(
                self.version,
                model=self.model,
                isolation=self.config.isolation,
                concurrency=self.config.concurrency,
                address=self.config.address,
                api_key_env=self.config.llm.api_key_env,
            )
        return HarnessRunner(
            self.version,
            model=self.model,
            isolation=self.config.isolation,
            concurrency=self.config.concurrency,
        )

    async def _one(
        self, runner: HarnessRunner | RayRolloutRunner, writer: TraceWriter, task: Task, key: RolloutKey
    ) -> Rollout:
        agent_failure: list[str] = []

        async def agent_llm(req: LLMRequest) -> LLMResult:
            try:
                return await self.client.complete(req)
            except LLMCallError as exc:  # the agent's own request: its cause decides (_apply_call_rule)
                agent_failure.append(exc.kind)
                raise

        env = self.suite.environment(task)
        # Every model call of this rollout (agent, simulated user, judge) is cached under its key
        # (trials stay independent, a re-run replays its own calls) and counted in its account
        # (what a server's log would show for it).
        with rollout_scope(key), call_account() as account:
            result = await runner.run(task, env, agent_llm)
            score, error, detail = await _score(self.suite, task, result, env)
        calls = account.counts()
        self.requests.add(calls)
        failure = agent_failure[-1] if agent_failure else None
        score, error, detail = apply_call_rule(
            score, error, detail, calls, account.last_failure_text, failure
        )
        return _record(writer, self.run_id, key, task, result, score, error, detail, calls, unofficial(env))


async def _preflight(client: LLMClient, model: str, ledger: Ledger, run_id: str, record_run: bool) -> None:
    """The pre-flight call; a refusal ends the run row as `refused` with the reason."""
    try:
        await client.preflight(model)
    except UserError as exc:
        if record_run:
            ledger.end_run(run_id, "refused", {"reason": exc.message})
        raise


async def _evaluate_recorded(
    version: HarnessVersion,
    suite_obj: Suite,
    config: EvalConfig,
    model: str,
    tasks: list[Task],
    ledger: Ledger,
    progress: ProgressFn | None,
    run_id: str,
    record_run: bool,
) -> EvalResult:
    """The evaluation proper, once its run row exists (`evaluate_async` closes the row if this raises)."""

    def key_of(task: Task, trial: int) -> RolloutKey:
        return RolloutKey(
            version_hash=version.hash,
            suite=suite_obj.name,
            split=config.split,
            task_id=task.id,
            trial=trial,
            model=model,
        )

    trials = range(config.trial_offset, config.trial_offset + config.trials)
    pairs = [(t, trial) for t in tasks for trial in trials]
    keys = [key_of(t, trial) for t, trial in pairs]
    if config.reuse:
        _recover_unflushed(ledger, version, suite_obj.name, config.split)
    done: dict[RolloutKey, Rollout] = ledger.cached_rollouts(keys) if config.reuse else {}
    reused = len(done)
    todo = [(t, key_of(t, trial)) for t, trial in pairs if key_of(t, trial) not in done]
    client = LLMClient(config.llm.model_copy(update={"cache": config.llm_cache}))
    execution = _Execution(version, suite_obj, config, model, client, ledger, run_id, progress)
    execution.finished = reused
    execution.total = len(keys)

    async def preflight() -> None:
        await _preflight(client, model, ledger, run_id, record_run)
        execution.requests.preflight = client.stats.preflight
        if progress:
            progress(reused, len(keys), None)

    if todo:
        done.update(await execution.run(todo, preflight()))
    elif progress:
        progress(reused, len(keys), None)
    executed, requests, isolation, warnings = (
        execution.executed,
        execution.requests,
        execution.isolation,
        execution.warnings,
    )
    rollouts = [done[k] for k in keys]
    summary = summarize(rollouts, max_infra_failures=config.max_infra_failures)
    status = "degraded" if summary.degraded else "ok"
    stats = client.stats
    result = EvalResult(
        run_id=run_id,
        version_hash=version.hash,
        version_label=version.label,
        suite=suite_obj.name,
        split=config.split,
        model=model,
        rollouts=rollouts,
        reused=reused,
        executed=len(executed),
        executed_cost_usd=sum(r.cost_usd for r in executed),
        model_calls=stats.model_calls,
        cache_hits=stats.cache_hits,
        requests=requests,
        isolation=isolation,
        status=status,
        warnings=warnings,
        summary=summary,
    )
    if record_run:
        ledger.end_run(
            run_id,
            status,
            {
                "summary": summary.model_dump(mode="json"),
                "reused": reused,
                "model_calls": stats.model_calls,
                "cache_hits": stats.cache_hits,
                "requests": requests.model_dump(mode="json"),
                "isolation": isolation,
                "rollout_keys": len(keys),
                **({"degraded": summary.degraded_reason()} if summary.degraded else {}),
            },
        )
    return result


def evaluate(
    harness: HarnessVersion | Path | str,
    suite: Suite | Path | str,
    config: EvalConfig | None = None,
    *,
    ledger: Ledger | None = None,
    progress: ProgressFn | None = None,
) -> EvalResult:
    """Evaluate a harness version on a suite split (blocking; for notebooks use `evaluate_async`)."""
    return asyncio.run(evaluate_async(harness, suite, config, ledger=ledger, progress=progress))
