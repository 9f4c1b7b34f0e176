"""`harness-opt optimize`: the overnight loop, with a live display and a closing summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from harness_opt.cli.options import Options, derived
from harness_opt.cli.suite_options import suite_options
from harness_opt.search.config import OptimizeConfig

if TYPE_CHECKING:
    from harness_opt.propose.base import MetaSpend
    from harness_opt.search.records import CandidateRecord, OptimizeResult, SplitFigures

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
                escape(r.label),
                escape(r.mechanism),
                "-" if r.val_score is None else f"{r.val_score:.3f}",
                "-" if r.delta is None else f"{r.delta:+.3f}",
                "-" if r.p_value is None else f"{r.p_value:.3g}",
                f"[{_STYLE[r.outcome]}]{r.outcome}[/]",
            )
        return Group(
            Panel(f"{self.header}\n{escape(self.state)}", title="harness-opt optimize"), self.progress, table
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
        shown = f"val {val_score:.3f}   ·   budget: {escape(budget)}"
        self.header = f"incumbent [bold]{escape(label)}[/]  {shown}"
        self._refresh()


class LineDisplay:
    """For logs and CI (no terminal): one line per event, evaluation progress every 25%."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last: tuple[str, int] = ("", -1)

    def status(self, text: str) -> None:
        self.console.print(f"· {text}", highlight=False, markup=False)

    def eval_progress(self, what: str, done: int, total: int) -> None:
        quarter = (4 * done) // total if total else 4
        if (what, quarter) != self.last:
            self.last = (what, quarter)
            self.console.print(f"  {what}: {done}/{total}", highlight=False, markup=False)

    def candidate(self, record: CandidateRecord) -> None:
        val = "-" if record.val_score is None else f"{record.val_score:.3f}"
        spent = f" · meta {spend_text(record.spend)}" if record.spend and record.spend.model else ""
        self.console.print(
            f"→ it {record.iteration} {record.label} [{record.mechanism}] val {val}: "
            f"{record.outcome} ({record.reason}){spent}",
            highlight=False,
            markup=False,
        )

    def incumbent(self, label: str, val_score: float, budget: str) -> None:
        self.console.print(
            f"incumbent {label} val {val_score:.3f} · budget: {budget}", highlight=False, markup=False
        )


def spend_text(spend: MetaSpend) -> str:
    """Calls, tokens, dollars and time of meta-model spend, in one short phrase."""
    calls = ""
    if spend.calls:
        calls = f"{spend.calls} calls, {spend.tokens_in:,} tokens in / {spend.tokens_out:,} out, "
    return f"{calls}${spend.cost_usd:.4f}, {spend.seconds:.1f} s"


def print_meta(result: OptimizeResult, console: Console) -> None:
    """The meta-agent's share of the run: proposals, calls, tokens, dollars, time, context use."""
    meta = result.meta
    if not meta.model:
        return
    proposals = sum(1 for c in result.candidates if c.spend is not None and c.spend.model)
    window = ""
    if meta.context_tokens and meta.calls:
        window = f"; largest call {meta.largest_call_tokens:,} of {meta.context_tokens:,} tokens"
    console.print(
        f"meta-agent {meta.model}: {proposals} proposals · {spend_text(meta)} "
        f"(included in the total){window}",
        highlight=False,
        markup=False,
    )


def render_summary(result: OptimizeResult, console: Console) -> None:
    table = Table(title=escape(f"optimize {result.run_id} · model {result.model}"))
    better = "higher" if result.direction == "max" else "lower"
    table.add_column(f"{result.metric} ({better} is better)")
    table.add_column(f"val ({result.baseline_val.interval})", justify="right")
    with_test = result.baseline_test is not None
    if with_test:
        table.add_column(f"test ({result.baseline_test.interval})", justify="right")  # type: ignore[union-attr]

    def fmt(fig: SplitFigures | None) -> str:
        if fig is None:
            return "-"
        return f"{fig.score:.3f} [{fig.ci[0]:.3f}, {fig.ci[1]:.3f}] n={fig.n_tasks}"

    for name, val, test in (
        (f"baseline {result.baseline_label}", result.baseline_val, result.baseline_test),
        (f"best {result.best_label}", result.best_val, result.best_test),
    ):
        table.add_row(escape(name), fmt(val), *([fmt(test)] if with_test else []))
    console.print(table)
    if result.test_p_value is not None:
        console.print(f"test: paired p-value best vs baseline = {result.test_p_value:.3g}")
    kept = result.kept
    if kept:
        console.print("[bold]kept changes[/]")
        for r in kept:
            console.print(
                f"  {escape(r.label)}  [green]{r.delta:+.3f}[/]"
                + ("" if r.p_value is None else f" (p={r.p_value:.3g})")
                + escape(f"  {r.mechanism}: {r.hypothesis}")
            )
    else:
        console.print("no candidate beat the baseline by more than the noise: the baseline stays.")
    made = [c for c in result.candidates[1:] if c.proposed]
    invalid = sum(1 for c in made if c.outcome == "invalid")
    failed = len(result.candidates) - 1 - len(made)
    failures = f", {failed} failed proposals" if failed else ""
    console.print(
        f"{len(made)} candidates ({invalid} invalid{failures}) · {result.rollouts_run} rollouts run · "
        f"${result.cost_usd:.4f} · {result.elapsed_s / 60:.1f} min · stopped: {result.stop_reason}",
        markup=False,
    )
    print_meta(result, console)
    console.print(
        f"best version: [bold]{escape(result.best_path)}[/]   noise (baseline repeats): {result.noise:.3f}"
    )
    if result.plot:
        console.print(f"progress plot: {result.plot}", markup=False)
    console.print(f"resume or extend: harness-opt optimize ... --resume {result.run_id}")


def draw_plot(result: OptimizeResult) -> None:
    """The progress plot, drawn here (the loop only reports): the run's folder in the home dir."""
    try:
        from harness_opt.report.progress_plot import plot_progress
    except ImportError:  # matplotlib missing: the summary still stands
        return
    result.plot = str(plot_progress(result))


def register(app: typer.Typer) -> None:
    @app.command("optimize")
    @derived(OptimizeConfig, exclude={"harness", "suite", "llm.cache"})
    def optimize_command(
        harness: Annotated[
            Path,
            typer.Argument(
                help="Seed harness version dir (harnesses/banking77/v0001), or a training suite folder."
            ),
        ],
        suite: Annotated[
            Path | None,
            typer.Option(help="Suite folder (omit when HARNESS is a training suite folder)."),
        ] = None,
        resume: Annotated[str | None, typer.Option(help="Continue an interrupted run by its id.")] = None,
        *,
        options: Options,
    ) -> None:
        """Improve HARNESS overnight: learn from evidence, keep only real gains on val.

        Agent harnesses: the baseline is evaluated twice (noise), each candidate is validated (loads,
        renders, runs one train task) before its val evaluation, and a paired per-task test decides;
        the sealed test split is evaluated once at the end. Training suites (tasks/nanogpt): the seed
        trains with several seeds (noise), each candidate trains once, a gain must beat the noise.
        Kill it any time: --resume RUN continues without re-running a finished rollout or run.
        """
        from harness_opt.domains.target import resolve_target
        from harness_opt.search.loop import optimize

        harness, suite_dir = resolve_target(harness, suite)
        config = options.build(OptimizeConfig, harness=harness, suite=suite_dir)
        suite_options(config.user_model, config.data, config.judge_model)  # bad models fail here
        console = Console()
        if console.is_terminal:
            display = LiveDisplay(console)
            with display.live:
                result = optimize(config, display=display, resume=resume)
        else:
            result = optimize(config, display=LineDisplay(console), resume=resume)
        draw_plot(result)
        render_summary(result, console)
        if result.degraded:
            from harness_opt.evaluate.summary import Degraded

            console.print(
                Text.assemble(
                    ("DEGRADED:", "bold red"),
                    f" {result.degraded}; its decisions were taken only "
                    "on evaluations that were not degraded. Resume it to retry the failed "
                    f"rollouts: harness-opt optimize ... --resume {result.run_id}",
                ),
                highlight=False,
            )
            raise Degraded(result.degraded, shown=True)
