"""Reusable scorers. A scorer never raises for a bad output: it scores 0 and says why in the feedback."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from harness_opt.records import Score, Task

Scorer = Callable[[Task, Any], Score]
"""Scores one rollout's final output against a task (the environment is not needed for these)."""

FEEDBACK_LIMIT = 200
"""Longest 'got' shown in feedback: a rambling output should not flood the proposer's context."""


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= FEEDBACK_LIMIT else text[:FEEDBACK_LIMIT] + "…"


def exact_match(expected: Any, output: Any) -> Score:
    """1 if the output equals the expected answer after stripping surrounding whitespace, else 0.

    Only whitespace is forgiven: case or punctuation differences are the harness's job to get right,
    and forgiving them here would hide exactly the failures a proposer should see.
    """
    got = output.strip() if isinstance(output, str) else output
    want = expected.strip() if isinstance(expected, str) else expected
    passed = bool(got == want) if not isinstance(want, str) else isinstance(got, str) and got == want
    return Score(
        score=1.0 if passed else 0.0,
        passed=passed,
        feedback=f"expected: {_shown(want)} | got: {_shown(got)}",
    )


def exact_match_scorer(task: Task, output: Any) -> Score:
    """`exact_match` against `task.expected`, in the `Scorer` shape."""
    return exact_match(task.expected, output)


_MISSING = object()


def _field(value: Any, path: str) -> Any:
    """`a.b.0.c` into nested dicts/lists; `_MISSING` when any step is absent."""
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def as_json(output: Any) -> Any:
    """The output as JSON data: dicts/lists pass through; a string is parsed, also from a ```json fence.

    Models wrap JSON in prose or fences more often than not; the outermost {...} is tried last so a
    reply like 'Here you go: {...}' still scores on its content. None when nothing parses.
    """
    if not isinstance(output, str):
        return output
    text = output.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1] if "{" in text else ""):
        if candidate:
            try:
                return json.loads(candidate)
            except ValueError:
                continue
    return None


def json_field_match(expected: Any, output: Any, fields: Sequence[str]) -> Score:
    """Fraction of `fields` (dot paths) whose value in the output's JSON equals the expected JSON's.

    Passes only when every field matches. Strings compare after stripping whitespace, like exact_match.
    """
    got, want = as_json(output), as_json(expected)
    if not isinstance(got, dict | list):
        return Score(score=0.0, passed=False, feedback=f"output is not JSON | got: {_shown(output)}")
    matched, notes = 0, []
    for path in fields:
        a, b = _field(got, path), _field(want, path)
        a = a.strip() if isinstance(a, str) else a
        b = b.strip() if isinstance(b, str) else b
        if a is not _MISSING and a == b:
            matched += 1
        else:
            shown = "missing" if a is _MISSING else _shown(a)
            notes.append(f"{path}: expected {_shown(None if b is _MISSING else b)}, got {shown}")
    score = matched / len(fields) if fields else 0.0
    feedback = f"{matched}/{len(fields)} fields match" + (" | " + "; ".join(notes) if notes else "")
    return Score(score=score, passed=bool(fields) and matched == len(fields), feedback=feedback)


def predicate_score(value: Any) -> Score:
    """Normalise what a predicate returned (bool, number in [0, 1], (value, feedback) or Score)."""
    if isinstance(value, Score):
        return value
    feedback = ""
    if isinstance(value, tuple) and len(value) == 2:
        value, feedback = value
    if isinstance(value, bool):
        return Score(score=1.0 if value else 0.0, passed=value, feedback=str(feedback))
    if isinstance(value, int | float):
        score = min(max(float(value), 0.0), 1.0)
        return Score(score=score, passed=score >= 1.0, feedback=str(feedback))
    what = f"predicate returned {type(value).__name__}, not bool/float"
    return Score(score=0.0, passed=False, feedback=what)
