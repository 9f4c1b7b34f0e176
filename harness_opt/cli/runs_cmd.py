"""`harness-opt runs`: recent eval and optimize invocations, newest first, with their true status.

A run row says `running` until its process ends it; one whose process is gone (a kill -9, a machine
that went down) is shown as `dead`, with how to go on (`ledger.writer.run_liveness`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

_STYLE = {"ok": "green", "finished": "green", "degraded": "red", "failed": "red", "dead": "red"}


def register(app: typer.Typer) -> None:
    @app.command("runs")
    def runs(limit: Annotated[int, typer.Option(min=1, help="How many runs to show.")] = 20) -> None:
        """List recent runs from the ledger (safe to use while another process is evaluating). A run
        whose process died without closing it is shown as dead; degraded runs lost too many rollouts
        to infrastructure failures."""
        from harness_opt.ledger import Ledger
        from harness_opt.ledger.writer import run_liveness

        ledger = Ledger()
        rows = ledger.query(
            "SELECT run_id, kind, status, started, config, summary, isolation, pid, host FROM runs "
            "ORDER BY started DESC LIMIT ?",
            [limit],
        )
        table = Table(title="Runs")
        for col in ("run", "kind", "status", "started", "harness", "suite/split", "score", "sandbox"):
            table.add_column(col)
        dead = []
        for row in rows:
            config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"] or "{}")
            summary = (
                row["summary"] if isinstance(row["summary"], dict) else json.loads(row["summary"] or "{}")
            )
            score = summary.get("summary", {}).get("score")
            sandbox = row["isolation"] or summary.get("isolation") or "-"  # older rows: the summary's
            status = run_liveness(row, ledger.path)
            if status == "dead":
                dead.append((row["kind"], row["run_id"]))
            shown = "dead (was running; its process is gone)" if status == "dead" else status
            table.add_row(
                Text(row["run_id"]),
                row["kind"],
                Text(shown, style=_STYLE.get(status, "")),
                str(row["started"])[:19],
                Text(str(config.get("harness", ""))),
                Text(f"{config.get('suite', '')}/{config.get('split', '')}"),
                f"{score:.3f}" if isinstance(score, int | float) else "-",
                Text(sandbox, style="" if sandbox in ("bwrap", "-") else "yellow"),
            )
        console = Console()
        console.print(table)
        for kind, run_id in dead:
            hint = (
                f"harness-opt optimize ... --resume {run_id}"
                if kind == "optimize"
                else "re-run its command (finished rollouts are reused)"
            )
            line = f"run {run_id} died without closing; to go on: {hint}"
            console.print(line, markup=False, highlight=False)
