"""The history filesystem proposers read: every candidate's files, outcome, train scores and raw train
traces, ranked with per-task wins, and no val or test text anywhere in it (planted and grepped)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness_opt.ledger import Ledger
from harness_opt.propose.history_fs import HistorySource, build_history
from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.support.history import (
    TEST,
    VAL,
    HistoryReadingProposer,
    planted_responder,
    planted_suite,
    sealed_texts,
    tree_text,
)

THINK = "\nThink first, then answer with the intent name.\n"
ROUNDS = [
    [("think first", THINK)],
    [
        ("copy a val input", f"\nFor example: {VAL[0][1]}\n"),
        ("copy a val answer", f"\nOne of the intents is {VAL[1][2]}.\n"),
    ],
    [("be brief", "\nBe brief.\n")],
]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One optimize run on the planted suite (val and test inputs, answers and ids are unique texts),
    with the sealed test split evaluated at the end: val and test traces exist on disk."""
    root = tmp_path_factory.mktemp("planted")
    seed, suite_dir = planted_suite(root)
    proposer = HistoryReadingProposer(ROUNDS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_OPT_HOME", str(root / "home"))
        mp.setenv("HARNESS_OPT_TRACES", str(root / "home" / "traces"))
        ledger = Ledger()
        with scripted_model("planted-task", planted_responder) as model:
            config = OptimizeConfig(
                harness=seed,
                suite=suite_dir,
                model=model.model,
                train_sample=6,
                history_train=4,
                budget=Budget(iterations=3),
                force=True,
            )
            result = optimize(config, ledger=ledger, proposer=proposer)
        history = root / "final-history"
        source = HistorySource(
            ledger=ledger,
            run_id=result.run_id,
            agent="leaky",
            suite="leaky",
            model=model.model,
            train_tasks=load_suite(suite_dir).tasks("train"),
        )
        stats = build_history(source, history)
        traces_dir = root / "home" / "traces"
    return {
        "result": result,
        "ledger": ledger,
        "proposer": proposer,
        "history": history,
        "stats": stats,
        "traces": traces_dir,
    }


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [s for s in sealed_texts() if s.lower() in low]


def test_no_val_or_test_text_reaches_the_history(planted_run: dict[str, Any]) -> None:
    result, history = planted_run["result"], planted_run["history"]
    by = {c.mechanism: c for c in result.candidates}
    # the planted texts are really out there: in val/test traces on disk and in two candidates' files
    on_disk = "\n".join(p.read_text() for p in planted_run["traces"].rglob("*.jsonl"))
    assert VAL[0][1] in on_disk and TEST[0][1] in on_disk and result.best_test is not None
    assert by["copy a val input"].outcome == "invalid" and "sealed-input" in by["copy a val input"].reason
    assert by["copy a val answer"].outcome == "rejected" and "sealed-answer" in by["copy a val answer"].reason

    text = tree_text(history)
    assert _leaks(text) == []
    # the grep ran over real content: train inputs, traces and the accepted change are there
    assert planted_run["stats"].traces >= 4
    assert "how do i reset the pin of my card" in text and "Think first" in text
    for seen in planted_run["proposer"].history_texts:  # what the proposer read, every iteration
        assert _leaks(seen) == []
    for inp in planted_run["proposer"].inputs:  # and the rest of its input (history reasons included)
        assert _leaks(inp.model_dump_json()) == []


def test_a_candidate_holding_sealed_text_is_listed_without_its_files(planted_run: dict[str, Any]) -> None:
    history = planted_run["history"]
    index = json.loads((history / "index.json").read_text())
    withheld = {c["mechanism"]: c for c in index["candidates"] if c["withheld"]}
    assert set(withheld) == {"copy a val input", "copy a val answer"}
    for c in withheld.values():
        folder = history / "candidates" / c["folder"]
        assert not (folder / "files").exists() and not (folder / "train").exists()
        assert "withheld" in (folder / "SUMMARY.md").read_text()


def test_each_candidate_has_its_files_diff_scores_and_raw_train_traces(planted_run: dict[str, Any]) -> None:
    result, ledger, history = planted_run["result"], planted_run["ledger"], planted_run["history"]
    accepted = next(c for c in result.candidates if c.mechanism == "think first")
    assert accepted.outcome == "accepted"
    folder = history / "candidates" / accepted.label.split("@")[1]
    version_dir = Path(result.best_path) if result.best_hash == accepted.hash else None
    assert version_dir is not None
    assert (folder / "files" / "prompts" / "system.j2").read_text() == (
        version_dir / "prompts" / "system.j2"
    ).read_text()
    assert "+Think first, then answer with the intent name." in (folder / "diff.patch").read_text()
    summary = (folder / "SUMMARY.md").read_text()
    assert "ACCEPTED" in summary and "think first helps" in summary
    rows = ledger.query(
        "SELECT DISTINCT task_id, trial FROM rollouts WHERE version_hash = ? AND split = 'train'",
        [accepted.hash],
    )
    lines = (folder / "train" / "scores.tsv").read_text().splitlines()[1:]
    assert sorted(ln.split("\t")[0] for ln in lines) == sorted(r["task_id"] for r in rows)
    trace_files = sorted((folder / "train" / "traces").glob("*.md"))
    assert len(trace_files) == len(rows)
    one = trace_files[0].read_text()
    for needle in ("### trace task=", "expected (train gold):", "final output:", "scorer feedback:"):
        assert needle in one


def test_index_ranks_candidates_and_lists_train_and_val_wins(planted_run: dict[str, Any]) -> None:
    result, history = planted_run["result"], planted_run["history"]
    index = (history / "INDEX.md").read_text()
    ranking = index.split("## Ranking")[1].split("##")[0]
    rows = [ln for ln in ranking.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    scores = [float(r.split("|")[5]) for r in rows if r.split("|")[5].strip() != "-"]
    assert scores == sorted(scores, reverse=True) and len(rows) == 5  # the seed and 4 versions
    assert rows[-1].split("|")[4].strip() == "invalid"  # never measured: ranked last
    accepted = next(c for c in result.candidates if c.mechanism == "think first")
    folder = accepted.label.split("@")[1]
    train_wins = index.split("## Train tasks won and lost")[1].split("##")[0]
    line = next(ln for ln in train_wins.splitlines() if ln.startswith(f"- {folder} vs v0001"))
    won = int(line.split("won ")[1].split(" ")[0])
    assert won >= 1  # the accepted prompt is right on train tasks the seed got wrong
    val_wins = index.split("## Val tasks won and lost")[1]
    assert f"- {folder} vs v0001" in val_wins and "val-id" not in val_wins  # opaque keys only


def test_without_a_suite_the_history_has_files_and_outcomes_only(
    planted_run: dict[str, Any], tmp_path: Path
) -> None:
    """The training domain's history: no rollouts to show, the candidates' files and decisions still."""
    result = planted_run["result"]
    source = HistorySource(ledger=planted_run["ledger"], run_id=result.run_id, agent="leaky")
    stats = build_history(source, tmp_path / "h")
    assert stats.traces == 0 and stats.candidates == 5
    folders = sorted(p.name for p in (tmp_path / "h" / "candidates").iterdir())
    assert folders == ["v0001", "v0002", "v0003", "v0004", "v0005"]
    assert (tmp_path / "h" / "candidates" / "v0002" / "files" / "prompts" / "system.j2").is_file()
    assert not (tmp_path / "h" / "candidates" / "v0002" / "train").exists()
    assert _leaks(tree_text(tmp_path / "h")) == []
