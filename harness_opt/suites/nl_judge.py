"""The NL-assertion judge: an LLM grades a conversation against natural-language assertions, as
τ²-bench's `NLAssertionsEvaluator` does, so an `NL_ASSERTION` reward component means what it means
on the leaderboard.

Same semantics as τ² (tau2/evaluator/evaluator_nl_assertions.py, commit a2c0247, MIT, Sierra
Research): one call per simulation with every assertion of the task; the conversation shown as
`role: content` lines of all its messages (tool calls show as `assistant: None`, tool results as
`tool: ...`); the assertions as a Python list; the judge answers JSON `{"results": [{"expectedOutcome",
"reasoning", "metExpectation"}]}`; the component is 1 when every returned verdict is met. The
instructions below are τ²'s prompt text, byte for byte (its indentation included), because a
different prompt is a different judge. Where τ² would crash (a reply that is not JSON) we return a
failed verdict with the reason instead: a judge failure scores 0, never 1.

The judge's calls are the suite's, not the agent's: their figures travel on the verdict, and the
call is made inside the rollout's cache scope, so each trial is judged on its own.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel, Field

from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.suites.tau2_models import Message, NLAssertionCheck
from harness_opt.suites.tau2_reward import NLPart

_I = " " * 8
_SYSTEM_LINES: list[str | None] = [
    "TASK",
    "- You will be given a list of expected outcomes and a conversation that was collected during a "
    "test case run.",
    "- The conversation is between an agent and a customer.",
    "- Your job is to evaluate whether the agent satisfies each of the expected outcomes.",
    "- Grade each expected outcome individually.",
    None,
    "FORMAT",
    "- Your response should be a JSON object with the following fields:",
    "- `reasoning`: a short explanation for your classification",
    "- `metExpectation`: `true` if the agent satisfies the expected outcomes, `false` otherwise",
    "- `expectedOutcome`: repeat the expectation from the input that you are grading",
    "",
    "Example response structure:",
    "{",
    '    "results": [',
    "        {",
    '            "expectedOutcome": "<one of the expected outcomes from the input>",',
    '            "reasoning": "<reasoning trace>",',
    '            "metExpectation": <false or true>,',
    "        }",
    "    ]",
    "}",
    "",
]
JUDGE_SYSTEM = "\n" + "\n".join("" if line is None else _I + line for line in _SYSTEM_LINES)
"""τ²'s system prompt for the judge (a `None` line above is a truly empty line in τ²'s text)."""

JUDGE_PARAMS = {"temperature": 0.0}
"""τ²'s DEFAULT_LLM_NL_ASSERTIONS_ARGS."""

LLMFn = Callable[[LLMRequest], Awaitable[LLMResult]]


class NLVerdict(BaseModel):
    """The judge's verdict on one conversation and the figures of the call that made it."""

    checks: list[NLAssertionCheck] = Field(default_factory=list)
    reward: float = Field(description="1.0 when every returned check is met (τ²'s rule), else 0.0.")
    error: str | None = Field(default=None, description="Why no verdict could be read (reward 0).")
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False


def reward_part(verdict: NLVerdict, **figures: str) -> NLPart:
    """The verdict as the NL component of τ²'s reward, with the judge call's figures (plus `figures`)."""
    judge = verdict.model_dump(
        include={"model", "tokens_in", "tokens_out", "cost_usd", "latency_s", "cached"}
    )
    return NLPart(
        checks=verdict.checks, reward=verdict.reward, error=verdict.error, judge={**judge, **figures}
    )


def conversation_text(messages: Sequence[Message]) -> str:
    """τ²'s trajectory string: one `role: content` line per message (None content included)."""
    return "\n".join(f"{m.role}: {getattr(m, 'content', None)}" for m in messages)


def judge_request(model: str, messages: Sequence[Message], assertions: Sequence[str]) -> LLMRequest:
    """The judge call τ² makes for this conversation and these assertions."""
    user = (
        f"\n{_I}conversation:\n{_I}{conversation_text(messages)}\n{_I}\n"
        f"{_I}expectedOutcomes:\n{_I}{list(assertions)}\n{_I}"
    )
    return LLMRequest(
        model=model,
        messages=[{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}],
        params=dict(JUDGE_PARAMS),
    )


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_verdicts(text: str) -> list[NLAssertionCheck]:
    """The checks in the judge's reply; raises ValueError when it is not τ²'s JSON shape. A reply
    wrapped in a ```json fence is read too (τ² would fail on it; the verdict inside is the same)."""
    fenced = _FENCE.match(text)
    data = json.loads(fenced[1] if fenced else text)
    if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
        raise ValueError("the reply is not an object with a `results` list")
    return [
        NLAssertionCheck(
            nl_assertion=str(item["expectedOutcome"]),
            met=item["metExpectation"],
            justification=str(item["reasoning"]),
        )
        for item in data.get("results", [])
    ]


class NLAssertionJudge:
    """Grades conversations with `model` through `llm` (an `LLMClient.complete`)."""

    def __init__(self, model: str, llm: LLMFn) -> None:
        self.model = model
        self._llm = llm

    async def judge(self, messages: Sequence[Message], assertions: Sequence[str]) -> NLVerdict:
        """One judge call. Never raises for the judge's failure: the verdict then says why."""
        request = judge_request(self.model, messages, assertions)
        started = time.perf_counter()
        try:
            result = await self._llm(request)
        except Exception as exc:  # a failed judge call fails the component, it does not crash scoring
            return NLVerdict(
                reward=0.0,
                model=self.model,
                error=f"judge call failed: {type(exc).__name__}: {exc}",
                latency_s=time.perf_counter() - started,
            )
        verdict = NLVerdict(
            reward=0.0,
            model=result.model or self.model,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            latency_s=result.latency_s or (time.perf_counter() - started),
            cached=result.cached,
        )
        content = str(result.message.get("content") or "")
        try:
            checks = parse_verdicts(content)
        except (ValueError, KeyError, TypeError) as exc:
            shown = content if len(content) <= 300 else content[:297] + "..."
            return verdict.model_copy(update={"error": f"judge reply is not τ²'s JSON ({exc}): {shown!r}"})
        return verdict.model_copy(
            update={"checks": checks, "reward": 1.0 if all(c.met for c in checks) else 0.0}
        )
