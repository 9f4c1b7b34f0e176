"""Shared fixtures of the operators tests: the banking77 seed, proposal inputs, an in-process agent run."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from harness_opt.harness import HarnessVersion, create_version
from harness_opt.propose.base import HistoryEntry, Proposal, ProposalInput
from harness_opt.records import RolloutKey, Task, Trace
from harness_opt.suites.loader import load_suite

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"
EDITABLE = ("agent.py", "prompts/*", "tools.json", "agent_config.json", "data/*", "harness.toml")
_names = itertools.count()


@cache
def train_tasks() -> tuple[Task, ...]:
    """Banking77 train tasks (loaded once per test session: proposers may read train gold)."""
    return tuple(load_suite(SUITE).tasks("train"))


def seed_version(tmp_path: Path) -> HarnessVersion:
    """A private copy of the banking77 seed, so produced versions land in tmp, not in the repo."""
    target = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, target, ignore=shutil.ignore_patterns("__pycache__"))
    return HarnessVersion.load(target)


def failing_trace(task: Task, output: str = "card_linking") -> Trace:
    key = RolloutKey(version_hash="h", suite="banking77", split="train", task_id=task.id, trial=0, model="m")
    return Trace(run_id="r", key=key, task_input=dict(task.input), output=output, score=0.0, passed=False)


def proposal_input(
    version: HarnessVersion,
    *,
    seed: int = 0,
    history: list[HistoryEntry] | None = None,
    failing: list[Trace] | None = None,
    tasks: list[Task] | None = None,
    editable: tuple[str, ...] = EDITABLE,
) -> ProposalInput:
    """What the search loop would pass: text files except data/*, train tasks, failing train traces."""
    files = {p: b.decode() for p, b in version.files().items() if not p.startswith("data/")}
    train = list(tasks if tasks is not None else train_tasks())
    if failing is None:
        failing = [failing_trace(t) for t in train[::997][:12]]
    return ProposalInput(
        agent=version.name,
        version_label=version.label,
        files=files,
        editable=editable,
        suite="banking77",
        failing_traces=failing,
        train_tasks=train,
        history=history or [],
        seed=seed,
    )


def apply(version: HarnessVersion, proposal: Proposal) -> HarnessVersion:
    return create_version(
        version,
        proposal.edits,
        proposer=proposal.proposer,
        hypothesis=proposal.hypothesis,
        changes=proposal.changes,
    )


def rejected(proposal: Proposal) -> HistoryEntry:
    return HistoryEntry(
        iteration=1,
        candidate="banking77@v0002",
        proposer=proposal.proposer,
        mechanism=proposal.mechanism,
        hypothesis=proposal.hypothesis,
        outcome="rejected",
        delta=-0.01,
        p_value=0.6,
    )


def load_agent(version: HarnessVersion) -> ModuleType:
    """Import the version's agent.py in-process under a fresh name (it reads its data at import)."""
    name = f"operators_agent_{next(_names)}"
    spec = importlib.util.spec_from_file_location(name, version.path / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Reply = Callable[[list[dict[str, Any]], dict[str, Any]], str]


class FakeContext:
    """A stdlib-only AgentContext: renders with the version's templates, answers with `reply`."""

    def __init__(self, version: HarnessVersion, reply: Reply) -> None:
        self.version = version
        self.reply = reply
        self.task_id = "t"
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
        self.logs: list[tuple[str, dict[str, Any]]] = []

    def llm(self, messages: list[dict[str, Any]], tools: Any = None, **params: Any) -> dict[str, Any]:
        self.calls.append((messages, params))
        return {"role": "assistant", "content": self.reply(messages, params), "tool_calls": None}

    def render(self, template: str, **variables: Any) -> str:
        return self.version.render(template, **variables)

    def log(self, message: str, **data: Any) -> None:
        self.logs.append((message, data))

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.version.tools

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        return {"error": "no tools"}


def run_agent(version: HarnessVersion, text: str, reply: Reply) -> tuple[str, FakeContext]:
    ctx = FakeContext(version, reply)
    output = load_agent(version).run({"text": text}, ctx)
    return output, ctx
