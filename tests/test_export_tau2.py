"""`harness-opt export --format tau2` end to end: the seed τ²-retail harness, in the sandbox, on all 114
retail tasks with 4 trials, the agent model replaying gold actions, a scripted customer and a scripted
NL judge. The bundle must pass our validator (which checks what τ²'s does); its records must be τ²'s
(ToolSignature tool_defs, raw task records, τ²'s ends and max_errors, unrounded pass^k); its rewards
must include the judge's verdicts; and 4 trials must have made 4 separate customer and judge calls.

Some rollouts fail on purpose, varying by trial: for every fifth task the agent leaves out the write
action on the customer's odd visits (2 of 4 trials fail: pass^2 averages sixths), and the judge finds
an assertion unmet on its first judgement of every seventh task (1 of 4 trials fails).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from harness_opt.evaluate.passk import pass_k_table
from harness_opt.export import ExportConfig, ExportError, Submitter, export_tau2, validate_bundle
from harness_opt.export.tau2_metrics import compute_metrics
from harness_opt.export.tau2_validate import load_task_set
from harness_opt.ledger import Ledger
from harness_opt.suites.loader import load_suite
from harness_opt.suites.tau2_models import Results
from harness_opt.testing import scripted_model
from tests.support import tau2_scripts

pytestmark = pytest.mark.slow  # 456 sandboxed rollouts: about a minute on two cores

REPO = Path(__file__).resolve().parents[1]
SUITE_DIR = REPO / "tasks" / "tau2-retail"
SEED = REPO / "harnesses" / "tau2-retail" / "v0001"
DATA = Path(os.environ.get("HARNESS_OPT_TAU2_DATA") or REPO.parent / "shared" / "data" / "tau2")
SUBMITTER = Submitter(
    model_organization="Test Org", submitting_organization="Harness Lab", contact_email="lab@example.com"
)
TRIALS = 4


def skip_write(task: str, visit: int) -> bool:
    return int(task) % 5 == 0 and visit % 2 == 1


def unmet(task: str, nth: int) -> bool:
    return task.isdigit() and int(task) % 7 == 3 and nth == 0


class Run:
    """The export and what its scripted participants were asked."""

    def __init__(self, result: Any, agent: Any, user: Any, judge: Any, home: Path) -> None:
        self.result, self.agent, self.user, self.judge, self.home = result, agent, user, judge, home
        path = result.folder / "trajectories" / result.submission.trajectory_files["retail"]
        self.raw = json.loads(path.read_text())
        self.trajectories = Results.model_validate(self.raw)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not (DATA / "retail" / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {DATA} (set HARNESS_OPT_TAU2_DATA)")
    home = tmp_path_factory.mktemp("export-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARNESS_OPT_HOME", str(home))
        env.setenv("HARNESS_OPT_TRACES", str(home / "traces"))
        probe = load_suite(SUITE_DIR, data=str(DATA))
        with (
            scripted_model("gold", tau2_scripts.gold_agent(probe, skip_write), cost_per_token=1e-6) as agent,
            scripted_model("customer", tau2_scripts.customer(probe), cost_per_token=1e-5) as user,
            scripted_model("judge", tau2_scripts.judge(unmet), cost_per_token=1e-4) as judge,
        ):
            suite = load_suite(SUITE_DIR, data=str(DATA), user_model=user.model, judge_model=judge.model)
            result = export_tau2(
                SEED,
                suite,
                SUBMITTER,
                ExportConfig(trials=TRIALS, model=agent.model, out_dir=home / "leaderboards"),
                today=date(2026, 1, 2),
            )
            yield Run(result, agent, user, judge, home)


def test_the_bundle_passes_our_validator_under_taus_names(run: Run) -> None:
    folder = run.result.folder
    assert folder.name == "scripted-gold_test-org_2026-01-02"  # <model>_<organization>_<date>
    assert run.result.submission.trajectory_files == {
        "retail": "scripted-gold_tau2-retail-v0001_retail_scripted-customer_4trials.json"
    }
    tasks = load_task_set(DATA / "retail" / "tasks.json", DATA / "retail" / "split_tasks.json")
    report = validate_bundle(folder, {"retail": tasks})
    assert not report.warnings and run.result.n_simulations == 114 * TRIALS
    submission = json.loads((folder / "submission.json").read_text())
    assert submission["model_name"] == "scripted/gold"
    assert submission["methodology"]["user_simulator"] == "scripted/customer"
    assert submission["methodology"]["verification"]["omitted_questions"] is False
    assert "NL assertions judged by scripted/judge" in submission["methodology"]["notes"]


def test_every_retail_task_is_in_the_bundle_as_taus_raw_record(run: Run) -> None:
    raw_tasks = json.loads((DATA / "retail" / "tasks.json").read_text())
    assert run.raw["tasks"] == raw_tasks  # copied field for field (issues and initial_state included)
    assert sum("issues" in t for t in run.raw["tasks"]) == 3
    assert Counter(s.task_id for s in run.trajectories.simulations) == {t["id"]: TRIALS for t in raw_tasks}


def test_run_information_is_in_taus_schema(run: Run) -> None:
    info = run.raw["info"]
    assert info["num_trials"] == TRIALS and info["max_errors"] == 10 and info["max_steps"] == 130
    signature = info["environment_info"]["tool_defs"]["cancel_pending_order"]
    assert set(signature) == {"name", "doc", "params"} and signature["name"] == "cancel_pending_order"
    assert signature["params"]["required"] == ["order_id", "reason"]
    assert info["user_info"]["llm"] == "scripted/customer" and info["agent_info"]["llm"] == "scripted/gold"


def test_rewards_multiply_the_judges_verdict_and_show_each_component(run: Run) -> None:
    sims = run.trajectories.simulations
    assert {s.termination_reason for s in sims} == {"user_stop"}
    judged = [s for s in sims if s.reward_info.nl_assertions]
    assert judged and all(set(s.reward_info.reward_breakdown) == {"DB", "NL_ASSERTION"} for s in judged)
    unmet_sims = [s for s in judged if not all(c.met for c in s.reward_info.nl_assertions)]
    assert unmet_sims and all(s.reward_info.reward == 0.0 for s in unmet_sims)
    assert any(s.reward_info.db_check.db_match for s in unmet_sims)  # failed by the judge alone
    for sim in judged[:3]:
        figures = sim.info["harness_opt"]["judge"]
        assert figures["model"] == "scripted/judge" and figures["cost_usd"] > 0
        assert sim.agent_cost is not None and sim.agent_cost < figures["cost_usd"]  # judge cost kept apart
    first = sims[0]
    assert first.messages[0].content == "Hi! How can I help you today?" and first.messages[1].role == "user"


def test_k_trials_made_k_calls_for_the_customer_and_the_judge(run: Run) -> None:
    rollouts = 114 * TRIALS
    assert len(run.user.calls) == 2 * rollouts  # greeting + the agent's final message, every trial
    with_assertions = sum(
        1
        for t in json.loads((DATA / "retail" / "tasks.json").read_text())
        if t["evaluation_criteria"].get("nl_assertions")
    )
    assert len(run.judge.calls) == TRIALS * with_assertions
    sims = run.trajectories.simulations
    visits = {s.messages[1].content for s in sims if s.task_id == "0"}
    assert visits == {f"I am calling about task 0 (visit {v})." for v in range(TRIALS)}  # 4 distinct replies


def test_pass_k_is_recomputed_unrounded_and_the_ledger_agrees(run: Run) -> None:
    retail = run.result.submission.results.retail
    metrics = compute_metrics(run.trajectories)
    assert retail.pass_2 == metrics.pass_hat_ks[2] * 100 and retail.pass_2 != round(retail.pass_2, 2)
    assert retail.pass_1 > retail.pass_2 > retail.pass_3 >= retail.pass_4  # independent trials differ
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARNESS_OPT_HOME", str(run.home))
        rows = Ledger().rollouts(model="scripted/gold")
    by_ledger = pass_k_table(rows, max_k=TRIALS)  # the ledger's scores are τ²'s rewards
    assert [by_ledger[k] * 100 for k in range(1, 5)] == pytest.approx(
        [retail.pass_1, retail.pass_2, retail.pass_3, retail.pass_4]
    )


def test_a_second_export_reuses_the_ledger_and_the_cli_prints_the_figures(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness_opt.cli import export_cmd

    app = typer.Typer()
    export_cmd.register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the app into `export`
        pass

    monkeypatch.setenv("HARNESS_OPT_HOME", str(run.home))
    monkeypatch.setenv("HARNESS_OPT_TRACES", str(run.home / "traces"))
    config = run.home / "submit.toml"
    config.write_text(
        '[submission]\nmodel_organization = "Cfg Org"\nsubmitting_organization = "Cfg Lab"\n'
        'contact_email = "cfg@example.com"\n'
    )
    before = (len(run.agent.calls), len(run.user.calls), len(run.judge.calls))
    probe = load_suite(SUITE_DIR, data=str(DATA))
    with (
        scripted_model("gold", tau2_scripts.gold_agent(probe, skip_write)) as agent,
        scripted_model("customer", tau2_scripts.customer(probe)) as user,
        scripted_model("judge", tau2_scripts.judge(unmet)) as judge,
    ):
        args = [
            "export",
            str(SEED),
            "--suite",
            str(SUITE_DIR),
            "--data",
            str(DATA),
            "--format",
            "tau2",
            "--model",
            agent.model,
            "--user-model",
            user.model,
            "--judge-model",
            judge.model,
            "--config",
            str(config),
            "--out",
            str(run.home / "cli"),
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (len(agent.calls), len(user.calls), len(judge.calls)) == (0, 0, 0)  # all 456 reused
        wrong_name = CliRunner().invoke(app, [*args, "--model-name", "GPT-5"])
    assert before[0] > 0
    retail = run.result.submission.results.retail
    assert f"pass^2 {retail.pass_2:.2f}%" in result.output and "validated" in result.output
    (folder,) = (run.home / "cli").iterdir()
    assert folder.name == f"scripted-gold_cfg-org_{datetime.now(UTC).date().isoformat()}"
    assert isinstance(wrong_name.exception, ExportError) and "agent's model" in wrong_name.exception.message
