"""`TableSuite`: a suite whose tasks come from data files, split train/val/test, scored without tools.

Splits are sealed by construction: each split's tasks live in their own list and the only way to get
them is `tasks(split)`, so no method can hand test tasks to a caller that asked for something else.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness_opt.errors import SuiteError
from harness_opt.records import SPLITS, Score, Task
from harness_opt.suites.base import Environment, NoTools
from harness_opt.suites.scorers import Scorer, exact_match_scorer


class TableSuite:
    """Tasks from files, a fresh `NoTools` environment per rollout, and a per-task scorer."""

    deterministic_scorer: bool = True

    def __init__(
        self,
        name: str,
        path: Path,
        splits: Mapping[str, Sequence[Task]],
        *,
        scorer: Scorer = exact_match_scorer,
        description: str = "",
        deterministic_scorer: bool = True,
    ) -> None:
        ids: dict[str, str] = {}
        for split, tasks in splits.items():
            for task in tasks:
                if task.id in ids:
                    raise SuiteError(
                        f"task id {task.id!r} appears in both {ids[task.id]!r} and {split!r}",
                        where=f"suite {name}",
                        fix="task ids must be unique across the whole suite",
                    )
                ids[task.id] = split
        self.name = name
        self.path = Path(path)
        self.description = description
        self.deterministic_scorer = deterministic_scorer
        self._scorer = scorer
        order = [s for s in SPLITS if s in splits] + [s for s in splits if s not in SPLITS]
        self._splits: dict[str, tuple[Task, ...]] = {s: tuple(splits[s]) for s in order}

    def split_names(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def tasks(self, split: str) -> list[Task]:
        """Tasks of one split in a stable order. Unknown split -> SuiteError naming the valid ones."""
        if split not in self._splits:
            raise SuiteError(
                f"unknown split {split!r}",
                where=f"suite {self.name}",
                fix=f"use one of: {', '.join(self._splits)}",
            )
        return list(self._splits[split])

    def environment(self, task: Task) -> Environment:
        return NoTools()

    def score(self, task: Task, output: Any, env: Environment) -> Score:
        return self._scorer(task, output)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(t)}" for s, t in self._splits.items())
        return f"{type(self).__name__}({self.name!r}, {sizes})"


def read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file with a header; a missing file or column is a SuiteError naming it."""
    if not path.is_file():
        raise SuiteError("data file not found", where=str(path), fix="restore the file or fix the path")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise SuiteError(
                f"missing column(s) {missing}; header is {reader.fieldnames}",
                where=str(path),
                fix=f"the file needs a header with {list(columns)}",
            )
        return list(reader)
