"""The broker: run one harness version on many tasks, each rollout in a sandboxed child of the fork server.

The child (untrusted agent.py) only ever sees the task input and a socket. Every `ctx.llm`,
`ctx.call_tool`, `ctx.say` and `ctx.log` arrives here as a request, served by the rollout's
`RolloutSession` (runtime/session.py): parameters through the allowlist, budgets before the call, the
keys the child never sees, bounded trace events. `ctx.render` never comes here: templates render in
the child, under its limits. This module owns the fork server's life (started, replaced when it dies
or stops answering) and each rollout's (forked, timed, killed once it is over). A rollout's failure
(timeout, crash, limit) is a `RolloutResult` with an error kind, never an exception: the evaluator
scores it 0 and carries on.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import socket
import threading
import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.records import (
    ErrorKind,
    TraceEvent,
    utcnow,
)
from harness_opt.runtime import zygote as wire
from harness_opt.runtime.channel import FrameProtocol, to_json_bytes
from harness_opt.runtime.forkserver import ForkServer, ForkServerDied, ForkServerStartError, ImportTimeout
from harness_opt.runtime.sandbox import Isolation, resolve_isolation
from harness_opt.runtime.session import LLMFn, RolloutSession
from harness_opt.suites.base import Environment

if TYPE_CHECKING:
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.records import Task

_EXIT_WAIT_S = 5.0


class RolloutResult(BaseModel):
    """What one rollout produced: the output (or why there is none) and the trace events in order."""

    output: Any = None
    events: list[TraceEvent] = Field(default_factory=list)
    error: ErrorKind | None = None
    error_detail: str | None = None
    started: datetime
    ended: datetime


def classify_exit(status: int, wall_time_s: float) -> tuple[ErrorKind, str]:
    """Error kind of a child that ended without sending a result, from its raw wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        if sig == signal.SIGXCPU:
            return "timeout", f"CPU time limit (~{wall_time_s:g}s) exceeded ({name})"
        if sig == signal.SIGKILL:
            return "memory", "the harness process was killed (SIGKILL), most likely out of memory"
        if sig == signal.SIGXFSZ:
            return "crash", "the harness wrote a file larger than the 64 MiB limit (SIGXFSZ)"
        return "crash", f"the harness process died from signal {name}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    if code == wire.EXIT_MEMORY:
        return "memory", "MemoryError (memory limit) in the harness process"
    return "crash", f"the harness process exited (code {code}) without returning a result"


class _FrozenHeap:
    """The process's objects frozen out of the garbage collector while any runner is open.

    Why: an evaluation allocates a few objects per rollout, and every so many allocations CPython
    runs a full collection that walks every object in the process; with litellm, pydantic and duckdb
    loaded that is a million objects, ~100 ms of CPU each time, about 1 ms per rollout at hundreds of
    rollouts per second (measured: 7 full collections, 0.76 s of CPU for 1000 rollouts). Objects that
    exist when the first runner opens are moved to the permanent generation (`gc.freeze`) and
    handed back when the last one closes (`gc.unfreeze`), so cyclic garbage among them is collected
    then, not leaked; what the evaluation itself allocates is collected as usual meanwhile.
    """

    _lock = threading.Lock()
    _open = 0

    @classmethod
    def enter(cls) -> None:
        with cls._lock:
            cls._open += 1
            if cls._open == 1:
                gc.freeze()

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._open -= 1
            if cls._open == 0:
                gc.unfreeze()


class HarnessRunner:
    """Runs rollouts of one harness version: one sandboxed fork server, many concurrent rollouts.

    Use as `async with HarnessRunner(version, model=...) as runner: await runner.run(task, env, llm)`.
    `run` never raises for a rollout's failure; the fork server is restarted if it dies or stops.
    """

    session_class: type[RolloutSession] = RolloutSession
    """How a rollout's requests are served (the Ray executor's nodes relay them to the driver)."""

    def __init__(
        self,
        version: HarnessVersion,
        *,
        model: str,
        isolation: str = "auto",
        limits: RolloutLimits | None = None,
        concurrency: int = 8,
    ) -> None:
        self.version = version
        self.model = model
        self.model_params: dict[str, Any] = dict(version.manifest.model.params)
        self.limits = limits or version.manifest.runtime.limits
        mode, warning = resolve_isolation(isolation)
        self.isolation_used: Isolation = mode
        self.warning: str | None = warning
        """Why the isolation is weaker than bubblewrap with private rollout dirs, or None. Also emitted
        as a RuntimeWarning."""
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._server: ForkServer | None = None
        self._server_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self._warned = False
        self._frozen = False
        self._start_failure: tuple[ErrorKind, str] | None = None
        self.servers_started = 0
        """Fork servers this runner started (more than one: one died or stopped and was replaced)."""

    @property
    def isolation_label(self) -> str:
        """The isolation as recorded on the run: the mode, and whether rollouts shared their /tmp."""
        if self._server is not None and not self._server.private_tmp:
            return f"{self.isolation_used} (rollouts share /tmp)"
        return self.isolation_used

    async def __aenter__(self) -> HarnessRunner:
        _FrozenHeap.enter()
        self._frozen = True
        await self._server_for_rollout()  # a failure is remembered and reported per rollout
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._frozen:
            self._frozen = False
            _FrozenHeap.leave()
        if self._server is not None:
            await self._server.close()

    def _init_message(self) -> dict[str, Any]:
        return {
            "entrypoint": self.version.manifest.runtime.entrypoint,
            "tools": self.version.tools,
            "limits": self.limits.model_dump(mode="json"),
        }

    async def _ensure_server(self) -> ForkServer:
        async with self._server_lock:
            # An agent.py that fails to import fails the same way every time: keep the verdict, don't
            # restart a sandbox per rollout to rediscover it.
            if self._server is not None and (self._server.alive or self._server.import_error is not None):
                return self._server
            if self._server is not None:
                await self._server.close()
            server = ForkServer(
                self.isolation_used,
                self._init_message(),
                self.version.path,
                import_timeout_s=max(60.0, self.limits.wall_time_s),
            )
            self.servers_started += 1
            await server.start()
            self._server = server
            if not server.private_tmp:
                shared = f"sandbox: rollouts of one evaluation share /tmp ({server.why_shared})"
                self.warning = f"{self.warning}; {shared}" if self.warning else shared
            if self.warning and not self._warned:
                self._warned = True
                warnings.warn(self.warning, RuntimeWarning, stacklevel=3)
            return server

    async def run(self, task: Task, env: Environment, llm: LLMFn) -> RolloutResult:
        """One rollout of `task`: only `task.id` and `task.input` reach the harness."""
        started = utcnow()
        async with self._slots:
            rollout = self.session_class(
                task, env, llm, model=self.model, model_params=self.model_params, limits=self.limits
            )
            output, error, detail = await self._run(rollout)
        return RolloutResult(
            output=output,
            events=rollout.events,
            error=error,
            error_detail=detail,
            started=started,
            ended=utcnow(),
        )

    async def _server_for_rollout(self) -> ForkServer | tuple[ErrorKind, str]:
        if self._start_failure is not None:  # the same version fails to start the same way every time
            return self._start_failure
        try:
            return await self._ensure_server()
        except ImportTimeout as exc:
            self._start_failure = ("crash", f"{self.version.manifest.runtime.entrypoint}: {exc}")
        except ForkServerStartError as exc:
            self._start_failure = ("sandbox", str(exc))
        return self._start_failure or ("sandbox", "the sandbox did not start")

    async def _run(self, rollout: RolloutSession) -> tuple[Any, ErrorKind | None, str | None]:
        if self._closed:
            return None, "sandbox", "the runner is closed"
        server = await self._server_for_rollout()
        if isinstance(server, tuple):
            return None, server[0], server[1]
        if server.import_error is not None:
            return (
                None,
                "crash",
                f"{self.version.manifest.runtime.entrypoint} failed to import:\n" + (server.import_error),
            )
        rollout_id = next(self._ids)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            exit_status = server.fork(rollout_id, child_sock.fileno())
        except ForkServerDied as exc:
            parent_sock.close()
            return None, "sandbox", str(exc)
        finally:
            child_sock.close()
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.create_unix_connection(FrameProtocol, sock=parent_sock)
        except BaseException:
            parent_sock.close()
            server.kill(rollout_id)
            raise
        try:
            proto.send_raw(to_json_bytes({"task_id": rollout.task.id, "input": rollout.task.input})[0])
            wall = self.limits.wall_time_s
            try:
                async with asyncio.timeout(wall):
                    return await rollout.serve(proto)
            except TimeoutError:
                if server.death is not None:
                    return None, "sandbox", server.death
                return None, "timeout", f"wall time limit of {wall:g}s exceeded"
            except EOFError:
                kind, why = await self._ended_without_result(exit_status, proto, server)
                return None, kind, why
            except Exception as exc:  # a broker bug must cost one rollout, not the evaluation
                return None, "crash", f"the broker failed serving this rollout: {type(exc).__name__}: {exc}"
        finally:
            transport.close()
            # Always: a child that reported may still be running (holding memory, sleeping); it is done.
            server.kill(rollout_id)

    async def _ended_without_result(
        self, exit_status: asyncio.Future[int], proto: FrameProtocol, server: ForkServer
    ) -> tuple[ErrorKind, str]:
        if proto.error is not None:
            return "crash", proto.error
        try:
            status = await asyncio.wait_for(exit_status, _EXIT_WAIT_S)
        except ForkServerDied as exc:
            return "sandbox", str(exc)
        except TimeoutError:
            if server.death is not None:
                return "sandbox", server.death
            return "crash", "the harness closed its channel without a result"
        return classify_exit(status, self.limits.wall_time_s)
