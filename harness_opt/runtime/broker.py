"""The broker: run one harness version on many tasks, each rollout in a sandboxed child of the fork server.

The child (untrusted agent.py) only ever sees the task input and a pipe. Every `ctx.llm`, `ctx.call_tool`,
`ctx.say` and `ctx.log` arrives here as a request: the broker checks the call's parameters against the
allowlist, makes the model call with the keys the child never sees, runs the tool against the
parent-side environment, records the trace event (size-capped) and enforces the per-rollout limits,
budgets before the call is sent. `ctx.render` never comes here: templates render in the child, under
its limits. A rollout's failure (timeout, crash, limit) is a `RolloutResult` with an error kind, never
an exception: the evaluator scores it 0 and carries on.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import signal
import socket
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.llm.params import ParamError
from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.records import (
    ErrorKind,
    LLMCallEvent,
    LogEvent,
    ToolCallEvent,
    TraceEvent,
    UserTurnEvent,
    utcnow,
)
from harness_opt.runtime import payload
from harness_opt.runtime import zygote as wire
from harness_opt.runtime.budget import OverBudget, call_params, within_budget
from harness_opt.runtime.channel import FrameProtocol, to_json_bytes
from harness_opt.runtime.forkserver import ForkServer, ForkServerDied, ForkServerStartError, ImportTimeout
from harness_opt.runtime.sandbox import Isolation, resolve_isolation
from harness_opt.suites.base import Environment, ToolError

if TYPE_CHECKING:
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.records import Task

LLMFn = Callable[[LLMRequest], Awaitable[LLMResult]]
"""The evaluator's model call (LLMClient.complete, bound): retries, cache and cost live behind it."""

MAX_LOG_EVENTS = 1000
"""ctx.log calls kept per rollout; a harness logging in a loop must not blow up the trace."""
MAX_LOG_CALLS = 100_000
"""ctx.log calls a rollout may make at all: past this it is flooding its channel and spending the
parent's CPU (each frame is parsed there), so the rollout ends."""
_EXIT_WAIT_S = 5.0
_CHILD_ERRORS: dict[str, ErrorKind] = {
    "crash": "crash", "invalid_output": "invalid_output", "memory": "memory", "sandbox": "sandbox"
}
"""Final messages of a child that failed on its own, and their error kinds."""


class RolloutResult(BaseModel):
    """What one rollout produced: the output (or why there is none) and the trace events in order."""

    output: Any = None
    events: list[TraceEvent] = Field(default_factory=list)
    error: ErrorKind | None = None
    error_detail: str | None = None
    started: datetime
    ended: datetime


class _Abort(Exception):
    """Ends a rollout from the broker side with an error kind (limit hit, model call failed)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


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


class _Rollout:
    """One rollout's broker session: serves the child's requests until it returns, fails or is cut off."""

    def __init__(self, runner: HarnessRunner, task: Task, env: Environment, llm: LLMFn) -> None:
        self.runner = runner
        self.task = task
        self.env = env
        self.llm = llm
        self.limits = runner.limits
        self.events: list[TraceEvent] = []
        self.steps = 0
        self.tokens = 0
        self.cost = 0.0
        self.logs = 0
        self.log_bytes = 0
        self.logs_dropped = False

    def _step(self, what: str) -> None:
        if self.steps >= self.limits.max_steps:
            raise _Abort("step_limit", f"{what}: more than {self.limits.max_steps} steps (llm + tool calls)")
        self.steps += 1

    async def serve(self, proto: FrameProtocol) -> tuple[Any, ErrorKind | None, str | None]:
        """Answer requests until the child's final message; returns (output, error, detail)."""
        while True:
            msg = await proto.recv()
            if msg is None:
                raise EOFError
            if not isinstance(msg, dict):
                return None, "crash", "protocol violation: a message that is not a JSON object"
            try:
                final = await self._answer(msg, proto)
            except _Abort as abort:
                proto.send_raw(to_json_bytes({"ok": False, "fatal": True, "error": abort.detail})[0])
                return None, abort.kind, abort.detail
            if final is not None:
                return final

    async def _answer(
        self, msg: dict[str, Any], proto: FrameProtocol
    ) -> tuple[Any, ErrorKind | None, str | None] | None:
        """Serve one request (None: the rollout goes on) or take the child's final message."""
        op = msg.get("op")
        if op == "llm":
            proto.send_raw(await self._llm(msg))
        elif op == "tool":
            proto.send_raw(self._tool(msg))
        elif op == "say":
            proto.send_raw(await self._say(msg))
        elif op == "log":
            self._log(msg)
        elif op == "result":
            self._stdout(msg)
            return self._output(msg.get("output"))
        elif op in _CHILD_ERRORS:
            self._stdout(msg)
            return None, _CHILD_ERRORS[op], payload.cut_text(str(msg.get("detail", "")), 20_000)
        else:
            return None, "crash", f"protocol violation: unknown request {str(op)[:100]!r}"
        return None

    @staticmethod
    def _output(output: Any) -> tuple[Any, ErrorKind | None, str | None]:
        """The output as scored, or why it cannot be: too deep for the trace, or too large."""
        if payload.depth(output) > payload.MAX_DEPTH:
            deep = f"run() returned a value nested deeper than {payload.MAX_DEPTH} levels"
            return None, "invalid_output", deep
        size = payload.json_size(output) or 0
        if size > payload.OUTPUT_BYTES:
            large = f"run() returned {size} bytes of JSON (limit {payload.OUTPUT_BYTES})"
            return None, "invalid_output", large
        return output, None, None

    async def _llm(self, msg: dict[str, Any]) -> bytes:
        self._step("ctx.llm")
        try:
            params = call_params(self.runner.model_params, msg.get("params"))
        except ParamError as exc:
            raise _Abort("crash", f"ctx.llm: {exc}") from None
        try:
            req = LLMRequest.model_validate(
                {"model": self.runner.model, "messages": msg.get("messages"), "tools": msg.get("tools"),
                 "params": params}
            )
        except (ValidationError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                return _error_reply("ctx.llm: bad arguments (nested too deeply)")
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return _error_reply(f"ctx.llm: bad arguments ({where}: {first['msg']})")
        if payload.depth([req.messages, req.tools]) > payload.MAX_DEPTH:
            return _error_reply(f"ctx.llm: messages or tools nested deeper than {payload.MAX_DEPTH} levels")
        try:
            params = within_budget(self.limits, self.tokens, self.cost, params, req)
        except OverBudget as over:
            raise _Abort(over.kind, over.detail) from None
        req = req.model_copy(update={"params": params})
        t0 = time.perf_counter()
        try:
            result = await self.llm(req)
        except Exception as exc:
            self.events.append(LLMCallEvent(
                model=req.model, messages=req.messages, tools=req.tools, params=params,
                error=f"{type(exc).__name__}: {exc}", latency_s=time.perf_counter() - t0,
            ))
            raise _Abort("llm_error", f"model call failed: {type(exc).__name__}: {exc}") from None
        self.events.append(LLMCallEvent(
            model=result.model or req.model, messages=req.messages, tools=req.tools, params=params,
            response=result.message, tokens_in=result.tokens_in, tokens_out=result.tokens_out,
            cost_usd=result.cost_usd, latency_s=result.latency_s or (time.perf_counter() - t0),
            cached=result.cached,
        ))
        self.tokens += result.tokens_in + result.tokens_out
        self.cost += result.cost_usd
        if self.tokens > self.limits.max_tokens:  # the estimate was too low: stop here all the same
            raise _Abort("token_limit", f"{self.tokens} tokens used, limit {self.limits.max_tokens}")
        if self.limits.max_cost_usd is not None and self.cost > self.limits.max_cost_usd:
            raise _Abort("cost_limit", f"${self.cost:.4f} spent, limit ${self.limits.max_cost_usd:.4f}")
        return to_json_bytes({"ok": True, "value": result.message})[0]

    def _tool(self, msg: dict[str, Any]) -> bytes:
        self._step("ctx.call_tool")
        name = payload.cut_text(str(msg.get("name")), 200)
        args = msg.get("args")
        if not isinstance(args, dict) or payload.depth(args) > payload.MAX_DEPTH:
            args = {"_invalid_args": payload.bounded(args)}
            value: Any = {"error": f"tool arguments must be a JSON object at most {payload.MAX_DEPTH} deep"}
            error: str | None = value["error"]
            latency = 0.0
        else:
            t0 = time.perf_counter()
            try:
                value, error = self.env.call_tool(name, args), None
            except ToolError as exc:
                error = str(exc)
                value = {"error": error}
            except Exception as exc:  # an environment bug is the agent's tool error, not our crash
                error = f"{type(exc).__name__}: {exc}"
                value = {"error": error}
            latency = time.perf_counter() - t0
        frame, converted = to_json_bytes({"ok": True, "value": value})
        if converted is not None:  # keep the event JSON-clean, exactly what the agent saw
            value = converted["value"]
        self.events.append(ToolCallEvent(name=name, args=args, result=value, error=error, latency_s=latency))
        return frame

    async def _say(self, msg: dict[str, Any]) -> bytes:
        """`ctx.say`: the environment's simulated user answers (its model call is the suite's cost)."""
        self._step("ctx.say")
        user_turn = getattr(self.env, "user_turn", None)
        if user_turn is None or not inspect.iscoroutinefunction(user_turn):
            return _error_reply(
                "ctx.say: this suite has no simulated user — fix: return the answer from run()"
            )
        message = str(msg.get("message", ""))
        t0 = time.perf_counter()
        try:
            turn = await user_turn(message)
        except Exception as exc:  # the simulator's model failed: not the harness's fault, not cacheable
            detail = f"{type(exc).__name__}: {exc}"
            self.events.append(UserTurnEvent(
                agent_message=message, done=True, error=detail, latency_s=time.perf_counter() - t0
            ))
            raise _Abort("llm_error", f"user simulator failed: {detail}") from None
        done = bool(getattr(turn, "done", False))
        reply = None if done else str(getattr(turn, "content", None) or "")
        self.events.append(UserTurnEvent(
            agent_message=message,
            reply=getattr(turn, "content", None) if done else reply,
            done=done,
            stop_reason=getattr(turn, "stop_reason", None),
            model=str(getattr(turn, "model", "") or ""),
            tokens_in=int(getattr(turn, "tokens_in", 0) or 0),
            tokens_out=int(getattr(turn, "tokens_out", 0) or 0),
            cost_usd=float(getattr(turn, "cost_usd", 0.0) or 0.0),
            latency_s=float(getattr(turn, "latency_s", 0.0) or (time.perf_counter() - t0)),
        ))
        return to_json_bytes({"ok": True, "value": reply})[0]

    def _log(self, msg: dict[str, Any]) -> None:
        """Keep the first MAX_LOG_EVENTS logs and LOG_TOTAL_BYTES of payload, each payload capped."""
        self.logs += 1
        if self.logs > MAX_LOG_CALLS:
            raise _Abort("crash", f"more than {MAX_LOG_CALLS} ctx.log calls: the harness floods its channel")
        if self.logs > MAX_LOG_EVENTS or self.log_bytes > payload.LOG_TOTAL_BYTES:
            if not self.logs_dropped:
                self.logs_dropped = True
                self.events.append(LogEvent(message=payload.marker(
                    f"further ctx.log calls dropped after {self.logs - 1} calls / {self.log_bytes} bytes")))
            return
        data = msg.get("data")
        data = data if isinstance(data, dict) else {}
        size = payload.json_size(data)
        if size is None or size > payload.LOG_DATA_BYTES or payload.depth(data) > payload.MAX_DEPTH:
            data = payload.bounded(data, max_str=4096, max_items=200)
            size = payload.json_size(data) or 0
            if size > payload.LOG_DATA_BYTES:
                why = f"a log payload of {size} bytes (limit {payload.LOG_DATA_BYTES})"
                data = {"truncated": payload.marker(why)}
                size = 100
        message = payload.cut_text(str(msg.get("message", "")), 10_000)
        self.log_bytes += size + len(message)
        self.events.append(LogEvent(message=message, data=data))

    def _stdout(self, msg: dict[str, Any]) -> None:
        text = msg.get("stdout")
        if text:
            self.events.append(LogEvent(message="stdout", data={"text": payload.cut_text(str(text), 20_000)}))


def _error_reply(text: str) -> bytes:
    return to_json_bytes({"ok": False, "fatal": False, "error": text})[0]


class HarnessRunner:
    """Runs rollouts of one harness version: one sandboxed fork server, many concurrent rollouts.

    Use as `async with HarnessRunner(version, model=...) as runner: await runner.run(task, env, llm)`.
    `run` never raises for a rollout's failure; the fork server is restarted if it dies or stops.
    """

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
        await self._server_for_rollout()  # a failure is remembered and reported per rollout
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
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
            server = ForkServer(self.isolation_used, self._init_message(), self.version.path,
                                import_timeout_s=max(60.0, self.limits.wall_time_s))
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
            rollout = _Rollout(self, task, env, llm)
            output, error, detail = await self._run(rollout)
        return RolloutResult(
            output=output, events=rollout.events, error=error, error_detail=detail,
            started=started, ended=utcnow(),
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

    async def _run(self, rollout: _Rollout) -> tuple[Any, ErrorKind | None, str | None]:
        if self._closed:
            return None, "sandbox", "the runner is closed"
        server = await self._server_for_rollout()
        if isinstance(server, tuple):
            return None, server[0], server[1]
        if server.import_error is not None:
            return None, "crash", f"{self.version.manifest.runtime.entrypoint} failed to import:\n" + (
                server.import_error
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
