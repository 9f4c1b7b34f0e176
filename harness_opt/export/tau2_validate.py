"""Check a τ² leaderboard bundle as τ²'s own `tau2 submit validate` does, before anyone uploads it.

τ²'s validation (scripts/leaderboard/prepare_submission.py, verify_trajectories*.py at a2c0247):
submission.json parses as its `Submission`; every trajectories file loads as its `Results`; each
domain appears once and all files share one agent model and one user simulator with the same
arguments; each file holds exactly the domain's `base` task set, every task record equal to the
domain's own (compared by hash of the parsed record), and `info.num_trials` simulations per task;
and the metrics: model name = the agent's model, user simulator = the trajectories' user model,
pass^1..4 and cost equal (`!=`, no tolerance) to its recomputation. τ² prints a warning for a
metric mismatch; here every finding is an error, so a bundle that passes shows neither.

We also check what τ²'s maintainers check by hand: the folder name convention, and that
`trajectory_files` names the files that are there; and what a re-grading would find: each reward is
τ²'s combination of its components over the task's basis, and no conversation went on past
`max_errors` tool errors. Simulations whose reward is marked unofficial (NL assertions deliberately
left unjudged) are reported as warnings: the bundle is well-formed, but not τ²'s reward.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from harness_opt.export.tau2_format import SUBMISSION_FILE, TRAJECTORIES_DIR, ExportError, Submission
from harness_opt.export.tau2_metrics import compute_metrics, leaderboard_figures
from harness_opt.suites.tau2_models import Results, Task, ToolMessage
from harness_opt.suites.tau2_reward import EVALUATED_ENDS, is_official

FOLDER_NAME = re.compile(r"^[a-z0-9_-]+_[a-z0-9_-]+_(\d{4}-\d{2}-\d{2})$")


class BundleReport(BaseModel):
    """A bundle that passed: what was read, and what is worth saying though not wrong."""

    submission: Submission
    trajectories: dict[str, Results] = Field(description="Domain -> its trajectories file, parsed.")
    files: dict[str, str] = Field(description="Domain -> file name under trajectories/.")
    warnings: list[str] = Field(default_factory=list)


def _load(path: Path, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ExportError("file missing", where=str(path), fix="re-run harness-opt export") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        what = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        raise ExportError(
            f"does not load as τ²'s {model.__name__} ({exc.error_count()} errors, first {what})",
            where=str(path),
            fix="re-run harness-opt export",
        ) from None
    except ValueError as exc:
        raise ExportError(f"not JSON: {exc}", where=str(path), fix="re-run harness-opt export") from None


def _hash_form(task: Task) -> str:
    """τ²'s `get_pydantic_hash` input: the parsed record with every field, keys sorted."""
    return json.dumps(task.model_dump(mode="json"), sort_keys=True)


def load_task_set(tasks_file: Path, split_file: Path | None = None) -> dict[str, Task]:
    """A domain's `base` tasks (τ²'s registry loader): tasks.json filtered by split_tasks.json."""
    raw = json.loads(Path(tasks_file).read_text(encoding="utf-8"))
    tasks = {str(t["id"]): Task.model_validate(t) for t in raw}
    if split_file is not None and Path(split_file).is_file():
        base = json.loads(Path(split_file).read_text(encoding="utf-8")).get("base")
        if base is not None:
            wanted = {str(i) for i in base}
            tasks = {i: t for i, t in tasks.items() if i in wanted}
    return tasks


def check_tasks(results: Results, domain_tasks: dict[str, Task]) -> list[str]:
    """τ²'s `check_tasks`: the results hold exactly the domain's tasks, each record unchanged."""
    ours = {t.id: t for t in results.tasks}
    problems = []
    missing, extra = sorted(set(domain_tasks) - set(ours)), sorted(set(ours) - set(domain_tasks))
    if missing:
        problems.append(f"{len(missing)} tasks missing, e.g. {missing[:5]} (a submission runs every task)")
    if extra:
        problems.append(f"{len(extra)} tasks not in the domain's task set: {extra[:5]}")
    changed = sorted(
        i for i in set(ours) & set(domain_tasks) if _hash_form(ours[i]) != _hash_form(domain_tasks[i])
    )
    if changed:
        problems.append(
            f"{len(changed)} task records differ from the domain's, e.g. {changed[:5]} "
            "(records must be copied, not rebuilt)"
        )
    return problems


def check_num_trials(results: Results) -> list[str]:
    """τ²'s `check_num_trials`: every task has exactly `info.num_trials` simulations."""
    counts = Counter(s.task_id for s in results.simulations)
    wrong = {
        t.id: counts.get(t.id, 0) for t in results.tasks if counts.get(t.id, 0) != results.info.num_trials
    }
    if not wrong:
        return []
    shown = ", ".join(f"{k}: {v}" for k, v in list(wrong.items())[:5])
    return [f"{len(wrong)} tasks do not have {results.info.num_trials} simulations ({shown})"]


def check_rewards(results: Results) -> list[str]:
    """Each reward is τ²'s combination of its components (τ² does not re-check this; a bundle that
    silently leaves out a component, NL assertions say, would otherwise pass): an end other than a
    stop scores 0; a stop is scored over the task's whole basis, the reward being the product of the
    breakdown. A record marked unofficial (a component deliberately not judged) is reported apart."""
    tasks = {t.id: t for t in results.tasks}
    wrong: list[str] = []
    for sim in results.simulations:
        info = sim.reward_info
        task = tasks.get(sim.task_id)
        if info is None or task is None or task.evaluation_criteria is None:
            continue
        if sim.termination_reason not in EVALUATED_ENDS:
            if info.reward != 0.0:
                wrong.append(f"{sim.id}: ended by {sim.termination_reason} but scored {info.reward}")
            continue
        criteria = task.evaluation_criteria
        basis = set(criteria.reward_basis)
        if criteria.actions is None and criteria.env_assertions is None:
            basis -= {"DB", "ENV_ASSERTION"}  # τ² gives the environment part no breakdown then
        breakdown = info.reward_breakdown or {}
        missing = basis - set(breakdown)
        if missing and is_official(info):
            wrong.append(f"{sim.id}: reward leaves out {sorted(missing)} of the task's basis")
        product = math.prod(breakdown.values())
        if info.reward != product:
            wrong.append(f"{sim.id}: reward {info.reward} is not the product of its breakdown ({product})")
    if not wrong:
        return []
    return [f"{len(wrong)} rewards are not τ²'s combination of their parts, e.g. {'; '.join(wrong[:3])}"]


def check_max_errors(results: Results) -> list[str]:
    """A conversation that went on after `info.max_errors` tool errors was not run under that limit."""
    limit = results.info.max_errors
    over = [
        s.id
        for s in results.simulations
        if s.termination_reason != "too_many_errors"
        and sum(1 for m in s.messages or [] if isinstance(m, ToolMessage) and m.error) >= limit
    ]
    if not over:
        return []
    return [f"{len(over)} simulations went on after info.max_errors = {limit} tool errors, e.g. {over[:3]}"]


def check_trajectory_set(files: dict[str, Results]) -> list[str]:
    """τ²'s `validate_submission_traj_set`: one agent and one user simulator for all domains."""
    setups = {
        json.dumps(
            {
                "llm_agent": r.info.agent_info.llm,
                "llm_args_agent": r.info.agent_info.llm_args,
                "llm_user": r.info.user_info.llm,
                "llm_args_user": r.info.user_info.llm_args,
            },
            sort_keys=True,
            default=str,
        )
        for r in files.values()
    }
    return [] if len(setups) <= 1 else [f"the domains use different agent or user setups: {sorted(setups)}"]


def check_metrics(submission: Submission, files: dict[str, Results]) -> list[str]:
    """τ²'s `validate_submission_metrics`, every warning an error here."""
    problems = []
    for domain, results in files.items():
        agent, user = results.info.agent_info.llm, results.info.user_info.llm
        if submission.model_name != agent:
            problems.append(
                f"model_name {submission.model_name!r} is not the trajectories' agent model {agent!r}"
            )
        if submission.methodology and submission.methodology.user_simulator != user:
            problems.append(
                f"methodology.user_simulator {submission.methodology.user_simulator!r} is not the "
                f"trajectories' user model {user!r}"
            )
        stated = submission.results.domain(domain)
        if stated is None:
            problems.append(f"results.{domain} is missing though trajectories for {domain} are given")
            continue
        computed = leaderboard_figures(compute_metrics(results))
        for field in ("pass_1", "pass_2", "pass_3", "pass_4", "cost"):
            value = getattr(computed, field)
            if getattr(stated, field) != value:
                problems.append(
                    f"results.{domain}.{field} is {getattr(stated, field)!r}; the trajectories give {value!r}"
                )
    return problems


def validate_bundle(folder: Path, domain_tasks: dict[str, dict[str, Task]] | None = None) -> BundleReport:
    """Validate the bundle in `folder`; raises `ExportError` listing every problem found.

    `domain_tasks`: per domain, its `base` task set (`load_task_set`); a domain left out is not
    checked for task coverage, which τ² always checks, so the exporter always passes it."""
    folder = Path(folder)
    submission: Submission = _load(folder / SUBMISSION_FILE, Submission)
    traj_dir = folder / TRAJECTORIES_DIR
    if not traj_dir.is_dir():
        raise ExportError("no trajectories/ folder", where=str(folder), fix="re-run harness-opt export")
    problems: list[str] = []
    files: dict[str, Results] = {}
    names: dict[str, str] = {}
    computable = True  # τ²'s metrics fail on a simulation whose task is not listed
    for path in sorted(p for p in traj_dir.rglob("*") if p.is_file()):
        if path.suffix != ".json":
            continue
        results: Results = _load(path, Results)
        domain = results.info.environment_info.domain_name
        if domain in files:
            problems.append(f"domain {domain} appears in two trajectories files")
        files[domain], names[domain] = results, path.relative_to(traj_dir).as_posix()
        label = f"{names[domain]}: "
        if domain_tasks is not None and domain in domain_tasks:
            problems += [label + p for p in check_tasks(results, domain_tasks[domain])]
        problems += [label + p for p in check_num_trials(results)]
        problems += [label + p for p in check_rewards(results) + check_max_errors(results)]
        stray = sorted({s.task_id for s in results.simulations} - {t.id for t in results.tasks})
        if stray:
            computable = False
            problems.append(label + f"simulations of tasks not in its tasks: {stray[:5]}")
    if not files:
        problems.append("trajectories/ holds no trajectories file")
    problems += check_trajectory_set(files)
    if computable:
        problems += check_metrics(submission, files)
    if submission.trajectory_files is not None and submission.trajectory_files != names:
        problems.append(f"trajectory_files {submission.trajectory_files} do not name the files there {names}")
    match = FOLDER_NAME.match(folder.name)
    if match is None or match[1] != submission.submission_date.isoformat():
        problems.append(
            f"folder name {folder.name!r} is not <model>_<organization>_<submission date> in "
            "lower case (τ²'s convention)"
        )
    if problems:
        raise ExportError(
            f"{len(problems)} problem(s): " + "; ".join(problems),
            where=str(folder),
            fix="re-run harness-opt export (never edit a bundle by hand)",
        )
    warnings = []
    for domain, results in files.items():
        unofficial = [s for s in results.simulations if s.reward_info and not is_official(s.reward_info)]
        if unofficial:
            warnings.append(
                f"{domain}: {len(unofficial)} of {len(results.simulations)} simulations have an "
                "unofficial reward (NL assertions not judged, or the judge failed)"
            )
    return BundleReport(submission=submission, trajectories=files, files=names, warnings=warnings)
