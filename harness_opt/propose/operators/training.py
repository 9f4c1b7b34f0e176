"""Offline operators for the training-loop domain: hyperparameter and schedule edits of train.py.

Each operator rewrites top-level numeric constants (`NAME = 0.02`) of train.py: learning rates,
warmup/warmdown, batch size, depth and width. A size edit applies to both the GPU value and its CPU_
twin, so the same operator means the same thing in CPU mode and on a GPU. No LLM is called, so the
training loop runs offline (CI). An operator rejected or invalid before is not proposed again; one
that was kept may be proposed again from the new incumbent (a second halving of the LR, say).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from harness_opt.propose.base import Proposal, ProposalInput

TRAIN_FILE = "train.py"


@dataclass(frozen=True)
class ConstantEdit:
    """Multiply (or set) named constants; `names` also covers their `CPU_` twins."""

    mechanism: str
    names: tuple[str, ...]
    hypothesis: str
    factor: float | None = None
    value: float | None = None
    integer: bool = False

    def apply(self, source: str) -> tuple[str, list[str]]:
        changes: list[str] = []
        for name in self.names:
            for full in (name, f"CPU_{name}"):
                pattern = re.compile(rf"^({full}\s*=\s*)([0-9][0-9_.eE+-]*)", re.M)
                match = pattern.search(source)
                if match is None:
                    continue
                old = float(match[2].replace("_", ""))
                new = self.value if self.value is not None else old * (self.factor or 1.0)
                text = str(max(1, round(new))) if self.integer else f"{new:.6g}"
                if text == match[2]:
                    continue
                source = source[: match.start(2)] + text + source[match.end(2) :]
                changes.append(f"{full}: {match[2]} -> {text}")
        return source, changes


TRAINING_OPERATORS: tuple[ConstantEdit, ...] = (
    ConstantEdit("lr_matrix_up", ("LR_MATRIX",), "the Muon LR is conservative for so short a run", 1.5),
    ConstantEdit("lr_matrix_down", ("LR_MATRIX",), "a lower Muon LR trains more stably", 0.67),
    ConstantEdit("lr_adam_up", ("LR_ADAM",), "embeddings and head learn faster with a higher LR", 2.0),
    ConstantEdit("lr_adam_down", ("LR_ADAM",), "a lower AdamW LR avoids overshoot", 0.5),
    ConstantEdit("warmdown_longer", ("WARMDOWN_FRAC",), "a longer warmdown lowers the final loss", value=0.5),
    ConstantEdit("warmup_none", ("WARMUP_FRAC",), "with so few steps, warmup wastes budget", value=0.0),
    ConstantEdit(
        "batch_half", ("BATCH_SIZE",), "more, smaller steps fit the fixed time budget", 0.5, integer=True
    ),
    ConstantEdit(
        "batch_double", ("BATCH_SIZE",), "larger batches give less noisy gradients", 2.0, integer=True
    ),
    ConstantEdit("depth_up", ("DEPTH",), "one more layer adds capacity", 1.5, integer=True),
    ConstantEdit(
        "width_half", ("WIDTH",), "a narrower model takes more steps in the budget", 0.5, integer=True
    ),
)


class TrainingOperatorsProposer:
    """The `operators` proposer of the training domain: a seeded walk over `TRAINING_OPERATORS`."""

    name = "operators"

    def __init__(self, operators: tuple[ConstantEdit, ...] = TRAINING_OPERATORS) -> None:
        self.operators = operators

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        source = inp.files.get(TRAIN_FILE)
        if source is None:
            return []
        declined = {h.mechanism for h in inp.history if h.outcome in ("rejected", "invalid")}
        order = list(self.operators)
        random.Random(inp.seed).shuffle(order)
        out: list[Proposal] = []
        for op in order:
            if op.mechanism in declined:
                continue
            new_source, changes = op.apply(source)
            if not changes:
                continue
            out.append(
                Proposal(
                    proposer=f"operators:{op.mechanism}",
                    mechanism=op.mechanism,
                    hypothesis=op.hypothesis,
                    changes=changes,
                    edits={TRAIN_FILE: new_source},
                )
            )
            if len(out) >= n:
                break
        return out
