"""The hostile harness suite: each version in tests/hostile/ tries one attack, through the real evaluator.

Every attack must be contained (no effect outside the sandbox, this process keeps running), and each
version must be scored 0 or flagged by the candidate scan, so none can become an incumbent. The table
of attacks and outcomes is docs/security.md. The wall limit of these versions is 2 s, so the whole file
runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import traces_dir
from harness_opt.ledger import Ledger
from harness_opt.records import LLMCallEvent, ToolCallEvent, Trace
from harness_opt.runtime.sandbox import bwrap_works
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from harness_opt.trust.scan import ScanReport, scan_candidate
from tests.test_runtime_fakes import Listener

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "hostile"
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE_DIR = REPO / "tasks" / "banking77"
ATTACKS = sorted(p.name for p in HOSTILE.iterdir() if (p / "agent.py").is_file())

# Isolation is named explicitly: an attack like kill_parent must never run unconfined by accident.
pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")


@dataclass
class Outcome:
    result: EvalResult
    traces: list[Trace]
    scan: ScanReport
    outputs: list[Any]

    def contained_score(self) -> bool:
        """Scored 0 everywhere, or flagged so it can never become the incumbent."""
        return all(r.score == 0 for r in self.result.rollouts) or self.scan.blocks_incumbent


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def _answer_gold(gold: dict[str, str]) -> Any:
    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        return gold.get(messages[-1]["content"].strip(), "unknown")

    return respond


def run_attack(name: str, tmp_path: Path, suite: Any, gold: dict[str, str], **target: Any) -> Outcome:
    """Copy the attack next to a benign twin (same files, the seed's agent.py), scan it, evaluate it."""
    base = tmp_path / "harnesses" / "banking77"
    version_dir = base / name
    shutil.copytree(HOSTILE / name, version_dir)
    (version_dir / "data").mkdir()
    (version_dir / "data" / "target.json").write_text(json.dumps(target))
    twin = base / f"{name}-parent"
    shutil.copytree(version_dir, twin)
    shutil.copy(SEED / "agent.py", twin / "agent.py")
    version = HarnessVersion.load(version_dir)
    scan = scan_candidate(version, HarnessVersion.load(twin), suite, editable=AGENT_HARNESS_EDITABLE)
    with scripted_model(f"hostile-{name}", _answer_gold(gold)) as model:
        config = EvalConfig(split="val", limit=2, model=model.model, isolation="bwrap", concurrency=2)
        result = evaluate(version, suite, config)
    traces = [read_trace(r.trace_ref) for r in result.rollouts if r.trace_ref]
    assert len(traces) == 2
    outputs = [t.output for t in traces]
    return Outcome(result, traces, scan, outputs)


def _decoded(outcome: Outcome) -> list[dict[str, Any]]:
    return [json.loads(o) for o in outcome.outputs]


def _kinds(outcome: Outcome) -> set[str]:
    return {f.kind for f in outcome.scan.findings}


def _host_pids() -> int:
    return sum(1 for p in os.listdir("/proc") if p.isdigit())


def test_there_are_at_least_twelve_attacks() -> None:
    assert len(ATTACKS) >= 12, ATTACKS


def test_network(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    listener = Listener()
    try:
        out = run_attack("network", tmp_path, suite, gold, port=listener.port)
    finally:
        listener.close()
    assert listener.accepted == 0
    for item in _decoded(out):
        assert all(v.startswith("refused") for v in item.values()), item
    assert out.contained_score() and "network" in _kinds(out)


def test_read_gold(tmp_path: Path, suite: Any, gold: dict[str, str], isolated_home: Path) -> None:
    Ledger()  # the ledger file exists on the host
    secrets = [
        str(SUITE_DIR / "data" / "test.csv"),
        str(SUITE_DIR / "suite.toml"),
        str(isolated_home / "ledger.duckdb"),
    ]
    out = run_attack(
        "read_gold", tmp_path, suite, gold, secret_files=secrets, secret_dirs=[str(SUITE_DIR), str(REPO)]
    )
    for item in _decoded(out):
        assert len(item) == len(secrets) + 4
        assert all(v.startswith("denied") for v in item.values()), item
    assert out.contained_score()


def test_api_key(tmp_path: Path, suite: Any, gold: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostile-canary-1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-hostile-canary-2")
    out = run_attack("api_key", tmp_path, suite, gold)
    for text in out.outputs:
        assert "canary" not in text and "sk-" not in text
    for item in _decoded(out):
        assert item["found"] == {}
        assert not any(n.startswith("HARNESS_OPT") for n in item["names"])
    assert out.contained_score() and "env" in _kinds(out)


def test_write_outside(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    marker = tmp_path / "host-marker.txt"
    repo_file = REPO / "planted-by-hostile.txt"
    out = run_attack("write_outside", tmp_path, suite, gold, write_paths=[str(marker), str(repo_file)])
    assert not marker.exists() and not repo_file.exists()
    assert not (tmp_path / "harnesses" / "banking77" / "write_outside" / "planted.py").exists()
    for item in _decoded(out):
        assert all(v.startswith("denied") for v in item.values()), item
    assert out.contained_score() and "file" in _kinds(out)


def test_fork_bomb(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    before = _host_pids()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _host_pids())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = run_attack("fork_bomb", tmp_path, suite, gold)
    finally:
        done.set()
        sampler.join()
    assert {r.error for r in out.result.rollouts} == {"timeout"}
    assert peak[0] < before + 1100, f"the bomb reached {peak[0] - before} processes"  # MAX_PROCS = 1024
    time.sleep(0.2)
    assert _host_pids() <= before + 5, "bomb processes outlived the rollout"
    assert subprocess.run(["true"], check=False).returncode == 0  # the parent can still spawn
    assert out.contained_score() and "process" in _kinds(out)


def test_memory_bomb(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("memory_bomb", tmp_path, suite, gold)
    assert {r.error for r in out.result.rollouts} == {"memory"}
    assert out.contained_score()


@pytest.mark.parametrize("name", ["infinite_loop", "sleep_past_limit"])
def test_killed_at_the_wall_limit(name: str, tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    started = time.monotonic()
    out = run_attack(name, tmp_path, suite, gold)
    assert {r.error for r in out.result.rollouts} == {"timeout"}
    assert all(r.latency_s < 2 + 3 for r in out.result.rollouts)
    assert time.monotonic() - started < 20
    assert out.contained_score()


def test_fake_score(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("fake_score", tmp_path, suite, gold)
    assert all(r.error is None for r in out.result.rollouts)
    assert all(r.score == 0 and not r.passed for r in out.result.rollouts)
    assert "prints-score" in _kinds(out)


def test_ctx_monkeypatch(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("ctx_monkeypatch", tmp_path, suite, gold)
    # the faked calls never reached the broker, so the trace shows no tool or model call...
    for trace in out.traces:
        assert not [e for e in trace.events if isinstance(e, ToolCallEvent | LLMCallEvent)]
    # ...and its fake model answer happens to be right on these tasks: only the scan stops it
    assert any(r.score == 1 for r in out.result.rollouts)
    assert out.scan.rejected and "ctx-tamper" in _kinds(out)


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
    for item in _decoded(out):
        assert all(v.startswith("denied") for v in item.values()), item
    for trace in out.traces:  # the log flood is capped and marked, the trace file is intact
        assert sum(1 for e in trace.events if e.type == "log") <= 1001
    assert out.contained_score()


def test_kill_parent(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("kill_parent", tmp_path, suite, gold)
    assert os.getpid() > 0 and all(r.score == 0 for r in out.result.rollouts)
    # the runner goes on: a fresh evaluation of the seed in the same process works
    with scripted_model("after-kill", _answer_gold(gold)) as model:
        again = evaluate(SEED, suite, EvalConfig(split="val", limit=2, model=model.model, isolation="bwrap"))
    assert [r.score for r in again.rollouts] == [1.0, 1.0]
    assert out.contained_score()


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_is_noticed_by_the_scan(name: str, tmp_path: Path, suite: Any) -> None:
    """Static scan only (no evaluation): each attack leaves at least a note, most a flag or reject."""
    version_dir = tmp_path / name
    shutil.copytree(HOSTILE / name, version_dir)
    twin = tmp_path / f"{name}-parent"
    shutil.copytree(version_dir, twin)
    shutil.copy(SEED / "agent.py", twin / "agent.py")
    report = scan_candidate(
        HarnessVersion.load(version_dir), HarnessVersion.load(twin), suite, editable=AGENT_HARNESS_EDITABLE
    )
    assert report.max_severity in ("reject", "flag"), report.summary()
