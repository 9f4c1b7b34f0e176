"""The one allowlist of model-call parameters that untrusted harness code may set.

Parameters reach `litellm.acompletion` as keyword arguments, and litellm reads more from them than
sampling settings: `api_base`, `base_url`, `custom_llm_provider`, `api_key`, `extra_headers`, callbacks...
A harness (agent.py's `ctx.llm(**params)` or harness.toml `[model] params`) that could set those would
send the user's key and the task text wherever it liked. So every parameter a harness gives is checked
here, by name, type and range, and anything else is refused with the parameter's name: the broker turns
that into a rollout error, and `harness.toml` with such a parameter does not load (so a candidate that
adds one is invalid before it costs an evaluation). Endpoints and keys come only from the user's own
configuration (`LLMConfig`, the environment).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

MAX_CALL_TOKENS = 32_768
"""Per-call output cap, whatever the harness asks for (the rollout's remaining budget may cap lower)."""
_MAX_STOP = 4
_MAX_STOP_CHARS = 256
_MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
"""Deepest JSON a harness may hand the provider as a schema (response_format, tools.json)."""
_MAX_LOGIT_BIAS = 300


class ParamError(ValueError):
    """A parameter a harness may not set, or a value of the wrong type or range; names the parameter."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"parameter {name!r} {problem}")


def _number(low: float, high: float) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParamError(name, f"must be a number, got {type(value).__name__}")
        if not low <= value <= high:
            raise ParamError(name, f"must be between {low:g} and {high:g}, got {value!r}")
        return value

    return check


def _integer(low: int, high: int) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(name, f"must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ParamError(name, f"must be between {low} and {high}, got {value!r}")
        return value

    return check


def _boolean(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ParamError(name, f"must be true or false, got {type(value).__name__}")
    return value


def _max_tokens(name: str, value: Any) -> Any:
    # Any positive count is accepted here; the broker caps it at MAX_CALL_TOKENS and the budget left.
    return _integer(1, 2**31 - 1)(name, value)


def _stop(name: str, value: Any) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ParamError(name, "must be a string or a list of strings")
    if not 1 <= len(items) <= _MAX_STOP or any(not 0 < len(s) <= _MAX_STOP_CHARS for s in items):
        raise ParamError(name, f"takes 1 to {_MAX_STOP} non-empty strings of at most {_MAX_STOP_CHARS} chars")
    return value


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early past `limit` (no recursion: a hostile value
    must not be able to raise RecursionError here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node)
    return deepest


def _json_value(name: str, value: Any) -> None:
    if json_depth(value, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        raise ParamError(name, f"is nested deeper than {MAX_SCHEMA_DEPTH} levels")
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ParamError(name, f"is not JSON ({exc})") from None
    if size > _MAX_SCHEMA_BYTES:
        raise ParamError(name, f"is {size} bytes of JSON (limit {_MAX_SCHEMA_BYTES})")


def _response_format(name: str, value: Any) -> Any:
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise ParamError(name, 'must be {"type": "text" | "json_object" | "json_schema", ...}')
    allowed = {"type", "json_schema"}
    extra = sorted(set(value) - allowed)
    if extra:
        raise ParamError(name, f"has keys that are not allowed: {extra}")
    if value["type"] == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise ParamError(name, 'type "json_schema" needs a "json_schema" object')
    _json_value(name, value)
    return value


def _tool_choice(name: str, value: Any) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if (
        isinstance(value, dict)
        and value.get("type") == "function"
        and set(value) == {"type", "function"}
        and isinstance(value["function"], dict)
        and set(value["function"]) == {"name"}
        and isinstance(value["function"]["name"], str)
    ):
        return value
    raise ParamError(
        name, 'must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}'
    )


def _logit_bias(name: str, value: Any) -> Any:
    if not isinstance(value, dict) or len(value) > _MAX_LOGIT_BIAS:
        raise ParamError(name, f"must be an object of at most {_MAX_LOGIT_BIAS} token ids -> bias")
    for key, bias in value.items():
        if not str(key).isdigit():
            raise ParamError(name, f"keys must be token ids, got {key!r}")
        _number(-100, 100)(name, bias)
    return value


def _n(name: str, value: Any) -> Any:
    if value != 1 or isinstance(value, bool):
        raise ParamError(name, "is fixed at 1 (one completion per call; make more calls for more samples)")
    return value


def _reasoning_effort(name: str, value: Any) -> Any:
    if value not in ("minimal", "low", "medium", "high"):
        raise ParamError(name, 'must be "minimal", "low", "medium" or "high"')
    return value


ALLOWED: Mapping[str, Callable[[str, Any], Any]] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "top_k": _integer(1, 1000),
    "max_tokens": _max_tokens,
    "max_completion_tokens": _max_tokens,
    "stop": _stop,
    "seed": _integer(-(2**63), 2**63 - 1),
    "response_format": _response_format,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "logit_bias": _logit_bias,
    "reasoning_effort": _reasoning_effort,
    "n": _n,
}
"""Sampling and output-shape settings only: nothing that routes, authenticates or multiplies a call."""


def check_params(params: Any) -> dict[str, Any]:
    """Return `params` if every entry is allowed and well-formed; else raise ParamError naming the first bad
    one (endpoints, keys, headers, callbacks, `n` > 1 and unknown names are all refused)."""
    if not isinstance(params, dict):
        raise ParamError("params", f"must be an object, got {type(params).__name__}")
    for name in sorted(params, key=str):
        check = ALLOWED.get(name) if isinstance(name, str) else None
        if check is None:
            raise ParamError(str(name), f"is not allowed (allowed: {', '.join(sorted(ALLOWED))})")
        check(name, params[name])
    return params


TEXT_PARTS = frozenset({"text", "thinking", "redacted_thinking"})
"""Content-part types a harness may send. The others carry a URL or a file (image_url, file,
input_audio, document, video_url...) that litellm's provider adapters download in the parent (an
image_url for Gemini, Bedrock or Ollama, a file part's http file_id for OpenAI): the harness would
choose a host for the parent to send whatever it puts in the URL (the task text) to."""


def check_messages(messages: Any) -> None:
    """Raise ParamError naming the first content part that is not text."""
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind not in TEXT_PARTS:
                raise ParamError(
                    f"messages[{i}].content[{j}]",
                    f"is a {str(kind)[:40]!r} content part: only text content parts are sent "
                    f"({', '.join(sorted(TEXT_PARTS))})",
                )


def output_cap(params: Mapping[str, Any]) -> int | None:
    """The per-call output tokens the harness asked for (max_tokens or max_completion_tokens), if any."""
    values = [params[k] for k in ("max_tokens", "max_completion_tokens") if params.get(k) is not None]
    return min(values) if values else None


def with_output_cap(params: dict[str, Any], cap: int) -> dict[str, Any]:
    """`params` with the output limit lowered to `cap` (both spellings, whichever the harness used)."""
    out = dict(params)
    keys = [k for k in ("max_tokens", "max_completion_tokens") if k in out] or ["max_tokens"]
    for key in keys:
        out[key] = min(int(out.get(key) or cap), cap)
    return out


def estimate_tokens(messages: Any, tools: Any) -> int:
    """A deliberately high estimate of a request's prompt tokens (UTF-8 bytes / 3; real tokenizers
    average about 4 bytes per token on English), so the budget is never overshot by an estimate."""
    try:
        size = len(json.dumps([messages, tools], ensure_ascii=False).encode())
    except (TypeError, ValueError):
        size = len(repr([messages, tools]).encode())
    return size // 3 + 1


def token_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token of `model` by litellm's price table; (0, 0) for local models; None
    when unknown (then a dollar budget can only be checked after each call).

    Only once litellm is loaded (the evaluator's model check loads it before any rollout): importing it
    here would stall the broker's event loop for seconds.
    """
    if model.startswith("local/"):
        return 0.0, 0.0
    litellm = sys.modules.get("litellm")
    table = getattr(litellm, "model_cost", None)
    if not isinstance(table, dict):
        return None
    for key in (model, model.split("/", 1)[-1]):
        entry = table.get(key)
        if isinstance(entry, dict):
            try:
                return (
                    float(entry.get("input_cost_per_token") or 0.0),
                    float(entry.get("output_cost_per_token") or 0.0),
                )
            except (TypeError, ValueError):
                return None
    return None
