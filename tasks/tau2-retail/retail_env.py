"""One rollout's retail environment (tools + simulated customer) and τ²'s reward over its final state.

The reward follows τ²'s evaluator: `DB` compares the final database with the one left by replaying the
task's gold actions on a fresh database (failing gold actions included: they must fail the same way);
`COMMUNICATE` checks that each required string appears, lower-cased, in one agent message with its
commas removed; `NL_ASSERTION` needs an LLM judge, which we do not run, so it is reported as not
evaluated. The reward is the product of the parts in the task's `reward_basis` that were evaluated,
and 0 when the conversation was cut off by the turn limit (τ² scores any termination other than an
agent or user stop as 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from harness_opt.suites.base import ToolError

NL_OFF_NOTE = "NL_ASSERTION not evaluated (LLM judge off); the reward uses the other parts of the basis"


class RetailEnvironment:
    """Tools over a fresh DB view, the customer (created on the first agent message), and a transcript.

    `agent_messages` keeps every message the agent sent to the customer, for the COMMUNICATE check;
    `reward_info` is filled in by the scorer so an exporter can read the breakdown back."""

    def __init__(self, tools: Any, user_factory: Callable[[], Any] | None = None) -> None:
        self.tools = tools
        self.db = tools.db
        self._user_factory = user_factory
        self._user: Any = None
        self.agent_messages: list[str] = []
        self.user_messages: list[str] = []
        self.stop_reason: str | None = None
        self.reward_info: dict[str, Any] | None = None

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        """Run a retail tool; a failure raises `ToolError` whose text is τ²'s `"Error: ..."` message."""
        return self.tools.call(name, args)

    async def user_turn(self, message: str) -> Any:
        """Send the agent's message to the simulated customer and return its `UserTurn`."""
        self.agent_messages.append(message)
        if self._user_factory is None:
            raise ToolError("this environment has no simulated user")
        if self._user is None:
            self._user = self._user_factory()
        turn = await self._user.reply(message)
        if turn.content is not None:
            self.user_messages.append(turn.content)
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
            env.call_tool(action["name"], dict(action.get("arguments") or {}))
        except ToolError as exc:
            if action["name"] in write_tools:
                failed.append(
                    {"action_id": action.get("action_id"), "tool": action["name"], "error": str(exc)}
                )
    return failed


def communicate_checks(required: Sequence[str], messages: Sequence[str]) -> list[dict[str, Any]]:
    """τ²'s substring check: `info.lower()` in some agent message, lower-cased with commas removed."""
    checks = []
    for info in required:
        hit = next((m for m in messages if m and info.lower() in m.lower().replace(",", "")), None)
        checks.append({"info": info, "met": hit is not None})
    return checks


def reward_info(
    *,
    basis: Sequence[str],
    db_match: bool,
    differences: Sequence[tuple[str, str, list[str]]],
    checks: Sequence[dict[str, Any]],
    stop_reason: str | None,
    failed_gold: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The reward and its breakdown. Keys `reward`, `db`, `communicate`, `nl` come first (the export
    contract); the rest explains the verdict."""
    db = 1.0 if db_match else 0.0
    communicate = 1.0 if all(c["met"] for c in checks) else 0.0
    cut_off = stop_reason == "max_turns"
    reward = 0.0 if cut_off else 1.0
    breakdown: dict[str, float] = {}
    if "DB" in basis:
        breakdown["DB"] = db
        reward *= db
    if "COMMUNICATE" in basis:
        breakdown["COMMUNICATE"] = communicate
        reward *= communicate
    info: dict[str, Any] = {
        "reward": reward,
        "db": db,
        "communicate": communicate if checks else None,
        "nl": None,
        "reward_basis": list(basis),
        "reward_breakdown": breakdown,
        "db_match": db_match,
        "db_differences": [{"table": t, "key": k, "fields": f} for t, k, f in differences],
        "communicate_checks": list(checks),
        "stop_reason": stop_reason,
    }
    if "NL_ASSERTION" in basis:
        info["nl_note"] = NL_OFF_NOTE
    if cut_off:
        info["note"] = "conversation cut off by the user turn limit: τ² scores a premature end as 0"
    if failed_gold:
        info["gold_failed_writes"] = list(failed_gold)
    return info


def feedback_text(info: dict[str, Any]) -> str:
    """First line: the JSON `{"reward", "db", "communicate", "nl"}` an exporter parses; then prose."""
    head = {k: info[k] for k in ("reward", "db", "communicate", "nl")}
    lines = [json.dumps(head)]
    if info["db_match"]:
        lines.append("DB: the final database equals the one the gold actions produce.")
    else:
        lines.append("DB: the final database differs from the one the gold actions produce:")
        for d in info["db_differences"][:10]:
            lines.append(f"  {d['table']} {d['key']}: {', '.join(d['fields'])} differ")
        if len(info["db_differences"]) > 10:
            lines.append(f"  ... and {len(info['db_differences']) - 10} more records")
    for check in info["communicate_checks"]:
        verb = "said" if check["met"] else "never said"
        lines.append(f"COMMUNICATE: the agent {verb} {check['info']!r}.")
    if "COMMUNICATE" not in info["reward_basis"] and info["communicate_checks"]:
        lines.append("(COMMUNICATE is not in this task's reward basis: reported, not counted.)")
    if "nl_note" in info:
        lines.append(info["nl_note"] + ".")
    if "note" in info:
        lines.append(info["note"] + ".")
    return "\n".join(lines)
