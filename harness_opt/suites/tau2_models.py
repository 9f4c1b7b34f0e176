"""τ²-bench's trajectory format (`tau2.data_model`: `Results`, its tasks, messages, rewards) as our
own pydantic models, so a bundle is checked against the schema τ²'s `Results.load` applies.

Written from τ²'s source at commit a2c0247 (`data_model/simulation.py`, `message.py`, `tasks.py`,
`environment/toolkit.py`); the field names, types and defaults are τ²'s, text (half-duplex) runs
only. Where τ² types a field as a bare `dict` (tool arguments, token usage, llm args, free-form
`info`) so do we; everything τ² models is modelled here. One deliberate difference: these models
forbid unknown fields, where τ²'s ignore them. We only write fields τ² knows, and a misspelt or
voice-only field in a text bundle is a defect τ² would silently drop.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Tau2Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


RewardType = Literal["DB", "ENV_ASSERTION", "NL_ASSERTION", "ACTION", "COMMUNICATE"]
"""Components that can gate a task's reward; the reward is the product of those in its basis."""

Requestor = Literal["user", "assistant"]

TerminationReason = Literal[
    "user_stop",
    "agent_stop",
    "max_steps",
    "timeout",
    "too_many_errors",
    "agent_error",
    "user_error",
    "infrastructure_error",
    "context_window_exceeded",
    "unexpected_error",
]
"""Why a simulation ended. Only `agent_stop` and `user_stop` are evaluated; any other end scores 0,
and `infrastructure_error` simulations are left out of the metrics."""

ToolType = Literal["read", "write", "think", "generic"]


# --- messages (tau2/data_model/message.py) -----------------------------------------------------------


class ToolCall(Tau2Model):
    id: str = ""
    name: str
    arguments: dict[str, Any]
    requestor: Requestor = "assistant"


class SystemMessage(Tau2Model):
    role: Literal["system"]
    content: str | None = None
    turn_idx: int | None = None
    timestamp: str | None = None


class _ParticipantMessage(Tau2Model):
    """The text-mode fields of τ²'s ParticipantMessageBase (its audio fields are voice-only)."""

    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    is_audio: bool = False
    turn_idx: int | None = None
    timestamp: str | None = None
    cost: float | None = None
    usage: dict[str, Any] | None = Field(default=None, description="τ²: the provider's token usage.")
    raw_data: dict[str, Any] | None = None
    generation_time_seconds: float | None = None
    utterance_ids: list[str] | None = None
    chunk_id: int | None = None
    is_final_chunk: bool = True
    source: str | None = None
    contains_speech: bool = True


class AssistantMessage(_ParticipantMessage):
    role: Literal["assistant"]


class UserMessage(_ParticipantMessage):
    role: Literal["user"]


class ToolMessage(Tau2Model):
    id: str = Field(description="The id of the tool call this answers.")
    role: Literal["tool"]
    content: str | None = None
    requestor: Requestor = "assistant"
    error: bool = False
    turn_idx: int | None = None
    timestamp: str | None = None


class MultiToolMessage(Tau2Model):
    role: Literal["tool"]
    tool_messages: list[ToolMessage]


Message = SystemMessage | AssistantMessage | UserMessage | ToolMessage | MultiToolMessage


# --- tasks (tau2/data_model/tasks.py) ----------------------------------------------------------------


class StructuredUserInstructions(Tau2Model):
    domain: str
    reason_for_call: str
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str


class UserScenario(Tau2Model):
    persona: str | None = None
    instructions: StructuredUserInstructions | str


class Description(Tau2Model):
    purpose: str | None = None
    relevant_policies: str | None = None
    notes: str | None = None


class Action(Tau2Model):
    action_id: str
    requestor: Requestor = "assistant"
    name: str
    arguments: dict[str, Any]
    info: str | None = None
    compare_args: list[str] | None = None

    def matches(self, call: ToolCall) -> bool:
        """τ²'s `compare_with_tool_call`: same tool, equal values of `compare_args` (default: every
        argument of the call)."""
        if self.name != call.name:
            return False
        keys = list(call.arguments) if self.compare_args is None else self.compare_args
        if not keys:
            return True
        return {k: v for k, v in call.arguments.items() if k in keys} == {
            k: v for k, v in self.arguments.items() if k in keys
        }


class EnvFunctionCall(Tau2Model):
    env_type: Requestor
    func_name: str
    arguments: dict[str, Any]


class EnvAssertion(EnvFunctionCall):
    assert_value: bool = True
    message: str | None = None


class TaskIssue(Tau2Model):
    id: str
    title: str
    description: str | None = None
    status: Literal["open", "resolved", "wont_fix"] = "open"
    resolution: str | None = None
    created_at: str | None = None
    resolved_at: str | None = None
    author_email: str | None = None
    pr_link: str | None = None
    simulation_file: str | None = None


def _db_and_communicate() -> list[RewardType]:
    return ["DB", "COMMUNICATE"]


def _db_only() -> list[RewardType]:
    return ["DB"]


class EvaluationCriteria(Tau2Model):
    actions: list[Action] | None = None
    env_assertions: list[EnvAssertion] | None = None
    communicate_info: list[str] | None = None
    nl_assertions: list[str] | None = None
    reward_basis: list[RewardType] = Field(default_factory=_db_and_communicate)


class InitializationData(Tau2Model):
    agent_data: dict[str, Any] | None = None
    user_data: dict[str, Any] | None = None


class InitialState(Tau2Model):
    initialization_data: InitializationData | None = None
    initialization_actions: list[EnvFunctionCall] | None = None
    message_history: list[Message] | None = None


class Task(Tau2Model):
    """One τ² task record, as in the domain's tasks.json; a bundle must carry it unchanged."""

    id: str
    description: Description | None = None
    user_scenario: UserScenario
    ticket: str | None = None
    initial_state: InitialState | None = None
    evaluation_criteria: EvaluationCriteria | None = None
    issues: list[TaskIssue] | None = None
    required_documents: list[str] | None = None
    user_tools: list[str] | None = None


# --- rewards (tau2/data_model/simulation.py) -----------------------------------------------------


class NLAssertionCheck(Tau2Model):
    nl_assertion: str
    met: bool
    justification: str


class CommunicateCheck(Tau2Model):
    info: str
    met: bool
    justification: str


class DBCheck(Tau2Model):
    db_match: bool
    db_reward: float


class ActionCheck(Tau2Model):
    action: Action
    action_match: bool
    action_reward: float
    tool_type: ToolType | None = None


class EnvAssertionCheck(Tau2Model):
    env_assertion: EnvAssertion
    met: bool
    reward: float


class RewardInfo(Tau2Model):
    """The reward of one simulation and each component it was computed from."""

    reward: float
    db_check: DBCheck | None = None
    env_assertions: list[EnvAssertionCheck] | None = None
    action_checks: list[ActionCheck] | None = None
    nl_assertions: list[NLAssertionCheck] | None = None
    communicate_checks: list[CommunicateCheck] | None = None
    reward_basis: list[RewardType] | None = Field(default_factory=_db_only)
    reward_breakdown: dict[RewardType, float] | None = None
    info: dict[str, Any] | None = Field(default=None, description="τ²: free-form notes per component.")


# --- run information -----------------------------------------------------------------------------


class ToolSignature(Tau2Model):
    """τ²'s description of one tool (environment/toolkit.py), not an OpenAI function schema."""

    name: str
    doc: str
    params: dict[str, Any] | None = Field(default=None, description="JSON schema of the parameters.")
    returns: dict[str, Any] | None = Field(default=None, description="JSON schema of the result.")


class EnvironmentInfo(Tau2Model):
    domain_name: str
    policy: str
    tool_defs: dict[str, ToolSignature] | None = None


class AgentInfo(Tau2Model):
    implementation: str
    llm: str | None = None
    llm_args: dict[str, Any] | None = None


class UserInfo(Tau2Model):
    implementation: str
    llm: str | None = None
    llm_args: dict[str, Any] | None = None
    global_simulation_guidelines: str | None = None


class Info(Tau2Model):
    git_commit: str
    num_trials: int
    max_steps: int
    max_errors: int
    user_info: UserInfo
    agent_info: AgentInfo
    environment_info: EnvironmentInfo
    seed: int | None = None
    text_streaming_config: dict[str, Any] | None = None
    retrieval_config: str | None = None
    retrieval_config_kwargs: dict[str, Any] | None = None


class SimulationRun(Tau2Model):
    id: str
    task_id: str
    timestamp: str
    start_time: str
    end_time: str
    duration: float
    termination_reason: TerminationReason
    agent_cost: float | None = None
    user_cost: float | None = None
    reward_info: RewardInfo | None = None
    messages: list[Message] | None = None
    trial: int | None = None
    seed: int | None = None
    mode: str = "half_duplex"
    info: dict[str, Any] | None = Field(default=None, description="τ²: additional diagnostics.")
    hallucination_retries_used: int = 0


class Results(Tau2Model):
    """A trajectories file: what `tau2 run` saves and the leaderboard re-scores."""

    timestamp: str | None = None
    info: Info
    tasks: list[Task]
    simulations: list[SimulationRun] = Field(default_factory=list)
