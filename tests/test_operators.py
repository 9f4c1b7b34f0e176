"""The operators proposer: which proposals it makes, in what order, and how they compose and skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness_opt.harness import HarnessVersion
from harness_opt.propose.base import Proposal, ProposalInput, Proposer
from harness_opt.propose.operators import OperatorsProposer
from harness_opt.propose.operators.demos import FailedFewShot
from harness_opt.records import RolloutKey, Task, ToolCallEvent, Trace
from tests.support.operators import (
    EDITABLE,
    apply,
    failing_trace,
    proposal_input,
    rejected,
    seed_version,
    train_tasks,
)

ALL = 50


def by_name(proposals: list[Proposal]) -> dict[str, Proposal]:
    return {p.meta["operator"]: p for p in proposals}


@pytest.fixture(scope="module")
def seed_proposals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Proposal]:
    """Every proposal for the banking77 seed, computed once for the module (they depend on files only)."""
    seed = seed_version(tmp_path_factory.mktemp("seed"))
    return by_name(OperatorsProposer().propose(proposal_input(seed), ALL))


def test_is_a_proposer_with_every_label_operator_in_order(tmp_path: Path) -> None:
    seed = seed_version(tmp_path)
    proposals = OperatorsProposer().propose(proposal_input(seed), ALL)
    assert isinstance(OperatorsProposer(), Proposer)
    names = [p.meta["operator"] for p in proposals]
    # candidate_labels needs constrained output first; tools operators need tools.
    assert names == [
        "retrieval_demos",
        "constrained_output",
        "failed_fewshot",
        "label_glossary",
        "snap_to_label",
        "self_consistency",
        "tuned_sampling",
    ]
    for p in proposals:
        assert p.proposer == f"operators:{p.meta['operator']}"
        assert p.hypothesis and p.mechanism and p.changes
    assert [p.meta["operator"] for p in OperatorsProposer().propose(proposal_input(seed), 2)] == names[:2]


@pytest.mark.parametrize(
    "operator",
    [
        "constrained_output",
        "retrieval_demos",
        "failed_fewshot",
        "label_glossary",
        "snap_to_label",
        "self_consistency",
        "tuned_sampling",
    ],
)
def test_each_operator_makes_a_version_that_loads_and_renders(
    tmp_path: Path, operator: str, seed_proposals: dict[str, Proposal]
) -> None:
    seed = seed_version(tmp_path)
    proposal = seed_proposals[operator]
    child = apply(seed, proposal)  # loads: templates parse, agent.py compiles, entrypoint found
    assert child.manifest.harness.proposer == f"operators:{operator}"
    assert child.manifest.runtime.limits == seed.manifest.runtime.limits
    assert "Labels:" in child.render("system.j2")
    assert child.render("user.j2", task={"text": "hi there"}).strip() == "hi there"
    config = json.loads((child.path / "agent_config.json").read_text())
    assert "text_field" not in config  # every input column, one per line, as init's user.j2 renders
    assert json.loads((child.path / "data" / "labels.json").read_text()) == sorted(
        {str(t.expected) for t in train_tasks()}
    )


def test_labels_and_demos_come_from_train_only(tmp_path: Path) -> None:
    seed = seed_version(tmp_path)
    train = list(train_tasks())
    few = [t for t in train if t.expected in ("card_arrival", "age_limit", "atm_support")]
    proposals = by_name(OperatorsProposer().propose(proposal_input(seed, tasks=few, failing=[]), ALL))
    labels = json.loads(proposals["constrained_output"].edits["data/labels.json"] or "")
    assert labels == ["age_limit", "atm_support", "card_arrival"]
    index = json.loads(proposals["retrieval_demos"].edits["data/retrieval_index.json"] or "")
    assert set(index["texts"]) <= {t.input["text"] for t in few}
    assert "failed_fewshot" not in proposals  # no failing traces, nothing to show


def test_an_applied_operator_is_not_proposed_again_and_operators_compose(tmp_path: Path) -> None:
    seed = seed_version(tmp_path)
    proposer = OperatorsProposer()
    first = by_name(proposer.propose(proposal_input(seed), ALL))["constrained_output"]
    v2 = apply(seed, first)
    after = [p.meta["operator"] for p in proposer.propose(proposal_input(v2), ALL)]
    assert "constrained_output" not in after
    assert "snap_to_label" not in after  # redundant once every answer is a label
    assert after[:2] == ["retrieval_demos", "candidate_labels"]  # candidates need the enum: now offered

    second = by_name(proposer.propose(proposal_input(v2), ALL))["retrieval_demos"]
    assert "agent.py" not in second.edits  # the orchestration is installed once, then only config/data
    v3 = apply(v2, second)
    config = json.loads((v3.path / "agent_config.json").read_text())
    assert config["constrained"] is True and config["retrieval_k"] == 6
    again = [p.meta["operator"] for p in proposer.propose(proposal_input(v3), ALL)]
    assert "retrieval_demos" not in again and "constrained_output" not in again


def test_rejected_mechanisms_are_skipped(tmp_path: Path) -> None:
    seed = seed_version(tmp_path)
    proposer = OperatorsProposer()
    first = proposer.propose(proposal_input(seed), 1)[0]
    assert first.meta["operator"] == "retrieval_demos"
    inp = proposal_input(seed, history=[rejected(first)])
    names = [p.meta["operator"] for p in proposer.propose(inp, ALL)]
    assert names[0] == "constrained_output"
    assert "retrieval_demos" not in names


def test_proposals_are_deterministic_given_the_seed(tmp_path: Path) -> None:
    seed = seed_version(tmp_path)
    failing = [failing_trace(t) for t in list(train_tasks())[::401]]  # 25 failures, many labels
    a = OperatorsProposer().propose(proposal_input(seed, seed=3, failing=failing), ALL)
    b = OperatorsProposer().propose(proposal_input(seed, seed=3, failing=failing), ALL)
    assert [p.model_dump() for p in a] == [p.model_dump() for p in b]
    fewshot = OperatorsProposer([FailedFewShot()])
    demos = {
        s: fewshot.propose(proposal_input(seed, seed=s, failing=failing), 1)[0].edits["data/demos.json"]
        for s in range(4)
    }
    assert len(json.loads(demos[0] or "")) == 8
    assert len(set(demos.values())) > 1  # the seed picks which failed labels are shown


def test_edits_outside_the_editable_files_are_not_proposed(tmp_path: Path) -> None:
    seed = seed_version(tmp_path)
    editable = tuple(g for g in EDITABLE if g != "data/*")
    inp = proposal_input(seed, editable=editable)
    assert OperatorsProposer().propose(inp, ALL) == []  # installing the agent writes data/labels.json


def test_voting_fits_the_frozen_step_limit(tmp_path: Path, seed_proposals: dict[str, Proposal]) -> None:
    seed = seed_version(tmp_path)
    assert seed.manifest.runtime.limits.max_steps == 4
    proposal = seed_proposals["self_consistency"]
    assert json.loads(proposal.edits["agent_config.json"] or "")["vote_n"] == 3
    v2 = apply(seed, proposal)
    tuned = by_name(OperatorsProposer().propose(proposal_input(v2), ALL))["tuned_sampling"]
    assert json.loads(tuned.edits["agent_config.json"] or "")["vote_temperature"] == 0.3


def test_free_text_suites_get_no_label_operators() -> None:
    tasks = [Task(id=f"t{i}", input={"question": f"q{i}"}, expected=f"answer {i}") for i in range(50)]
    inp = ProposalInput(
        agent="qa",
        version_label="qa@v0001",
        files={"agent.py": "def run(task, ctx):\n    return ''\n"},
        editable=EDITABLE,
        suite="qa",
        failing_traces=[],
        train_tasks=tasks,
    )
    assert OperatorsProposer().propose(inp, ALL) == []


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "cancel",
            "description": "Cancel an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "Id."}},
            },
        },
    },
]


def _tool_trace(events: list[ToolCallEvent], passed: bool) -> Trace:
    key = RolloutKey(version_hash="h", suite="retail", split="train", task_id="t1", trial=0, model="m")
    return Trace(run_id="r", key=key, task_input={"q": "x"}, events=list(events), passed=passed)


def test_tool_suites_get_tool_description_operators(tmp_path: Path) -> None:
    failing = _tool_trace(
        [
            ToolCallEvent(name="get_order", args={"order_id": "12"}, error="order id must start with '#'"),
            ToolCallEvent(name="cancel", args={}, result={"error": "missing order_id"}),
        ],
        passed=False,
    )
    worked = ToolCallEvent(name="get_order", args={"order_id": "#W123"}, result={"ok": 1})
    passing = _tool_trace([worked], True)
    tasks = [Task(id=f"t{i}", input={"q": "x"}, expected={"db": i}) for i in range(5)]
    inp = ProposalInput(
        agent="retail",
        version_label="retail@v0001",
        editable=EDITABLE,
        suite="retail",
        files={"agent.py": "def run(task, ctx):\n    return ''\n", "tools.json": json.dumps(TOOLS)},
        failing_traces=[failing],
        passing_traces=[passing],
        train_tasks=tasks,
    )
    proposals = by_name(OperatorsProposer().propose(inp, ALL))
    assert list(proposals) == ["tool_error_notes", "tool_param_descriptions"]
    noted = proposals["tool_error_notes"].edits["tools.json"] or ""
    notes = {t["function"]["name"]: t["function"] for t in json.loads(noted)}
    assert "order id must start with '#'" in notes["get_order"]["description"]
    assert "missing order_id" in notes["cancel"]["description"]
    params = json.loads(proposals["tool_param_descriptions"].edits["tools.json"] or "")
    described = params[0]["function"]["parameters"]["properties"]["order_id"]["description"]
    assert described.startswith("Required string") and '"#W123"' in described
    assert params[1]["function"]["parameters"]["properties"]["order_id"]["description"] == "Id."

    # Once applied (the pitfalls are in the descriptions), the notes are not proposed again.
    inp2 = inp.model_copy(update={"files": {**inp.files, "tools.json": noted}})
    assert "tool_error_notes" not in by_name(OperatorsProposer().propose(inp2, ALL))


def test_a_failing_operator_costs_only_its_own_proposal(tmp_path: Path) -> None:
    class Broken:
        name = "broken"
        mechanism = "broken"

        def propose(self, ws: object) -> Proposal | None:
            raise RuntimeError("bug")

    from harness_opt.propose.operators.output import ConstrainedOutput

    seed = seed_version(tmp_path)
    out = OperatorsProposer([Broken(), ConstrainedOutput()]).propose(proposal_input(seed), 5)
    assert [p.meta["operator"] for p in out] == ["constrained_output"]
    assert isinstance(seed, HarnessVersion)
