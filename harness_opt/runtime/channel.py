"""Parent side of a rollout's channel: length-prefixed JSON frames over an asyncio socket transport.

A bare `asyncio.Protocol` rather than StreamReader/Writer: each frame is parsed straight out of the
receive buffer, which keeps the broker's CPU per request to a few microseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from harness_opt.runtime import zygote as wire

_HEADER = wire.HEADER


def to_json_bytes(msg: Any) -> tuple[bytes, Any | None]:
    """One frame for `msg`, and the JSON-clean copy of `msg` if something had to be converted.

    Environments may return pydantic models, datetimes or sets; the agent gets their JSON form, and
    the caller records that same form in the trace (the second value), so trace and agent agree.
    """
    converted = False

    def default(obj: Any) -> Any:
        nonlocal converted
        converted = True
        if hasattr(obj, "model_dump"):
            return obj.model_dump(mode="json")
        if isinstance(obj, set | frozenset | tuple):
            return list(obj)
        return str(obj)

    body = json.dumps(msg, default=default, separators=(",", ":")).encode()
    clean = json.loads(body) if converted else None
    return _HEADER.pack(len(body)) + body, clean


class FrameProtocol(asyncio.Protocol):
    """Frames in, frames out. `recv()` returns the next message, or None once the child is gone."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._messages: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.error: str | None = None
        """A protocol violation by the child (oversized or malformed frame); the rollout crashes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        size = _HEADER.size
        while len(buf) - start >= size:
            (n,) = _HEADER.unpack_from(buf, start)
            if n > wire.MAX_REQUEST:
                self._violation(f"protocol violation: a {n}-byte frame (limit {wire.MAX_REQUEST})")
                return
            if len(buf) - start - size < n:
                break
            try:
                self._messages.append(json.loads(buf[start + size : start + size + n]))
            except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested past the C limit
                self._violation(f"protocol violation: malformed frame ({type(exc).__name__}: {exc})")
                return
            start += size + n
        if start:
            del buf[:start]
        self._wake()

    def _violation(self, text: str) -> None:
        self.error = text
        self._closed = True
        self._buf.clear()
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> Any:
        while not self._messages:
            if self._closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.error is not None:
            return None
        return self._messages.popleft()

    def send_raw(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)
