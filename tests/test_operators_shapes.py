"""The operators on suites of every shape the [data] format allows, built through the user path
(`init` + suite.toml): what each operator applies to, what it declines, and what the installed agent
then does (run in-process with a scripted model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.propose.operators import OperatorsProposer
from harness_opt.propose.operators.assets import classifier_agent, task_agent
from harness_opt.propose.operators.shape import detect_shape, input_text
from harness_opt.records import Task
from harness_opt.suites.loader import load_suite
from tests.support.user_suites import apply, looping_trace, proposal_input, run_agent, scaffold, trace

ALL = 50


def names(proposals: list[Proposal]) -> list[str]:
    return [p.meta["operator"] for p in proposals]


def by_name(proposals: list[Proposal]) -> dict[str, Proposal]:
    return {p.meta["operator"]: p for p in proposals}


# ------------------------------------------------------------------------------------------ shapes


def test_the_shape_of_each_user_suite_comes_from_its_train_tasks(tmp_path: Path) -> None:
    _, intents = scaffold("intents", tmp_path)
    shape = detect_shape(load_suite(intents).tasks("train"))
    assert shape.kind == "classification" and len(shape.labels) == 20 and shape.columns == ["message"]

    _, expenses = scaffold("expenses", tmp_path)
    shape = detect_shape(load_suite(expenses).tasks("train"))
    fields = {f.name: f for f in shape.fields}
    assert shape.kind == "json" and list(fields) == ["category", "amount", "currency"]
    assert set(fields["category"].values) == {"transport", "meals", "lodging", "office", "software"}
    assert set(fields["currency"].values) == {"EUR", "USD", "GBP", "CHF"}
    assert fields["amount"].values == () and fields["amount"].copied == 1.0 and fields["amount"].pattern
    assert fields["currency"].pattern is None  # '€' and 'pounds' are not copied verbatim

    _, acme = scaffold("acme-support", tmp_path)
    shape = detect_shape(load_suite(acme).tasks("train"))
    order = {f.name: f for f in shape.fields}["order_id"]
    assert shape.kind == "json" and order.pattern is not None
    assert json.loads(json.dumps(order.pattern))  # a plain regex string the sandboxed agent can use

    free = [
        Task(id=f"t{i}", input={"q": f"question {i}"}, expected=f"a free answer number {i}") for i in range(9)
    ]
    assert detect_shape(free).kind == "text"
    judged = [Task(id=f"t{i}", input={"q": f"question {i}"}) for i in range(9)]
    assert detect_shape(judged).kind == "text" and not detect_shape(judged).has_answers


def test_init_and_every_agent_agree_on_the_input_text(tmp_path: Path) -> None:
    """The text retrieval and demos use is what init's user.j2 renders: each column on its line."""
    seed, _ = scaffold("intents", tmp_path)
    task = {"subject": "Card", "message": "where is my card?", "count": 3}
    rendered = seed.render("user.j2", task=task).rstrip("\n")
    assert rendered == input_text(task) == task_agent.input_text(task) == "Card\nwhere is my card?\n3"
    assert classifier_agent.DEFAULTS["text_field"] is None
    classifier_agent.CONFIG["text_field"] = None
    assert classifier_agent.input_text(task) == rendered


# --------------------------------------------------------------------- what applies, what declines


def test_classification_suite_made_by_init_gets_the_label_operators(tmp_path: Path) -> None:
    seed, suite = scaffold("intents", tmp_path)
    proposals = OperatorsProposer().propose(proposal_input(seed, suite), ALL)
    assert names(proposals)[:2] == ["retrieval_demos", "constrained_output"]
    assert not {"constrained_json", "field_patterns", "repeat_guard", "final_answer_call"} & set(
        names(proposals)
    )
    child = apply(seed, proposals[0])
    assert (
        json.loads((child.path / "data" / "labels.json").read_text())
        == detect_shape(load_suite(suite).tasks("train")).labels
    )
    assert child.render("system.j2") == seed.render("system.j2")  # the user's prompt is kept


def test_json_suite_made_by_init_gets_the_answer_operators_and_no_label_ones(tmp_path: Path) -> None:
    seed, suite = scaffold("expenses", tmp_path)
    proposals = by_name(OperatorsProposer().propose(proposal_input(seed, suite), ALL))
    assert list(proposals)[:3] == ["field_patterns", "retrieval_demos", "constrained_json"]
    assert not {"constrained_output", "candidate_labels", "label_glossary", "snap_to_label"} & set(proposals)
    assert "repeat_guard" not in proposals  # no tools
    schema = json.loads(proposals["constrained_json"].edits["data/answer_schema.json"] or "")
    assert schema["required"] == ["category", "amount", "currency"]
    assert schema["properties"]["currency"]["enum"] == ["GBP", "EUR", "USD", "CHF"]
    assert "enum" not in schema["properties"]["amount"]


def test_tool_suite_made_by_init_gets_loop_operators_only_with_evidence(tmp_path: Path) -> None:
    seed, suite = scaffold("acme-support", tmp_path)
    train = load_suite(suite).tasks("train")
    quiet = names(OperatorsProposer().propose(proposal_input(seed, suite), ALL))
    assert "repeat_guard" not in quiet and "final_answer_call" in quiet
    looping = [looping_trace(t, "lookup_order", {"order_id": "A1001"}) for t in train[:3]]
    loud = names(OperatorsProposer().propose(proposal_input(seed, suite, failing=looping), ALL))
    assert "repeat_guard" in loud and "field_patterns" in loud and "constrained_json" in loud


def test_a_hand_written_agent_is_never_replaced(tmp_path: Path) -> None:
    seed, suite = scaffold("acme-support", tmp_path)
    inp = proposal_input(seed, suite)
    files = dict(inp.files)
    files["agent.py"] = (
        "def run(task, ctx):\n    return ctx.llm([{'role': 'user', 'content': 'hi'}])['content']\n"
    )
    proposals = OperatorsProposer().propose(inp.model_copy(update={"files": files}), ALL)
    assert all("agent.py" not in p.edits for p in proposals)
    assert set(names(proposals)) <= {"tool_error_notes", "tool_param_descriptions"}


def test_a_free_text_suite_without_answers_bootstraps_demos_from_passing_rollouts(tmp_path: Path) -> None:
    seed, suite = scaffold("expenses", tmp_path)
    tasks = [Task(id=f"t{i}", input={"note": f"write a haiku about {i}"}) for i in range(6)]
    inp = proposal_input(seed, suite).model_copy(update={"train_tasks": tasks})
    assert OperatorsProposer().propose(inp, ALL) == []  # nothing to learn from yet
    passing = [trace(tasks[0], output="an old silent pond", passed=True)]
    proposals = by_name(OperatorsProposer().propose(inp.model_copy(update={"passing_traces": passing}), ALL))
    assert list(proposals) == ["passing_demos"]
    demos = json.loads(proposals["passing_demos"].edits["data/demos.json"] or "")
    assert demos == [{"input": "write a haiku about 0", "answer": "an old silent pond"}]


# ----------------------------------------------------------------------- the installed task agent


def test_task_agent_constrains_retrieves_and_fills_fields(tmp_path: Path) -> None:
    seed, suite = scaffold("expenses", tmp_path)
    version = seed
    for name in ("field_patterns", "constrained_json", "retrieval_demos"):
        version = apply(
            version, by_name(OperatorsProposer().propose(proposal_input(version, suite), ALL))[name]
        )
    config = json.loads((version.path / "agent_config.json").read_text())
    assert (config["patterns"], config["schema"], config["retrieval_k"]) == (True, True, 6)
    train = load_suite(suite).tasks("train")

    def reply(messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        schema = params["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["category", "amount", "currency"]
        nearest = json.loads(messages[-2]["content"])  # demos are (input, answer JSON) turns
        return json.dumps({**nearest, "amount": "wrong"})

    note = train[5].input["note"]
    output, ctx = run_agent(version, {"note": note}, reply)
    answer = json.loads(output)
    assert answer["amount"] == train[5].expected["amount"]  # filled from the note by the pattern
    assert answer["category"] == train[5].expected["category"]  # copied from the nearest demo: itself
    assert [m["role"] for m in ctx.calls[0][0]] == ["system"] + ["user", "assistant"] * 6 + ["user"]


def test_task_agent_stops_a_repeating_tool_loop_and_answers_without_tools(tmp_path: Path) -> None:
    seed, suite = scaffold("acme-support", tmp_path)
    train = load_suite(suite).tasks("train")
    looping = [looping_trace(t, "lookup_order", {"order_id": "A1001"}) for t in train[:2]]
    version = seed
    for name in ("repeat_guard", "constrained_json"):
        proposals = by_name(OperatorsProposer().propose(proposal_input(version, suite, failing=looping), ALL))
        version = apply(version, proposals[name])

    def reply(messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        if "tools" in params:
            return {"tool_calls": [{"name": "lookup_order", "arguments": '{"order_id": "A1003"}'}]}
        assert "response_format" in params  # the answer call: no tools, schema-constrained
        return '{"action": "refund", "order_id": "A1003"}'

    output, ctx = run_agent(
        version, {"ticket": "desk lamp A1003 is a toaster"}, reply, lambda n, a: {"ok": 1}
    )
    assert json.loads(output) == {"action": "refund", "order_id": "A1003"}
    assert ctx.tool_calls == [("lookup_order", {"order_id": "A1003"})]  # the repeat was not executed
    assert len(ctx.calls) == 3 and ctx.logs[0].startswith("repeat guard")


def test_the_scaffold_loop_and_the_task_agent_with_no_switches_behave_alike(tmp_path: Path) -> None:
    seed, suite = scaffold("acme-support", tmp_path)
    version = apply(
        seed, by_name(OperatorsProposer().propose(proposal_input(seed, suite), ALL))["final_answer_call"]
    )
    config = json.loads((version.path / "agent_config.json").read_text())
    (version.path / "agent_config.json").write_text(json.dumps({**config, "final_call": False}))
    script = [
        {"tool_calls": [{"name": "lookup_order", "arguments": '{"order_id": "A1002"}'}]},
        '{"action": "deny", "order_id": "A1002"}',
    ]
    outputs = []
    for v in (seed, version):
        replies = iter(script)
        out, ctx = run_agent(
            v, {"ticket": "phone case A1002"}, lambda m, p, r=replies: next(r), lambda n, a: {"x": 1}
        )
        outputs.append((out, [m["role"] for m in ctx.calls[-1][0]], ctx.tool_calls))
    assert json.loads(outputs[0][0]) == json.loads(outputs[1][0])
    assert outputs[0][1:] == outputs[1][1:]


@pytest.mark.parametrize("shape", ["intents", "expenses", "acme-support"])
def test_every_operator_output_loads_renders_and_passes_the_scan(tmp_path: Path, shape: str) -> None:
    from harness_opt.search.config import AGENT_HARNESS_EDITABLE
    from harness_opt.trust.scan import scan_candidate

    seed, suite_dir = scaffold(shape, tmp_path)
    suite = load_suite(suite_dir)
    train = suite.tasks("train")
    failing = [looping_trace(t, "lookup_order", {"order_id": "A1001"}) for t in train[:2]]
    passing = [trace(train[3], output=json.dumps(train[3].expected), passed=True)]
    inp: ProposalInput = proposal_input(seed, suite_dir, failing=failing, passing=passing)
    proposals = OperatorsProposer().propose(inp, ALL)
    assert len(proposals) >= 3
    for proposal in proposals:
        child = apply(seed, proposal)
        child.render("system.j2", task=dict(train[0].input))
        report = scan_candidate(child, seed, suite, editable=AGENT_HARNESS_EDITABLE)
        assert not report.blocks_incumbent, (proposal.mechanism, report.summary())


def test_at_the_loop_guard_the_task_agent_answers_as_init_did_plus_the_learned_fields(tmp_path: Path) -> None:
    """No extra model call when init's guard ends the loop (the user's guard and wall time hold); the
    learned pattern still fills the order id from the ticket."""
    seed, suite = scaffold("acme-support", tmp_path)
    agent = seed.path / "agent.py"
    agent.write_text(agent.read_text().replace("MAX_MODEL_CALLS = 8", "MAX_MODEL_CALLS = 3"))
    seed = type(seed).load(seed.path)
    version = apply(
        seed, by_name(OperatorsProposer().propose(proposal_input(seed, suite), ALL))["field_patterns"]
    )
    assert json.loads((version.path / "agent_config.json").read_text())["max_rounds"] == 3

    def reply(messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        return {"tool_calls": [{"name": "lookup_order", "arguments": '{"order_id": "A1005"}'}]}

    output, ctx = run_agent(version, {"ticket": "My TV (A1005) arrived broken"}, reply, lambda n, a: {"x": 1})
    assert json.loads(output) == {"order_id": "A1005"} and len(ctx.calls) == 3
