"""`harness-opt traces import` and `traces to-tasks`: production traces in, regression tasks out.

The lead registers these on the existing `traces` typer app:
    traces_import_cmd.register(traces_cmd.app)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def import_command(
    file: Annotated[Path, typer.Argument(help="Exported trace file.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="openai-jsonl, otel (OTLP JSON) or langfuse.")
    ] = "openai-jsonl",
    label: Annotated[
        str | None, typer.Option(help="Mark every trace failed or passed (else the file's label field says).")
    ] = None,
    label_field: Annotated[
        str, typer.Option(help="Field / attribute / score name holding the label.")
    ] = "label",
    name: Annotated[
        str | None, typer.Option(help="Stored as traces/imported/NAME.jsonl (default: file stem).")
    ] = None,
) -> None:
    """Read production conversations into our trace format, labelled failed/passed, as proposer evidence."""
    from harness_opt.traces_import import import_traces
    from harness_opt.traces_import.convert import cli_label

    out, traces = import_traces(file, format, name=name, label=cli_label(label), label_field=label_field)
    counts = Counter("passed" if t.passed else "failed" for t in traces)
    Console().print(
        f"imported {len(traces)} traces ({counts['failed']} failed, {counts['passed']} passed) -> {out}\n"
        f"use them: harness-opt optimize ... --proposer llm --evidence {out}",
        markup=False,
    )


def to_tasks_command(
    imported: Annotated[Path, typer.Argument(help="traces/imported/NAME.jsonl (or the folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file of task rows to write.")],
    scorer: Annotated[
        str, typer.Option(help="judge (rubric from the failure), exact or json_field (need `expected`).")
    ] = "judge",
    split: Annotated[str, typer.Option(help="Split the regression tasks go to.")] = "train",
    input_key: Annotated[
        str | None, typer.Option(help="Name the input column this (e.g. ticket) instead of `message`.")
    ] = None,
) -> None:
    """Turn labelled failures into suite tasks (regression cases) with a stated scorer."""
    from harness_opt.errors import UserError
    from harness_opt.traces_import import read_imported, to_task_rows

    if scorer not in ("judge", "exact", "json_field"):
        raise UserError(f"unknown scorer {scorer!r}", where="--scorer", fix="use judge, exact or json_field")
    rows = to_task_rows(read_imported(imported), scorer=scorer, split=split, input_key=input_key)  # type: ignore[arg-type]
    if not rows:
        raise UserError(
            "no failed traces to turn into tasks", where=str(imported), fix="import failures first"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    columns = [k for k in rows[0] if k not in ("id", "expected", "split", "rubric")]
    snippet = (
        f'[data]\nsource = "{out.name}"\nid = "id"\ninput = {json.dumps(columns)}\nexpected = "expected"\n'
    )
    snippet += '\n[splits]\ncolumn = "split"\n\n[scorer]\n'
    snippet += {
        "judge": 'kind = "judge"\nrubric = "Each task row carries its own rubric column: use it."',
        "exact": 'kind = "exact"',
        "json_field": 'kind = "json_field"\nfields = ["FILL IN"]',
    }[scorer]
    Console().print(
        f"wrote {len(rows)} regression tasks ({split}) -> {out}\nscorer: {scorer}\nsuite.toml:\n{snippet}",
        highlight=False,
        markup=False,
    )


def register(traces_app: typer.Typer) -> None:
    """Add `import` and `to-tasks` to the `traces` command group."""
    traces_app.command("import")(import_command)
    traces_app.command("to-tasks")(to_tasks_command)
