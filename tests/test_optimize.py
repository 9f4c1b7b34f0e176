"""The optimize loop on the agent-harness domain, with a scripted task model and scripted proposers:
acceptance, invalid candidates (whatever breaks them), the sealed test, decisions in the ledger, and
the llm proposer editing prompts, tools and code."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.propose.base import Proposal
from harness_opt.report.progress_plot import plot_progress
from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from harness_opt.search.records import CandidateRecord
from harness_opt.testing import scripted_model
from tests.support.optimize import (
    MARKER,
    SUITE,
    ScriptedProposer,
    chat_reply,
    gold_by_text,
    marker_rounds,
    prompt_sensitive_responder,
    run_scripted,
)


@pytest.fixture(scope="module")
def gold() -> dict[str, str]:
    return gold_by_text()


def version_of(seed: Path, record: CandidateRecord) -> HarnessVersion:
    """The version directory a candidate record names (a sibling of the seed)."""
    return HarnessVersion.load(seed.parent / record.label.split("@")[-1])


def test_loop_keeps_only_the_real_gain(seed_copy: Path, gold: dict[str, str]) -> None:
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
    assert result.stop == "no_proposals" and result.status == "finished"
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
        "SELECT accepted, reason, detail FROM decisions WHERE run_id = ? ORDER BY created", [result.run_id]
    )
    assert [d["accepted"] for d in decisions] == [False, False, False, False, False, True]
    assert "significant gain" in decisions[-1]["reason"]
    # the ledger's rows are the result's records (what --resume and the report read back)
    details = [CandidateRecord.model_validate_json(d["detail"]) for d in decisions]
    assert details == result.candidates
    # the proposer's history: earlier iterations only, the baseline never counted as a try
    assert [len(inp.history) for inp in proposer.inputs] == [0, 3, 4, 5]


def test_the_plot_is_drawn_by_the_caller(seed_copy: Path, gold: dict[str, str], tmp_path: Path) -> None:
    proposer = ScriptedProposer(marker_rounds()[1:])
    result = run_scripted(seed_copy, prompt_sensitive_responder(gold), proposer, budget=Budget(iterations=3))
    assert result.plot is None  # the loop only reports
    path = plot_progress(result, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_noise_measured_on_the_baseline_reaches_the_decision(seed_copy: Path, gold: dict[str, str]) -> None:
    """A model that flips answers between the baseline and its rerun has noise, and the decision on a
    candidate is taken against that noise (its reason names it)."""
    counter = itertools.count()

    def flaky(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        text = messages[-1]["content"].strip()
        return gold.get(text, "x") if next(counter) % 2 == 0 else "wrong"

    rounds = [[marker_rounds()[1][0]]]
    result = run_scripted(
        seed_copy, flaky, ScriptedProposer(rounds), val_limit=30, train_sample=4, budget=Budget(iterations=1)
    )
    assert result.noise > 0.1
    [candidate] = result.candidates[1:]
    assert candidate.outcome == "rejected" and f"noise {result.noise:.3f}" in candidate.reason
    assert result.best_label == result.baseline_label
    assert result.stop == "iterations"


def test_any_exception_loading_a_candidate_makes_it_invalid_and_the_loop_goes_on(
    seed_copy: Path, gold: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tools.json nested deeper than the JSON parser recurses is one invalid candidate, and so is a
    loader that breaks with something other than a UserError (here a RecursionError from elsewhere);
    the next round still finds the gain, and nothing is left behind."""
    import harness_opt.search.candidates as candidates

    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(deep)
    real_create = candidates.create_version

    def create(parent: HarnessVersion, edits: dict[str, str | None], **kwargs: Any) -> HarnessVersion:
        if "BREAK THE LOADER" in (edits.get("prompts/system.j2") or ""):
            raise RecursionError("maximum recursion depth exceeded while calling a Python object")
        return real_create(parent, edits, **kwargs)

    monkeypatch.setattr(candidates, "create_version", create)
    system = (seed_copy / "prompts" / "system.j2").read_text()

    def proposal(mechanism: str, edits: dict[str, str | None]) -> Proposal:
        return Proposal(proposer="scripted", mechanism=mechanism, hypothesis="x", edits=edits)

    rounds = [
        [proposal("deep-tools", {"tools.json": deep})],
        [proposal("breaks-the-loader", {"prompts/system.j2": "BREAK THE LOADER\n" + system})],
        [proposal("think-first", {"prompts/system.j2": MARKER + "\n" + system})],
    ]
    proposer = ScriptedProposer(rounds)
    result = run_scripted(seed_copy, prompt_sensitive_responder(gold), proposer, budget=Budget(iterations=4))
    by_mechanism = {c.mechanism: c for c in result.candidates}
    assert by_mechanism["deep-tools"].outcome == "invalid"
    assert "tools.json" in by_mechanism["deep-tools"].reason
    assert by_mechanism["breaks-the-loader"].outcome == "invalid"
    assert "does not load: RecursionError" in by_mechanism["breaks-the-loader"].reason
    assert by_mechanism["think-first"].outcome == "accepted"
    assert sorted(p.name for p in seed_copy.parent.iterdir()) == ["v0001", "v0002"]  # nothing left behind


def test_a_check_that_breaks_on_a_candidate_makes_it_invalid(
    seed_copy: Path, gold: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan (or the smoke test) raising on one candidate is that candidate's problem."""
    import harness_opt.domains.agent_harness as agent_harness

    real_scan = agent_harness.scan_and_record

    def scan(candidate: HarnessVersion, *args: Any, **kwargs: Any) -> Any:
        if "broken" in (candidate.path / "prompts" / "system.j2").read_text():
            raise RecursionError("maximum recursion depth exceeded")
        return real_scan(candidate, *args, **kwargs)

    monkeypatch.setattr(agent_harness, "scan_and_record", scan)
    system = (seed_copy / "prompts" / "system.j2").read_text()
    rounds = [
        [
            Proposal(
                proposer="scripted",
                mechanism="breaks-the-scan",
                hypothesis="x",
                edits={"prompts/system.j2": "broken\n" + system},
            ),
            Proposal(
                proposer="scripted",
                mechanism="think-first",
                hypothesis="asking to think helps",
                edits={"prompts/system.j2": MARKER + "\n" + system},
            ),
        ]
    ]
    proposer = ScriptedProposer(rounds)
    respond = prompt_sensitive_responder(gold)
    result = run_scripted(seed_copy, respond, proposer, budget=Budget(iterations=1), parallel=2)
    by_mechanism = {c.mechanism: c for c in result.candidates}
    assert by_mechanism["breaks-the-scan"].outcome == "invalid"
    assert "cannot be checked: RecursionError" in by_mechanism["breaks-the-scan"].reason
    assert by_mechanism["think-first"].outcome == "accepted"


def test_llm_proposer_edits_prompts_tools_and_code(seed_copy: Path, gold: dict[str, str]) -> None:
    system = (seed_copy / "prompts" / "system.j2").read_text()
    agent = (seed_copy / "agent.py").read_text()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_faq",
                "description": "Look up the FAQ entry for an intent.",
                "parameters": {"type": "object", "properties": {"intent": {"type": "string"}}},
            },
        }
    ]
    lowercase = agent.replace(".strip()", ".strip().lower()")
    assert lowercase != agent
    replies = [
        chat_reply("think-first", [{"path": "prompts/system.j2", "content": MARKER + "\n" + system}]),
        chat_reply("faq-tool", [{"path": "tools.json", "content": json.dumps(tools)}]),
        chat_reply("lowercase", [{"path": "agent.py", "content": lowercase}]),
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
            proposer_mode="single",
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
    # each candidate is its parent with exactly the file its reply edited
    seed = HarnessVersion.load(seed_copy)
    prompt_v = version_of(seed_copy, by_mechanism["think-first"])
    tools_v = version_of(seed_copy, by_mechanism["faq-tool"])
    code_v = version_of(seed_copy, by_mechanism["lowercase"])
    assert MARKER in prompt_v.files()["prompts/system.j2"].decode()
    assert json.loads(tools_v.files()["tools.json"]) == tools
    assert code_v.files()["agent.py"].decode() == lowercase
    for version, edited in ((prompt_v, "prompts/system.j2"), (tools_v, "tools.json"), (code_v, "agent.py")):
        parent = version_of(seed_copy, _record_by_hash(result.candidates, version.manifest.harness.parent))
        changed = {p for p, b in version.files().items() if parent.files().get(p) != b}
        assert changed - {"harness.toml"} == {edited}, (version.label, changed)  # + its provenance
    assert seed.files()["tools.json"] != tools_v.files()["tools.json"]


def _record_by_hash(records: list[CandidateRecord], wanted: str | None) -> CandidateRecord:
    return next(r for r in records if r.hash == wanted)


def test_imported_production_traces_reach_the_llm_proposer(seed_copy: Path, gold: dict[str, str]) -> None:
    """--evidence: labelled-failed production traces are shown to the meta-agent, beside train traces."""
    from harness_opt.traces_import import import_traces

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
            proposer_mode="single",
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


def test_the_proposer_sees_task_wins_and_may_ask_for_a_retest_on_more_val_tasks(
    seed_copy: Path, gold: dict[str, str]
) -> None:
    """`ProposalInput.task_wins` (earlier candidates' per-task wins, val ids made opaque) and
    `retest_val_limit` are filled; a proposal with meta `retest` is measured, with its incumbent, on
    that many val tasks."""
    system = (seed_copy / "prompts" / "system.j2").read_text()
    think = MARKER + "\n" + system
    rounds = [
        [
            Proposal(
                proposer="scripted",
                mechanism="think-first",
                hypothesis="h",
                edits={"prompts/system.j2": think},
            )
        ],
        [
            Proposal(
                proposer="scripted",
                mechanism="retest-whitespace",
                hypothesis="h",
                edits={"prompts/system.j2": think + "\n"},
                meta={"retest": True, "val_limit": 20},
            )
        ],
    ]
    proposer = ScriptedProposer(rounds)
    ledger = Ledger()
    result = run_scripted(
        seed_copy, prompt_sensitive_responder(gold), proposer, ledger=ledger, budget=Budget(iterations=2)
    )
    first, second = proposer.inputs[:2]
    assert first.task_wins == [] and first.retest_val_limit == 20
    [wins] = second.task_wins
    val_ids = {
        r["task_id"] for r in ledger.query("SELECT DISTINCT task_id FROM rollouts WHERE split = 'val'")
    }
    assert wins.mechanism == "think-first" and len(wins.wins) == 10 and wins.losses == []
    assert not set(wins.wins) & val_ids  # opaque keys, never a val task id
    by_mechanism = {c.mechanism: c for c in result.candidates}
    retest, incumbent = by_mechanism["retest-whitespace"], by_mechanism["think-first"]
    for record in (retest, incumbent):
        tasks = ledger.query(
            "SELECT count(DISTINCT task_id) AS n FROM rollouts WHERE version_hash = ? AND split = 'val'",
            [record.hash],
        )
        assert tasks[0]["n"] == 20, record.mechanism
    assert retest.outcome == "rejected" and retest.delta == 0.0  # same answers on all 20 tasks
