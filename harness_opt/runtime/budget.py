"""What one `ctx.llm` call may ask for: allowlisted parameters, and an answer the rollout can pay for.

Budgets are enforced before a call is sent: a call whose prompt alone (estimated high) does not fit the
tokens left is refused, and its `max_tokens` is lowered so that even its longest answer fits the
tokens and dollars left. After the call the real usage is counted (and a rollout that went over all
the same, through an estimate that was too low, stops there).
"""

from __future__ import annotations

from typing import Any

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.llm.params import (
    MAX_CALL_TOKENS,
    check_params,
    estimate_tokens,
    output_cap,
    token_prices,
    with_output_cap,
)
from harness_opt.llm.types import LLMRequest
from harness_opt.records import ErrorKind


class OverBudget(Exception):
    """The rollout cannot afford the call; `kind` is token_limit or cost_limit."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


def call_params(defaults: dict[str, Any], requested: Any) -> dict[str, Any]:
    """harness.toml defaults overridden by the call's own, every one through the allowlist (ParamError)."""
    return check_params({**defaults, **check_params({} if requested is None else requested)})


def within_budget(
    limits: RolloutLimits, tokens: int, cost: float, params: dict[str, Any], req: LLMRequest
) -> dict[str, Any]:
    """`params` as they may be sent (max_tokens lowered where the budget needs it), or OverBudget."""
    prompt = estimate_tokens(req.messages, req.tools)
    room = limits.max_tokens - tokens - prompt
    if room < 1:
        raise OverBudget(
            "token_limit",
            f"{tokens} tokens used of {limits.max_tokens}; the next call's "
            f"prompt (~{prompt} tokens, estimated) does not fit",
        )
    cap = min(MAX_CALL_TOKENS, room)
    if limits.max_cost_usd is not None:
        prices = token_prices(req.model)
        if prices is not None:  # an unpriced model is checked after each call only
            left = limits.max_cost_usd - cost - prompt * prices[0]
            if left <= 0 or (prices[1] > 0 and left < prices[1]):
                raise OverBudget(
                    "cost_limit",
                    f"${cost:.4f} spent of ${limits.max_cost_usd:.4f}; the next call could not be paid for",
                )
            if prices[1] > 0:
                cap = min(cap, int(left / prices[1]))
    asked = output_cap(params)
    if (asked is not None and asked <= cap) or (asked is None and cap >= MAX_CALL_TOKENS):
        return params
    return with_output_cap(params, cap)
