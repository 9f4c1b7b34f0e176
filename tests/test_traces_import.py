"""Production traces in: each format on a realistic sample, labels, storage, malformed files with the
line or JSON path, regression tasks, the CLI, and imported traces reaching the proposers."""

from __future__ import annotations

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from harness_opt.errors import UserError
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.records import LLMCallEvent, ToolCallEvent
from harness_opt.traces_import import import_facts, import_traces, read_imported, to_task_rows
from tests.support.acme import EXAMPLE

SAMPLES = EXAMPLE / "production"


def test_openai_jsonl_sample():
    out, traces = import_traces(SAMPLES / "openai.jsonl", "openai-jsonl", name="prod-openai")
    assert [t.key.task_id for t in traces] == ["prod-0412", "prod-0413", "prod-0419"]
    assert [t.passed for t in traces] == [False, True, False]
    first = traces[0]
    llm = [e for e in first.events if isinstance(e, LLMCallEvent)]
    tool = [e for e in first.events if isinstance(e, ToolCallEvent)]
    assert len(llm) == 2 and llm[0].model == "gpt-4o-mini-2024-07-18" and llm[0].tools
    assert llm[1].messages[-1]["role"] == "tool"  # the history before the final answer
    assert tool[0].name == "lookup_order" and tool[0].args == {"order_id": "A1010"}
    assert tool[0].result["days_since_delivery"] == 31
    assert first.task_input == {"message": "My blender (order A1010) broke after 5 weeks, refund please"}
    assert "30-day" in first.feedback
    assert import_facts(first)["expected"] == {"action": "deny", "order_id": "A1010"}
    # stored in our trace format, readable by the ordinary trace reader
    assert out.name == "prod-openai.jsonl" and out.parent.name == "imported"
    assert read_trace("imported/prod-openai.jsonl#0").key.task_id == "prod-0412"
    assert [t.key.task_id for t in read_imported(out)] == ["prod-0412", "prod-0413", "prod-0419"]


def test_otel_sample_both_conventions():
    _, traces = import_traces(SAMPLES / "otel.json", "otel")
    new, old = traces
    assert (new.passed, old.passed) == (False, True)
    kinds = [e.type for e in new.events]
    assert kinds == ["log", "llm", "tool", "llm"]  # spans in start-time order; invoke_agent is no event
    chat = new.events[1]
    assert chat.messages[0] == {"role": "system", "content": "You are Acme's customer-support agent."}
    assert chat.response["tool_calls"][0]["function"]["name"] == "check_refund_policy"
    assert chat.tokens_in == 412 and chat.tokens_out == 23
    assert new.events[2].result["action"] == "deny"
    assert new.events[3].messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_a",
        "content": json.dumps(
            {"order_id": "A1002", "action": "deny", "why": "the 30-day return window has passed"}
        ),
    }
    assert new.output == '{"action": "refund", "order_id": "A1002"}' and "ignored the policy" in new.feedback
    assert old.events[1].messages[1]["content"] == "Laptop A1011 has a dented corner"  # gen_ai.prompt.N
    assert old.output == '{"action": "escalate", "order_id": "A1011"}' and old.key.model == "gpt-4o-mini"


def test_langfuse_sample():
    _, traces = import_traces(SAMPLES / "langfuse.json", "langfuse")
    failed, passed = traces
    assert not failed.passed and passed.passed  # a score named label = 0; a `passed` tag
    assert [e.type for e in failed.events] == ["log", "llm", "tool", "llm"]
    assert failed.events[1].tokens_in == 398 and failed.events[1].cost_usd == pytest.approx(0.0000711)
    assert failed.events[2].name == "lookup_order" and failed.events[2].args == {"order_id": "A1007"}
    assert failed.events[3].response["content"] == "We're sorry! Please keep them as a gift."
    assert failed.feedback == "should have offered a refund for the wrong item"
    assert failed.task_input == {"message": "I ordered white headphones (A1007) and got black ones"}


def test_label_option_and_label_field(tmp_path):
    _, traces = import_traces(SAMPLES / "openai.jsonl", "openai-jsonl", label=False)
    assert not any(t.passed for t in traces)
    file = tmp_path / "mine.jsonl"
    file.write_text(
        json.dumps(
            {
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                "outcome": "resolved",
            }
        )
        + "\n"
    )
    _, traces = import_traces(file, "openai-jsonl", label_field="outcome")
    assert traces[0].passed and traces[0].key.task_id == "mine-00001"
    with pytest.raises(UserError, match=r"mine.jsonl, line 1: no label"):
        import_traces(file, "openai-jsonl")


@pytest.mark.parametrize(
    ("fmt", "text", "where"),
    [
        (
            "openai-jsonl",
            '{"messages": [{"role": "user", "content": "a"}], "label": "failed"}\n{"messages": [\n',
            "line 2: invalid JSON",
        ),
        ("openai-jsonl", '{"label": "failed"}\n', "line 1: 'messages' is missing"),
        (
            "otel",
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}',
            "resourceSpans[0].scopeSpans[0].spans[0]: a span needs a traceId",
        ),
        ("otel", '{"resourceSpans": [\n{"scopeSpans": [}\n]}', "line 2: invalid JSON"),
        ("otel", '{"spans": []}', "no resourceSpans"),
        (
            "langfuse",
            '[{"id": "t1", "tags": ["failed"], "observations": [{"type": "GENERATION"}]}, {"id": "t2"}]',
            "$[1].observations: observations is missing",
        ),
        (
            "langfuse",
            '{"data": [{"id": "t1", "observations": ["obs-1"]}]}',
            "$.data[0].observations: observations are ids only",
        ),
    ],
)
def test_malformed_files_name_the_line_or_json_path(tmp_path, fmt, text, where):
    file = tmp_path / "bad.json"
    file.write_text(text)
    with pytest.raises(UserError) as info:
        import_traces(file, fmt)
    assert where in info.value.message and "fix:" in info.value.message


def test_to_tasks_turns_failures_into_regression_tasks():
    out, traces = import_traces(SAMPLES / "openai.jsonl", "openai-jsonl", name="prod")
    rows = to_task_rows(read_imported(out), scorer="json_field", split="val", input_key="ticket")
    assert [r["id"] for r in rows] == ["regression-prod-0412", "regression-prod-0419"]  # failures only
    assert rows[0]["ticket"].startswith("My blender") and rows[0]["split"] == "val"
    assert rows[0]["expected"] == {"action": "deny", "order_id": "A1010"}
    judged = to_task_rows(traces, scorer="judge")
    assert "refunded outside the 30-day window" in judged[0]["rubric"]
    _, otel = import_traces(SAMPLES / "otel.json", "otel")
    with pytest.raises(UserError, match="no expected outcome"):
        to_task_rows(otel, scorer="exact")


def test_cli_import_and_to_tasks(tmp_path):
    from harness_opt.cli import traces_import_cmd

    app = typer.Typer()
    app.command("noop")(lambda: None)  # keep `import` a subcommand
    traces_import_cmd.register(app)
    runner = CliRunner()
    result = runner.invoke(
        app, ["import", str(SAMPLES / "langfuse.json"), "--format", "langfuse", "--name", "lf"]
    )
    assert result.exit_code == 0, result.output
    assert "imported 2 traces (1 failed, 1 passed)" in result.output
    from harness_opt.home import traces_dir

    stored = traces_dir() / "imported" / "lf.jsonl"
    assert stored.is_file()
    out = tmp_path / "regressions.jsonl"
    result = runner.invoke(
        app, ["to-tasks", str(stored), "--out", str(out), "--scorer", "json_field", "--input-key", "ticket"]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text().splitlines()[0])
    assert row["expected"] == {"action": "refund", "order_id": "A1007"} and "ticket" in row
    # the rows load as a data suite with the printed snippet
    suite_dir = tmp_path / "reg"
    suite_dir.mkdir()
    shutil.copy(out, suite_dir / out.name)
    snippet = result.output[result.output.index("[data]") :].replace(
        'fields = ["FILL IN"]', 'fields = ["action"]'
    )
    (suite_dir / "suite.toml").write_text('[suite]\nname = "reg"\n\n' + snippet)
    from harness_opt.suites.loader import load_suite

    assert [t.input for t in load_suite(suite_dir).tasks("train")] == [{"ticket": row["ticket"]}]
    bad = runner.invoke(app, ["import", str(SAMPLES / "otel.json"), "--format", "otel", "--label", "meh"])
    assert bad.exit_code != 0 and isinstance(bad.exception, UserError)


def test_imported_traces_reach_the_proposers(tmp_path):
    from harness_opt.propose.agent_cli import AgentCLIProposer
    from harness_opt.propose.base import ProposalInput
    from harness_opt.propose.evidence import IMPORTED_HEADING
    from harness_opt.propose.llm import LLMProposer

    _, imported = import_traces(SAMPLES / "openai.jsonl", "openai-jsonl")
    inp = ProposalInput(
        agent="acme-support",
        version_label="acme-support@v0001",
        files={"agent.py": "def run(t, c): pass\n"},
        editable=("agent.py",),
        suite="acme-support",
        failing_traces=[],
        train_tasks=[],
        imported_traces=imported,
    )
    from harness_opt.testing import scripted_model

    with scripted_model("meta", ["unused"]) as meta:
        values, _ = LLMProposer(meta.model, mode="single").inputs(inp, 0, [])
    text = values["failing_traces"]
    assert IMPORTED_HEADING in text and "Showing 2 of 2 failed production traces" in text
    assert "prod-0412" in text and "prod-0413" not in text  # only the failed ones
    work = tmp_path / "work"
    work.mkdir()
    AgentCLIProposer(command="true").prepare(inp, work)
    assert len((work / "traces" / "imported.jsonl").read_text().splitlines()) == 2
    assert "traces/imported.md" in (work / "INSTRUCTIONS.md").read_text()
