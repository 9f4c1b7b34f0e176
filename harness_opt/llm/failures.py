"""Why a model call failed, in one word, and whether another attempt can help.

litellm maps provider errors onto openai's exception classes, but not faithfully for a reader of a
run's figures: a refused connection arrives as `InternalServerError` (status 500), and a prompt too
long for the model is a `BadRequestError` on most OpenAI-compatible servers. So the cause is read
from the whole exception chain: the socket error at its root, the status, the provider's message.

- transient (retried with backoff): connection_refused, connection, timeout, rate_limit, server_error
- permanent (never retried; each would fail again): context_overflow, bad_request (the request the
  harness built: a task failure, scored 0 and counted), auth, unknown_model (the set-up: an
  infrastructure failure, and what the pre-flight call catches before a run starts)
- other: anything unrecognised; not retried, reported as an infrastructure failure.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Literal

Cause = Literal[
    "connection_refused",
    "connection",
    "timeout",
    "rate_limit",
    "server_error",
    "context_overflow",
    "bad_request",
    "auth",
    "unknown_model",
    "other",
]

TRANSIENT: frozenset[str] = frozenset(
    {"connection_refused", "connection", "timeout", "rate_limit", "server_error"}
)
"""Worth another attempt after a backoff."""

PERMANENT: frozenset[str] = frozenset({"context_overflow", "bad_request", "auth", "unknown_model"})
"""Would fail again on every attempt: never retried."""

REQUEST_FAULTS: frozenset[str] = frozenset({"context_overflow", "bad_request"})
"""The provider refused the request the harness built: the version's failure, not the infrastructure's
(a rollout ending on one is scored 0, counted, and served from the ledger on a re-run)."""

_CONTEXT_OVERFLOW = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long|"
    r"exceeds? (the )?(model'?s? )?(context|max(imum)? (input )?tokens)|requested tokens",
    re.IGNORECASE,
)


_CONNECTION_TEXT = re.compile(
    r"connection error|connection refused|connection reset|cannot connect|name or service not known|"
    r"temporary failure in name resolution",
    re.IGNORECASE,
)
"""The words of a connection failure whose exception chain was lost (litellm wraps some errors in a
500 whose cause is not kept)."""
_MISSING_KEY_TEXT = re.compile(
    r"missing credentials|api[_ ]key (is )?(missing|not set|required)", re.IGNORECASE
)


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it (`__cause__`, else `__context__`), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def root_message(error: BaseException) -> str:
    """What went wrong, in the words that say most: for a connection or a timeout the innermost
    cause ('[Errno 111] Connect call failed ...', where litellm's wrapper only says 'Connection
    error.'); for an answer with an error status, the provider's message."""
    chain = list(exception_chain(error))
    if any(isinstance(e, _connection_types() + _timeout_types()) for e in chain):
        chain = [e for e in chain if _status(e) is None or e is error]
    else:  # the server answered: its own message is in the outermost error
        chain = chain[:1]
    for e in reversed(chain):
        text = str(e).strip()
        if text:
            return f"{type(e).__name__}: {text}" if e is not error else text
    return type(error).__name__


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _connection_types() -> tuple[type[BaseException], ...]:
    import httpx
    import openai

    found: list[type[BaseException]] = [ConnectionError, httpx.TransportError, openai.APIConnectionError]
    try:
        import aiohttp

        found.append(aiohttp.ClientConnectionError)
    except ImportError:  # litellm works without aiohttp
        pass
    return tuple(found)


def _loaded_litellm() -> ModuleType | None:
    """litellm if something imported it. An error cannot be one of litellm's classes otherwise, and
    the lean path (openai_http.py) must not pay seconds of import to classify its own errors."""
    return sys.modules.get("litellm")


def _timeout_types() -> tuple[type[BaseException], ...]:
    import httpx
    import openai

    found: list[type[BaseException]] = [
        asyncio.TimeoutError,
        TimeoutError,
        httpx.TimeoutException,
        openai.APITimeoutError,
    ]
    litellm = _loaded_litellm()
    if litellm is not None:
        found.append(litellm.Timeout)
    return tuple(found)


def _is(error: BaseException, litellm: ModuleType | None, *names: str) -> bool:
    """isinstance of one of litellm's exception classes (never, when litellm is not loaded)."""
    if litellm is None:
        return False
    return isinstance(error, tuple(getattr(litellm, name) for name in names))


def classify(error: BaseException) -> Cause:
    """The cause of a failed call (see the module docstring for the classes)."""
    litellm = _loaded_litellm()
    chain = list(exception_chain(error))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection_refused"
    status = _status(error)
    text = " ".join(str(e) for e in chain)[:4000]
    bad_request = _is(error, litellm, "BadRequestError") or status in (400, 413)
    overflow = bad_request and _CONTEXT_OVERFLOW.search(text) is not None
    if _is(error, litellm, "ContextWindowExceededError") or overflow:
        return "context_overflow"
    auth = _is(error, litellm, "AuthenticationError", "PermissionDeniedError")
    if auth or status in (401, 403) or _MISSING_KEY_TEXT.search(text):
        return "auth"
    if _is(error, litellm, "NotFoundError") or status == 404:
        return "unknown_model"
    if any(isinstance(e, _timeout_types()) for e in chain) or status == 408:
        return "timeout"
    if _is(error, litellm, "RateLimitError") or status == 429:
        return "rate_limit"
    if any(isinstance(e, _connection_types()) for e in chain) or _CONNECTION_TEXT.search(text):
        return "connection"
    if bad_request or _is(error, litellm, "UnprocessableEntityError") or status == 422:
        return "bad_request"
    server = ("InternalServerError", "ServiceUnavailableError", "BadGatewayError")
    if _is(error, litellm, *server) or (status is not None and status >= 500):
        return "server_error"
    return "other"


def describe(cause: str) -> str:
    """A cause in words, for error lines and summaries."""
    return {
        "connection_refused": "connection refused",
        "connection": "connection failed",
        "timeout": "timed out",
        "rate_limit": "rate limited (429)",
        "server_error": "server error (5xx)",
        "context_overflow": "prompt longer than the model's context",
        "bad_request": "request refused as malformed (400)",
        "auth": "key refused (401/403)",
        "unknown_model": "model not found (404)",
        "other": "unexpected failure",
    }.get(cause, cause)
