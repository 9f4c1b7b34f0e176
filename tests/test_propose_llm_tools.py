"""The `llm` proposer as a tool-using agent (scripted meta-model through dspy and litellm): it reads a
prior candidate's trace in the history filesystem and hands back a valid candidate; its tools stay in
the work dir; every call is planned inside the context window, a refused one retried with less."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from litellm.llms.custom_llm import CustomLLMError

from harness_opt.propose.base import CheckResult, Proposal
from harness_opt.propose.llm import LLMProposer
from harness_opt.propose.meta_context import ContextBudget, context_window, is_context_error
from harness_opt.propose.meta_tools import Workbench
from harness_opt.search.budget import Budget
from harness_opt.testing import scripted_model
from tests.support.meta import make_input, make_trace, step_reply, steps_taken, transcript
from tests.support.optimize import MARKER, SEED, gold_by_text, prompt_sensitive_responder, run_scripted

EDITABLE = ("agent.py", "prompts/*", "tools.json")


def test_tools_agent_reads_a_prior_candidates_trace_and_hands_back_a_valid_candidate(tmp_path: Path) -> None:
    """Iteration 1 adds MARKER to the prompt; iteration 2 finds MARKER only in the raw train traces of
    that earlier candidate (history/candidates/v0002/train/traces), reads one, and writes a prompt
    that quotes what it read. Both candidates are valid: measured on val, not refused."""
    seed = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, seed)
    system = (seed / "prompts" / "system.j2").read_text()
    seen: dict[str, str] = {}

    def meta(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        text = transcript(messages)
        step = steps_taken(messages)
        first_round = "banking77@v0001" in text.split("[[ ## brief ## ]]")[-1]
        if first_round:
            script = [
                step_reply("list_candidates"),
                step_reply("write_file", {"path": "prompts/system.j2", "content": f"{MARKER}\n{system}"}),
                step_reply("finish", {"mechanism": "think first", "hypothesis": "thinking helps"}),
            ]
            return script[min(step, 2)]
        if step == 0:
            return step_reply("grep", {"pattern": "Think about which label", "path": "history/candidates"})
        if step == 1:
            seen["grep"] = text
            found = text.split("observation:\n")[-1].splitlines()
            hit = next(ln for ln in found if "/train/traces/" in ln).split(":")[0]  # a raw trace
            return step_reply("read_file", {"path": hit})
        if step == 2:
            seen["read"] = text
            quote = "Quote: the earlier candidate's trace was read."
            return step_reply(
                "write_file", {"path": "prompts/system.j2", "content": f"{MARKER}\n{quote}\n{system}"}
            )
        if step == 3:
            return step_reply("check", {})
        seen["check"] = text
        return step_reply("finish", {"mechanism": "quote the trace", "hypothesis": "it read a trace"})

    with scripted_model("meta-tools", meta) as m:
        proposer = LLMProposer(m.model, context_tokens=32_000)
        respond = prompt_sensitive_responder(gold_by_text())
        result = run_scripted(seed, respond, proposer, budget=Budget(iterations=2), history_train=3)
    by = {c.mechanism: c for c in result.candidates}
    assert by["think first"].outcome == "accepted"
    second = by["quote the trace"]
    assert second.outcome in ("accepted", "rejected") and second.val_score is not None
    grep_hits = seen["grep"].split("tool: grep")[-1]
    assert "history/candidates/v0002/train/traces/" in grep_hits and "v0001/train" not in grep_hits
    read = seen["read"].split("tool: read_file")[-1]
    assert "### trace task=" in read and MARKER in read and "expected (train gold):" in read
    check = seen["check"].split("tool: check")[-1]
    assert "OK" in check and "loads: yes" in check and "train task" in check
    spend = by["quote the trace"].spend
    assert spend is not None and spend.calls == 5 and spend.tokens_in > 0 and spend.model == m.model


def test_workbench_stays_in_the_work_dir_and_writes_only_editable_files(tmp_path: Path) -> None:
    (tmp_path / "harness" / "prompts").mkdir(parents=True)
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "INDEX.md").write_text("# index\n" + "line\n" * 2000)
    outside = tmp_path.parent / "outside-secret.txt"
    outside.write_text("SECRET")
    bench = Workbench(root=tmp_path, editable=EDITABLE, max_chars=1_000)
    for path in ("../outside-secret.txt", "/etc/passwd", str(outside), "harness/../../outside-secret.txt"):
        assert "SECRET" not in bench.call("read_file", {"path": path})
        assert bench.call("read_file", {"path": path}).startswith("error")
    assert bench.call("grep", {"pattern": "SECRET", "path": ".."}).startswith("error")
    assert bench.call("write_file", {"path": "harness.toml", "content": "x"}).startswith("refused")
    assert bench.call("write_file", {"path": "../evil.py", "content": "x"}).startswith("refused")
    wrote = bench.call("write_file", {"path": "harness/prompts/system.j2", "content": "hi"})
    assert wrote.startswith("wrote")
    assert (tmp_path / "harness" / "prompts" / "system.j2").read_text() == "hi"
    page = bench.call("read_file", {"path": "history/INDEX.md"})
    assert len(page) <= 1_000 + 100 and "offset=" in page  # paged, and says how to go on
    nxt = int(page.split("offset=")[1].split(")")[0])
    second = bench.call("read_file", {"path": "history/INDEX.md", "offset": nxt})
    whole = (tmp_path / "history" / "INDEX.md").read_text()
    joined = page.split("\n[... ")[0] + second.split("\n[... ")[0]
    assert whole.startswith(joined) and len(joined) > len(page.split("\n[... ")[0])  # seamless pages
    many = bench.call("grep", {"pattern": "line", "path": "history"})
    assert len(many) <= 1_100 and "more matches" in many
    assert bench.call("no_such_tool", {}).startswith("error: no tool")
    assert bench.call("check", {}).startswith("error")  # no checker: not offered


def test_check_tool_counts_and_stops_at_its_limit(tmp_path: Path) -> None:
    (tmp_path / "harness").mkdir()
    asked: list[tuple[Path, str | None]] = []

    def checker(path: Path, task: str | None) -> CheckResult:
        asked.append((path, task))
        return CheckResult(ok=True, report="fine")

    bench = Workbench(root=tmp_path, editable=EDITABLE, max_chars=1_000, checker=checker, max_checks=2)
    assert "check" in {t.name for t in bench.specs()}
    assert bench.call("check", {"task_id": "t1"}) == "OK\nfine"
    assert bench.call("check", {}) == "OK\nfine"
    assert "limit" in bench.call("check", {})
    assert asked == [(tmp_path / "harness", "t1"), (tmp_path / "harness", None)]


def test_context_window_comes_from_the_model_the_option_or_the_local_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HARNESS_OPT_LOCAL_CTX", raising=False)
    assert context_window("local/smollm2") == (8192, "the local model's context")
    monkeypatch.setenv("HARNESS_OPT_LOCAL_CTX", "4096")
    assert context_window("local/smollm2")[0] == 4096
    assert context_window("local/smollm2", 20_000) == (20_000, "--meta-context")
    assert context_window("openai/gpt-4.1")[0] > 100_000
    plan = ContextBudget.plan("local/smollm2")
    assert plan.window == 4096 and plan.prompt_tokens + plan.output_tokens < plan.window
    assert ContextBudget.plan("openai/gpt-4.1").prompt_tokens == 60_000  # capped unless asked for


def _overflowing(limit_chars: int, reply: str) -> Any:
    """A meta-model that refuses, as llama.cpp does, any prompt longer than `limit_chars`."""
    calls: list[int] = []

    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        size = len(transcript(messages))
        calls.append(size)
        if size > limit_chars:
            raise CustomLLMError(status_code=400, message=f"Requested tokens ({size}) exceed context window")
        return reply

    return respond, calls


def test_a_refused_single_call_is_retried_with_less_evidence(tmp_path: Path) -> None:
    from tests.support.optimize import chat_reply

    failing = [make_trace(f"t{i}", label=f"l{i}", got="y", padding=400) for i in range(12)]
    inp = make_input(failing_traces=failing)
    reply = chat_reply("label list", [{"path": "prompts/system.j2", "content": "new prompt\n"}])
    respond, calls = _overflowing(14_000, reply)
    with scripted_model("meta-overflow", respond) as m:
        proposer = LLMProposer(m.model, mode="single", context_tokens=16_000)
        out = proposer.propose(inp, 1)
    assert len(out) == 1 and isinstance(out[0], Proposal)
    assert calls[0] > 14_000 >= calls[-1]  # refused, then sent with less evidence
    assert out[0].meta["evidence"]["share"] < 1.0
    assert out[0].spend is not None and out[0].spend.overflows >= 1
    assert is_context_error(CustomLLMError(status_code=400, message="exceed context window of 8192"))


def test_a_refused_step_is_retried_with_a_shorter_trajectory(tmp_path: Path) -> None:
    """The model's real limit is below the plan (a tokenizer denser than planned): a step it refuses
    is sent again with less trajectory, until the old observation is elided and the call fits."""
    inp = make_input(files={**make_input().files, "prompts/system.j2": "Classify.\n"})
    sizes: list[int] = []
    limit = {"chars": 0}

    def meta(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        size = len(transcript(messages))
        step = steps_taken(messages)
        if step == 0:
            limit["chars"] = size + 1_500  # room for a short step, not for a long observation
        sizes.append(size)
        if size > limit["chars"]:
            raise CustomLLMError(status_code=400, message=f"Requested tokens ({size}) exceed context window")
        if step == 0:
            return step_reply("read_file", {"path": "traces/failing.md"})
        if step == 1:
            assert "cut to fit the context" in transcript(messages)  # the long observation, shortened
        if step == 1:
            return step_reply("write_file", {"path": "prompts/system.j2", "content": "Classify exactly.\n"})
        return step_reply("finish", {"mechanism": "exact", "hypothesis": "h"})

    failing = [make_trace(f"t{i}", label=f"l{i}", got="y", padding=300) for i in range(6)]
    with scripted_model("meta-refuses", meta) as m:
        proposer = LLMProposer(m.model, context_tokens=6_000, max_steps=6)
        out = proposer.propose(inp.model_copy(update={"failing_traces": failing}), 1)
    assert [p.mechanism for p in out] == ["exact"], proposer.notes
    assert out[0].edits == {"prompts/system.j2": "Classify exactly.\n"}
    refused = [s for s in sizes if s > limit["chars"]]
    assert refused and out[0].spend is not None and out[0].spend.overflows == len(refused)
    assert all(s <= 6_000 * 3 for s in sizes)  # every prompt inside the planned window
