"""Demonstration operators: show the model solved train examples, or narrow its choice with them.

Every demo and label comes from TRAIN tasks (their gold answers are allowed to proposers); nothing
here can see val or test. Static demos go in the cached prompt prefix; retrieved ones are per task,
so they are few and short.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from harness_opt.propose.base import Proposal
from harness_opt.propose.operators.assets.classifier_agent import tokenize
from harness_opt.propose.operators.operator import make_proposal
from harness_opt.propose.operators.retrieval_index import INDEX_FILE, build_index, dumps_index
from harness_opt.propose.operators.shape import answer_text, input_text
from harness_opt.propose.operators.workspace import Workspace, dumps_json

DEMOS_FILE = "data/demos.json"
GLOSSARY_FILE = "prompts/glossary.j2"
RETRIEVAL_K = 6
CANDIDATE_K = 10
MAX_FAILED_DEMOS = 8
MAX_DEMO_CHARS = 160
DEFAULT_SCORING: dict[str, Any] = {"k1": 1.2, "b": 0.75, "bigrams": False}
GLOSSARY_POOL = 60
"""Examples per label considered when picking the most typical one (bounded so it stays fast)."""


def retrieval_examples(ws: Workspace) -> list[tuple[str, str]]:
    """(input text, answer as the agent writes it) of every train task with an answer."""
    if ws.classification is not None:
        return ws.classification.examples
    return [(text, answer_text(answer)) for text, answer in ws.shape.examples if answer is not None]


def index_edit(ws: Workspace, **scoring: Any) -> dict[str, str | None]:
    """The retrieval index file, scored as `scoring` says or as the agent's config already does
    (`retrieval_scoring`, set by the night search), so a later operator keeps a tuned index."""
    settings = {**DEFAULT_SCORING, **ws.config.get("retrieval_scoring", {}), **scoring}
    return {INDEX_FILE: dumps_index(build_index(retrieval_examples(ws), **settings))}


def retrieval_fits(ws: Workspace) -> bool:
    """Retrieval needs train answers and an agent that can show demos (classifier or task agent)."""
    if ws.classification is not None:
        return True
    return ws.task_agent_fits and ws.shape.has_answers


@dataclass(frozen=True)
class RetrievalDemos:
    """Per task, the k most similar train examples (BM25) with their answers as demos, most similar last.

    Applies to every shape with train answers: labels for classification, the answer JSON for
    extraction, the answer text for free text (not to a hand-written agent.py)."""

    name: str = "retrieval_demos"
    mechanism: str = "retrieved nearest-train demos (BM25)"
    k: int = RETRIEVAL_K

    def propose(self, ws: Workspace) -> Proposal | None:
        if not retrieval_fits(ws) or ws.enabled("retrieval_k"):
            return None
        edits, notes = ws.config_edits({"retrieval_k": self.k})
        edits.update(index_edit(ws))
        n = len(retrieval_examples(ws))
        what = "gold labels" if ws.classification is not None else "expected answers"
        return make_proposal(
            self,
            f"Tasks that need the same answer share words; showing the {self.k} most similar train "
            f"inputs with their {what} right before the question lets a small model copy the answer "
            "(and its format) of a near-duplicate instead of guessing.",
            [
                *notes,
                f"{INDEX_FILE}: BM25 index (k1=1.2, b=0.75, weights precomputed) over {n} train examples",
                f"agent_config.json: retrieval_k = {self.k} (demos as chat turns after the static prefix)",
            ],
            edits,
        )


@dataclass(frozen=True)
class CandidateLabels:
    """Restrict the constrained enum to the labels of the nearest train examples."""

    name: str = "candidate_labels"
    mechanism: str = "retrieved candidate labels (narrowed enum)"
    k: int = CANDIDATE_K

    def propose(self, ws: Workspace) -> Proposal | None:
        if ws.classification is None or not ws.enabled("constrained") or ws.enabled("candidate_k"):
            return None
        edits, notes = ws.config_edits({"candidate_k": self.k})
        edits.update(index_edit(ws))
        return make_proposal(
            self,
            f"Choosing among {len(ws.classification.labels)} labels is hard for a small model, but the "
            f"labels of the {self.k} nearest train messages usually include the right one; constraining "
            "the answer to those few candidates removes most of the possible confusions.",
            [
                *notes,
                f"{INDEX_FILE}: BM25 index over train examples",
                f"agent_config.json: candidate_k = {self.k} (enum = labels of the {self.k} nearest examples)",
            ],
            edits,
        )


@dataclass(frozen=True)
class FailedFewShot:
    """Static few-shot demos: failed train messages with their correct labels, one per label."""

    name: str = "failed_fewshot"
    mechanism: str = "few-shot demos of failed train cases"
    limit: int = MAX_FAILED_DEMOS

    def propose(self, ws: Workspace) -> Proposal | None:
        cls = ws.classification
        if cls is None or ws.enabled("fewshot"):
            return None
        gold = {t.id: str(t.expected) for t in ws.inp.train_tasks}
        by_label: dict[str, list[str]] = defaultdict(list)
        for trace in ws.inp.failing_traces:
            label = gold.get(trace.key.task_id)
            text = input_text(trace.task_input)
            if label is None or not text or len(text) > MAX_DEMO_CHARS:
                continue
            if text not in by_label[label]:
                by_label[label].append(text)
        if not by_label:
            return None
        rng = ws.rng(self.name)
        labels = sorted(by_label)
        rng.shuffle(labels)
        demos = [{"text": sorted(by_label[label])[0], "label": label} for label in labels[: self.limit]]
        edits, notes = ws.config_edits({"fewshot": True})
        edits[DEMOS_FILE] = dumps_json(demos)
        shown = ", ".join(d["label"] for d in demos)
        return make_proposal(
            self,
            "The model fails these train messages; showing them once with their correct labels "
            f"({len(demos)} demos in the cached prompt prefix) teaches the distinctions it gets wrong.",
            [
                *notes,
                f"{DEMOS_FILE}: {len(demos)} failed train messages with gold labels ({shown})",
                "agent_config.json: fewshot = true",
            ],
            edits,
        )


def typical_example(texts: list[str]) -> str:
    """The text sharing the most words with the others (a cheap medoid); shorter wins ties."""
    pool = [t for t in texts if len(t) <= MAX_DEMO_CHARS][:GLOSSARY_POOL] or texts[:1]
    sets = [set(tokenize(t)) for t in pool]

    def centrality(i: int) -> float:
        return sum(len(sets[i] & s) / (len(sets[i] | s) or 1) for j, s in enumerate(sets) if j != i)

    best = max(range(len(pool)), key=lambda i: (centrality(i), -len(pool[i]), pool[i]))
    return pool[best]


def _template_safe(text: str) -> str:
    """Customer text inside a jinja2 template: braces could open a tag, so they become parentheses."""
    return " ".join(text.replace("{", "(").replace("}", ")").split())


@dataclass(frozen=True)
class LabelGlossary:
    """A label guide appended to the system prompt: each label with its most typical train message."""

    name: str = "label_glossary"
    mechanism: str = "label glossary (typical train message per label)"

    def propose(self, ws: Workspace) -> Proposal | None:
        cls = ws.classification
        if cls is None or ws.enabled("glossary"):
            return None
        texts: dict[str, list[str]] = defaultdict(list)
        for text, label in cls.examples:
            texts[label].append(text)
        lines = [
            f'- {label}: e.g. "{_template_safe(typical_example(texts[label]))}"'
            for label in cls.labels
            if texts[label]
        ]
        glossary = "Label guide (a typical customer message for each label):\n" + "\n".join(lines) + "\n"
        edits, notes = ws.config_edits({"glossary": True})
        edits[GLOSSARY_FILE] = glossary
        return make_proposal(
            self,
            f"Label names alone are ambiguous ({len(lines)} labels, some close in meaning); a typical "
            "train message per label, in the static system prompt (cached), shows what each one means.",
            [
                *notes,
                f"{GLOSSARY_FILE}: {len(lines)} labels, each with its most typical train message",
                "agent_config.json: glossary = true (appended to the system prompt)",
            ],
            edits,
        )
