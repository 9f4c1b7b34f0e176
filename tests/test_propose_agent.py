"""The `agent` proposer with fake coding agents: small Python scripts run as the agent command."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness_opt.errors import UserError
from harness_opt.propose import agent_cli
from harness_opt.propose.agent_cli import AgentCLIProposer, bwrap_path, parse_hypothesis
from harness_opt.propose.base import HistoryEntry, ProposalInput, Proposer
from harness_opt.records import RolloutKey, Task, ToolCallEvent, Trace

FILES = {
    "harness.toml": "[harness]\nname = 'clf'\n",
    "prompts/system.j2": "Classify the query.\n",
    "tools.json": "[]\n",
    "agent.py": "def run(task, ctx):\n    return 'x'\n",
}


def trace(task_id: str, passed: bool) -> Trace:
    return Trace(
        run_id="r",
        key=RolloutKey(
            version_hash="h", suite="banking77", split="train", task_id=task_id, trial=0, model="m"
        ),
        task_input={"text": f"query {task_id}"},
        events=[ToolCallEvent(name="lookup", args={"q": task_id}, result=f"RESULT-{task_id}")],
        output="x",
        passed=passed,
        score=float(passed),
        feedback=f"FEEDBACK-{task_id}",
    )


def make_input() -> ProposalInput:
    return ProposalInput(
        agent="clf",
        version_label="clf@v0001",
        files=FILES,
        editable=("prompts/*.j2", "tools.json", "agent.py"),
        suite="banking77",
        failing_traces=[trace("t1", False), trace("t2", False)],
        passing_traces=[trace("t3", True)],
        train_tasks=[Task(id="t1", input={}, expected="card_lost")],
        history=[
            HistoryEntry(
                iteration=1,
                candidate="clf@v0002",
                proposer="agent",
                mechanism="few-shot",
                hypothesis="HIST-1",
                outcome="rejected",
            )
        ],
    )


def fake_agent(tmp_path: Path, body: str) -> tuple[str, Path]:
    """A 'coding agent': a Python script run with the work dir as its cwd and first argument."""
    script = tmp_path / "fake_agent.py"
    script.write_text(
        "import os, sys\nfrom pathlib import Path\nwd = Path(sys.argv[1])\n" + textwrap.dedent(body)
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{workdir}}", script


EDITING_AGENT = """
    assert Path.cwd() == wd
    must = ["INSTRUCTIONS.md", "history/INDEX.md", "train_tasks.jsonl", "traces/failing.md",
            "traces/failing.jsonl", "traces/passing.md", "harness/prompts/system.j2", "harness/agent.py"]
    missing = [m for m in must if not (wd / m).is_file()]
    if missing:
        sys.exit(f"missing {missing}")
    failing = (wd / "traces/failing.md").read_text()
    assert "RESULT-t1" in failing and "FEEDBACK-t2" in failing, failing
    assert "HIST-1" in (wd / "history/INDEX.md").read_text()
    assert "prompts/*.j2" in (wd / "INSTRUCTIONS.md").read_text()
    (wd / "harness/prompts/system.j2").write_text("Classify the query. Answer with one label.\\n")
    (wd / "harness/harness.toml").write_text("tampered")
    (wd / "HYPOTHESIS.md").write_text("mechanism: answer format\\nOne label only.\\nFewer parse errors.\\n")
    print("done editing")
"""


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_fake_agent_edit_becomes_a_proposal(tmp_path: Path, sandbox: str) -> None:
    command, script = fake_agent(tmp_path, EDITING_AGENT)
    proposer = AgentCLIProposer(command, sandbox=sandbox, ro_binds=[script], timeout_s=60)  # type: ignore[arg-type]
    assert isinstance(proposer, Proposer)
    out = proposer.propose(make_input(), 1)

    assert len(out) == 1, proposer.notes
    p = out[0]
    assert p.proposer == "agent"
    assert p.edits == {"prompts/system.j2": "Classify the query. Answer with one label.\n"}
    assert p.mechanism == "answer format"
    assert p.hypothesis == "One label only. Fewer parse errors."
    assert any("harness.toml" in d and "not editable" in d for d in p.meta["dropped_edits"])
    assert "done editing" in p.meta["output_tail"]
    assert p.meta["sandbox"] == ("none" if sandbox == "none" else ("bwrap" if bwrap_path() else "none"))


def test_sandboxed_agent_cannot_read_val_data_or_the_project(tmp_path: Path, repo_root: Path) -> None:
    val = tmp_path / "suite" / "val.jsonl"
    val.parent.mkdir()
    val.write_text("VAL-SECRET-LABEL\n")
    body = f"""
    report = []
    for target in [{str(val)!r}, {str(repo_root / "pyproject.toml")!r}, {str(repo_root)!r}]:
        try:
            p = Path(target)
            data = p.read_text() if p.is_file() else " ".join(os.listdir(p))
            report.append(f"LEAKED {{target}}: {{data[:80]}}")
        except OSError as exc:
            report.append(f"blocked {{target}}: {{type(exc).__name__}}")
    (wd / "harness/prompts/system.j2").write_text("\\n".join(report))
    (wd / "HYPOTHESIS.md").write_text("mechanism: escape\\ntry")
    """
    command, script = fake_agent(tmp_path, body)
    out = AgentCLIProposer(command, sandbox="bwrap", ro_binds=[script]).propose(make_input(), 1)

    report = out[0].edits["prompts/system.j2"]
    assert report is not None
    assert "LEAKED" not in report and "VAL-SECRET" not in report, report
    assert report.count("blocked") == 3  # the val file, a project file, the project directory


def test_home_inside_the_sandbox_is_empty(tmp_path: Path) -> None:
    body = """
    (wd / "harness/prompts/system.j2").write_text(repr(sorted(os.listdir(os.environ["HOME"]))))
    """
    command, script = fake_agent(tmp_path, body)
    out = AgentCLIProposer(command, sandbox="bwrap", ro_binds=[script]).propose(make_input(), 1)
    assert out[0].edits["prompts/system.j2"] == "[]"


def test_environment_keeps_only_the_pass_through_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-agent")
    monkeypatch.setenv("HARNESS_OPT_SECRET", "nope")
    monkeypatch.setenv("MY_TOKEN", "nope")
    body = """
    names = sorted(k for k in os.environ if k in ("OPENAI_API_KEY", "HARNESS_OPT_SECRET", "MY_TOKEN", "PATH"))
    (wd / "harness/prompts/system.j2").write_text(" ".join(names))
    """
    command, script = fake_agent(tmp_path, body)
    out = AgentCLIProposer(command, ro_binds=[script]).propose(make_input(), 1)
    assert out[0].edits["prompts/system.j2"] == "OPENAI_API_KEY PATH"
    assert out[0].mechanism == "unstated"  # no HYPOTHESIS.md written


def test_timeout_gives_no_proposal(tmp_path: Path) -> None:
    command, script = fake_agent(
        tmp_path,
        """
    import time
    (wd / "harness/prompts/system.j2").write_text("half-done")
    time.sleep(30)
    """,
    )
    proposer = AgentCLIProposer(command, ro_binds=[script], timeout_s=1.5)
    out = proposer.propose(make_input(), 1)
    assert out == []
    assert "timed out" in proposer.notes[0]


def test_failed_agent_and_no_change_give_no_proposal(tmp_path: Path) -> None:
    command, script = fake_agent(
        tmp_path,
        """
    (wd / "harness/prompts/system.j2").write_text("half-done")
    sys.exit(3)
    """,
    )
    proposer = AgentCLIProposer(command, ro_binds=[script])
    assert proposer.propose(make_input(), 1) == []
    assert "status 3" in proposer.notes[0]

    command, script = fake_agent(tmp_path, "print('looked, changed nothing')\n")
    proposer = AgentCLIProposer(command, ro_binds=[script])
    assert proposer.propose(make_input(), 2) == []
    assert len(proposer.notes) == 2 and "no editable file" in proposer.notes[0]


def test_each_candidate_is_told_the_mechanisms_already_proposed(tmp_path: Path) -> None:
    command, script = fake_agent(
        tmp_path,
        """
    instructions = (wd / "INSTRUCTIONS.md").read_text()
    n = instructions.count("Already proposed")
    (wd / "harness/agent.py").write_text(f"# candidate {n}\\n")
    (wd / "HYPOTHESIS.md").write_text(f"mechanism: m{n}\\nh")
    """,
    )
    out = AgentCLIProposer(command, ro_binds=[script]).propose(make_input(), 2)
    assert [p.mechanism for p in out] == ["m0", "m1"]
    assert out[1].edits == {"agent.py": "# candidate 1\n"}


def _venv(where: Path) -> Path:
    """A venv (no pip: fast) whose python is a symlink out of `where`, like any user's venv."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(where)],
        check=True,
        capture_output=True,
    )
    return where / "bin" / "python"


def test_agent_cli_runs_from_a_venv_and_as_a_console_script(tmp_path: Path) -> None:
    """Finding 7: bwrap could not execvp an interpreter outside system folders (7 tests failed)."""
    assert bwrap_path() is not None, "bubblewrap must work here: the agent proposer refuses without it"
    python = _venv(tmp_path / "venv")  # under /tmp, like a CI workspace or a throwaway clone
    script = tmp_path / "fake_agent.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nwd = Path(sys.argv[1])\n"
        "(wd / 'harness/prompts/system.j2').write_text(sys.executable)\n"
        "(wd / 'HYPOTHESIS.md').write_text('mechanism: venv')\n"
    )
    console = tmp_path / "venv" / "bin" / "fake-agent"  # an installed CLI: a #! script in the venv
    console.write_text(f"#!{python}\n" + script.read_text())
    console.chmod(0o755)
    for command in (f"{python} {script} {{workdir}}", f"{console} {{workdir}}"):
        proposer = AgentCLIProposer(command, sandbox="bwrap", ro_binds=[script])
        out = proposer.propose(make_input(), 1)
        assert len(out) == 1, proposer.notes
        assert out[0].meta["sandbox"] == "bwrap" and out[0].mechanism == "venv"


def test_auto_refuses_to_run_the_agent_unconfined(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    command, _ = fake_agent(tmp_path, "pass\n")
    monkeypatch.setattr(agent_cli, "bwrap_path", lambda: None)
    monkeypatch.setattr(agent_cli, "bwrap_problem", lambda: ("bwrap is missing", "install bubblewrap"))
    with pytest.raises(UserError, match=r"bwrap is missing.*sandbox='none'"):
        AgentCLIProposer(command)
    assert AgentCLIProposer(command, sandbox="none").bwrap is None  # named: allowed


def test_missing_command_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not found"):
        AgentCLIProposer("definitely-not-a-coding-agent --go")
    with pytest.raises(UserError, match="empty"):
        AgentCLIProposer("  ")


def test_parse_hypothesis() -> None:
    assert parse_hypothesis("# mechanism: tool retry\n\nRetry failed lookups.\n") == (
        "tool retry",
        "Retry failed lookups.",
    )
    assert parse_hypothesis("Just a sentence.") == ("", "Just a sentence.")


# --- the history filesystem, ./check, presets, links -------------------------------------------------

HISTORY_AGENT = """
    import json, subprocess
    marker = "Think about which label fits best."
    index = (wd / "history/INDEX.md").read_text()
    system = (wd / "harness/prompts/system.j2").read_text()
    if "v0002" not in index:  # the first round: only the seed has been tried
        (wd / "harness/prompts/system.j2").write_text(marker + "\\n" + system)
        (wd / "HYPOTHESIS.md").write_text("mechanism: think first\\nthinking helps")
        sys.exit(0)
    hits = subprocess.run(["grep", "-rl", marker, "history/candidates"], capture_output=True, text=True)
    traces = sorted(h for h in hits.stdout.split() if "/train/traces/" in h)
    trace = Path(traces[0]).read_text()
    assert "### trace task=" in trace and "expected (train gold):" in trace, trace[:300]
    (wd / "harness/prompts/system.j2").write_text(system + "Be exact.\\n")
    ok = subprocess.run(["./check"], capture_output=True, text=True)
    bad = subprocess.run(["./check", VAL_ID], capture_output=True, text=True)
    said = {"read": traces[0], "ok": [ok.returncode, ok.stdout[:400]],
            "val": [bad.returncode, "is not a train task" in bad.stdout, VAL_ID in bad.stdout]}
    (wd / "HYPOTHESIS.md").write_text("mechanism: be exact\\n" + json.dumps(said))
"""


def test_agent_reads_a_prior_candidates_trace_and_checks_its_candidate(tmp_path: Path) -> None:
    """An optimize run with a fake coding agent in bubblewrap: round 2 greps the history for the
    change round 1 made, reads that candidate's raw train trace, edits, runs ./check (OK), tries a
    val task (refused), and hands back a valid candidate."""
    import json
    import shutil

    from harness_opt.search.budget import Budget
    from harness_opt.suites.loader import load_suite
    from tests.support.optimize import SEED, SUITE, gold_by_text, prompt_sensitive_responder, run_scripted

    assert bwrap_path() is not None, "bubblewrap must work here: the agent proposer refuses without it"
    seed = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, seed)
    val_id = load_suite(SUITE).tasks("val")[0].id
    command, script = fake_agent(tmp_path, f"VAL_ID = {val_id!r}\n" + textwrap.dedent(HISTORY_AGENT))
    proposer = AgentCLIProposer(command, sandbox="bwrap", ro_binds=[script], timeout_s=120)
    respond = prompt_sensitive_responder(gold_by_text())
    result = run_scripted(seed, respond, proposer, budget=Budget(iterations=2), history_train=3)
    by = {c.mechanism: c for c in result.candidates}
    assert by["think first"].outcome == "accepted", result.candidates
    second = by["be exact"]
    assert second.outcome in ("accepted", "rejected") and second.val_score is not None, second.reason  # valid
    said = json.loads(second.hypothesis)
    assert said["read"].startswith("history/candidates/v0002/train/traces/")
    assert said["ok"][0] == 0 and "loads: yes" in said["ok"][1] and "train task b77-train" in said["ok"][1]
    assert said["val"] == [1, True, True]  # refused, the same answer as for any id that is not train
    assert second.spend is not None and second.spend.seconds > 0 and second.spend.model


def test_a_linked_harness_or_hypothesis_is_never_followed(tmp_path: Path) -> None:
    """The agent replaces harness/ (and HYPOTHESIS.md) with links to a folder outside its sandbox that
    holds editable-looking files; this process, outside the sandbox, must not read through them."""
    outside = tmp_path / "outside"
    (outside / "prompts").mkdir(parents=True)
    (outside / "prompts" / "system.j2").write_text("OUTSIDE-SECRET prompt\n")
    (outside / "hyp.md").write_text("mechanism: OUTSIDE-SECRET\nread through a link\n")
    body = f"""
    import shutil
    shutil.rmtree(wd / "harness")
    os.symlink({str(outside)!r}, wd / "harness")
    (wd / "HYPOTHESIS.md").unlink()
    os.symlink({str(outside / "hyp.md")!r}, wd / "HYPOTHESIS.md")
    """
    command, script = fake_agent(tmp_path, body)
    proposer = AgentCLIProposer(command, sandbox="bwrap", ro_binds=[script])
    out = proposer.propose(make_input(), 1)
    assert all("OUTSIDE-SECRET" not in (c or "") for p in out for c in p.edits.values())
    assert all("OUTSIDE-SECRET" not in p.mechanism + p.hypothesis for p in out)
    # every original file now reads as deleted, nothing from outside came in
    assert all(set(p.edits.values()) == {None} for p in out)

    body = f"""
    (wd / "harness/prompts/system.j2").unlink()
    os.symlink({str(outside / "prompts" / "system.j2")!r}, wd / "harness/prompts/system.j2")
    (wd / "HYPOTHESIS.md").write_text("mechanism: link\\nx")
    """
    command, script = fake_agent(tmp_path, body)
    proposer = AgentCLIProposer(command, sandbox="bwrap", ro_binds=[script])
    out = proposer.propose(make_input(), 1)
    assert [p.edits for p in out] == [{"prompts/system.j2": None}]
    assert any("symbolic link" in d for d in out[0].meta["dropped_edits"])


RECORDING_CLI = """#!{python}
import json, os, sys
from pathlib import Path
wd = Path.cwd()
seen = {{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in {names!r}}},
        "instructions": (wd / "INSTRUCTIONS.md").read_text()[:200]}}
(wd / "harness/prompts/system.j2").write_text(json.dumps(seen))
(wd / "HYPOTHESIS.md").write_text("mechanism: {name}\\nrecorded")
"""


@pytest.mark.parametrize("name", ["claude", "codex", "gemini", "aider", "opencode"])
def test_presets_run_the_documented_command_with_their_keys(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from harness_opt.propose.presets import PRESETS, PROMPT

    preset = PRESETS[name]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    names = [*preset.keys, *preset.env]
    cli = bin_dir / preset.argv[0]
    cli.write_text(RECORDING_CLI.format(python=sys.executable, names=names, name=name))
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for key in preset.keys:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(UserError, match=preset.keys[0]):
        AgentCLIProposer.from_preset(name)
    monkeypatch.setenv(preset.keys[-1], "sk-test")
    out = AgentCLIProposer.from_preset(name, sandbox="bwrap").propose(make_input(), 1)
    assert len(out) == 1 and out[0].mechanism == name
    seen = json.loads(out[0].edits["prompts/system.j2"] or "")
    files = ["harness/agent.py", "harness/prompts/system.j2", "harness/tools.json", "HYPOTHESIS.md"]
    expected: list[str] = []
    for arg in preset.argv[1:]:
        expected += files if arg == "{files}" else [arg.replace("{prompt}", PROMPT)]
    assert seen["argv"] == expected
    assert seen["env"][preset.keys[-1]] == "sk-test"
    assert all(seen["env"][k] == v for k, v in preset.env.items())
    assert seen["instructions"].startswith("# Program: improve the harness of `clf`")


def test_a_preset_whose_cli_is_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="not installed") as caught:
        AgentCLIProposer.from_preset("codex")
    assert "npm install -g @openai/codex" in str(caught.value.fix)


def test_every_preset_is_documented_with_its_exact_command_and_keys(repo_root: Path) -> None:
    from harness_opt.propose.presets import PRESETS

    docs = (repo_root / "docs" / "proposers.md").read_text()
    for preset in PRESETS.values():
        assert f"`{shlex.join(preset.argv)}`" in docs, preset.name
        for key in (*preset.keys, *preset.env):
            assert key in docs, (preset.name, key)
