"""`harness-opt premortem`: how this suite's metric could be gamed, from cheap no-skill probes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

_COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}


def register(app: typer.Typer) -> None:
    @app.command("premortem")
    def premortem_command(
        suite: Annotated[Path, typer.Argument(help="Suite folder with a suite.toml.")],
        limit: Annotated[int, typer.Option(min=1, help="Val tasks to probe.")] = 200,
        seed: Annotated[int, typer.Option(help="Seed of the random-label probe.")] = 0,
    ) -> None:
        """Score constant, empty, echoed, random and flattering answers with the suite's own scorer
        (no model calls) and say which ways of gaming the metric they reveal."""
        from harness_opt.trust.premortem import premortem

        report = premortem(suite, limit=limit, seed=seed)
        console = Console()
        console.print(report.title, highlight=False, markup=False)
        for line in report.lines:
            status = (f"{line.status:4}", _COLOURS[line.status])
            console.print(Text.assemble(status, f"  {line.check:<28} {line.detail}"), highlight=False)
            if line.fix and line.status != "PASS":
                console.print(f"      fix: {line.fix}", highlight=False, markup=False)
