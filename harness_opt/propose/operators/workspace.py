"""What the operators read from a proposal input: the files, the installed agent and its config, the shape.

Operators compose by editing *data* around one of two fixed orchestrations: the classifier agent
(classification suites) or the task agent (JSON, free-text and tool suites, starting from init's tool
loop). This module answers "which agent, and is a mechanism already on?" from `agent_config.json` and
`tools.json` in `ProposalInput.files`. Data files (`data/*`) are not shown to proposers, so their
presence is never inferred from the files; the config says what is switched on. `apply` gives the
workspace a proposal would leave behind, so two mechanisms can be combined into one candidate.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from harness_opt.propose.base import ProposalInput
from harness_opt.propose.operators.shape import Shape, detect_shape

AGENT_FILE = "agent.py"
CONFIG_FILE = "agent_config.json"
LABELS_FILE = "data/labels.json"
AGENT_MARKER = "harness-opt classifier agent v1"
TASK_AGENT_MARKER = "harness-opt task agent v1"
SCAFFOLD_MARKER = "harness-opt init tool loop v1"
"""Written by `harness-opt init` into its agent.py: the task agent may replace that loop, which it
reproduces, but never an agent.py a person wrote."""

AgentKind = Literal["classifier", "task", "scaffold", "custom"]


def asset_source(name: str) -> str:
    """An agent's source, installed verbatim as agent.py."""
    return (resources.files("harness_opt.propose.operators.assets") / name).read_text(encoding="utf-8")


def classifier_agent_source() -> str:
    return asset_source("classifier_agent.py")


def dumps_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Classification:
    """A classification suite seen through its train tasks: the label set and (input text, label)."""

    labels: list[str]
    examples: list[tuple[str, str]]


def _agent_kind(source: str) -> AgentKind:
    if AGENT_MARKER in source:
        return "classifier"
    if TASK_AGENT_MARKER in source:
        return "task"
    if SCAFFOLD_MARKER in source:
        return "scaffold"
    return "custom"


@dataclass
class Workspace:
    """The proposal input, parsed once, shared by every operator of one `propose` call."""

    inp: ProposalInput
    shape: Shape
    files: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    agent: AgentKind = "custom"
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_steps: int = 30

    @classmethod
    def from_input(cls, inp: ProposalInput, shape: Shape | None = None) -> Workspace:
        return cls.from_files(inp, dict(inp.files), shape or detect_shape(inp.train_tasks))

    @classmethod
    def from_files(cls, inp: ProposalInput, files: dict[str, str], shape: Shape) -> Workspace:
        agent = _agent_kind(files.get(AGENT_FILE, ""))
        config: dict[str, Any] = {}
        if agent in ("classifier", "task"):
            try:
                loaded = json.loads(files.get(CONFIG_FILE, "{}"))
                config = loaded if isinstance(loaded, dict) else {}
            except json.JSONDecodeError:
                config = {}
        try:
            tools = json.loads(files.get("tools.json", "[]"))
        except json.JSONDecodeError:
            tools = []
        try:
            manifest = tomllib.loads(files.get("harness.toml", ""))
            max_steps = int(manifest.get("runtime", {}).get("limits", {}).get("max_steps", 30))
        except (tomllib.TOMLDecodeError, TypeError, ValueError):
            max_steps = 30
        return cls(
            inp=inp,
            shape=shape,
            files=files,
            config=config,
            agent=agent,
            tools=tools if isinstance(tools, list) else [],
            max_steps=max_steps,
        )

    def apply(self, edits: dict[str, str | None]) -> Workspace:
        """The workspace after `edits` (a proposal's), to stack a second mechanism on the first."""
        files = dict(self.files)
        for path, text in edits.items():
            if text is None:
                files.pop(path, None)
            else:
                files[path] = text
        return Workspace.from_files(self.inp, files, self.shape)

    # -------------------------------------------------------------------------------- what applies

    @property
    def classification(self) -> Classification | None:
        """The label set and examples when the classifier agent fits: a classification suite, no tools."""
        if self.shape.kind != "classification" or self.tools:
            return None
        return Classification(
            labels=self.shape.labels, examples=[(t, str(a)) for t, a in self.shape.examples]
        )

    @property
    def task_agent_fits(self) -> bool:
        """The task agent may be (or is) installed: a JSON or free-text suite whose agent.py is init's
        tool loop or the task agent itself (a hand-written agent.py is never replaced)."""
        return self.shape.kind in ("json", "text") and self.agent in ("task", "scaffold")

    def rng(self, operator: str) -> random.Random:
        """A generator per operator and seed: proposals are deterministic given `inp.seed`."""
        return random.Random(f"{self.inp.seed}/{operator}")

    def enabled(self, key: str) -> bool:
        """Whether an installed agent has `key` switched on (truthy, non-zero)."""
        return self.agent in ("classifier", "task") and bool(self.config.get(key))

    # ------------------------------------------------------------------------------------ editing

    def config_edits(self, changes: dict[str, Any]) -> tuple[dict[str, str | None], list[str]]:
        """Edits that set `changes` in agent_config.json, installing the shape's agent first if needed.

        Returns the edits and the change lines describing any installation, so the proposal says
        plainly when it replaced agent.py."""
        edits: dict[str, str | None] = {}
        notes: list[str] = []
        config = dict(self.config)
        if self.classification is not None and self.agent != "classifier":
            edits[AGENT_FILE] = classifier_agent_source()
            notes.append("agent.py: replaced by the configurable classifier agent (set by agent_config.json)")
            config = {}
            edits[LABELS_FILE] = dumps_json(self.shape.labels)
            notes.append(f"{LABELS_FILE}: the {len(self.shape.labels)} labels seen in train")
            edits.update(self._default_prompts())
        elif self.task_agent_fits and self.agent != "task":
            edits[AGENT_FILE] = asset_source("task_agent.py")
            notes.append("agent.py: init's tool loop replaced by the configurable task agent (same loop)")
            config = {"answer_format": "json" if self.shape.kind == "json" else "text"}
            guard = re.search(r"^MAX_MODEL_CALLS\s*=\s*(\d+)", self.files.get(AGENT_FILE, ""), re.M)
            if guard:  # the loop's guard as the user left it
                config["max_rounds"] = int(guard[1])
        config.update(changes)
        edits[CONFIG_FILE] = dumps_json(config)
        return edits, notes

    def _default_prompts(self) -> dict[str, str | None]:
        """Prompts the classifier agent renders, written only where the version lacks them."""
        out: dict[str, str | None] = {}
        if "prompts/system.j2" not in self.files:
            listing = "\n".join(self.shape.labels)
            out["prompts/system.j2"] = (
                "Classify the message into exactly one label from the list below. "
                f"Answer with the label only.\n\nLabels:\n{listing}\n"
            )
        if "prompts/user.j2" not in self.files:
            # each input column on its own line: the input text every agent and init agree on
            out["prompts/user.j2"] = "{% for key, value in task.items() %}{{ value }}\n{% endfor %}"
        return out
