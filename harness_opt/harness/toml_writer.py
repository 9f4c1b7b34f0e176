"""A small, correct TOML writer for the shapes harness-opt writes (manifests); tomllib only reads.

Covers what a manifest holds: strings (escaped), ints, floats, bools, datetimes, lists, nested tables
and inline tables for parameter dicts. `None` has no TOML form, so a None value drops its key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    """One value in inline form (arrays and inline tables nest)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = [f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple):
        if any(v is None for v in value):
            raise ValueError("TOML arrays cannot hold None")
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps(data: Mapping[str, Any], *, inline: Iterable[str] = ()) -> str:
    """Serialise a mapping to TOML. Dicts become `[tables]` unless their dotted path is in `inline`."""
    inline_paths = set(inline)
    lines: list[str] = []

    def table(path: list[str], body: Mapping[str, Any]) -> None:
        scalars = []
        tables = []
        for key, value in body.items():
            if value is None:
                continue
            dotted = ".".join([*path, str(key)])
            if isinstance(value, Mapping) and dotted not in inline_paths:
                tables.append((key, value))
            else:
                scalars.append(f"{_key(str(key))} = {_value(value)}")
        if path and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        lines.extend(scalars)
        for key, value in tables:
            table([*path, str(key)], value)

    table([], data)
    return "\n".join(lines) + "\n"
