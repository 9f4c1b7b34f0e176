"""`UserSimulator`: an LLM that plays the customer of a conversational suite (τ²-bench style).

It follows τ²'s user simulator: the system prompt is the global simulation guidelines followed by the
task's scenario inside `<scenario>` tags; the conversation is shown to the model with roles flipped
(the agent speaks as "user", the simulated customer as "assistant"); a reply containing one of the stop
tokens ends the conversation. Its model calls are the suite's, not the agent's: their figures travel
on each `UserTurn` so the broker records them apart from the agent's cost.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from harness_opt.llm.types import LLMRequest, LLMResult

STOP = "###STOP###"
TRANSFER = "###TRANSFER###"
OUT_OF_SCOPE = "###OUT-OF-SCOPE###"
STOP_TOKENS: dict[str, str] = {STOP: "stop", TRANSFER: "transfer", OUT_OF_SCOPE: "out_of_scope"}
"""τ²'s stop tokens (tau2/user/base.py) and the stop reason each one means."""

GUIDELINES_FILE = "simulation_guidelines.md"
"""The guidelines for a user without tools (retail's user has none)."""

StopReason = Literal["stop", "transfer", "out_of_scope", "max_turns", "too_many_errors"]
"""Why the conversation ended: a stop token, the turn cap, or the environment ending it (too many
tool errors, τ²'s `max_errors`)."""


class _Completes(Protocol):
    async def complete(self, req: LLMRequest) -> LLMResult: ...


LLMFn = Callable[[LLMRequest], Awaitable[LLMResult]]


class UserTurn(BaseModel):
    """The simulated user's answer to one agent message, with the figures of the call that made it."""

    content: str | None = Field(default=None, description="What the user said (None: no call was made).")
    done: bool = Field(default=False, description="The user has ended the conversation.")
    stop_reason: StopReason | None = None
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0


def format_scenario(scenario: Mapping[str, Any]) -> str:
    """The task's `user_scenario` as the text τ² puts inside `<scenario>` (its UserScenario.__str__)."""
    lines: list[str] = []
    persona = scenario.get("persona")
    if persona is not None:
        lines += ["Persona:", textwrap.indent(str(persona), "\t")]
    instructions = scenario.get("instructions")
    if isinstance(instructions, Mapping):
        parts = [f"Domain: {instructions.get('domain', '')}"]
        for key, label in (
            ("reason_for_call", "Reason for call"),
            ("known_info", "Known info"),
            ("unknown_info", "Unknown info"),
            ("task_instructions", "Task instructions"),
        ):
            value = instructions.get(key)
            if value is not None or key in ("reason_for_call", "task_instructions"):
                parts.append(f"{label}:\n{textwrap.indent(str(value or ''), chr(9))}")
        text = "\n".join(parts)
    else:
        text = str(instructions or "")
    lines += ["Instructions:", textwrap.indent(text, "\t")]
    return "\n".join(lines)


def system_prompt(scenario: Mapping[str, Any], guidelines: str) -> str:
    """τ²'s user system prompt: the guidelines verbatim, then the scenario in `<scenario>` tags (τ²
    strips its template, not the guidelines, so a trailing newline of the file is kept)."""
    return f"{guidelines}\n\n<scenario>\n{format_scenario(scenario)}\n</scenario>"


def load_guidelines(folder: Path) -> str:
    """The no-tools simulation guidelines from τ²'s `user_simulator/` data folder."""
    return (Path(folder) / GUIDELINES_FILE).read_text(encoding="utf-8")


def stop_reason_of(text: str | None) -> StopReason | None:
    """Which stop token, if any, `text` contains (a substring test, as τ²'s `is_stop`)."""
    if not text:
        return None
    for token, reason in STOP_TOKENS.items():
        if token in text:
            return reason  # type: ignore[return-value]
    return None


class UserSimulator:
    """One simulated customer for one rollout: holds the conversation so far, answers agent messages.

    `max_turns` caps the user's replies: the last one still reaches the agent, and the agent's next
    message gets `done=True` (stop reason "max_turns"). After a reply holding a stop token, or after
    that, every `reply` returns `done=True` without a model call.
    """

    def __init__(
        self,
        scenario: Mapping[str, Any],
        guidelines: str,
        model: str,
        llm: LLMFn | _Completes,
        max_turns: int = 30,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError("UserSimulator: max_turns must be >= 1")
        self.model = model
        self.max_turns = max_turns
        self.params: dict[str, Any] = {"temperature": 0, **(params or {})}
        self._complete: LLMFn = llm.complete if hasattr(llm, "complete") else llm
        self.system = system_prompt(scenario, guidelines)
        self.history: list[dict[str, Any]] = []
        """The conversation from the user's side: agent messages as "user", its own as "assistant"."""
        self.turns = 0
        self.stop_reason: StopReason | None = None

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    async def reply(self, agent_message: str) -> UserTurn:
        """The user's answer to `agent_message` (one model call), or `done` when the talk is over."""
        if self.done:
            return UserTurn(done=True, stop_reason=self.stop_reason, model=self.model)
        if self.turns >= self.max_turns:
            self.stop_reason = "max_turns"
            return UserTurn(done=True, stop_reason="max_turns", model=self.model)
        self.history.append({"role": "user", "content": agent_message})
        request = LLMRequest(
            model=self.model,
            messages=[{"role": "system", "content": self.system}, *self.history],
            params=self.params,
        )
        t0 = time.perf_counter()
        result = await self._complete(request)
        content = str(result.message.get("content") or "")
        self.history.append({"role": "assistant", "content": content})
        self.turns += 1
        reason = stop_reason_of(content)  # past max_turns, the *next* reply says done
        self.stop_reason = reason
        return UserTurn(
            content=content,
            done=reason is not None,
            stop_reason=reason,
            model=result.model or self.model,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            latency_s=result.latency_s or (time.perf_counter() - t0),
        )
