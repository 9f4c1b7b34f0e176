"""What of a suite's sealed data (val and test) would be suspicious to find written inside a candidate.

Built on the evaluator side only: a proposer never sees this index, it only learns a candidate was
refused. A task's texts are its input and its parent-side metadata (a simulated user's scenario).
Public text is never a finding: train texts and expected answers (which include the label
set of a classification suite) are public, so a sealed text counts only where train does not say the
same words. What counts: whole short val/test inputs (4-8 words), 8-word windows of longer ones,
8-word windows of long answers, short answers train never uses, val/test task ids, and, for inputs of
five or more content words, a close paraphrase (most of those words within a short span).

`find_literals` reports what one file contains; `scan.py` then keeps only what the candidate
introduced (not already in its parent or in the user's seed version).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness_opt.suites.base import Suite
from harness_opt.trust.segments import Run, file_blocks, runs_of, words

NGRAM = 8
"""Words in a window of a long val/test input; 8 words in a row do not match by chance."""
MIN_WHOLE_WORDS = 4
"""A short input counts only as a whole and only from this many words ('thank you' is not a leak)."""
MIN_ANSWER_CHARS = 6
PARAPHRASE_MIN_TERMS = 5
"""A sealed input needs this many distinct content words before a paraphrase of it can be told apart."""
PARAPHRASE_COVER = 0.8
"""Share of those content words that must appear, within a span of at most twice as many."""
MIN_ID_CHARS = 4
MIN_NUMERIC_ID_CHARS = 6
"""Purely numeric task ids shorter than this ('1024') collide with ordinary numbers: not matched."""
SEALED_SPLITS = ("val", "test")
Where = tuple[str, str]
"""(task id, split)."""

_STOP_TEXT = (
    "a an the i im i'm me my mine we our us you your yours it its is am are was were be been being "
    "do does did done to of in on for at by with from and or but if so as this that these those "
    "there here can could would should will just have has had please what when where why how which "
    "who not no any some all get got there's it's don't can't didn't"
)
_STOP = frozenset(_STOP_TEXT.split())


def content_terms(text_words: Iterable[str]) -> list[str]:
    """Words that carry meaning (stopwords out, a plural 's' stripped): the unit of paraphrase."""
    out = []
    for word in text_words:
        if word in _STOP or len(word) < 2:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


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


@dataclass(frozen=True)
class Signature:
    """A sealed input's content words, for the paraphrase check."""

    terms: frozenset[str]
    where: Where

    @property
    def needed(self) -> int:
        return math.ceil(PARAPHRASE_COVER * len(self.terms))


@dataclass
class SealedIndex:
    """Val/test literals (minus anything public), each with the task and split it came from."""

    ngrams: dict[tuple[str, ...], Where] = field(default_factory=dict)
    whole: dict[tuple[str, ...], Where] = field(default_factory=dict)
    answer_grams: dict[tuple[str, ...], Where] = field(default_factory=dict)
    answers: dict[str, Where] = field(default_factory=dict)
    task_ids: dict[str, str] = field(default_factory=dict)
    train_ids: set[str] = field(default_factory=set)
    signatures: list[Signature] = field(default_factory=list)
    by_term: dict[str, list[int]] = field(default_factory=dict)
    public_exact: set[tuple[str, ...]] = field(default_factory=set)
    """Every public text as words (train inputs and answers): a piece equal to one is a barrier."""
    public_docs: list[frozenset[str]] = field(default_factory=list)
    public_by_term: dict[str, list[int]] = field(default_factory=dict)
    answer_names: re.Pattern[str] | None = None
    """Public answers (labels) as written in text: removed before the paraphrase check, since a
    label list or a demo's label is public and would otherwise lend its words to any match."""

    def public_cover(self, terms: set[str]) -> float:
        """The largest share of `terms` that one public text contains."""
        counts: Counter[int] = Counter()
        for term in terms:
            counts.update(self.public_by_term.get(term, ()))
        best = max(counts.values(), default=0)
        return best / len(terms) if terms else 1.0


def _safe_tasks(suite: Suite, split: str) -> list[Any]:
    if split not in suite.split_names():
        return []
    return list(suite.tasks(split))


def _answer_pattern(answers: set[str]) -> re.Pattern[str] | None:
    shown = sorted(
        (a for a in answers if 0 < len(a) <= 80 and "\n" not in a and words(a)), key=len, reverse=True
    )
    if not shown:
        return None
    forms = [r"[\s_\-]+".join(re.escape(w) for w in re.split(r"[\s_\-]+", a.strip()) if w) for a in shown]
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(f for f in forms if f) + r")(?![A-Za-z0-9])", re.I)


def _add_public(index: SealedIndex, public_tokens: list[list[str]]) -> None:
    """Whole public texts (barriers) and their content words (what a paraphrase is checked against)."""
    index.public_exact = {tuple(tokens) for tokens in public_tokens if tokens}
    for i, tokens in enumerate(public_tokens):
        doc = frozenset(content_terms(tokens))
        index.public_docs.append(doc)
        for term in doc:
            index.public_by_term.setdefault(term, []).append(i)


def _sealed_texts(
    suite: Suite, index: SealedIndex, train_answers: set[str]
) -> tuple[list[tuple[list[str], Where]], list[tuple[list[str], Where]]]:
    """(inputs, long answers) of the sealed splits as words; short new answers go into the index."""
    lowered_answers = {a.lower() for a in train_answers}
    sealed: list[tuple[list[str], Where]] = []
    long_answers: list[tuple[list[str], Where]] = []
    for split in SEALED_SPLITS:
        for task in _safe_tasks(suite, split):
            where = (task.id, split)
            index.task_ids[task.id] = split
            sealed.extend((words(text), where) for text in _task_texts(task))
            for answer in strings(task.expected):
                key = answer.strip().lower()
                tokens = words(answer)
                if key in lowered_answers:
                    continue
                if len(tokens) >= NGRAM:
                    long_answers.append((tokens, where))
                elif len(key) >= MIN_ANSWER_CHARS:
                    index.answers.setdefault(key, where)
    return sealed, long_answers


def _task_texts(task: Any) -> Iterator[str]:
    """A task's texts other than its answer: its input, and its parent-side metadata (a user
    simulator's scenario, a judge's rubric, the other columns of a `[data]` row), which a harness
    never sees either and so has no business quoting for a sealed task."""
    yield from strings(task.input)
    yield from strings(task.metadata)


def build_index(suite: Suite) -> SealedIndex:
    train = _safe_tasks(suite, "train")
    public_texts = [s for task in train for s in _task_texts(task)]
    train_answers = {s.strip() for task in train for s in strings(task.expected)}
    unique = dict.fromkeys(tuple(words(text)) for text in [*public_texts, *train_answers])
    public_tokens = [list(tokens) for tokens in unique]  # 10k rows of 'train.csv' are one text
    public_grams: set[tuple[str, ...]] = {g for tokens in public_tokens for g in _ngrams(tokens)}
    index = SealedIndex(train_ids={t.id for t in train}, answer_names=_answer_pattern(train_answers))
    _add_public(index, public_tokens)
    sealed, long_answers = _sealed_texts(suite, index, train_answers)
    # A short sealed input is public if train says the same words anywhere, not only as a whole text:
    # "top up if there isn't much money left" inside a longer train message is not a leak, and
    # "what are your hobbies" is public when `what_are_your_hobbies` is a label.
    short_lengths = {len(t) for t, _ in sealed if MIN_WHOLE_WORDS <= len(t) <= NGRAM}
    public_windows = {g for tokens in public_tokens for n in short_lengths for g in _ngrams(tokens, n)}
    for tokens, where in sealed:
        if MIN_WHOLE_WORDS <= len(tokens) <= NGRAM and tuple(tokens) not in public_windows:
            index.whole.setdefault(tuple(tokens), where)
        if len(tokens) > NGRAM:
            for gram in set(_ngrams(tokens)) - public_grams:
                index.ngrams.setdefault(gram, where)
        terms = frozenset(content_terms(tokens))
        if len(terms) >= PARAPHRASE_MIN_TERMS and tuple(tokens) not in index.public_exact:
            index.signatures.append(Signature(terms, where))
    for tokens, where in long_answers:
        for gram in set(_ngrams(tokens)) - public_grams:
            index.answer_grams.setdefault(gram, where)
    for i, sig in enumerate(index.signatures):
        for term in sig.terms:
            index.by_term.setdefault(term, []).append(i)
    return index


_CACHE: dict[tuple[str, str, int, int], SealedIndex] = {}


def sealed_index(suite: Suite) -> SealedIndex:
    """The index of a suite, built once per process (banking77: ~1 s over 10k train texts)."""
    key = (suite.name, str(suite.path), len(_safe_tasks(suite, "val")), len(_safe_tasks(suite, "train")))
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
    how: str = ""
    """How it matched: 'whole input', '8-word window', 'paraphrase (6/7 content words)', ..."""
    key: tuple[str, ...] = ()
    """What matched (words, or the answer/id text): the same key in the parent means not introduced."""


def _paraphrases(run: Run, index: SealedIndex) -> Iterator[tuple[Signature, int, set[str]]]:
    """Signatures most of whose content words occur close together in the run: (sig, line, matched)."""
    if not index.signatures:
        return
    terms, lines = _content(run, index)
    if len(terms) < PARAPHRASE_MIN_TERMS:
        return
    counts: Counter[int] = Counter()
    for term in set(terms):
        counts.update(index.by_term.get(term, ()))
    positions: dict[str, list[int]] = defaultdict(list)
    for i, term in enumerate(terms):
        positions[term].append(i)
    for sig_id, shared in counts.items():
        sig = index.signatures[sig_id]
        if shared < sig.needed:
            continue
        span = _shortest_span(sig.terms, positions, sig.needed, 2 * len(sig.terms))
        if span is not None:
            start, end = span
            yield sig, lines[start], set(terms[start : end + 1]) & sig.terms


def _content(run: Run, index: SealedIndex) -> tuple[list[str], list[int]]:
    """The run's content terms and their lines, with public answer names (labels) taken out."""
    removed: set[int] = set()
    if index.answer_names is not None:
        text = " ".join(run.words)
        starts, offset = [], 0
        for word in run.words:
            starts.append(offset)
            offset += len(word) + 1
        for match in index.answer_names.finditer(text):
            removed.update(range(bisect_left(starts, match.start()), bisect_left(starts, match.end())))
    terms: list[str] = []
    lines: list[int] = []
    for i, word in enumerate(run.words):
        term = content_terms([word]) if i not in removed else []
        if term:
            terms.append(term[0])
            lines.append(run.lines[i])
    return terms, lines


def _shortest_span(
    wanted: frozenset[str], positions: dict[str, list[int]], needed: int, limit: int
) -> tuple[int, int] | None:
    """The shortest [start, end] of term positions holding `needed` distinct wanted terms, if <= limit."""
    events = sorted((p, t) for t in wanted for p in positions.get(t, ()))
    have: Counter[str] = Counter()
    best: tuple[int, int] | None = None
    left = 0
    for right in range(len(events)):
        have[events[right][1]] += 1
        while len(have) >= needed:
            start, end = events[left][0], events[right][0]
            if end - start < limit and (best is None or end - start < best[1] - best[0]):
                best = (start, end)
            term = events[left][1]
            have[term] -= 1
            if not have[term]:
                del have[term]
            left += 1
    return best


class _Hits:
    """Hits of one file, at most one per (kind, task) so a dump reads short."""

    def __init__(self) -> None:
        self.hits: list[LiteralHit] = []
        self.seen: set[tuple[str, str]] = set()

    def add(self, kind: str, where: Where, line: int, snippet: str, how: str, key: tuple[str, ...]) -> None:
        if (kind, where[0]) not in self.seen:
            self.seen.add((kind, where[0]))
            self.hits.append(LiteralHit(kind, where[1], where[0], line, snippet[:80], how, key))


def _window_hits(run: Run, index: SealedIndex, lengths: list[int], out: _Hits) -> None:
    """8-word windows of long inputs and answers, and whole short inputs, inside one run."""
    for i, gram in enumerate(_ngrams(run.words)):
        if gram in index.ngrams:
            out.add("sealed-input", index.ngrams[gram], run.line_of(i), " ".join(gram), "8-word window", gram)
        if gram in index.answer_grams:
            how = "8-word window of the answer"
            out.add("sealed-answer", index.answer_grams[gram], run.line_of(i), " ".join(gram), how, gram)
    for n in lengths:  # whole short inputs: every window of each length present in `whole`
        for i, gram in enumerate(_ngrams(run.words, n)):
            if gram in index.whole:
                out.add(
                    "sealed-input", index.whole[gram], run.line_of(i), " ".join(gram), "whole input", gram
                )


def _line_hits(text: str, index: SealedIndex, out: _Hits) -> None:
    """Short answers train never uses (as substrings) and task ids (as tokens), line by line."""
    lines = text.splitlines()
    lowered = [row.lower() for row in lines]
    for answer, where in index.answers.items():
        number = next((n for n, row in enumerate(lowered, start=1) if answer in row), None)
        if number is not None:
            out.add("sealed-answer", where, number, answer, "answer train never uses", (answer,))
    for number, row in enumerate(lines, start=1):
        for token in re.findall(r"[A-Za-z0-9_.:-]{4,}", row):
            if token.isdigit() and len(token) < MIN_NUMERIC_ID_CHARS:
                continue
            if token in index.task_ids:
                out.add("sealed-task-id", (token, index.task_ids[token]), number, token, "task id", (token,))
            elif token in index.train_ids:
                out.add("train-task-id", (token, "train"), number, token, "task id", (token,))


def find_literals(text: str, index: SealedIndex, path: str = "") -> list[LiteralHit]:
    """Sealed literals in one file's text (read by its format, from `path`), at most one hit per
    (kind, task)."""
    out = _Hits()
    lengths = sorted({len(k) for k in index.whole})
    for run in runs_of(file_blocks(path, text), index.public_exact):
        _window_hits(run, index, lengths, out)
        for sig, line, matched in _paraphrases(run, index):
            if index.public_cover(matched) >= PARAPHRASE_COVER:
                continue  # a train text says the same: copying or rewording it is legitimate
            how = f"paraphrase ({len(matched)}/{len(sig.terms)} content words)"
            out.add(
                "sealed-paraphrase", sig.where, line, " ".join(sorted(matched)), how, tuple(sorted(matched))
            )
    _line_hits(text, index, out)
    return out.hits
