"""Reusable scorers. A scorer never raises for a bad output: it scores 0 and says why in the feedback."""

from __future__ import annotations

from collections.abc import Callable
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
