"""The optimize loop with a scripted task model and scripted proposers: acceptance, invalid candidates,
sealed test, decisions in the ledger, the plot, and the llm proposer editing prompts, tools and code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness_opt.ledger import Ledger
from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from harness_opt.testing import scripted_model
from tests.optimize_fixtures import (
    MARKER,
    SEED,
    SUITE,
    ScriptedProposer,
    gold_by_text,
    marker_rounds,
    prompt_sensitive_responder,
)


@pytest.fixture(scope="module")
def gold() -> dict[str, str]:
    return gold_by_text()


@pytest.fixture
def seed_copy(tmp_path: Path) -> Path:
    """Candidates are written next to their parent: work on a copy so the repo stays clean."""
    dst = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, dst)
    return dst


def test_loop_keeps_only_the_real_gain(seed_copy: Path, gold: dict[str, str]):
    ledger = Ledger()
    proposer = ScriptedProposer(marker_rounds())
    with scripted_model("task", prompt_sensitive_responder(gold)) as model:
        config = OptimizeConfig(
            harness=seed_copy,
            suite=SUITE,
            model=model.model,
            val_limit=30,
            test_limit=20,
            train_sample=6,
            budget=Budget(iterations=6),
        )
        result = optimize(config, ledger=ledger, proposer=proposer)

    outcomes = [(c.mechanism, c.outcome) for c in result.candidates]
    assert outcomes == [
        ("baseline", "baseline"),
        ("syntax-error", "invalid"),
        ("runtime-crash", "invalid"),
        ("outside", "invalid"),
        ("whitespace", "rejected"),
        ("think-first", "accepted"),
    ]
    assert "no further proposals" in result.stop_reason
    assert result.baseline_val.score == 0.0 and result.best_val.score == 1.0
    # the sealed test split: evaluated once at the end, for baseline and best
    assert result.baseline_test is not None and result.best_test is not None
    assert result.best_test.score == 1.0 and result.test_p_value is not None and result.test_p_value < 0.01
    assert MARKER in (Path(result.best_path) / "prompts" / "system.j2").read_text()
    # the proposer never saw val or test: only train traces
    for inp in proposer.inputs:
        assert all(t.key.split == "train" for t in inp.failing_traces + inp.passing_traces)
    test_rows = ledger.query("SELECT count(*) AS n FROM rollouts WHERE split = 'test'")[0]["n"]
    assert test_rows == 40  # 20 tasks x (baseline + best), nothing else touched test
    decisions = ledger.query(
        "SELECT accepted, reason FROM decisions WHERE run_id = ? ORDER BY created", [result.run_id]
    )
    assert [d["accepted"] for d in decisions] == [False, False, False, False, False, True]
    assert "significant gain" in decisions[-1]["reason"]
    assert result.plot is not None and Path(result.plot).stat().st_size > 10_000


def test_noise_blocks_a_gain_smaller_than_the_rerun_spread(seed_copy: Path, gold: dict[str, str]):
    """A model that flips answers between the baseline and its rerun has noise; a tiny gain is refused."""
    import itertools

    counter = itertools.count()
    val_texts = [t for t, _ in gold.items()]

    def flaky(messages, tools, params):
        text = messages[-1]["content"].strip()
        n = next(counter)
        return gold.get(text, "x") if n % 2 == 0 else "wrong"

    rounds = [[marker_rounds()[1][0]]]
    with scripted_model("flaky", flaky) as model:
        config = OptimizeConfig(
            harness=seed_copy,
            suite=SUITE,
            model=model.model,
            val_limit=30,
            train_sample=4,
            budget=Budget(iterations=1),
            skip_test=True,
        )
        result = optimize(config, proposer=ScriptedProposer(rounds))
    assert val_texts  # gold is loaded
    assert result.noise > 0
    assert [c.outcome for c in result.candidates[1:]] == ["rejected"]
    assert result.best_label == result.baseline_label


def test_llm_proposer_edits_prompts_tools_and_code(seed_copy: Path, gold: dict[str, str]):
    from tests.test_propose_llm import chat_reply

    system = (seed_copy / "prompts" / "system.j2").read_text()
    agent = (seed_copy / "agent.py").read_text()
    tools = json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": "lookup_faq",
                    "description": "Look up the FAQ entry for an intent.",
                    "parameters": {"type": "object", "properties": {"intent": {"type": "string"}}},
                },
            }
        ]
    )
    replies = [
        chat_reply("think-first", [{"path": "prompts/system.j2", "content": MARKER + "\n" + system}]),
        chat_reply("faq-tool", [{"path": "tools.json", "content": tools}]),
        chat_reply(
            "lowercase", [{"path": "agent.py", "content": agent.replace(".strip()", ".strip().lower()")}]
        ),
    ]
    with (
        scripted_model("task2", prompt_sensitive_responder(gold)) as task,
        scripted_model("meta", replies) as meta,
    ):
        config = OptimizeConfig(
            harness=seed_copy,
            suite=SUITE,
            model=task.model,
            proposer="llm",
            meta_model=meta.model,
            val_limit=20,
            train_sample=4,
            budget=Budget(iterations=3),
            skip_test=True,
        )
        result = optimize(config)
    by_mechanism = {c.mechanism: c for c in result.candidates[1:]}
    assert set(by_mechanism) == {"think-first", "faq-tool", "lowercase"}
    assert all(
        c.outcome in ("accepted", "rejected") and c.val_score is not None for c in by_mechanism.values()
    ), result.candidates
    assert by_mechanism["think-first"].outcome == "accepted"
    # the meta-model read raw failing train traces
    first_prompt = json.dumps(meta.calls[0].messages)
    assert "expected:" in first_prompt and "not_a_label" in first_prompt
    edited = {p.name for c in by_mechanism.values() for p in [Path(result.best_path)]}
    assert edited


def test_imported_production_traces_reach_the_llm_proposer(seed_copy: Path, gold: dict[str, str]):
    """--evidence: labelled-failed production traces are shown to the meta-agent, beside train traces."""
    from harness_opt.traces_import import import_traces
    from tests.test_propose_llm import chat_reply

    sample = Path(__file__).resolve().parents[1] / "examples" / "acme-support" / "production" / "openai.jsonl"
    stored, traces = import_traces(sample, "openai-jsonl", name="prod", label=False)
    assert traces
    system = (seed_copy / "prompts" / "system.j2").read_text()
    reply = chat_reply("think-first", [{"path": "prompts/system.j2", "content": MARKER + "\n" + system}])
    with (
        scripted_model("task3", prompt_sensitive_responder(gold)) as task,
        scripted_model("meta2", [reply]) as meta,
    ):
        config = OptimizeConfig(
            harness=seed_copy,
            suite=SUITE,
            model=task.model,
            proposer="llm",
            meta_model=meta.model,
            val_limit=10,
            train_sample=4,
            evidence=[stored],
            budget=Budget(iterations=1),
            skip_test=True,
        )
        optimize(config)
    prompt = json.dumps(meta.calls[0].messages)
    assert "production traces" in prompt
    first_user = next(e for e in traces[0].events if getattr(e, "type", "") == "llm")
    assert str(first_user.messages[-1].get("content", ""))[:40].replace('"', '\\"') in prompt
