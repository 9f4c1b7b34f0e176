"""Langfuse trace exports -> traces. Accepts what the Langfuse UI/API gives: one trace object
(`GET /api/public/traces/{id}`), a list of them, `{"data": [...]}`, or JSONL with one per line.

`GENERATION` observations become LLM calls (OpenAI-format `input` messages, `output` message or text,
`usage`/`usageDetails` tokens); `TOOL` observations — and `SPAN`s whose metadata says `type = "tool"` —
become tool calls. A label comes from a score named like `--label-field` (default `label`), else that
key in the trace metadata, else a `passed`/`failed` tag.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from harness_opt.errors import UserError
from harness_opt.records import LLMCallEvent, ToolCallEvent, Trace, TraceEvent
from harness_opt.traces_import.convert import build_trace, parse_label, text_of
from harness_opt.traces_import.options import ImportOptions
from harness_opt.traces_import.otel import is_json

FIX = (
    "export full traces (GET /api/public/traces/{id} or the UI's JSON export): objects with id and an "
    "observations list of {type, name, input, output, startTime}"
)


def _documents(file: Path) -> list[tuple[str, Any]]:
    """(where, trace object) pairs; `where` is the JSON path or line a later error should name."""
    text = file.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except ValueError as whole:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1 and is_json(lines[0]):  # JSONL: one trace a line
            out = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        out.append((f"{file}, line {number}", json.loads(line)))
                    except ValueError as exc:
                        raise UserError(
                            f"invalid JSON: {exc}", where=f"{file}, line {number}", fix=FIX
                        ) from None
            return out
        lineno = getattr(whole, "lineno", 1)
        raise UserError(
            f"invalid JSON: {getattr(whole, 'msg', whole)}", where=f"{file}, line {lineno}", fix=FIX
        ) from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return [(f"{file}: $.data[{i}]", t) for i, t in enumerate(doc["data"])]
    if isinstance(doc, list):
        return [(f"{file}: $[{i}]", t) for i, t in enumerate(doc)]
    return [(f"{file}: $", doc)]


def _messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    return [{"role": "user", "content": value if isinstance(value, str) else json.dumps(value, default=str)}]


def _response(value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and isinstance(value.get("choices"), list) and value["choices"]:
        value = value["choices"][0].get("message", value)
    if isinstance(value, dict) and ("content" in value or "tool_calls" in value):
        return {**value, "role": "assistant"}
    return {
        "role": "assistant",
        "content": value if isinstance(value, str) or value is None else json.dumps(value),
    }


def _tokens(obs: dict[str, Any]) -> tuple[int, int]:
    usage = obs.get("usageDetails") or obs.get("usage") or {}
    tokens_in = usage.get("input") or usage.get("promptTokens") or usage.get("prompt_tokens") or 0
    tokens_out = usage.get("output") or usage.get("completionTokens") or usage.get("completion_tokens") or 0
    return int(tokens_in), int(tokens_out)


def _label(trace: dict[str, Any], opts: ImportOptions) -> tuple[bool | None, str]:
    if opts.label is not None:
        return opts.label, ""
    for score in trace.get("scores") or []:
        if isinstance(score, dict) and score.get("name") == opts.label_field:
            value = score.get("stringValue", score.get("value"))
            return parse_label(value), str(score.get("comment") or "")
    meta = trace.get("metadata") or {}
    if isinstance(meta, dict) and opts.label_field in meta:
        return parse_label(meta[opts.label_field]), str(meta.get("feedback") or "")
    tags = {str(t).lower() for t in trace.get("tags") or []}
    if tags & {"failed", "passed"}:
        return "passed" in tags and "failed" not in tags, ""
    return None, ""


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _trace(where: str, trace: Any, file: Path, opts: ImportOptions) -> Trace:
    if not isinstance(trace, dict) or "id" not in trace:
        raise UserError("not a Langfuse trace object (no id)", where=where, fix=FIX)
    observations = trace.get("observations")
    if not isinstance(observations, list):
        raise UserError("observations is missing or not a list", where=f"{where}.observations", fix=FIX)
    if any(isinstance(o, str) for o in observations):
        raise UserError(
            "observations are ids only (a list-endpoint export)", where=f"{where}.observations", fix=FIX
        )
    label, feedback = _label(trace, opts)
    if label is None:
        raise UserError(
            f"no label: no score, metadata key or tag named {opts.label_field!r} with passed/failed",
            where=where,
            fix="pass --label failed|passed or --label-field NAME",
        )
    events: list[TraceEvent] = []
    model = "unknown"
    ordered = sorted(enumerate(observations), key=lambda p: (str(p[1].get("startTime") or ""), p[0]))
    for index, obs in ordered:
        if not isinstance(obs, dict) or "type" not in obs:
            raise UserError("an observation needs a type", where=f"{where}.observations[{index}]", fix=FIX)
        kind = str(obs["type"]).upper()
        meta = obs.get("metadata") or {}
        error = obs.get("statusMessage") or "error" if obs.get("level") == "ERROR" else None
        if kind == "GENERATION":
            model = str(obs.get("model") or model)
            tokens_in, tokens_out = _tokens(obs)
            events.append(
                LLMCallEvent(
                    model=model,
                    messages=_messages(obs.get("input")),
                    response=_response(obs.get("output")),
                    params=obs.get("modelParameters") or {},
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    cost_usd=float(obs.get("calculatedTotalCost") or 0.0),
                    error=error,
                )
            )
        elif kind == "TOOL" or (isinstance(meta, dict) and meta.get("type") == "tool"):
            args = obs.get("input")
            events.append(
                ToolCallEvent(
                    name=str(obs.get("name") or ""),
                    args=args if isinstance(args, dict) else {"input": args},
                    result=obs.get("output"),
                    error=error,
                )
            )
    trace_input = trace.get("input")
    if isinstance(trace_input, dict) and not isinstance(trace_input.get("messages"), list):
        task_input = trace_input
    else:
        first_user = next((m for m in _messages(trace_input) if m.get("role") == "user"), {})
        task_input = {"message": text_of(first_user.get("content"))}
    output = trace.get("output")
    if isinstance(output, dict) and ("content" in output or "role" in output):
        output = text_of(output.get("content"))
    meta = trace.get("metadata") or {}
    return build_trace(
        source=f"{file.name}:{trace['id']}",
        name=opts.name,
        trace_id=str(trace["id"]),
        passed=label,
        events=events,
        model=model,
        task_input=task_input,
        output=output,
        feedback=feedback,
        expected=meta.get("expected") if isinstance(meta, dict) else None,
        started=_time(trace.get("timestamp")),
    )


def read_langfuse(file: Path, opts: ImportOptions) -> list[Trace]:
    return [_trace(where, trace, file, opts) for where, trace in _documents(file)]
