"""What the operators read from a proposal input: the current files, the agent's config, the label set.

Operators compose by editing *data* around one fixed orchestration (the classifier agent), so this
module is where "is it already applied?" is answered: from `agent_config.json` and `tools.json` in
`ProposalInput.files`. Data files (`data/*`) are not shown to proposers, so their presence is never
inferred from the files; the config says what is switched on.
"""

from __future__ import annotations

import json
import random
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from harness_opt.propose.base import ProposalInput
from harness_opt.records import Task

AGENT_FILE = "agent.py"
CONFIG_FILE = "agent_config.json"
LABELS_FILE = "data/labels.json"
AGENT_MARKER = "harness-opt classifier agent v1"

MAX_LABELS = 200
"""A suite with more distinct answers than this is not treated as classification."""
MAX_LABEL_CHARS = 80


def classifier_agent_source() -> str:
    """The classifier agent's source, installed verbatim as agent.py."""
    return (resources.files("harness_opt.propose.operators.assets") / "classifier_agent.py").read_text(
        encoding="utf-8"
    )


def dumps_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Classification:
    """A classification-style suite seen through its train tasks: the label set and the examples."""

    labels: list[str]
    text_field: str
    examples: list[tuple[str, str]]  # (text, label), train only, in task order

    @classmethod
    def detect(cls, tasks: list[Task]) -> Classification | None:
        """None unless every train answer is a short string from a small set and inputs carry text."""
        if len(tasks) < 2 or not all(isinstance(t.expected, str) for t in tasks):
            return None
        counts = Counter(str(t.expected) for t in tasks)
        if not 2 <= len(counts) <= MAX_LABELS or len(counts) > len(tasks) / 2:
            return None
        if any(len(label) > MAX_LABEL_CHARS or "\n" in label for label in counts):
            return None
        text_field = _text_field(tasks)
        if text_field is None:
            return None
        examples = [(str(t.input[text_field]), str(t.expected)) for t in tasks if t.input.get(text_field)]
        return cls(labels=sorted(counts), text_field=text_field, examples=examples)


def _text_field(tasks: list[Task]) -> str | None:
    """The input key that holds the text: the string field present in most tasks, longest on ties."""
    seen: Counter[str] = Counter()
    length: Counter[str] = Counter()
    for task in tasks[:500]:
        for key, value in task.input.items():
            if isinstance(value, str):
                seen[key] += 1
                length[key] += len(value)
    if not seen:
        return None
    return max(seen, key=lambda k: (seen[k], length[k], k))


@dataclass
class Workspace:
    """The proposal input, parsed once, shared by every operator of one `propose` call."""

    inp: ProposalInput
    classification: Classification | None = None
    config: dict[str, Any] = field(default_factory=dict)
    agent_installed: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_steps: int = 30

    @classmethod
    def from_input(cls, inp: ProposalInput) -> Workspace:
        files = inp.files
        installed = AGENT_MARKER in files.get(AGENT_FILE, "")
        config: dict[str, Any] = {}
        if installed:
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
            classification=Classification.detect(inp.train_tasks),
            config=config,
            agent_installed=installed,
            tools=tools if isinstance(tools, list) else [],
            max_steps=max_steps,
        )

    def rng(self, operator: str) -> random.Random:
        """A generator per operator and seed: proposals are deterministic given `inp.seed`."""
        return random.Random(f"{self.inp.seed}/{operator}")

    def enabled(self, key: str) -> bool:
        """Whether the classifier agent is installed with `key` switched on (truthy, non-zero)."""
        return self.agent_installed and bool(self.config.get(key))

    def config_edits(self, changes: dict[str, Any]) -> tuple[dict[str, str | None], list[str]]:
        """Edits that set `changes` in agent_config.json, installing the classifier agent first if needed.

        Returns the edits and the change lines describing any installation, so the proposal says
        plainly when it replaced agent.py."""
        edits: dict[str, str | None] = {}
        notes: list[str] = []
        config = dict(self.config)
        if not self.agent_installed:
            cls = self.classification
            edits[AGENT_FILE] = classifier_agent_source()
            notes.append("agent.py: replaced by the configurable classifier agent (set by agent_config.json)")
            if cls is not None:
                config["text_field"] = cls.text_field
                edits[LABELS_FILE] = dumps_json(cls.labels)
                notes.append(f"{LABELS_FILE}: the {len(cls.labels)} labels seen in train")
                edits.update(self._default_prompts(cls))
        config.update(changes)
        edits[CONFIG_FILE] = dumps_json(config)
        return edits, notes

    def _default_prompts(self, cls: Classification) -> dict[str, str | None]:
        """Prompts the classifier agent renders, written only where the version lacks them."""
        out: dict[str, str | None] = {}
        if "prompts/system.j2" not in self.inp.files:
            listing = "\n".join(cls.labels)
            out["prompts/system.j2"] = (
                "Classify the message into exactly one label from the list below. "
                f"Answer with the label only.\n\nLabels:\n{listing}\n"
            )
        if "prompts/user.j2" not in self.inp.files:
            out["prompts/user.j2"] = "{{ task." + cls.text_field + " }}\n"
        return out
