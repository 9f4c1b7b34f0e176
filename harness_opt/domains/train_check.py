"""A proposer's `check` of a candidate: what the loop's validation does, on train only, on request.

The proposer (a coding agent through `./check`, or the llm agent's `check` tool) hands over a
directory; the check reads it without following links (`propose.workspace.read_tree`), loads it (the
manifest, tools.json, every template parses, every Python file compiles, the entrypoint exists),
says which edits would be discarded, then runs one **train** task through the real evaluator: the
sandbox, the broker with the keys, the suite's scorer. The answer is that rollout's score, feedback
and raw trace. The sealed-data scan does not run here: its findings quote val and test text, and an
answer to "does this text occur in val?" is itself a leak. The rollout is written to a scratch ledger
(a check is a probe, not a result); its spend is charged to the run.

Called from the proposer's worker thread; the evaluation runs on the optimize loop's event loop, which
is idle while it awaits the proposer.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

from harness_opt.evaluate.evaluator import EvalConfig, evaluate_async
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.propose.base import CheckResult
from harness_opt.propose.evidence import render_trace
from harness_opt.propose.workspace import is_editable, read_tree, write_files
from harness_opt.search.candidates import describe_failure
from harness_opt.search.domain import RunContext
from harness_opt.suites.base import Suite

INVALID_ERRORS = frozenset(
    {"crash", "sandbox", "invalid_output", "timeout", "memory", "step_limit", "token_limit"}
)
"""Errors of a validation rollout that make a candidate invalid (a wrong answer does not)."""
MAX_TRACE_CHARS = 12_000
CHECK_TIMEOUT_S = 1_800.0
"""Longer than any rollout's own wall limit: the rollout ends first, with its reason."""


class TrainCheck:
    """`checker(harness_dir, task_id)` for one iteration's proposals; at most `limit` checks."""

    def __init__(
        self,
        suite: Suite,
        model: str,
        editable: tuple[str, ...],
        run: RunContext,
        incumbent: HarnessVersion,
        loop: asyncio.AbstractEventLoop,
        limit: int,
    ) -> None:
        self.suite = suite
        self.model = model
        self.editable = editable
        self.run = run
        self.incumbent = incumbent
        self.loop = loop
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def __call__(self, harness_dir: Path, task_id: str | None = None) -> CheckResult:
        with self._lock:
            if self.used >= self.limit:
                return CheckResult(ok=False, report=f"no checks left this iteration ({self.limit} used)")
            self.used += 1
        try:
            if asyncio.get_running_loop() is self.loop:  # the caller would wait on itself
                return CheckResult(ok=False, report="check called from the event loop; run it in a thread")
        except RuntimeError:
            pass  # no loop in this thread: the normal case
        future = asyncio.run_coroutine_threadsafe(self.check(Path(harness_dir), task_id), self.loop)
        try:
            return future.result(timeout=CHECK_TIMEOUT_S)
        except Exception as exc:  # a check that breaks is a failed check, never a stopped proposer
            return CheckResult(ok=False, report=f"the check could not run: {describe_failure(exc)}")

    async def check(self, harness_dir: Path, task_id: str | None) -> CheckResult:
        train = self.suite.tasks("train")
        ids = [t.id for t in train]
        if task_id is not None and task_id not in ids:
            return CheckResult(
                ok=False,
                report=f"{task_id!r} is not a train task: check runs train tasks only "
                "(their ids are in train_tasks.jsonl)",
            )
        files, ignored = read_tree(harness_dir)
        with tempfile.TemporaryDirectory(prefix="harness-opt-check-") as tmp:
            snapshot = Path(tmp) / "candidate"
            write_files(snapshot, files)
            lines = [f"(note: {n})" for n in ignored]
            try:
                version = HarnessVersion.load(snapshot)
            except Exception as exc:
                lines.append(f"does not load: {describe_failure(exc)}")
                return CheckResult(ok=False, report="\n".join(lines))
            lines += self._notes(version)
            lines.append("loads: yes (manifest, tools.json, templates parse, Python compiles)")
            return await self._run_one(version, task_id or ids[0], Path(tmp), lines)

    def _notes(self, version: HarnessVersion) -> list[str]:
        old = self.incumbent.files()
        new = version.files()
        changed = [p for p in set(old) | set(new) if old.get(p) != new.get(p)]
        outside = sorted(p for p in changed if not is_editable(p, self.editable))
        notes = [f"discarded when handed back (not editable): {', '.join(outside)}"] if outside else []
        if version.manifest.runtime != self.incumbent.manifest.runtime:
            notes.append("invalid: [runtime] in harness.toml changed; the search keeps it frozen")
        return notes

    async def _run_one(
        self, version: HarnessVersion, task_id: str, scratch: Path, lines: list[str]
    ) -> CheckResult:
        cfg = self.run.config
        result = await evaluate_async(
            version,
            self.suite,
            EvalConfig(
                split="train",
                task_ids=[task_id],
                model=self.model,
                concurrency=1,
                isolation=cfg.isolation,
                llm=cfg.llm,
            ),
            ledger=Ledger(scratch / "check.duckdb"),
            run_id=self.run.run_id,
            record_run=False,
        )
        self.run.charge(result.executed_cost_usd, result.executed)
        rollout = result.rollouts[0]
        error = f", error {rollout.error}: {(rollout.error_detail or '')[:300]}" if rollout.error else ""
        lines.append(f"train task {task_id}: score {rollout.score:g}, passed {rollout.passed}{error}")
        if rollout.trace_ref:
            task = next((t for t in self.suite.tasks("train") if t.id == task_id), None)
            text = render_trace(read_trace(rollout.trace_ref), task)
            if len(text) > MAX_TRACE_CHARS:
                half = MAX_TRACE_CHARS // 2
                text = text[:half] + "\n[... trace cut ...]\n" + text[-half:]
            lines += ["raw trace:", text]
        ok = rollout.error not in INVALID_ERRORS and not any(ln.startswith("invalid:") for ln in lines)
        return CheckResult(ok=ok, report="\n".join(lines))
