"""`harness-opt doctor`: a readiness check before an overnight run (PASS / WARN / FAIL, each with a fix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from harness_opt.cli.options import Options, derived
from harness_opt.cli.paths import input_folder
from harness_opt.search.config import OptimizeConfig

_COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @derived(
        OptimizeConfig,
        only={
            "model",
            "isolation",
            "budget.wall_s",
            "budget.dollars",
            "llm.api_base",
            "llm.api_key_env",
            "llm.timeout_s",
        },
        defaults={"budget.wall_s": None},
    )
    def doctor_command(
        suite: Annotated[Path, typer.Argument(help="Suite folder with a suite.toml.")],
        harness: Annotated[
            Path | None, typer.Argument(help="Harness version to check (noise, cost); optional.")
        ] = None,
        full: Annotated[
            bool, typer.Option("--full", help="Measure noise on 30 val tasks instead of 10.")
        ] = False,
        *,
        options: Options,
    ) -> None:
        """Check splits, sealed test, scorer determinism, noise and smallest detectable gain, sandbox,
        model key and endpoint (one pre-flight call), budget and cost per iteration, with the options
        the optimize run will have. Exits 1 when a line is FAIL (a noise check degraded by model
        failures is a FAIL, never a PASS)."""
        from harness_opt.harness.lineage import resolve_version
        from harness_opt.trust.doctor import doctor

        # a path that is not there is a mistake on the command line, not a finding about the suite
        input_folder(suite, "SUITE", "pass a suite folder like tasks/banking77 (it holds a suite.toml)")
        if harness is not None:
            harness = resolve_version(str(harness))
        run = options.build(OptimizeConfig, harness=harness or suite, suite=suite)
        plan = run.budget if options.given().get("budget") else None
        report = doctor(
            suite, harness, model=run.model, budget=plan, quick=not full, isolation=run.isolation, llm=run.llm
        )
        console = Console()
        console.print(report.title, highlight=False, markup=False)
        for line in report.lines:
            colour = _COLOURS[line.status]
            text = Text.assemble((f"{line.status:4}", colour), f"  {line.check:<12} {line.detail}")
            console.print(text, highlight=False)
            if line.fix and line.status != "PASS":
                console.print(f"      fix: {line.fix}", highlight=False, markup=False)
        if report.failed:
            raise typer.Exit(1)
