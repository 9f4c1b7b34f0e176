"""The candidate scan: sealed val/test literals, task ids, sandbox reaches, removed instrumentation, edits
outside the editable files — and no false alarm on the banking77 seed, whose prompt lists every label."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.suites.loader import load_suite
from harness_opt.trust.scan import scan_and_record, scan_candidate

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
AGENT = (SEED / "agent.py").read_text()


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(REPO / "tasks" / "banking77")


def child(tmp_path: Path, edits: dict[str, str], name: str = "cand") -> tuple[HarnessVersion, HarnessVersion]:
    parent_dir = tmp_path / "parent"
    if not parent_dir.exists():
        shutil.copytree(SEED, parent_dir)
    cand_dir = tmp_path / name
    shutil.copytree(parent_dir, cand_dir)
    for rel, text in edits.items():
        (cand_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (cand_dir / rel).write_text(text)
    return HarnessVersion.load(cand_dir), HarnessVersion.load(parent_dir)


def scan(tmp_path: Path, suite: Any, edits: dict[str, str]) -> Any:
    cand, parent = child(tmp_path, edits)
    return scan_candidate(cand, parent, suite, editable=AGENT_HARNESS_EDITABLE)


def kinds(report: Any) -> dict[str, str]:
    return {f.kind: f.severity for f in report.findings}


def test_the_seed_is_clean_although_its_prompt_lists_every_label(tmp_path: Path, suite: Any) -> None:
    seed = HarnessVersion.load(SEED)
    report = scan_candidate(seed, seed, suite, editable=AGENT_HARNESS_EDITABLE)
    assert report.findings == [] and report.max_severity is None and not report.blocks_incumbent


def test_val_answers_in_a_prompt_are_rejected(tmp_path: Path, suite: Any) -> None:
    val = suite.tasks("val")[:3]
    demos = "\n".join(f"Message: {t.input['text']}\nLabel: {t.expected}" for t in val)
    report = scan(tmp_path, suite, {"prompts/system.j2": (SEED / "prompts/system.j2").read_text() + demos})
    leaks = [f for f in report.findings if f.kind == "sealed-input"]
    assert {f.message.split(":")[0] for f in leaks} == {f"val task {t.id}" for t in val}
    assert all(f.file == "prompts/system.j2" and f.line for f in leaks)
    assert report.rejected and report.blocks_incumbent


def test_a_long_test_input_is_caught_by_an_eight_word_window(tmp_path: Path, suite: Any) -> None:
    long = next(t for t in suite.tasks("test") if len(t.input["text"].split()) > 14)
    words = long.input["text"].split()
    snippet = " ".join(words[3:12])  # nine words from the middle, reworded around
    report = scan(tmp_path, suite, {"agent.py": AGENT + f"\n# note: {snippet.upper()} matters\n"})
    assert any(f.kind == "sealed-input" and long.id in f.message for f in report.findings)


def test_train_examples_are_legitimate(tmp_path: Path, suite: Any) -> None:
    train = suite.tasks("train")[:20]
    demos = json.dumps([{"text": t.input["text"], "label": t.expected} for t in train])
    report = scan(tmp_path, suite, {"data/demos.json": demos})
    assert report.findings == []


def test_task_ids(tmp_path: Path, suite: Any) -> None:
    test_id, train_id = suite.tasks("test")[0].id, suite.tasks("train")[0].id
    report = scan(tmp_path, suite, {"agent.py": AGENT + f"\nSKIP = {{'{test_id}', '{train_id}'}}\n"})
    assert kinds(report)["sealed-task-id"] == "reject"
    assert kinds(report)["train-task-id"] == "note"


def test_edits_outside_the_editable_files_and_runtime_changes_are_rejected(
    tmp_path: Path, suite: Any
) -> None:
    toml = (SEED / "harness.toml").read_text().replace("wall_time_s = 60", "wall_time_s = 600")
    report = scan(tmp_path, suite, {"scorer_patch.py": "x = 1\n", "harness.toml": toml})
    assert kinds(report) == {"outside-editable": "reject", "runtime-change": "reject"}


@pytest.mark.parametrize(
    ("code", "kind", "severity"),
    [
        ("import socket\n", "network", "flag"),
        ("from urllib.request import urlopen\n", "network", "flag"),
        ("import subprocess\n", "process", "flag"),
        ("import os\nos.system('ls')\n", "process", "flag"),
        ("import os\nKEY = os.environ.get('OPENAI_API_KEY')\n", "env", "flag"),
        ("from os import getenv\n", "env", "flag"),
        ("DATA = open('/work/main/tasks/banking77/data/test.csv').read()\n", "file", "flag"),
        ("P = '../../tasks/banking77/suite.toml'\n", "file", "flag"),
        ("exec('print(1)')\n", "escape", "flag"),
        ("import ctypes\n", "escape", "flag"),
    ],
)
def test_reaches_beyond_ctx_are_flagged(
    tmp_path: Path, suite: Any, code: str, kind: str, severity: str
) -> None:
    report = scan(tmp_path, suite, {"agent.py": code + AGENT})
    assert kinds(report).get(kind) == severity, report.summary(10)
    assert report.blocks_incumbent and not report.rejected


@pytest.mark.parametrize(
    "line",
    [
        "    ctx._channel.sock.sendall(b'x')\n",
        "    ctx.call_tool = lambda name, args: {'ok': True}\n",
        "    type(ctx).llm = lambda self, m, **k: {'content': 'x'}\n",
        "    setattr(ctx, 'llm', print)\n",
    ],
)
def test_tampering_with_ctx_is_rejected(tmp_path: Path, suite: Any, line: str) -> None:
    code = AGENT.replace("    messages = [", line + "    messages = [")
    report = scan(tmp_path, suite, {"agent.py": code})
    assert report.rejected and {"ctx-tamper", "ctx-internals"} & set(kinds(report)), report.summary(10)


def test_removed_logging_and_model_calls_are_flagged(tmp_path: Path, suite: Any) -> None:
    logged = AGENT.replace(
        "    reply = ctx.llm(messages)", "    ctx.log('asking')\n    reply = ctx.llm(messages)"
    )
    parent_dir = tmp_path / "parent"
    shutil.copytree(SEED, parent_dir)
    (parent_dir / "agent.py").write_text(logged)
    report = scan(tmp_path, suite, {"agent.py": "def run(task, ctx):\n    return 'card_arrival'\n"})
    assert kinds(report) == {"removed-logging": "flag", "removed-llm": "flag"}


def test_printing_a_score_is_a_note(tmp_path: Path, suite: Any) -> None:
    code = AGENT.replace(
        "    reply = ctx.llm(messages)", "    print('score: 1.0')\n    reply = ctx.llm(messages)"
    )
    report = scan(tmp_path, suite, {"agent.py": code})
    assert kinds(report) == {"prints-score": "note"} and not report.blocks_incumbent


def test_scan_and_record_writes_the_ledger(tmp_path: Path, suite: Any) -> None:
    cand, parent = child(tmp_path, {"agent.py": "import socket\n" + AGENT})
    ledger = Ledger()
    report = scan_and_record(
        cand, parent, suite, editable=AGENT_HARNESS_EDITABLE, ledger=ledger, run_id="opt-1"
    )
    rows = ledger.scans(cand.hash)
    assert len(rows) == 1 and rows[0]["run_id"] == "opt-1" and rows[0]["max_severity"] == "flag"
    assert rows[0]["findings"] == [f.model_dump(mode="json") for f in report.findings]
    assert ledger.scans(parent.hash) == []


def test_train_derived_operator_candidates_pass_the_scan(tmp_path):
    """Regression: the retrieval-demos candidate ships 10k train texts; phrases train shares with
    val/test are public, so the scan must not reject it (it did, on windows spanning two texts)."""
    from harness_opt.propose.operators import OperatorsProposer
    from harness_opt.search.config import AGENT_HARNESS_EDITABLE
    from harness_opt.suites.loader import load_suite
    from harness_opt.trust.scan import scan_candidate
    from tests.test_operators_fakes import apply, proposal_input, seed_version

    seed = seed_version(tmp_path)
    suite = load_suite(Path(__file__).resolve().parents[1] / "tasks" / "banking77")
    proposals = OperatorsProposer().propose(proposal_input(seed), n=4)
    assert proposals and any("retriev" in p.mechanism for p in proposals)
    for proposal in proposals:
        report = scan_candidate(apply(seed, proposal), seed, suite, editable=AGENT_HARNESS_EDITABLE)
        assert not report.rejected, (proposal.mechanism, report.summary())
        assert not report.blocks_incumbent, (proposal.mechanism, report.summary())
