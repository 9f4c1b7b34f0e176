"""The user-path suites of tests/fixtures/user_suites, scaffolded with `init` the way a user would,
proposal inputs over them, and an in-process run of an installed agent with a scripted context."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from harness_opt.harness import HarnessVersion, create_version
from harness_opt.propose.base import HistoryEntry, Proposal, ProposalInput
from harness_opt.records import RolloutKey, Task, ToolCallEvent, Trace
from harness_opt.scaffold import init_project
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.suites.loader import load_suite

REPO = Path(__file__).resolve().parents[2]
USER_SUITES = REPO / "tests" / "fixtures" / "user_suites"
ACME = REPO / "examples" / "acme-support"
_names = itertools.count()


def scaffold(name: str, root: Path) -> tuple[HarnessVersion, Path]:
    """`harness-opt init NAME --system-prompt prompt.md` + the fixture's suite.toml and data: the
    user path, no Python suite module. Returns the seed version and the suite folder."""
    if name == "acme-support":
        made = init_project(name, root, tools_file=ACME / "tools.json", system_prompt=ACME / "prompt.md")
        for file in ("suite.toml", "tickets.jsonl"):
            shutil.copy(ACME / file, made.suite_dir / file)
    else:
        made = init_project(name, root, system_prompt=USER_SUITES / name / "prompt.md")
        for file in ("suite.toml", "tasks.jsonl"):
            shutil.copy(USER_SUITES / name / file, made.suite_dir / file)
    return HarnessVersion.load(made.harness_dir), made.suite_dir


def trace(task: Task, *, output: Any = "", passed: bool = False, events: list[Any] | None = None) -> Trace:
    key = RolloutKey(version_hash="h", suite="s", split="train", task_id=task.id, trial=0, model="m")
    return Trace(
        run_id="r",
        key=key,
        task_input=dict(task.input),
        output=output,
        passed=passed,
        score=1.0 if passed else 0.0,
        events=list(events or []),
    )


def looping_trace(task: Task, tool: str, args: dict[str, Any]) -> Trace:
    """A failing rollout that called the same tool with the same arguments three times."""
    return trace(task, events=[ToolCallEvent(name=tool, args=args, result={"ok": 1}) for _ in range(3)])


def proposal_input(
    version: HarnessVersion,
    suite_dir: Path,
    *,
    history: list[HistoryEntry] | None = None,
    failing: list[Trace] | None = None,
    passing: list[Trace] | None = None,
    seed: int = 0,
    **extra: Any,
) -> ProposalInput:
    files = {p: b.decode() for p, b in version.files().items() if not p.startswith("data/")}
    suite = load_suite(suite_dir)
    return ProposalInput(
        agent=version.name,
        version_label=version.label,
        files=files,
        editable=AGENT_HARNESS_EDITABLE,
        suite=suite.name,
        failing_traces=failing or [],
        passing_traces=passing or [],
        train_tasks=suite.tasks("train"),
        history=history or [],
        seed=seed,
        **extra,
    )


def apply(version: HarnessVersion, proposal: Proposal) -> HarnessVersion:
    return create_version(
        version,
        proposal.edits,
        proposer=proposal.proposer,
        hypothesis=proposal.hypothesis,
        changes=proposal.changes,
    )


def entry(
    proposal: Proposal, outcome: str, delta: float, p: float, n: int = 1, label: str = ""
) -> HistoryEntry:
    return HistoryEntry(
        iteration=n,
        candidate=label or f"x@v{n + 1:04d}",
        proposer=proposal.proposer,
        mechanism=proposal.mechanism,
        hypothesis=proposal.hypothesis,
        outcome=outcome,  # type: ignore[arg-type]
        delta=delta,
        p_value=p,
    )


Reply = Callable[[list[dict[str, Any]], dict[str, Any]], Any]


class ScriptedContext:
    """A stdlib AgentContext: renders with the version's templates, answers with `reply`, runs tools
    with `tool` (name, args) -> result."""

    def __init__(
        self, version: HarnessVersion, reply: Reply, tool: Callable[[str, dict[str, Any]], Any] | None = None
    ) -> None:
        self.version = version
        self.reply = reply
        self.tool = tool
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self.logs: list[str] = []

    def llm(self, messages: list[dict[str, Any]], tools: Any = None, **params: Any) -> dict[str, Any]:
        self.calls.append(([dict(m) for m in messages], {**params, **({"tools": tools} if tools else {})}))
        answer = self.reply(messages, {**params, **({"tools": tools} if tools else {})})
        if isinstance(answer, dict):
            calls = [
                {"id": f"c{i}", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for i, c in enumerate(answer.get("tool_calls", []))
            ]
            return {"role": "assistant", "content": answer.get("content"), "tool_calls": calls}
        return {"role": "assistant", "content": answer, "tool_calls": None}

    def render(self, template: str, **variables: Any) -> str:
        return self.version.render(template, **variables)

    def log(self, message: str, **data: Any) -> None:
        self.logs.append(message)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.version.tools

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        self.tool_calls.append((name, args))
        return self.tool(name, args) if self.tool else {"error": "no tools"}


def load_agent(version: HarnessVersion) -> ModuleType:
    """Import the version's agent.py in-process under a fresh name (it reads its data at import)."""
    spec = importlib.util.spec_from_file_location(f"user_agent_{next(_names)}", version.path / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_agent(
    version: HarnessVersion, task: dict[str, Any], reply: Reply, tool: Any = None
) -> tuple[Any, ScriptedContext]:
    ctx = ScriptedContext(version, reply, tool)
    return load_agent(version).run(task, ctx), ctx
