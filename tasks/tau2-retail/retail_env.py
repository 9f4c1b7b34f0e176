"""One rollout's retail environment (tools + simulated customer), recording the conversation as τ²
records it, and ending it where τ²'s orchestrator would.

`messages` holds the conversation as τ²'s message models: each agent message to the customer, each
customer reply, each tool call (an assistant message with `tool_calls`) and its result (a tool
message; the text τ² would show: the string itself, else its JSON). The scorer reads it for the
COMMUNICATE check, the action checks and the NL-assertion judge, exactly as τ² reads its trajectory.

τ² ends a simulation after `max_errors` tool errors (10 by default): the erring result is the last
message, and the end is `too_many_errors`, which scores 0. We do the same: after that error every
tool call fails with `ENDED` and the customer is gone, so the agent's loop ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from harness_opt.suites.base import ToolError
from harness_opt.suites.tau2_models import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage
from harness_opt.suites.usersim import UserTurn

DEFAULT_MAX_ERRORS = 10
"""τ²'s DEFAULT_MAX_ERRORS: tool errors in one simulation before it is ended."""
ENDED = "Error: the conversation has ended (too many tool errors)"


def tool_text(result: Any) -> str:
    """A tool result as τ²'s tool message shows it: a string as is, anything else as its JSON."""
    return result if isinstance(result, str) else json.dumps(result)


class RetailEnvironment:
    """Tools over a fresh DB view, the customer (created on the first agent message), and the
    conversation so far. `reward_info` is filled in by the scorer (τ²'s RewardInfo)."""

    def __init__(
        self, tools: Any, user_factory: Callable[[], Any] | None = None, max_errors: int = DEFAULT_MAX_ERRORS
    ) -> None:
        self.tools = tools
        self.db = tools.db
        self._user_factory = user_factory
        self._user: Any = None
        self.max_errors = max_errors
        self.messages: list[Message] = []
        self.tool_errors = 0
        self.stop_reason: str | None = None
        """None while talking; the user's stop reason (stop, transfer, out_of_scope, max_turns) or
        `too_many_errors` once the conversation is over."""
        self.reward_info: Any = None

    @property
    def agent_messages(self) -> list[str]:
        """What the agent said to the customer, in order."""
        return [m.content for m in self.messages if isinstance(m, AssistantMessage) and m.content is not None]

    def say(self, text: str) -> None:
        """Record an agent message without a customer (gold replay, a final answer from run())."""
        self.messages.append(AssistantMessage(role="assistant", content=text))

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        """Run a retail tool; a failure raises `ToolError` whose text is τ²'s `"Error: ..."` message."""
        if self.stop_reason == "too_many_errors":
            raise ToolError(ENDED)
        call = ToolCall(id=f"call_{len(self.messages)}", name=name, arguments=dict(args))
        self.messages.append(AssistantMessage(role="assistant", tool_calls=[call]))
        try:
            result = self.tools.call(name, args)
        except ToolError as exc:
            self.messages.append(ToolMessage(id=call.id, role="tool", content=str(exc), error=True))
            self.tool_errors += 1
            if self.tool_errors >= self.max_errors and self.stop_reason is None:
                self.stop_reason = "too_many_errors"
            raise
        self.messages.append(ToolMessage(id=call.id, role="tool", content=tool_text(result)))
        return result

    async def user_turn(self, message: str) -> Any:
        """Send the agent's message to the simulated customer and return its `UserTurn`."""
        if self.stop_reason == "too_many_errors":
            return UserTurn(done=True, stop_reason="too_many_errors")
        self.say(message)
        if self._user_factory is None:
            raise ToolError("this environment has no simulated user")
        if self._user is None:
            self._user = self._user_factory()
        turn = await self._user.reply(message)
        if turn.content is not None:
            usage = {"prompt_tokens": turn.tokens_in, "completion_tokens": turn.tokens_out}
            self.messages.append(
                UserMessage(role="user", content=turn.content, cost=turn.cost_usd, usage=usage)
            )
        if turn.done:
            self.stop_reason = getattr(turn, "stop_reason", None) or "stop"
        return turn


def replay_gold(
    env: RetailEnvironment, actions: Sequence[dict[str, Any]], write_tools: Collection[str]
) -> list[dict[str, Any]]:
    """Run the gold actions in order, as τ² does; returns the write actions that raised.

    A gold action that fails is meant to (τ²'s replay swallows the error and the DB keeps whatever the
    failing call changed before it raised), so failures are recorded, never fatal."""
    failed = []
    for action in actions:
        try:
            env.tools.call(action["name"], dict(action.get("arguments") or {}))
        except ToolError as exc:
            if action["name"] in write_tools:
                failed.append(
                    {"action_id": action.get("action_id"), "tool": action["name"], "error": str(exc)}
                )
    return failed


def termination_reason(stop_reason: str | None) -> str:
    """τ²'s termination reason of a conversation our scorer sees (the agent's run() returned)."""
    if stop_reason is None:
        return "agent_stop"
    if stop_reason in ("stop", "transfer", "out_of_scope"):
        return "user_stop"
    if stop_reason == "max_turns":
        return "max_steps"
    return stop_reason
