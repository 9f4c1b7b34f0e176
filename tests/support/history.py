"""A suite with planted val and test texts (inputs, answers, task ids) that must never reach a
proposer, a scripted proposer that reads the history, and the grep over a directory that proves it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.scaffold import init_project

TRAIN = [
    ("how do i reset the pin of my card", "pin_help"),
    ("my card pin is blocked after three tries", "pin_help"),
    ("the transfer i sent yesterday has not arrived", "transfer_help"),
    ("where is the money i transferred to my friend", "transfer_help"),
    ("i want to close my account today", "close_account"),
    ("please close my account and send the balance", "close_account"),
]
VAL = [
    (
        f"val-id-quokka-{i}",
        f"quartz zebra velvet lantern orbit number {i} asks plainly",
        f"valanswer-quokka-{i}",
    )
    for i in range(6)
]
TEST = [
    (
        f"test-id-narwhal-{i}",
        f"obsidian walrus tundra beacon harbor number {i} asks plainly",
        f"testanswer-narwhal-{i}",
    )
    for i in range(6)
]
PROMPT = "Classify the customer's message into one intent. Answer with the intent name only.\n"


def sealed_texts() -> list[str]:
    """Every val and test input, answer and task id planted in the suite."""
    return [text for rows in (VAL, TEST) for row in rows for text in row]


def planted_suite(root: Path) -> tuple[Path, Path]:
    """`init` the way a user would, with a tasks.jsonl whose val and test rows are the planted ones;
    returns (seed version dir, suite dir)."""
    prompt = root / "prompt.md"
    prompt.write_text(PROMPT)
    made = init_project("leaky", root, system_prompt=prompt)
    rows = [
        {"id": f"train-{i}", "message": m, "expected": e, "split": "train"} for i, (m, e) in enumerate(TRAIN)
    ]
    rows += [{"id": i, "message": m, "expected": e, "split": "val"} for i, m, e in VAL]
    rows += [{"id": i, "message": m, "expected": e, "split": "test"} for i, m, e in TEST]
    (made.suite_dir / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (made.suite_dir / "suite.toml").write_text(
        '[suite]\nname = "leaky"\ndescription = "Route a message to an intent."\n\n'
        '[data]\nsource = "tasks.jsonl"\nid = "id"\ninput = ["message"]\nexpected = "expected"\n\n'
        '[splits]\ncolumn = "split"\n\n[scorer]\nkind = "exact"\n'
    )
    return made.harness_dir, made.suite_dir


def planted_responder(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
    """A task model that is right on every task when the system prompt says 'think first', and
    answers 'pin_help' otherwise (a real gain for the loop to accept)."""
    text = str(messages[-1].get("content") or "")
    system = str(messages[0].get("content") or "")
    rows = [*TRAIN, *((m, e) for _, m, e in VAL), *((m, e) for _, m, e in TEST)]
    for message, label in rows:
        if message in text and "think first" in system.lower():
            return label
    return "pin_help"


class HistoryReadingProposer:
    """Proposes one edit per round from a list of (mechanism, text appended to the system prompt),
    and reads the history like the llm and agent proposers (so the loop builds one for it)."""

    name = "scripted"
    reads_history = True
    exhaustible = True

    def __init__(self, rounds: list[list[tuple[str, str]]]) -> None:
        self.rounds = rounds
        self.inputs: list[ProposalInput] = []
        self.history_texts: list[str] = []

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.inputs.append(inp)
        if inp.history_dir is not None:
            self.history_texts.append(tree_text(inp.history_dir))
        index = len(self.inputs) - 1
        if index >= len(self.rounds):
            return []
        system = inp.files["prompts/system.j2"]
        return [
            Proposal(
                proposer=self.name,
                mechanism=m,
                hypothesis=f"{m} helps",
                edits={"prompts/system.j2": system + text},
            )
            for m, text in self.rounds[index]
        ]


def tree_text(root: Path) -> str:
    """Every file's path and content under `root`, as one string to grep."""
    parts = []
    for path in sorted(root.rglob("*")):
        parts.append(str(path.relative_to(root)))
        if path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)
