"""`harness-opt leaderboard`: which version is best on a suite, at what cost."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness_opt.evaluate.summary import DEFAULT_MAX_INFRA_FAILURES

if TYPE_CHECKING:
    from harness_opt.report.leaderboard import Leaderboard


def print_board(board: Leaderboard, console: Console) -> None:
    table = Table(title=escape(f"{board.suite} / {board.split}"), show_edge=False)
    for col in (
        "#",
        "",
        "version",
        "model",
        "score (95% CI)",
        "tasks",
        "rollouts",
        "infra",
        "cost/task",
        "meta spend",
        "proposer",
        "parent",
        "sandbox",
    ):
        right = ("#", "tasks", "rollouts", "infra", "cost/task", "meta spend")
        table.add_column(col, justify="right" if col in right else "left")
    for r in board.rows:
        marks = ("★" if r.incumbent else "") + ("◆" if r.pareto else "") + ("⚠" if r.degraded else "")
        score = f"{r.score:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.n_tasks else "-"
        table.add_row(
            str(r.rank),
            marks,
            escape(r.label),
            escape(r.model),
            score,
            str(r.n_tasks),
            str(r.n_rollouts),
            f"[red]{r.n_infra}[/]" if r.degraded else str(r.n_infra),
            f"${r.cost_per_task:.5f}",
            "-" if r.meta_cost_usd is None else f"${r.meta_cost_usd:.4f} {r.meta_tokens:,} tok",
            escape(r.proposer),
            escape(r.parent or "-"),
            escape(r.isolation),
            style="bold" if r.incumbent else None,
        )
    console.print(table)
    how = f"★ incumbent: {board.incumbent.how}" if board.incumbent else "★ incumbent: none"
    console.print(
        f"{how}   ◆ Pareto set (score up, cost per task down)   meta spend: what the meta-model spent "
        "proposing the version",
        highlight=False,
        markup=False,
    )
    console.print(
        "infra: rollouts lost to infrastructure failures (model outage, sandbox), not in the score; "
        "⚠ degraded: more of them than the threshold (ranked last; re-evaluate the version to retry them)",
        highlight=False,
        markup=False,
    )


def print_experiments(run_id: str | None, as_json: bool) -> None:
    """The training domain's table: every run of one optimize run, best metric first."""
    from harness_opt.domains.experiments import experiment_rows

    rows = experiment_rows(run_id=run_id)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    console = Console()
    if not rows:
        console.print(
            "[yellow]no training experiments in the ledger[/]; run: harness-opt optimize tasks/nanogpt"
        )
        return
    table = Table(
        title=escape(f"experiments of {rows[0].run_id} ({rows[0].metric}, lower is better)"), show_edge=False
    )
    for col in ("version", rows[0].metric, "memory_gb", "status", "description"):
        table.add_column(col, justify="right" if col in (rows[0].metric, "memory_gb") else "left")
    style = {"keep": "green", "discard": "yellow", "crash": "red"}
    for r in rows:
        table.add_row(
            escape(r.label),
            "-" if r.value is None else f"{r.value:.4f}",
            "-" if r.memory_gb is None else f"{r.memory_gb:.1f}",
            Text(r.status, style=style.get(r.status, "")),
            escape(r.description),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("leaderboard")
    def leaderboard_command(
        suite: Annotated[
            str | None,
            typer.Option(help="Suite folder or name (default: every suite).", envvar="HARNESS_OPT_SUITE"),
        ] = None,
        split: Annotated[str, typer.Option(help="Split to rank on.", envvar="HARNESS_OPT_SPLIT")] = "val",
        model: Annotated[str | None, typer.Option(help="Only rollouts of this model.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead.")] = False,
        experiments: Annotated[
            bool,
            typer.Option("--experiments", help="Training runs (results.tsv view); auto for training suites."),
        ] = False,
        run: Annotated[
            str | None, typer.Option(help="With --experiments: this optimize run (default latest).")
        ] = None,
        max_infra_failures: Annotated[
            float,
            typer.Option(
                min=0.0,
                max=1.0,
                help="Share of a version's rollouts lost to infrastructure failures above which it is "
                "degraded (ranked last, marked ⚠).",
            ),
        ] = DEFAULT_MAX_INFRA_FAILURES,
    ) -> None:
        """Versions ranked by score with CI, cost per task, rollouts, proposer and parent."""
        import json
        from pathlib import Path

        from harness_opt.search.domain import suite_domain_name

        if experiments or (suite and suite_domain_name(Path(suite)) == "training"):
            print_experiments(run, as_json)
            return

        from harness_opt.report.leaderboard import leaderboard

        boards = leaderboard(suite, split, model=model, max_infra_failures=max_infra_failures)
        if as_json:
            typer.echo(json.dumps([b.model_dump(mode="json") for b in boards], indent=2))
            return
        console = Console()
        if not boards or not any(b.rows for b in boards):
            where = f"suite {suite}" if suite else "any suite"
            console.print(
                f"[yellow]{escape(f'no results on {where} / {split} in the ledger')}[/]; evaluate a "
                "version first:\n"
                + escape(
                    f"  harness-opt eval harnesses/<agent>/v0001 --suite {suite or 'tasks/<suite>'}"
                    + ("" if split == "val" else f" --split {split}")
                ),
                highlight=False,
            )
            return
        for board in boards:
            print_board(board, console)
