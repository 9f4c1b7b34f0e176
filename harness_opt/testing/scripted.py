"""A scripted model for tests, served through litellm as the custom provider `scripted`.

Tests of the evaluator, broker and proposers need a model that answers instantly and predictably
but still goes through the real litellm path (routing, exception mapping, usage, cost). A
`ScriptedModel` is that model: `scripted/<name>` answers from a list of replies or a function of
the request, counts tokens as words, may charge a fake price, and can be told to fail (429, 500,
timeout, auth) to exercise retries.

    with scripted_model("echo", ["hello", {"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}]) as m:
        await client.complete(LLMRequest(model=m.model, messages=[...]))
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError

from harness_opt.llm.litellm_setup import import_litellm, register_model_info, register_provider

Reply = str | dict[str, Any]
"""A reply: text, or a dict with `content` and/or `tool_calls` ([{"name", "arguments"}] or the
OpenAI shape), or a `Fail`."""
Responder = (
    Sequence["Reply | Fail"]
    | Callable[[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]], Reply]
)

FAILURE_STATUS = {
    "rate_limit": 429,
    "server_error": 500,
    "unavailable": 503,
    "timeout": 408,
    "auth": 401,
    "bad_request": 400,
}


@dataclass(frozen=True)
class Fail:
    """A scripted failure: litellm maps it to RateLimitError, InternalServerError, Timeout, ..."""

    kind: str = "rate_limit"

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_STATUS:
            raise ValueError(f"unknown failure kind {self.kind!r}; use one of {sorted(FAILURE_STATUS)}")

    def raise_(self) -> None:
        raise CustomLLMError(status_code=FAILURE_STATUS[self.kind], message=f"scripted {self.kind}")


@dataclass
class ScriptedCall:
    """What the model was asked: kept so tests can assert on prompts, tools and params."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    params: dict[str, Any]


def word_count(value: Any) -> int:
    """Token stand-in: whitespace-separated words of all text in a (nested) message structure."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(word_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(word_count(v) for v in value)
    return 0


@dataclass
class ScriptedModel:
    """One named script. `model` is the litellm string to call it by."""

    name: str
    responder: Responder
    cost_per_token: float = 0.0
    delay_s: float = 0.0
    calls: list[ScriptedCall] = field(default_factory=list)
    attempts: int = 0
    _cursor: int = 0
    _pending_failures: list[Fail] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model(self) -> str:
        return f"scripted/{self.name}"

    def fail_next(self, n: int, kind: str = "rate_limit") -> None:
        """The next `n` attempts fail with `kind` before the script resumes."""
        with self._lock:
            self._pending_failures.extend(Fail(kind) for _ in range(n))

    def next_reply(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> Reply:
        """The reply for this attempt, or raise its scripted failure. Thread- and task-safe."""
        with self._lock:
            self.attempts += 1
            if self._pending_failures:
                self._pending_failures.pop(0).raise_()
            if callable(self.responder):
                item: Reply | Fail = self.responder(messages, tools, params)
            else:
                if self._cursor >= len(self.responder):
                    raise CustomLLMError(
                        status_code=400,
                        message=f"scripted/{self.name}: script exhausted after {len(self.responder)} replies",
                    )
                item = self.responder[self._cursor]
                self._cursor += 1
            if isinstance(item, Fail):
                item.raise_()
                raise AssertionError("unreachable")
            self.calls.append(ScriptedCall(messages=messages, tools=tools, params=params))
            return item


def _normalise(reply: Reply) -> dict[str, Any]:
    """Any accepted reply shape -> an OpenAI assistant message dict."""
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply, "tool_calls": None}
    calls = []
    for i, call in enumerate(reply.get("tool_calls") or []):
        function = call.get("function", call)
        arguments = function.get("arguments", {})
        calls.append(
            {
                "id": call.get("id", f"call_{i}"),
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return {"role": "assistant", "content": reply.get("content"), "tool_calls": calls or None}


class ScriptedProvider(CustomLLM):
    """The litellm provider `scripted`: dispatches `scripted/<name>` to its registered script."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, ScriptedModel] = {}

    def _script(self, model: str) -> ScriptedModel:
        name = model.split("/", 1)[1] if model.startswith("scripted/") else model
        script = self.models.get(name)
        if script is None:
            raise CustomLLMError(status_code=404, message=f"no scripted model named {name!r} is registered")
        return script

    def _respond(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> Any:
        litellm = import_litellm()
        script = self._script(model)
        params = dict(optional_params)
        tools = params.pop("tools", None)
        message = _normalise(script.next_reply(messages, tools, params))
        tokens_in = word_count(messages) + word_count(tools)
        tokens_out = word_count(message["content"]) + word_count(message["tool_calls"])
        return litellm.ModelResponse(
            model=script.model,
            choices=[
                {
                    "index": 0,
                    "finish_reason": "tool_calls" if message["tool_calls"] else "stop",
                    "message": message,
                }
            ],
            usage={
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        )

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        script = self._script(model)
        if script.delay_s:
            time.sleep(script.delay_s)
        return self._respond(model, messages, kwargs.get("optional_params") or {})

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        script = self._script(model)
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        return self._respond(model, messages, kwargs.get("optional_params") or {})


_PROVIDER: ScriptedProvider | None = None


def _provider() -> ScriptedProvider:
    global _PROVIDER
    if _PROVIDER is None:
        _PROVIDER = ScriptedProvider()
        register_provider("scripted", _PROVIDER)
    return _PROVIDER


def register_scripted(model: ScriptedModel) -> str:
    """Make `scripted/<model.name>` callable through litellm; returns the model string."""
    provider = _provider()
    provider.models[model.name] = model
    register_model_info(
        model.model,
        {
            "litellm_provider": "scripted",
            "mode": "chat",
            "input_cost_per_token": model.cost_per_token,
            "output_cost_per_token": model.cost_per_token,
            "cache_read_input_token_cost": 0.0,
            "cache_creation_input_token_cost": 0.0,
            "supports_function_calling": True,
            "supports_response_schema": True,
        },
    )
    return model.model


def unregister_scripted(name: str) -> None:
    _provider().models.pop(name, None)


@contextmanager
def scripted_model(
    name: str, responder: Responder, *, cost_per_token: float = 0.0, delay_s: float = 0.0
) -> Iterator[ScriptedModel]:
    """A registered `ScriptedModel` for the duration of the block."""
    model = ScriptedModel(name=name, responder=responder, cost_per_token=cost_per_token, delay_s=delay_s)
    register_scripted(model)
    try:
        yield model
    finally:
        unregister_scripted(name)
