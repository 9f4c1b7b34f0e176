"""τ²'s reward of one simulation from its parts, as `tau2.evaluator.evaluate_simulation` computes it
with the default evaluation type (ALL), so the retail suite's scores and an exported bundle agree
with τ² down to the `reward_info` record.

Only a simulation that ended by an agent or user stop is evaluated; any other end scores 0 with a
note and no basis. Otherwise each component is computed (DB, actions, COMMUNICATE, and NL assertions
when the task's basis has them) and the reward is the product of those in the task's
`reward_basis`; the others are reported, not counted. The DB verdict is the caller's (our retail
environment compares hashes); the NL verdict is the judge's (`suites/nl_judge.py`). When no judge
was run although the task carries NL assertions, the reward is the product of the other parts and
the record says, under `info["harness_opt"]`, that it is unofficial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from harness_opt.suites.tau2_models import (
    Action,
    ActionCheck,
    AssistantMessage,
    CommunicateCheck,
    DBCheck,
    EvaluationCriteria,
    Message,
    NLAssertionCheck,
    RewardInfo,
    RewardType,
    TerminationReason,
    ToolCall,
    ToolType,
    UserMessage,
)

EVALUATED_ENDS: tuple[TerminationReason, ...] = ("agent_stop", "user_stop")
SUCCESS_TOLERANCE = 1e-6
NOT_JUDGED_NOTE = (
    "NL assertions not judged (no judge model): the reward leaves NL_ASSERTION out, so it is not "
    "τ²'s reward; unofficial"
)


class NLPart(BaseModel):
    """What the judge said about one simulation (or why it said nothing)."""

    checks: list[NLAssertionCheck] | None = None
    reward: float = 0.0
    error: str | None = None
    judge: dict[str, Any] | None = None
    """The judge call's figures (model, tokens, cost): reported apart from agent and user."""


class _Part(BaseModel):
    reward: float = 1.0
    breakdown: dict[RewardType, float] | None = None
    info: dict[str, Any] | None = None


def premature(termination: TerminationReason, extra: Mapping[str, Any] | None = None) -> RewardInfo:
    """τ²'s record for a simulation that did not end by a stop: reward 0, no basis."""
    return RewardInfo(
        reward=0.0,
        reward_basis=None,
        info={
            "note": f"Simulation terminated prematurely. Termination reason: {termination}",
            "harness_opt": {"termination_reason": termination, "official": True, **(extra or {})},
        },
    )


def tool_calls(messages: Sequence[Message]) -> list[ToolCall]:
    """Every tool call in the conversation, the agent's and the user's."""
    return [
        call
        for m in messages
        if isinstance(m, AssistantMessage | UserMessage)
        for call in (m.tool_calls or [])
    ]


def communicate_checks(required: Sequence[str], messages: Sequence[Message]) -> list[CommunicateCheck]:
    """τ²'s CommunicateEvaluator: each string, lower-cased, in one agent text message lower-cased
    with its commas removed (the first such message is quoted)."""
    checks = []
    for info in required:
        hit = next(
            (
                m
                for m in messages
                if isinstance(m, AssistantMessage)
                and m.content
                and m.content.strip()
                and info.lower() in m.content.lower().replace(",", "")
            ),
            None,
        )
        if hit is not None:
            why = f"Information '{info}' communicated in the message:\n '{hit.content}'"
        else:
            why = f"Information '{info}' not communicated."
        checks.append(CommunicateCheck(info=info, met=hit is not None, justification=why))
    return checks


def action_checks(
    gold: Sequence[Action], messages: Sequence[Message], tool_types: Mapping[str, ToolType] | None
) -> list[ActionCheck]:
    """τ²'s ActionEvaluator: each gold action is matched by some tool call of the conversation."""
    calls = tool_calls(messages)
    out = []
    for action in gold:
        match = any(action.matches(call) for call in calls)
        out.append(
            ActionCheck(
                action=action,
                action_match=match,
                action_reward=1.0 if match else 0.0,
                tool_type=(tool_types or {}).get(action.name),
            )
        )
    return out


def _env(criteria: EvaluationCriteria, db_match: bool) -> tuple[_Part, DBCheck, list[Any] | None]:
    if criteria.actions is None and criteria.env_assertions is None:
        note = {"note": "No expected actions or env assertions"}
        return _Part(info=note), DBCheck(db_match=True, db_reward=1.0), None
    if criteria.env_assertions:
        raise ValueError("env_assertions are not supported: no retail task has them")
    db = 1.0 if db_match else 0.0
    breakdown: dict[RewardType, float] = {}
    reward = 1.0
    if "DB" in criteria.reward_basis:
        breakdown["DB"] = db
        reward *= db
    if "ENV_ASSERTION" in criteria.reward_basis:
        breakdown["ENV_ASSERTION"] = 1.0
    return _Part(reward=reward, breakdown=breakdown), DBCheck(db_match=db_match, db_reward=db), []


def _all(flags: Sequence[bool]) -> float:
    return 1.0 if all(flags) else 0.0


def reward_info(
    criteria: EvaluationCriteria,
    *,
    termination: TerminationReason,
    db_match: bool,
    messages: Sequence[Message],
    tool_types: Mapping[str, ToolType] | None,
    nl: NLPart | None,
    extra: Mapping[str, Any] | None = None,
) -> RewardInfo:
    """The τ² reward record of one simulation. `nl` is the judge's verdict, or None when no judge
    ran; it is only read when NL_ASSERTION is in the basis and the task has assertions. `extra` goes
    under `info["harness_opt"]` (our diagnostics, beside τ²'s per-component notes)."""
    if termination not in EVALUATED_ENDS:
        return premature(termination, extra)
    basis = list(criteria.reward_basis)
    env, db_check, env_checks = _env(criteria, db_match)

    gold = criteria.actions or []
    checks_a = action_checks(gold, messages, tool_types) if gold else None
    action = _Part(
        reward=_all([c.action_match for c in checks_a]) if checks_a else 1.0,
        info=None if gold else {"note": "No actions to evaluate"},
    )
    action.breakdown = {"ACTION": action.reward}

    required = criteria.communicate_info or []
    checks_c = communicate_checks(required, messages) if required else None
    comm = _Part(
        reward=_all([c.met for c in checks_c]) if checks_c else 1.0,
        info=None if required else {"note": "No communicate_info to evaluate"},
    )
    comm.breakdown = {"COMMUNICATE": comm.reward}

    official = True
    ours: dict[str, Any] = {"termination_reason": termination, **(extra or {})}
    nl_part: _Part | None = None
    nl_checks: list[NLAssertionCheck] | None = None
    if "NL_ASSERTION" in basis:
        if not criteria.nl_assertions:
            nl_part, nl_checks = _Part(info={"note": "No nl_assertions to evaluate"}), []
        elif nl is not None:
            nl_part, nl_checks = (
                _Part(reward=nl.reward, info={"error": nl.error} if nl.error else None),
                (nl.checks or []),
            )
            ours["judge"] = nl.judge
            if nl.error:
                official = False  # τ² would have failed this simulation, not scored it
        else:
            official = False
            ours["nl_note"] = NOT_JUDGED_NOTE
        if nl_part is not None:
            nl_part.breakdown = {"NL_ASSERTION": nl_part.reward}
    ours["official"] = official

    reward = 1.0
    breakdown: dict[RewardType, float] = {}
    for part, bases in (
        (env, {"DB", "ENV_ASSERTION"}),
        (action, {"ACTION"}),
        (nl_part, {"NL_ASSERTION"}),
        (comm, {"COMMUNICATE"}),
    ):
        if part is not None and bases & set(basis):
            breakdown.update(part.breakdown or {})
            reward *= part.reward
    return RewardInfo(
        reward=reward,
        db_check=db_check,
        env_assertions=env_checks,
        action_checks=checks_a,
        nl_assertions=nl_checks if nl_part is not None else None,
        communicate_checks=checks_c,
        reward_basis=basis,
        reward_breakdown=breakdown,
        info={
            "env": env.info,
            "nl": nl_part.info if nl_part is not None else None,
            "communicate": comm.info,
            "action": action.info,
            "harness_opt": ours,
        },
    )


def is_successful(reward: float | None) -> bool:
    """τ²'s `is_successful`: a reward within 1e-6 of 1 (what pass^k counts)."""
    return reward is not None and 1 - SUCCESS_TOLERANCE <= reward <= 1 + SUCCESS_TOLERANCE


def is_official(info: RewardInfo) -> bool:
    """False when the record says the reward is not τ²'s (NL assertions not judged, judge failed)."""
    ours = (info.info or {}).get("harness_opt") or {}
    return bool(ours.get("official", True))


def with_nl(record: RewardInfo, nl: NLPart) -> RewardInfo:
    """`record` with the NL component judged now (an export whose rollouts were scored with no
    judge or another one): the reward is again the product of the basis components."""
    if record.reward_basis is None or "NL_ASSERTION" not in record.reward_basis:
        return record
    breakdown = dict(record.reward_breakdown or {})
    breakdown["NL_ASSERTION"] = nl.reward
    reward = 1.0
    for value in breakdown.values():
        reward *= value
    info = dict(record.info or {})
    ours = {k: v for k, v in (info.get("harness_opt") or {}).items() if k != "nl_note"}
    ours.update(judge=nl.judge, official=nl.error is None)
    info.update(nl={"error": nl.error} if nl.error else None, harness_opt=ours)
    return record.model_copy(
        update={
            "reward": reward,
            "reward_breakdown": breakdown,
            "nl_assertions": nl.checks or [],
            "info": info,
        }
    )


def judged_by(record: RewardInfo) -> str | None:
    """The judge model that produced the record's NL verdicts, or None when none did."""
    judge = ((record.info or {}).get("harness_opt") or {}).get("judge") or {}
    return judge.get("model") if record.nl_assertions is not None else None


def needs_judge(record: RewardInfo, criteria: EvaluationCriteria) -> bool:
    """Whether the record's reward depends on NL assertions (basis has them, the task carries some)."""
    return (
        record.reward_basis is not None
        and "NL_ASSERTION" in record.reward_basis
        and bool(criteria.nl_assertions)
    )
