"""Tool-description operators for suites with tools: tell the model what went wrong last time.

A small model reads a tool's description to decide how to call it; the failing train traces show
which calls the environment refused and why. These operators fold that evidence into tools.json.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.operator import make_proposal
from harness_opt.propose.operators.workspace import Workspace, dumps_json
from harness_opt.records import ToolCallEvent, Trace

PITFALLS = "Pitfalls seen in failed calls:"
MAX_NOTES = 3
MAX_NOTE_CHARS = 200


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]


def _tool_error(event: ToolCallEvent) -> str | None:
    if event.error:
        return event.error
    if isinstance(event.result, dict) and isinstance(event.result.get("error"), str):
        return str(event.result["error"])
    return None


def tool_errors(traces: list[Trace]) -> dict[str, list[str]]:
    """Distinct error texts per tool name, in the order first seen, from tool-call events."""
    found: dict[str, list[str]] = defaultdict(list)
    for trace in traces:
        for event in trace.events:
            if isinstance(event, ToolCallEvent):
                error = _tool_error(event)
                if error:
                    note = " ".join(error.split())[:MAX_NOTE_CHARS]
                    if note not in found[event.name]:
                        found[event.name].append(note)
    return found


def repeated_calls(traces: list[Trace]) -> int:
    """How many rollouts made one tool call twice with the same arguments."""
    count = 0
    for trace in traces:
        seen: set[str] = set()
        for event in trace.events:
            if isinstance(event, ToolCallEvent):
                key = json.dumps([event.name, event.args], sort_keys=True, default=str)
                if key in seen:
                    count += 1
                    break
                seen.add(key)
    return count


@dataclass(frozen=True)
class ToolErrorNotes:
    """Append the errors each tool returned in failing train traces to that tool's description."""

    name: str = "tool_error_notes"
    mechanism: str = "tool descriptions: pitfalls from tool errors"

    def propose(self, ws: Workspace) -> Proposal | None:
        tools = json.loads(json.dumps(ws.tools))  # deep copy
        functions = {f.get("name"): f for f in _functions(tools)}
        errors = tool_errors(ws.inp.failing_traces)
        changes = []
        for name, notes in sorted(errors.items()):
            function = functions.get(name)
            if function is None or PITFALLS in str(function.get("description", "")):
                continue
            shown = notes[:MAX_NOTES]
            bullet = " ".join(f"({i + 1}) {note}" for i, note in enumerate(shown))
            described = str(function.get("description", "")).rstrip()
            function["description"] = f"{described}\n{PITFALLS} {bullet}".strip()
            changes.append(f"tools.json: {name}: {len(shown)} error(s) from failing train calls added")
        if not changes:
            return None
        return make_proposal(
            self,
            "The model repeats tool calls the environment rejects; stating in each tool's description "
            "the errors those calls produced lets it call them correctly the first time.",
            changes,
            {"tools.json": dumps_json(tools)},
        )


def _observed_values(traces: list[Trace]) -> dict[tuple[str, str], list[str]]:
    """Argument values of successful calls, per (tool, parameter): examples for descriptions."""
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for trace in traces:
        for event in trace.events:
            if isinstance(event, ToolCallEvent) and _tool_error(event) is None:
                for key, value in event.args.items():
                    shown = json.dumps(value)[:60]
                    if shown not in seen[(event.name, key)]:
                        seen[(event.name, key)].append(shown)
    return seen


@dataclass(frozen=True)
class ToolParamDescriptions:
    """Describe undocumented parameters with their type, whether required, and values seen to work."""

    name: str = "tool_param_descriptions"
    mechanism: str = "tool descriptions: parameter docs"

    def propose(self, ws: Workspace) -> Proposal | None:
        tools = json.loads(json.dumps(ws.tools))
        values = _observed_values([*ws.inp.passing_traces, *ws.inp.failing_traces])
        changes = []
        for function in _functions(tools):
            params = function.get("parameters") or {}
            props = params.get("properties") if isinstance(params, dict) else None
            if not isinstance(props, dict):
                continue
            required = set(params.get("required") or [])
            for key, schema in sorted(props.items()):
                if not isinstance(schema, dict) or schema.get("description"):
                    continue
                kind = schema.get("type", "value")
                text = f"{'Required' if key in required else 'Optional'} {kind}: the {key.replace('_', ' ')}."
                examples = values.get((function.get("name", ""), key), [])[:3]
                if examples:
                    text += " Values that worked: " + ", ".join(examples) + "."
                schema["description"] = text
                changes.append(f"tools.json: {function.get('name')}.{key}: description added")
        if not changes:
            return None
        return make_proposal(
            self,
            "Parameters without a description leave the model guessing their meaning and format; a "
            "short description with values that worked in train calls cuts malformed arguments.",
            changes,
            {"tools.json": dumps_json(tools)},
        )
