"""The nanogpt training domain end to end: real `python train.py` runs on CPU with a few-second budget."""

from __future__ import annotations

from pathlib import Path

from harness_opt.domains.training_loop import TrainingDomain, run_experiment
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from tests.nanogpt_fixtures import training_copy

RESULT_KEYS = {
    "val_bpb",
    "training_seconds",
    "total_seconds",
    "peak_vram_mb",
    "mfu_percent",
    "num_steps",
    "num_params_M",
}


def _spec(tmp_path: Path, budget: float = 2.0):  # type: ignore[no-untyped-def]
    suite_dir, seed_dir = training_copy(tmp_path, budget)
    domain = TrainingDomain()
    suite = domain.load_suite(suite_dir)
    return domain.spec(HarnessVersion.load(seed_dir), suite, seed=0)


def test_seed_trains_for_the_budget_and_prints_the_result_block(tmp_path: Path) -> None:
    result = run_experiment(_spec(tmp_path))
    assert result.status == "ok", result.log_tail
    assert set(result.values) >= RESULT_KEYS
    assert 2.0 <= result.values["training_seconds"] < 10
    assert 0.5 < result.values["val_bpb"] < 8.0  # bytes: a uniform guess is 8 bits
    assert result.values["num_steps"] > 2


def test_nan_loss_prints_fail_and_counts_as_failure(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.files["train.py"] = spec.files["train.py"].replace("LR_ADAM = 0.004", "LR_ADAM = 1e12")
    result = run_experiment(spec)
    assert result.status == "fail" and result.metric("val_bpb") is None


def test_a_run_past_twice_the_budget_is_killed(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.files["train.py"] = "import time\ntime.sleep(60)\n"
    spec.kill_after_s = 2.0
    result = run_experiment(spec)
    assert result.status == "timeout" and result.wall_s < 20


def test_a_run_that_ignores_the_budget_is_an_overrun(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.files["train.py"] = "print('---')\nprint('val_bpb: 0.1')\nprint('training_seconds: 999')\n"
    assert run_experiment(spec).status == "overrun"


class ScriptedTrainingProposer:
    """Wave 1: one edit of prepare.py (must be refused) and one real train.py edit; wave 2: a crash."""

    name = "operators"

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.calls += 1
        train = inp.files["train.py"]
        if self.calls == 1:
            return [
                Proposal(
                    proposer="scripted",
                    mechanism="cheat",
                    hypothesis="shrink the val set",
                    edits={"prepare.py": "EVAL_TOKENS = 1\n"},
                ),
                Proposal(
                    proposer="scripted",
                    mechanism="batch_half",
                    hypothesis="more steps",
                    edits={"train.py": train.replace("CPU_BATCH_SIZE = 16", "CPU_BATCH_SIZE = 8")},
                ),
            ]
        return [
            Proposal(
                proposer="scripted",
                mechanism="crash",
                hypothesis="oops",
                edits={"train.py": train.replace("def main(", "raise RuntimeError('boom')\ndef main(")},
            )
        ]


def test_optimize_keeps_or_discards_and_fills_the_ledger(tmp_path: Path) -> None:
    suite_dir, seed_dir = training_copy(tmp_path, budget_s=2.0)
    ledger = Ledger()
    config = OptimizeConfig(
        harness=seed_dir, suite=suite_dir, budget=Budget(wall_s=600, iterations=2), parallel=2
    )
    result = optimize(config, ledger=ledger, proposer=ScriptedTrainingProposer())  # type: ignore[arg-type]

    by_mech = {c.mechanism: c for c in result.candidates}
    assert by_mech["baseline"].outcome == "baseline"
    assert by_mech["cheat"].outcome == "invalid" and "prepare.py" in by_mech["cheat"].reason
    assert by_mech["crash"].outcome == "rejected" and "crash" in by_mech["crash"].reason
    half = by_mech["batch_half"]
    assert half.outcome in ("accepted", "rejected") and half.delta is not None
    # The noise-aware rule: kept exactly when the gain beats the baseline spread.
    assert (half.outcome == "accepted") == (half.delta > result.noise)
    assert not (suite_dir / "prepare.py").read_text().startswith("EVAL_TOKENS = 1")

    rows = ledger.query("SELECT status, value, metric, description FROM experiments ORDER BY created")
    statuses = [r["status"] for r in rows]
    assert statuses[:2] == ["keep", "keep"]  # the two baseline seeds
    assert "crash" in statuses and statuses.count("crash") >= 1
    assert all(r["metric"] == "val_bpb" for r in rows)
    assert all(r["value"] is not None for r in rows if r["status"] != "crash")
    decisions = ledger.query("SELECT accepted FROM decisions WHERE run_id = ?", [result.run_id])
    assert len(decisions) == 4  # baseline, cheat, batch_half, crash
