"""`OperatorsProposer`: the offline proposer; fixed operators first, then a search that lasts the night.

No LLM is called. Each operator is one mechanism with its own hypothesis, and states which suite
shapes it serves (classification, JSON extraction, free text, tool agents; see `shape.py`). The
proposer walks them most-promising first and returns the first `n` that apply, are not already on in
the current files, and were not rejected before. When none is left it does not stop: `night.py`
tunes the parameters of the mechanisms the incumbent has, combines moves that each helped, re-tries
operators against a new incumbent and re-tests near misses. It returns nothing only when every such
candidate has been tried, and then `stop_reason` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase

from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.propose.operators import night
from harness_opt.propose.operators.answers import (
    AnswerStop,
    ConstrainedJSON,
    FieldCandidates,
    FieldPatterns,
    PassingDemos,
)
from harness_opt.propose.operators.demos import CandidateLabels, FailedFewShot, LabelGlossary, RetrievalDemos
from harness_opt.propose.operators.operator import Operator
from harness_opt.propose.operators.output import ConstrainedOutput, SnapToLabel, TunedSampling
from harness_opt.propose.operators.tool_docs import ToolErrorNotes, ToolParamDescriptions
from harness_opt.propose.operators.tool_loop import FinalAnswerCall, RepeatGuard
from harness_opt.propose.operators.voting import SelfConsistency
from harness_opt.propose.operators.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_OPERATORS: tuple[Operator, ...] = (
    # JSON fields the input states verbatim: exact, and costs no tokens, so it goes first (acme with
    # SmolLM2-135M: 0.00 -> 0.50 on 8 val tasks, where retrieved demos alone gained nothing).
    FieldPatterns(),
    # Classification suites, most promising first (measured with SmolLM2-135M on 60 banking77 val
    # tasks: seed 0.00, constrained 0.18, retrieved demos 0.77), then extra calls last.
    # RetrievalDemos also serves JSON and free-text suites with train answers.
    RetrievalDemos(),
    ConstrainedOutput(),
    CandidateLabels(),
    FailedFewShot(),
    LabelGlossary(),
    SnapToLabel(),
    # JSON extraction, free text and tool agents made by `harness-opt init` (the task agent).
    ConstrainedJSON(),
    RepeatGuard(),
    FinalAnswerCall(),
    FieldCandidates(),
    PassingDemos(),
    AnswerStop(),
    # More calls per task: last.
    SelfConsistency(),
    TunedSampling(),
    # Any agent with tools, hand-written ones included (tools.json only).
    ToolErrorNotes(),
    ToolParamDescriptions(),
)


class OperatorsProposer:
    """Offline proposer: `DEFAULT_OPERATORS`, then the night search (`night.py`) unless `night=False`."""

    name = "operators"

    def __init__(self, operators: Sequence[Operator] = DEFAULT_OPERATORS, *, night: bool = True) -> None:
        self.operators = tuple(operators)
        self.night = night
        self.stop_reason = ""
        """Why the last call returned nothing ('' while there were proposals)."""

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        """Up to `n` distinct, never-tried proposals; deterministic given `inp` (and its seed)."""
        ws = Workspace.from_input(inp)
        tried = night.Tried.from_history(inp.history)
        out: list[Proposal] = []
        fps = set(tried.fingerprints)
        counts = {"operators": 0, "variants": 0, "combinations": 0, "re-tests": 0}

        def take(built: night.Built, *, retest: int | None = None) -> None:
            if len(out) >= n or (retest is None and built.fp in fps):
                return
            outside = [p for p in built.edits if not any(fnmatchcase(p, g) for g in inp.editable)]
            if outside:
                log.info("%s skipped: edits outside the editable files: %s", built.move.key, outside)
                return
            fps.add(built.fp)
            out.append(night.to_proposal(built, retest=retest))

        fixed: list[night.Built] = []  # every operator that applies, tried or not: combinable
        for op in self.operators:
            built = self._run(ws, op)
            if built is None:
                continue
            fixed.append(built)
            if not {op.mechanism, f"operators:{op.name}"} & tried.declined_names:
                counts["operators"] += 1
                take(built)
        if self.night and len(out) < n:
            self._night(ws, inp, tried, take, counts, fixed)
        self.stop_reason = "" if out else self._exhausted(ws, counts)
        return out

    def _run(self, ws: Workspace, op: Operator) -> night.Built | None:
        """One fixed operator's proposal as a built move; one operator's bug costs only itself."""
        try:
            proposal = op.propose(ws)
        except Exception:
            log.exception("operator %s failed; skipped", op.name)
            return None
        if proposal is None or not proposal.edits:
            return None
        move = night.Move(
            key=f"op:{op.name}",
            mechanism=op.mechanism,
            hypothesis=proposal.hypothesis,
            build=night.op_builder(op),
            proposer=proposal.proposer,
        )
        fp = night.fingerprint(ws, proposal.edits)
        return night.Built(move, proposal.edits, proposal.changes, fp, dict(proposal.meta))

    def _night(
        self,
        ws: Workspace,
        inp: ProposalInput,
        tried: night.Tried,
        take: Callable[..., None],
        counts: dict[str, int],
        fixed: list[night.Built],
    ) -> None:
        """Re-tests of near misses, then combinations, then single moves (see `night.py`)."""
        singles = [
            b for move in night.single_moves(ws, self.operators, tried) if (b := night.build(ws, move))
        ]
        tried_moves = tried.matching([*fixed, *singles])
        if inp.retest_val_limit:
            for built in night.near_misses(tried_moves):
                if built.fp not in tried.retested:
                    counts["re-tests"] += 1
                    take(built, retest=inp.retest_val_limit)
        for combined in night.stacked(ws, tried, tried_moves, inp):
            counts["combinations"] += 1
            take(combined)
        for built in singles:
            counts["variants"] += 1
            take(built)

    def _exhausted(self, ws: Workspace, counts: dict[str, int]) -> str:
        shape = ws.shape.kind + (" with tools" if ws.tools else "")
        seen = ", ".join(f"{v} {k}" for k, v in counts.items())
        return (
            f"nothing new to propose for this {shape} suite: every candidate it can build ({seen}) "
            "was tried already, or no operator applies"
        )
