"""The Domain seam: which domain a suite gets, what each may edit and how it judges, and the training
run parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness_opt.domains.agent_harness import AgentHarnessDomain
from harness_opt.domains.target import resolve_target
from harness_opt.domains.training import TrainingDomain
from harness_opt.domains.training_loop import TrainingSuite, parse_result_block
from harness_opt.errors import UserError
from harness_opt.propose.base import HistoryEntry, ProposalInput
from harness_opt.propose.operators.training import TrainingOperatorsProposer
from harness_opt.search.acceptance import scalar_noise
from harness_opt.search.candidates import outside_editable
from harness_opt.search.domain import domain_for_suite
from harness_opt.suites.loader import load_suite

REPO = Path(__file__).resolve().parent.parent


def test_domain_is_chosen_by_suite_toml() -> None:
    agent = domain_for_suite(REPO / "tasks" / "banking77")
    assert isinstance(agent, AgentHarnessDomain)
    assert (agent.acceptance, agent.direction) == ("paired", "max") and "tools.json" in agent.editable
    training = domain_for_suite(REPO / "tasks" / "nanogpt")
    assert isinstance(training, TrainingDomain)
    assert (training.acceptance, training.direction) == ("scalar", "min")
    assert training.editable == ("train.py",)
    assert domain_for_suite(REPO / "tasks" / "nanogpt") is not training  # one per run: it holds the run


def test_unknown_domain_is_a_user_error_naming_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text('domain = "chess"\n[suite]\nname = "x"\n')
    with pytest.raises(UserError, match="unknown domain 'chess'") as err:
        domain_for_suite(tmp_path)
    assert "agent-harness, training" in err.value.message


def test_training_suite_loads_through_the_generic_loader() -> None:
    suite = load_suite(REPO / "tasks" / "nanogpt")
    assert isinstance(suite, TrainingSuite)
    assert [t.id for t in suite.tasks("val")] == ["val_bpb"]
    assert suite.seed_path == (REPO / "harnesses" / "nanogpt" / "v0001").resolve()


def test_resolve_target_accepts_a_training_suite_folder_alone() -> None:
    version, suite = resolve_target(REPO / "tasks" / "nanogpt", None)
    assert version.name == "v0001" and suite == REPO / "tasks" / "nanogpt"
    with pytest.raises(UserError, match="needs a seed version"):
        resolve_target(REPO / "tasks" / "banking77", None)


def test_prepare_py_and_manifest_are_outside_the_training_editable_set() -> None:
    edits: dict[str, str | None] = {"train.py": "x", "prepare.py": "y", "harness.toml": "z"}
    assert outside_editable(edits, TrainingDomain.editable) == ["harness.toml", "prepare.py"]
    agent_edits: dict[str, str | None] = {"agent.py": "", "prompts/a.j2": "", "x.sh": ""}
    assert outside_editable(agent_edits, AgentHarnessDomain.editable) == ["x.sh"]


def test_result_block_is_the_last_dash_block() -> None:
    out = "step 1\n---\nval_bpb: 9\n---\nval_bpb: 2.5\npeak_vram_mb: 100.0\nnote: text\n"
    values, failed = parse_result_block(out)
    assert values == {"val_bpb": 2.5, "peak_vram_mb": 100.0} and not failed
    assert parse_result_block("FAIL\n")[1] is True
    assert parse_result_block("no block")[0] == {}


def test_noise_is_range_or_twice_the_std() -> None:
    assert scalar_noise([1.0, 1.0]) == 0.0
    assert scalar_noise([1.0, 1.2]) == pytest.approx(2 * 0.1414213, rel=1e-4)  # 2 std > range
    assert scalar_noise([1.0]) == 0.0


def _input(history: list[HistoryEntry] | None = None, seed: int = 0) -> ProposalInput:
    train = (REPO / "harnesses" / "nanogpt" / "v0001" / "train.py").read_text()
    return ProposalInput(
        agent="nanogpt",
        version_label="nanogpt@v0001",
        files={"train.py": train},
        editable=("train.py",),
        suite="nanogpt",
        failing_traces=[],
        train_tasks=[],
        history=history or [],
        seed=seed,
    )


def test_training_operators_edit_only_train_py_constants() -> None:
    proposals = TrainingOperatorsProposer().propose(_input(), 20)
    assert len(proposals) == 10
    seed_text = _input().files["train.py"]
    for p in proposals:
        assert list(p.edits) == ["train.py"] and p.edits["train.py"] != seed_text and p.changes
    batch = next(p for p in proposals if p.mechanism == "batch_half")
    assert "BATCH_SIZE = 32" in batch.edits["train.py"] and "CPU_BATCH_SIZE = 8" in batch.edits["train.py"]


def test_training_operators_skip_what_was_rejected() -> None:
    history = [
        HistoryEntry(
            iteration=1,
            candidate="-",
            proposer="operators:x",
            mechanism="batch_half",
            hypothesis="",
            outcome="rejected",
        )
    ]
    mechanisms = {p.mechanism for p in TrainingOperatorsProposer().propose(_input(history), 20)}
    assert "batch_half" not in mechanisms and "batch_double" in mechanisms
