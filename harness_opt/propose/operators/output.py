"""Output-shape operators for classification suites: constrain, snap, and tune how answers are sampled.

A 135M model often knows roughly which intent a message has but writes it wrongly (another case,
spaces for underscores, a trailing explanation); exact-match scoring counts all of those as failures.
These operators make the written answer a valid label without changing what the model is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.operator import make_proposal
from harness_opt.propose.operators.workspace import Workspace

JSON_TOKENS_PER_CHAR = 1.0
"""Budget of one token per label character: generous for any BPE tokenizer, so JSON never truncates."""


def _longest_label(ws: Workspace) -> int:
    assert ws.classification is not None
    return max(len(label) for label in ws.classification.labels)


@dataclass(frozen=True)
class ConstrainedOutput:
    """Grammar-constrained decoding: the answer is JSON whose `label` is an enum of the train labels."""

    name: str = "constrained_output"
    mechanism: str = "constrained output (label enum)"

    def propose(self, ws: Workspace) -> Proposal | None:
        if ws.classification is None or ws.enabled("constrained"):
            return None
        max_tokens = int(_longest_label(ws) * JSON_TOKENS_PER_CHAR) + 16
        edits, notes = ws.config_edits({"constrained": True, "snap": False, "max_tokens": max_tokens})
        labels = len(ws.classification.labels)
        return make_proposal(
            self,
            f"Exact-match scoring fails every answer that is not a label verbatim; constraining the "
            f"output to a JSON enum of the {labels} train labels makes every answer a valid label, so "
            "near misses (case, spacing, extra words) become either right or a real confusion.",
            [
                *notes,
                f"agent_config.json: constrained = true (response_format json_schema enum of {labels} "
                f"labels), max_tokens = {max_tokens} so the JSON answer is never cut off",
            ],
            edits,
        )


@dataclass(frozen=True)
class SnapToLabel:
    """Map a free-text answer to the closest label (for models or APIs without constrained decoding)."""

    name: str = "snap_to_label"
    mechanism: str = "snap answer to nearest label"

    def propose(self, ws: Workspace) -> Proposal | None:
        if ws.classification is None or ws.enabled("constrained") or ws.enabled("snap"):
            return None
        edits, notes = ws.config_edits({"snap": True})
        return make_proposal(
            self,
            "Free-text answers that miss a label by case, spacing or a few characters score 0; mapping "
            "each answer to the closest train label (normalised match, then string similarity) recovers "
            "those near misses without another model call.",
            [*notes, "agent_config.json: snap = true (answers outside data/labels.json map to the closest)"],
            edits,
        )


@dataclass(frozen=True)
class TunedSampling:
    """Sampling settings fitted to the answer: lower vote temperature, or stop free text at a newline."""

    name: str = "tuned_sampling"
    mechanism: str = "tuned sampling"

    def propose(self, ws: Workspace) -> Proposal | None:
        if ws.classification is None:
            return None
        if ws.enabled("vote_n") and int(ws.config["vote_n"]) > 1:
            current = float(ws.config.get("vote_temperature", 0.7))
            if current <= 0.3:
                return None
            edits, notes = ws.config_edits({"vote_temperature": 0.3})
            return make_proposal(
                self,
                f"At temperature {current} the small model's extra votes often wander to unrelated "
                "labels; sampling them at 0.3 keeps the diversity that fixes borderline cases while "
                "keeping each vote close to the model's best guess.",
                [*notes, f"agent_config.json: vote_temperature {current} -> 0.3"],
                edits,
            )
        if ws.enabled("constrained") or ws.enabled("stop"):
            return None
        max_tokens = int(_longest_label(ws) * JSON_TOKENS_PER_CHAR) + 4
        edits, notes = ws.config_edits({"stop": ["\n"], "max_tokens": max_tokens})
        return make_proposal(
            self,
            "A free-text answer that runs on past the label (an explanation on the next line) is not "
            "an exact match; stopping at the first newline, with room for the longest label, keeps "
            "only the label line.",
            [*notes, f"agent_config.json: stop = ['\\n'], max_tokens = {max_tokens}"],
            edits,
        )
