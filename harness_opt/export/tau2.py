"""`export_tau2`: a taubench.com submission bundle of one harness version on τ²-bench retail.

A submission runs the final harness on every task of the domain (τ²'s `base` split: all 114 retail
tasks, which our suite spreads over train, val and test) with k trials each (4 is τ²'s standard).
The version is evaluated on each split through the evaluator, so rollouts already in the ledger are
reused and nothing is computed twice. Each rollout's trace becomes one τ² simulation
(`tau2_convert`); the task records are τ²'s, copied from the data; the figures are recomputed from
the trajectories exactly as τ²'s validator recomputes them (`tau2_metrics`); and the bundle is
checked with `tau2_validate.validate_bundle` before this returns.

Rollouts that were scored without the NL judge this export asks for (the ledger's rollouts may come
from an `eval` with another `--judge-model`) are judged now, from the conversation in their trace.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.export.tau2_convert import reward_record, simulation, trace_messages
from harness_opt.export.tau2_format import (
    SUBMISSION_FILE,
    TRAJECTORIES_DIR,
    ContactInfo,
    ExportError,
    Methodology,
    Reference,
    Results,
    Submission,
    Verification,
)
from harness_opt.export.tau2_metrics import compute_metrics, leaderboard_figures
from harness_opt.export.tau2_validate import BundleReport, validate_bundle
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.llm.cache import rollout_scope
from harness_opt.llm.client import LLMConfig
from harness_opt.records import Rollout, is_infra_error
from harness_opt.suites import tau2_reward
from harness_opt.suites.base import Suite
from harness_opt.suites.nl_judge import NLAssertionJudge, reward_part
from harness_opt.suites.tau2_models import (
    AgentInfo,
    EnvironmentInfo,
    EvaluationCriteria,
    Info,
    RewardInfo,
    SimulationRun,
    Task,
    ToolSignature,
    UserInfo,
)
from harness_opt.suites.tau2_models import Results as Tau2Results

DOMAIN = "retail"
USER_IMPLEMENTATION = "harness_opt.suites.usersim.UserSimulator"

ProgressFn = Callable[[str, int, int], None]
"""Called as (split, done, total) while the version is evaluated."""


class Submitter(BaseModel):
    """Facts only the user knows. From CLI options or a TOML file; a missing one is an error."""

    model_name: str | None = Field(
        default=None, description="Must be the agent's model (τ²'s validator compares them); default: it."
    )
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
            name for name in ("model_organization", "submitting_organization") if not getattr(self, name)
        ]
        if not (self.contact_email or self.contact_github):
            missing.append("contact_email (or contact_github)")
        if missing:
            flags = ", ".join(
                "--" + m.split(" ")[0].replace("_", "-").replace("contact-email", "contact") for m in missing
            )
            raise ExportError(
                f"the submission needs {', '.join(missing)}",
                where="harness-opt export",
                fix=f"pass {flags}, or put them under [submission] in a --config TOML file",
            )


def load_submitter(path: Path) -> Submitter:
    """Read `[submission]` (or top-level keys) of a TOML file: model_organization,
    submitting_organization, contact_email, contact_name, contact_github, [[submission.references]]."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(
            "config file not found", where=str(path), fix="pass an existing TOML file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ExportError(f"invalid TOML: {exc}", where=str(path), fix="fix the TOML syntax") from None
    table = raw.get("submission", raw)
    try:
        return Submitter.model_validate(table)
    except ValueError as exc:
        raise ExportError(f"bad [submission] table: {exc}", where=str(path)) from None


class ExportConfig(BaseModel):
    """How to build the bundle. Every field is also an option of `harness-opt export`."""

    trials: int = Field(default=4, ge=1, description="Trials per task (τ²'s standard is 4: pass^1..4).")
    model: str | None = Field(default=None, description="Agent model; default from harness.toml.")
    judge_model: str | None = Field(
        default=None,
        description="NL-assertion judge: a model, 'agent' (the agent's model) or 'off' (unofficial); "
        "default: the suite's setting (the agent's model).",
    )
    concurrency: int = Field(default=4, ge=1, description="Rollouts in flight.")
    isolation: Literal["auto", "bwrap", "unshare", "none"] = Field(
        default="auto", description="Sandbox: auto, bwrap, unshare or none."
    )
    out_dir: Path = Field(default=Path("leaderboards"), description="Folder the bundle goes under.")
    optimized_on: str | None = Field(
        default=None, description="Which split(s) the harness was optimized on; default from its lineage."
    )
    llm: LLMConfig = Field(
        default_factory=LLMConfig, description="How the agent's model calls are made (endpoint, key env var)."
    )


class ExportResult(BaseModel):
    folder: Path
    submission: Submission
    n_simulations: int
    warnings: list[str] = Field(default_factory=list)


def slug(text: str) -> str:
    """τ²'s `_slugify` of a submission folder part: lower case; spaces, slashes and dots to '-'."""
    return text.lower().replace(" ", "-").replace("/", "-").replace(".", "-")


def file_slug(text: str) -> str:
    """A file-name part as τ²'s trajectory files spell models (`gpt-5.2`): lower case, dots kept."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-")


def tool_signatures(tools: list[dict[str, Any]]) -> dict[str, ToolSignature]:
    """τ²'s ToolSignature of each tool the harness offers its model (from tools.json)."""
    out = {}
    for tool in tools:
        function = tool.get("function") or {}
        if "name" in function:
            out[function["name"]] = ToolSignature(
                name=function["name"],
                doc=str(function.get("description") or ""),
                params=function.get("parameters"),
            )
    return out


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _optimized_on(version: HarnessVersion) -> str:
    if (version.manifest.harness.proposer or "seed") in ("seed", "human"):
        return "not optimized: a hand-written seed harness"
    return (
        "optimized by harness-opt: proposers read traces of the train split only; candidates were "
        "accepted on the val split"
    )


def tau2_suite(suite: Suite) -> Any:
    """`suite` if it is τ²-bench retail (what a bundle is for), else an `ExportError` (before any
    evaluation is spent on it)."""
    if not (hasattr(suite, "tau2_tasks") and hasattr(suite, "judge_model_for")):
        raise ExportError(
            f"suite {suite.name} is not τ²-bench retail",
            where="--suite",
            fix="export --format tau2 needs --suite tasks/tau2-retail",
        )
    return suite


async def _rejudge(
    suite: Any, model: str, rollout: Rollout, record: RewardInfo, trace: Any, criteria: EvaluationCriteria
) -> RewardInfo:
    """Judge the NL assertions of a finished rollout from its trace, in its own cache scope."""
    with rollout_scope(rollout.key):
        verdict = await NLAssertionJudge(model, suite.llm_client().complete).judge(
            trace_messages(trace), criteria.nl_assertions or []
        )
    return tau2_reward.with_nl(record, reward_part(verdict, when="at export"))


def _simulations(suite: Any, results: list[EvalResult], tasks: dict[str, Task]) -> list[SimulationRun]:
    pairs = []
    for result in results:
        for rollout in result.rollouts:
            if not rollout.trace_ref:
                raise ExportError("a rollout has no trace", fix="re-run with a fresh ledger")
            pairs.append((result.model, rollout, read_trace(rollout.trace_ref)))
    jobs = {}
    for i, (model, rollout, trace) in enumerate(pairs):
        record = reward_record(trace.feedback)
        task = tasks[rollout.task_id]
        criteria = task.evaluation_criteria or EvaluationCriteria()
        judge = suite.judge_model_for(model)
        if (
            record is not None
            and not trace.error
            and judge is not None
            and tau2_reward.needs_judge(record, criteria)
            and tau2_reward.judged_by(record) != judge
        ):
            jobs[i] = _rejudge(suite, judge, rollout, record, trace, criteria)

    async def run_all() -> dict[int, RewardInfo]:
        done = await asyncio.gather(*jobs.values())
        return dict(zip(jobs, done, strict=True))

    rejudged = asyncio.run(run_all()) if jobs else {}
    sims = [
        simulation(r, t, max_errors=suite.max_errors, reward=rejudged.get(i))
        for i, (_, r, t) in enumerate(pairs)
    ]
    order = {task_id: n for n, task_id in enumerate(tasks)}
    return sorted(sims, key=lambda s: (order[s.task_id], s.trial or 0))


def export_tau2(
    version: HarnessVersion | Path | str,
    suite: Suite,
    submitter: Submitter,
    config: ExportConfig | None = None,
    *,
    ledger: Ledger | None = None,
    today: date | None = None,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Evaluate (or reuse) `version` on every retail task with `config.trials` trials and write
    `<out_dir>/<model>_<organization>_<date>/` with submission.json and trajectories/, validated."""
    config = config or ExportConfig()
    submitter.require()
    tau2 = tau2_suite(suite)
    if config.judge_model is not None:
        tau2 = tau2.with_judge(config.judge_model)
    version = version if isinstance(version, HarnessVersion) else HarnessVersion.load(version)
    model = config.model or version.manifest.model.name
    if submitter.model_name not in (None, model):
        raise ExportError(
            f"model_name {submitter.model_name!r} is not the agent's model {model!r}",
            where="--model-name",
            fix="leave --model-name out: τ²'s validator requires the agent's model",
        )
    tasks = {str(t["id"]): Task.model_validate(t) for t in tau2.tau2_tasks()}
    results = []
    for split in tau2.split_names():

        def step(done: int, total: int, _row: object, split: str = split) -> None:
            if progress:
                progress(split, done, total)

        results.append(
            evaluate(
                version,
                tau2,
                EvalConfig(
                    split=split,
                    trials=config.trials,
                    model=model,
                    concurrency=config.concurrency,
                    isolation=config.isolation,
                    allow_test=True,
                    llm=config.llm,
                ),
                ledger=ledger,
                progress=step,
            )
        )
    lost = [r for res in results for r in res.rollouts if is_infra_error(r.error)]
    if lost:  # a submission is every task's real outcome: an outage is no outcome
        kinds = ", ".join(sorted({r.error or "" for r in lost}))
        raise ExportError(
            f"{len(lost)} rollouts failed for infrastructure reasons ({kinds}): no bundle is written",
            where=f"{version.label} on {tau2.name}",
            fix="re-run the same export when the model is reachable: finished rollouts are reused and "
            "only these are run again",
        )
    covered = {r.task_id for res in results for r in res.rollouts}
    if covered != set(tasks):
        raise ExportError(
            f"the suite's splits cover {len(covered)} of τ²'s {len(tasks)} retail tasks",
            where=str(tau2.path),
            fix="use τ²'s tasks.json and split_tasks.json unchanged",
        )
    sims = _simulations(tau2, results, tasks)
    trajectories = Tau2Results(
        timestamp=datetime.now(UTC).isoformat(),
        info=Info(
            git_commit=_git_commit(),
            num_trials=config.trials,
            max_steps=version.manifest.runtime.limits.max_steps,
            max_errors=tau2.max_errors,
            user_info=UserInfo(
                implementation=USER_IMPLEMENTATION,
                llm=tau2.user_model,
                llm_args={"temperature": 0},
                global_simulation_guidelines=tau2.guidelines,
            ),
            agent_info=AgentInfo(
                implementation=f"harness-opt {version.label} ({version.hash[:12]})",
                llm=model,
                llm_args=dict(version.manifest.model.params),
            ),
            environment_info=EnvironmentInfo(
                domain_name=DOMAIN, policy=str(tau2.policy), tool_defs=tool_signatures(version.tools)
            ),
        ),
        tasks=list(tasks.values()),
        simulations=sims,
    )
    figures = leaderboard_figures(compute_metrics(trajectories))
    day = today or datetime.now(UTC).date()
    submission = Submission(
        model_name=model,
        model_organization=submitter.model_organization or "",
        submitting_organization=submitter.submitting_organization or "",
        submission_date=day,
        submission_type="custom",  # the harness replaces τ²'s agent scaffold
        contact_info=ContactInfo(
            email=submitter.contact_email, name=submitter.contact_name, github=submitter.contact_github
        ),
        results=Results(retail=figures),
        trajectories_available=True,
        references=submitter.references or None,
        methodology=Methodology(
            evaluation_date=day,
            user_simulator=tau2.user_model,
            notes=_notes(version, config, tau2, model, sims),
            verification=Verification(
                modified_prompts=True,
                omitted_questions=False,
                details=f"All {len(tasks)} retail tasks, {config.trials} trials each; the agent scaffold is "
                f"harness-opt harness {version.label}.",
            ),
        ),
    )
    folder = Path(config.out_dir) / f"{slug(model)}_{slug(submission.model_organization)}_{day.isoformat()}"
    name = (
        f"{file_slug(model)}_{file_slug(version.name)}-v{version.number:04d}_{DOMAIN}_"
        f"{file_slug(tau2.user_model)}_{config.trials}trials.json"
    )
    submission.trajectory_files = {DOMAIN: name}
    (folder / TRAJECTORIES_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (folder / TRAJECTORIES_DIR).glob("*.json"):
        stale.unlink()  # a re-export with other settings must not leave a second retail file behind
    (folder / TRAJECTORIES_DIR / name).write_text(
        trajectories.model_dump_json(indent=2, exclude_unset=True), encoding="utf-8"
    )
    (folder / SUBMISSION_FILE).write_text(
        submission.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8"
    )
    report: BundleReport = validate_bundle(folder, {DOMAIN: tasks})
    return ExportResult(
        folder=folder, submission=submission, n_simulations=len(sims), warnings=report.warnings
    )


def _notes(
    version: HarnessVersion, config: ExportConfig, tau2: Any, model: str, sims: list[SimulationRun]
) -> str:
    user_cost = sum(s.user_cost or 0.0 for s in sims)
    judges = [((s.info or {}).get("harness_opt") or {}).get("judge") or {} for s in sims]
    judge_cost = sum(float(j.get("cost_usd") or 0.0) for j in judges)
    judge = tau2.judge_model_for(model)
    unofficial = sum(1 for s in sims if s.reward_info and not tau2_reward.is_official(s.reward_info))
    parts = [
        f"Harness {version.label} (content hash {version.hash[:12]}), {_optimized_on(version)}.",
        config.optimized_on + "." if config.optimized_on else "",
        f"All {len({s.task_id for s in sims})} retail tasks, {config.trials} trials each, run with "
        "harness-opt's reimplementation of the tau2 retail environment, user simulator and evaluator.",
        f"NL assertions judged by {judge} with tau2's judge prompt."
        if judge
        else "UNOFFICIAL: NL assertions were not judged (no judge model); rewards leave NL_ASSERTION out.",
        f"{unofficial} simulations have an unofficial reward." if unofficial and judge else "",
        f"User simulator cost ${user_cost:.4f}, judge cost ${judge_cost:.4f} in total "
        "(not in the agent cost).",
    ]
    return " ".join(p for p in parts if p)
