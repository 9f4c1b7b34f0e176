"""Answer operators for JSON and free-text suites (the task agent): shape, fill and show the answer.

Each reads what train answers look like (`shape.py`) and switches on one mechanism of the task agent:
a grammar-constrained JSON answer whose fields and enums come from train, fields the input states
verbatim found by a learned pattern, enums narrowed to the answers of the nearest train tasks,
demos bootstrapped from passing train rollouts (for scorers without expected answers), and stopping
a short free-text answer at its line. Every one declines on a suite of another shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.demos import index_edit, retrieval_fits
from harness_opt.propose.operators.operator import make_proposal
from harness_opt.propose.operators.shape import FieldShape, answer_text, input_text
from harness_opt.propose.operators.workspace import Workspace, dumps_json

SCHEMA_FILE = "data/answer_schema.json"
PATTERNS_FILE = "data/field_patterns.json"
DEMOS_FILE = "data/demos.json"
FIELD_CANDIDATE_K = 8
MAX_BOOTSTRAP_DEMOS = 4
MAX_DEMO_CHARS = 400
SHORT_ANSWER_WORDS = 12
_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def answer_schema(fields: list[FieldShape]) -> dict[str, Any]:
    """A JSON schema of the answer: every train field required, categorical ones as enums."""
    props: dict[str, Any] = {}
    for f in fields:
        prop: dict[str, Any] = {"type": _JSON_TYPES[f.kind]} if f.kind in _JSON_TYPES else {}
        if f.values:
            prop["enum"] = list(f.values)
        props[f.name] = prop
    return {"type": "object", "properties": props, "required": [f.name for f in fields]}


def _json_fits(ws: Workspace) -> bool:
    return ws.task_agent_fits and ws.shape.kind == "json"


@dataclass(frozen=True)
class ConstrainedJSON:
    """Grammar-constrained JSON answers: the fields train answers have, enums for categorical ones."""

    name: str = "constrained_json"
    mechanism: str = "constrained JSON answer (schema from train answers)"

    def propose(self, ws: Workspace) -> Proposal | None:
        if not _json_fits(ws) or ws.enabled("schema"):
            return None
        schema = answer_schema(ws.shape.fields)
        edits, notes = ws.config_edits({"schema": True, "answer_format": "json"})
        edits[SCHEMA_FILE] = dumps_json(schema)
        enums = [f"{f.name} ({len(f.values)} values)" for f in ws.shape.fields if f.values]
        return make_proposal(
            self,
            "Answers that are not valid JSON, lack a field or spell a categorical value differently "
            "score 0 on those fields; constraining decoding to the schema of the train answers makes "
            "every answer parse, with every field present and every categorical value a valid one.",
            [
                *notes,
                f"{SCHEMA_FILE}: {len(ws.shape.fields)} required fields"
                + (f", enums for {', '.join(enums)}" if enums else ""),
                "agent_config.json: schema = true (response_format json_schema on the answer call)",
            ],
            edits,
        )


@dataclass(frozen=True)
class FieldPatterns:
    """Fill fields the input states verbatim (ids, amounts) with a pattern learned from train."""

    name: str = "field_patterns"
    mechanism: str = "fields copied from the input by learned patterns"

    def propose(self, ws: Workspace) -> Proposal | None:
        if not _json_fits(ws) or ws.enabled("patterns"):
            return None
        patterns = {f.name: f.pattern for f in ws.shape.fields if f.pattern}
        if not patterns:
            return None
        edits, notes = ws.config_edits({"patterns": True, "answer_format": "json"})
        edits[PATTERNS_FILE] = dumps_json(patterns)
        shown = ", ".join(f"{name} ~ {pattern}" for name, pattern in patterns.items())
        return make_proposal(
            self,
            "Some fields are copied from the input in every train task (an id, an amount); a small "
            "model often garbles them. A pattern learned from the train values finds them in the "
            "input exactly, so those fields are right whenever the input states them once.",
            [
                *notes,
                f"{PATTERNS_FILE}: {shown} (each finds exactly the expected value in >= 90% of train inputs)",
                "agent_config.json: patterns = true (fill a missing or unlikely value)",
            ],
            edits,
        )


@dataclass(frozen=True)
class FieldCandidates:
    """Narrow each categorical enum to the values the nearest train answers use."""

    name: str = "field_candidates"
    mechanism: str = "retrieved candidate values (narrowed enums)"
    k: int = FIELD_CANDIDATE_K

    def propose(self, ws: Workspace) -> Proposal | None:
        if not _json_fits(ws) or not ws.enabled("schema") or ws.enabled("candidate_k"):
            return None
        if not any(f.values for f in ws.shape.fields):
            return None
        edits, notes = ws.config_edits({"candidate_k": self.k})
        edits.update(index_edit(ws))
        return make_proposal(
            self,
            f"The {self.k} train tasks most similar to the input usually share its categorical "
            "values; restricting each enum to the values they use removes most confusions.",
            [
                *notes,
                "data/retrieval_index.json: BM25 index over train inputs and answers",
                f"agent_config.json: candidate_k = {self.k}",
            ],
            edits,
        )


@dataclass(frozen=True)
class PassingDemos:
    """Static demos bootstrapped from passing train rollouts: the agent's own answers the scorer passed.

    For suites whose scorer needs no expected answer (a predicate or judge), this is the only source
    of good examples; where train answers exist, retrieval shows them instead."""

    name: str = "passing_demos"
    mechanism: str = "demos of passing train rollouts (bootstrapped)"
    limit: int = MAX_BOOTSTRAP_DEMOS

    def propose(self, ws: Workspace) -> Proposal | None:
        if not ws.task_agent_fits or ws.enabled("fewshot") or ws.enabled("retrieval_k"):
            return None
        if ws.tools or retrieval_fits(ws):
            return None
        demos = []
        for trace in ws.inp.passing_traces:
            text = input_text(trace.task_input)
            shown = answer_text(trace.output)
            if text and shown and len(text) + len(shown) <= MAX_DEMO_CHARS:
                demos.append({"input": text, "answer": shown})
        if not demos:
            return None
        demos = demos[: self.limit]
        edits, notes = ws.config_edits({"fewshot": True})
        edits[DEMOS_FILE] = dumps_json(demos)
        return make_proposal(
            self,
            f"The scorer passed these {len(demos)} train answers; showing them once (in the cached "
            "prompt prefix) tells the model what a passing answer looks like.",
            [
                *notes,
                f"{DEMOS_FILE}: {len(demos)} passing train rollouts (input, output)",
                "agent_config.json: fewshot = true",
            ],
            edits,
        )


@dataclass(frozen=True)
class AnswerStop:
    """Stop a short free-text answer at its first newline, with room for the longest train answer."""

    name: str = "answer_stop"
    mechanism: str = "stop short answers at the line end"

    def propose(self, ws: Workspace) -> Proposal | None:
        if not ws.task_agent_fits or ws.shape.kind != "text" or ws.enabled("stop"):
            return None
        answers = [a for _, a in ws.shape.examples if isinstance(a, str)]
        if not answers or any("\n" in a.strip() or len(a.split()) > SHORT_ANSWER_WORDS for a in answers):
            return None
        budget = max(len(a) for a in answers) + 8
        edits, notes = ws.config_edits({"stop": ["\n"], "max_tokens": budget})
        return make_proposal(
            self,
            "Every train answer is one short line; a model that keeps writing after it (an "
            "explanation, a second guess) fails an exact or strict scorer. Stopping at the newline "
            "keeps the answer line only.",
            [*notes, f"agent_config.json: stop = ['\\n'], max_tokens = {budget}"],
            edits,
        )
