"""`harness-opt doctor`: a readiness check before an overnight run (PASS / WARN / FAIL, each with a fix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_command(
        suite: Annotated[Path, typer.Argument(help="Suite folder with a suite.toml.")],
        harness: Annotated[
            Path | None, typer.Argument(help="Harness version to check (noise, cost); optional.")
        ] = None,
        model: Annotated[
            str | None,
            typer.Option(help="litellm model; default from harness.toml.", envvar="HARNESS_OPT_MODEL"),
        ] = None,
        budget: Annotated[
            str | None, typer.Option(help="The run's wall budget, e.g. 8h.", envvar="HARNESS_OPT_BUDGET")
        ] = None,
        dollars: Annotated[
            float | None, typer.Option(help="The run's dollar cap.", envvar="HARNESS_OPT_DOLLARS")
        ] = None,
        full: Annotated[
            bool, typer.Option("--full", help="Measure noise on 30 val tasks instead of 10.")
        ] = False,
        isolation: Annotated[
            str, typer.Option(help="auto, bwrap, unshare or none.", envvar="HARNESS_OPT_ISOLATION")
        ] = "auto",
    ) -> None:
        """Check splits, sealed test, scorer determinism, noise and smallest detectable gain, sandbox,
        model key, budget and cost per iteration. Exits 1 when a line is FAIL."""
        from harness_opt.search.budget import Budget, parse_duration
        from harness_opt.trust.doctor import doctor

        plan = None
        if budget or dollars:
            plan = Budget(wall_s=parse_duration(budget) if budget else None, dollars=dollars)
        report = doctor(suite, harness, model=model, budget=plan, quick=not full, isolation=isolation)
        console = Console()
        console.print(report.title, highlight=False)
        for line in report.lines:
            colour = _COLOURS[line.status]
            console.print(f"[{colour}]{line.status:4}[/]  {line.check:<12} {line.detail}", highlight=False)
            if line.fix and line.status != "PASS":
                console.print(f"      fix: {line.fix}", highlight=False)
        if report.failed:
            raise typer.Exit(1)
