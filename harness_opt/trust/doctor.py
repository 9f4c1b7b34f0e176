"""`doctor`: is this suite (and harness) ready for an overnight run? Each line PASS / WARN / FAIL with a fix.

It checks what would make a night's results meaningless or impossible: splits that overlap or a test
split a harness can read, a scorer that gives two answers for one rollout, a val split too small to see
the gains hoped for, no sandbox, no model key, no budget. The optimize loop refuses to start on a FAIL.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

from harness_opt.errors import UserError
from harness_opt.evaluate.stats import min_detectable_effect
from harness_opt.trust.report import CheckReport
from harness_opt.trust.sealed import sealed_index

QUICK_TASKS = 10
FULL_TASKS = 30
_NO_KEY_PROVIDERS = ("local/", "scripted/", "ollama/", "ollama_chat/", "hosted_vllm/")
_ITERATION_TRAIN = 40
"""Train rollouts an optimize iteration runs for evidence (OptimizeConfig.train_sample default)."""


def _check_splits(report: CheckReport, suite: Any) -> bool:
    names = suite.split_names()
    missing = [s for s in ("train", "val", "test") if s not in names]
    sizes = {s: len(suite.tasks(s)) for s in names}
    empty = [s for s, n in sizes.items() if n == 0 and s in ("train", "val")]
    shown = ", ".join(f"{s}={n}" for s, n in sizes.items())
    if missing or empty:
        report.add(
            "FAIL",
            "splits",
            f"missing or empty splits: {', '.join(missing + empty)} ({shown})",
            "define train, val and test in suite.toml [splits] (the loop learns on train, decides on val)",
        )
        return False
    ids: dict[str, str] = {}
    inputs: dict[str, str] = {}
    clash_ids: list[str] = []
    clash_inputs: list[str] = []
    for split in names:
        for task in suite.tasks(split):
            if ids.setdefault(task.id, split) != split:
                clash_ids.append(f"{task.id} ({ids[task.id]}/{split})")
            key = json.dumps(task.input, sort_keys=True, default=str)
            if inputs.setdefault(key, split) != split and {inputs[key], split} & {"val", "test"}:
                clash_inputs.append(f"{task.id} ({inputs[key]}/{split})")
    if len(inputs) == 1:  # every task has the same input (the task lives in a user simulator): no signal
        clash_inputs = []
    if clash_ids:
        report.add(
            "FAIL",
            "splits",
            f"{len(clash_ids)} task ids in two splits, e.g. {clash_ids[0]}",
            "make the splits disjoint: a task scored on val or test must not be trained on",
        )
        return False
    if clash_inputs:
        report.add(
            "WARN",
            "splits",
            f"{len(clash_inputs)} val/test inputs repeat another split's, e.g. {clash_inputs[0]}",
            "drop duplicate inputs from val/test (they leak through train traces)",
        )
    else:
        report.add("PASS", "splits", f"{shown}; disjoint by task id and input")
    return True


def _check_sealed(report: CheckReport, suite: Any, harness: Any | None) -> None:
    n_test = len(suite.tasks("test"))
    if harness is None:
        report.add(
            "PASS",
            "test sealed",
            f"{n_test} test tasks; only `eval --split test` and the end of "
            "optimize load them (no harness given to check for leaked test data)",
        )
        return
    suite_dir, harness_dir = Path(suite.path).resolve(), Path(harness.path).resolve()
    if harness_dir.is_relative_to(suite_dir) or suite_dir.is_relative_to(harness_dir):
        report.add(
            "FAIL",
            "test sealed",
            f"the harness {harness_dir} and the suite {suite_dir} nest",
            "keep harness versions outside the suite folder (the sandbox shows a version its own dir)",
        )
        return
    from harness_opt.trust.sealed import find_literals

    index = sealed_index(suite)
    leaks = []
    for rel, data in harness.files().items():
        for hit in find_literals(data.decode("utf-8", "replace"), index):
            if hit.split == "test" and hit.kind in ("sealed-input", "sealed-task-id", "sealed-answer"):
                leaks.append(f"{rel}:{hit.line} ({hit.kind}, {hit.task_id})")
    if leaks:
        report.add(
            "FAIL",
            "test sealed",
            f"the harness contains test data: {', '.join(leaks[:3])}",
            "remove test inputs/answers from the harness; results on test would be meaningless",
        )
    else:
        report.add("PASS", "test sealed", f"{n_test} test tasks; none of their text is in the harness files")


def _check_scorer(report: CheckReport, suite: Any) -> None:
    if not getattr(suite, "deterministic_scorer", True):
        report.add(
            "WARN",
            "scorer",
            "the suite marks its scorer as a judge (not deterministic)",
            "run trials >= 3 and read `harness-opt premortem` for judge flattery",
        )
        return
    tasks = suite.tasks("val")[:5]
    unstable = []
    for task in tasks:
        for output in (task.expected, "", "not an answer"):
            a = suite.score(task, output, suite.environment(task))
            b = suite.score(task, output, suite.environment(task))
            if (a.score, a.passed) != (b.score, b.passed):
                unstable.append(f"{task.id}: {a.score} then {b.score}")
    if unstable:
        report.add(
            "FAIL",
            "scorer",
            f"the same rollout scored twice differs: {unstable[0]}",
            "make the scorer deterministic or set deterministic_scorer = False (a judge)",
        )
    else:
        report.add("PASS", "scorer", f"deterministic: {len(tasks) * 3} rollouts scored twice, same verdicts")


def _check_sandbox(report: CheckReport, isolation: str, harness: Any | None) -> None:
    """FAIL when harness code could not run under bubblewrap (evaluation refuses then); WARN for a weaker
    mode the user named; PASS naming the isolation a run will actually record."""
    from harness_opt.runtime.sandbox import resolve_isolation

    try:
        mode, warning = resolve_isolation(isolation)
    except UserError as exc:
        report.add("FAIL", "sandbox", f"isolation: none usable — {exc.what}", exc.fix or "")
        return
    if warning:
        report.add(
            "WARN",
            "sandbox",
            f"isolation used: {mode} — {warning}",
            "use --isolation auto (bubblewrap) for untrusted harnesses",
        )
        return
    label = _sandbox_label(harness, isolation) if harness is not None else mode
    if label != mode:
        report.add(
            "WARN",
            "sandbox",
            f"isolation used: {label}",
            "allow nested user namespaces so each rollout gets its own /tmp",
        )
        return
    report.add(
        "PASS",
        "sandbox",
        f"isolation used: {label} (no network, own filesystem view, no keys, "
        "no capabilities; each rollout its own /tmp, seccomp-filtered)",
    )


def _sandbox_label(harness: Any, isolation: str) -> str:
    """Start the harness's fork server once: the label a run records (it says if /tmp is shared)."""
    from harness_opt.runtime.broker import HarnessRunner

    async def probe() -> str:
        async with HarnessRunner(harness, model="doctor/none", isolation=isolation, concurrency=1) as runner:
            return runner.isolation_label

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # called from async code (the optimize pre-flight): its own evaluations record the label
        return "bwrap"
    try:
        return asyncio.run(probe())
    except Exception:  # a harness that cannot start is reported by the checks that evaluate it
        return "bwrap"


def _check_model(report: CheckReport, model: str | None, llm: Any | None = None) -> bool:
    from harness_opt.llm.catalog import validate_model
    from harness_opt.llm.client import LLMClient

    if not model:
        report.add(
            "FAIL",
            "model",
            "no model: neither --model nor a harness with [model].name",
            "pass --model provider/name or a harness",
        )
        return False
    try:
        validate_model(model, require_key=not model.startswith(_NO_KEY_PROVIDERS))
    except UserError as exc:
        report.add("FAIL", "model", f"{exc.where}: {exc.what}" if exc.where else exc.what, exc.fix or "")
        return False
    client = LLMClient(llm)
    try:  # the pre-flight call an evaluation makes: an endpoint that answers and takes the key
        _run_async(client.preflight(model))
    except UserError as exc:
        report.add("FAIL", "model", f"{exc.where}: {exc.what}" if exc.where else exc.what, exc.fix or "")
        return False
    reached = f"; {client.endpoint()} answers" if client.stats.preflight else ""
    report.add("PASS", "model", f"{model} routes and its key (if any) is set{reached}")
    return True


def _run_async(coro: Any) -> Any:
    """Run a coroutine to completion from doctor's synchronous code, which may itself run inside an
    event loop's worker thread (the optimize pre-flight) or in the main thread (the command)."""
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:  # (outside the except block: its error must not become every failure's context)
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    import threading

    thread = threading.Thread(target=work, name="harness-opt-doctor")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _check_budget(report: CheckReport, budget: Any | None) -> None:
    if budget is None:
        report.add(
            "WARN",
            "budget",
            "no budget given: optimize stops after its default of 20 minutes",
            "pass --budget 8h (and --dollars 20 or --iterations 30) so the run ends when you intend",
        )
        return
    parts = (
        {k: v for k, v in budget.model_dump().items() if v is not None}
        if hasattr(budget, "model_dump")
        else {"budget": budget}
    )
    if "dollars" not in parts and not os.environ.get("HARNESS_OPT_ALLOW_UNCAPPED"):
        report.add(
            "WARN", "budget", f"{parts}: no dollar cap", "add a dollar cap (--dollars 20) for paid models"
        )
    else:
        report.add("PASS", "budget", f"{parts}")


def _check_noise(
    report: CheckReport,
    suite: Any,
    harness: Any,
    model: str,
    quick: bool,
    isolation: str,
    ledger: Any | None,
    llm: Any | None = None,
) -> None:
    from harness_opt.evaluate.evaluator import EvalConfig, evaluate_async
    from harness_opt.llm.client import LLMConfig

    n = QUICK_TASKS if quick else FULL_TASKS
    base = EvalConfig(
        split="val",
        limit=n,
        model=model,
        isolation=isolation,  # type: ignore[arg-type]
        llm=llm or LLMConfig(),
    )
    rerun = base.model_copy(update={"trial_offset": 1, "llm_cache": False})

    async def both() -> tuple[Any, Any]:
        first = await evaluate_async(harness, suite, base, ledger=ledger, kind="eval")
        second = await evaluate_async(harness, suite, rerun, ledger=ledger, kind="eval")
        return first, second

    try:
        first, second = asyncio.run(both())
    except UserError as exc:
        report.add("FAIL", "noise", f"cannot evaluate the harness: {exc.message}", exc.fix or "")
        return
    rollouts = first.rollouts + second.rollouts
    degraded = [f"{name}: {r.degraded}" for name, r in (("baseline", first), ("rerun", second)) if r.degraded]
    if degraded:  # noise measured over whatever survived an outage is no measurement
        report.add(
            "FAIL",
            "noise",
            f"not measured: the evaluations are degraded ({'; '.join(degraded)})",
            "make the model reachable and run doctor again (see `harness-opt traces list RUN --failed`)",
        )
        return
    errors = [r for r in rollouts if r.error]
    if len(errors) == len(rollouts):
        report.add(
            "FAIL",
            "harness",
            f"every rollout failed, e.g. {errors[0].error}: {(errors[0].error_detail or '')[:200]}",
            "fix the harness (see `harness-opt traces`)",
        )
        return
    a, b = first.scores_by_task(), second.scores_by_task()
    diffs = [mean(b[t]) - mean(a[t]) for t in a if t in b]
    changed = sum(1 for d in diffs if d != 0)
    sd = pstdev(diffs) if len(diffs) > 1 else 0.0
    p = mean(x for scores in a.values() for x in scores) if a else 0.0
    assumed = sd == 0
    sd_used = sd if not assumed else math.sqrt(max(p * (1 - p), 0.05))
    n_val = len(suite.tasks("val"))
    mde = min_detectable_effect(max(n_val, 2), sd_used)
    what = (
        f"baseline {p:.3f} on {len(a)} val tasks, rerun changed {changed}; smallest detectable gain at "
        f"{n_val} val tasks ≈ {mde:.3f}"
        + (
            " (sd assumed from the score: reruns agreed)"
            if assumed
            else f" (sd of rerun differences {sd:.3f})"
        )
    )
    if mde > 0.1:
        report.add(
            "WARN", "noise", what, "use more val tasks or trials; gains below the figure look like noise"
        )
    else:
        report.add("PASS", "noise", what)
    lat = mean(r.latency_s for r in first.rollouts)
    cost = mean(r.cost_usd for r in first.rollouts)
    per_iter = _ITERATION_TRAIN + 1 + n_val
    report.add(
        "PASS",
        "cost/time",
        f"per rollout {lat:.2f}s ${cost:.4f}; per iteration (~{per_iter} rollouts, "
        f"concurrency 4) ≈ {per_iter * lat / 4 / 60:.1f} min, ${per_iter * cost:.2f}",
    )


def doctor(
    suite_path: Path | str,
    harness_path: Path | str | None = None,
    *,
    model: str | None = None,
    budget: Any | None = None,
    quick: bool = True,
    isolation: str = "auto",
    ledger: Any | None = None,
    llm: Any | None = None,
) -> CheckReport:
    """Readiness report; `report.failed` means an optimize run should not start (unless forced)."""
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.suites.loader import load_suite

    report = CheckReport(title=f"doctor: {suite_path}" + (f" with {harness_path}" if harness_path else ""))
    try:
        suite = load_suite(suite_path)
    except UserError as exc:
        report.add("FAIL", "suite", exc.message, exc.fix or "")
        return report
    harness = None
    if harness_path is not None:
        try:
            harness = HarnessVersion.load(harness_path)
        except UserError as exc:
            report.add("FAIL", "harness", exc.message, exc.fix or "")
    splits_ok = _check_splits(report, suite)
    if splits_ok:
        _check_sealed(report, suite, harness)
        _check_scorer(report, suite)
    _check_sandbox(report, isolation, harness)
    model = model or (harness.manifest.model.name if harness is not None else None)
    model_ok = _check_model(report, model, llm)
    _check_budget(report, budget)
    if harness is not None and model_ok and splits_ok and model is not None:
        _check_noise(report, suite, harness, model, quick, isolation, ledger, llm)
    return report
