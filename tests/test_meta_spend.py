"""Meta-model spend is first-class: every proposal's tokens, cost and time are in the ledger, the
leaderboard, the report, the budgets and the summary; a failed proposal is a recorded decision, and
only a streak of them ends a run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness_opt.cli.app import app
from harness_opt.cli.optimize_cmd import render_summary
from harness_opt.ledger import Ledger
from harness_opt.ledger.history import run_meta_spend, version_meta_spend
from harness_opt.propose.llm import LLMProposer
from harness_opt.report.leaderboard import leaderboard
from harness_opt.report.page import report
from harness_opt.search.budget import Budget
from harness_opt.search.records import OptimizeResult
from harness_opt.search.state import read_back
from harness_opt.testing import scripted_model
from tests.support.meta import step_reply, steps_taken
from tests.support.optimize import MARKER, SEED, gold_by_text, prompt_sensitive_responder, run_scripted

PRICE = 1e-5
"""Dollars per scripted token (a word) of the meta-model."""


def _seed(tmp_path: Path) -> Path:
    seed = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, seed)
    return seed


def _garbage(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
    return "I would rather not use your format."


def test_failed_proposals_are_decisions_and_only_a_streak_of_them_ends_the_run(tmp_path: Path) -> None:
    ledger = Ledger()
    with scripted_model("meta-garbage-run", _garbage, cost_per_token=PRICE) as m:
        proposer = LLMProposer(m.model, mode="single")
        result = run_scripted(
            _seed(tmp_path),
            prompt_sensitive_responder(gold_by_text()),
            proposer,
            ledger=ledger,
            budget=Budget(iterations=6),
            max_invalid_streak=2,
        )
    assert result.stop == "invalid_streak"  # not at the first failed round
    failed = [c for c in result.candidates if c.outcome == "invalid"]
    assert [c.iteration for c in failed] == [1, 2]
    assert all(c.mechanism.startswith("no proposal") for c in failed)
    assert all("unusable" in c.reason for c in failed)
    assert all(c.spend is not None and c.spend.calls >= 4 and c.spend.cost_usd > 0 for c in failed)
    rows = ledger.query(
        "SELECT candidate, meta_model, meta_calls, meta_tokens_in, meta_cost_usd, meta_seconds "
        "FROM decisions WHERE run_id = ? AND candidate = '-' ORDER BY iteration",
        [result.run_id],
    )
    assert [r["meta_calls"] for r in rows] == [c.spend.calls for c in failed if c.spend]
    assert all(r["meta_model"] == m.model and r["meta_tokens_in"] > 0 and r["meta_seconds"] > 0 for r in rows)
    total = run_meta_spend(ledger, result.run_id)
    assert total.proposals == 2 and total.cost_usd == pytest.approx(result.meta.cost_usd)


def test_a_run_of_failed_proposals_reaches_its_iteration_limit(tmp_path: Path) -> None:
    with scripted_model("meta-garbage-iter", _garbage) as m:
        result = run_scripted(
            _seed(tmp_path),
            prompt_sensitive_responder(gold_by_text()),
            LLMProposer(m.model, mode="single"),
            budget=Budget(iterations=2),
        )
    assert result.stop == "iterations" and result.stop_reason == "2 iterations done"


def _one_good_step_agent(system: str) -> Any:
    def meta(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        if steps_taken(messages) == 0:
            return step_reply("write_file", {"path": "prompts/system.j2", "content": f"{MARKER}\n{system}"})
        return step_reply("finish", {"mechanism": "think first", "hypothesis": "thinking helps"})

    return meta


def test_the_dollar_budget_counts_what_the_meta_model_spends(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    meta = _one_good_step_agent((seed / "prompts" / "system.j2").read_text())
    with scripted_model("meta-pricey", meta, cost_per_token=PRICE) as m:
        result = run_scripted(
            seed,
            prompt_sensitive_responder(gold_by_text()),  # the task model costs nothing
            LLMProposer(m.model),
            budget=Budget(iterations=5, dollars=1e-6),
        )
    assert result.meta.cost_usd > 1e-6 and result.cost_usd == pytest.approx(result.meta.cost_usd)
    assert result.stop == "dollars" and len(result.candidates) == 2  # the baseline and one candidate


def test_the_meta_dollar_budget_stops_the_run(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    meta = _one_good_step_agent((seed / "prompts" / "system.j2").read_text())
    with scripted_model("meta-capped", meta, cost_per_token=PRICE) as m:
        result = run_scripted(
            seed,
            prompt_sensitive_responder(gold_by_text()),
            LLMProposer(m.model),
            budget=Budget(iterations=5, meta_dollars=1e-6),
        )
    assert result.stop == "meta_dollars" and "meta-agent budget" in result.stop_reason


@pytest.fixture
def meta_run(tmp_path: Path) -> tuple[Ledger, OptimizeResult, str]:
    ledger = Ledger()
    seed = _seed(tmp_path)
    meta = _one_good_step_agent((seed / "prompts" / "system.j2").read_text())
    with scripted_model("meta-shown", meta, cost_per_token=PRICE) as m:
        result = run_scripted(
            seed,
            prompt_sensitive_responder(gold_by_text()),
            LLMProposer(m.model),
            ledger=ledger,
            budget=Budget(iterations=1),
        )
    return ledger, result, m.model


MetaRun = tuple[Ledger, OptimizeResult, str]


def test_meta_spend_is_in_the_ledger_state_and_leaderboard(meta_run: MetaRun) -> None:
    ledger, result, model = meta_run
    cand = result.candidates[1]
    assert cand.outcome == "accepted" and cand.spend is not None and cand.spend.calls == 2
    spend = version_meta_spend(ledger)[cand.hash]
    assert (spend.calls, spend.tokens_in, spend.model) == (2, cand.spend.tokens_in, model)
    assert spend.cost_usd == pytest.approx(cand.spend.cost_usd) == pytest.approx(result.meta.cost_usd)
    state, records = read_back(ledger, result.run_id)
    assert state.meta.cost_usd == pytest.approx(result.meta.cost_usd) and records[1].spend == cand.spend
    (board,) = leaderboard("banking77", ledger=ledger)
    rows = {r.hash: r for r in board.rows}
    assert rows[cand.hash].meta_cost_usd == pytest.approx(cand.spend.cost_usd)
    assert rows[cand.hash].meta_tokens == cand.spend.tokens_in + cand.spend.tokens_out
    assert rows[result.baseline_hash].meta_cost_usd is None


def test_meta_spend_is_in_the_report_the_leaderboard_command_and_the_summary(
    meta_run: tuple[Ledger, OptimizeResult, str], tmp_path: Path
) -> None:
    ledger, result, model = meta_run
    page = report(result.run_id, out=tmp_path / "r.html", ledger=ledger).read_text()
    assert 'id="meta-spend"' in page and f"({model}) over this run: 1 proposals, 2 calls" in page
    assert f"${result.meta.cost_usd:.4f} · {result.meta.tokens_in + result.meta.tokens_out:,} tok" in page
    out = CliRunner().invoke(app, ["leaderboard", "--suite", "banking77"], env={"COLUMNS": "240"})
    assert out.exit_code == 0 and "meta spend" in out.output
    assert f"${result.meta.cost_usd:.4f}" in out.output
    console = Console(record=True, width=240)
    render_summary(result, console)
    text = console.export_text()
    assert f"meta-agent {model}: 1 proposals · 2 calls" in text
    meta = result.meta
    assert f"largest call {meta.largest_call_tokens:,} of {meta.context_tokens:,} tokens" in text
