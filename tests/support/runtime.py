"""Test doubles for the runtime tests: fake model calls, a tiny environment, fixture loading, a listener."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

from harness_opt.harness.version import HarnessVersion
from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.records import Task
from harness_opt.suites.base import ToolError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "harnesses"


def fixture_version(name: str) -> HarnessVersion:
    return HarnessVersion.load(FIXTURES / name)


class LookupEnv:
    """`lookup` doubles its key; an empty key is a ToolError; anything else is unknown."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        self.calls.append((name, args))
        if name != "lookup":
            raise ToolError(f"unknown tool {name!r}")
        if not args.get("key"):
            raise ToolError("key is empty")
        return {"value": args["key"] * 2}


class FakeLLM:
    """Answers instantly (or after `delay_s`) and reports fixed usage; records every request."""

    def __init__(
        self,
        content: str = "hi",
        tokens: int = 15,
        cost: float = 0.0,
        delay_s: float = 0.0,
        fail: Exception | None = None,
    ) -> None:
        self.content = content
        self.tokens = tokens
        self.cost = cost
        self.delay_s = delay_s
        self.fail = fail
        self.requests: list[LLMRequest] = []

    async def __call__(self, req: LLMRequest) -> LLMResult:
        self.requests.append(req)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return LLMResult(
            message={"role": "assistant", "content": self.content},
            tokens_in=self.tokens - self.tokens // 3,
            tokens_out=self.tokens // 3,
            cost_usd=self.cost,
        )


def task(task_id: str = "t1", **inputs: Any) -> Task:
    return Task(id=task_id, input=inputs, expected="GOLD-ANSWER-SECRET", metadata={"note": "METADATA-SECRET"})


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections and keeps what they sent (network escapes,
    and a request carrying an API key to an address a harness chose)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.settimeout(0.5)
            with contextlib.suppress(OSError):
                self.received += conn.recv(65536)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
