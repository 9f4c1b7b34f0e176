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
    n = 1
    while cand_dir.exists():  # several candidates of one parent in one test
        cand_dir, n = tmp_path / f"{name}{n}", n + 1
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
    from tests.support.operators import apply, proposal_input, seed_version

    seed = seed_version(tmp_path)
    suite = load_suite(Path(__file__).resolve().parents[1] / "tasks" / "banking77")
    proposals = OperatorsProposer().propose(proposal_input(seed), n=4)
    assert proposals and any("retriev" in p.mechanism for p in proposals)
    for proposal in proposals:
        report = scan_candidate(apply(seed, proposal), seed, suite, editable=AGENT_HARNESS_EDITABLE)
        assert not report.rejected, (proposal.mechanism, report.summary())
        assert not report.blocks_incumbent, (proposal.mechanism, report.summary())


# ------------------------------------------------------------------ what the candidate introduces

USER_SUITES = REPO / "tests" / "fixtures" / "user_suites"


def test_a_suite_whose_inputs_are_its_label_names_stays_clean(tmp_path: Path) -> None:
    """Issue 14: val messages that are an intent's name ('transfer not received by recipient') were
    matched in the label list the classifier operator writes from train and in the user's own prompt;
    every candidate was rejected. Label names are public (train answers), so nothing is found."""
    from harness_opt.propose.operators import OperatorsProposer
    from harness_opt.propose.operators.shape import input_text
    from harness_opt.scaffold import init_project

    made = init_project("intents", tmp_path, system_prompt=USER_SUITES / "intents" / "prompt.md")
    suite = load_suite(USER_SUITES / "intents")
    labels = {str(t.expected) for t in suite.tasks("train")}
    named = [t for t in suite.tasks("val") if input_text(t.input).replace(" ", "_") in labels]
    assert len(named) >= 3  # the collision this test is about is really in the data
    seed = HarnessVersion.load(made.harness_dir)
    assert "transfer_not_received_by_recipient" in seed.render("system.j2")
    files = {p: b.decode() for p, b in seed.files().items()}
    from harness_opt.propose.base import ProposalInput

    inp = ProposalInput(
        agent="intents",
        version_label=seed.label,
        files=files,
        editable=AGENT_HARNESS_EDITABLE,
        suite="intents",
        failing_traces=[],
        train_tasks=suite.tasks("train"),
    )
    proposals = OperatorsProposer().propose(inp, 10)
    assert len(proposals) >= 4
    from harness_opt.harness import create_version

    for proposal in proposals:
        cand = create_version(seed, proposal.edits, proposer=proposal.proposer, hypothesis="h", changes=[])
        assert "data/labels.json" in cand.files()
        report = scan_candidate(cand, seed, suite, editable=AGENT_HARNESS_EDITABLE)
        assert not report.blocks_incumbent, (proposal.mechanism, report.summary())


def test_text_the_parent_or_the_user_seed_already_had_is_not_introduced(tmp_path: Path, suite: Any) -> None:
    val = [t for t in suite.tasks("val") if len(t.input["text"].split()) > 9][:2]
    user_note = f"# the user's own note: {val[0].input['text']}\n"
    parent_dir = tmp_path / "parent"
    shutil.copytree(SEED, parent_dir)
    (parent_dir / "agent.py").write_text(user_note + AGENT)  # the seed, as the user wrote it
    untouched = scan(
        tmp_path, suite, {"prompts/system.j2": (SEED / "prompts/system.j2").read_text() + "\nBe brief.\n"}
    )
    assert untouched.findings == []
    moved = scan(tmp_path, suite, {"prompts/system.j2": user_note.lstrip("# ")})  # moved, not introduced
    assert moved.findings == []
    added = scan(tmp_path, suite, {"prompts/system.j2": f"Example: {val[1].input['text']}\n"})
    assert added.rejected and val[1].id in added.summary()


def _wrapped(text: str) -> dict[str, str]:
    w = text.split()
    half = len(w) // 2
    a, b = " ".join(w[:half]), " ".join(w[half:])
    return {
        "prompt wrapped over two lines": {"prompts/system.j2": f"Hint: {a}\n{b}\n"},
        "python implicit concatenation": {"agent.py": AGENT + f'\nHINT = (\n    "{a} "\n    "{b}"\n)\n'},
        "python + of constants": {"agent.py": AGENT + f'\nHINT = "{a} " + \\\n    "{b}"\n'},
        "python comment block": {"agent.py": AGENT + f"\n# {a}\n# {b}\n"},
        "json list of chunks": {
            "data/hints.json": json.dumps(
                {"h": [" ".join(w[i : i + 3]) for i in range(0, len(w), 3)]}, indent=1
            )
        },
        "csv cell": {"data/hints.csv": f'text,label\n"{text}",x\n'},
        "docstring over lines": {"agent.py": f'"""{a}\n{b}"""\n' + AGENT},
    }  # type: ignore[return-value]


@pytest.mark.parametrize("how", list(_wrapped("a b c d e f g h i j")))
def test_leaks_split_across_lines_strings_or_items_are_caught(tmp_path: Path, suite: Any, how: str) -> None:
    task = next(t for t in suite.tasks("val") if len(t.input["text"].split()) >= 12)
    report = scan(tmp_path, suite, _wrapped(task.input["text"])[how])
    assert report.rejected, report.summary()
    assert any(f.kind == "sealed-input" and task.id in f.message for f in report.findings)


def test_a_data_file_of_train_texts_never_spells_a_sealed_input_across_items(
    tmp_path: Path, suite: Any
) -> None:
    """Barriers: a window may not join the end of one public text to the start of the next."""
    texts = [t.input["text"] for t in suite.tasks("train")]
    lines = "\n".join(texts)
    report = scan(tmp_path, suite, {"data/train.txt": lines, "data/train.json": json.dumps(texts)})
    assert report.findings == []


def test_a_paraphrased_val_input_is_flagged_and_a_paraphrased_train_input_is_not(
    tmp_path: Path, suite: Any
) -> None:
    task = next(t for t in suite.tasks("val") if t.id == "b77-test-00014")
    reordered = " ".join(reversed(task.input["text"].rstrip("?.").split()))
    report = scan(
        tmp_path, suite, {"prompts/system.j2": f"If a customer writes: {reordered}\nanswer card_arrival\n"}
    )
    [finding] = [f for f in report.findings if f.kind == "sealed-paraphrase"]
    assert finding.severity == "flag" and task.id in finding.message and "paraphrase" in finding.message
    assert report.blocks_incumbent and not report.rejected
    train = suite.tasks("train")[123].input["text"]
    clean = scan(tmp_path, suite, {"prompts/system.j2": " ".join(reversed(train.split())) + "\n"})
    assert not [f for f in clean.findings if f.kind == "sealed-paraphrase"]


def test_a_finding_names_the_split_the_task_and_why_the_text_is_not_public(
    tmp_path: Path, suite: Any
) -> None:
    task = suite.tasks("test")[7]
    report = scan(tmp_path, suite, {"prompts/system.j2": f"Example: {task.input['text']}\n"})
    [finding] = [f for f in report.findings if f.kind == "sealed-input"]
    assert finding.message.startswith(f"test task {task.id}: ")
    assert "not public: no train input or answer (label)" in finding.message
    assert finding.file == "prompts/system.j2" and finding.line == 1


def test_model_params_outside_the_allowlist_are_rejected(tmp_path: Path, suite: Any) -> None:
    """harness.toml with `api_base` does not even load; a version whose manifest was changed after
    loading (the scan's second line) is rejected, naming the parameter. Inherited settings pass."""
    import dataclasses

    cand, parent = child(tmp_path, {"agent.py": AGENT + "\n"})

    def with_params(**extra: Any) -> HarnessVersion:
        model = cand.manifest.model.model_copy(update={"params": {**cand.manifest.model.params, **extra}})
        return dataclasses.replace(cand, manifest=cand.manifest.model_copy(update={"model": model}))

    report = scan_candidate(
        with_params(api_base="http://evil.example"), parent, suite, editable=AGENT_HARNESS_EDITABLE
    )
    assert kinds(report) == {"model-param": "reject"} and "'api_base'" in report.summary()
    huge = scan_candidate(with_params(temperature=50), parent, suite, editable=AGENT_HARNESS_EDITABLE)
    assert kinds(huge) == {"model-param": "reject"}
    ok = scan_candidate(
        with_params(stop=["\n"], max_tokens=32), parent, suite, editable=AGENT_HARNESS_EDITABLE
    )
    assert ok.findings == []
    inherited = scan_candidate(cand, parent, suite, editable=AGENT_HARNESS_EDITABLE)
    assert inherited.findings == []


def test_short_numbers_are_not_task_ids(tmp_path: Path) -> None:
    from harness_opt.records import Task
    from harness_opt.suites.table import TableSuite
    from harness_opt.trust.sealed import build_index, find_literals

    tasks = {
        s: [Task(id=str(1000 + i + 100 * n), input={"q": f"question {i}"}, expected="a") for i in range(3)]
        for n, s in enumerate(("train", "val", "test"))
    }
    index = build_index(TableSuite("nums", tmp_path, tasks))
    assert find_literals("max_tokens = 1101\nwait 1200 ms\n", index) == []


def test_dropped_tool_calls_are_noted_only_where_there_are_tools(tmp_path: Path, suite: Any) -> None:
    """init's loop has a ctx.call_tool site even for a suite without tools; replacing it by an agent
    that never calls tools loses nothing there, but does where tools.json has tools."""
    calling = AGENT.replace(
        "    reply = ctx.llm(messages)", "    ctx.call_tool('lookup', {})\n    reply = ctx.llm(messages)"
    )
    tool = '[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]'
    for tools, expected in (("[]", {}), (tool, {"removed-tools": "note"})):
        parent_dir = tmp_path / "parent"
        shutil.rmtree(parent_dir, ignore_errors=True)
        shutil.copytree(SEED, parent_dir)
        (parent_dir / "agent.py").write_text(calling)
        (parent_dir / "tools.json").write_text(tools)
        report = scan(tmp_path, suite, {"agent.py": AGENT})
        assert kinds(report) == expected


def test_a_sealed_tasks_parent_side_metadata_is_sealed_too(tmp_path: Path) -> None:
    """A harness never sees a task's metadata (a simulated user's scenario, a judge's rubric, the other
    columns of a `[data]` row), so quoting it for a val task is a leak as much as quoting its input;
    a train task's is public. Before, the scan read only inputs and answers: a pasted τ² user scenario
    went unseen."""
    topics = ["refunds", "delivery", "passwords", "invoices", "upgrades", "cancellations", "coupons"]
    rows = []
    for i, topic in enumerate(topics):
        split = "train" if i < 4 else "val"
        rubric = f"the reply must mention the {topic} policy page and apologise once for case {i}"
        rows.append(
            {"id": f"q{i}", "question": f"a question about {topic}", "expected": "yes", "split": split}
        )
        rows[-1]["rubric"] = rubric
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    (suite_dir / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (suite_dir / "suite.toml").write_text(
        '[suite]\nname = "rubrics"\n[data]\nsource = "tasks.jsonl"\nid = "id"\ninput = ["question"]\n'
        'expected = "expected"\n[splits]\ncolumn = "split"\n[scorer]\nkind = "exact"\n'
    )
    suite = load_suite(suite_dir)
    val = suite.tasks("val")[0]
    assert "rubric" in val.metadata and "rubric" not in val.input  # parent-side only
    leaked = scan(tmp_path, suite, {"prompts/system.j2": f"Grading: {val.metadata['rubric']}\n"})
    assert leaked.rejected and val.id in leaked.summary(), leaked.summary()
    train = suite.tasks("train")[0]
    public = scan(tmp_path, suite, {"prompts/system.j2": f"Grading: {train.metadata['rubric']}\n"})
    assert public.findings == [], public.summary()
