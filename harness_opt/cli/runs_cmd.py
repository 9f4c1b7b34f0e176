"""`harness-opt runs`: recent eval and optimize invocations, newest first."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    @app.command("runs")
    def runs(limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20) -> None:
        """List recent runs from the ledger (safe to use while another process is evaluating)."""
        from harness_opt.ledger import Ledger

        rows = Ledger().query(
            "SELECT run_id, kind, status, started, config, summary, isolation FROM runs "
            "ORDER BY started DESC LIMIT ?",
            [limit],
        )
        table = Table(title="Runs")
        for col in ("run", "kind", "status", "started", "harness", "suite/split", "score", "sandbox"):
            table.add_column(col)
        for row in rows:
            config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"] or "{}")
            summary = (
                row["summary"] if isinstance(row["summary"], dict) else json.loads(row["summary"] or "{}")
            )
            score = summary.get("summary", {}).get("score")
            sandbox = row["isolation"] or summary.get("isolation") or "-"  # older rows: the summary's
            table.add_row(
                row["run_id"],
                row["kind"],
                row["status"] or "running",
                str(row["started"])[:19],
                str(config.get("harness", "")),
                f"{config.get('suite', '')}/{config.get('split', '')}",
                f"{score:.3f}" if isinstance(score, int | float) else "-",
                sandbox if sandbox in ("bwrap", "-") else f"[yellow]{sandbox}[/]",
            )
        Console().print(table)
