"""One rollout's session with the broker: serve the child's requests until it returns, fails or is cut off.

Every request is untrusted: `ctx.llm` parameters go through the allowlist and the budgets before the
call is sent, tool arguments and log payloads are bounded in depth and size before they reach the trace,
and a child that floods its channel ends. The final message (a result, or the child's own failure)
ends the session.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.llm.params import ParamError, check_messages
from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.records import (
    ErrorKind,
    LLMCallEvent,
    LogEvent,
    ToolCallEvent,
    TraceEvent,
    UserTurnEvent,
)
from harness_opt.runtime import payload
from harness_opt.runtime.budget import OverBudget, call_params, within_budget
from harness_opt.runtime.channel import FrameProtocol, to_json_bytes
from harness_opt.suites.base import Environment, ToolError

if TYPE_CHECKING:
    from harness_opt.records import Task

LLMFn = Callable[[LLMRequest], Awaitable[LLMResult]]
"""The evaluator's model call (LLMClient.complete, bound): retries, cache and cost live behind it."""

MAX_LOG_EVENTS = 1000
"""ctx.log calls kept per rollout; a harness logging in a loop must not blow up the trace."""
MAX_LOG_CALLS = 100_000
"""ctx.log calls a rollout may make at all: past this it is flooding its channel and spending the
parent's CPU (each frame is parsed there), so the rollout ends."""
_CHILD_ERRORS: dict[str, ErrorKind] = {
    "crash": "crash",
    "invalid_output": "invalid_output",
    "memory": "memory",
}
"""Final messages of a child that failed on its own, and their error kinds. Never an infrastructure
kind: harness code holds the channel and could send it to drop a task from its score. `sandbox` is
believed only as the child's first frame, before it says `confined` (see `serve`)."""


class Abort(Exception):
    """Ends a rollout from the broker side with an error kind (limit hit, model call failed)."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


class RolloutSession:
    """One rollout's broker session: serves the child's requests until it returns, fails or is cut off."""

    def __init__(
        self,
        task: Task,
        env: Environment,
        llm: LLMFn,
        *,
        model: str,
        model_params: dict[str, Any],
        limits: RolloutLimits,
    ) -> None:
        self.model = model
        self.model_params = model_params
        self.task = task
        self.env = env
        self.llm = llm
        self.limits = limits
        self.events: list[TraceEvent] = []
        self.steps = 0
        self.tokens = 0
        self.cost = 0.0
        self.logs = 0
        self.log_bytes = 0
        self.logs_dropped = False

    def _step(self, what: str) -> None:
        if self.steps >= self.limits.max_steps:
            raise Abort("step_limit", f"{what}: more than {self.limits.max_steps} steps (llm + tool calls)")
        self.steps += 1

    async def serve(self, proto: FrameProtocol) -> tuple[Any, ErrorKind | None, str | None]:
        """Answer requests until the child's final message; returns (output, error, detail)."""
        first = await proto.recv()
        if first is None:
            raise EOFError
        op = first.get("op") if isinstance(first, dict) else None
        if op == "sandbox":  # confinement failed: no harness code has run in this child
            return None, "sandbox", payload.cut_text(str(first.get("detail", "")), 20_000)
        if op != "confined":
            return None, "crash", "protocol violation: the child did not report its confinement"
        while True:
            msg = await proto.recv()
            if msg is None:
                raise EOFError
            if not isinstance(msg, dict):
                return None, "crash", "protocol violation: a message that is not a JSON object"
            try:
                final = await self._answer(msg, proto)
            except Abort as abort:
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
            params = call_params(self.model_params, msg.get("params"))
        except ParamError as exc:
            raise Abort("crash", f"ctx.llm: {exc}") from None
        try:
            req = LLMRequest.model_validate(
                {
                    "model": self.model,
                    "messages": msg.get("messages"),
                    "tools": msg.get("tools"),
                    "params": params,
                }
            )
        except (ValidationError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                return error_reply("ctx.llm: bad arguments (nested too deeply)")
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return error_reply(f"ctx.llm: bad arguments ({where}: {first['msg']})")
        if payload.depth([req.messages, req.tools]) > payload.MAX_DEPTH:
            return error_reply(f"ctx.llm: messages or tools nested deeper than {payload.MAX_DEPTH} levels")
        try:
            check_messages(req.messages)
        except ParamError as exc:
            return error_reply(f"ctx.llm: {exc}")
        req = self._within_budget(req, params)
        params = req.params
        t0 = time.perf_counter()
        try:
            result = await self.llm(req)
        except Exception as exc:
            self.events.append(
                LLMCallEvent(
                    model=req.model,
                    messages=req.messages,
                    tools=req.tools,
                    params=params,
                    error=f"{type(exc).__name__}: {exc}",
                    latency_s=time.perf_counter() - t0,
                )
            )
            raise Abort("llm_error", f"model call failed: {type(exc).__name__}: {exc}") from None
        self.events.append(
            LLMCallEvent(
                model=result.model or req.model,
                messages=req.messages,
                tools=req.tools,
                params=params,
                response=result.message,
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=result.cost_usd,
                latency_s=result.latency_s or (time.perf_counter() - t0),
                cached=result.cached,
            )
        )
        self.tokens += result.tokens_in + result.tokens_out
        self.cost += result.cost_usd
        if self.tokens > self.limits.max_tokens:  # the estimate was too low: stop here all the same
            raise Abort("token_limit", f"{self.tokens} tokens used, limit {self.limits.max_tokens}")
        if self.limits.max_cost_usd is not None and self.cost > self.limits.max_cost_usd:
            raise Abort("cost_limit", f"${self.cost:.4f} spent, limit ${self.limits.max_cost_usd:.4f}")
        return to_json_bytes({"ok": True, "value": result.message})[0]

    def _within_budget(self, req: LLMRequest, params: dict[str, Any]) -> LLMRequest:
        """The request as it may be sent (max_tokens lowered where the budget needs it), or Abort.
        Copied only when the budget changed it: a pydantic copy per call is measurable at hundreds
        of rollouts per second."""
        try:
            budgeted = within_budget(self.limits, self.tokens, self.cost, params, req)
        except OverBudget as over:
            raise Abort(over.kind, over.detail) from None
        return req if budgeted is params else req.model_copy(update={"params": budgeted})

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
            return error_reply(
                "ctx.say: this suite has no simulated user — fix: return the answer from run()"
            )
        message = str(msg.get("message", ""))
        t0 = time.perf_counter()
        try:
            turn = await user_turn(message)
        except Exception as exc:  # the simulator's model failed: not the harness's fault, not cacheable
            detail = f"{type(exc).__name__}: {exc}"
            self.events.append(
                UserTurnEvent(
                    agent_message=message, done=True, error=detail, latency_s=time.perf_counter() - t0
                )
            )
            # A conversation the harness made too long fails the same way every time: the version's
            # failure, never the infrastructure's (or ctx.say("x" * 8 MB) drops any task). A refused
            # request (bad_request) may be the suite's own misconfiguration: that stays llm_error.
            if getattr(exc, "kind", None) == "context_overflow":
                raise Abort(
                    "context_overflow", f"user simulator refused the conversation: {detail}"
                ) from None
            raise Abort("llm_error", f"user simulator failed: {detail}") from None
        done = bool(getattr(turn, "done", False))
        reply = None if done else str(getattr(turn, "content", None) or "")
        self.events.append(
            UserTurnEvent(
                agent_message=message,
                reply=getattr(turn, "content", None) if done else reply,
                done=done,
                stop_reason=getattr(turn, "stop_reason", None),
                model=str(getattr(turn, "model", "") or ""),
                tokens_in=int(getattr(turn, "tokens_in", 0) or 0),
                tokens_out=int(getattr(turn, "tokens_out", 0) or 0),
                cost_usd=float(getattr(turn, "cost_usd", 0.0) or 0.0),
                latency_s=float(getattr(turn, "latency_s", 0.0) or (time.perf_counter() - t0)),
            )
        )
        return to_json_bytes({"ok": True, "value": reply})[0]

    def _log(self, msg: dict[str, Any]) -> None:
        """Keep the first MAX_LOG_EVENTS logs and LOG_TOTAL_BYTES of payload, each payload capped."""
        self.logs += 1
        if self.logs > MAX_LOG_CALLS:
            raise Abort("crash", f"more than {MAX_LOG_CALLS} ctx.log calls: the harness floods its channel")
        if self.logs > MAX_LOG_EVENTS or self.log_bytes > payload.LOG_TOTAL_BYTES:
            if not self.logs_dropped:
                self.logs_dropped = True
                self.events.append(
                    LogEvent(
                        message=payload.marker(
                            f"further ctx.log calls dropped after {self.logs - 1} calls, "
                            f"{self.log_bytes} bytes"
                        )
                    )
                )
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


def error_reply(text: str) -> bytes:
    return to_json_bytes({"ok": False, "fatal": False, "error": text})[0]
