"""`harness-opt eval`: evaluate one harness version on one split, with a live progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness_opt.cli.options import Options, derived
from harness_opt.cli.suite_options import (
    DataOption,
    JudgeModelOption,
    UserModelOption,
    load_suite_with_options,
)
from harness_opt.evaluate.config import EvalConfig

if TYPE_CHECKING:
    from harness_opt.evaluate.evaluator import EvalResult

EVAL_INTERNAL = {"task_ids", "trial_offset", "allow_test", "llm.cache"}
"""EvalConfig fields the loop sets, not a person: a task subset, noise-rerun trial numbers, the
sealed-split consent (asking for --split test is the consent), and the cache switch `--llm-cache`
already is."""


def _causes(counts: dict[str, int], *, words: bool = True) -> str:
    """'server error 90, connection refused 79' (causes in words), or 'llm_error 19' (error kinds)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k.replace('_', ' ') if words else k} {n}" for k, n in ordered)


def render_result(result: EvalResult, console: Console) -> None:
    """The closing table: every figure comes from the ledger rows of this evaluation, and the
    requests line from what this evaluation sent (a server's own log would show the same)."""
    s = result.summary
    title = f"{result.version_label} on {result.suite}/{result.split} with {result.model}"
    table = Table(title=escape(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    scored = "" if not s.n_infra else f"  over {s.n_scored} scored"
    table.add_row("score (95% CI)", f"{s.score:.3f}  [{s.score_ci[0]:.3f}, {s.score_ci[1]:.3f}]{scored}")
    table.add_row("pass rate (95% CI)", f"{s.pass_rate:.1%}  [{s.pass_ci[0]:.1%}, {s.pass_ci[1]:.1%}]")
    table.add_row("rollouts / tasks", f"{s.n_rollouts} / {s.n_tasks}")
    kinds = _causes(s.infra_failures, words=False)
    infra = f"{s.n_infra} ({s.infra_share:.1%}): {kinds}" if s.n_infra else "none"
    table.add_row("infrastructure failures (not scored)", escape(infra))
    task_errors = {k: v for k, v in s.errors.items() if k not in s.infra_failures}
    table.add_row("task failures (scored 0)", escape(_causes(task_errors, words=False) or "none"))
    table.add_row("cost", f"${s.cost_usd:.4f}")
    table.add_row("tokens in / out", f"{s.tokens_in:,} / {s.tokens_out:,}")
    table.add_row("latency p50 / p95", f"{s.latency_p50_s:.2f}s / {s.latency_p95_s:.2f}s")
    table.add_row("model requests (all rollouts)", f"{s.llm_attempts} sent, {s.llm_calls_ok} answered")
    if s.unofficial:
        table.add_row("unofficial scores", f"{s.unofficial} (scored without the NL judge)")
    console.print(table)
    if result.reused == s.n_rollouts:
        console.print(
            f"All {result.reused} rollouts were served from the ledger: [bold]0 model calls[/] made."
        )
    else:
        r = result.requests
        retries = sum(r.retries.values())
        failed = sum(r.failed.values())
        console.print(
            f"{result.reused} rollouts reused from the ledger; {result.model_calls} model calls made "
            f"({result.cache_hits} served from the response cache).",
            highlight=False,
        )
        console.print(
            f"requests sent: {r.attempts + r.preflight} = {r.answered} answered + {retries} retried"
            + (f" ({escape(_causes(r.retries))})" if retries else "")
            + f" + {failed} failed for good"
            + (f" ({escape(_causes(r.failed))})" if failed else "")
            + (f" + {r.preflight} pre-flight" if r.preflight else "")
            + (f"; {r.refused} of them refused before reaching the server" if r.refused else ""),
            highlight=False,
        )
    if s.unofficial:
        console.print(
            f"[yellow]unofficial:[/] {s.unofficial} of {s.n_rollouts} rollouts were scored without the "
            "benchmark's NL-assertion judge (--judge-model off, or the judge failed): not τ²'s reward.",
            highlight=False,
        )
    console.print(
        f"run [bold]{escape(result.run_id)}[/]  ·  isolation: {escape(result.isolation)}  ·  "
        f"see a trace: harness-opt traces show {escape(result.run_id)} TASK_ID",
        highlight=False,
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if result.degraded:
        console.print(
            f"[bold red]DEGRADED:[/] {escape(result.degraded)}. The score above is over the other "
            f"{s.n_scored} rollouts and cannot be trusted as the version's. Re-run the same command to "
            "retry the failed rollouts (the others are reused); raise --max-infra-failures to accept.",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @derived(EvalConfig, exclude=EVAL_INTERNAL)
    def eval_command(
        harness: Annotated[
            Path, typer.Argument(help="Harness version: a directory (harnesses/banking77/v0001) or agent@vN.")
        ],
        suite: Annotated[Path, typer.Option(help="Suite folder with a suite.toml.")],
        json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        user_model: UserModelOption = None,
        judge_model: JudgeModelOption = None,
        data: DataOption = None,
        *,
        options: Options,
    ) -> None:
        """Evaluate HARNESS on one split of a suite: k trials per task, one trace and one ledger row each.

        Asking for --split test is consent to open the sealed split. Re-running the same version, suite,
        split, trials and model makes no model calls: finished rollouts are served from the ledger.
        Rollouts that failed for infrastructure reasons (model outage, sandbox, scorer crash) are
        counted apart, not scored, and retried by a re-run; above --max-infra-failures the
        evaluation is degraded and the command exits 3.
        """
        from harness_opt.evaluate.evaluator import evaluate
        from harness_opt.harness.lineage import resolve_version
        from harness_opt.harness.version import HarnessVersion
        from harness_opt.llm.catalog import validate_model

        given = options.given()
        config = options.build(EvalConfig, allow_test=given.get("split") == "test")
        # Bad input fails here, before the progress bar is drawn.
        version = HarnessVersion.load(resolve_version(str(harness)))
        suite_obj = load_suite_with_options(suite, user_model=user_model, data=data, judge_model=judge_model)
        validate_model(config.model or version.manifest.model.name)
        console = Console()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("score {task.fields[score]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=json_out,
        ) as bar:
            job = bar.add_task("evaluating", total=None, score="-")
            totals = {"score": 0.0, "n": 0}

            def progress(done: int, total: int, rollout: object) -> None:
                if rollout is not None:
                    totals["score"] += getattr(rollout, "score", 0.0)
                    totals["n"] += 1
                shown = f"{totals['score'] / totals['n']:.3f}" if totals["n"] else "-"
                bar.update(job, completed=done, total=total, score=shown)

            result = evaluate(version, suite_obj, config, progress=progress)
        if json_out:
            typer.echo(result.model_dump_json(exclude={"rollouts"}, indent=2))
        else:
            render_result(result, console)
        if result.degraded:
            from harness_opt.evaluate.summary import Degraded

            raise Degraded(result.degraded, shown=True)
