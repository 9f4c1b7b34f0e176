"""`harness-opt diff A B`: what changed between two versions, and which tasks it fixed or broke."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the report's statistics import scipy: not at CLI start-up
    from harness_opt.harness.diff import ToolChange, VersionDiff, WordOp
    from harness_opt.report.compare import DiffReport, ResultsDiff


def words_text(ops: list[WordOp]) -> Text:
    """A word diff for the terminal: deletions red and struck through, insertions green."""
    text = Text()
    for op, chunk in ops:
        style = "" if op == "equal" else "red strike" if op == "delete" else "bold green"
        text.append(chunk, style=style)
    return text


def _tool_line(change: ToolChange) -> Text:
    if change.words:
        where = f"{change.tool}: parameter '{change.param}'" if change.param else change.tool
        return Text(f"{where} description: ") + words_text(change.words)
    return Text(change.summary())


def print_versions(diff: VersionDiff, console: Console) -> None:
    console.rule(f"[bold]{escape(diff.a_label)}[/] → [bold]{escape(diff.b_label)}[/]")
    if diff.identical:
        console.print("same content hash: the two versions behave identically")
        return
    _print_lineage(diff, console)
    if diff.settings:
        console.print("[bold]harness.toml settings[/]")
        for s in diff.settings:
            console.print(f"  {s.key}: {s.before!r} → {s.after!r}", highlight=False, markup=False)
    if diff.tools:
        console.print("[bold]tools.json[/]")
        for tool_change in diff.tools:
            console.print(Text("  ") + Text(f"[{tool_change.kind}] ", style="cyan") + _tool_line(tool_change))
    _print_files(diff, console)


def _print_lineage(diff: VersionDiff, console: Console) -> None:
    console.print(
        "[bold]lineage[/]"
        + (escape(f" (common ancestor {diff.common_ancestor})") if diff.common_ancestor else "")
    )
    for step in diff.lineage:
        arrow = "←" if step.direction == "from_a" else "→"
        console.print(
            f"  {arrow} [bold]{escape(step.label)}[/] [dim]{escape(step.proposer)}[/]  "
            + escape(step.hypothesis),
            highlight=False,
        )
        for change in step.changes:
            console.print(f"      • {change}", highlight=False, markup=False)


def _print_files(diff: VersionDiff, console: Console) -> None:
    for f in diff.files:
        console.print(f"[bold]{escape(f.path)}[/] ({f.status})")
        if f.binary:
            console.print("  binary file differs")
        elif f.summary:
            console.print(f"  {f.summary} (not shown)", highlight=False, markup=False)
        else:
            from rich.syntax import Syntax  # pygments: only when a diff is shown

            console.print(Syntax(f.diff, "diff", theme="ansi_dark", word_wrap=True))


def _money(x: float) -> str:
    return f"${x:,.4f}"


def print_results(res: ResultsDiff, console: Console) -> None:
    console.rule(
        escape(f"results on {res.suite}/{res.split}: {res.n_tasks} tasks, {res.n_rollouts} rollouts per side")
    )
    table = Table(show_edge=False)
    for col in ("", "version", "model", "score (95% CI)", "cost", "tokens", "latency/rollout"):
        table.add_column(col)
    for name, side in (("A", res.a), ("B", res.b)):
        table.add_row(
            name,
            escape(side.label),
            escape(side.model),
            f"{side.score:.3f} [{side.ci[0]:.3f}, {side.ci[1]:.3f}]",
            _money(side.cost_usd),
            f"{side.tokens:,}",
            f"{side.latency_s:.2f}s",
        )
    table.add_row(
        "B−A",
        "",
        "",
        f"{res.delta:+.3f} [{res.delta_ci[0]:+.3f}, {res.delta_ci[1]:+.3f}] p={res.p_value:.3g}",
        f"{res.b.cost_usd - res.a.cost_usd:+,.4f}",
        f"{res.b.tokens - res.a.tokens:+,}",
        f"{res.b.latency_s - res.a.latency_s:+.2f}s",
        style="bold",
    )
    console.print(table)
    fixed, broken = len(res.fixed), len(res.broken)
    console.print(f"paired test: {res.method}; {fixed} fixed, {broken} broken", markup=False)
    if res.infra_a or res.infra_b:
        console.print(
            f"infrastructure failures (not compared, not scored): A {res.infra_a}, B {res.infra_b}",
            markup=False,
        )
    for why in res.degraded:
        console.print(
            Text.assemble(("degraded: ", "bold red"), f"{why}; the comparison is over what survived"),
            highlight=False,
        )
    if res.flips:
        flips = Table(
            title="per-task flips (verdict = mean passed over common trials >= 0.5)", show_edge=False
        )
        for col in ("task", "flip", "A", "B", "trace A", "trace B"):
            flips.add_column(col)
        for f in sorted(res.flips, key=lambda f: (f.kind, f.task_id)):
            flips.add_row(
                escape(f.task_id),
                Text(f.kind, style="green" if f.kind == "fixed" else "red"),
                f"{f.score_a:.2f}",
                f"{f.score_b:.2f}",
                escape(f.trace_a or "-"),
                escape(f.trace_b or "-"),
            )
        console.print(flips)


def print_report(report: DiffReport, console: Console) -> None:
    if report.versions is not None:
        print_versions(report.versions, console)
    elif report.versions_note:
        console.print(f"[yellow]{escape(report.versions_note)}[/]")
    if report.scan_findings:
        console.print(f"[bold]trust scan of {escape(report.b_label)}[/] (worst: {report.scan_severity})")
        style = {"reject": "red", "flag": "yellow", "note": "dim"}
        for f in report.scan_findings:
            where = f"{f.get('file') or ''}:{f.get('line') or ''}".strip(":")
            console.print(
                f"  [{style.get(f.get('severity', ''), 'white')}]{f.get('severity')}[/] "
                + escape(f"{f.get('kind')} {where} {f.get('message')}"),
                highlight=False,
            )
    if report.results is not None:
        print_results(report.results, console)
    for missing in report.missing:
        console.print(
            f"[yellow]{escape(missing.message)}[/]; to get them run:\n  {escape(missing.command)}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff_command(
        a: Annotated[str, typer.Argument(help="Version A: a directory, agent@vN, or a hash prefix.")],
        b: Annotated[str, typer.Argument(help="Version B (compared against A).")],
        suite: Annotated[
            str | None,
            typer.Option(
                help="Suite folder or name (default: the one both have results on).",
                envvar="HARNESS_OPT_SUITE",
            ),
        ] = None,
        split: Annotated[
            str, typer.Option(help="Split to compare results on.", envvar="HARNESS_OPT_SPLIT")
        ] = "val",
        model: Annotated[str | None, typer.Option(help="Only rollouts of this model.")] = None,
        root: Annotated[Path, typer.Option(help="Where agent@vN specs are looked up.")] = Path("harnesses"),
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead.")] = False,
    ) -> None:
        """Files, tools.json (semantically), lineage notes and paired results of B against A."""
        from harness_opt.report.compare import diff

        report = diff(a, b, suite=suite, split=split, model=model, root=root)
        if as_json:
            typer.echo(report.model_dump_json(indent=2))
            return
        print_report(report, Console())
