"""One rollout's trace as one τ² simulation: its messages, its end, and its reward record.

The messages are rebuilt from the trace's events in order, as τ²'s orchestrator would have logged
them: each `ctx.say` exchange is an assistant message and the customer's reply; each tool call an
assistant message with `tool_calls` and the tool's message; a final answer returned by `run()` the
last assistant message. The agent's model cost goes on the agent message that call produced, the
simulator's on the user message. The reward record is the scorer's (the first line of the trace's
feedback is τ²'s `RewardInfo`); a rollout that crashed or hit a limit gets τ²'s record for a
premature end.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import ValidationError

from harness_opt.records import LLMCallEvent, OutputEvent, Rollout, ToolCallEvent, Trace, UserTurnEvent
from harness_opt.suites.tau2_models import (
    AssistantMessage,
    RewardInfo,
    SimulationRun,
    TerminationReason,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from harness_opt.suites.tau2_reward import premature

_ERROR_ENDS: dict[str, TerminationReason] = {
    "timeout": "timeout",
    "step_limit": "max_steps",
    "token_limit": "max_steps",
    "cost_limit": "max_steps",
    "sandbox": "infrastructure_error",
}
"""Our rollout errors and τ²'s ends for them: a wall-clock limit is τ²'s `timeout`; a step, token or
cost budget ends a run as its step limit does; a sandbox that could not start is infrastructure.
Anything else the agent did (crash, memory, bad output, its model failing) is `agent_error`."""


def reward_record(feedback: str) -> RewardInfo | None:
    """τ²'s reward record from the first line of a scorer's feedback, or None (an errored rollout's
    feedback is the reason, in prose)."""
    first = feedback.split("\n", 1)[0].strip()
    if not first.startswith("{"):
        return None
    try:
        return RewardInfo.model_validate_json(first)
    except ValidationError:
        return None


def _tool_content(event: ToolCallEvent) -> str:
    if event.error is not None:
        return event.error
    return event.result if isinstance(event.result, str) else json.dumps(event.result)


def trace_messages(
    trace: Trace, *, cut_after_errors: int | None = None
) -> list[AssistantMessage | UserMessage | ToolMessage]:
    """The conversation of `trace` as τ² messages. `cut_after_errors`: end the conversation at that
    many tool errors (τ²'s `too_many_errors` end; what the agent did after is not τ²'s trajectory)."""
    out: list[AssistantMessage | UserMessage | ToolMessage] = []
    pending: LLMCallEvent | None = None
    errors = 0

    def agent_figures() -> dict[str, Any]:
        nonlocal pending
        if pending is None:
            return {}
        figures = {
            "cost": pending.cost_usd,
            "usage": {"prompt_tokens": pending.tokens_in, "completion_tokens": pending.tokens_out},
        }
        pending = None
        return figures

    for event in trace.events:
        if cut_after_errors is not None and errors >= cut_after_errors:
            break
        if isinstance(event, LLMCallEvent):
            pending = event
        elif isinstance(event, ToolCallEvent):
            call = ToolCall(id=f"call_{len(out)}", name=event.name, arguments=dict(event.args))
            out.append(AssistantMessage(role="assistant", tool_calls=[call], **agent_figures()))
            out.append(
                ToolMessage(
                    id=call.id, role="tool", content=_tool_content(event), error=event.error is not None
                )
            )
            errors += event.error is not None
        elif isinstance(event, UserTurnEvent):
            if event.stop_reason == "too_many_errors":
                continue  # the environment refused the message: the conversation was already over
            out.append(AssistantMessage(role="assistant", content=event.agent_message, **agent_figures()))
            if event.reply is not None:
                usage = {"prompt_tokens": event.tokens_in, "completion_tokens": event.tokens_out}
                out.append(UserMessage(role="user", content=event.reply, cost=event.cost_usd, usage=usage))
        elif isinstance(event, OutputEvent) and isinstance(event.output, str) and event.output.strip():
            out.append(AssistantMessage(role="assistant", content=event.output, **agent_figures()))
    for i, message in enumerate(out):
        message.turn_idx = i
    return out


def error_end(trace: Trace) -> TerminationReason:
    """τ²'s end of a rollout that errored (no scorer verdict)."""
    turns = [e for e in trace.events if isinstance(e, UserTurnEvent)]
    if trace.error == "llm_error" and turns and turns[-1].error:
        return "user_error"  # the simulated customer's model failed, not the agent
    return _ERROR_ENDS.get(trace.error or "", "agent_error")


def simulation_id(rollout: Rollout) -> str:
    """A stable id per rollout key (a uuid, as τ²'s ids are; safe as a file name)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "harness-opt:" + rollout.key.model_dump_json()))


def simulation(
    rollout: Rollout, trace: Trace, *, max_errors: int, reward: RewardInfo | None = None
) -> SimulationRun:
    """The τ² simulation of one rollout. `reward` overrides the scorer's record (re-judged NL)."""
    record = reward or reward_record(trace.feedback)
    extra: dict[str, Any] = {"rollout": rollout.key.model_dump(), "run_id": rollout.run_id}
    if record is None or trace.error:
        end = error_end(trace)
        extra["error"] = f"{trace.error}: {trace.error_detail or ''}".strip(": ")
        record = premature(end, {"error": extra["error"]})
    else:
        ours = (record.info or {}).get("harness_opt") or {}
        end = ours.get("termination_reason") or "agent_stop"
        if ours.get("judge"):
            extra["judge"] = ours["judge"]
    ended = trace.ended or trace.started
    return SimulationRun(
        id=simulation_id(rollout),
        task_id=rollout.task_id,
        timestamp=ended.isoformat(),
        start_time=trace.started.isoformat(),
        end_time=ended.isoformat(),
        duration=(ended - trace.started).total_seconds(),
        termination_reason=end,
        agent_cost=rollout.cost_usd,
        user_cost=rollout.user_cost_usd,
        reward_info=record,
        messages=list(
            trace_messages(trace, cut_after_errors=max_errors if end == "too_many_errors" else None)
        ),
        trial=rollout.trial,
        info={"harness_opt": extra},
    )
