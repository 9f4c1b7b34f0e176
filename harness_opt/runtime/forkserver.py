"""Parent side of the fork server: start the sandboxed zygote, ask it to fork rollouts, learn how they end.

One `ForkServer` per HarnessRunner. The control channel is a SOCK_SEQPACKET socket watched with
`loop.add_reader`, so a rollout costs the parent one datagram out (with the child's socket fd) and one in
(its exit status) — no thread, no extra process, no per-rollout interpreter start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from harness_opt.runtime import zygote as wire
from harness_opt.runtime.sandbox import Isolation, SandboxPaths, launch_spec

_START_TIMEOUT_S = 60.0
_LOG_TAIL = 2000


class ForkServerDied(Exception):
    """The zygote exited (killed, out of memory); rollouts in flight end with error `sandbox`."""


class ForkServerStartError(Exception):
    """The zygote did not come up; `detail` says why (its stderr tail)."""


class ForkServer:
    """A running zygote for one harness version, and its control channel."""

    def __init__(self, mode: Isolation, init: dict[str, Any], version_dir: Path) -> None:
        self.mode = mode
        self._init = init
        self._version_dir = version_dir
        self._root = Path(tempfile.mkdtemp(prefix="harness-opt-sbx-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._dead = False
        self.import_error: str | None = None
        """Traceback of agent.py failing to import: every rollout of this version then crashes with it."""

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc is not None and self._proc.poll() is None

    async def start(self) -> None:
        """Start the zygote and wait until it has imported agent.py (or failed to)."""
        loop = self._loop = asyncio.get_running_loop()
        scratch = self._root / "scratch"
        scratch.mkdir()
        paths = SandboxPaths(self._version_dir, scratch, self._root / "init.json")
        spec = launch_spec(self.mode, paths)
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        init = {
            **self._init,
            "version_dir": spec.version_dir,
            "scratch": spec.scratch,
            "control_fd": child_end.fileno(),
        }
        paths.init_file.write_text(json.dumps(init), encoding="utf-8")
        log = (self._root / "zygote.log").open("wb")
        try:
            self._proc = subprocess.Popen(
                spec.argv, env=spec.env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, pass_fds=(child_end.fileno(),),
                start_new_session=True,
            )
        except OSError as exc:
            parent_end.close()
            raise ForkServerStartError(f"cannot start the sandbox ({spec.argv[0]}): {exc}") from exc
        finally:
            log.close()
            child_end.close()
        parent_end.setblocking(False)
        self._control = parent_end
        self._ready = loop.create_future()
        loop.add_reader(parent_end.fileno(), self._on_control)
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT_S)
        except (TimeoutError, ForkServerDied):
            await self.close()
            detail = self.log_tail() or "no output"
            raise ForkServerStartError(f"the sandbox did not start: {detail}") from None
        if "error" in ready:
            self.import_error = str(ready["error"])

    def log_tail(self) -> str:
        try:
            text = (self._root / "zygote.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-_LOG_TAIL:].strip()

    def _on_control(self) -> None:
        assert self._control is not None
        while True:
            try:
                data = self._control.recv(wire.CONTROL_MAX)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._on_death()
                return
            msg = json.loads(data)
            op = msg.get("op")
            if op == "exit":
                fut = self._exits.pop(int(msg["id"]), None)
                if fut is not None and not fut.done():
                    fut.set_result(int(msg["status"]))
            elif op == "ready" and self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)

    def _on_death(self) -> None:
        if self._dead:
            return
        self._dead = True
        if self._loop is not None and self._control is not None:
            self._loop.remove_reader(self._control.fileno())
        reason = ForkServerDied(f"the sandbox process died ({self._exit_text()})")
        for fut in self._exits.values():
            if not fut.done():
                fut.set_exception(reason)
        self._exits.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(reason)

    def _exit_text(self) -> str:
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return "control channel closed"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def fork(self, rollout_id: int, fd: int) -> asyncio.Future[int]:
        """Ask the zygote to fork a rollout child talking on `fd`; the future gets its raw wait status."""
        if not self.alive or self._control is None or self._loop is None:
            raise ForkServerDied("the sandbox is not running")
        fut: asyncio.Future[int] = self._loop.create_future()
        # Exceptions set on futures nobody awaits (a rollout that already has its result) are expected.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._exits[rollout_id] = fut
        payload = json.dumps({"op": "fork", "id": rollout_id}).encode()
        try:
            self._send(payload, [fd])
        except OSError as exc:
            self._exits.pop(rollout_id, None)
            self._on_death()
            raise ForkServerDied(f"cannot reach the sandbox: {exc}") from exc
        return fut

    def kill(self, rollout_id: int) -> None:
        """SIGKILL a rollout child's process group (its subprocesses included); a no-op if it is gone."""
        if self.alive:
            with contextlib.suppress(OSError):
                self._send(json.dumps({"op": "kill", "id": rollout_id}).encode(), [])

    def _send(self, payload: bytes, fds: list[int]) -> None:
        assert self._control is not None
        # Control datagrams are tiny and the zygote drains them at once; a full buffer means it is stuck,
        # so fall back to a short blocking send rather than building an async write queue.
        try:
            socket.send_fds(self._control, [payload], fds) if fds else self._control.send(payload)
        except BlockingIOError:
            self._control.settimeout(5.0)
            try:
                socket.send_fds(self._control, [payload], fds) if fds else self._control.send(payload)
            finally:
                self._control.setblocking(False)

    async def close(self) -> None:
        """Stop the zygote (closing the control channel makes it kill its children and exit)."""
        if self._control is not None:
            if not self._dead and self._loop is not None:
                self._loop.remove_reader(self._control.fileno())
            self._dead = True
            self._control.close()
            self._control = None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                await asyncio.to_thread(proc.wait, 5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
        for fut in self._exits.values():
            if not fut.done():
                fut.set_exception(ForkServerDied("the runner was closed"))
        self._exits.clear()
        shutil.rmtree(self._root, ignore_errors=True)
