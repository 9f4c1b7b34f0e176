"""What kind of task a suite is, read from its train tasks alone: the shape every operator keys on.

The `[data]` format allows four shapes, and each operator states which it serves:

* **classification**: every train answer is a short string from a small, repeating set; the label
  set is the distinct train answers (nothing else: no suite-specific label file is assumed);
* **json**: every train answer is a JSON object; its fields, their types, the values a categorical
  field takes and the fields whose value is copied verbatim from the input are read from train;
* **text**: free-text answers, or none at all (a predicate or judge scorer decides);
* any of them may have **tools** (tools.json non-empty), which `Workspace` tells apart.

The *input text* is the same everywhere: each input column's value on its own line, in column order.
That is what `harness-opt init`'s `prompts/user.j2` renders and what the installed agents retrieve
on (`assets/*_agent.py` implement the same rule with the standard library; a test holds them equal).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from harness_opt.records import Task

MAX_LABELS = 200
"""A suite with more distinct answers than this is not treated as classification."""
MAX_LABEL_CHARS = 80
MAX_ENUM_VALUES = 20
"""A JSON field with at most this many distinct (and repeating) train values is categorical."""
COPY_SHARE = 0.9
"""A field is 'copied from the input' when its train value occurs verbatim in this share of inputs."""
MIN_PATTERN_SHARE = 0.9
"""A learned field pattern must find exactly the expected value in this share of train inputs."""


def input_text(task_input: dict[str, Any]) -> str:
    """The text of a task: each input column's value on its own line (what init's user.j2 renders)."""
    parts = []
    for value in task_input.values():
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return "\n".join(parts)


def answer_text(expected: Any) -> str:
    """A train answer as the agent would write it: strings as they are, anything else as JSON."""
    return expected if isinstance(expected, str) else json.dumps(expected, ensure_ascii=False)


@dataclass(frozen=True)
class FieldShape:
    """One field of a JSON answer, as train shows it."""

    name: str
    kind: Literal["string", "integer", "number", "boolean", "other"]
    values: tuple[Any, ...] = ()
    """Distinct train values when the field is categorical, else empty."""
    copied: float = 0.0
    """Share of train tasks whose value appears verbatim in the input text."""
    pattern: str | None = None
    """A regex that finds exactly the expected value in MIN_PATTERN_SHARE of train inputs."""


@dataclass(frozen=True)
class Shape:
    """A suite's task shape (see the module docstring); `examples` are (input text, answer) from train."""

    kind: Literal["classification", "json", "text"]
    examples: list[tuple[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    fields: list[FieldShape] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    @property
    def has_answers(self) -> bool:
        return any(answer is not None for _, answer in self.examples)


def detect_shape(tasks: list[Task]) -> Shape:
    """The shape of a suite from its train tasks (never raises; `text` when nothing more specific fits)."""
    columns = _columns(tasks)
    examples = [(input_text(t.input), t.expected) for t in tasks if input_text(t.input).strip()]
    labels = _labels(tasks)
    if labels is not None:
        return Shape("classification", examples, labels=labels, columns=columns)
    fields = _fields(tasks)
    if fields:
        return Shape("json", examples, fields=fields, columns=columns)
    return Shape("text", examples, columns=columns)


def _columns(tasks: list[Task]) -> list[str]:
    seen: dict[str, None] = {}
    for task in tasks[:200]:
        for key in task.input:
            seen.setdefault(key, None)
    return list(seen)


def _labels(tasks: list[Task]) -> list[str] | None:
    """The label set (distinct train answers) when every answer is a short repeating string."""
    if len(tasks) < 2 or not all(isinstance(t.expected, str) for t in tasks):
        return None
    counts = Counter(str(t.expected) for t in tasks)
    if not 2 <= len(counts) <= MAX_LABELS or len(counts) > len(tasks) / 2:
        return None
    if any(len(label) > MAX_LABEL_CHARS or "\n" in label or not label.strip() for label in counts):
        return None
    return sorted(counts)


def _as_object(expected: Any) -> dict[str, Any] | None:
    if isinstance(expected, dict):
        return expected
    if isinstance(expected, str) and expected.strip().startswith("{"):
        try:
            value = json.loads(expected)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def _kind(values: list[Any]) -> Literal["string", "integer", "number", "boolean", "other"]:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    if all(isinstance(v, str) for v in values):
        return "string"
    return "other"


def _fields(tasks: list[Task]) -> list[FieldShape]:
    """Top-level fields every train answer object has, with what train says about each."""
    objects = [_as_object(t.expected) for t in tasks]
    if len(tasks) < 2 or any(o is None for o in objects):
        return []
    present = [o for o in objects if o is not None]
    names = [k for k in present[0] if all(k in o for o in present)]
    texts = [input_text(t.input) for t in tasks]
    out = []
    for name in names:
        values = [o[name] for o in present]
        kind = _kind(values)
        distinct = list(dict.fromkeys(json.dumps(v, sort_keys=True) for v in values))
        categorical = kind in ("string", "integer", "boolean") and (
            len(distinct) <= MAX_ENUM_VALUES and len(distinct) <= len(values) / 2
        )
        shown = [v if isinstance(v, str) else json.dumps(v) for v in values]
        copied = sum(1 for v, t in zip(shown, texts, strict=True) if v and v in t) / len(values)
        pattern = learn_pattern(shown, texts) if kind in ("string", "integer", "number") else None
        out.append(
            FieldShape(
                name=name,
                kind=kind,
                values=tuple(json.loads(d) for d in distinct) if categorical else (),
                copied=copied,
                pattern=pattern,
            )
        )
    return out


def _char_class(char: str) -> str:
    if char.isdigit():
        return r"\d"
    if char.isalpha():
        return "[A-Z]" if char.isupper() else "[a-z]"
    return re.escape(char)


def _generalize(value: str) -> str:
    """`A1003` -> `[A-Z]\\d{4}`, `42.50` -> `\\d{2}\\.\\d{2}`: runs of one character class."""
    parts: list[tuple[str, int]] = []
    for char in value:
        cls = _char_class(char)
        if parts and parts[-1][0] == cls:
            parts[-1] = (cls, parts[-1][1] + 1)
        else:
            parts.append((cls, 1))
    return "".join(cls if n == 1 else f"{cls}{{{n}}}" for cls, n in parts)


def _loosen(pattern: str) -> str:
    """Digit runs of any length (`\\d{2}` -> `\\d+`): amounts and ids vary in length."""
    return re.sub(r"\\d\{\d+\}|\\d", r"\\d+", pattern)


def learn_pattern(values: list[str], texts: list[str]) -> str | None:
    """A regex that, searched in each train input, finds exactly that task's value, or None.

    Candidates are the character-class shapes of the train values (tight, then with free-length digit
    runs); one is kept if it matches exactly one distinct string in an input, equal to the expected
    value, for at least MIN_PATTERN_SHARE of train tasks. Shapes that are mostly letters are left out:
    a word-shaped pattern matches every word."""
    if not values or sum(
        1 for v, t in zip(values, texts, strict=True) if v and v in t
    ) < MIN_PATTERN_SHARE * len(values):
        return None
    shapes = Counter(_generalize(v) for v in values if v)
    candidates: list[str] = []
    for shape, _ in shapes.most_common(3):
        for option in (shape, _loosen(shape)):
            if option not in candidates:
                candidates.append(option)
    if len(shapes) > 1:
        candidates.append(_loosen(shapes.most_common(1)[0][0]))
    for option in candidates:
        if "\\d" not in option:
            continue
        regex = re.compile(rf"(?<![A-Za-z0-9]){option}(?![A-Za-z0-9])")
        good = 0
        for value, text in zip(values, texts, strict=True):
            found = set(regex.findall(text))
            good += found == {value}
        if good >= MIN_PATTERN_SHARE * len(values):
            return regex.pattern
    return None
