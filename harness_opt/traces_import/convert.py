"""Turn a conversation in OpenAI chat format into our `Trace`: the one shape every importer lands on.

Each assistant message becomes an `LLMCallEvent` (the history before it as `messages`, itself as
`response`) and each tool message a `ToolCallEvent` paired with the call that asked for it, so an
imported production trace reads exactly like one recorded by `eval` — the proposer needs no second
renderer. Import facts (label, source, line, expected outcome if the file has one) go in a leading
`LogEvent` named `imported`, because `Trace` has no free-form metadata field.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from harness_opt.errors import UserError
from harness_opt.records import LLMCallEvent, LogEvent, RolloutKey, ToolCallEvent, Trace, TraceEvent

IMPORTED = "imported"
"""Split, version hash and log-event name of every imported trace (never a real version or split)."""

_PASSED = {"passed", "pass", "success", "succeeded", "ok", "good", "true", "1", "resolved", "positive"}
_FAILED = {"failed", "fail", "failure", "error", "bad", "false", "0", "unresolved", "negative"}


def parse_label(value: Any) -> bool | None:
    """True (passed) / False (failed) from a label value in a file; None when it says neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value) >= 0.5
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _PASSED:
            return True
        if text in _FAILED:
            return False
    return None


def cli_label(label: str | None) -> bool | None:
    """The `--label` option: passed / failed, or None (take it from the file)."""
    if label is None:
        return None
    parsed = parse_label(label)
    if parsed is None or label.strip().lower() not in ("passed", "failed"):
        raise UserError(
            f"unknown label {label!r}", where="--label", fix="use --label failed or --label passed"
        )
    return parsed


def dig(data: Any, path: str) -> Any:
    """`a.b.c` into nested dicts; None when absent."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def text_of(content: Any) -> str:
    """Plain text of a message content (a string, or a list of parts with `text`/`content`)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            text_of(p.get("text", p.get("content")) if isinstance(p, dict) else p) for p in content
        )
    return json.dumps(content, default=str)


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw or "{}")
        except ValueError:
            return {"_raw": raw}
        return value if isinstance(value, dict) else {"_value": value}
    return {} if raw is None else {"_value": raw}


def conversation_events(
    messages: list[dict[str, Any]],
    *,
    model: str,
    tools: list[dict[str, Any]] | None = None,
    usage: list[tuple[int, int]] | None = None,
) -> list[TraceEvent]:
    """Events of one conversation; `usage[i]` is (tokens in, tokens out) of the i-th assistant turn."""
    events: list[TraceEvent] = []
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    turn = 0
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            tokens = usage[turn] if usage and turn < len(usage) else (0, 0)
            turn += 1
            events.append(
                LLMCallEvent(
                    model=model,
                    messages=messages[:index],
                    tools=tools or None,
                    response=message,
                    tokens_in=tokens[0],
                    tokens_out=tokens[1],
                )
            )
            for call in message.get("tool_calls") or []:
                fn = call.get("function") or {}
                calls[str(call.get("id"))] = (str(fn.get("name", "")), _args(fn.get("arguments")))
        elif role == "tool":
            name, args = calls.get(str(message.get("tool_call_id")), (str(message.get("name", "")), {}))
            content = message.get("content")
            result: Any = content
            if isinstance(content, str):
                try:
                    result = json.loads(content)
                except ValueError:
                    result = content
            error = result.get("error") if isinstance(result, dict) and set(result) == {"error"} else None
            events.append(ToolCallEvent(name=name, args=args, result=result, error=error))
    return events


def build_trace(
    *,
    source: str,
    name: str,
    trace_id: str,
    passed: bool,
    events: list[TraceEvent],
    model: str,
    task_input: dict[str, Any],
    output: Any,
    feedback: str = "",
    expected: Any = None,
    started: datetime | None = None,
    ended: datetime | None = None,
) -> Trace:
    """An imported trace: key `imported/<name>` split `imported`, label in `passed` and the import log."""
    facts: dict[str, Any] = {"label": "passed" if passed else "failed", "source": source}
    if expected is not None:
        facts["expected"] = expected
    trace = Trace(
        run_id=f"{IMPORTED}:{name}",
        key=RolloutKey(
            version_hash=IMPORTED,
            suite=f"{IMPORTED}/{name}",
            split=IMPORTED,
            task_id=trace_id,
            trial=0,
            model=model or "unknown",
        ),
        task_input=task_input,
        events=[LogEvent(message=IMPORTED, data=facts), *events],
        output=output,
        score=1.0 if passed else 0.0,
        passed=passed,
        feedback=feedback or f"production trace labelled {facts['label']}",
        ended=ended,
    )
    if started is not None:
        trace.started = started
    return trace


def import_facts(trace: Trace) -> dict[str, Any]:
    """The `imported` log event's data (label, source, expected), or {} for a trace eval recorded."""
    for event in trace.events:
        if isinstance(event, LogEvent) and event.message == IMPORTED:
            return dict(event.data)
    return {}
