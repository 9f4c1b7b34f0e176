"""OpenTelemetry GenAI spans (OTLP JSON export) -> traces: one trace per `traceId`.

Reads the GenAI semantic conventions in their current form (`gen_ai.input.messages` /
`gen_ai.output.messages` as JSON "parts" messages, `gen_ai.system_instructions`) and the older ones
still emitted by many instrumentations (`gen_ai.prompt.N.role/content` + `gen_ai.completion.N.*`
attributes, or `gen_ai.user.message` / `gen_ai.choice` span events). Inference spans become
LLM calls, `execute_tool` spans tool calls, in start-time order. The file is one OTLP
`{"resourceSpans": [...]}` object, or several of them one per line (the collector's file exporter).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness_opt.errors import UserError
from harness_opt.records import LLMCallEvent, ToolCallEvent, Trace, TraceEvent
from harness_opt.traces_import.convert import build_trace, parse_label, text_of
from harness_opt.traces_import.options import ImportOptions

CHAT_OPERATIONS = {"chat", "text_completion", "generate_content"}
LABEL_ATTRIBUTES = ("harness_opt.label", "label")


def _fail(where: str, what: str) -> UserError:
    return UserError(
        what,
        where=where,
        fix='export spans as OTLP JSON: {"resourceSpans": [{"scopeSpans": '
        '[{"spans": [{"traceId", "spanId", "name", "attributes": [...]}]}]}]}',
    )


def any_value(value: Any) -> Any:
    """Decode an OTLP AnyValue (`{"stringValue": ...}`, `{"intValue": "3"}`, arrays, kvlists)."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: any_value(kv.get("value")) for kv in value["kvlistValue"].get("values", [])}
    return None


def attributes(items: Any, where: str) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(i, dict) and "key" in i for i in items):
        raise _fail(where, "attributes must be a list of {key, value} objects")
    return {i["key"]: any_value(i.get("value")) for i in items}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parts_message(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A GenAI 'parts' message as OpenAI chat messages (tool responses become role=tool messages)."""
    if "parts" not in message:
        return [message]
    role = message.get("role", "user")
    text, calls, out = [], [], []
    for part in message.get("parts") or []:
        kind = part.get("type")
        if kind == "text":
            text.append(str(part.get("content", "")))
        elif kind == "tool_call":
            calls.append(
                {
                    "id": part.get("id"),
                    "type": "function",
                    "function": {
                        "name": part.get("name"),
                        "arguments": json.dumps(part.get("arguments") or {}),
                    },
                }
            )
        elif kind == "tool_call_response":
            response = part.get("response")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": part.get("id"),
                    "content": response if isinstance(response, str) else json.dumps(response),
                }
            )
    if text or calls or not out:
        msg: dict[str, Any] = {"role": role, "content": "\n".join(text) if text else None}
        if calls:
            msg["tool_calls"] = calls
        out.insert(0, msg)
    return out


def _indexed(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """`gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, ... as a list of messages."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if key.startswith(prefix + "."):
            index, _, field = key[len(prefix) + 1 :].partition(".")
            if index.isdigit() and field in ("role", "content"):
                found.setdefault(int(index), {})[field] = value
    return [found[i] for i in sorted(found)]


def chat_io(
    attrs: dict[str, Any], events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(input messages, response message) of an inference span, whichever convention it uses."""
    messages: list[dict[str, Any]] = []
    system = _json(attrs.get("gen_ai.system_instructions"))
    if system:
        messages.append({"role": "system", "content": text_of(system)})
    if "gen_ai.input.messages" in attrs:
        for m in _json(attrs["gen_ai.input.messages"]) or []:
            messages.extend(parts_message(m))
        outputs = _json(attrs.get("gen_ai.output.messages")) or []
        first = parts_message(outputs[0])[0] if outputs else {"role": "assistant", "content": None}
        return messages, {**first, "role": "assistant"}
    prompt = _indexed(attrs, "gen_ai.prompt")
    if prompt:
        completion = _indexed(attrs, "gen_ai.completion")
        return [*messages, *prompt], {
            "role": "assistant",
            "content": completion[0].get("content") if completion else None,
        }
    response: dict[str, Any] = {"role": "assistant", "content": None}
    for event in events:
        name, data = event["name"], event["attributes"]
        if name == "gen_ai.choice":
            body = _json(data.get("message")) or {}
            response = {
                "role": "assistant",
                "content": body.get("content") if isinstance(body, dict) else body,
            }
        elif name.startswith("gen_ai.") and name.endswith(".message"):
            role = name.removeprefix("gen_ai.").removesuffix(".message")
            messages.append({"role": role, "content": _json(data.get("content"))})
    return messages, response


def _time(nanos: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(nanos) / 1e9, tz=UTC)
    except (TypeError, ValueError):
        return None


def _spans(doc: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        raise _fail(where, "no resourceSpans list: this is not an OTLP JSON trace export")
    out = []
    for r, resource in enumerate(doc["resourceSpans"]):
        for s, scope in enumerate(resource.get("scopeSpans") or []):
            spans = scope.get("spans")
            if not isinstance(spans, list):
                raise _fail(f"{where} resourceSpans[{r}].scopeSpans[{s}]", "spans is missing or not a list")
            for n, span in enumerate(spans):
                path = f"{where} resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                if not isinstance(span, dict) or not span.get("traceId"):
                    raise _fail(path, "a span needs a traceId")
                out.append((path, span))
    return out


def is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _documents(file: Path) -> list[tuple[str, Any]]:
    text = file.read_text(encoding="utf-8")
    try:
        return [(f"{file}:", json.loads(text))]
    except ValueError as whole:
        if is_json(text.strip().splitlines()[0]) and "\n" in text.strip():  # JSONL: one export a line
            docs = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        docs.append((f"{file}, line {number}:", json.loads(line)))
                    except ValueError as exc:
                        raise _fail(f"{file}, line {number}", f"invalid JSON: {exc}") from None
            return docs
        raise _fail(f"{file}, line {whole.lineno}", f"invalid JSON: {whole.msg}") from None  # type: ignore[attr-defined]


def read_otel(file: Path, opts: ImportOptions) -> list[Trace]:
    by_trace: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for where, doc in _documents(file):
        for path, span in _spans(doc, where.rstrip(":")):
            attrs = attributes(span.get("attributes"), f"{path}.attributes")
            by_trace.setdefault(str(span["traceId"]), []).append((path, span, attrs))
    traces = []
    for trace_id, spans in by_trace.items():
        spans.sort(key=lambda item: int(item[1].get("startTimeUnixNano") or 0))
        events: list[TraceEvent] = []
        label: bool | None = opts.label
        model, first_input, output, feedback = "unknown", None, None, ""
        for path, span, attrs in spans:
            for key in (opts.label_field, *LABEL_ATTRIBUTES):
                if label is None and key in attrs:
                    label = parse_label(attrs[key])
            feedback = feedback or str(attrs.get("harness_opt.feedback") or attrs.get("feedback") or "")
            operation = attrs.get("gen_ai.operation.name")
            status = span.get("status") or {}
            failed_status = status.get("code") in (2, "STATUS_CODE_ERROR")
            if operation == "execute_tool" or "gen_ai.tool.name" in attrs:
                result = _json(attrs.get("gen_ai.tool.call.result"))
                args = _json(attrs.get("gen_ai.tool.call.arguments"))
                events.append(
                    ToolCallEvent(
                        name=str(attrs.get("gen_ai.tool.name", span.get("name", ""))),
                        args=args if isinstance(args, dict) else {},
                        result=result,
                        error=status.get("message") or "error" if failed_status else None,
                    )
                )
            elif operation in CHAT_OPERATIONS or any(
                k.startswith(("gen_ai.input", "gen_ai.prompt")) for k in attrs
            ):
                span_events = [
                    {
                        "name": e.get("name", ""),
                        "attributes": attributes(e.get("attributes"), f"{path}.events"),
                    }
                    for e in span.get("events") or []
                ]
                messages, response = chat_io(attrs, span_events)
                model = str(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or model)
                events.append(
                    LLMCallEvent(
                        model=model,
                        messages=messages,
                        response=response,
                        tokens_in=int(
                            attrs.get("gen_ai.usage.input_tokens")
                            or attrs.get("gen_ai.usage.prompt_tokens")
                            or 0
                        ),
                        tokens_out=int(
                            attrs.get("gen_ai.usage.output_tokens")
                            or attrs.get("gen_ai.usage.completion_tokens")
                            or 0
                        ),
                        error=status.get("message") if failed_status else None,
                    )
                )
                if first_input is None:
                    first_input = next(
                        (text_of(m.get("content")) for m in messages if m.get("role") == "user"), None
                    )
                output = response.get("content") if response.get("content") is not None else output
        if label is None:
            raise _fail(
                spans[0][0],
                f"trace {trace_id} has no label attribute ({opts.label_field!r} or harness_opt.label); "
                "pass --label failed|passed or --label-field NAME",
            )
        traces.append(
            build_trace(
                source=f"{file.name}:{trace_id}",
                name=opts.name,
                trace_id=trace_id,
                passed=label,
                events=events,
                model=model,
                task_input={"message": first_input or ""},
                output=output,
                feedback=feedback,
                started=_time(spans[0][1].get("startTimeUnixNano")),
                ended=_time(max(int(s.get("endTimeUnixNano") or 0) for _, s, _ in spans)),
            )
        )
    return traces
