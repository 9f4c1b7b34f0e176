"""Configurable classifier agent: the orchestration the `operators` proposer installs as agent.py.

This file is copied verbatim into a harness version, where it runs in the sandbox, so it imports only
the standard library. Everything an operator changes lives beside it, not in it:
`agent_config.json` (switches and numbers), `data/labels.json` (the label set, from train),
`data/demos.json` (static few-shot demos), `data/retrieval_index.json` (a precomputed BM25 index of
train examples) and `prompts/glossary.j2`. So operators compose by editing data, never code.

Data files are read at import, which the fork server does once per evaluation, not once per task.
Prompt order keeps the KV cache warm on a local model: the static part (system prompt, glossary,
static demos) comes first and is byte-identical for every task; per-task content (retrieved demos,
the message) comes last.
"""

import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

MARKER = "harness-opt classifier agent v1"
"""Lets the proposer recognise this agent in a version's files (do not edit)."""

HERE = Path(__file__).parent
DEFAULTS = {
    "text_field": None,  # None: every input column, one per line (init's user.j2); else one column
    "system_template": "system.j2",
    "user_template": "user.j2",
    "glossary": False,  # append prompts/glossary.j2 to the system prompt
    "fewshot": False,  # static demos from data/demos.json
    "constrained": False,  # JSON-schema enum of the labels: every answer is a valid label
    "snap": False,  # map a free-text answer to the closest label
    "retrieval_k": 0,  # nearest train examples shown as demos
    "retrieval_order": "similar_last",  # or "similar_first"
    "retrieval_per_label": 0,  # at most this many demos per label (0: no cap), for more diverse demos
    "demo_format": "turns",  # "turns" (chat turns) or "inline" (one block before the message)
    "candidate_k": 0,  # restrict the enum to the labels of the top candidate_k neighbours
    "vote_n": 1,  # self-consistency: calls per task, majority answer
    "vote_temperature": 0.7,
    "temperature": None,  # None: harness.toml default
    "max_tokens": None,
    "stop": None,
}

_STOP_TEXT = (
    "a an the i me my we our you your it its is am are was were be been being do does did to of in on "
    "for at by with from and or but if so as this that these those there here can could would should "
    "will just have has had please"
)
STOPWORDS = frozenset(_STOP_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str, bigrams: bool = False) -> list[str]:
    """Lower-case words minus stopwords, with a plural 's' stripped; shared by index and query.
    With `bigrams`, adjacent pairs too ('top_up'), which tell 'top up by card' from 'card top up'."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    if bigrams:
        out += [f"{a}_{b}" for a, b in pairwise(out)]
    return out


def input_text(task: dict[str, Any]) -> str:
    """Each input column's value on its own line, in column order (init's user.j2 renders the same)."""
    if CONFIG["text_field"]:
        return str(task.get(CONFIG["text_field"], ""))
    parts = []
    for value in task.values():
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return "\n".join(parts)


def _read_json(rel: str, default: Any) -> Any:
    path = HERE / rel
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


CONFIG = {**DEFAULTS, **_read_json("agent_config.json", {})}
LABELS = _read_json("data/labels.json", [])
DEMOS = _read_json("data/demos.json", [])
NEEDS_INDEX = CONFIG["retrieval_k"] or CONFIG["candidate_k"]
INDEX = _read_json("data/retrieval_index.json", None) if NEEDS_INDEX else None


def retrieve(text: str, k: int) -> list[tuple[str, str]]:
    """Top-k train examples by BM25 (weights precomputed per posting): [(text, label)], best first."""
    if not INDEX or k <= 0:
        return []
    postings = INDEX["postings"]
    scores: dict[int, int] = {}
    for term in set(tokenize(text, bool(INDEX.get("bigrams")))):
        posting = postings.get(term)
        if not posting:
            continue
        for i in range(0, len(posting), 2):
            doc = posting[i]
            scores[doc] = scores.get(doc, 0) + posting[i + 1]
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    names = INDEX["labels"]
    return [(INDEX["texts"][doc], names[INDEX["label_of"][doc]]) for doc, _ in best]


def _answer_text(label: str) -> str:
    return json.dumps({"label": label}) if CONFIG["constrained"] else label


def _demo_turns(demos: list[tuple[str, str]]) -> list[dict[str, str]]:
    turns = []
    for text, label in demos:
        turns.append({"role": "user", "content": text})
        turns.append({"role": "assistant", "content": _answer_text(label)})
    return turns


def _schema(labels: list[str]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "label",
            "schema": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": labels}},
                "required": ["label"],
            },
        },
    }


def _parse(content: str | None) -> str:
    text = (content or "").strip()
    if CONFIG["constrained"]:
        try:
            value = json.loads(text)
            if isinstance(value, dict) and isinstance(value.get("label"), str):
                return value["label"]
        except ValueError:
            pass
    if CONFIG["snap"] and LABELS and text not in LABELS:
        return snap(text)
    return text


def snap(text: str) -> str:
    """The label closest to a free-text answer: exact after normalising, else the most similar string."""
    import difflib

    norm = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    for label in LABELS:
        if re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") == norm:
            return label
    close = difflib.get_close_matches(text, LABELS, n=1, cutoff=0.0)
    return close[0] if close else text


def _params(labels: list[str], temperature: float | None, seed: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if CONFIG["constrained"] and labels:
        params["response_format"] = _schema(labels)
    if temperature is not None:
        params["temperature"] = temperature
    if seed is not None:
        params["seed"] = seed
    if CONFIG["max_tokens"]:
        params["max_tokens"] = CONFIG["max_tokens"]
    if CONFIG["stop"]:
        params["stop"] = CONFIG["stop"]
    return params


def vote(answers: list[str]) -> str:
    """Majority answer; ties go to the answer seen first (the greedy call comes first)."""
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    top = max(counts.values())
    return next(a for a in answers if counts[a] == top)


def _demos(neighbours: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The retrieved demos to show: capped per label if asked, in the configured order."""
    shown: list[tuple[str, str]] = []
    per_label: dict[str, int] = {}
    for text, label in neighbours:
        if CONFIG["retrieval_per_label"] and per_label.get(label, 0) >= CONFIG["retrieval_per_label"]:
            continue
        per_label[label] = per_label.get(label, 0) + 1
        shown.append((text, label))
        if len(shown) >= CONFIG["retrieval_k"]:
            break
    return shown[::-1] if CONFIG["retrieval_order"] == "similar_last" else shown


def run(task: dict[str, Any], ctx: Any) -> str:
    text = input_text(task)
    system = ctx.render(CONFIG["system_template"], task=task)
    if CONFIG["glossary"]:
        system += "\n\n" + ctx.render("glossary.j2")
    messages = [{"role": "system", "content": system}]
    if CONFIG["fewshot"]:
        messages += _demo_turns([(d["text"], d["label"]) for d in DEMOS])

    wanted = max(CONFIG["retrieval_k"] * (3 if CONFIG["retrieval_per_label"] else 1), CONFIG["candidate_k"])
    neighbours = retrieve(text, wanted)
    user = ctx.render(CONFIG["user_template"], task=task)
    if CONFIG["retrieval_k"]:
        demos = _demos(neighbours)
        if CONFIG["demo_format"] == "inline":
            block = "\n".join(f"{t} => {_answer_text(label)}" for t, label in demos)
            user = f"Similar messages and their labels:\n{block}\n\nMessage:\n{user}"
        else:
            messages += _demo_turns(demos)
    messages.append({"role": "user", "content": user})

    labels = LABELS
    if CONFIG["candidate_k"] and neighbours:
        labels = list(dict.fromkeys(label for _, label in neighbours[: CONFIG["candidate_k"]]))
        ctx.log("candidate labels", labels=labels)

    answers = []
    for i in range(max(1, int(CONFIG["vote_n"]))):
        temperature = CONFIG["temperature"] if i == 0 else CONFIG["vote_temperature"]
        reply = ctx.llm(messages, **_params(labels, temperature, i if i else None))
        answers.append(_parse(reply.get("content")))
    if len(answers) > 1:
        ctx.log("votes", answers=answers)
    return vote(answers)
