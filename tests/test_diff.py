"""`diff`: the semantic tools.json diff names each kind of change; file and lineage diffs; paired results
cross-checked against figures computed by hand (scipy directly) on a small ledger fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from harness_opt.harness.diff import diff_tools, diff_versions, render_words_plain, word_diff
from harness_opt.harness.lineage import create_version
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.report.compare import diff
from tests.support.ledger import A, B, small_ledger

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"


def _tool(name: str, description: str, props: dict, required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


def test_semantic_tool_diff_names_each_kind_of_change():
    before = [
        _tool("get_order", "Look up an order by its id.", {"id": {"type": "string"}}, ["id"]),
        _tool(
            "refund",
            "Refund an order.",
            {
                "order_id": {"type": "string", "description": "The order to refund."},
                "amount": {"type": "number"},
                "reason": {"type": "string", "enum": ["damaged", "late"]},
                "note": {"type": "string"},
            },
            ["order_id"],
        ),
        _tool("ping", "Check the service.", {}, []),
        _tool("find_user", "Find a user by email address.", {"email": {"type": "string"}}, ["email"]),
    ]
    after = [
        # find_user renamed (same parameters), get_order's id retyped, refund edited in every way
        _tool("lookup_user", "Find a user by email address.", {"email": {"type": "string"}}, ["email"]),
        _tool("get_order", "Look up an order by its id.", {"id": {"type": "integer"}}, ["id"]),
        _tool(
            "refund",
            "Refund a delivered order in full or in part.",
            {
                "order_id": {"type": "string", "description": "The delivered order to refund."},
                "amount": {"type": "number"},
                "reason": {"type": "string", "enum": ["damaged", "late", "wrong_item"]},
                "currency": {"type": "string"},
            },
            ["order_id", "amount"],
        ),
        _tool("cancel", "Cancel an order.", {"order_id": {"type": "string"}}, ["order_id"]),
    ]
    changes = diff_tools(before, after)
    got = {(c.kind, c.tool, c.param) for c in changes}
    assert got == {
        ("tool_renamed", "lookup_user", None),
        ("tool_removed", "ping", None),
        ("tool_added", "cancel", None),
        ("param_retyped", "get_order", "id"),
        ("description_changed", "refund", None),
        ("param_description_changed", "refund", "order_id"),
        ("param_required", "refund", "amount"),
        ("param_enum_changed", "refund", "reason"),
        ("param_added", "refund", "currency"),
        ("param_removed", "refund", "note"),
    }
    by_kind = {c.kind: c for c in changes}
    assert by_kind["tool_renamed"].before == "find_user"
    assert (by_kind["param_retyped"].before, by_kind["param_retyped"].after) == ("string", "integer")
    # descriptions as a word diff, not a JSON diff
    assert render_words_plain(by_kind["description_changed"].words) == (
        "Refund [-an-]{+a+} [-order.-]{+delivered order in full or in part.+}"
    )
    assert by_kind["param_description_changed"].words == [
        ("equal", "The"),
        ("insert", " delivered"),
        ("equal", " order to refund."),
    ]
    assert "is now required" in by_kind["param_required"].summary()
    # reordering or re-indenting tools.json is no change at all
    assert diff_tools(before, list(reversed(before))) == []


def test_param_optional_and_nested_params():
    before = [
        _tool(
            "t",
            "d",
            {"o": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}},
            ["o"],
        )
    ]
    after = [
        _tool(
            "t",
            "d",
            {"o": {"type": "object", "properties": {"x": {"type": "array", "items": {"type": "string"}}}}},
            [],
        )
    ]
    got = {(c.kind, c.param) for c in diff_tools(before, after)}
    assert got == {("param_optional", "o"), ("param_optional", "o.x"), ("param_retyped", "o.x")}


def test_word_diff_keeps_the_text():
    ops = word_diff("pick one label", "pick exactly one label")
    assert "".join(t for op, t in ops if op != "delete") == "pick exactly one label"
    assert "".join(t for op, t in ops if op != "insert") == "pick one label"


@pytest.fixture
def family(tmp_path: Path) -> dict[str, HarnessVersion]:
    """v1 -> v2 -> v3, and a branch v1 -> v4 (with a tool and a setting change)."""
    shutil.copytree(SEED, tmp_path / "banking77" / "v0001")
    v1 = HarnessVersion.load(tmp_path / "banking77" / "v0001")
    system = (v1.path / "prompts" / "system.j2").read_text()
    v2 = create_version(
        v1,
        {"prompts/system.j2": system + "\nBe brief.\n"},
        proposer="llm",
        hypothesis="shorter",
        changes=["brief"],
    )
    v3 = create_version(
        v2,
        {"agent.py": (v2.path / "agent.py").read_text() + "\n# v3\n"},
        proposer="human",
        hypothesis="comment",
        changes=["add a comment"],
    )
    tools = [_tool("lookup", "Look up a label.", {"q": {"type": "string"}}, ["q"])]
    toml = (v1.path / "harness.toml").read_text()
    v4 = create_version(
        v1,
        {"tools.json": json.dumps(tools), "harness.toml": toml.replace("max_steps = 4", "max_steps = 5")},
        proposer="agent",
        hypothesis="a lookup tool",
        changes=["add lookup tool"],
    )
    return {"v1": v1, "v2": v2, "v3": v3, "v4": v4}


def test_diff_versions_files_tools_and_lineage(family: dict[str, HarnessVersion]):
    d = diff_versions(family["v1"], family["v3"])
    assert [f.path for f in d.files] == ["agent.py", "prompts/system.j2"]
    prompt = next(f for f in d.files if f.path == "prompts/system.j2")
    assert "+Be brief." in prompt.diff and prompt.diff.startswith("--- banking77@v0001/prompts/system.j2")
    assert [(s.label, s.hypothesis, s.direction) for s in d.lineage] == [
        ("banking77@v0002", "shorter", "to_b"),
        ("banking77@v0003", "comment", "to_b"),
    ]
    assert d.lineage[1].changes == ["add a comment"]
    # across branches: back from v3 to the common ancestor v1, then down to v4
    branch = diff_versions(family["v3"], family["v4"])
    assert branch.common_ancestor == "banking77@v0001"
    assert [(s.label, s.direction) for s in branch.lineage] == [
        ("banking77@v0003", "from_a"),
        ("banking77@v0002", "from_a"),
        ("banking77@v0004", "to_b"),
    ]
    assert [(c.kind, c.tool) for c in branch.tools] == [("tool_added", "lookup")]
    assert [(s.key, s.before, s.after) for s in branch.settings] == [("runtime.limits.max_steps", 4, 5)]


def test_results_match_hand_computed_figures():
    ledger = small_ledger()
    report = diff(A, B, suite="toy", ledger=ledger)
    r = report.results
    assert r is not None and report.missing == []
    assert "not on disk" in report.versions_note  # the fixture has no version directories
    # common (task, trial) keys only: B's extra trial 2 on t1 is left out
    assert (r.n_tasks, r.n_rollouts) == (4, 8)
    # task means, by hand: A t1 1, t2 0 (the latest of two rows), t3 .5, t4 1; B t1 0 (the newer
    # llm_error row ignored), t2 1, t3 1, t4 1
    a_means, b_means = [1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 1.0, 1.0]
    assert r.a.score == pytest.approx(0.625) and r.b.score == pytest.approx(0.75)
    assert r.delta == pytest.approx(0.125)
    diffs = [b - a for a, b in zip(a_means, b_means, strict=True)]
    assert r.method == "paired_t"
    assert r.p_value == pytest.approx(sps.ttest_rel(b_means, a_means).pvalue)
    half = sps.t.ppf(0.975, 3) * sps.tstd(diffs) / 2
    assert r.delta_ci == pytest.approx((max(-1, 0.125 - half), min(1, 0.125 + half)))
    sd_a = sps.tstd(a_means)
    half_a = sps.t.ppf(0.975, 3) * sd_a / 2  # 0.625 -+ 0.762: clipped to [0, 1]
    assert r.a.ci == pytest.approx((max(0.0, 0.625 - half_a), min(1.0, 0.625 + half_a)))
    # flips: verdict = mean passed >= 0.5, so A's t3 (1 of 2 passed) counts as a pass
    assert [(f.task_id, f.kind) for f in r.flips] == [("t1", "broken"), ("t2", "fixed")]
    fixed = r.fixed[0]
    assert fixed.trace_a == "toy/a.jsonl#t2-0" and fixed.trace_b == "toy/b.jsonl#t2-0"
    # cost / tokens / latency over the common keys
    assert r.a.cost_usd == pytest.approx(0.08) and r.b.cost_usd == pytest.approx(0.16)
    assert (r.a.tokens, r.b.tokens) == (8 * 150, 8 * 300)
    assert r.a.latency_s == pytest.approx(1.0) and r.b.latency_s == pytest.approx(2.0)


def test_missing_side_says_so_and_offers_the_eval_command():
    ledger = small_ledger()
    report = diff(A, "dddd", suite="toy", split="test", ledger=ledger)
    assert report.results is None
    assert {m.label for m in report.missing} == {"toy@v0001", "toy@v0004"}
    assert all(
        m.command.startswith("harness-opt eval ") and "--split test" in m.command for m in report.missing
    )


def test_cli_diff_json_and_text():
    import typer

    from harness_opt.cli import diff_cmd

    small_ledger(Ledger())
    app = typer.Typer()
    diff_cmd.register(app)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the command name
    runner = CliRunner()
    out = runner.invoke(app, ["diff", A[:8], B[:8], "--suite", "toy", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["results"]["delta"] == pytest.approx(0.125)
    assert [f["kind"] for f in data["results"]["flips"]] == ["broken", "fixed"]
    text = runner.invoke(app, ["diff", A[:8], B[:8], "--suite", "toy"], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "1 fixed, 1 broken" in text.output and "toy/b.jsonl#t2-0" in text.output


def test_data_files_are_summarised_not_dumped():
    from harness_opt.harness.diff import diff_files

    big = b'{"texts": [' + b'"a train message",' * 10_000 + b'"x"]}'
    new = {"agent.py": b"x = 2\n", "data/index.json": big}
    out = {f.path: f for f in diff_files({"agent.py": b"x = 1\n"}, new)}
    assert out["data/index.json"].diff == "" and "MB" in out["data/index.json"].summary
    assert out["agent.py"].summary == "" and "+x = 2" in out["agent.py"].diff
