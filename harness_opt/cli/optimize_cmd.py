"""`harness-opt optimize`: the overnight loop, with a live display and a closing summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from harness_opt.search.records import CandidateRecord, OptimizeResult

_STYLE = {"accepted": "green", "rejected": "yellow", "invalid": "red", "baseline": "cyan"}


class LiveDisplay:
    """Iteration, incumbent and budget on top; the evaluation in flight; the last decisions below."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.header = "starting"
        self.state = ""
        self.rows: list[CandidateRecord] = []
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.job = self.progress.add_task("-", total=None)
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def _render(self) -> Group:
        table = Table(show_header=True, header_style="bold", expand=True)
        for col in ("it", "candidate", "mechanism", "val", "Δ", "p", "outcome"):
            table.add_column(col, overflow="fold")
        for r in self.rows[-8:]:
            table.add_row(
                str(r.iteration),
                r.label,
                r.mechanism,
                "-" if r.val_score is None else f"{r.val_score:.3f}",
                "-" if r.delta is None else f"{r.delta:+.3f}",
                "-" if r.p_value is None else f"{r.p_value:.3g}",
                f"[{_STYLE[r.outcome]}]{r.outcome}[/]",
            )
        return Group(
            Panel(f"{self.header}\n{self.state}", title="harness-opt optimize"), self.progress, table
        )

    def _refresh(self) -> None:
        self.live.update(self._render())

    def status(self, text: str) -> None:
        self.state = text
        self._refresh()

    def eval_progress(self, what: str, done: int, total: int) -> None:
        self.progress.update(self.job, description=what, completed=done, total=total)

    def candidate(self, record: CandidateRecord) -> None:
        self.rows.append(record)
        self._refresh()

    def incumbent(self, label: str, val_score: float, budget: str) -> None:
        self.header = f"incumbent [bold]{label}[/]  val {val_score:.3f}   ·   budget: {budget}"
        self._refresh()


class LineDisplay:
    """For logs and CI (no terminal): one line per event, evaluation progress every 25%."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last: tuple[str, int] = ("", -1)

    def status(self, text: str) -> None:
        self.console.print(f"· {text}", highlight=False)

    def eval_progress(self, what: str, done: int, total: int) -> None:
        quarter = (4 * done) // total if total else 4
        if (what, quarter) != self.last:
            self.last = (what, quarter)
            self.console.print(f"  {what}: {done}/{total}", highlight=False)

    def candidate(self, record: CandidateRecord) -> None:
        val = "-" if record.val_score is None else f"{record.val_score:.3f}"
        self.console.print(
            f"→ it {record.iteration} {record.label} [{record.mechanism}] val {val}: "
            f"{record.outcome} ({record.reason})",
            highlight=False,
        )

    def incumbent(self, label: str, val_score: float, budget: str) -> None:
        self.console.print(f"incumbent {label} val {val_score:.3f} · budget: {budget}", highlight=False)


def render_summary(result: OptimizeResult, console: Console) -> None:
    table = Table(title=f"optimize {result.run_id} · model {result.model}")
    table.add_column("")
    table.add_column("val (95% CI)", justify="right")
    table.add_column("test (95% CI)", justify="right")

    def fmt(fig: object) -> str:
        if fig is None:
            return "-"
        return f"{fig.score:.3f} [{fig.ci[0]:.3f}, {fig.ci[1]:.3f}] n={fig.n_tasks}"  # type: ignore[attr-defined]

    table.add_row(f"baseline {result.baseline_label}", fmt(result.baseline_val), fmt(result.baseline_test))
    table.add_row(f"best {result.best_label}", fmt(result.best_val), fmt(result.best_test))
    console.print(table)
    if result.test_p_value is not None:
        console.print(f"test: paired p-value best vs baseline = {result.test_p_value:.3g}")
    kept = result.kept
    if kept:
        console.print("[bold]kept changes[/]")
        for r in kept:
            console.print(
                f"  {r.label}  [green]{r.delta:+.3f}[/]"
                + ("" if r.p_value is None else f" (p={r.p_value:.3g})")
                + f"  {r.mechanism}: {r.hypothesis}"
            )
    else:
        console.print("no candidate beat the baseline by more than the noise: the baseline stays.")
    n = len(result.candidates) - 1
    invalid = sum(1 for c in result.candidates if c.outcome == "invalid")
    console.print(
        f"{n} candidates ({invalid} invalid) · {result.rollouts_run} rollouts run · "
        f"${result.cost_usd:.4f} · {result.elapsed_s / 60:.1f} min · stopped: {result.stop_reason}"
    )
    console.print(f"best version: [bold]{result.best_path}[/]   noise (baseline rerun): {result.noise:.3f}")
    if result.plot:
        console.print(f"progress plot: {result.plot}")
    console.print(f"resume or extend: harness-opt optimize ... --resume {result.run_id}")


def register(app: typer.Typer) -> None:
    @app.command("optimize")
    def optimize_command(
        harness: Annotated[
            Path, typer.Argument(help="Seed harness version dir, e.g. harnesses/banking77/v0001.")
        ],
        suite: Annotated[
            Path | None,
            typer.Option(
                help="Suite folder (omit when HARNESS is a training suite folder).",
                envvar="HARNESS_OPT_SUITE",
            ),
        ] = None,
        proposer: Annotated[
            str,
            typer.Option(
                help="operators (offline), llm (meta-model) or agent (coding-agent CLI).",
                envvar="HARNESS_OPT_PROPOSER",
            ),
        ] = "operators",
        budget: Annotated[
            str, typer.Option(help="Wall time for the whole run, e.g. 20m, 8h.", envvar="HARNESS_OPT_BUDGET")
        ] = "20m",
        dollars: Annotated[
            float | None, typer.Option(help="Stop when this much was spent.", envvar="HARNESS_OPT_DOLLARS")
        ] = None,
        iterations: Annotated[
            int | None, typer.Option(help="Stop after N proposal rounds.", envvar="HARNESS_OPT_ITERATIONS")
        ] = None,
        rollouts: Annotated[
            int | None, typer.Option(help="Stop after N new rollouts.", envvar="HARNESS_OPT_ROLLOUTS")
        ] = None,
        parallel: Annotated[
            int, typer.Option(min=1, help="Candidates per iteration.", envvar="HARNESS_OPT_PARALLEL")
        ] = 1,
        meta_model: Annotated[
            str | None, typer.Option(help="Model of the llm proposer.", envvar="HARNESS_OPT_META_MODEL")
        ] = None,
        agent_cmd: Annotated[
            str | None, typer.Option(help="Command of the agent proposer.", envvar="HARNESS_OPT_AGENT_CMD")
        ] = None,
        model: Annotated[
            str | None, typer.Option(help="Task model (default: harness.toml).", envvar="HARNESS_OPT_MODEL")
        ] = None,
        trials: Annotated[
            int, typer.Option(min=1, help="Trials per val task.", envvar="HARNESS_OPT_TRIALS")
        ] = 1,
        concurrency: Annotated[
            int, typer.Option(min=1, help="Rollouts in flight.", envvar="HARNESS_OPT_CONCURRENCY")
        ] = 4,
        alpha: Annotated[float, typer.Option(help="Significance level of the acceptance test.")] = 0.05,
        val_limit: Annotated[int | None, typer.Option(help="Use the first N val tasks.")] = None,
        test_limit: Annotated[int | None, typer.Option(help="Use the first N test tasks at the end.")] = None,
        train_sample: Annotated[int, typer.Option(help="Train tasks run per iteration for evidence.")] = 40,
        skip_test: Annotated[
            bool, typer.Option("--skip-test", help="Leave the sealed test split untouched.")
        ] = False,
        stop_file: Annotated[Path | None, typer.Option(help="Touch this file to stop cleanly.")] = None,
        evidence: Annotated[
            list[Path] | None,
            typer.Option(
                help="Imported production traces (traces/imported/...) shown to the llm and agent proposers; "
                "acceptance is still decided on the suite.",
                envvar="HARNESS_OPT_EVIDENCE",
            ),
        ] = None,
        resume: Annotated[str | None, typer.Option(help="Continue an interrupted run by its id.")] = None,
        seed: Annotated[int, typer.Option(help="Seed for sampling and proposers.")] = 0,
        isolation: Annotated[str, typer.Option(help="Sandbox: auto, bwrap, unshare or none.")] = "auto",
        force: Annotated[
            bool, typer.Option("--force", help="Start even if `harness-opt doctor` reports a FAIL.")
        ] = False,
        executor: Annotated[
            str,
            typer.Option(
                help="Training domain: local (one run per GPU) or ray.", envvar="HARNESS_OPT_EXECUTOR"
            ),
        ] = "local",
        address: Annotated[
            str | None,
            typer.Option(help="Ray cluster address for --executor ray.", envvar="HARNESS_OPT_RAY_ADDRESS"),
        ] = None,
    ) -> None:
        """Improve HARNESS overnight: learn from failing train traces, keep only real val gains.

        The baseline is evaluated twice (noise), each candidate is validated (loads, renders, runs one
        train task) before its val evaluation, and a paired per-task test decides. The sealed test
        split is evaluated once at the end for the baseline and the best version. Kill it any time:
        --resume RUN continues without re-running a finished rollout.
        """
        from harness_opt.domains.base import resolve_target
        from harness_opt.errors import UserError
        from harness_opt.search.budget import Budget, parse_duration
        from harness_opt.search.config import OptimizeConfig
        from harness_opt.search.loop import optimize

        if proposer not in ("operators", "llm", "agent"):
            raise UserError(f"unknown proposer '{proposer}'", fix="use operators, llm or agent")
        if isolation not in ("auto", "bwrap", "unshare", "none"):
            raise UserError(f"unknown isolation '{isolation}'", fix="use auto, bwrap, unshare or none")
        if executor not in ("local", "ray"):
            raise UserError(f"unknown executor '{executor}'", fix="use local or ray")
        harness, suite_dir = resolve_target(harness, suite)
        config = OptimizeConfig(
            harness=harness,
            suite=suite_dir,
            executor=executor,  # type: ignore[arg-type]
            address=address,
            proposer=proposer,  # type: ignore[arg-type]
            meta_model=meta_model,
            agent_cmd=agent_cmd,
            budget=Budget(
                wall_s=parse_duration(budget), dollars=dollars, iterations=iterations, rollouts=rollouts
            ),
            parallel=parallel,
            trials=trials,
            concurrency=concurrency,
            model=model,
            alpha=alpha,
            val_limit=val_limit,
            test_limit=test_limit,
            train_sample=train_sample,
            skip_test=skip_test,
            stop_file=stop_file,
            evidence=evidence or [],
            seed=seed,
            isolation=isolation,  # type: ignore[arg-type]
            force=force,
        )
        console = Console()
        if console.is_terminal:
            display = LiveDisplay(console)
            with display.live:
                result = optimize(config, display=display, resume=resume)
        else:
            result = optimize(config, display=LineDisplay(console), resume=resume)
        render_summary(result, console)
