"""`export_tau2`: a taubench.com submission bundle from a harness version's rollouts on tau2-retail.

The version is evaluated on the chosen split (test by default) with k trials through the evaluator,
so results already in the ledger are reused and nothing is computed twice. Each rollout's trace
becomes one τ² simulation (the conversation rebuilt from the trace's `ctx.say` exchanges and tool
calls; the reward breakdown from the JSON line the scorer writes first in its feedback), and the
bundle is checked with `validate_bundle` before this returns.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.passk import pass_k_table
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.export.tau2_format import (
    SUBMISSION_FILE,
    TRAJECTORIES_DIR,
    AgentInfo,
    ContactInfo,
    DomainResults,
    EnvironmentInfo,
    ExportError,
    Info,
    Message,
    Methodology,
    Reference,
    Results,
    RewardInfo,
    SimulationRun,
    Submission,
    Tau2Results,
    TerminationReason,
    ToolCall,
    UserInfo,
    Verification,
    validate_bundle,
)
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.records import LLMCallEvent, Rollout, ToolCallEvent, Trace, UserTurnEvent
from harness_opt.suites.base import Suite

DOMAIN = "retail"
_LIMIT_ERRORS = {"step_limit", "timeout", "token_limit", "cost_limit"}


class Submitter(BaseModel):
    """Facts only the user knows. From CLI options or a TOML file; a missing one is an error."""

    model_name: str | None = None
    model_organization: str | None = None
    submitting_organization: str | None = None
    contact_email: str | None = None
    contact_name: str | None = None
    contact_github: str | None = None
    references: list[Reference] = Field(default_factory=list)

    def merged(self, other: Submitter) -> Submitter:
        """`other`'s values where given, ours elsewhere (CLI options over the config file)."""
        return self.model_copy(update={k: v for k, v in other.model_dump().items() if v not in (None, [])})

    def require(self) -> None:
        missing = [
            name for name in ("model_name", "model_organization", "submitting_organization")
            if not getattr(self, name)
        ]
        if not (self.contact_email or self.contact_github):
            missing.append("contact_email (or contact_github)")
        if missing:
            flags = ", ".join("--" + m.split(" ")[0].replace("_", "-").replace("contact-email", "contact")
                              for m in missing)
            raise ExportError(
                f"the submission needs {', '.join(missing)}",
                where="harness-opt export",
                fix=f"pass {flags}, or put them under [submission] in a --config TOML file",
            )


def load_submitter(path: Path) -> Submitter:
    """Read `[submission]` (or top-level keys) of a TOML file: model_name, model_organization,
    submitting_organization, contact_email, contact_name, contact_github, [[submission.references]]."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError("config file not found", where=str(path), fix="pass an existing TOML file") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise ExportError(f"invalid TOML: {exc}", where=str(path), fix="fix the TOML syntax") from None
    table = raw.get("submission", raw)
    try:
        return Submitter.model_validate(table)
    except ValueError as exc:
        raise ExportError(f"bad [submission] table: {exc}", where=str(path)) from None


class ExportConfig(BaseModel):
    split: str = "test"
    trials: int = Field(default=4, ge=1, le=4, description="pass^1..trials are reported (at most 4).")
    model: str | None = None
    concurrency: int = 4
    limit: int | None = Field(default=None, ge=1, description="First N tasks only (a smoke test, not a "
                              "submission: omitted_questions is then true).")
    isolation: str = "auto"
    out_dir: Path = Path("leaderboards")
    optimized_on: str | None = Field(
        default=None, description="Which split(s) the harness was optimized on; default from its lineage."
    )


class ExportResult(BaseModel):
    folder: Path
    submission: Submission
    n_simulations: int


# --- one trace -> one τ² simulation ---------------------------------------------------------------


def reward_line(feedback: str) -> dict[str, Any] | None:
    """The scorer's `{"reward": .., "db": .., "communicate": .., "nl": ..}` first line, if present."""
    first = feedback.split("\n", 1)[0].strip()
    if not first.startswith("{"):
        return None
    try:
        value = json.loads(first)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "reward" in value else None


def reward_info(rollout: Rollout, feedback: str, basis: list[str] | None = None) -> RewardInfo:
    """τ²'s RewardInfo from the scorer's JSON line; `basis` is the task's reward_basis."""
    line = reward_line(feedback)
    if line is None:  # an errored rollout: the evaluator scored it 0 with the reason as feedback
        return RewardInfo(reward=rollout.score, reward_basis=basis, info={"note": feedback[:2000]})
    parts = {"DB": line.get("db"), "COMMUNICATE": line.get("communicate"), "NL_ASSERTION": line.get("nl")}
    breakdown = {
        k: float(v) for k, v in parts.items() if isinstance(v, int | float) and (basis is None or k in basis)
    }
    extra = {k: v for k, v in line.items() if k not in ("reward", "db", "communicate", "nl")}
    if line.get("nl") is None:
        extra.setdefault("nl_assertions", "not evaluated: the NL-assertion judge is off")
    db = line.get("db")
    return RewardInfo(
        reward=float(line["reward"]),
        db_check={"db_match": db == 1, "db_reward": float(db)} if isinstance(db, int | float) else None,
        reward_basis=basis if basis is not None else (list(breakdown) or None),
        reward_breakdown=breakdown or None,
        info=extra or None,
    )


def trace_messages(trace: Trace) -> list[Message]:
    """The conversation as τ² messages: agent text and user replies from `ctx.say` exchanges, each
    executed tool call as an assistant tool-call message plus its tool result. The cost and usage of
    the agent's model call go on the next agent message it produced."""
    out: list[Message] = []
    pending: LLMCallEvent | None = None

    def agent_figures() -> dict[str, Any]:
        nonlocal pending
        if pending is None:
            return {}
        figures = {"cost": pending.cost_usd,
                   "usage": {"prompt_tokens": pending.tokens_in, "completion_tokens": pending.tokens_out}}
        pending = None
        return figures

    for event in trace.events:
        if isinstance(event, LLMCallEvent):
            pending = event
        elif isinstance(event, ToolCallEvent):
            call_id = f"call_{len(out)}"
            out.append(Message(role="assistant", tool_calls=[ToolCall(id=call_id, name=event.name,
                               arguments=event.args)], **agent_figures()))
            result = event.result
            content = event.error if event.error is not None else (
                result if isinstance(result, str) else json.dumps(result)
            )
            out.append(Message(role="tool", id=call_id, content=content, requestor="assistant",
                               error=event.error is not None))
        elif isinstance(event, UserTurnEvent):
            out.append(Message(role="assistant", content=event.agent_message, **agent_figures()))
            if event.reply is not None:
                usage = {"prompt_tokens": event.tokens_in, "completion_tokens": event.tokens_out}
                out.append(Message(role="user", content=event.reply, cost=event.cost_usd, usage=usage))
    for i, message in enumerate(out):
        message.turn_idx = i
    return out


def termination_reason(trace: Trace) -> TerminationReason:
    turns = [e for e in trace.events if isinstance(e, UserTurnEvent)]
    if trace.error:
        if turns and turns[-1].error:
            return "user_error"
        return "max_steps" if trace.error in _LIMIT_ERRORS else "agent_error"
    if turns and turns[-1].done:
        return "max_steps" if turns[-1].stop_reason == "max_turns" else "user_stop"
    return "agent_stop"


def simulation(rollout: Rollout, trace: Trace, basis: list[str] | None = None) -> SimulationRun:
    ended = trace.ended or trace.started
    return SimulationRun(
        id=f"{rollout.run_id}/{rollout.task_id}/{rollout.trial}",
        task_id=rollout.task_id,
        timestamp=ended.isoformat(),
        start_time=trace.started.isoformat(),
        end_time=ended.isoformat(),
        duration=(ended - trace.started).total_seconds(),
        termination_reason=termination_reason(trace),
        agent_cost=rollout.cost_usd,
        user_cost=rollout.user_cost_usd,
        reward_info=reward_info(rollout, trace.feedback, basis),
        messages=trace_messages(trace),
        trial=rollout.trial,
    )


# --- the bundle ------------------------------------------------------------------------------------


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _task_record(task: Any) -> dict[str, Any]:
    """The τ² task dict: the raw record if the suite kept it, else one rebuilt from our Task."""
    raw = task.metadata.get("tau2_task")
    if isinstance(raw, dict):
        return raw
    record: dict[str, Any] = {"id": task.id}
    if task.metadata.get("description") is not None:
        record["description"] = task.metadata["description"]
    if "user_scenario" in task.metadata:
        record["user_scenario"] = task.metadata["user_scenario"]
    if isinstance(task.expected, dict):
        record["evaluation_criteria"] = task.expected
    return record


def _basis(task: Any) -> list[str] | None:
    if task is None:
        return None
    basis = task.metadata.get("reward_basis")
    if basis is None and isinstance(task.expected, dict):
        basis = task.expected.get("reward_basis")
    return [str(b) for b in basis] if basis else None


def _optimized_on(version: HarnessVersion) -> str:
    if (version.manifest.harness.proposer or "seed") in ("seed", "human"):
        return "not optimized: a hand-written seed harness"
    return ("optimized by harness-opt: proposers read traces of the train split only; candidates were "
            "accepted on the val split")


def export_tau2(
    version: HarnessVersion | Path | str,
    suite: Suite,
    submitter: Submitter,
    config: ExportConfig | None = None,
    *,
    ledger: Ledger | None = None,
    today: date | None = None,
) -> ExportResult:
    """Evaluate (or reuse) `version` on `config.split` with `config.trials` trials and write
    `<out_dir>/<agent>-v<NNNN>-<date>/` with submission.json and trajectories/<file>.json."""
    config = config or ExportConfig()
    submitter.require()
    version = version if isinstance(version, HarnessVersion) else HarnessVersion.load(version)
    result = evaluate(
        version, suite,
        EvalConfig(split=config.split, trials=config.trials, model=config.model,
                   concurrency=config.concurrency, isolation=config.isolation,  # type: ignore[arg-type]
                   limit=config.limit, allow_test=True),
        ledger=ledger,
    )
    traces = [(r, read_trace(r.trace_ref)) for r in result.rollouts if r.trace_ref]
    if len(traces) != len(result.rollouts):
        raise ExportError("some rollouts have no trace", fix="re-run with a fresh ledger or --no-reuse")
    tasks = {t.id: t for t in suite.tasks(config.split)}
    sims = [simulation(r, t, _basis(tasks.get(r.task_id))) for r, t in traces]
    table = pass_k_table(result.rollouts, max_k=config.trials)
    day = today or datetime.now(UTC).date()
    user_model = getattr(suite, "user_model", None)
    n_all = len({t.id for s in suite.split_names() for t in suite.tasks(s)})  # export is explicit consent
    n_tasks = len({r.task_id for r in result.rollouts})
    trajectories = Tau2Results(
        timestamp=datetime.now(UTC).isoformat(),
        info=Info(
            git_commit=_git_commit(),
            num_trials=config.trials,
            max_steps=version.manifest.runtime.limits.max_steps,
            max_errors=0,
            user_info=UserInfo(implementation="harness_opt.suites.usersim.UserSimulator", llm=user_model,
                               llm_args={"temperature": 0},
                               global_simulation_guidelines=getattr(suite, "guidelines", None)),
            agent_info=AgentInfo(implementation=f"harness-opt {version.label} ({version.hash[:12]})",
                                 llm=result.model, llm_args=dict(version.manifest.model.params)),
            environment_info=EnvironmentInfo(
                domain_name=DOMAIN, policy=str(getattr(suite, "policy", "") or ""),
                tool_defs={t["function"]["name"]: t for t in version.tools if "function" in t},
            ),
        ),
        tasks=[_task_record(t) for t in tasks.values() if t.id in {r.task_id for r in result.rollouts}],
        simulations=sims,
    )
    user_cost = sum(r.user_cost_usd for r in result.rollouts)
    notes = (
        f"Harness {version.label} (content hash {version.hash[:12]}), {_optimized_on(version)}. "
        f"{config.optimized_on + '. ' if config.optimized_on else ''}"
        f"Evaluated on the {config.split} split ({n_tasks} tasks, {config.trials} trials each) with "
        f"harness-opt's own reimplementation of the tau2 retail environment, user simulator and reward. "
        f"NL assertions are not judged. User simulator cost: ${user_cost:.4f} in total."
    )
    submission = Submission(
        model_name=submitter.model_name or "",
        model_organization=submitter.model_organization or "",
        submitting_organization=submitter.submitting_organization or "",
        submission_date=day,
        submission_type="custom",
        contact_info=ContactInfo(email=submitter.contact_email, name=submitter.contact_name,
                                 github=submitter.contact_github),
        results=Results(retail=DomainResults(
            **{f"pass_{k}": round(100 * v, 2) for k, v in table.items()},
            cost=sum(r.cost_usd for r in result.rollouts) / len(result.rollouts),
        )),
        trajectories_available=True,
        references=submitter.references or None,
        methodology=Methodology(
            evaluation_date=day, user_simulator=user_model, notes=notes,
            verification=Verification(
                modified_prompts=True,
                omitted_questions=n_tasks < n_all,
                details=f"{n_tasks} of {n_all} retail tasks evaluated (the {config.split} split).",
            ),
        ),
    )
    folder = Path(config.out_dir) / f"{version.name}-v{version.number:04d}-{day.isoformat()}"
    name = f"{version.name}_{DOMAIN}_{result.model.replace('/', '-')}_{config.trials}trials.json"
    submission.trajectory_files = {DOMAIN: name}
    (folder / TRAJECTORIES_DIR).mkdir(parents=True, exist_ok=True)
    (folder / TRAJECTORIES_DIR / name).write_text(trajectories.model_dump_json(indent=2), encoding="utf-8")
    (folder / SUBMISSION_FILE).write_text(submission.model_dump_json(indent=2, exclude_none=True),
                                          encoding="utf-8")
    validate_bundle(folder)
    return ExportResult(folder=folder, submission=submission, n_simulations=len(sims))
