"""Suites from your own data: formats, splits, scorers, suite.toml errors with line numbers, and an
end-to-end eval of a data suite whose tools are HTTP endpoints of a real local server."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from harness_opt.errors import SuiteError
from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.records import ToolCallEvent
from harness_opt.scaffold import init_project
from harness_opt.suites.data_suite import DataSuite
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.support.acme import EXAMPLE, acme_server

ROWS = [{"id": f"q{i:02d}", "question": f"what is {i} + {i}?", "expected": str(2 * i)} for i in range(20)]


def _suite(folder: Path, toml: str, rows: list[dict] | None = None, name: str = "tasks.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "suite.toml").write_text(toml)
    return folder


BASIC = """[suite]
name = "sums"

[data]
source = "tasks.jsonl"
id = "id"
input = ["question"]
"""


def test_jsonl_with_seeded_generated_splits(tmp_path):
    folder = _suite(
        tmp_path / "s", BASIC + "\n[splits]\nseed = 3\ntrain = 0.5\nval = 0.25\ntest = 0.25\n", ROWS
    )
    suite = load_suite(folder)
    assert isinstance(suite, DataSuite) and suite.deterministic_scorer
    sizes = {s: len(suite.tasks(s)) for s in suite.split_names()}
    assert sizes == {"train": 10, "val": 5, "test": 5}
    ids = [t.id for s in ("train", "val", "test") for t in suite.tasks(s)]
    assert sorted(ids) == [r["id"] for r in ROWS]  # disjoint and complete
    again = load_suite(folder)
    assert [t.id for t in again.tasks("val")] == [t.id for t in suite.tasks("val")]  # stable
    other = _suite(tmp_path / "s2", BASIC + "\n[splits]\nseed = 4\ntrain = 10\nval = 5\ntest = 5\n", ROWS)
    assert [t.id for t in load_suite(other).tasks("val")] != [t.id for t in suite.tasks("val")]
    task = suite.tasks("train")[0]
    assert set(task.input) == {"question"} and task.expected == str(2 * int(task.id[1:]))
    assert suite.score(task, f" {task.expected}\n", suite.environment(task)).passed
    assert not suite.score(task, "nope", suite.environment(task)).passed


def test_csv_with_given_splits_and_parquet_and_local_hf_folder(tmp_path):
    rows = [{**r, "split": ["train", "val", "test"][i % 3]} for i, r in enumerate(ROWS)]
    folder = tmp_path / "c"
    folder.mkdir()
    with (folder / "tasks.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _suite(folder, BASIC.replace("tasks.jsonl", "tasks.csv") + '\n[splits]\ncolumn = "split"\n')
    suite = load_suite(folder)
    assert [t.id for t in suite.tasks("val")] == [r["id"] for r in rows if r["split"] == "val"]

    import pyarrow as pa
    import pyarrow.parquet as pq

    pfolder = tmp_path / "p"
    pfolder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), pfolder / "tasks.parquet")
    _suite(pfolder, BASIC.replace("tasks.jsonl", "tasks.parquet") + '\n[splits]\ncolumn = "split"\n')
    assert [t.id for t in load_suite(pfolder).tasks("test")] == [
        r["id"] for r in rows if r["split"] == "test"
    ]

    # a Hugging Face dataset folder (what `save`/a download leaves): read through `datasets`, offline
    hf = tmp_path / "h"
    (hf / "mydata").mkdir(parents=True)
    (hf / "mydata" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _suite(hf, BASIC.replace('"tasks.jsonl"', '"hf:mydata"') + '\n[splits]\ncolumn = "split"\n')
    assert len(load_suite(hf).tasks("train")) == 7


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ('\n[scorer]\nkind = "json_field"\n', 9, "[scorer]: json_field needs fields"),
        ('\n[scorer]\nkind = "exactish"\n', 10, "[scorer].kind: Input should be"),
        (
            '\n[tools.lookup]\nkind = "http"\nurl = "/x"\nurll = "/x"\n',
            12,
            "[tools.lookup].urll: unknown field",
        ),
        ('\n[tools.lookup]\nkind = "http"\n', 9, "[tools.lookup].url: Field required"),
        ("\n[splits]\ntrain = 0.9\nval = 0.5\n", 9, "add up to 1.4"),
    ],
)
def test_schema_errors_point_at_the_line(tmp_path, extra, line, message):
    folder = _suite(tmp_path / "e", BASIC + extra, ROWS)
    with pytest.raises(SuiteError) as info:
        load_suite(folder)
    assert f"suite.toml, line {line}" in info.value.message
    assert message in info.value.message


def test_malformed_jsonl_names_the_line(tmp_path):
    folder = _suite(tmp_path / "m", BASIC, ROWS[:3])
    with (folder / "tasks.jsonl").open("a") as handle:
        handle.write('{"id": "bad", "question": \n')
    with pytest.raises(SuiteError, match=r"tasks.jsonl, line 4: invalid JSON"):
        load_suite(folder)
    _suite(folder, BASIC.replace('input = ["question"]', 'input = ["prompt"]'), ROWS)
    with pytest.raises(SuiteError, match=r"no column\(s\) \['prompt'\]"):
        load_suite(folder)


def test_json_field_and_predicate_scorers(tmp_path):
    rows = [{"id": "a", "ticket": "t", "expected": {"action": "refund", "order": {"id": "A1"}}}]
    folder = _suite(
        tmp_path / "j",
        BASIC.replace('input = ["question"]', 'input = ["ticket"]')
        + '\n[splits]\ntrain = 1\n\n[scorer]\nkind = "json_field"\nfields = ["action", "order.id"]\n',
        rows,
    )
    suite = load_suite(folder)
    task = suite.tasks("train")[0]
    env = suite.environment(task)
    good = suite.score(task, 'Sure! ```json\n{"action": "refund", "order": {"id": "A1"}}\n```', env)
    half = suite.score(task, {"action": "deny", "order": {"id": "A1"}}, env)
    assert good.passed and good.score == 1.0
    assert not half.passed and half.score == 0.5 and "action: expected refund, got deny" in half.feedback
    assert suite.score(task, "I refunded it", env).score == 0.0

    (folder / "checks.py").write_text(
        "def refunded(task, output, env):\n"
        "    called = [c.name for c in env.calls]\n"
        "    return ('refund' in called and env.state['refunds'] == 1, f'calls: {called}')\n"
    )
    (folder / "tools.py").write_text(
        "def new_state(task):\n    return {'refunds': 0}\n"
        "def refund(order_id, state):\n    state['refunds'] += 1\n    return {'ok': True}\n"
    )
    (folder / "suite.toml").write_text(
        BASIC.replace('input = ["question"]', 'input = ["ticket"]')
        + '\n[splits]\ntrain = 1\n\n[scorer]\nkind = "predicate"\nfunction = "checks.py:refunded"\n'
        '\n[environment]\nstate = "tools.py:new_state"\n\n[tools.refund]\nkind = "python"\n'
        'function = "tools.py:refund"\n'
    )
    suite = load_suite(folder)
    env = suite.environment(task)
    assert not suite.score(task, "", env).passed
    env.call_tool("refund", {"order_id": "A1"})
    verdict = suite.score(task, "", env)
    assert verdict.passed and "calls: ['refund']" in verdict.feedback
    assert not suite.score(task, "", suite.environment(task)).passed  # a fresh state per rollout


def test_llm_judge_scores_with_a_rubric_and_is_non_deterministic(tmp_path):
    seen = []

    def judge(messages, tools, params):
        seen.append(messages[-1]["content"])
        return (
            '{"score": 0.8, "reason": "polite and correct"}' if "refund" in messages[-1]["content"] else "meh"
        )

    with scripted_model("judge", judge) as model:
        folder = _suite(
            tmp_path / "jj",
            BASIC
            + '\n[splits]\ntrain = 2\n\n[scorer]\nkind = "judge"\nrubric = "Be polite."\n'
            + f'model = "{model.model}"\n',
            ROWS[:2],
        )
        suite = load_suite(folder)
        task = suite.tasks("train")[0]
        assert suite.deterministic_scorer is False  # doctor flags this suite's scorer
        good = suite.score(task, "we will refund you", suite.environment(task))
        bad = suite.score(task, "go away", suite.environment(task))
    assert good.passed and good.score == pytest.approx(0.8) and "polite and correct" in good.feedback
    assert not bad.passed and "judge gave no score" in bad.feedback
    assert "Rubric:\nBe polite." in seen[0] and task.input["question"] in seen[0]


def _acme_project(root: Path) -> tuple[Path, Path]:
    result = init_project(
        "acme-support", root, tools_file=EXAMPLE / "tools.json", system_prompt=EXAMPLE / "prompt.md"
    )
    for name in ("suite.toml", "tickets.jsonl"):
        shutil.copy(EXAMPLE / name, result.suite_dir / name)
    return result.harness_dir, result.suite_dir


def _policy_agent(messages, tools, params):
    """Calls check_refund_policy with the ticket's order id, then answers its action as JSON."""
    last = messages[-1]
    if last["role"] == "tool":
        answer = json.loads(last["content"])
        return json.dumps({"action": answer.get("action", "deny"), "order_id": answer.get("order_id")})
    order = re.search(r"A\d{4}", last["content"])[0]
    reason = "damaged" if "broken" in last["content"] or "damaged" in last["content"] else "other"
    return {
        "tool_calls": [{"name": "check_refund_policy", "arguments": {"order_id": order, "reason": reason}}]
    }


def test_acme_data_suite_evaluates_through_http_tools(tmp_path, monkeypatch):
    harness, suite_dir = _acme_project(tmp_path)
    suite = load_suite(suite_dir)
    assert {s: len(suite.tasks(s)) for s in suite.split_names()} == {"train": 14, "val": 8, "test": 8}
    monkeypatch.setenv("ACME_API_TOKEN", "Bearer demo")
    with acme_server() as base, scripted_model("acme", _policy_agent) as model:
        monkeypatch.setenv("ACME_API_BASE", base)
        result = evaluate(harness, suite, EvalConfig(split="val", model=model.model, concurrency=2))
    assert result.summary.n_rollouts == 8
    # the policy answer is right whenever the reason guess is; the scorer sees order ids match always
    assert 0 < result.summary.score <= 1
    trace = read_trace(result.rollouts[0].trace_ref)
    tools = [e for e in trace.events if isinstance(e, ToolCallEvent)]
    assert tools and tools[0].name == "check_refund_policy" and tools[0].error is None
    assert "action" in tools[0].result
