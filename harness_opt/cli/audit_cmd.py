"""`harness-opt audit`: what a run's traces are missing before a meta-agent reads them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command("audit")
    def audit_command(
        run: Annotated[str, typer.Argument(help="Run id (or a unique prefix), see `harness-opt runs`.")],
        strict: Annotated[
            bool, typer.Option("--strict", help="Exit 1 when any hole is found (for CI).")
        ] = False,
    ) -> None:
        """Count LLM calls without tokens or cost, tool calls without results, rollouts without a
        final answer, truncated messages and errors without a reason, with example references."""
        from harness_opt.trust.audit import audit

        report = audit(run)
        Console().print(report.render(), highlight=False, markup=False)
        if strict and not report.clean:
            raise typer.Exit(1)
