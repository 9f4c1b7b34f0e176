"""The offline search after the fixed operator list: tune, combine and re-test until nothing new is left.

Once every operator has been tried, the proposer keeps going with moves around the incumbent:

* **variants**: one parameter of a mechanism the incumbent has switched on, moved to a nearby value
  (number and choice of demos, retrieval scoring, prompt ordering, output constraints, sampling,
  tool-loop rounds), or the mechanism switched off again (simpler, sometimes better);
* **re-tries**: an operator rejected against an older incumbent, tried once against the new one;
* **combinations**: two moves tried against the current incumbent that each helped, ideally on
  different val tasks (`ProposalInput.task_wins`, GEPA's per-task view), applied together;
* **re-tests**: a near miss (a positive but not significant gain) evaluated again on more val tasks,
  when the loop offers it (`ProposalInput.retest_val_limit`).

Every candidate carries a fingerprint of the files it would produce in its mechanism name
(`... {3fa2c1}`), which comes back in the history, so no candidate is ever proposed twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness_opt.propose.base import HistoryEntry, Proposal, ProposalInput
from harness_opt.propose.operators.demos import index_edit
from harness_opt.propose.operators.workspace import Workspace

FINGERPRINT = re.compile(r"\s*\{([0-9a-f]{6})(r?)\}$")
NEAR_MISS_P = 0.5
"""A rejected gain with p below this (but not below alpha) is a near miss worth more val tasks."""
MAX_COMBINATIONS = 40
MAX_TRIPLE_BASES = 3
"""Pairs that helped and get a third move stacked on them."""


def fingerprint(ws: Workspace, edits: dict[str, str | None]) -> str:
    """Six hex digits naming the files a proposal would leave (provenance in harness.toml left out)."""
    after = ws.apply(edits).files
    if "harness.toml" not in edits:
        after = {k: v for k, v in after.items() if k != "harness.toml"}
    blob = json.dumps(sorted(after.items()), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


def base_mechanism(mechanism: str) -> str:
    return FINGERPRINT.sub("", mechanism)


@dataclass
class Tried:
    """What the history says was tried: fingerprints, and the entries after the last acceptance."""

    fingerprints: dict[str, HistoryEntry] = field(default_factory=dict)
    retested: set[str] = field(default_factory=set)
    declined_names: set[str] = field(default_factory=set)
    since_accept: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def from_history(cls, history: list[HistoryEntry]) -> Tried:
        out = cls()
        for entry in history:
            match = FINGERPRINT.search(entry.mechanism)
            if match:
                if match[2]:
                    out.retested.add(match[1])
                else:
                    out.fingerprints.setdefault(match[1], entry)
            if entry.outcome in ("rejected", "invalid"):
                out.declined_names.add(base_mechanism(entry.mechanism))
                out.declined_names.add(entry.proposer)
            if entry.outcome == "accepted":
                out.since_accept = []
            else:
                out.since_accept.append(entry)
        return out

    def matching(self, built: list[Built]) -> list[tuple[Built, HistoryEntry]]:
        """The built moves tried against the current incumbent, with their history entries."""
        recent = {id(e) for e in self.since_accept}
        return [
            (b, self.fingerprints[b.fp])
            for b in built
            if b.fp in self.fingerprints and id(self.fingerprints[b.fp]) in recent
        ]


@dataclass(frozen=True)
class Move:
    """One candidate-to-be: a name, a hypothesis, and how to build its edits from a workspace."""

    key: str
    mechanism: str
    hypothesis: str
    build: Callable[[Workspace], tuple[dict[str, str | None], list[str]] | None]
    proposer: str = "operators:tune"


@dataclass(frozen=True)
class Knob:
    """One tunable parameter of an installed agent, with the values worth trying in order."""

    key: str
    agent: str
    values: tuple[Any, ...]
    requires: tuple[str, ...]
    why: str
    rebuilds_index: bool = False
    files: Callable[[Workspace, Any], dict[str, str | None]] | None = None
    """Files the value needs beside agent_config.json (a prompt it names)."""


SHORT_SYSTEM_FILE = "prompts/system_short.j2"


def _short_system(ws: Workspace, value: Any) -> dict[str, str | None]:
    if value != SHORT_SYSTEM_FILE.removeprefix("prompts/"):
        return {}
    return {
        SHORT_SYSTEM_FILE: "Classify the message into one label. The examples show messages and their "
        "labels. Answer with the label only.\n"
    }


KNOBS: tuple[Knob, ...] = (
    Knob(
        "retrieval_k",
        "any",
        (4, 8, 2, 10, 3, 12, 16, 1),
        ("retrieval_k",),
        "how many demos: more covers more phrasings, fewer keeps the nearest one in focus",
    ),
    Knob(
        "retrieval_scoring",
        "any",
        (
            {"k1": 1.2, "b": 0.75, "bigrams": True},
            {"k1": 0.9, "b": 0.4, "bigrams": False},
            {"k1": 1.6, "b": 0.9, "bigrams": False},
            {"k1": 2.0, "b": 0.75, "bigrams": True},
            {"k1": 1.2, "b": 0.75, "bigrams": False},
        ),
        ("retrieval_k",),
        "which demos: BM25 saturation and length normalisation, word pairs",
        True,
    ),
    Knob(
        "retrieval_per_label",
        "classifier",
        (1, 2, 3, 0),
        ("retrieval_k",),
        "choice of demos: a cap per label shows more different labels",
    ),
    Knob(
        "system_template",
        "classifier",
        ("system_short.j2", "system.j2"),
        ("retrieval_k",),
        "prompt: a short instruction instead of the full label list, once demos show the labels",
        files=_short_system,
    ),
    Knob(
        "retrieval_order",
        "any",
        ("similar_first", "similar_last"),
        ("retrieval_k",),
        "prompt order: the most similar demo next to the question, or first",
    ),
    Knob(
        "demo_format",
        "classifier",
        ("inline", "turns"),
        ("retrieval_k",),
        "prompt shape: demos as chat turns, or one block in the question",
    ),
    Knob(
        "candidate_k",
        "any",
        (5, 3, 15, 8, 20),
        ("candidate_k",),
        "output constraint: how many neighbour labels the enum keeps",
    ),
    Knob(
        "constrained",
        "classifier",
        (False,),
        ("constrained",),
        "ablation: the label enum off again (demos may already fix the output shape)",
    ),
    Knob("snap", "classifier", (False,), ("snap",), "ablation: snapping to the nearest label off again"),
    Knob("vote_n", "any", (3, 5, 1), ("vote_n",), "sampling: how many votes"),
    Knob("vote_temperature", "any", (0.3, 0.5, 1.0, 0.7), ("vote_n",), "sampling: how far votes wander"),
    Knob("glossary", "classifier", (False,), ("glossary",), "ablation: the label guide off again"),
    Knob("fewshot", "any", (False,), ("fewshot",), "ablation: the static demos off again"),
    Knob("max_rounds", "task", (3, 2, 4, 6), ("repeat_guard",), "tool loop: fewer rounds before answering"),
    Knob("final_call", "task", (False, True), ("final_call",), "tool loop: the separate answer call"),
    Knob(
        "pattern_mode",
        "task",
        ("override", "fill"),
        ("patterns",),
        "output: a pattern's value replaces the model's, or only fills a missing one",
    ),
    Knob("schema", "task", (False,), ("schema",), "ablation: the JSON schema off again"),
)


def _current(ws: Workspace, knob: Knob) -> Any:
    from harness_opt.propose.operators.assets import classifier_agent, task_agent

    defaults = classifier_agent.DEFAULTS if ws.agent == "classifier" else task_agent.DEFAULTS
    if knob.key == "retrieval_scoring":
        return ws.config.get("retrieval_scoring", {"k1": 1.2, "b": 0.75, "bigrams": False})
    return ws.config.get(knob.key, defaults.get(knob.key))


def _knob_moves(ws: Workspace) -> Iterator[tuple[int, Move]]:
    """(rank, move) for every value of every applicable knob; rank 0 is the value tried first."""
    if ws.agent not in ("classifier", "task"):
        return
    for priority, knob in enumerate(KNOBS):
        if knob.agent not in ("any", ws.agent) or not all(ws.enabled(r) for r in knob.requires):
            continue
        current = _current(ws, knob)
        values = [v for v in knob.values if v != current]
        if knob.key in ("vote_n",):
            values = [v for v in values if v <= ws.max_steps]
        for rank, value in enumerate(values):
            yield rank * len(KNOBS) + priority, _knob_move(knob, current, value)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return json.dumps(value)


def _knob_move(knob: Knob, current: Any, value: Any) -> Move:
    def build(ws: Workspace) -> tuple[dict[str, str | None], list[str]] | None:
        edits, notes = ws.config_edits({knob.key: value})
        if knob.files is not None:
            edits.update(knob.files(ws, value))
        if knob.rebuilds_index:
            edits.update(index_edit(ws, **value))
            notes.append("data/retrieval_index.json: rebuilt with the new scoring")
        return edits, [*notes, f"agent_config.json: {knob.key} {_shown(current)} -> {_shown(value)}"]

    return Move(
        key=f"knob:{knob.key}={_shown(value)}",
        mechanism=f"tune {knob.key}: {_shown(current)} -> {_shown(value)}",
        hypothesis=f"Tuning the accepted mechanism ({knob.why}): {knob.key} {_shown(current)} -> "
        f"{_shown(value)} may fit this suite better than the operator's default.",
        build=build,
    )


RETRY = "re-try: "


def op_builder(op: Any) -> Callable[[Workspace], tuple[dict[str, str | None], list[str]] | None]:
    """An operator as a move's build function (so it can be stacked on another move)."""

    def build(ws: Workspace) -> tuple[dict[str, str | None], list[str]] | None:
        proposal = op.propose(ws)
        return (proposal.edits, proposal.changes) if proposal is not None else None

    return build


def _op_move(op: Any) -> Move:
    return Move(
        key=f"op:{op.name}",
        mechanism=f"{RETRY}{op.mechanism}",
        hypothesis=f"{op.mechanism} was rejected against an earlier incumbent; the incumbent has "
        "changed since, and mechanisms interact, so it is tried once against this one.",
        build=op_builder(op),
        proposer=f"operators:{op.name}",
    )


def single_moves(ws: Workspace, operators: tuple[Any, ...], tried: Tried) -> list[Move]:
    """Variants of the incumbent's mechanisms (nearest values first, round-robin over knobs), then
    operators declined against an older incumbent, re-tried once."""
    moves = [move for _, move in sorted(_knob_moves(ws), key=lambda item: item[0])]
    recent = {base_mechanism(e.mechanism).removeprefix(RETRY) for e in tried.since_accept}
    for op in operators:
        if op.mechanism in tried.declined_names and op.mechanism not in recent:
            moves.append(_op_move(op))
    return moves


@dataclass
class Built:
    """A move built against one workspace: its edits and the fingerprint of what they produce."""

    move: Move
    edits: dict[str, str | None]
    changes: list[str]
    fp: str
    meta: dict[str, Any] = field(default_factory=dict)


def build(ws: Workspace, move: Move) -> Built | None:
    try:
        made = move.build(ws)
    except Exception:  # a move that does not fit this workspace is skipped, never fatal
        return None
    if made is None or not made[0]:
        return None
    return Built(move, made[0], made[1], fingerprint(ws, made[0]))


def _gain(entry: HistoryEntry) -> float:
    return entry.delta if entry.delta is not None else -1.0


def combinations(
    ws: Workspace, tried_moves: list[tuple[Built, HistoryEntry]], inp: ProposalInput
) -> Iterator[tuple[float, Built, Built]]:
    """Pairs of moves tried against this incumbent that each helped, best pairs first.

    With per-task wins, a pair scores by the val tasks either one won and neither lost (GEPA: two
    candidates on different parts of the Pareto front); without them, by the sum of their gains."""
    wins = {w.candidate: w for w in inp.task_wins}
    helped = [
        (b, e) for b, e in tried_moves if _gain(e) > 0 or len(getattr(wins.get(e.candidate), "wins", [])) > 0
    ]
    scored = []
    for i, (a, ea) in enumerate(helped):
        for b, eb in helped[i + 1 :]:
            if a.move.key.split("=")[0] == b.move.key.split("=")[0]:
                continue  # two values of one knob do not combine
            wa, wb = wins.get(ea.candidate), wins.get(eb.candidate)
            if wa is not None and wb is not None:
                union = set(wa.wins) | set(wb.wins)
                lost = set(wa.losses) | set(wb.losses)
                complementary = bool(set(wa.wins) - set(wb.wins)) and bool(set(wb.wins) - set(wa.wins))
                score = len(union - lost) - len(lost - union) + (0.5 if complementary else 0.0)
            else:
                score = _gain(ea) + _gain(eb)
            scored.append((score, a, b))
    scored.sort(key=lambda item: -item[0])
    yield from scored[:MAX_COMBINATIONS]


COMBINE = "combine: "


def _part(built: Built) -> str:
    return base_mechanism(built.move.mechanism).removeprefix(COMBINE)


def combine(ws: Workspace, a: Built, b: Built) -> Built | None:
    """`a` then `b`'s move rebuilt on top of it: one candidate with both mechanisms."""
    stacked = ws.apply(a.edits)
    second = build(stacked, b.move)
    if second is None:
        return None
    edits = {**a.edits, **second.edits}
    move = Move(
        key=f"combo:{a.move.key}+{b.move.key}",
        mechanism=f"{COMBINE}{_part(a)} + {_part(b)}",
        hypothesis="Each of these helped on its own against this incumbent (on different val tasks "
        "where the per-task record shows it); together they may keep both gains.",
        build=lambda _ws: None,
        proposer="operators:combine",
    )
    return Built(move, edits, [*a.changes, *second.changes], fingerprint(ws, edits))


def stacked(
    ws: Workspace, tried: Tried, tried_moves: list[tuple[Built, HistoryEntry]], inp: ProposalInput
) -> Iterator[Built]:
    """Pairs of moves that helped, then a pair that helped too plus a third move that did."""
    pairs = []
    for _, a, b in combinations(ws, tried_moves, inp):
        combined = combine(ws, a, b)
        if combined is not None:
            pairs.append(combined)
            yield combined
    helped = [b for b, e in tried_moves if (e.delta or 0) > 0]
    good_pairs = [(c, e) for c, e in tried.matching(pairs) if (e.delta or 0) > 0]
    for pair, _ in sorted(good_pairs, key=lambda item: -(item[1].delta or 0))[:MAX_TRIPLE_BASES]:
        for single in helped:
            if single.move.key not in pair.move.key:
                triple = combine(ws, pair, single)
                if triple is not None:
                    yield triple


def near_misses(tried_moves: list[tuple[Built, HistoryEntry]], alpha: float = 0.05) -> list[Built]:
    """Moves rejected with a positive gain that a larger sample might confirm, most promising first."""
    found = [
        (e.p_value if e.p_value is not None else 1.0, built)
        for built, e in tried_moves
        if e.outcome == "rejected"
        and (e.delta or 0) > 0
        and e.p_value is not None
        and alpha <= e.p_value < NEAR_MISS_P
    ]
    return [built for _, built in sorted(found, key=lambda item: item[0])]


def to_proposal(built: Built, *, retest: int | None = None) -> Proposal:
    if retest:
        return Proposal(
            proposer="operators:retest",
            mechanism=f"re-test on {retest} val tasks: {_part(built)} {{{built.fp}r}}",
            hypothesis="A near miss: its gain was positive but not significant on the usual val tasks; "
            f"{retest} val tasks tell a real gain from noise.",
            changes=built.changes,
            edits=built.edits,
            meta={"operator": "retest", "retest": True, "val_limit": retest},
        )
    return Proposal(
        proposer=built.move.proposer,
        mechanism=f"{built.move.mechanism} {{{built.fp}}}",
        hypothesis=built.move.hypothesis,
        changes=built.changes,
        edits=built.edits,
        meta={
            **built.meta,
            "operator": built.move.proposer.removeprefix("operators:"),
            "fingerprint": built.fp,
        },
    )
