"""OpenAI chat-format JSONL: one conversation per line, `{"messages": [...], ...}` (the fine-tuning and
most logging libraries' shape). Optional per line: `id`, `model`, `tools`, a label field (default
`label`, also looked up under `metadata`), `feedback`, `expected` and `input` (what the agent was given).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness_opt.errors import UserError
from harness_opt.records import Trace
from harness_opt.traces_import.convert import build_trace, conversation_events, dig, parse_label, text_of
from harness_opt.traces_import.options import ImportOptions


def _fail(file: Path, number: int, what: str) -> UserError:
    return UserError(
        what,
        where=f"{file}, line {number}",
        fix='each line must be one JSON object like {"messages": [{"role": "user", "content": "..."}, ...]}',
    )


def _line_trace(row: dict[str, Any], file: Path, number: int, opts: ImportOptions) -> Trace:
    messages = row.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise _fail(file, number, "'messages' is missing or not a list of {role, content} objects")
    label = opts.label
    if label is None:
        value = dig(row, opts.label_field)
        if value is None:
            value = dig(row.get("metadata") or {}, opts.label_field)
        label = parse_label(value)
        if label is None:
            raise _fail(
                file,
                number,
                f"no label: field {opts.label_field!r} is {value!r} (want passed/failed, true/false, 1/0); "
                "pass --label failed|passed or --label-field NAME",
            )
    first_user: dict[str, Any] = next((m for m in messages if m.get("role") == "user"), {})
    last: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "assistant"), {})
    given = row.get("input")
    task_input: dict[str, Any] = (
        given if isinstance(given, dict) else {"message": text_of(first_user.get("content"))}
    )
    model = str(row.get("model") or dig(row, "metadata.model") or "unknown")
    return build_trace(
        source=f"{file.name}:{number}",
        name=opts.name,
        trace_id=str(row.get("id") or f"{opts.name}-{number:05d}"),
        passed=label,
        events=conversation_events(messages, model=model, tools=row.get("tools")),
        model=model,
        task_input=task_input,
        output=text_of(last.get("content")) if last else None,
        feedback=str(row.get("feedback") or ""),
        expected=row.get("expected"),
    )


def read_openai_jsonl(file: Path, opts: ImportOptions) -> list[Trace]:
    """Every conversation of the file; a malformed line is a UserError naming its number."""
    traces = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise _fail(file, number, f"invalid JSON: {exc}") from None
            if isinstance(row, list):  # a bare message list is a conversation too
                row = {"messages": row}
            if not isinstance(row, dict):
                raise _fail(file, number, f"line holds a {type(row).__name__}, not an object")
            traces.append(_line_trace(row, file, number, opts))
    return traces
