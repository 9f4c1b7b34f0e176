"""The τ² leaderboard bundle: submission.json and trajectories, their validation, and the CLI.

Rollouts come from the chatty fixture suite (a simulated user, one tool, a communicate check), run by
the seed τ²-retail agent loop with scripted models, so every figure in the bundle is traceable.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from harness_opt.export import (
    ExportConfig,
    ExportError,
    Submission,
    Submitter,
    Tau2Results,
    export_tau2,
    validate_bundle,
)
from harness_opt.export.tau2 import reward_info
from harness_opt.records import Rollout
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.test_say import CHATTY, customer, make_version

SUBMITTER = Submitter(
    model_name="chatter-scripted",
    model_organization="Test Org",
    submitting_organization="Harness Lab",
    contact_email="lab@example.com",
)


def agent_that_only_knows_chairs(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> Any:
    last = messages[-1]
    if last["role"] == "tool":
        return f"The price is {last['content']}."
    match = re.search(r"price of the (\w+)", last.get("content") or "")
    if match and match[1] == "chair":
        return {"tool_calls": [{"name": "get_price", "arguments": {"item": "chair"}}]}
    return "Sorry, I cannot help with that."


def export(tmp_path: Path, **overrides: Any):
    version = make_version(tmp_path, max_steps=40)
    with (
        scripted_model("chair-agent", agent_that_only_knows_chairs, cost_per_token=1e-6) as agent,
        scripted_model("shopper", customer(), cost_per_token=1e-5) as user,
    ):
        suite = load_suite(CHATTY, user_model=user.model, max_turns=3)
        config = ExportConfig(split="val", trials=2, model=agent.model, out_dir=tmp_path / "leaderboards")
        result = export_tau2(version, suite, SUBMITTER, config.model_copy(update=overrides),
                             today=date(2026, 1, 2))
        calls = len(agent.calls) + len(user.calls)
    return result, calls


@pytest.fixture
def bundle(tmp_path: Path):
    result, _ = export(tmp_path)
    return result


def test_bundle_layout_fields_and_figures(bundle) -> None:
    folder = bundle.folder
    assert folder.name == "chatter-v0001-2026-01-02" and folder.parent.name == "leaderboards"
    raw = json.loads((folder / "submission.json").read_text())
    for key in ("model_name", "model_organization", "submitting_organization", "submission_date",
                "contact_info", "results"):
        assert key in raw
    assert raw["submission_type"] == "custom"
    assert raw["methodology"]["verification"]["modified_prompts"] is True
    assert "not optimized" in raw["methodology"]["notes"] and "val split" in raw["methodology"]["notes"]
    assert raw["methodology"]["verification"]["omitted_questions"] is True  # 2 of 4 tasks
    # chair passes both trials, desk fails both: pass^1 = pass^2 = 50%
    assert raw["results"]["retail"]["pass_1"] == 50.0 and raw["results"]["retail"]["pass_2"] == 50.0
    assert "pass_3" not in raw["results"]["retail"]
    assert raw["results"]["retail"]["cost"] > 0
    assert raw["submission_date"] == "2026-01-02" and raw["contact_info"]["email"] == "lab@example.com"
    traj_name = raw["trajectory_files"]["retail"]
    traj = json.loads((folder / "trajectories" / traj_name).read_text())
    assert set(traj) >= {"info", "tasks", "simulations"}
    assert traj["info"]["num_trials"] == 2 and traj["info"]["environment_info"]["domain_name"] == "retail"
    sims = traj["simulations"]
    assert len(sims) == 4 and {(s["task_id"], s["trial"]) for s in sims} == {
        ("c1", 0), ("c1", 1), ("c2", 0), ("c2", 1)
    }
    by_task = {s["task_id"]: s for s in sims}
    c1, c2 = by_task["c1"], by_task["c2"]
    assert c1["termination_reason"] == "user_stop" and c1["reward_info"]["reward"] == 1.0
    assert c2["termination_reason"] == "max_steps" and c2["reward_info"]["reward"] == 0.0
    assert by_task["c1"]["user_cost"] > 0 and by_task["c1"]["agent_cost"] > 0
    roles = [m["role"] for m in by_task["c1"]["messages"]]
    assert roles == ["assistant", "user", "assistant", "tool", "assistant", "user"]
    tool_call = by_task["c1"]["messages"][2]["tool_calls"][0]
    assert tool_call["name"] == "get_price" and tool_call["arguments"] == {"item": "chair"}
    assert by_task["c1"]["messages"][3]["content"] == "99.00"
    assert "###STOP###" in by_task["c1"]["messages"][-1]["content"]
    assert {t["id"] for t in traj["tasks"]} == {"c1", "c2"}
    Submission.model_validate(raw)
    Tau2Results.model_validate(traj)


def test_validate_bundle_accepts_the_export_and_rejects_tampering(bundle) -> None:
    folder = bundle.folder
    submission, trajectories = validate_bundle(folder)
    assert submission.results.retail is not None and set(trajectories) == {"retail"}
    path = folder / "submission.json"
    good = json.loads(path.read_text())

    def rejects(mutate, match: str) -> None:
        raw = json.loads(json.dumps(good))
        mutate(raw)
        path.write_text(json.dumps(raw))
        with pytest.raises(ExportError, match=match):
            validate_bundle(folder)

    rejects(lambda r: r["results"]["retail"].update(pass_1=75.0), "pass_1 is 75.0 but the trajectories")
    rejects(lambda r: r.pop("model_name"), "model_name")
    rejects(lambda r: r["results"]["retail"].update(pass_2="high"), "pass_2")
    rejects(lambda r: r["results"]["retail"].update(pass_1=150), "pass_1")
    rejects(lambda r: r.update(submission_date="yesterday"), "submission_date")
    rejects(lambda r: r.update(contact_info={"name": "nobody"}), "email or a github")
    rejects(lambda r: r.update(surprise=1), "surprise")
    rejects(lambda r: r.update(trajectory_files={"retail": "missing.json"}), "file missing")


def test_a_second_export_reuses_the_ledger(tmp_path: Path) -> None:
    first, calls_first = export(tmp_path)
    first_folder = first.folder
    second, calls_second = export(tmp_path)
    assert calls_first > 0 and calls_second == 0
    assert second.folder == first_folder and second.submission.results == first.submission.results


def test_missing_submitter_facts_fail_before_any_evaluation(tmp_path: Path) -> None:
    version = make_version(tmp_path)
    suite = load_suite(CHATTY)
    with pytest.raises(ExportError, match=r"model_organization.*contact_email") as info:
        export_tau2(version, suite, Submitter(model_name="x", submitting_organization="y"), ExportConfig())
    assert "--model-organization" in info.value.message and "--config" in info.value.message


def test_reward_info_from_the_scorer_line_and_from_an_error() -> None:
    row = Rollout(run_id="r", version_hash="v", suite="s", split="test", task_id="1", trial=0, model="m",
                  score=0.0, passed=False)
    line = '{"reward": 0.0, "db": 0.0, "communicate": 1.0, "nl": null}\nDB: differs'
    info = reward_info(row, line, ["DB", "COMMUNICATE"])
    assert info.reward == 0.0 and info.reward_breakdown == {"DB": 0.0, "COMMUNICATE": 1.0}
    assert info.db_check == {"db_match": False, "db_reward": 0.0}
    assert info.info and "NL-assertion judge is off" in info.info["nl_assertions"]
    only_db = reward_info(row, line, ["DB"])
    assert only_db.reward_breakdown == {"DB": 0.0}
    crashed = reward_info(row, "timeout: wall time limit of 30s exceeded", ["DB"])
    assert crashed.reward == 0.0 and crashed.info == {"note": "timeout: wall time limit of 30s exceeded"}


def test_cli_export_with_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness_opt.cli import export_cmd

    app = typer.Typer()
    export_cmd.register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the app into `export`
        pass

    version = make_version(tmp_path, max_steps=40)
    config = tmp_path / "submit.toml"
    config.write_text(
        '[submission]\nmodel_name = "cfg-model"\nmodel_organization = "Cfg Org"\n'
        'submitting_organization = "Cfg Lab"\ncontact_email = "cfg@example.com"\n'
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    with (
        scripted_model("cli-agent", agent_that_only_knows_chairs) as agent,
        scripted_model("cli-user", customer()) as user,
    ):
        args = ["export", str(version), "--suite", str(CHATTY), "--format", "tau2", "--split", "val",
                "--trials", "1", "--model", agent.model, "--user-model", user.model, "--config", str(config),
                "--model-name", "cli-model"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "validated" in result.output and "pass^1 50.0%" in result.output
        (folder,) = (tmp_path / "leaderboards").iterdir()
        raw = json.loads((folder / "submission.json").read_text())
        assert raw["model_name"] == "cli-model"  # the option wins over the file
        assert raw["model_organization"] == "Cfg Org"
        missing = runner.invoke(app, [a for a in args if a != str(config) and a != "--config"])
    assert missing.exit_code != 0 and isinstance(missing.exception, ExportError)
    bad_format = runner.invoke(app, ["export", str(version), "--suite", str(CHATTY), "--format", "harbor"])
    assert bad_format.exit_code != 0 and "unknown export format" in str(bad_format.exception)
