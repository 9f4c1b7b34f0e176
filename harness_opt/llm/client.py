"""`LLMClient`: the one place harness-opt calls a model, through litellm or the lean OpenAI path.

Two transports, one client: `openai/` models sent to a configured OpenAI-compatible endpoint go
through `openai_http.py` (one pooled aiohttp session, ~0.3 ms of CPU per call), every other model
through `litellm.acompletion` (`openai_http.path_for` decides; `LLMConfig.path` or
HARNESS_OPT_LLM_PATH override). Everything below is shared by both, so a request and its accounting
are the same whichever carries it.

It owns what every call needs and no harness should reimplement: retries with exponential backoff
and jitter on transient failures (429, 5xx, timeouts, dropped or refused connections) and never on a
request that can only fail again (context overflow, bad request, auth, unknown model: see
`failures.py`); exact accounting of the requests sent (attempts, retries by cause, answers) for the
client and for the rollout a call belongs to (`call_account`); token and cost accounting; the
on-disk response cache for deterministic calls; and the pre-flight call (`preflight`) that fails
fast, with one clear error, on an endpoint that cannot be reached or a key that is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.errors import ModelError
from harness_opt.llm.cache import CallScope, ResponseCache, current_scope
from harness_opt.llm.failures import PERMANENT, TRANSIENT, classify, describe, root_message
from harness_opt.llm.litellm_setup import import_litellm
from harness_opt.llm.openai_http import Completion, OpenAIHTTP, path_for
from harness_opt.llm.types import CallAccount, LLMRequest, LLMResult

log = logging.getLogger(__name__)


class LLMConfig(BaseModel):
    """How the client talks to models. One instance per evaluation run."""

    timeout_s: float = Field(default=120.0, description="Per-attempt wall-clock limit, seconds.")
    max_retries: int = Field(default=4, description="Retries after the first attempt on transient errors.")
    backoff_base_s: float = Field(
        default=0.5, description="First retry waits about this long; doubles each time."
    )
    backoff_max_s: float = Field(default=30.0, description="Upper bound of one backoff wait.")
    cache: bool = Field(default=True, description="Serve deterministic requests from the on-disk cache.")
    api_base: str | None = Field(
        default=None, description="Override the provider's endpoint (proxy, vLLM...)."
    )
    api_key_env: str | None = Field(
        default=None, description="Env var holding the key, if not the provider's usual."
    )
    path: Literal["auto", "lean", "litellm"] = Field(
        default="auto",
        description="Transport: auto = lean (pooled aiohttp) for openai/ models at an api_base, "
        "litellm for the rest; HARNESS_OPT_LLM_PATH overrides.",
    )


class LLMCallError(RuntimeError):
    """A call that failed for good: retries exhausted, or a request the provider refuses.

    Not a `UserError`: the evaluator catches it and records the rollout with `str(error)` as the
    reason. `cause` is why (`failures.Cause`); `retryable` says whether the last failure was
    transient (the retry budget ran out) rather than permanent."""

    def __init__(self, model: str, attempts: int, cause: BaseException, *, kind: str = "other") -> None:
        self.model = model
        self.attempts = attempts
        self.cause = cause
        self.kind = kind
        self.retryable = kind in TRANSIENT
        super().__init__(
            f"{model}: {describe(kind)} after {attempts} attempt(s) ({type(cause).__name__}): "
            f"{_one_line(root_message(cause))}"
        )


class LLMAuthError(ModelError):
    """The provider refused the key: a problem the user must fix, never retried."""

    kind = "auth"


@dataclass
class ClientStats:
    """Counters over the client's life. `cost_usd` and tokens count real model calls only.

    `attempts` is every request sent to a provider (what its own log shows), so
    attempts = model_calls + retries + failures; `preflight` requests are counted apart."""

    requests: int = 0
    attempts: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    retries_by_cause: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    failures_by_cause: Counter[str] = field(default_factory=Counter)
    preflight: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.model_calls} model calls, {self.cache_hits} cached, {self.retries} retries, "
            f"{self.failures} failed, {self.tokens_in} tokens in, {self.tokens_out} out, ${self.cost_usd:.4f}"
        )


_ACCOUNT: ContextVar[CallAccount | None] = ContextVar("harness_opt_call_account", default=None)


@contextlib.contextmanager
def call_account() -> Iterator[CallAccount]:
    """Count every model call made in the block (and in tasks or threads started with its context)
    into one account: the evaluator opens one per rollout."""
    account = CallAccount()
    token = _ACCOUNT.set(account)
    try:
        yield account
    finally:
        _ACCOUNT.reset(token)


PREFLIGHT_HEADER = "X-Harness-Opt-Preflight"
"""Sent with the pre-flight request, so a server's log (or a test's) can tell it from real calls."""

IN_PROCESS_PROVIDERS = ("local/", "scripted/")
"""Models served inside this process: no endpoint to reach and no key, so no pre-flight call."""

_PREFLIGHT_OK: set[tuple[str, str, str]] = set()


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."


def _load_dotenv_once() -> None:
    """Keys come from the environment; a `.env` in the cwd fills in what is not already set."""
    global _DOTENV_LOADED
    if _DOTENV_LOADED:
        return
    _DOTENV_LOADED = True
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)


_DOTENV_LOADED = False


def is_retryable(error: BaseException) -> bool:
    """Transient failures worth another attempt: rate limits, server errors, timeouts, connections."""
    return classify(error) in TRANSIENT


def _retry_after_s(error: BaseException) -> float | None:
    """The provider's Retry-After, when a 429 carries one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def message_to_dict(message: Any) -> dict[str, Any]:
    """litellm's Message -> a plain, JSON-serialisable OpenAI assistant message."""
    tool_calls = None
    raw_calls = getattr(message, "tool_calls", None)
    if raw_calls:
        tool_calls = []
        for i, call in enumerate(raw_calls):
            function = call.function if hasattr(call, "function") else call["function"]
            name = function.name if hasattr(function, "name") else function["name"]
            arguments = function.arguments if hasattr(function, "arguments") else function["arguments"]
            if not isinstance(arguments, str):
                import json

                arguments = json.dumps(arguments)
            call_id = getattr(call, "id", None) or (call.get("id") if isinstance(call, dict) else None)
            tool_calls.append(
                {
                    "id": call_id or f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
    content = getattr(message, "content", None)
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}


class LLMClient:
    """Makes model calls for one evaluation run. Safe to share between concurrent asyncio tasks."""

    def __init__(self, config: LLMConfig | None = None, *, cache: ResponseCache | None = None) -> None:
        _load_dotenv_once()
        self.config = config or LLMConfig()
        self._cache = cache
        self.stats = ClientStats()
        # Concurrent calls with one cache key make one call. Inside a rollout the key names the
        # rollout and the repeat (llm/cache.py), so k trials still make k calls.
        self._inflight: dict[str, asyncio.Lock] = {}
        self._lean: OpenAIHTTP | None = None

    def path(self, model: str) -> str:
        """`lean` or `litellm`: the transport a call to `model` takes (see openai_http.path_for)."""
        return path_for(model, self.config.api_base, self.config.path)

    async def aclose(self) -> None:
        """Close the lean path's connection pool of the running loop (it also closes with its loop)."""
        if self._lean is not None:
            await self._lean.aclose()

    async def _send(self, kwargs: dict[str, Any]) -> Completion:
        """One request through the model's transport, bounded by the timeout: the lean path's own
        (aiohttp's total timeout), else an outer one that also bounds in-process providers that
        ignore `timeout` (`asyncio.timeout`: no extra task per call, unlike `wait_for`)."""
        timeout = kwargs["timeout"]
        if path_for(kwargs["model"], self.config.api_base, self.config.path) == "lean":
            if self._lean is None:
                self._lean = OpenAIHTTP()
            params = {k: v for k, v in kwargs.items() if k not in _TRANSPORT_KWARGS}
            return await self._lean.complete(
                model=kwargs["model"],
                messages=kwargs["messages"],
                tools=kwargs.get("tools"),
                params=params,
                api_base=kwargs.get("api_base"),
                api_key=kwargs.get("api_key"),
                timeout_s=timeout,
                extra_headers=kwargs.get("extra_headers"),
            )
        litellm = import_litellm()
        async with asyncio.timeout(timeout + 5.0):
            response = await litellm.acompletion(**kwargs)
        usage = getattr(response, "usage", None)
        return Completion(
            message_to_dict(response.choices[0].message),
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
            completion_cost(response),
        )

    @property
    def cache(self) -> ResponseCache | None:
        if self.config.cache and self._cache is None:
            self._cache = ResponseCache()
        return self._cache if self.config.cache else None

    async def complete(self, req: LLMRequest, *, scope: CallScope | None = None) -> LLMResult:
        """One model call: from the cache when deterministic and cached, else through litellm.

        `scope` (default: the rollout this runs in, `current_scope()`) makes the cache key per
        rollout and per repeat, so one trial's reply is never served to another trial.
        Raises `ModelError` for a problem the user must fix (no key, a refused key) and
        `LLMCallError` for a call that failed for good."""
        self.stats.requests += 1
        cache = self.cache
        if cache is None or not req.is_deterministic():
            return await self._call_with_retries(req)
        scope = scope or current_scope()
        key = scope.cache_key(req.cache_key()) if scope is not None else req.cache_key()
        lock = self._inflight.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                started = time.perf_counter()
                hit = await asyncio.to_thread(cache.get, key)
                if hit is not None:
                    self.stats.cache_hits += 1
                    account = _ACCOUNT.get()
                    if account is not None:
                        account.hit()
                    return hit.model_copy(update={"cached": True, "latency_s": time.perf_counter() - started})
                result = await self._call_with_retries(req)
                await asyncio.to_thread(cache.put, key, result)
                return result
        finally:
            if not lock.locked() and self._inflight.get(key) is lock:
                del self._inflight[key]

    def endpoint(self) -> str:
        """Where calls go: the configured api_base, else the provider's (or its environment's)."""
        return (
            self.config.api_base
            or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or "the provider's default endpoint"
        )

    async def preflight(self, model: str) -> None:
        """One tiny request before an evaluation starts: an endpoint that cannot be reached, a key
        it refuses or a model it does not know fails here, fast, as one `ModelError` naming the
        endpoint and the fix, instead of as hundreds of rollouts grinding through retries.

        A connection that fails is tried once more half a second later; a server error or a rate
        limit is retried twice and then let through (the evaluation's own retries and its degraded
        threshold deal with a flaky server), and so is a timeout or a refusal of the probe itself
        (it proves the endpoint answers). Once per model and endpoint per process; models
        served in-process (local/, scripted/) have nothing to reach."""
        if model.startswith(IN_PROCESS_PROVIDERS):
            return
        probe = [{"role": "user", "content": "Say OK."}]
        req = LLMRequest(model=model, messages=probe, params={"max_tokens": 1})
        kwargs = self._call_kwargs(req)  # a key variable that is not set fails here, every time
        key = (model, self.endpoint(), self.config.api_key_env or "")
        if key in _PREFLIGHT_OK:
            return
        kwargs["timeout"] = min(self.config.timeout_s, 60.0)
        kwargs["extra_headers"] = {PREFLIGHT_HEADER: "1"}
        for attempt in range(3):
            self.stats.preflight += 1
            try:
                await self._send(kwargs)
                break
            except Exception as error:
                cause = classify(error)
                unreachable = cause in ("connection_refused", "connection")
                if cause in ("auth", "unknown_model") or (unreachable and attempt == 1):
                    raise self._preflight_error(model, cause, error) from None
                if not unreachable and (cause not in ("server_error", "rate_limit") or attempt == 2):
                    break
                await asyncio.sleep(0.5 if unreachable else self._backoff_s(attempt, error))
        _PREFLIGHT_OK.add(key)

    def _preflight_error(self, model: str, cause: str, error: BaseException) -> ModelError:
        where = f"model {model} at {self.endpoint()}"
        detail = _one_line(root_message(error))[:200]
        if cause in ("connection_refused", "connection"):
            return ModelError(
                f"cannot reach the model's endpoint: {describe(cause)} ({detail})",
                where=where,
                fix="start the server, or correct --api-base / HARNESS_OPT_API_BASE",
            )
        if cause == "auth":
            key_var = self.config.api_key_env or "the provider's key variable (e.g. OPENAI_API_KEY)"
            return ModelError(
                f"the endpoint refused the key ({detail})",
                where=where,
                fix=f"set a valid key in {key_var} (environment or .env), or name another with --api-key-env",
            )
        return ModelError(
            f"the endpoint does not serve this model ({detail})",
            where=where,
            fix="check --model against the models the endpoint serves",
        )

    def _backoff_s(self, attempt: int, error: BaseException) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random, so parallel rollouts
        that hit one rate limit together do not retry in lockstep."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * (2**attempt))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        retry_after = _retry_after_s(error)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        return delay

    def _call_kwargs(self, req: LLMRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(req.params)
        kwargs.update(model=req.model, messages=req.messages, timeout=self.config.timeout_s)
        if req.tools:
            kwargs["tools"] = req.tools
        # Our loop owns retries; the SDK's own would hide attempts from the counters.
        kwargs["num_retries"] = 0
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise ModelError(
                    f"environment variable {self.config.api_key_env} is not set",
                    where="llm config api_key_env",
                    fix=f"export {self.config.api_key_env}=... or put it in .env",
                )
            kwargs["api_key"] = key
        return kwargs

    async def _call_with_retries(self, req: LLMRequest) -> LLMResult:
        kwargs = self._call_kwargs(req)
        account = _ACCOUNT.get()
        attempt = 0
        while True:
            started = time.perf_counter()
            self.stats.attempts += 1
            if account is not None:
                account.attempt()
            try:
                completion = await self._send(kwargs)
            except Exception as error:
                cause = classify(error)
                if cause in PERMANENT or cause not in TRANSIENT or attempt >= self.config.max_retries:
                    self._failed(account, cause, error)
                    if cause == "auth":
                        raise LLMAuthError(
                            f"the provider refused the key for {req.model} ({_one_line(str(error))[:160]})",
                            where=f"model {req.model}",
                            fix="set the provider's API key (e.g. OPENAI_API_KEY) in the environment or .env",
                        ) from error
                    raise LLMCallError(req.model, attempt + 1, error, kind=cause) from error
                delay = self._backoff_s(attempt, error)
                log.warning("%s: %s, retry %d in %.2fs", req.model, describe(cause), attempt + 1, delay)
                self.stats.retries += 1
                self.stats.retries_by_cause[cause] += 1
                if account is not None:
                    account.retry(cause)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            result = LLMResult(
                message=completion.message,
                tokens_in=completion.tokens_in,
                tokens_out=completion.tokens_out,
                cost_usd=completion.cost_usd,
                latency_s=time.perf_counter() - started,
                cached=False,
                model=req.model,
            )
            self.stats.model_calls += 1
            self.stats.tokens_in += result.tokens_in
            self.stats.tokens_out += result.tokens_out
            self.stats.cost_usd += result.cost_usd
            if account is not None:
                account.answered()
            return result

    def _failed(self, account: CallAccount | None, cause: str, error: BaseException) -> None:
        self.stats.failures += 1
        self.stats.failures_by_cause[cause] += 1
        if account is not None:
            account.fail(cause, f"{describe(cause)}: {_one_line(str(error))[:300]}")


_TRANSPORT_KWARGS = frozenset(
    {"model", "messages", "tools", "timeout", "num_retries", "api_base", "api_key", "extra_headers"}
)
"""`_call_kwargs` entries that are not request parameters (the lean path sends the rest as they are)."""


_UNPRICED: set[str] = set()


def completion_cost(response: Any) -> float:
    """USD cost of a response by litellm's price table; 0 for local or unpriced models, never raises.

    litellm usually computed the cost already (`_hidden_params["response_cost"]`); recomputing it
    costs ~0.3 ms of CPU per call, which matters at hundreds of calls per second. A model litellm
    cannot price is remembered so the failing lookup runs once per model, not once per call.
    """
    hidden = getattr(response, "_hidden_params", None) or {}
    known = hidden.get("response_cost")
    if isinstance(known, int | float):
        return float(known)
    model = str(getattr(response, "model", "") or "")
    if model in _UNPRICED:
        return 0.0
    litellm = import_litellm()
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:
        _UNPRICED.add(model)
        return 0.0
    return float(cost or 0.0)
