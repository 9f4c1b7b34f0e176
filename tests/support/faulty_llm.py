"""An OpenAI-compatible chat server on 127.0.0.1 that fails on purpose and counts what it receives.

`faulty_llm(fail_rate=0.3)` answers a seeded share of requests with an error status (500 by default),
can go down for a while (`outage(seconds)`, or `outage_at=N` to go down when the N-th request
arrives: the listening socket is closed, so clients get a refused connection, then it listens again
on the same port), can fail every request after the first `fail_after`, can answer slowly
(`delay_s`), and can refuse requests as a real server would: a prompt over `context_words` words
(400, "maximum context length"), a wrong key (401) or an unknown model (404). Every request that
reaches it is counted (`received`), harness-opt's pre-flight requests also apart (`preflight`), and
the others by outcome (`outcomes`), so a test can set the figures a run reports beside the
server's own.

Run it alone (`python -m tests.support.faulty_llm --fail-rate 0.3 --outage-at 60 --outage 30`)
to point `harness-opt eval --api-base` at it by hand; `GET /counts` shows its counts, and it prints
them when stopped.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFLIGHT_HEADER = "X-Harness-Opt-Preflight"

Respond = Callable[[dict[str, Any]], str]
"""(request body) -> reply text."""


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(_words(v) for v in value.values())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    return 0


@dataclass
class FaultyServer:
    """The running server: its URL, its own counts, and switches to fail on purpose."""

    url: str = ""
    port: int = 0
    fail_rate: float = 0.0
    fail_status: int = 500
    context_words: int | None = None
    api_key: str | None = None
    models: set[str] | None = None
    fail_after: int | None = None
    """Every request after this many received fails (fail_status)."""
    outage_at: int | None = None
    """Go down when this many requests have been received, for `outage_s` seconds."""
    outage_s: float = 2.0
    delay_s: float = 0.0
    received: int = 0
    """Requests that reached the server (refused connections never do)."""
    preflight: int = 0
    """Of those, harness-opt's pre-flight requests."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Per outcome of the requests other than pre-flight: "ok", or the error status sent ("500", ...)."""
    preflight_outcomes: Counter[str] = field(default_factory=Counter)
    down_since: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))
    _server: ThreadingHTTPServer | None = None
    _handler: type[BaseHTTPRequestHandler] | None = None

    def decide(self, body: dict[str, Any], headers: Any) -> tuple[int, str]:
        """(status, error message) for one request; status 200 means answer it."""
        with self._lock:
            self.received += 1
            if headers.get(PREFLIGHT_HEADER):
                self.preflight += 1
            fail = self._rng.random() < self.fail_rate
            fail = fail or (self.fail_after is not None and self.received > self.fail_after)
            if self.outage_at is not None and self.received == self.outage_at:
                self.outage(self.outage_s)
        auth = headers.get("Authorization") or ""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return 401, "Incorrect API key provided."
        model = str(body.get("model"))
        if self.models is not None and model not in self.models:
            return 404, f"The model `{model}` does not exist."
        words = _words(body.get("messages"))
        if self.context_words is not None and words > self.context_words:
            return 400, (
                f"This model's maximum context length is {self.context_words} tokens. However, your "
                f"messages resulted in {words} tokens. Please reduce the length of the messages."
            )
        if fail:
            return self.fail_status, "The server had an error while processing your request (on purpose)."
        return 200, ""

    def count(self, outcome: str, preflight: bool) -> None:
        with self._lock:
            (self.preflight_outcomes if preflight else self.outcomes)[outcome] += 1

    def down(self) -> None:
        """Stop listening: new connections are refused until `up()`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self.down_since = time.monotonic()

    def up(self) -> None:
        assert self._handler is not None
        for _ in range(100):  # the port may linger for a moment after close
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"port {self.port} did not come back")
        server.daemon_threads = True
        self._server = server
        self.down_since = None
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def outage(self, seconds: float, *, after: float = 0.0) -> threading.Thread:
        """Go down `after` seconds from now, for `seconds`, in a background thread."""

        def cycle() -> None:
            time.sleep(after)
            self.down()
            time.sleep(seconds)
            self.up()

        thread = threading.Thread(target=cycle, daemon=True)
        thread.start()
        return thread

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": self.received,
                "preflight": self.preflight,
                "outcomes": dict(self.outcomes),
                "preflight_outcomes": dict(self.preflight_outcomes),
            }


def _make_handler(state: FaultyServer, respond: Respond) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # GET /counts: the server's own counts, not a request it counts
            self._send(200, state.report())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            status, why = state.decide(body, self.headers)
            preflight = bool(self.headers.get(PREFLIGHT_HEADER))
            if state.delay_s:
                time.sleep(state.delay_s)
            if status != 200:
                state.count(str(status), preflight)
                kind = {401: "invalid_api_key", 404: "model_not_found"}.get(status, "server_error")
                error = {"error": {"message": why, "type": "invalid_request_error", "code": kind}}
                self._send(status, error)
                return
            text = "OK" if preflight else respond(body)
            message = {"role": "assistant", "content": text}
            state.count("ok", preflight)
            self._send(
                200,
                {
                    "id": f"chatcmpl-{state.received}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {
                        "prompt_tokens": _words(body.get("messages")),
                        "completion_tokens": _words(message),
                        "total_tokens": _words(body.get("messages")) + _words(message),
                    },
                },
            )

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def faulty_llm(respond: Respond = lambda body: "card_arrival", **settings: Any) -> Iterator[FaultyServer]:
    """Serve until the block ends; `settings` are `FaultyServer` fields (fail_rate, api_key, ...).
    Point litellm at it with model `openai/<name>`, `api_base=<url>` and any key (or `api_key`)."""
    seed = settings.pop("seed", 0)
    state = FaultyServer(**settings)
    state._rng = random.Random(seed)
    state._handler = _make_handler(state, respond)
    server = ThreadingHTTPServer(("127.0.0.1", 0), state._handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}/v1"
    state._server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        state.down()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A chat-completions server that fails on purpose.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--outage-after", type=float, default=None, help="seconds until the outage")
    parser.add_argument("--outage-at", type=int, default=None, help="go down at the N-th request")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the server is down")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with faulty_llm(
        fail_rate=args.fail_rate, seed=args.seed, outage_at=args.outage_at, outage_s=args.outage
    ) as server:
        if args.port:
            server.down()
            server.port = args.port
            server.url = f"http://127.0.0.1:{args.port}/v1"
            server.up()
        print(f"serving {server.url} (fail rate {args.fail_rate})", flush=True)
        if args.outage_after is not None:
            server.outage(args.outage, after=args.outage_after)
            print(f"outage of {args.outage:g} s in {args.outage_after:g} s", flush=True)
        if args.outage_at is not None:
            print(f"outage of {args.outage:g} s at request {args.outage_at}", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        print(json.dumps(server.report()), flush=True)


if __name__ == "__main__":
    main()
