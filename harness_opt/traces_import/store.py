"""Where imported traces live (`traces/imported/<name>.jsonl`) and how labelled failures become tasks.

Imported traces are stored in the same JSONL shape `eval` writes, so `read_trace("imported/x.jsonl#0")`
and every renderer work on them unchanged. They are evidence only: no ledger row is ever written for
them, so they can never count toward a score or an acceptance decision.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from harness_opt.errors import UserError
from harness_opt.home import traces_dir
from harness_opt.records import Trace
from harness_opt.traces_import.convert import import_facts
from harness_opt.traces_import.langfuse import read_langfuse
from harness_opt.traces_import.openai_jsonl import read_openai_jsonl
from harness_opt.traces_import.options import ImportOptions
from harness_opt.traces_import.otel import read_otel

Format = Literal["openai-jsonl", "otel", "langfuse"]
READERS = {"openai-jsonl": read_openai_jsonl, "otel": read_otel, "langfuse": read_langfuse}
ScorerKind = Literal["exact", "json_field", "judge"]


def imported_dir() -> Path:
    path = traces_dir() / "imported"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_file(file: Path | str, fmt: str, opts: ImportOptions) -> list[Trace]:
    """Parse one export file; a malformed one is a UserError naming the line or JSON path."""
    path = Path(file).expanduser()
    if fmt not in READERS:
        raise UserError(f"unknown format {fmt!r}", where="--format", fix=f"use one of: {', '.join(READERS)}")
    if not path.is_file():
        raise UserError("file not found", where=str(path), fix="pass the path of an exported trace file")
    traces = READERS[fmt](path, opts)
    if not traces:
        raise UserError("the file holds no traces", where=str(path), fix="export at least one conversation")
    return traces


def import_traces(
    file: Path | str,
    fmt: str,
    *,
    name: str | None = None,
    label: bool | None = None,
    label_field: str = "label",
) -> tuple[Path, list[Trace]]:
    """Read `file` and write its traces to `traces/imported/<name>.jsonl` (replacing an earlier import
    of the same name, so re-importing a file is idempotent). Returns the stored file and the traces."""
    stem = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(file).stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", stem):
        raise UserError(f"bad name {stem!r}", where="--name", fix="use letters, digits, _ . -")
    traces = read_file(file, fmt, ImportOptions(name=stem, label=label, label_field=label_field))
    out = imported_dir() / f"{stem}.jsonl"
    tmp = out.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for trace in traces:
            handle.write(trace.model_dump_json() + "\n")
    tmp.replace(out)
    return out, traces


def read_imported(path: Path | str) -> list[Trace]:
    """Traces of a stored import (a file, or a folder of them); a bad line names its number."""
    root = Path(path).expanduser()
    files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    traces = []
    for file in files:
        if not file.is_file():
            raise UserError(
                "imported traces not found", where=str(file), fix="run `harness-opt traces import`"
            )
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    traces.append(Trace.model_validate_json(line))
                except ValueError as exc:
                    raise UserError(
                        f"not a stored trace: {str(exc).splitlines()[0]}",
                        where=f"{file}, line {number}",
                        fix="pass a file written by `harness-opt traces import`",
                    ) from None
    return traces


def failure_rubric(trace: Trace) -> str:
    """A judge rubric for a regression case: the production answer failed; a new one must not repeat it."""
    bad = trace.output if isinstance(trace.output, str) else json.dumps(trace.output, default=str)
    return (
        "In production this request was answered badly"
        + (f" ({trace.feedback})" if trace.feedback else "")
        + f". The failed answer was: {bad!r}. Score 1 if the new answer resolves the customer's request "
        "correctly and does not repeat that failure, 0 otherwise."
    )


def to_task_rows(
    traces: list[Trace], *, scorer: ScorerKind = "judge", split: str = "train", input_key: str | None = None
) -> list[dict[str, Any]]:
    """Task rows (JSONL for a data suite) from the *failed* traces: `id`, the input fields, `expected`,
    `split` and, for the judge, a per-task `rubric`. exact/json_field need an expected outcome in the
    import (`expected` in the file); a failure without one is an error naming it."""
    rows = []
    for trace in traces:
        if trace.passed:
            continue
        facts = import_facts(trace)
        expected = facts.get("expected")
        if scorer != "judge" and expected is None:
            raise UserError(
                f"trace {trace.key.task_id} has no expected outcome for a {scorer} scorer",
                where=str(facts.get("source", trace.key.task_id)),
                fix="add an `expected` field to the exported traces, or use --scorer judge",
            )
        task_input = dict(trace.task_input)
        if input_key and set(task_input) == {"message"}:
            task_input = {input_key: task_input["message"]}
        row: dict[str, Any] = {"id": f"regression-{trace.key.task_id}", **task_input, "split": split}
        row["expected"] = expected
        if scorer == "judge":
            row["rubric"] = failure_rubric(trace)
        rows.append(row)
    return rows
