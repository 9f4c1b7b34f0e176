"""Shared pieces for optimize tests: a scripted task model whose accuracy depends on the prompt, and a
scripted proposer. Also runnable as a script (the kill -9 / resume test drives it in a subprocess)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"
MARKER = "Think about which label fits best."


def gold_by_text() -> dict[str, str]:
    from harness_opt.suites.loader import load_suite

    suite = load_suite(SUITE)
    return {t.input["text"]: t.expected for split in ("train", "val", "test") for t in suite.tasks(split)}


def prompt_sensitive_responder(gold: dict[str, str], log: Path | None = None):
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

    def __init__(self, rounds: list[list[Any]]) -> None:
        self.rounds = rounds
        self.calls = 0
        self.inputs: list[Any] = []

    def propose(self, inp: Any, n: int) -> list[Any]:
        self.inputs.append(inp)
        self.calls += 1
        index = inp.seed - 1
        return self.rounds[index] if 0 <= index < len(self.rounds) else []


def marker_rounds() -> list[list[Any]]:
    from harness_opt.propose.base import Proposal

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


def main() -> None:
    """`python optimize_fixtures.py RUN_ID SEED_DIR [resume]`: one optimize process for the kill test."""
    from harness_opt.search.budget import Budget
    from harness_opt.search.config import OptimizeConfig
    from harness_opt.search.loop import optimize
    from harness_opt.testing import ScriptedModel, register_scripted

    run_id, seed = sys.argv[1], Path(sys.argv[2])
    resume = len(sys.argv) > 3
    model = ScriptedModel("killable", prompt_sensitive_responder(gold_by_text()), delay_s=0.02)
    register_scripted(model)
    config = OptimizeConfig(
        harness=seed,
        suite=SUITE,
        model=model.model,
        val_limit=40,
        test_limit=40,
        train_sample=10,
        budget=Budget(iterations=4),
        concurrency=4,
    )
    result = optimize(
        config, proposer=ScriptedProposer(marker_rounds()), run_id=run_id, resume=run_id if resume else None
    )
    print(json.dumps({"best": result.best_label, "status": result.status}), flush=True)


if __name__ == "__main__":
    main()
