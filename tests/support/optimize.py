"""Pieces of the optimize tests: the banking77 seed, a scripted task model whose accuracy depends on
the prompt, a scripted proposer, and proposals that exercise every outcome."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness_opt.ledger import Ledger
from harness_opt.propose.base import Proposal, ProposalInput, Proposer
from harness_opt.search.records import OptimizeResult

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"
MARKER = "Think about which label fits best."

Responder = Callable[[list[dict[str, Any]], Any, dict[str, Any]], str]
_RUNS = itertools.count()


def gold_by_text() -> dict[str, str]:
    from harness_opt.suites.loader import load_suite

    suite = load_suite(SUITE)
    return {t.input["text"]: t.expected for split in ("train", "val", "test") for t in suite.tasks(split)}


def prompt_sensitive_responder(gold: dict[str, str], log: Path | None = None) -> Responder:
    """Right on every task when the system prompt carries MARKER, right on none otherwise: a stand-in
    for a model that a better prompt really helps."""

    def respond(messages: list[dict[str, Any]], tools: Any, params: dict[str, Any]) -> str:
        text = messages[-1]["content"].strip()
        if log is not None:
            with open(log, "a") as fh:
                fh.write(text.replace("\n", " ") + "\n")
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        return gold.get(text, "unknown") if MARKER in system else "not_a_label"

    return respond


class ScriptedProposer:
    """Proposes a fixed list of proposals per iteration, then nothing. Keyed by the input's seed
    (seed + iteration), so a resumed run gets the same proposals for the same iteration, as a real
    seeded proposer would."""

    name = "scripted"

    def __init__(self, rounds: list[list[Proposal]]) -> None:
        self.rounds = rounds
        self.calls = 0
        self.inputs: list[ProposalInput] = []

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.inputs.append(inp)
        self.calls += 1
        index = inp.seed - 1
        return self.rounds[index] if 0 <= index < len(self.rounds) else []


def marker_rounds() -> list[list[Proposal]]:
    """Round 1: three invalid candidates; round 2: a no-op edit; round 3: the real gain."""
    system = (SEED / "prompts" / "system.j2").read_text()
    agent = (SEED / "agent.py").read_text()
    return [
        [
            Proposal(
                proposer="scripted",
                mechanism="syntax-error",
                hypothesis="broken on purpose",
                edits={"agent.py": "def run(task, ctx)\n    return 1\n"},
            ),
            Proposal(
                proposer="scripted",
                mechanism="runtime-crash",
                hypothesis="crashes on purpose",
                edits={"agent.py": agent.replace("reply = ctx.llm(messages)", "reply = 1 / 0")},
            ),
            Proposal(
                proposer="scripted",
                mechanism="outside",
                hypothesis="edits the suite",
                edits={"../../tasks/x.txt": "hi"},
            ),
        ],
        [
            Proposal(
                proposer="scripted",
                mechanism="whitespace",
                hypothesis="no effect",
                edits={"prompts/system.j2": system + "\n"},
            ),
        ],
        [
            Proposal(
                proposer="scripted",
                mechanism="think-first",
                hypothesis="asking to think helps",
                edits={"prompts/system.j2": MARKER + "\n" + system},
            ),
        ],
    ]


def chat_reply(mechanism: str, edits: list[dict[str, str]], hypothesis: str = "it will help") -> str:
    """A meta-model reply in dspy ChatAdapter format: `[[ ## field ## ]]` sections, then the marker."""
    return (
        f"[[ ## analysis ## ]]\nThe model confuses labels.\n\n[[ ## mechanism ## ]]\n{mechanism}\n\n"
        f"[[ ## hypothesis ## ]]\n{hypothesis}\n\n"
        f"[[ ## changes ## ]]\n{json.dumps([f'change {mechanism}'])}\n\n"
        f"[[ ## edits ## ]]\n{json.dumps(edits)}\n\n[[ ## completed ## ]]\n"
    )


def run_scripted(
    seed: Path,
    respond: Responder,
    proposer: Proposer | None = None,
    *,
    ledger: Ledger | None = None,
    **settings: Any,
) -> OptimizeResult:
    """One optimize run of a banking77 seed copy with a scripted task model: 10 val tasks, 3 train
    tasks of evidence, no test split, unless `settings` say otherwise."""
    from harness_opt.search.config import OptimizeConfig
    from harness_opt.search.loop import optimize
    from harness_opt.testing import scripted_model

    values: dict[str, Any] = {"val_limit": 10, "train_sample": 3, "skip_test": True, **settings}
    with scripted_model(f"task-{next(_RUNS)}", respond) as model:
        config = OptimizeConfig(harness=seed, suite=SUITE, model=model.model, **values)
        return optimize(config, ledger=ledger, proposer=proposer)
