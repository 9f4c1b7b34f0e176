"""`harness-opt report`: one self-contained HTML page (leaderboard, lineage, progress, diffs, traces)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness_opt.cli.paths import output_file


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        run: Annotated[
            str | None, typer.Argument(help="Optimize run id (or prefix); default: --suite.")
        ] = None,
        suite: Annotated[
            str | None,
            typer.Option(help="Suite folder or name (every version on it).", envvar="HARNESS_OPT_SUITE"),
        ] = None,
        split: Annotated[
            str, typer.Option(help="Split whose results are shown.", envvar="HARNESS_OPT_SPLIT")
        ] = "val",
        out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the HTML file.")] = Path(
            "report.html"
        ),
    ) -> None:
        """Write one HTML file that opens offline: no server, no network, no CDN."""
        from harness_opt.report.page import report

        output_file(out, "-o")  # before any work: a wrong -o fails at once
        path = report(run, suite=suite, split=split, out=out)
        size = path.stat().st_size
        typer.echo(f"wrote {path} ({size / 1024:,.0f} KiB); open it in a browser: file://{path.resolve()}")
