"""What of a suite's sealed data (val and test) would be suspicious to find written inside a candidate.

Built on the evaluator side only: a proposer never sees this index, it only learns a candidate was
refused. Anything that also occurs in train is public (a proposer may legitimately copy train demos or
the label names into a prompt), so only literals specific to val/test count: whole short inputs,
8-word windows of long inputs, expected answers that train never uses, and val/test task ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness_opt.suites.base import Suite

NGRAM = 8
"""Words in a window of a long val/test input; 8 words in a row do not match by chance."""
MIN_WHOLE_WORDS = 4
"""A short input counts only as a whole and only from this many words ('thank you' is not a leak)."""
MIN_ANSWER_CHARS = 6
SEALED_SPLITS = ("val", "test")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def strings(value: Any) -> Iterator[str]:
    """Every string leaf of a task input or expected answer (dicts, lists, scalars)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def _ngrams(tokens: list[str], n: int = NGRAM) -> Iterator[tuple[str, ...]]:
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


@dataclass
class SealedIndex:
    """Val/test literals (minus anything seen in train), each with the task and split it came from."""

    ngrams: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)
    whole: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)
    answers: dict[str, tuple[str, str]] = field(default_factory=dict)
    task_ids: dict[str, str] = field(default_factory=dict)
    train_ids: set[str] = field(default_factory=set)


def _safe_tasks(suite: Suite, split: str) -> list[Any]:
    if split not in suite.split_names():
        return []
    return list(suite.tasks(split))


def build_index(suite: Suite) -> SealedIndex:
    train = _safe_tasks(suite, "train")
    train_tokens = [words(text) for task in train for text in strings(task.input)]
    train_grams: set[tuple[str, ...]] = {g for tokens in train_tokens for g in _ngrams(tokens)}
    train_answers: set[str] = {s.strip().lower() for task in train for s in strings(task.expected)}
    sealed: list[tuple[list[str], tuple[str, str]]] = []
    index = SealedIndex(train_ids={t.id for t in train})
    for split in SEALED_SPLITS:
        for task in _safe_tasks(suite, split):
            index.task_ids[task.id] = split
            sealed.extend((words(text), (task.id, split)) for text in strings(task.input))
            for answer in strings(task.expected):
                key = answer.strip().lower()
                if len(key) >= MIN_ANSWER_CHARS and key not in train_answers:
                    index.answers.setdefault(key, (task.id, split))
    # A short sealed input is public if train says the same words anywhere, not only as a whole text:
    # "top up if there isn't much money left" inside a longer train message is not a leak.
    short_lengths = {len(t) for t, _ in sealed if MIN_WHOLE_WORDS <= len(t) <= NGRAM}
    train_windows = {g for tokens in train_tokens for n in short_lengths for g in _ngrams(tokens, n)}
    for tokens, where in sealed:
        if len(tokens) <= NGRAM:
            if len(tokens) >= MIN_WHOLE_WORDS and tuple(tokens) not in train_windows:
                index.whole.setdefault(tuple(tokens), where)
            continue
        for gram in _ngrams(tokens):
            if gram not in train_grams:
                index.ngrams.setdefault(gram, where)
    return index


_CACHE: dict[tuple[str, str, int], SealedIndex] = {}


def sealed_index(suite: Suite) -> SealedIndex:
    """The index of a suite, built once per process (banking77: ~0.3 s over 10k train texts)."""
    key = (suite.name, str(suite.path), len(_safe_tasks(suite, "val")))
    if key not in _CACHE:
        _CACHE[key] = build_index(suite)
    return _CACHE[key]


@dataclass(frozen=True)
class LiteralHit:
    kind: str
    """'sealed-input', 'sealed-answer', 'sealed-task-id' or 'train-task-id'."""
    split: str
    task_id: str
    line: int
    snippet: str


def find_literals(text: str, index: SealedIndex) -> list[LiteralHit]:
    """Sealed literals in one file's text, at most one hit per (kind, task) so a dump reads short."""
    hits: list[LiteralHit] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, where: tuple[str, str], line: int, snippet: str) -> None:
        if (kind, where[0]) not in seen:
            seen.add((kind, where[0]))
            hits.append(LiteralHit(kind, where[1], where[0], line, snippet[:80]))

    lines = text.splitlines()
    # Windows never cross a line or a string-literal boundary: a data file of many train texts must
    # not "spell" a sealed input out of the end of one text and the start of the next.
    segments = [
        (number, tokens)
        for number, line in enumerate(lines, start=1)
        for part in re.split(r'["\\]', line)
        if (tokens := words(part))
    ]
    lengths = {len(k) for k in index.whole}
    for number, tokens in segments:
        for gram in _ngrams(tokens):
            if gram in index.ngrams:
                add("sealed-input", index.ngrams[gram], number, " ".join(gram))
        for n in lengths:  # whole short inputs: every window of each length present in `whole`
            for gram in _ngrams(tokens, n):
                if gram in index.whole:
                    add("sealed-input", index.whole[gram], number, " ".join(gram))
    lowered = [line.lower() for line in lines]
    for answer, where in index.answers.items():
        for number, line in enumerate(lowered, start=1):
            if answer in line:
                add("sealed-answer", where, number, answer)
                break
    ids = index.task_ids.keys() | index.train_ids
    for number, line in enumerate(lines, start=1):
        for token in re.findall(r"[A-Za-z0-9_.:-]{4,}", line):
            if token in index.task_ids:
                add("sealed-task-id", (token, index.task_ids[token]), number, token)
            elif token in ids:
                add("train-task-id", (token, "train"), number, token)
    return hits
