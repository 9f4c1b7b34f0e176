"""Running the hostile harnesses of tests/hostile/ through the real evaluator, and watching the host.

Each attack is copied next to a benign twin (the same files with the seed's agent.py) so the candidate
scan has a parent to compare with, then evaluated on banking77 val under bubblewrap with a scripted
model that answers the gold label whenever it is asked (so a harness that reaches the model honestly
would score 1, and a score says nothing about containment: each test checks the attack's effect).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import HarnessVersion
from harness_opt.records import Trace
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.testing import scripted_model
from harness_opt.testing.scripted import ScriptedModel
from harness_opt.trust.scan import ScanReport, scan_candidate

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "hostile"
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE_DIR = REPO / "tasks" / "banking77"
ATTACKS = sorted(p.name for p in HOSTILE.iterdir() if (p / "agent.py").is_file())
ZYGOTE_MARK = b"/opt/harness-opt/zygote.py"
"""In the command line of the fork server and of every rollout process it forks."""


@dataclass
class Outcome:
    result: EvalResult
    traces: list[Trace]
    scan: ScanReport
    outputs: list[Any]
    model: ScriptedModel
    version_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def decoded(self) -> list[dict[str, Any]]:
        """The JSON reports the attacks return (one per rollout)."""
        return [json.loads(o) for o in self.outputs]

    def kinds(self) -> set[str]:
        return {f.kind for f in self.scan.findings}

    def errors(self) -> list[str | None]:
        return [r.error for r in self.result.rollouts]


def answer_gold(gold: dict[str, str]) -> Any:
    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        return gold.get(str(messages[-1]["content"]).strip(), "unknown")

    return respond


def prepare(name: str, tmp_path: Path, **target: Any) -> tuple[Path, Path]:
    """Copy the attack (with data/target.json holding `target`) and its benign twin under tmp_path."""
    base = tmp_path / "harnesses" / "banking77"
    version_dir = base / name
    shutil.copytree(HOSTILE / name, version_dir)
    (version_dir / "data").mkdir(exist_ok=True)
    (version_dir / "data" / "target.json").write_text(json.dumps(target))
    twin = base / f"{name}-parent"
    shutil.copytree(version_dir, twin)
    shutil.copy(SEED / "agent.py", twin / "agent.py")
    return version_dir, twin


def run_attack(
    name: str,
    tmp_path: Path,
    suite: Any,
    gold: dict[str, str],
    *,
    limit: int = 2,
    concurrency: int = 2,
    **target: Any,
) -> Outcome:
    """Scan the attack against its twin, then evaluate it (bubblewrap, named: never a weaker mode)."""
    version_dir, twin = prepare(name, tmp_path, **target)
    version = HarnessVersion.load(version_dir)
    scan = scan_candidate(version, HarnessVersion.load(twin), suite, editable=AGENT_HARNESS_EDITABLE)
    with scripted_model(f"hostile-{name}", answer_gold(gold)) as model:
        config = EvalConfig(
            split="val", limit=limit, model=model.model, isolation="bwrap", concurrency=concurrency
        )
        result = evaluate(version, suite, config)
    traces = [read_trace(r.trace_ref) for r in result.rollouts if r.trace_ref]
    assert len(traces) == limit
    return Outcome(result, traces, scan, [t.output for t in traces], model, version_dir)


def _parents() -> dict[int, int]:
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as fh:
                    out[int(p)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def our_processes() -> set[int]:
    """Every process descending from this test process (other jobs on the machine do not count)."""
    parents = _parents()
    me = os.getpid()
    ours: set[int] = set()
    for pid in parents:
        seen, cur = 0, pid
        while cur > 1 and seen < 64:
            if cur == me:
                ours.add(pid)
                break
            cur, seen = parents.get(cur, 0), seen + 1
    return ours


def host_pids() -> int:
    return len(our_processes())


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def sandbox_processes() -> dict[int, int]:
    """pid -> resident KiB of every fork server and rollout process started by this test process."""
    out: dict[int, int] = {}
    for pid in our_processes():
        if ZYGOTE_MARK not in _cmdline(pid):
            continue
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            continue
        out[pid] = rss
    return out


def rollout_processes() -> int:
    """How many rollout processes are alive: children of a fork server (bwrap's own do not count)."""
    parents = _parents()
    count = 0
    for pid in sandbox_processes():
        parent = _cmdline(parents.get(pid, 0))
        if ZYGOTE_MARK in parent and not parent.startswith(b"bwrap"):
            count += 1
    return count


class Sampler:
    """Samples a function of the host in a thread while an attack runs; keeps every value."""

    def __init__(self, probe: Any, every_s: float = 0.02) -> None:
        self.values: list[Any] = []
        self._probe = probe
        self._every_s = every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.values.append(self._probe())
            time.sleep(self._every_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
