"""The thirteen original hostile harnesses of docs/security.md, each through the real evaluator.

Each test asserts that the attack's concrete effect did not happen (the file was not read or written,
the key was not seen, the listener got no connection, the ledger is intact, the fork server survived)
and that the scan saw what it should; a score of 0 alone proves nothing, since an attack that simply
outputs no label scores 0 too. These tests never skip: without a working bubblewrap they fail, because
evaluation refuses to run harness code less confined. New attacks: test_hostile_isolation.py (inside
the sandbox) and test_hostile_parent.py (against the parent process).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import traces_dir
from harness_opt.ledger import Ledger
from harness_opt.records import LLMCallEvent, LogEvent, ToolCallEvent
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from harness_opt.trust.scan import scan_candidate
from tests.support.hostile import (
    ATTACKS,
    HOSTILE,
    REPO,
    SEED,
    SUITE_DIR,
    Sampler,
    answer_gold,
    host_pids,
    run_attack,
    sandbox_processes,
)
from tests.support.runtime import Listener

RUNTIME_ONLY = {"llm_params_exfil", "llm_params_greedy"}
"""Attacks the static scan need not notice: the broker refuses them (test_hostile_parent.py)."""


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def test_the_hostile_suite_has_every_attack() -> None:
    assert len(ATTACKS) >= 28, ATTACKS


def test_network(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    listener = Listener()
    try:
        out = run_attack("network", tmp_path, suite, gold, port=listener.port)
    finally:
        listener.close()
    assert listener.accepted == 0 and listener.received == b""
    for item in out.decoded():
        assert set(item) == {"local", "outside", "dns"}
        assert all(v.startswith("refused") for v in item.values()), item
    assert "network" in out.kinds()


def test_read_gold(tmp_path: Path, suite: Any, gold: dict[str, str], isolated_home: Path) -> None:
    Ledger()  # the ledger file exists on the host
    secrets = [
        str(SUITE_DIR / "data" / "test.csv"),
        str(SUITE_DIR / "suite.toml"),
        str(isolated_home / "ledger.duckdb"),
    ]
    assert all(Path(s).is_file() for s in secrets)
    out = run_attack(
        "read_gold", tmp_path, suite, gold, secret_files=secrets, secret_dirs=[str(SUITE_DIR), str(REPO)]
    )
    for item in out.decoded():
        assert len(item) == len(secrets) + 4  # + /etc/shadow, ~/.bash_history, two directories
        assert not [k for k, v in item.items() if not v.startswith("denied")], item
    assert "file" in out.kinds()


def test_api_key(tmp_path: Path, suite: Any, gold: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostile-canary-1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-hostile-canary-2")
    out = run_attack("api_key", tmp_path, suite, gold)
    for text in out.outputs:
        assert "canary" not in text and "sk-" not in text
    for item in out.decoded():
        assert item["found"] == {}
        assert not [n for n in item["names"] if n.startswith("HARNESS_OPT") or "KEY" in n]
    assert "env" in out.kinds()


def test_write_outside(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    marker = tmp_path / "host-marker.txt"
    repo_file = REPO / "planted-by-hostile.txt"
    out = run_attack("write_outside", tmp_path, suite, gold, write_paths=[str(marker), str(repo_file)])
    assert not marker.exists() and not repo_file.exists()
    assert not (out.version_dir / "planted.py").exists() and not Path("/usr/planted").exists()
    for item in out.decoded():
        assert len(item) == 4 and all(v.startswith("denied") for v in item.values()), item
    assert "file" in out.kinds()


def test_fork_bomb(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    before = host_pids()
    with Sampler(host_pids) as pids:
        out = run_attack("fork_bomb", tmp_path, suite, gold)
    assert out.errors() == ["timeout", "timeout"]
    # no process was created: the fork server, two rollouts and bwrap's helpers are all there was
    assert max(pids.values) < before + 20, f"the bomb reached {max(pids.values) - before} processes"
    time.sleep(0.3)
    assert host_pids() <= before + 5, "bomb processes outlived the rollout"
    assert subprocess.run(["true"], check=False).returncode == 0  # the parent can still spawn
    assert "process" in out.kinds()


def test_memory_bomb(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("memory_bomb", tmp_path, suite, gold)
    assert out.errors() == ["memory", "memory"]  # stopped at memory_mb, not by the host's OOM killer
    assert "removed-llm" in out.kinds()


@pytest.mark.parametrize("name", ["infinite_loop", "sleep_past_limit"])
def test_killed_at_the_wall_limit(name: str, tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    started = time.monotonic()
    out = run_attack(name, tmp_path, suite, gold)
    assert out.errors() == ["timeout", "timeout"]
    assert all(r.latency_s < 2 + 3 for r in out.result.rollouts)
    assert time.monotonic() - started < 20
    assert "removed-llm" in out.kinds()


def test_fake_score(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("fake_score", tmp_path, suite, gold)
    assert out.errors() == [None, None]
    for trace in out.traces:  # it did print its fake score (captured into the trace)...
        printed = [e for e in trace.events if isinstance(e, LogEvent) and e.message == "stdout"]
        assert printed and "score: 1.0" in printed[0].data["text"]
    assert all(r.score == 0 and not r.passed for r in out.result.rollouts)  # ...and nobody read it
    assert "prints-score" in out.kinds()


def test_ctx_monkeypatch(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("ctx_monkeypatch", tmp_path, suite, gold)
    # the faked calls never reached the broker, so the trace shows no tool or model call...
    for trace in out.traces:
        assert not [e for e in trace.events if isinstance(e, ToolCallEvent | LLMCallEvent)]
    assert out.model.calls == []
    # ...and its fake model answer happens to be right on these tasks: only the scan stops it
    assert any(r.score == 1 for r in out.result.rollouts)
    assert out.scan.rejected and "ctx-tamper" in out.kinds()


def test_hardcoded_val(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("hardcoded_val", tmp_path, suite, gold)
    assert all(r.score == 1 for r in out.result.rollouts)  # it "works" on val...
    assert out.scan.rejected  # ...which is why it is refused before evaluation
    leaks = [f for f in out.scan.findings if f.kind == "sealed-input"]
    assert len(leaks) == 8 and all(f.file == "agent.py" and "val task" in f.message for f in leaks)


def test_trace_delete(tmp_path: Path, suite: Any, gold: dict[str, str], isolated_home: Path) -> None:
    ledger = Ledger()
    canary = traces_dir() / "earlier-run.jsonl"
    canary.parent.mkdir(parents=True, exist_ok=True)
    canary.write_text('{"earlier": true}\n')
    out = run_attack("trace_delete", tmp_path, suite, gold, trace_files=[str(ledger.path), str(canary)])
    assert ledger.path.exists() and canary.read_text() == '{"earlier": true}\n'
    assert len(ledger.rollouts(run_id=out.result.run_id)) == 2
    for item in out.decoded():
        assert len(item) == 2 and all(v.startswith("denied") for v in item.values()), item
    for trace in out.traces:  # the log flood is capped and marked, the trace file is intact
        logs = [e for e in trace.events if isinstance(e, LogEvent)]
        assert len(logs) <= 1001 and "dropped" in logs[-1].message
    assert "removed-llm" in out.kinds()


def test_kill_parent(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("kill_parent", tmp_path, suite, gold, concurrency=1)
    # the signal never left the rollout: the fork server (pid 1) kept serving both rollouts
    assert out.errors() == [None, None]
    for item in out.decoded():
        assert item == {"1": "denied: Operation not permitted"}, item
    # and a fresh evaluation of the seed in the same process works
    with scripted_model("after-kill", answer_gold(gold)) as model:
        again = evaluate(SEED, suite, EvalConfig(split="val", limit=2, model=model.model, isolation="bwrap"))
    assert [r.score for r in again.rollouts] == [1.0, 1.0]
    assert "process" in out.kinds()


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - RUNTIME_ONLY))
def test_every_attack_is_noticed_by_the_scan(name: str, tmp_path: Path, suite: Any) -> None:
    """Static scan only (no sandbox needed): each attack gets at least a flag, so it can never become
    the incumbent even where the sandbox makes it harmless."""
    version_dir = tmp_path / name
    shutil.copytree(HOSTILE / name, version_dir)
    twin = tmp_path / f"{name}-parent"
    shutil.copytree(version_dir, twin)
    shutil.copy(SEED / "agent.py", twin / "agent.py")
    report = scan_candidate(
        HarnessVersion.load(version_dir), HarnessVersion.load(twin), suite, editable=AGENT_HARNESS_EDITABLE
    )
    assert report.max_severity in ("reject", "flag"), report.summary()


def test_no_attack_left_anything_running() -> None:
    """Runs last in this file: no fork server or rollout process of any attack is still alive."""
    time.sleep(0.2)
    assert sandbox_processes() == {}
