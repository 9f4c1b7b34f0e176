"""The τ²-bench leaderboard formats as pydantic models, and the check a bundle must pass before upload.

Two files make a submission (taubench.com, `web/leaderboard/public/submissions/` of tau2-bench):
`submission.json` (its schema.json: model and submitter, pass^1..4 per domain in percent, cost,
methodology) and one trajectories file per domain in τ²'s results format (`Results`: info, tasks,
simulations). The models below keep the fields we write and the types τ² checks; submission models
forbid unknown fields as the schema does (`additionalProperties: false`).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness_opt.errors import UserError
from harness_opt.evaluate.stats import pass_hat_k

SUBMISSION_FILE = "submission.json"
TRAJECTORIES_DIR = "trajectories"
SUCCESS_REWARD = 1.0 - 1e-6
"""τ² counts a simulation as a success when its reward is 1 (up to float noise)."""


class ExportError(UserError):
    """A bundle that would be refused by the leaderboard, or export options that cannot make one."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactInfo(_Strict):
    email: str | None = None
    name: str | None = None
    github: str | None = None


class DomainResults(_Strict):
    pass_1: float | None = Field(default=None, ge=0, le=100, description="pass^1 in percent.")
    pass_2: float | None = Field(default=None, ge=0, le=100)
    pass_3: float | None = Field(default=None, ge=0, le=100)
    pass_4: float | None = Field(default=None, ge=0, le=100)
    cost: float | None = Field(default=None, ge=0, description="Mean USD per trajectory.")


class Results(_Strict):
    retail: DomainResults | None = None
    airline: DomainResults | None = None
    telecom: DomainResults | None = None


class Verification(_Strict):
    modified_prompts: bool | None = None
    omitted_questions: bool | None = None
    details: str | None = None


class Methodology(_Strict):
    evaluation_date: date | None = None
    tau2_bench_version: str | None = None
    user_simulator: str | None = None
    notes: str | None = None
    verification: Verification | None = None


class Reference(_Strict):
    title: str
    url: str
    type: str | None = None


class Submission(_Strict):
    """submission.json (tau2-bench `web/leaderboard/public/submissions/schema.json`)."""

    model_name: str = Field(min_length=1)
    model_organization: str = Field(min_length=1)
    submitting_organization: str = Field(min_length=1)
    submission_date: date
    submission_type: Literal["standard", "custom"] = "standard"
    modality: Literal["text", "voice"] = "text"
    contact_info: ContactInfo
    results: Results
    is_new: bool = False
    trajectories_available: bool = False
    trajectory_files: dict[str, str] | None = None
    references: list[Reference] | None = None
    methodology: Methodology | None = None

    @field_validator("contact_info")
    @classmethod
    def _reachable(cls, value: ContactInfo) -> ContactInfo:
        if not (value.email or value.github):
            raise ValueError("contact_info needs an email or a github handle")
        return value


# --- trajectories: τ²'s Results (tau2/data_model/simulation.py, message.py) -------------------------


class ToolCall(BaseModel):
    id: str = ""
    name: str
    arguments: dict[str, Any]
    requestor: Literal["user", "assistant"] = "assistant"


class Message(BaseModel):
    """An AssistantMessage, UserMessage or ToolMessage of τ² (role tells which)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    id: str | None = Field(default=None, description="Tool messages: the id of the call answered.")
    requestor: Literal["user", "assistant"] | None = None
    error: bool | None = Field(default=None, description="Tool messages: the call failed.")
    turn_idx: int | None = None
    timestamp: str | None = None
    cost: float | None = None
    usage: dict[str, Any] | None = None


class RewardInfo(BaseModel):
    reward: float
    db_check: dict[str, Any] | None = None
    communicate_checks: list[dict[str, Any]] | None = None
    nl_assertions: list[dict[str, Any]] | None = None
    reward_basis: list[str] | None = None
    reward_breakdown: dict[str, float] | None = None
    info: dict[str, Any] | None = None


TerminationReason = Literal[
    "user_stop", "agent_stop", "max_steps", "too_many_errors", "agent_error", "user_error"
]


class SimulationRun(BaseModel):
    id: str
    task_id: str
    timestamp: str | None = None
    start_time: str
    end_time: str
    duration: float
    termination_reason: TerminationReason
    agent_cost: float | None = None
    user_cost: float | None = None
    reward_info: RewardInfo | None = None
    messages: list[Message]
    trial: int | None = None
    seed: int | None = None


class AgentInfo(BaseModel):
    implementation: str
    llm: str | None = None
    llm_args: dict[str, Any] | None = None


class UserInfo(BaseModel):
    implementation: str
    llm: str | None = None
    llm_args: dict[str, Any] | None = None
    global_simulation_guidelines: str | None = None


class EnvironmentInfo(BaseModel):
    domain_name: str
    policy: str
    tool_defs: dict[str, Any] | None = None


class Info(BaseModel):
    git_commit: str
    num_trials: int
    max_steps: int
    max_errors: int
    user_info: UserInfo
    agent_info: AgentInfo
    environment_info: EnvironmentInfo
    seed: int | None = None


class Tau2Results(BaseModel):
    """A trajectories file: what `tau2 run` saves, and what the leaderboard re-scores."""

    timestamp: str | None = None
    info: Info
    tasks: list[dict[str, Any]] = Field(description="τ² task records (id, user_scenario, criteria).")
    simulations: list[SimulationRun]


def pass_k_from_simulations(simulations: list[SimulationRun], max_k: int = 4) -> dict[int, float]:
    """pass^k in percent, recomputed from the trajectories' rewards (what a reviewer would do)."""
    by_task: dict[str, list[int]] = {}
    for sim in simulations:
        reward = sim.reward_info.reward if sim.reward_info else 0.0
        counts = by_task.setdefault(sim.task_id, [0, 0])
        counts[0] += int(reward >= SUCCESS_REWARD)
        counts[1] += 1
    if not by_task:
        return {}
    top = min(min(n for _, n in by_task.values()), max_k)
    table = {task: (c, n) for task, (c, n) in by_task.items()}
    return {k: round(100 * pass_hat_k(table, k), 2) for k in range(1, top + 1)}


def _load(path: Path, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ExportError("file missing", where=str(path), fix="re-run harness-opt export") from None
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        what = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        raise ExportError(f"invalid: {what}", where=str(path), fix="re-run harness-opt export") from None


def validate_bundle(folder: Path) -> tuple[Submission, dict[str, Tau2Results]]:
    """Check a bundle as the leaderboard would; raises `ExportError` naming the first problem.

    Beyond the schemas: every trajectory file named exists and parses, every simulation's task is
    in its `tasks`, and the pass^k figures in submission.json equal those recomputed from the
    trajectories' rewards (so the headline numbers cannot drift from the evidence).
    """
    folder = Path(folder)
    submission: Submission = _load(folder / SUBMISSION_FILE, Submission)
    if submission.trajectories_available and not submission.trajectory_files:
        raise ExportError(
            "trajectories_available but no trajectory_files", where=str(folder / SUBMISSION_FILE)
        )
    trajectories: dict[str, Tau2Results] = {}
    for domain, name in (submission.trajectory_files or {}).items():
        path = folder / TRAJECTORIES_DIR / name
        results: Tau2Results = _load(path, Tau2Results)
        task_ids = {str(t.get("id")) for t in results.tasks}
        stray = sorted({s.task_id for s in results.simulations} - task_ids)
        if stray:
            raise ExportError(f"simulations of tasks not listed in tasks: {stray[:5]}", where=str(path))
        reported = getattr(submission.results, domain, None)
        if reported is None:
            raise ExportError(f"trajectories for {domain} but no results.{domain}", where=str(folder))
        for k, value in pass_k_from_simulations(results.simulations).items():
            stated = getattr(reported, f"pass_{k}")
            if stated is None or abs(stated - value) > 0.01:
                raise ExportError(
                    f"results.{domain}.pass_{k} is {stated} but the trajectories give {value}",
                    where=str(folder / SUBMISSION_FILE),
                    fix="re-run harness-opt export; never edit the figures by hand",
                )
        trajectories[domain] = results
    return submission, trajectories
