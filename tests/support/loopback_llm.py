"""An OpenAI-compatible chat-completions server on 127.0.0.1 that answers the same request differently
each time, so tests can see whether a reply was really fetched or served from a cache.

Each POST to `/v1/chat/completions` is recorded (model, messages, params) and answered by
`respond(request, n)` where n counts calls to that model from 0; the default answer is
`"<model> reply #<n>"`. Usage is reported as word counts so cost and token figures flow as usual.
harness-opt's pre-flight request (the `X-Harness-Opt-Preflight` header) is answered and kept apart
in `probes`, so `requests` and the per-model counts are the evaluation's own calls.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[dict[str, Any], int], str | dict[str, Any]]
"""(request body, n-th call to this model) -> reply text, or an assistant message dict."""


def default_respond(request: dict[str, Any], n: int) -> str:
    return f"{request.get('model')} reply #{n}"


@dataclass
class Loopback:
    """The running server: its base URL (for `api_base`) and every request it answered."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    probes: list[dict[str, Any]] = field(default_factory=list)
    """Pre-flight requests (answered, not counted in `requests`)."""

    def calls(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == model]


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(_words(v) for v in value.values())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    return 0


@contextmanager
def loopback_llm(respond: Respond = default_respond) -> Iterator[Loopback]:
    """Serve until the block ends. Point litellm at it with model `openai/<name>` and
    `api_base=<url>` (or the OPENAI_BASE_URL environment variable) and any API key."""
    lock = threading.Lock()
    state = Loopback(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            model = str(body.get("model"))
            if self.headers.get("X-Harness-Opt-Preflight"):
                with lock:
                    state.probes.append(body)
                self._answer(model, -1, {"role": "assistant", "content": "OK"}, body)
                return
            with lock:
                n = state.counts[model]
                state.counts[model] += 1
                state.requests.append(body)
            reply = respond(body, n)
            message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
            self._answer(model, n, message, body)

        def _answer(self, model: str, n: int, message: dict[str, Any], body: dict[str, Any]) -> None:
            payload = {
                "id": f"chatcmpl-{model}-{n}",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": _words(body.get("messages")),
                    "completion_tokens": _words(message),
                    "total_tokens": _words(body.get("messages")) + _words(message),
                },
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
