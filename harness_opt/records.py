"""Typed, versioned records shared by every layer: tasks, scores, trace events, traces and rollouts.

These are the contracts between the suite, the runtime, the evaluator and the ledger. They are pydantic
models so every file the tool writes (trace JSONL, cache entries) validates on the way back in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
"""Bumped whenever a record's shape changes incompatibly; stored in every trace line."""

SPLITS = ("train", "val", "test")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Task(BaseModel):
    """One benchmark task.

    Only `id` and `input` ever cross into the sandboxed harness process; `expected` and `metadata`
    stay in the parent where the scorer uses them, so harness code can never read a gold answer.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id, unique within the suite.")
    input: dict[str, Any] = Field(description="What the agent is given (rendered into its prompts).")
    expected: Any = Field(default=None, description="Gold answer or state; parent-side only.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Parent-side extras.")


class Score(BaseModel):
    """A scorer's verdict on one rollout."""

    score: float = Field(ge=0.0, le=1.0, description="Score in [0, 1].")
    passed: bool = Field(description="Whether the rollout counts as a success (pass rate, pass^k).")
    feedback: str = Field(default="", description="Text a proposer may read (train split only).")


ErrorKind = Literal[
    "timeout",  # wall-time limit
    "step_limit",  # too many ctx.llm / ctx.call_tool steps
    "token_limit",
    "cost_limit",
    "crash",  # exception in harness code or the child died
    "memory",  # memory limit hit
    "llm_error",  # the model call failed after retries
    "sandbox",  # the sandbox could not start the harness
    "invalid_output",  # run() returned something that is not JSON-serialisable
    "context_overflow",  # the model refused the prompt the harness built as too long (would recur)
    "bad_request",  # the model refused the request the harness built (would recur)
]

INFRA_ERRORS = frozenset({"llm_error", "sandbox", "scorer"})
"""Failures of the infrastructure, not of the version: a model call that failed for good (outage,
retries spent, auth), a sandbox that did not start, a scorer that crashed. The one rule for them:
such a rollout is never a 0 in the score and never silently dropped. It is counted apart (the
summary, `leaderboard`, `diff`, `report`, `doctor`), is not served from the ledger again (a re-run
retries it), and an evaluation with more of them than its threshold is `degraded`, which the
acceptance test refuses to judge. Every other error (timeout, crash, a context overflow the harness
caused...) is the version's failure: scored 0 and counted."""


def is_infra_error(error: str | None) -> bool:
    """Whether a rollout's error kind is an infrastructure failure (see `INFRA_ERRORS`)."""
    return error in INFRA_ERRORS


class CallCounts(BaseModel):
    """The model requests one rollout made (agent, simulated user and judge together), as sent."""

    attempts: int = Field(default=0, description="Requests sent to a provider; each retry is one more.")
    calls_ok: int = Field(default=0, description="Requests answered (cache hits excluded).")
    cached: int = Field(default=0, description="Calls served from the response cache (nothing sent).")
    retries: dict[str, int] = Field(
        default_factory=dict, description="Retries by cause: connection_refused, server_error, ..."
    )
    failed: dict[str, int] = Field(default_factory=dict, description="Calls that failed for good, by cause.")
    last_failure: str | None = Field(default=None, description="Cause of the last call that failed for good.")


class LLMCallEvent(BaseModel):
    type: Literal["llm"] = "llm"
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] | None = Field(default=None, description="The assistant message returned.")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None


class ToolCallEvent(BaseModel):
    type: Literal["tool"] = "tool"
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str | None = Field(default=None, description="Tool error text returned to the agent.")
    latency_s: float = 0.0


class LogEvent(BaseModel):
    type: Literal["log"] = "log"
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class OutputEvent(BaseModel):
    type: Literal["output"] = "output"
    output: Any


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    kind: str
    reason: str


class UserTurnEvent(BaseModel):
    """One exchange with a simulated user (`ctx.say`): what the agent said and what the user answered.

    The simulator's model call is the suite's, not the agent's: its figures live here, never in an
    LLMCallEvent, so agent cost (what a harness is judged on) and user cost stay apart.
    """

    type: Literal["user"] = "user"
    agent_message: str = Field(description="What the agent said to the user.")
    reply: str | None = Field(default=None, description="The user's answer; None once the user is gone.")
    done: bool = Field(default=False, description="The user ended the conversation (stop token, max turns).")
    stop_reason: str | None = Field(
        default=None, description="stop, transfer, out_of_scope, max_turns, or None while talking."
    )
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    error: str | None = None


TraceEvent = Annotated[
    LLMCallEvent | ToolCallEvent | LogEvent | OutputEvent | ErrorEvent | UserTurnEvent,
    Field(discriminator="type"),
]


class RolloutKey(BaseModel):
    """What makes two rollouts 'the same': re-evaluating an identical key is served from the ledger."""

    model_config = ConfigDict(frozen=True)

    version_hash: str
    suite: str
    split: str
    task_id: str
    trial: int
    model: str


class Trace(BaseModel):
    """Everything that happened in one rollout; one line of a trace JSONL file."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    key: RolloutKey
    task_input: dict[str, Any]
    events: list[TraceEvent] = Field(default_factory=list)
    output: Any = None
    score: float = 0.0
    passed: bool = False
    feedback: str = ""
    error: str | None = None
    error_detail: str | None = None
    started: datetime = Field(default_factory=utcnow)
    ended: datetime | None = None
    calls: CallCounts | None = Field(default=None, description="Model requests sent for this rollout.")
    unofficial: bool = Field(
        default=False, description="Scored without a part of the benchmark's official reward (τ²'s NL judge)."
    )


class Rollout(BaseModel):
    """One row of the ledger's `rollouts` table: the figures of one trace, and where the trace is."""

    run_id: str
    version_hash: str
    suite: str
    split: str
    task_id: str
    trial: int
    model: str
    score: float
    passed: bool
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    n_llm_calls: int = 0
    n_tool_calls: int = 0
    error: str | None = None
    error_detail: str | None = None
    feedback: str = ""
    trace_ref: str | None = Field(
        default=None, description="'<file relative to the traces dir>#<byte offset>'."
    )
    created: datetime = Field(default_factory=utcnow)
    # Added by ledger migration m003_user_sim: columns are appended, so these fields come last.
    user_cost_usd: float = Field(default=0.0, description="Spend of the simulated user (not the agent).")
    user_tokens: int = Field(default=0, description="Prompt + completion tokens of the simulated user.")
    # Added by ledger migration m007_call_accounting.
    llm_attempts: int = Field(default=0, description="Model requests sent, retries included.")
    llm_retries: int = Field(default=0, description="Of those, retries after a transient failure.")
    llm_retry_causes: dict[str, int] = Field(default_factory=dict, description="Retries by cause.")
    llm_calls_ok: int = Field(default=0, description="Requests answered (cache hits excluded).")
    unofficial: bool = Field(default=False, description="Scored without part of the official reward.")

    @field_validator("llm_retry_causes", mode="before")
    @classmethod
    def _causes_from_json(cls, value: Any) -> Any:
        """The ledger stores the retry causes as JSON text (NULL in rows older than the column)."""
        if value is None or value == "":
            return {}
        return json.loads(value) if isinstance(value, str) else value

    @property
    def key(self) -> RolloutKey:
        return RolloutKey(
            version_hash=self.version_hash,
            suite=self.suite,
            split=self.split,
            task_id=self.task_id,
            trial=self.trial,
            model=self.model,
        )

    @classmethod
    def from_trace(cls, trace: Trace, trace_ref: str | None = None) -> Rollout:
        llm = [e for e in trace.events if isinstance(e, LLMCallEvent)]
        tools = [e for e in trace.events if isinstance(e, ToolCallEvent)]
        user = [e for e in trace.events if isinstance(e, UserTurnEvent)]
        latency = (trace.ended - trace.started).total_seconds() if trace.ended else 0.0
        calls = trace.calls or CallCounts()
        return cls(
            run_id=trace.run_id,
            **trace.key.model_dump(),
            score=trace.score,
            passed=trace.passed,
            cost_usd=sum(e.cost_usd for e in llm),
            tokens_in=sum(e.tokens_in for e in llm),
            tokens_out=sum(e.tokens_out for e in llm),
            latency_s=latency,
            n_llm_calls=len(llm),
            n_tool_calls=len(tools),
            error=trace.error,
            error_detail=trace.error_detail,
            feedback=trace.feedback,
            trace_ref=trace_ref,
            user_cost_usd=sum(e.cost_usd for e in user),
            user_tokens=sum(e.tokens_in + e.tokens_out for e in user),
            llm_attempts=calls.attempts,
            llm_retries=sum(calls.retries.values()),
            llm_retry_causes=dict(calls.retries),
            llm_calls_ok=calls.calls_ok,
            unofficial=trace.unofficial,
        )
