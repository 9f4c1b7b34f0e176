"""The run's state between iterations: one checkpoint writes it, `--resume` reads it back; why a run
stopped is a field, and a stop file ends the run as 'stopped'."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness_opt.errors import UserError
from harness_opt.ledger import Ledger
from harness_opt.search.budget import Budget, BudgetTracker
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from harness_opt.search.measurement import Measurement
from harness_opt.search.records import CandidateRecord
from harness_opt.search.state import RunState, checkpoint, read_back
from harness_opt.testing import scripted_model
from tests.support.optimize import (
    SUITE,
    ScriptedProposer,
    gold_by_text,
    marker_rounds,
    prompt_sensitive_responder,
    run_scripted,
)


def test_checkpoint_then_read_back_is_the_same_state() -> None:
    ledger = Ledger()
    ledger.start_run("opt-s", "optimize", {})
    state = RunState(
        iteration=3,
        elapsed_s=12.5,
        cost_usd=0.25,
        rollouts=40,
        incumbent="h2",
        noise=0.05,
        measured=Measurement(version_hash="h2", label="a@v0002", values={"t1": 1.0}),
    )
    checkpoint(ledger, "opt-s", state)
    assert read_back(ledger, "opt-s") == (state, [])
    assert ledger.query("SELECT status, ended FROM runs")[0] == {"status": "running", "ended": None}


def test_read_back_of_an_unknown_run_says_where_to_look() -> None:
    with pytest.raises(UserError, match="no optimize run 'opt-nope'"):
        read_back(Ledger(), "opt-nope")


def test_old_decision_details_with_label_still_read_back() -> None:
    """Runs written before the record was the proposer's history entry called the label `label`."""
    old = {
        "iteration": 1,
        "label": "a@v0002",
        "proposer": "p",
        "mechanism": "m",
        "hypothesis": "h",
        "outcome": "rejected",
    }
    assert CandidateRecord.model_validate(old).label == "a@v0002"


def test_budget_tracker_says_why_it_stops_as_a_kind(tmp_path: Path) -> None:
    state = RunState(iteration=2, cost_usd=1.0, rollouts=10, elapsed_s=100.0)
    assert BudgetTracker(Budget(iterations=2), state).exhausted().kind == "iterations"  # type: ignore[union-attr]
    assert BudgetTracker(Budget(dollars=1.0), state).exhausted().kind == "dollars"  # type: ignore[union-attr]
    assert BudgetTracker(Budget(rollouts=10), state).exhausted().kind == "rollouts"  # type: ignore[union-attr]
    wall = BudgetTracker(Budget(wall_s=150), state)
    assert wall.exhausted() is None and wall.exhausted(reserve_s=60).kind == "wall_time"  # type: ignore[union-attr]
    stop = tmp_path / "STOP"
    stop.touch()
    assert BudgetTracker(Budget(), state, stop).exhausted().kind == "stop_file"  # type: ignore[union-attr]
    assert BudgetTracker(Budget(), state).exhausted() is None


def test_a_budget_reads_durations() -> None:
    assert Budget(wall_s="1h30m").wall_s == 5400  # type: ignore[arg-type]
    assert Budget(wall_s=90).wall_s == 90
    with pytest.raises(ValueError, match="cannot read the duration"):
        Budget(wall_s="soon")  # type: ignore[arg-type]


def test_a_stop_file_ends_the_run_as_stopped(seed_copy: Path, tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    stop.touch()
    respond = prompt_sensitive_responder(gold_by_text())
    result = run_scripted(seed_copy, respond, ScriptedProposer(marker_rounds()), stop_file=stop)
    assert (result.status, result.stop) == ("stopped", "stop_file")
    assert [c.outcome for c in result.candidates] == ["baseline"]


def test_a_resumed_run_continues_from_its_checkpoint(seed_copy: Path) -> None:
    """Two iterations, then the same run resumed with a larger budget: it goes on from iteration 2
    with the incumbent and the spend it had, and writes no decision twice."""
    ledger = Ledger()
    with scripted_model("resume", prompt_sensitive_responder(gold_by_text())) as model:
        config = OptimizeConfig(
            harness=seed_copy,
            suite=SUITE,
            model=model.model,
            val_limit=10,
            train_sample=3,
            skip_test=True,
            budget=Budget(iterations=2),
        )
        first = optimize(config, ledger=ledger, proposer=ScriptedProposer(marker_rounds()), run_id="opt-r")
        assert first.stop == "iterations" and first.best_label == first.baseline_label
        calls_before = len(model.calls)
        more = config.model_copy(update={"budget": Budget(iterations=3)})
        proposer = ScriptedProposer(marker_rounds())
        second = optimize(more, ledger=ledger, proposer=proposer, resume="opt-r")
    assert [inp.seed for inp in proposer.inputs] == [3]  # only iteration 3 was asked for
    assert second.best_label != second.baseline_label and second.stop == "iterations"
    assert second.rollouts_run > first.rollouts_run and second.elapsed_s > first.elapsed_s
    assert [c.mechanism for c in second.candidates] == [c.mechanism for c in first.candidates] + [
        "think-first"
    ]
    rows = ledger.query("SELECT count(*) AS n FROM decisions WHERE run_id = 'opt-r'")[0]["n"]
    assert rows == len(second.candidates)
    # the baseline and the first candidates were served from the ledger, not run again
    new_calls = len(model.calls) - calls_before
    assert new_calls <= 3 + 1 + 10  # train evidence, the smoke test, the new candidate on val
