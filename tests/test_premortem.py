"""`premortem`: no-skill probes scored by the suite's own scorer reveal how the metric can be gamed."""

from __future__ import annotations

from typing import Any

from harness_opt.records import Score, Task
from harness_opt.trust.premortem import FLATTERY, premortem, run_probes
from tests.support.optimize import SUITE
from tests.support.suites import FakeSuite


def statuses(report: Any) -> dict[str, str]:
    return {line.check.split(" (")[0]: line.status for line in report.lines}


def test_banking77_exact_label_scorer_resists_every_probe() -> None:
    report = premortem(SUITE, limit=100)
    assert set(statuses(report).values()) == {"PASS"}, report.render()
    constant = next(line for line in report.lines if line.check.startswith("constant"))
    assert "chance 0.013" in constant.detail


def _tasks(labels: list[str], split: str) -> list[Task]:
    return [Task(id=f"{split}{i}", input={"text": f"message {i}"}, expected=x) for i, x in enumerate(labels)]


def test_a_lenient_imbalanced_flatterable_scorer_is_caught(monkeypatch: Any) -> None:
    splits = {
        "train": _tasks(["yes"] * 8 + ["no"] * 2, "train"),
        "val": _tasks(["yes"] * 8 + ["no"] * 2, "val"),
        "test": _tasks(["yes"], "test"),
    }

    def lenient(task: Task, output: Any) -> Score:
        text = str(output)
        ok = text == task.expected or "correct" in text  # checks the wording, not the answer
        return Score(score=float(ok), passed=ok)

    suite = FakeSuite(splits, scorer=lenient)
    results = {r.probe.split(" (")[0]: r.score for r in run_probes(suite)}
    assert results["constant"] == 0.8 and results["flattery"] == 1.0 and results["empty"] == 0.0
    monkeypatch.setattr("harness_opt.suites.loader.load_suite", lambda path: suite)
    found = statuses(premortem("fake"))
    assert found["constant"] == "WARN" and found["flattery"] == "FAIL" and found["do-nothing"] == "PASS"
    assert FLATTERY
