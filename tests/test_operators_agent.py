"""The produced agent.py, run in-process with a fake stdlib context: each operator's orchestration works."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness_opt.harness import HarnessVersion, create_version
from harness_opt.propose.operators import OperatorsProposer
from tests.support.operators import apply, proposal_input, run_agent, seed_version, train_tasks

Messages = list[dict[str, Any]]
Versions = dict[str, HarnessVersion]
LONGEST = len("balance_not_updated_after_cheque_or_cash_deposit")


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    """The seed, each single operator applied to it, and two compositions; built once per module."""
    seed = seed_version(tmp_path_factory.mktemp("agent"))
    proposer = OperatorsProposer()
    first = {p.meta["operator"]: p for p in proposer.propose(proposal_input(seed), 50)}
    out = {"seed": seed, **{name: apply(seed, p) for name, p in first.items()}}
    constrained = out["constrained_output"]
    on_top = {p.meta["operator"]: p for p in proposer.propose(proposal_input(constrained), 50)}
    out["constrained+retrieval"] = apply(constrained, on_top["retrieval_demos"])
    out["constrained+candidates"] = apply(constrained, on_top["candidate_labels"])
    return out


def labels() -> list[str]:
    return sorted({str(t.expected) for t in train_tasks()})


def last_demo_answer(messages: Messages, params: dict[str, Any]) -> str:
    """A model that copies the answer of the demo right before the question."""
    assert messages[-1]["role"] == "user" and messages[-2]["role"] == "assistant"
    return str(messages[-2]["content"])


def test_the_installed_agent_with_no_switches_behaves_like_the_seed(versions: Versions) -> None:
    snapping = versions["snap_to_label"]
    config = json.loads((snapping.path / "agent_config.json").read_text())
    edits: dict[str, str | None] = {"agent_config.json": json.dumps({**config, "snap": False})}
    version = create_version(snapping, edits, proposer="human", hypothesis="all off", changes=[])
    output, ctx = run_agent(version, "where is my card?", lambda m, p: "  card_arrival \n")
    assert output == "card_arrival"
    [(messages, params)] = ctx.calls
    assert params == {}
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == versions["seed"].render("system.j2")
    assert messages[1]["content"] == "where is my card?"


def test_constrained_output_sends_the_label_enum_and_parses_json(versions: Versions) -> None:
    def reply(messages: Messages, params: dict[str, Any]) -> str:
        schema = params["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["label"]["enum"] == labels()
        assert schema["required"] == ["label"]
        return json.dumps({"label": "card_arrival"})

    output, ctx = run_agent(versions["constrained_output"], "where is my card?", reply)
    assert output == "card_arrival"
    assert ctx.calls[0][1]["max_tokens"] >= LONGEST


def test_retrieval_shows_the_nearest_train_examples_most_similar_last(versions: Versions) -> None:
    train = list(train_tasks())
    for task in (train[123], train[4567], train[9876]):
        output, ctx = run_agent(versions["retrieval_demos"], task.input["text"], last_demo_answer)
        assert output == task.expected
        messages = ctx.calls[0][0]
        assert messages[-3]["content"] == task.input["text"]  # the copied train message is the nearest
        assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * 6
    # The per-task part comes after a prefix that is identical for every task (KV-cache friendly).
    _, a = run_agent(versions["retrieval_demos"], train[1].input["text"], last_demo_answer)
    _, b = run_agent(versions["retrieval_demos"], train[2000].input["text"], last_demo_answer)
    assert a.calls[0][0][0] == b.calls[0][0][0] and a.calls[0][0][1] != b.calls[0][0][1]


def test_composed_constrained_and_retrieval_are_both_active(versions: Versions) -> None:
    task = list(train_tasks())[321]

    def reply(messages: Messages, params: dict[str, Any]) -> str:
        assert "response_format" in params
        demo = json.loads(messages[-2]["content"])  # demos answer in the constrained shape
        return json.dumps(demo)

    output, ctx = run_agent(versions["constrained+retrieval"], task.input["text"], reply)
    assert output == task.expected
    assert len(ctx.calls[0][0]) == 2 + 2 * 6


def test_candidate_labels_narrow_the_enum_to_the_neighbours_labels(versions: Versions) -> None:
    task = list(train_tasks())[777]
    seen: list[list[str]] = []

    def reply(messages: Messages, params: dict[str, Any]) -> str:
        enum = params["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
        seen.append(enum)
        return json.dumps({"label": enum[0]})

    output, ctx = run_agent(versions["constrained+candidates"], task.input["text"], reply)
    [enum] = seen
    assert 1 <= len(enum) <= 10 and len(set(enum)) == len(enum)
    assert enum[0] == task.expected == output  # the copied train message ranks its own label first
    assert len(ctx.calls[0][0]) == 2  # candidates only narrow the enum; no demos were switched on
    assert ctx.logs and ctx.logs[0][1]["labels"] == enum


@pytest.mark.parametrize(
    ("answers", "expected"), [(["a", "b", "b"], "b"), (["a", "b", "c"], "a"), (["c", "c", "b"], "c")]
)
def test_voting_takes_the_majority_and_the_greedy_answer_breaks_ties(
    versions: Versions, answers: list[str], expected: str
) -> None:
    script = iter(answers)
    output, ctx = run_agent(versions["self_consistency"], "hello", lambda m, p: next(script))
    assert output == expected
    params = [p for _, p in ctx.calls]
    assert "temperature" not in params[0] and "seed" not in params[0]  # greedy: harness.toml default
    assert [(p["temperature"], p["seed"]) for p in params[1:]] == [(0.7, 1), (0.7, 2)]


def test_failed_fewshot_demos_sit_in_the_static_prefix(versions: Versions) -> None:
    version = versions["failed_fewshot"]
    demos = json.loads((version.path / "data" / "demos.json").read_text())
    _, ctx = run_agent(version, "hello", lambda m, p: "x")
    messages = ctx.calls[0][0]
    turns = messages[1:-1]
    assert [t["content"] for t in turns[::2]] == [d["text"] for d in demos]
    assert [t["content"] for t in turns[1::2]] == [d["label"] for d in demos]
    gold = {t.input["text"]: t.expected for t in train_tasks()}
    assert all(gold[d["text"]] == d["label"] for d in demos)  # demos carry their train gold labels


def test_glossary_is_appended_to_the_system_prompt(versions: Versions) -> None:
    _, ctx = run_agent(versions["label_glossary"], "hello", lambda m, p: "x")
    system = ctx.calls[0][0][0]["content"]
    assert system.startswith(versions["seed"].render("system.j2"))
    assert "Label guide" in system and "- card_arrival: e.g." in system
    assert system.count(": e.g.") == len(labels())


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("Card Arrival.", "card_arrival"), ("card arival", "card_arrival"), ("top up limits", "top_up_limits")],
)
def test_snap_maps_free_text_to_the_closest_label(versions: Versions, reply: str, expected: str) -> None:
    output, _ = run_agent(versions["snap_to_label"], "hello", lambda m, p: reply)
    assert output == expected


def test_tuned_sampling_stops_free_text_at_a_newline(versions: Versions) -> None:
    _, ctx = run_agent(versions["tuned_sampling"], "hello", lambda m, p: "card_arrival")
    params = ctx.calls[0][1]
    assert params["stop"] == ["\n"] and params["max_tokens"] >= LONGEST


def test_operators_never_write_into_their_parent(versions: Versions) -> None:
    seed = versions["seed"]
    assert HarnessVersion.load(seed.path).hash == seed.hash
    seed_files = ["agent.py", "harness.toml", "prompts/system.j2", "prompts/user.j2", "tools.json"]
    on_disk = sorted(p.relative_to(seed.path).as_posix() for p in seed.path.rglob("*") if p.is_file())
    assert on_disk == seed_files
