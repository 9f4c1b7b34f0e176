"""The lean model path: chat completions to an OpenAI-compatible endpoint on one pooled aiohttp session.

Why it exists: against a local server (vLLM, llama.cpp, SGLang) answering hundreds of requests per
second, litellm's ~4-5 ms of CPU per call, on the event loop that also serves every rollout, caps a
whole evaluation near 200 calls/s on a 2-core machine; one POST on a kept-alive connection costs
~0.3 ms. So `LLMClient` sends `openai/<model>` requests for a configured endpoint (`--api-base`,
`OPENAI_BASE_URL`) here, and everything else through litellm (`path_for` decides; docs/benchmarks.md).

Only the transport is different. Retries, backoff, the attempt/retry/failure accounting, the cache
and its per-rollout scope, the parameter allowlist and the budgets all stay in `LLMClient` and the
broker, shared by both paths. What this module must reproduce of litellm is what reaches the
accounts: the request body litellm's OpenAI provider sends (model without its `openai/` prefix,
messages, tools, the allowlisted parameters as they are), the key (the configured variable, else
`OPENAI_API_KEY`; none is an auth failure before any request, as with litellm), failures that
`failures.classify` sorts into the same causes (the HTTP status and the provider's message;
aiohttp's connection errors keep their socket error in the chain), tokens from the response's
`usage`, and the cost from litellm's own price table (`Pricing`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

LLMPath = Literal["lean", "litellm"]
PATH_ENV = "HARNESS_OPT_LLM_PATH"
"""`lean`, `litellm` or `auto` (the default): overrides `LLMConfig.path` from the environment."""
LEAN_PREFIX = "openai/"
LITELLM_MAPPED = ("o1", "o3", "o4", "gpt-5")
"""OpenAI model families whose parameters litellm rewrites (max_tokens -> max_completion_tokens,
temperature dropped): sent through litellm even at an endpoint (a gateway in front of OpenAI)."""


def base_url(api_base: str | None) -> str | None:
    """The endpoint litellm's OpenAI provider would use: the configured one, else its environment's."""
    return api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")


def path_for(model: str, api_base: str | None, choice: str = "auto") -> LLMPath:
    """Which path a model call takes. `auto`: lean for `openai/...` models sent to a configured
    endpoint (a local server or a gateway that speaks the protocol), litellm for the rest, including
    OpenAI's own API without an endpoint and OpenAI's reasoning models anywhere (litellm maps their
    parameters)."""
    choice = os.environ.get(PATH_ENV, "") or choice
    if choice == "litellm" or not model.startswith(LEAN_PREFIX):
        return "litellm"
    if choice == "lean":
        return "lean"
    if model.removeprefix(LEAN_PREFIX).startswith(LITELLM_MAPPED):
        return "litellm"
    return "lean" if base_url(api_base) else "litellm"


class OpenAIHTTPError(Exception):
    """An answer with an error status, shaped like litellm's errors where `failures.classify` looks:
    `status_code`, `response.headers` (Retry-After) and the provider's message in the text."""

    def __init__(self, status_code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"OpenAI-compatible endpoint answered {status_code}: {message}")
        self.status_code = status_code
        self.response = _Headers(dict(headers or {}))
        self.message = message


class MissingKeyError(Exception):
    """No key for an `openai/` model: what litellm's provider says, before any request is sent."""


class _Headers:
    """Just enough of a response for `client._retry_after_s`."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = {k.lower(): v for k, v in headers.items()}


# --- prices ------------------------------------------------------------------------------------------


class Pricing:
    """USD per token of a model, from litellm's price table, without importing litellm.

    litellm prices an `openai/<name>` response from the table entry of `<name>` (or the full string),
    input, output and cached input tokens apart; an unknown model costs 0. The table is litellm's
    `model_cost` when litellm is already loaded (it has the models registered at run time), else the
    same bundled JSON file litellm loads (`LITELLM_LOCAL_MODEL_COST_MAP`, set by litellm_setup), read
    once: importing litellm would cost seconds of start-up.
    """

    _table: ClassVar[dict[str, Any] | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _memo: ClassVar[dict[str, tuple[float, float, float] | None]] = {}

    @classmethod
    def table(cls) -> dict[str, Any]:
        litellm = sys.modules.get("litellm")
        loaded = getattr(litellm, "model_cost", None)
        if isinstance(loaded, dict):
            return loaded
        with cls._lock:
            if cls._table is None:
                cls._table = _bundled_price_table()
            return cls._table

    @classmethod
    def prices(cls, model: str) -> tuple[float, float, float] | None:
        """(input, output, cached input) USD per token, or None for a model the table does not know."""
        if model in cls._memo:
            return cls._memo[model]
        found: tuple[float, float, float] | None = None
        table = cls.table()
        for key in (model, model.split("/", 1)[-1]):
            entry = table.get(key)
            if isinstance(entry, dict) and "input_cost_per_token" in entry:
                try:
                    cost_in = float(entry.get("input_cost_per_token") or 0.0)
                    cost_out = float(entry.get("output_cost_per_token") or 0.0)
                    cached = entry.get("cache_read_input_token_cost")
                    found = (cost_in, cost_out, cost_in if cached is None else float(cached))
                except (TypeError, ValueError):
                    found = None
                break
        if "litellm" in sys.modules:  # a model registered later must not be hidden by this memo
            cls._memo[model] = found
        return found

    @classmethod
    def cost(cls, model: str, tokens_in: int, tokens_out: int, cached_in: int = 0) -> float:
        prices = cls.prices(model)
        if prices is None:
            return 0.0
        cost_in, cost_out, cost_cached = prices
        cached_in = max(0, min(cached_in, tokens_in))
        return (tokens_in - cached_in) * cost_in + cached_in * cost_cached + tokens_out * cost_out


def _bundled_price_table() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    table.pop("sample_spec", None)
    return table if isinstance(table, dict) else {}


# --- the transport -----------------------------------------------------------------------------------


def _normalised_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The assistant message as `client.message_to_dict` makes it from litellm's Message."""
    tool_calls = None
    raw_calls = message.get("tool_calls")
    if raw_calls:
        tool_calls = []
        for i, call in enumerate(raw_calls):
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            tool_calls.append(
                {
                    "id": call.get("id") or f"call_{i}",
                    "type": "function",
                    "function": {"name": function.get("name"), "arguments": arguments},
                }
            )
    return {"role": "assistant", "content": message.get("content"), "tool_calls": tool_calls}


class Completion:
    """What `LLMClient` reads off an answer, whichever path produced it."""

    __slots__ = ("cost_usd", "message", "tokens_in", "tokens_out")

    def __init__(self, message: dict[str, Any], tokens_in: int, tokens_out: int, cost_usd: float) -> None:
        self.message = message
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.cost_usd = cost_usd


def parse_completion(model: str, data: Any) -> Completion:
    """A chat completion body -> Completion; a body that is not one raises (a server error)."""
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise OpenAIHTTPError(500, f"not a chat completion: {str(data)[:300]}") from None
    usage = data.get("usage") or {}
    tokens_in = int(usage.get("prompt_tokens") or 0)
    tokens_out = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    cost = Pricing.cost(model, tokens_in, tokens_out, cached)
    return Completion(_normalised_message(message), tokens_in, tokens_out, cost)


class OpenAIHTTP:
    """One pooled aiohttp session per event loop (a session belongs to the loop it was made in), closed
    when its loop shuts down (`asyncio.run` closes async generators: the session's holder is one) or
    by `aclose()`. Safe to share between the loop's tasks; a thread with its own loop gets its own."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._holders: list[Any] = []
        self._lock = threading.Lock()

    async def _session(self) -> Any:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        import aiohttp

        # No per-host cap: the evaluator's concurrency is the cap. Connections are kept alive.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)
        holder = _close_with_loop(session)
        await holder.__anext__()
        with self._lock:
            self._sessions[loop] = session
            self._holders.append(holder)
        return session

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
        api_base: str | None,
        api_key: str | None,
        timeout_s: float,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Completion:
        """POST one chat completion; raises OpenAIHTTPError for an error status, aiohttp's or
        asyncio's errors for a failed connection or a timeout, MissingKeyError without a key."""
        import aiohttp

        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise MissingKeyError(
                "Missing credentials. Please pass an `api_key`, or set the `OPENAI_API_KEY` environment "
                "variable (or name another with --api-key-env)."
            )
        base = (base_url(api_base) or "https://api.openai.com/v1").rstrip("/")
        body: dict[str, Any] = {"model": model.removeprefix(LEAN_PREFIX), "messages": messages}
        if tools:
            body["tools"] = tools
        body.update((k, v) for k, v in params.items() if v is not None)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if extra_headers:
            headers.update(extra_headers)
        session = await self._session()
        payload = json.dumps(body, separators=(",", ":")).encode()
        async with session.post(
            f"{base}/chat/completions",
            data=payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.read()
            status = response.status
            if status >= 400:
                raise OpenAIHTTPError(status, _error_text(raw), response.headers)
        try:
            data = json.loads(raw)
        except ValueError:
            raise OpenAIHTTPError(500, f"the answer is not JSON: {raw[:200]!r}") from None
        return parse_completion(model, data)

    async def aclose(self) -> None:
        """Close this loop's session (other loops' close with their loops)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()


async def _close_with_loop(session: Any) -> AsyncIterator[None]:
    """Holds `session` open until its event loop shuts its async generators down, then closes it."""
    try:
        yield None
        await asyncio.Event().wait()
    finally:
        if not session.closed:
            await session.close()


def _error_text(raw: bytes) -> str:
    """The provider's own message from an error body (`{"error": {"message": ...}}`), else the body."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:1000].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:1000]
    if isinstance(error, str):
        return error[:1000]
    return json.dumps(data)[:1000]
