"""Parent side of the fork server: start the sandboxed zygote, ask it to fork rollouts, learn how they end.

One `ForkServer` per HarnessRunner. The control channel is a SOCK_SEQPACKET socket watched with
`loop.add_reader`, so a rollout costs the parent two datagrams out (fork with the child's socket fd,
kill once it is over) and two in (forked, exit status): no thread, no extra process, no per-rollout
interpreter start. A fork the server does not acknowledge in time means the server is stopped or
stuck: it is killed (and so are its children), the affected rollouts end with the cause, and the
runner starts a fresh one.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness_opt.runtime import zygote as wire
from harness_opt.runtime.sandbox import (
    ROLLOUT_TMP_BYTES,
    Isolation,
    SandboxPaths,
    launch_spec,
)

_START_TIMEOUT_S = 60.0
"""Until the sandbox is up and about to import agent.py."""
FORK_ACK_TIMEOUT_S = 10.0
"""A fork the server has not acknowledged by then means it is stopped or stuck."""
_LOG_TAIL = 2000
_CREDS = 3 * array.array("i").itemsize


class ForkServerDied(Exception):
    """The zygote exited, was killed or stopped answering; rollouts in flight end with error `sandbox`."""


class ForkServerStartError(Exception):
    """The zygote did not come up; `detail` says why (its stderr tail)."""


class ImportTimeout(Exception):
    """agent.py did not finish importing in time (it is the harness's fault, like an import error)."""


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, D, T stopped, t traced, Z zombie), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


_STATES = {
    "T": "stopped by a signal (SIGSTOP)",
    "t": "stopped by a debugger",
    "Z": "dead (zombie)",
    "D": "blocked in the kernel",
}


class ForkServer:
    """A running zygote for one harness version, and its control channel."""

    def __init__(
        self, mode: Isolation, init: dict[str, Any], version_dir: Path, import_timeout_s: float = 60.0
    ) -> None:
        self.mode = mode
        self._init = init
        self._version_dir = version_dir
        self._import_timeout_s = import_timeout_s
        self._root = Path(tempfile.mkdtemp(prefix="harness-opt-sbx-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._acks: dict[int, float] = {}
        """Forks not yet acknowledged, oldest first, with their deadlines (loop time)."""
        self._watchdog: asyncio.TimerHandle | None = None
        """One timer for all unacknowledged forks, at the oldest one's deadline (not one per fork)."""
        self._importing: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._dead = False
        self.death: str | None = None
        """Why the server is gone, once it is (shown in the affected rollouts' error detail)."""
        self.host_pid: int | None = None
        """The zygote's pid as this process sees it (from its credentials on the ready message)."""
        self.private_tmp = True
        """Each rollout gets its own /tmp (False where nested user namespaces are refused)."""
        self.why_shared = ""
        self.import_error: str | None = None
        """Traceback of agent.py failing to import: every rollout of this version then crashes with it."""
        self.rollout_cpu_s = 0.0
        """CPU seconds of every rollout child that has exited (for the overhead figures)."""

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
        parent_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        init = {
            **self._init,
            "version_dir": spec.version_dir,
            "scratch": spec.scratch,
            "private_dirs": spec.private_dirs,
            "pythonpath": spec.pythonpath,
            "tmp_bytes": ROLLOUT_TMP_BYTES,
            "sockets": self.mode == "none",  # 'none' promises no network isolation; nothing to refuse
            "control_fd": child_end.fileno(),
        }
        paths.init_file.write_text(json.dumps(init), encoding="utf-8")
        log = (self._root / "zygote.log").open("wb")
        try:
            self._proc = subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(child_end.fileno(),),
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
        self._importing = loop.create_future()
        self._ready = loop.create_future()
        for waiter in (self._importing, self._ready):  # a death before anyone awaits them is expected
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        loop.add_reader(parent_end.fileno(), self._on_control)
        try:
            await asyncio.wait_for(asyncio.shield(self._importing), _START_TIMEOUT_S)
        except (TimeoutError, ForkServerDied):
            await self.close()
            detail = self.log_tail() or self.death or "no output"
            raise ForkServerStartError(f"the sandbox did not start: {detail}") from None
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), self._import_timeout_s)
        except TimeoutError:
            await self.close()
            limit = self._import_timeout_s
            raise ImportTimeout(f"agent.py did not finish importing within {limit:g}s") from None
        except ForkServerDied as exc:
            await self.close()
            raise ForkServerStartError(f"the sandbox died while importing agent.py: {exc}") from None
        if "error" in ready:
            self.import_error = str(ready["error"])
        self.private_tmp = bool(ready.get("private_tmp", True))
        self.why_shared = str(ready.get("why_shared", ""))

    def log_tail(self) -> str:
        try:
            text = (self._root / "zygote.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-_LOG_TAIL:].strip()

    def _recv(self) -> tuple[bytes, int | None]:
        """One datagram, and the sender's pid when the kernel attached its credentials."""
        assert self._control is not None
        data, ancdata, _flags, _addr = self._control.recvmsg(wire.CONTROL_MAX, socket.CMSG_SPACE(_CREDS))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _CREDS:
                return data, array.array("i", payload[:_CREDS])[0]
        return data, None

    def _on_control(self) -> None:
        assert self._control is not None
        while True:
            try:
                data, pid = self._recv()
            except BlockingIOError:
                return
            except OSError:
                data, pid = b"", None
            if not data:
                self._on_death()
                return
            self._handle(json.loads(data), pid)

    def _handle(self, msg: dict[str, Any], pid: int | None) -> None:
        op = msg.get("op")
        if op == "forked":
            self._acks.pop(int(msg["id"]), None)
        elif op == "exit":
            self.rollout_cpu_s += float(msg.get("cpu", 0.0))
            fut = self._exits.pop(int(msg["id"]), None)
            if fut is not None and not fut.done():
                fut.set_result(int(msg["status"]))
        elif op == "importing" and self._importing is not None and not self._importing.done():
            self._importing.set_result(None)
        elif op == "ready" and self._ready is not None and not self._ready.done():
            self.host_pid = pid
            # Credentials were needed once; the kernel need not attach them to every exit status.
            assert self._control is not None
            self._control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
            self._ready.set_result(msg)

    def _on_death(self, reason: str | None = None) -> None:
        if self._dead:
            return
        self._dead = True
        self.death = reason or f"the fork server died: {self._exit_text()}"
        if self._loop is not None and self._control is not None:
            self._loop.remove_reader(self._control.fileno())
        self._stop_watchdog()
        error = ForkServerDied(self.death)
        for fut in self._exits.values():
            if not fut.done():
                fut.set_exception(error)
        self._exits.clear()
        for waiter in (self._importing, self._ready):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def _exit_text(self) -> str:
        """How the fork server ended, from bwrap's exit status (it exits 128+N when its child, the fork
        server, is killed by signal N). Only read when the control channel closed: bwrap follows within
        milliseconds, so a short wait here (a rare path) names the cause instead of guessing."""
        code = None
        for _ in range(50):
            code = self._proc.poll() if self._proc is not None else None
            if code is not None:
                break
            time.sleep(0.01)
        if code is None:
            return "its control channel closed"
        signum = -code if code < 0 else code - 128 if self.mode == "bwrap" and code > 128 else 0
        if signum:
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            oom = ", most likely by the kernel's out-of-memory killer" if signum == signal.SIGKILL else ""
            return f"killed by {name}{oom}"
        return f"exit code {code}"

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._acks.clear()

    def _check_acks(self) -> None:
        """The watchdog: the oldest fork still unacknowledged past its deadline means a stuck server."""
        self._watchdog = None
        if self._dead or not self._acks or self._loop is None:
            return
        oldest, deadline = next(iter(self._acks.items()))
        if deadline <= self._loop.time():
            self._unresponsive(oldest)
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_acks)

    def _unresponsive(self, rollout_id: int) -> None:
        """No acknowledgement for a fork: say why (from the kernel's view of the process) and kill it."""
        self._acks.pop(rollout_id, None)
        state = process_state(self.host_pid) if self.host_pid else None
        how = _STATES.get(state or "", f"in state {state}" if state else "unreachable")
        self.kill_now()
        self._on_death(
            f"the fork server stopped answering ({how}); it was killed and is restarted for later rollouts"
        )

    def kill_now(self) -> None:
        """SIGKILL the fork server (a stopped one too) and its sandbox; its rollout children die with it."""
        for pid, killer in ((self.host_pid, os.kill), (self._proc.pid if self._proc else None, os.killpg)):
            if pid:
                with contextlib.suppress(OSError):
                    killer(pid, signal.SIGKILL)

    def fork(self, rollout_id: int, fd: int) -> asyncio.Future[int]:
        """Ask the zygote to fork a rollout child talking on `fd`; the future gets its raw wait status."""
        if not self.alive or self._control is None or self._loop is None:
            raise ForkServerDied(self.death or "the sandbox is not running")
        fut: asyncio.Future[int] = self._loop.create_future()
        # Exceptions set on futures nobody awaits (a rollout that already has its result) are expected.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._exits[rollout_id] = fut
        payload = json.dumps({"op": "fork", "id": rollout_id}).encode()
        try:
            self._send(payload, [fd])
        except OSError as exc:
            self._exits.pop(rollout_id, None)
            self._on_death(f"cannot reach the sandbox: {exc}")
            raise ForkServerDied(self.death or str(exc)) from exc
        deadline = self._loop.time() + FORK_ACK_TIMEOUT_S
        self._acks[rollout_id] = deadline
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_acks)
        return fut

    def kill(self, rollout_id: int) -> None:
        """SIGKILL a rollout child once its rollout is over (it may still run, holding memory); not
        sent when its exit status is already here (it is gone: the datagram would be for nothing)."""
        if rollout_id not in self._exits:
            return
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
        self._stop_watchdog()
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
                self.kill_now()
                await asyncio.to_thread(proc.wait)
        for fut in self._exits.values():
            if not fut.done():
                fut.set_exception(ForkServerDied(self.death or "the runner was closed"))
        self._exits.clear()
        shutil.rmtree(self._root, ignore_errors=True)
