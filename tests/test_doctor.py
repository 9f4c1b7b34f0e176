"""`doctor`: splits, sealed test, scorer determinism, sandbox, model key, budget, noise and cost lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness_opt.records import Score, Task
from harness_opt.search.budget import Budget
from harness_opt.testing import scripted_model
from harness_opt.trust.doctor import _check_scorer, _check_splits, doctor
from harness_opt.trust.report import CheckReport
from tests.support.optimize import SEED, SUITE, gold_by_text
from tests.support.suites import FakeSuite


def lines(report: CheckReport) -> dict[str, tuple[str, str]]:
    return {line.check: (line.status, line.detail) for line in report.lines}


def test_banking77_with_the_seed_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    gold = gold_by_text()
    with scripted_model("doc", lambda m, t, p: gold.get(m[-1]["content"].strip(), "x")) as model:
        report = doctor(SUITE, SEED, model=model.model, budget=Budget(wall_s=3600, dollars=5.0))
    found = lines(report)
    assert not report.failed, report.render()
    assert found["splits"][0] == "PASS" and "val=231" in found["splits"][1]
    assert found["test sealed"][0] == "PASS" and found["scorer"][0] == "PASS"
    assert found["sandbox"][0] in ("PASS", "WARN") and found["model"][0] == "PASS"
    assert found["budget"][0] == "PASS"
    assert "smallest detectable gain at 231 val tasks" in found["noise"][1]
    assert "per iteration" in found["cost/time"][1]


def test_missing_key_and_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    report = doctor(SUITE, model="openai/gpt-4o-mini")
    found = lines(report)
    assert report.failed and found["model"][0] == "FAIL" and "OPENAI_API_KEY" in found["model"][1]
    assert found["budget"][0] == "WARN"
    assert "noise" not in found  # no harness, nothing evaluated


def test_a_harness_carrying_test_data_fails(tmp_path: Path) -> None:
    from harness_opt.suites.loader import load_suite

    leaked = tmp_path / "v0002"
    shutil.copytree(SEED, leaked)
    task = load_suite(SUITE).tasks("test")[0]
    (leaked / "data").mkdir()
    (leaked / "data" / "cheat.txt").write_text(f"{task.input['text']} -> {task.expected}\n")
    report = doctor(SUITE, leaked, model="openai/gpt-4o-mini")
    assert lines(report)["test sealed"][0] == "FAIL" and task.id in lines(report)["test sealed"][1]


def t(task_id: str, text: str) -> Task:
    return Task(id=task_id, input={"text": text}, expected="a")


def test_overlapping_splits_fail_and_repeated_inputs_warn() -> None:
    report = CheckReport(title="x")
    assert not _check_splits(
        report, FakeSuite({"train": [t("1", "x")], "val": [t("1", "y")], "test": [t("3", "z")]})
    )
    assert report.lines[-1].status == "FAIL" and "task ids in two splits" in report.lines[-1].detail
    report = CheckReport(title="x")
    assert _check_splits(
        report, FakeSuite({"train": [t("1", "x")], "val": [t("2", "x")], "test": [t("3", "z")]})
    )
    assert report.lines[-1].status == "WARN"
    report = CheckReport(title="x")
    assert not _check_splits(report, FakeSuite({"train": [t("1", "x")], "val": []}))
    assert report.lines[-1].status == "FAIL"


def test_a_scorer_that_changes_its_mind_fails() -> None:
    flips = iter(range(1000))
    suite = FakeSuite(
        {"val": [t("1", "x")]},
        scorer=lambda task, out: Score(score=float(next(flips) % 2), passed=False),
    )
    report = CheckReport(title="x")
    _check_scorer(report, suite)
    assert report.lines[-1].status == "FAIL"
