"""Prompt building and constrained-output shapes for the embedded local model (no llama_cpp here).

Small local models have no native tool calling, so tools are described in the system turn and the
output is *constrained* by a JSON-schema grammar, which makes every reply parse:

* tools given, tool_choice "auto" (default): the reply is one JSON object, either
  `{"name": <tool>, "arguments": {...that tool's parameters...}}` (a tool call) or
  `{"content": "<text>"}` (a plain answer). One anyOf branch per tool keeps each tool's
  arguments tied to its own schema.
* tool_choice "required": only the tool-call branches; `{"type": "function", "function": {"name": X}}`:
  only X's branch; "none": tools are not shown and the output is free text.
* response_format json_schema / json_object: the reply is constrained to that schema / to JSON.

The shapes are plain JSON so earlier assistant turns with tool calls are rendered back into the
prompt in the very shape the model is asked to produce.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

TOOL_PREAMBLE = (
    "You can call tools. To call one, reply with only a JSON object "
    '{{"name": <tool name>, "arguments": {{...}}}}.{plain}\nTools:\n{tools}'
)
PLAIN_HINT = ' To answer without a tool, reply {"content": "<your answer>"}.'


@dataclass(frozen=True)
class OutputShape:
    """What the reply is constrained to. `schema` None: free text."""

    schema: dict[str, Any] | None
    kind: str  # "text" | "tools" | "json"
    json_object: bool = False  # any JSON object (response_format json_object)


def _tool_functions(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [t.get("function", t) for t in tools or []]


def _selected_tools(tools: list[dict[str, Any]], tool_choice: Any) -> tuple[list[dict[str, Any]], bool]:
    """The tools the reply may call and whether a plain answer is allowed."""
    functions = _tool_functions(tools)
    if isinstance(tool_choice, dict):
        name = tool_choice.get("function", {}).get("name")
        chosen = [f for f in functions if f.get("name") == name]
        return (chosen or functions), False
    if tool_choice == "required":
        return functions, False
    return functions, True


def output_shape(
    tools: list[dict[str, Any]] | None, tool_choice: Any = None, response_format: dict[str, Any] | None = None
) -> OutputShape:
    """The constraint for one request (see the module docstring for the rules)."""
    if tools and tool_choice != "none":
        functions, plain_allowed = _selected_tools(tools, tool_choice)
        branches: list[dict[str, Any]] = []
        for function in functions:
            parameters = function.get("parameters") or {"type": "object", "properties": {}}
            branches.append(
                {
                    "type": "object",
                    "properties": {"name": {"const": function["name"]}, "arguments": parameters},
                    "required": ["name", "arguments"],
                }
            )
        if plain_allowed:
            branches.append(
                {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}
            )
        schema = branches[0] if len(branches) == 1 else {"anyOf": branches}
        return OutputShape(schema=schema, kind="tools")
    if response_format:
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or spec.get("schema_") or {"type": "object"}
            return OutputShape(schema=schema, kind="json")
        if kind == "json_object":
            return OutputShape(schema=None, kind="json", json_object=True)
    return OutputShape(schema=None, kind="text")


def tool_prompt(tools: list[dict[str, Any]], tool_choice: Any = None) -> str:
    """The tool list as the model reads it: one line per tool, name, description, parameters."""
    functions, plain_allowed = _selected_tools(tools, tool_choice)
    lines = []
    for function in functions:
        params = json.dumps(function.get("parameters") or {}, separators=(",", ":"))
        lines.append(f"- {function['name']}: {function.get('description', '').strip()} parameters={params}")
    return TOOL_PREAMBLE.format(plain=PLAIN_HINT if plain_allowed else "", tools="\n".join(lines))


def _text(content: Any) -> str:
    """OpenAI content may be a list of parts; the local model reads the text parts."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def prepare_messages(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: Any = None,
    *,
    fold_system: bool = False,
) -> list[dict[str, str]]:
    """OpenAI messages -> plain role/content turns a GGUF chat template can render.

    Tool calls become their JSON shape, tool results become user turns (small chat templates know no
    `tool` role), the tool list joins the system turn, and with `fold_system` (templates that drop
    system messages, e.g. Gemma) the system text is prepended to the first user turn. The system
    turn stays first and byte-identical across calls so the KV cache of that prefix is reused."""
    turns: list[dict[str, str]] = []
    system_parts: list[str] = []
    for message in messages:
        role = message.get("role", "user")
        if role in ("system", "developer"):
            system_parts.append(_text(message.get("content")))
            continue
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function", {})
                arguments = function.get("arguments", "{}")
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
                except json.JSONDecodeError:
                    parsed = arguments
                calls.append(json.dumps({"name": function.get("name"), "arguments": parsed}))
            turns.append({"role": "assistant", "content": "\n".join(calls)})
            continue
        if role in ("tool", "function"):
            name = message.get("name") or message.get("tool_call_id") or "tool"
            turns.append(
                {"role": "user", "content": f"Tool result ({name}): {_text(message.get('content'))}"}
            )
            continue
        turns.append(
            {"role": "assistant" if role == "assistant" else "user", "content": _text(message.get("content"))}
        )
    if tools and tool_choice != "none":
        system_parts.append(tool_prompt(tools, tool_choice))
    system = "\n\n".join(p for p in system_parts if p)
    if system and fold_system:
        if turns and turns[0]["role"] == "user":
            turns[0] = {"role": "user", "content": f"{system}\n\n{turns[0]['content']}"}
        else:
            turns.insert(0, {"role": "user", "content": system})
    elif system:
        turns.insert(0, {"role": "system", "content": system})
    return turns


def parse_output(text: str, shape: OutputShape) -> dict[str, Any]:
    """The generated text -> an OpenAI assistant message (tool calls with string arguments)."""
    if shape.kind != "tools":
        return {"role": "assistant", "content": text, "tool_calls": None}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # Only reachable when generation hit max_tokens mid-object: return the text, no call.
        return {"role": "assistant", "content": text, "tool_calls": None}
    if isinstance(data, dict) and "name" in data:
        call = {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": data["name"], "arguments": json.dumps(data.get("arguments", {}))},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    content = data.get("content", text) if isinstance(data, dict) else text
    return {"role": "assistant", "content": content, "tool_calls": None}
