"""Our τ² bundle validator checks what τ²'s `tau2 submit validate` checks: each defect found in the
exports of 3f91a99 (OpenAI schemas as tool_defs, one split only, rebuilt task records, rounded pass^k)
and each other check of τ²'s (trial counts, model and user names, cost) fails it; a well-formed bundle
passes. The figures are recomputed exactly as τ²'s pandas code computes them (checked bit for bit).

Bundles are built directly from τ²'s retail tasks (../shared/data/tau2, or HARNESS_OPT_TAU2_DATA).
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness_opt.export.tau2_format import ExportError
from harness_opt.export.tau2_metrics import compute_metrics, num_actions, pass_hat_k
from harness_opt.export.tau2_validate import validate_bundle
from harness_opt.suites.tau2_models import Results
from harness_opt.suites.tau2_reward import is_successful
from tests.support import tau2_bundle

SHARED = Path(
    os.environ.get("HARNESS_OPT_TAU2_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "tau2"
)
RETAIL = SHARED / "retail"


@pytest.fixture(scope="module")
def tasks() -> Any:
    if not (RETAIL / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {RETAIL} (set HARNESS_OPT_TAU2_DATA)")
    return tau2_bundle.task_set(RETAIL)


def mixed(task: str, trial: int) -> float:
    """Some tasks pass 2 of 4 trials, so pass^2 averages sixths (inexact in binary)."""
    n = int(task)
    if n % 3 == 0:
        return 1.0 if trial < 2 else 0.0
    return 0.0 if n % 7 == 0 else 1.0


def bundle(tmp_path: Path, change: Any = None, **submission: Any) -> Path:
    """A well-formed bundle; `change` then edits the written trajectories JSON (it may not load)."""
    folder = tau2_bundle.write(tmp_path, tau2_bundle.results(RETAIL, reward=mixed), **submission)
    if change is not None:
        (path,) = (folder / "trajectories").iterdir()
        raw = json.loads(path.read_text())
        change(raw)
        path.write_text(json.dumps(raw))
    return folder


def fails(folder: Path, tasks: Any, match: str) -> ExportError:
    with pytest.raises(ExportError, match=match) as info:
        validate_bundle(folder, {"retail": tasks})
    return info.value


def test_a_well_formed_bundle_passes(tmp_path: Path, tasks: Any) -> None:
    report = validate_bundle(bundle(tmp_path), {"retail": tasks})
    retail = report.submission.results.retail
    assert retail is not None and report.files == {"retail": "gpt-4.1_retail_gpt-4.1-mini_4trials.json"}
    assert len(report.trajectories["retail"].tasks) == 114 and not report.warnings
    assert retail.pass_2 != round(retail.pass_2, 2)  # unrounded, as τ² computes it


def test_openai_function_schemas_as_tool_defs_do_not_load(tmp_path: Path, tasks: Any) -> None:
    def openai_schema(raw: dict[str, Any]) -> None:
        raw["info"]["environment_info"]["tool_defs"] = {
            "calculate": {"type": "function", "function": {"name": "calculate", "parameters": {}}}
        }

    error = fails(bundle(tmp_path, openai_schema), tasks, "does not load as τ²'s Results")
    assert "tool_defs.calculate" in error.what


def test_a_bundle_of_one_split_misses_tasks(tmp_path: Path, tasks: Any) -> None:
    test_ids = {str(i) for i in json.loads((RETAIL / "split_tasks.json").read_text())["test"]}

    def only_test(raw: dict[str, Any]) -> None:
        raw["tasks"] = [t for t in raw["tasks"] if t["id"] in test_ids]
        raw["simulations"] = [s for s in raw["simulations"] if s["task_id"] in test_ids]

    fails(bundle(tmp_path, only_test), tasks, "74 tasks missing")


@pytest.mark.parametrize("dropped", ["issues", "description"])
def test_a_rebuilt_task_record_differs(tmp_path: Path, tasks: Any, dropped: str) -> None:
    def rebuild(raw: dict[str, Any]) -> None:
        record = next(t for t in raw["tasks"] if dropped in t)
        del record[dropped]

    fails(bundle(tmp_path, rebuild), tasks, "1 task records differ")


def test_a_task_with_a_missing_trial_fails(tmp_path: Path, tasks: Any) -> None:
    def drop_one(raw: dict[str, Any]) -> None:
        raw["simulations"].pop()

    fails(bundle(tmp_path, drop_one), tasks, "1 tasks do not have 4 simulations")


@pytest.mark.parametrize("field", ["pass_1", "pass_2", "pass_3", "cost"])
def test_a_rounded_figure_is_a_mismatch(tmp_path: Path, tasks: Any, field: str) -> None:
    good = validate_bundle(bundle(tmp_path / "good"), {"retail": tasks}).submission.results.retail
    value = getattr(good, field)
    rounded = round(value, 2) if value != round(value, 2) else value + 0.01
    figures = {**good.model_dump(exclude_none=True), field: rounded}
    fails(bundle(tmp_path / "bad", results={"retail": figures}), tasks, f"results.retail.{field} is")


def test_model_name_and_user_simulator_must_be_the_trajectories(tmp_path: Path, tasks: Any) -> None:
    fails(bundle(tmp_path / "a", model_name="GPT-4.1"), tasks, "model_name 'GPT-4.1' is not")
    fails(bundle(tmp_path / "b", methodology={"user_simulator": "gpt-4o"}), tasks, "user_simulator 'gpt-4o'")


def test_trajectory_files_and_the_folder_name_follow_the_convention(tmp_path: Path, tasks: Any) -> None:
    fails(bundle(tmp_path / "a", trajectory_files={"retail": "other.json"}), tasks, "do not name the files")
    folder = bundle(tmp_path / "b")
    renamed = folder.rename(folder.with_name("My Model_2026-01-02"))
    fails(renamed, tasks, "folder name")


def test_an_unknown_termination_reason_does_not_load(tmp_path: Path, tasks: Any) -> None:
    def bad_end(raw: dict[str, Any]) -> None:
        raw["simulations"][0]["termination_reason"] = "wall_clock"

    fails(bundle(tmp_path, bad_end), tasks, "termination_reason")


def _drop_nl(raw: dict[str, Any], *, marked: bool) -> None:
    sim = next(s for s in raw["simulations"] if "NL_ASSERTION" in s["reward_info"]["reward_breakdown"])
    del sim["reward_info"]["reward_breakdown"]["NL_ASSERTION"]
    if marked:
        sim["reward_info"]["info"] = {"harness_opt": {"official": False}}


def test_a_reward_that_silently_leaves_out_the_nl_judge_fails(tmp_path: Path, tasks: Any) -> None:
    fails(bundle(tmp_path, lambda raw: _drop_nl(raw, marked=False)), tasks, "leaves out \\['NL_ASSERTION'\\]")


def test_an_unjudged_reward_marked_unofficial_is_reported(tmp_path: Path, tasks: Any) -> None:
    report = validate_bundle(bundle(tmp_path, lambda raw: _drop_nl(raw, marked=True)), {"retail": tasks})
    assert report.warnings and "1 of 456 simulations have an unofficial reward" in report.warnings[0]


def test_a_reward_must_be_the_product_of_its_parts_and_a_premature_end_zero(
    tmp_path: Path, tasks: Any
) -> None:
    def inflate(raw: dict[str, Any]) -> None:
        sim = next(s for s in raw["simulations"] if s["reward_info"]["reward"] == 0.0)
        sim["reward_info"]["reward"] = 1.0

    fails(bundle(tmp_path / "a", inflate), tasks, "is not the product of its breakdown")

    def timed_out(raw: dict[str, Any]) -> None:
        sim = next(s for s in raw["simulations"] if s["reward_info"]["reward"] == 1.0)
        sim["termination_reason"] = "timeout"

    fails(bundle(tmp_path / "b", timed_out), tasks, "ended by timeout but scored 1.0")


def test_max_errors_zero_contradicts_a_conversation_with_tool_errors(tmp_path: Path, tasks: Any) -> None:
    def zero(raw: dict[str, Any]) -> None:
        raw["info"]["max_errors"] = 0

    fails(bundle(tmp_path / "a", zero), tasks, "went on after info.max_errors = 0 tool errors")


def tau2_pandas(results: Results) -> tuple[dict[int, float], float]:
    """τ²'s own computation (metrics/agent_metrics.py: get_metrics_df, get_tasks_pass_hat_k,
    prepare_dfs, compute_metrics), written in the same pandas steps, as the reference."""
    tasks = {t.id: t for t in results.tasks}
    df = pd.DataFrame(
        [
            {
                "task_id": s.task_id,
                "reward": s.reward_info.reward if s.reward_info else None,
                "agent_cost": s.agent_cost,
                "info_num_trials": results.info.num_trials,
                "task_num_actions": num_actions(tasks[s.task_id]),
            }
            for s in results.simulations
        ]
    )
    df["success"] = df.reward.apply(is_successful)
    max_k = min(df.info_num_trials.max(), min(df.task_id.value_counts()))
    columns = []
    for k in range(1, max_k + 1):
        column = df.groupby("task_id")["success"].apply(lambda d, k=k: pass_hat_k(len(d), d.sum(), k))
        column.name = f"pass^{k}"
        columns.append(column)
    table = df.groupby("task_id").first()[["task_num_actions"]].join(pd.concat(columns, axis=1))
    table["num_actions"] = df.groupby("task_id").first()["task_num_actions"]
    table = table.sort_values(by="num_actions")
    return {k: table[f"pass^{k}"].mean() for k in range(1, max_k + 1)}, df.agent_cost.mean()


def test_the_figures_are_taus_to_the_bit(tasks: Any) -> None:
    rng = random.Random(7)
    differing_sums = 0
    for _ in range(25):
        outcome = {t: [rng.random() < 0.6 for _ in range(4)] for t in tasks}
        results = tau2_bundle.results(RETAIL, reward=lambda t, trial, o=outcome: float(o[t][trial]))
        expected, cost = tau2_pandas(results)
        ours = compute_metrics(results)
        assert ours.pass_hat_ks == expected and ours.avg_agent_cost == cost  # exact, not approx
        naive = sum(math.comb(sum(v), 2) / 6 for v in outcome.values()) / len(outcome)
        differing_sums += naive != expected[2]
    assert differing_sums > 0  # a plain sum differs in the last bits: the order really matters
