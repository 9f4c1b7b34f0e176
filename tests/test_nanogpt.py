"""The nanogpt training domain: real sandboxed runs on CPU with a few-second budget (train.py, then
prepare.py's evaluation), the isolation rule they share with harness code, and the one optimize loop's
keep / discard decisions on runs whose results are set by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness_opt.domains.executors import OnDone
from harness_opt.domains.training import TrainingDomain
from harness_opt.domains.training_loop import (
    ExperimentResult,
    ExperimentSpec,
    experiment_spec,
    load_training_suite,
    run_experiment,
)
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import home_dir
from harness_opt.ledger import Ledger
from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from tests.support.nanogpt import training_copy

RESULT_KEYS = {
    "val_bpb",  # these four from prepare.py's scorer
    "eval_tokens",
    "eval_block_size",
    "causal_max_delta",
    "training_seconds",  # these from train.py (informational)
    "total_seconds",
    "peak_vram_mb",
    "mfu_percent",
    "num_steps",
    "num_params_M",
    "train_wall_s",  # measured by the runner
}
UNIFORM_SEED = """
import torch
from prepare import VOCAB_SIZE, save_model
from torch import nn


class Uniform(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(VOCAB_SIZE))

    def forward(self, idx):
        return self.bias.expand(idx.shape[0], idx.shape[1], VOCAB_SIZE)


def main(budget_s=None, device=None):
    save_model(Uniform(), 64)
    print("---")
    print("training_seconds: 0.0")


if __name__ == "__main__":
    main()
"""
"""A seed that does not train: its val_bpb is exactly 8 (uniform over 256 bytes), in a few seconds."""


def _spec(tmp_path: Path, budget: float = 2.0) -> ExperimentSpec:
    suite_dir, seed_dir = training_copy(tmp_path, budget)
    return experiment_spec(HarnessVersion.load(seed_dir), load_training_suite(suite_dir), seed=0)


def test_seed_trains_for_the_budget_and_prints_the_result_block(tmp_path: Path) -> None:
    result = run_experiment(_spec(tmp_path))
    assert result.status == "ok", result.log_tail
    assert result.isolation == "bwrap"
    assert set(result.values) >= RESULT_KEYS
    assert 2.0 <= result.values["training_seconds"] < 10
    # a value, not a placeholder (a run that trained little on a loaded machine can be above 8 bits)
    assert 0.5 < result.values["val_bpb"] < 20.0
    assert result.values["eval_tokens"] == 2048 and result.values["causal_max_delta"] == 0.0
    assert result.values["num_steps"] > 2
    # for a person: train.py's block, then the evaluation's, each under its heading
    assert result.log_tail.index("[train.py]") < result.log_tail.index("[evaluation: prepare.py score]")


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


def test_a_run_that_hands_over_no_model_crashes_whatever_it_prints(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.files["train.py"] = "print('---')\nprint('val_bpb: 0.1')\nprint('training_seconds: 1')\n"
    result = run_experiment(spec)
    assert result.status == "crash" and "save_model" in result.reason and result.metric("val_bpb") is None


def test_the_val_bytes_are_the_corpus_tail_and_train_py_gets_the_rest(tmp_path: Path) -> None:
    from harness_opt.domains.training_data import split_corpus
    from tests.support.nanogpt import CORPUS

    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    split_corpus(CORPUS, 0.1, train, val)
    data = CORPUS.read_bytes()
    assert train.read_bytes() + val.read_bytes() == data
    assert len(val.read_bytes()) == int(len(data) * 0.1)


# --------------------------------------------------------------------- the isolation rule


def _uniform_copy(tmp_path: Path) -> tuple[Path, Path]:
    suite_dir, seed_dir = training_copy(tmp_path)
    (seed_dir / "train.py").write_text(UNIFORM_SEED)
    return suite_dir, seed_dir


class NothingProposer:
    name = "scripted"

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        return []


def test_the_isolation_used_is_recorded_on_the_run(tmp_path: Path) -> None:
    suite_dir, seed_dir = _uniform_copy(tmp_path)
    ledger = Ledger()
    config = OptimizeConfig(harness=seed_dir, suite=suite_dir, budget=Budget(iterations=1), parallel=2)
    result = optimize(config, ledger=ledger, proposer=NothingProposer(), run_id="opt-iso")
    assert result.baseline_val.score == pytest.approx(8.0, abs=1e-6)  # the scorer's figure, both seeds
    assert ledger.query("SELECT isolation FROM runs WHERE run_id = 'opt-iso'")[0]["isolation"] == "bwrap"


def test_auto_refuses_rather_than_run_train_py_unsandboxed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness_opt.domains import training_loop
    from harness_opt.runtime import sandbox
    from harness_opt.runtime.sandbox import SandboxError

    cause = ("bubblewrap cannot create its namespaces here (bwrap: No permissions)", "allow user namespaces")
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: cause)
    monkeypatch.setattr(training_loop, "bwrap_problem", lambda: cause)
    suite_dir, seed_dir = _uniform_copy(tmp_path)
    ledger = Ledger()
    config = OptimizeConfig(harness=seed_dir, suite=suite_dir, budget=Budget(iterations=1))
    with pytest.raises(SandboxError) as err:
        optimize(config, ledger=ledger, proposer=NothingProposer(), run_id="opt-refused")
    assert "No permissions" in err.value.message and "--isolation unshare" in err.value.message
    assert ledger.query("SELECT count(*) AS n FROM runs")[0]["n"] == 0  # refused before any run row
    # a worker that cannot run bubblewrap (a Ray node) refuses its runs the same way: never a downgrade
    result = run_experiment(_spec(tmp_path / "worker"))
    assert result.status == "crash" and "No permissions" in result.reason and result.isolation == "bwrap"


# --------------------------------------------------------------------- decisions on hand-set runs

VALUE = re.compile(r"^FAKE_VAL_BPB = ([0-9.]+)$", re.M)


class HandSetExecutor:
    """Runs nothing: a run's val_bpb is the `FAKE_VAL_BPB = x` line of its train.py, plus 0.02 per
    seed (so the baseline's two seeds differ); a train.py that raises SystemExit crashes."""

    name = "hand-set"
    slots = 4
    has_gpu = False

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []

    def run(
        self, specs: list[ExperimentSpec], metric: str, on_done: OnDone | None = None
    ) -> list[ExperimentResult]:
        out = []
        for i, spec in enumerate(specs):
            source = spec.files["train.py"]
            match = VALUE.search(source)
            crashes = match is None or "raise SystemExit" in source
            self.runs.append(("crash" if crashes or match is None else match[1], spec.seed))
            if crashes or match is None:
                result = ExperimentResult(
                    label=spec.label,
                    version_hash=spec.version_hash,
                    seed=spec.seed,
                    status="crash",
                    reason="boom",
                )
            else:
                value = float(match[1]) + 0.02 * spec.seed
                result = ExperimentResult(
                    label=spec.label,
                    version_hash=spec.version_hash,
                    seed=spec.seed,
                    status="ok",
                    values={metric: value, "peak_vram_mb": 512.0},
                )
            if on_done is not None:
                on_done(i, result)
            out.append(result)
        return out


def _with_value(train: str, value: str) -> str:
    return VALUE.sub(f"FAKE_VAL_BPB = {value}", train)


class WaveProposer:
    """Wave 1: a clear gain, a borderline one, a loss, an edit of prepare.py, a crash. Then nothing."""

    name = "scripted"

    def __init__(self) -> None:
        self.inputs: list[ProposalInput] = []

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.inputs.append(inp)
        if len(self.inputs) > 1:
            return []
        train = inp.files["train.py"]

        def edit(mechanism: str, value: str) -> Proposal:
            return Proposal(
                proposer="scripted",
                mechanism=mechanism,
                hypothesis=mechanism,
                edits={"train.py": _with_value(train, value)},
            )

        return [
            edit("clear", "1.80"),
            edit("borderline", "1.97"),
            edit("worse", "2.10"),
            Proposal(
                proposer="scripted",
                mechanism="cheat",
                hypothesis="x",
                edits={"prepare.py": "EVAL_TOKENS = 1\n"},
            ),
            Proposal(
                proposer="scripted",
                mechanism="crash",
                hypothesis="x",
                edits={"train.py": train.replace("def main(", "raise SystemExit(3)\ndef main(")},
            ),
        ]


def test_training_decisions_follow_the_noise_of_the_baseline_seeds(tmp_path: Path) -> None:
    """Baseline seeds 0 and 1 give 2.00 and 2.02: mean 2.01, noise max(range 0.02, 2 std 0.0283) =
    0.0283. 1.80 gains 0.21 > 2 x noise: kept at once. 1.97 gains 0.04, between 1x and 2x the noise:
    a second seed (1.99) makes its mean 1.98, a gain of 0.03 > noise: kept too, but the clear gain is
    larger, so only that one becomes the incumbent. 2.10 loses. prepare.py is frozen. A crash is
    rejected with its reason."""
    suite_dir, seed_dir = training_copy(tmp_path)
    (seed_dir / "train.py").write_text((seed_dir / "train.py").read_text() + "\nFAKE_VAL_BPB = 2.00\n")
    executor = HandSetExecutor()
    ledger = Ledger()
    proposer = WaveProposer()
    config = OptimizeConfig(harness=seed_dir, suite=suite_dir, budget=Budget(iterations=3), parallel=5)
    result = optimize(config, domain=TrainingDomain(executor=executor), ledger=ledger, proposer=proposer)

    assert result.noise == pytest.approx(0.028284, abs=1e-5)
    assert result.baseline_val.score == pytest.approx(2.01)
    by_mech = {c.mechanism: c for c in result.candidates}
    assert by_mech["clear"].outcome == "accepted" and by_mech["clear"].delta == pytest.approx(0.21)
    assert by_mech["borderline"].outcome == "rejected"
    assert "gained more" in by_mech["borderline"].reason and "over 2 seeds" in by_mech["borderline"].reason
    assert by_mech["borderline"].val_score == pytest.approx(1.98)
    assert by_mech["worse"].outcome == "rejected" and "no gain" in by_mech["worse"].reason
    assert by_mech["cheat"].outcome == "invalid" and "prepare.py" in by_mech["cheat"].reason
    assert by_mech["crash"].outcome == "rejected" and "crash: boom" in by_mech["crash"].reason
    assert result.best_label == by_mech["clear"].label and result.best_val.score == pytest.approx(1.80)
    assert result.direction == "min" and result.metric == "val_bpb" and result.baseline_test is None
    # the runs made: two baseline seeds, one per valid candidate, one more seed for the borderline one
    assert sorted(executor.runs) == sorted(
        [("2.00", 0), ("2.00", 1), ("1.80", 0), ("1.97", 0), ("2.10", 0), ("crash", 0), ("1.97", 1)]
    )
    # the journal has each run asked for and each result stored, once (a second optimize reuses them all)
    journal = [
        json.loads(line) for line in (home_dir() / "experiments" / "journal.jsonl").read_text().splitlines()
    ]
    assert [j["event"] for j in journal].count("run") == 7 and [j["event"] for j in journal].count(
        "done"
    ) == 7
    assert len({j["key"] for j in journal}) == 7
    rows = ledger.query("SELECT status, value, memory_gb, description FROM experiments ORDER BY created")
    assert sorted(r["status"] for r in rows) == [
        "crash",
        "discard",
        "discard",
        "discard",
        "keep",
        "keep",
        "keep",
    ]
    assert all(r["memory_gb"] == 0.5 for r in rows if r["status"] != "crash")
    # the proposer of the second round reads the new incumbent and what was tried
    second = proposer.inputs[1]
    assert "FAKE_VAL_BPB = 1.80" in second.files["train.py"] and second.val_score == pytest.approx(1.80)
    assert {h.mechanism for h in second.history} == {"clear", "borderline", "worse", "cheat", "crash"}


def test_a_seed_that_does_not_train_refuses_the_run(tmp_path: Path) -> None:
    from harness_opt.errors import UserError

    suite_dir, seed_dir = training_copy(tmp_path)
    ledger = Ledger()
    config = OptimizeConfig(harness=seed_dir, suite=suite_dir, budget=Budget(iterations=1))
    with pytest.raises(UserError, match="does not train"):
        optimize(config, domain=TrainingDomain(executor=HandSetExecutor()), ledger=ledger, run_id="opt-x")
    assert ledger.query("SELECT status FROM runs WHERE run_id = 'opt-x'")[0]["status"] == "refused"


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


def test_optimize_on_real_runs_fills_the_ledger(tmp_path: Path) -> None:
    suite_dir, seed_dir = training_copy(tmp_path, budget_s=2.0)
    ledger = Ledger()
    config = OptimizeConfig(
        harness=seed_dir, suite=suite_dir, budget=Budget(wall_s=600, iterations=2), parallel=2
    )
    result = optimize(config, ledger=ledger, proposer=ScriptedTrainingProposer())

    by_mech = {c.mechanism: c for c in result.candidates}
    assert by_mech["baseline"].outcome == "baseline"
    assert by_mech["cheat"].outcome == "invalid" and "prepare.py" in by_mech["cheat"].reason
    assert by_mech["crash"].outcome == "rejected" and "crash: exit code 1" in by_mech["crash"].reason
    half = by_mech["batch_half"]
    assert half.outcome in ("accepted", "rejected") and half.val_score is not None
    # a value, not a placeholder (a run that trained little on a loaded machine can be above 8 bits)
    assert 0.5 < half.val_score < 20.0 and half.delta == pytest.approx(
        result.baseline_val.score - half.val_score
    )
    assert not (suite_dir / "prepare.py").read_text().startswith("EVAL_TOKENS = 1")
    # two seeds of a real run differ: the noise is measured, not assumed
    assert result.noise > 0 and result.baseline_val.n_tasks == 2

    rows = ledger.query("SELECT status, value, metric, description FROM experiments ORDER BY created")
    statuses = [r["status"] for r in rows]
    assert statuses[:2] == ["keep", "keep"]  # the two baseline seeds
    assert statuses.count("crash") == 1
    assert all(r["metric"] == "val_bpb" for r in rows)
    assert all(r["value"] is not None for r in rows if r["status"] != "crash")
    decisions = ledger.query("SELECT accepted FROM decisions WHERE run_id = ?", [result.run_id])
    assert len(decisions) == 4  # baseline, cheat, batch_half, crash


# --------------------------------------------------------------------- GPU plumbing (no GPU here)

GPU_PROBE = """
import json, os
print("PROBE " + json.dumps({
    "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "order": os.environ.get("CUDA_DEVICE_ORDER"),
    "libs": sorted(os.listdir(LIB)) if os.path.isdir(LIB) else None,
}))
"""


def test_the_train_box_gets_the_driver_libraries_and_the_gpu_the_executor_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a GPU run needs, checked without one: driver libraries outside the system dirs are bound
    (found through ldconfig's listing), CUDA_VISIBLE_DEVICES is the executor's, in nvidia-smi's order."""
    from harness_opt.domains import training_box, training_loop

    driver = tmp_path / "opt-nvidia" / "lib"
    driver.mkdir(parents=True)
    (driver / "libcuda.so.1").write_text("")
    listing = (
        f"\tlibcuda.so.1 (libc6,x86-64) => {driver}/libcuda.so.1\n"
        "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n"
        f"\tlibz.so.1 (libc6,x86-64) => {tmp_path}/libz.so.1\n"
    )
    assert training_box.driver_library_dirs(listing) == [
        str(driver)
    ]  # /usr is bound anyway; libz is not a driver
    gpu = training_box.GpuAccess(devices=["/dev/zero"], library_dirs=[str(driver)])
    monkeypatch.setattr(training_loop, "_host_gpus", lambda: gpu)
    spec = _spec(tmp_path).model_copy(
        update={"gpu": "3", "files": {"train.py": GPU_PROBE.replace("LIB", repr(str(driver)))}}
    )
    result = run_experiment(spec)
    line = next(ln for ln in result.log_tail.splitlines() if ln.startswith("PROBE "))
    seen = json.loads(line.removeprefix("PROBE "))
    assert seen == {"visible": "3", "order": "PCI_BUS_ID", "libs": ["libcuda.so.1"]}


def test_device_binds_and_a_read_only_root_in_the_builder(tmp_path: Path) -> None:
    import subprocess
    import sys

    from harness_opt.runtime.sandbox import BwrapSpec, bwrap_command, minimal_env

    spec = BwrapSpec(
        env=minimal_env("/tmp"), dev_binds=[("/dev/zero", "/dev/nvidia-test0")], read_only_root=True
    )
    code = (
        "import os, stat\n"
        "dev = '/dev/nvidia-test0'\n"
        "print(stat.S_ISCHR(os.stat(dev).st_mode), len(open(dev, 'rb').read(4)))\n"
        "for d in ('/', '/dev', '/tmp'):\n"
        "    try:\n"
        "        open(os.path.join(d, 'x'), 'w').close(); print(d, 'writable')\n"
        "    except OSError:\n"
        "        print(d, 'read-only')\n"
    )
    done = subprocess.run(
        bwrap_command(spec, [sys.executable, "-c", code]),
        env=minimal_env("/tmp"),
        capture_output=True,
        text=True,
    )
    assert done.stdout.split("\n")[:4] == ["True 4", "/ read-only", "/dev read-only", "/tmp writable"], (
        done.stderr
    )
