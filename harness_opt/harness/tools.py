"""Validation of a version's `tools.json`: OpenAI function-calling tool schemas.

A model writes these files, and a malformed schema would otherwise only fail deep inside a provider
call mid-evaluation; checking them at load time turns that into one error naming the tool and field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness_opt.errors import HarnessError
from harness_opt.llm.params import MAX_SCHEMA_DEPTH, json_depth

TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
"""What OpenAI (and so most litellm providers) accept as a function name."""

_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


class FunctionSchema(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=TOOL_NAME_PATTERN, description="Function name the model calls.")
    description: str = Field(default="", description="What the tool does; the model reads it.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON schema of type object describing the arguments.",
    )


class ToolSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionSchema


def _schema_problem(schema: Any, where: str) -> str | None:
    """First structural problem in a JSON schema fragment, or None; recursion follows properties/items."""
    if not isinstance(schema, dict):
        return f"{where}: must be a JSON schema object (a dict), got {type(schema).__name__}"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_TYPES:
            return f"{where}.type: unknown JSON type {k!r} (use one of {sorted(_JSON_TYPES)})"
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            return f"{where}.properties: must be an object mapping argument names to schemas"
        for key, sub in props.items():
            problem = _schema_problem(sub, f"{where}.properties.{key}")
            if problem:
                return problem
    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            return f"{where}.required: must be a list of argument names"
        missing = [r for r in required if r not in (props or {})]
        if missing:
            return f"{where}.required: names {missing} that are not in properties"
    items = schema.get("items")
    if items is not None and not isinstance(items, bool):
        return _schema_problem(items, f"{where}.items")
    return None


def validate_tools(raw: Any, file: str = "tools.json") -> list[dict[str, Any]]:
    """Check a parsed tools.json value; return it normalised (defaults filled in), or raise HarnessError."""
    if not isinstance(raw, list):
        raise HarnessError(
            f"must be a JSON list of tools, got {type(raw).__name__}",
            where=file,
            fix='write `[]` for no tools, or a list of {"type": "function", "function": {...}} objects',
        )
    tools: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        label = f"tools[{index}]"
        if isinstance(item, dict) and isinstance(item.get("function"), dict):
            name = item["function"].get("name")
            if isinstance(name, str):
                label += f" ({name!r})"
        try:
            tool = ToolSchema.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(tool)"
            hint = (
                f"names must match {TOOL_NAME_PATTERN}"
                if err["loc"][-1:] == ("name",)
                else 'each tool is {"type": "function", "function": {"name", "description", "parameters"}}'
            )
            raise HarnessError(f"{label}.{field}: {err['msg']}", where=file, fix=hint) from None
        params = tool.function.parameters
        if params.get("type") != "object":
            raise HarnessError(
                f'{label}.function.parameters: must be a JSON schema with "type": "object", '
                f"got type {params.get('type')!r}",
                where=file,
                fix='wrap the arguments: {"type": "object", "properties": {...}, "required": [...]}',
            )
        if json_depth(params, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
            raise HarnessError(
                f"{label}.function.parameters: nested deeper than {MAX_SCHEMA_DEPTH} levels",
                where=file,
                fix="flatten the schema",
            )
        problem = _schema_problem(params, f"{label}.function.parameters")
        if problem:
            raise HarnessError(problem, where=file, fix="fix the JSON schema of the tool's parameters")
        if tool.function.name in seen:
            raise HarnessError(
                f"{label}.function.name: duplicate tool name {tool.function.name!r} "
                f"(also tools[{seen[tool.function.name]}])",
                where=file,
                fix="give every tool a unique name",
            )
        seen[tool.function.name] = index
        tools.append(tool.model_dump(mode="json", exclude_unset=False))
    return tools


def load_tools(path: Path) -> list[dict[str, Any]]:
    """Read and validate a tools.json file, turning JSON syntax errors into line/column messages."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(
            "missing tools.json",
            where=str(path.parent),
            fix="add a tools.json (`[]` if the agent has no tools)",
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(
            f"invalid JSON: {exc.msg}",
            where=f"{where}, line {exc.lineno}, column {exc.colno}",
            fix="fix the JSON syntax",
        ) from None
    return validate_tools(raw, where)
