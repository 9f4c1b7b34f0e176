"""Size and depth bounds for data a harness hands the parent (log payloads, outputs, tool arguments).

A value nested a few hundred levels deep passes `json` but breaks pydantic's serializer (and with it the
trace writer); a megabyte per `ctx.log` call times a thousand calls is a gigabyte in the parent. So what
untrusted code sends is measured here without recursion, and cut down with a visible marker where it
exceeds the bounds. The trace keeps the marker, so a reader knows something was dropped and how much.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting kept in a log payload or trace value; deeper parts become a marker string."""
LOG_DATA_BYTES = 64 * 1024
"""JSON size of one `ctx.log` payload kept in the trace."""
LOG_TOTAL_BYTES = 1024 * 1024
"""Log payload bytes kept per rollout; later `ctx.log` calls are counted and dropped."""
OUTPUT_BYTES = 1024 * 1024
"""Largest JSON output of run() that is scored; a larger one is an `invalid_output` error."""


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON-like value, stopping as soon as it exceeds `limit` (iterative)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((v, level + 1) for v in node)
    return deepest


def marker(what: str) -> str:
    return f"[truncated by harness-opt: {what}]"


def cut_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + marker(f"{len(text) - limit} more characters")


def _leaf(node: Any, level: int, max_depth: int, max_str: int) -> tuple[Any, bool]:
    """(the converted node, whether it is an empty container still to fill)."""
    if isinstance(node, str):
        return cut_text(node, max_str), False
    if node is None or isinstance(node, bool | int | float):
        return node, False
    if isinstance(node, dict | list | tuple):
        if level >= max_depth:
            return marker(f"nested deeper than {max_depth} levels"), False
        return ({} if isinstance(node, dict) else []), True
    return cut_text(str(node), max_str), False


def _put(target: Any, key: Any, value: Any) -> None:
    if isinstance(target, dict):
        target[cut_text(str(key), 1000)] = value
    else:
        target.append(value)


def bounded(value: Any, *, max_depth: int = MAX_DEPTH, max_str: int = 65_536, max_items: int = 10_000) -> Any:
    """A copy of `value` no deeper than `max_depth`, with strings and containers cut, markers where cut.

    Iterative, so an arbitrarily deep value cannot exhaust the stack; non-JSON leaves become strings.
    """
    root, is_container = _leaf(value, 1, max_depth, max_str)
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)] if is_container else []
    while stack:
        source, target, level = stack.pop()
        items = list(source.items()) if isinstance(source, dict) else list(enumerate(source))
        for key, child in items[:max_items]:
            converted, nested = _leaf(child, level + 1, max_depth, max_str)
            _put(target, key, converted)
            if nested:
                stack.append((child, converted, level + 1))
        if len(items) > max_items:
            _put(target, "...", marker(f"{len(items) - max_items} more items"))
    return root


def json_size(value: Any) -> int | None:
    """Bytes of `value` as compact JSON, or None when it is not JSON-serialisable."""
    try:
        return len(json.dumps(value, separators=(",", ":"), default=str))
    except (TypeError, ValueError, RecursionError):
        return None
