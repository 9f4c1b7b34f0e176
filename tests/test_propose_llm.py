"""The `llm` proposer through dspy and the real litellm path (scripted meta-model), and trace evidence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness_opt.errors import ModelError
from harness_opt.propose.base import Proposal, ProposalInput, Proposer
from harness_opt.propose.evidence import estimate_tokens, render_trace, select_traces
from harness_opt.propose.llm import LLMProposer, restrict_edits
from harness_opt.records import Task
from harness_opt.testing.scripted import scripted_model
from tests.support.meta import EDITABLE, FILES, make_input, make_trace
from tests.support.optimize import chat_reply

NEW_PROMPT = "Classify the query. List of labels: {{ labels }}. Answer with the label only.\n"
NEW_TOOLS = json.dumps(
    [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
)
NEW_AGENT = "def run(task, ctx):\n    return ctx.llm([{'role': 'user', 'content': task['q']}])['content']\n"


def test_three_candidates_edit_prompt_tools_and_agent_code() -> None:
    replies = [
        chat_reply("label list in prompt", [{"path": "prompts/system.j2", "content": NEW_PROMPT}]),
        chat_reply("lookup tool", [{"path": "tools.json", "content": NEW_TOOLS}]),
        chat_reply("strip output", [{"path": "agent.py", "content": NEW_AGENT}]),
    ]
    with scripted_model("meta-3", replies, cost_per_token=1e-6) as meta:
        proposer = LLMProposer(meta.model, mode="single")
        assert isinstance(proposer, Proposer)
        out = proposer.propose(make_input(), 3)

    assert [p.edits for p in out] == [
        {"prompts/system.j2": NEW_PROMPT},
        {"tools.json": NEW_TOOLS},
        {"agent.py": NEW_AGENT},
    ]
    assert [p.mechanism for p in out] == ["label list in prompt", "lookup tool", "strip output"]
    assert all(isinstance(p, Proposal) and p.proposer == "llm" for p in out)
    assert out[0].hypothesis == "it will help"
    assert out[0].changes == ["change label list in prompt"]
    meta_info = out[0].meta
    assert meta_info["meta_calls"] == 1
    assert meta_info["meta_tokens_in"] > 100 and meta_info["meta_tokens_out"] > 0
    assert meta_info["meta_cost_usd"] == pytest.approx(
        (meta_info["meta_tokens_in"] + meta_info["meta_tokens_out"]) * 1e-6
    )
    assert meta_info["evidence"]["failing_shown"] == 2
    assert proposer.notes == []


def test_prompt_holds_raw_failing_traces_history_and_earlier_mechanisms() -> None:
    replies = [
        chat_reply("label list", [{"path": "prompts/system.j2", "content": NEW_PROMPT}]),
        chat_reply("strip output", [{"path": "agent.py", "content": NEW_AGENT}]),
    ]
    with scripted_model("meta-prompt", replies) as meta:
        proposer = LLMProposer(meta.model, mode="single")
        proposer.propose(make_input(), 2)
        calls = meta.calls

    assert len(calls) == 2
    first = "\n".join(m["content"] for m in calls[0].messages)
    # Raw trace content: a tool result, the scorer feedback, the train gold, whole messages.
    for needle in (
        "RESULT-t1",
        "RESULT-t2",
        "expected card_lost, got card_arrival",
        "expected (train gold): top_up",
        "query for t2",
        "HIST-HYPOTHESIS",
        "no significant gain",
        "0.6100",
        FILES["agent.py"].strip(),
        "prompts/*.j2",
    ):
        assert needle in first, needle
    second = "\n".join(m["content"] for m in calls[1].messages)
    assert "label list" in second.split("avoid_mechanisms")[-1]
    assert calls[0].params["temperature"] == 0.7


def test_proposal_input_cannot_carry_val_or_test_data() -> None:
    fields = set(ProposalInput.model_fields)
    assert {f for f in fields if "val" in f or "test" in f} == {"val_score", "retest_val_limit"}
    # a number of tasks and an aggregate score: neither can carry a val task, trace or answer
    assert ProposalInput.model_fields["val_score"].annotation == float | None
    assert ProposalInput.model_fields["retest_val_limit"].annotation == int | None


def test_unparseable_reply_gives_no_proposal_and_does_not_raise() -> None:
    def garbage(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        return "Sure! I think you should improve the prompt. {not json"

    with scripted_model("meta-garbage", garbage) as meta:
        proposer = LLMProposer(meta.model, mode="single")
        out = proposer.propose(make_input(), 2)
        attempts = meta.attempts

    assert out == []
    assert len(proposer.notes) == 2 and "unusable" in proposer.notes[0]
    assert attempts >= 2  # each candidate really asked the model


def test_one_bad_reply_loses_one_candidate_only() -> None:
    replies = [
        "no fields here",
        "still none",  # ChatAdapter, then its JSONAdapter fallback
        chat_reply("label list", [{"path": "prompts/system.j2", "content": NEW_PROMPT}]),
    ]
    with scripted_model("meta-mixed", replies) as meta:
        out = LLMProposer(meta.model, mode="single").propose(make_input(), 2)
    assert [p.mechanism for p in out] == ["label list"]


def test_edits_outside_editable_globs_are_dropped_with_a_note() -> None:
    replies = [
        chat_reply(
            "mixed",
            [
                {"path": "prompts/system.j2", "content": NEW_PROMPT},
                {"path": "harness.toml", "content": "[harness]\nname='x'\n"},
                {"path": "../tasks/banking77/val.jsonl", "content": "x"},
            ],
        ),
        chat_reply("frozen only", [{"path": "harness.toml", "content": "x"}]),
    ]
    with scripted_model("meta-frozen", replies) as meta:
        proposer = LLMProposer(meta.model, mode="single")
        out = proposer.propose(make_input(), 2)

    assert len(out) == 1
    assert out[0].edits == {"prompts/system.j2": NEW_PROMPT}
    dropped = out[0].meta["dropped_edits"]
    assert any("harness.toml: not editable" in d for d in dropped)
    assert any("../tasks" in d and "not a relative path" in d for d in dropped)
    assert any("no usable edit" in n for n in proposer.notes)


def test_identical_candidates_are_not_returned_twice() -> None:
    reply = chat_reply("label list", [{"path": "prompts/system.j2", "content": NEW_PROMPT}])
    with scripted_model("meta-dup", [reply, reply]) as meta:
        proposer = LLMProposer(meta.model, mode="single")
        out = proposer.propose(make_input(), 2)
    assert len(out) == 1 and "same edits" in proposer.notes[0]


def test_restrict_edits_normalises_paths_and_skips_no_ops() -> None:
    kept, notes = restrict_edits(
        {"./prompts/system.j2": "new", "agent.py": FILES["agent.py"], "/etc/passwd": "x"}, FILES, EDITABLE
    )
    assert kept == {"prompts/system.j2": "new"}
    assert len(notes) == 2


def test_unroutable_meta_model_is_a_user_error() -> None:
    with pytest.raises(ModelError, match="cannot route"):
        LLMProposer("no-such-provider-model")


# --- evidence: raw whole traces under a budget -------------------------------------------------


def test_render_trace_is_raw_and_whole_without_repeating_the_resent_conversation() -> None:
    text = render_trace(
        make_trace("t9", label="a", got="b", error="crash"), Task(id="t9", input={}, expected="a")
    )
    for needle in (
        "query for t9",
        "Classify the banking query.",
        "<tool_call lookup>",
        "RESULT-t9",
        "final output: b",
        "expected a, got b",
        "run error: crash",
        "expected (train gold): a",
    ):
        assert needle in text, needle
    assert text.count("Classify the banking query.") == 1  # the second call's resent prefix is referenced
    assert "(the 3 messages above, then:)" in text


def test_selection_keeps_whole_traces_within_budget_and_prefers_diverse_failures() -> None:
    failing = [
        make_trace(f"{kind}{i}", label=kind, got="other") for kind in ("a", "b", "c") for i in range(6)
    ]
    tasks = [Task(id=t.key.task_id, input={}, expected=t.key.task_id[0]) for t in failing]
    one = estimate_tokens(render_trace(failing[0], tasks[0])) + 1
    sel = select_traces(failing, [], tasks, budget_tokens=3 * one + 5, seed=1)

    assert len(sel.failing) == 3 and sel.tokens <= 3 * one + 5
    assert {r.trace.key.task_id[0] for r in sel.failing} == {"a", "b", "c"}  # one per failure kind
    assert sel.failure_kinds_total == 3 and sel.failure_kinds_shown == 3
    for r in sel.failing:  # whole: identical to rendering the trace alone
        task = next(t for t in tasks if t.id == r.trace.key.task_id)
        assert r.text == render_trace(r.trace, task)
    assert "Showing 3 of 18 failing train traces (15 left out" in sel.failing_text()

    again = select_traces(failing, [], tasks, budget_tokens=3 * one + 5, seed=1)
    assert [r.trace.key.task_id for r in again.failing] == [r.trace.key.task_id for r in sel.failing]
    picks = {
        tuple(r.trace.key.task_id for r in select_traces(failing, [], tasks, 3 * one + 5, seed=s).failing)
        for s in range(8)
    }
    assert len(picks) > 1  # the seed varies which traces of each kind are shown


def test_selection_skips_a_big_trace_for_smaller_ones_and_adds_passing() -> None:
    big = make_trace("big", label="x", got="y", padding=4000)
    small = [make_trace(f"s{i}", label=f"l{i}", got="y") for i in range(3)]
    passing = [make_trace("p1", label="z", got="z", passed=True)]
    sel = select_traces([big, *small], passing, [], budget_tokens=2000, seed=0)
    assert {r.trace.key.task_id for r in sel.failing} == {"s0", "s1", "s2"}
    assert [r.trace.key.task_id for r in sel.passing] == ["p1"]
    assert sel.tokens <= 2000 and not sel.truncated


def test_when_no_trace_fits_one_is_cut_and_marked() -> None:
    big = make_trace("big", label="x", got="y", padding=4000)
    sel = select_traces([big], [], [], budget_tokens=300, seed=0)
    assert sel.truncated and len(sel.failing) == 1
    assert "characters of this trace omitted" in sel.failing[0].text
    assert "cut in the middle" in sel.failing_text()


def test_small_budget_still_sends_whole_traces_to_the_meta_model() -> None:
    failing = [make_trace(f"t{i}", label=f"l{i}", got="y", padding=300) for i in range(10)]
    reply = chat_reply("label list", [{"path": "prompts/system.j2", "content": NEW_PROMPT}])
    with scripted_model("meta-budget", [reply]) as meta:
        proposer = LLMProposer(meta.model, mode="single", context_tokens=6_000)
        out = proposer.propose(make_input(failing_traces=failing), 1)
        prompt = "\n".join(m["content"] for m in meta.calls[0].messages)
    evidence = out[0].meta["evidence"]
    assert 0 < evidence["failing_shown"] < 10
    assert evidence["trace_tokens"] <= evidence["trace_budget_tokens"]
    assert prompt.count("### trace task=") == evidence["failing_shown"] + evidence["passing_shown"]
    assert f"{10 - evidence['failing_shown']} left out" in prompt


# --- with the real seed harness: proposals become loadable versions, a broken one is refused ----------


def test_proposals_on_the_seed_harness_become_versions_and_a_broken_one_is_refused(
    tmp_path: Any, repo_root: Any
) -> None:
    import shutil

    from harness_opt.errors import HarnessError
    from harness_opt.harness.lineage import create_version
    from harness_opt.harness.version import HarnessVersion

    shutil.copytree(repo_root / "harnesses" / "banking77" / "v0001", tmp_path / "banking77" / "v0001")
    seed = HarnessVersion.load(tmp_path / "banking77" / "v0001")
    files = {p: b.decode() for p, b in seed.files().items()}
    prompt = files["prompts/system.j2"] + "\nIf two labels fit, prefer the more specific one.\n"
    tools = json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": "note",
                    "description": "Write a note.",
                    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
                },
            }
        ]
    )
    agent = files["agent.py"].replace(".strip()", ".strip().strip('.')")
    replies = [
        chat_reply("specificity rule", [{"path": "prompts/system.j2", "content": prompt}]),
        chat_reply("note tool", [{"path": "tools.json", "content": tools}]),
        chat_reply("strip trailing dot", [{"path": "agent.py", "content": agent}]),
        chat_reply("broken code", [{"path": "agent.py", "content": "def run(task, ctx)\n    return 1\n"}]),
    ]
    inp = make_input(files=files, editable=("agent.py", "prompts/*", "tools.json", "harness.toml"))
    with scripted_model("meta-seed", replies) as meta:
        out = LLMProposer(meta.model, mode="single").propose(inp, 4)
    assert len(out) == 4

    made = [
        create_version(seed, p.edits, proposer=p.proposer, hypothesis=p.hypothesis, changes=p.changes)
        for p in out[:3]
    ]
    assert [
        v.files()[rel].decode()
        for v, rel in zip(made, ["prompts/system.j2", "tools.json", "agent.py"], strict=True)
    ] == [prompt, tools, agent]
    assert len({v.hash for v in [seed, *made]}) == 4
    with pytest.raises(HarnessError, match="syntax"):
        create_version(seed, out[3].edits, proposer="llm", hypothesis="x", changes=[])
