"""A suite made of given tasks and a given scorer, for checks that only need the Suite protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness_opt.records import Score, Task
from harness_opt.suites.base import NoTools


class FakeSuite:
    name = "fake"
    path = Path(".")
    deterministic_scorer = True

    def __init__(
        self, splits: dict[str, list[Task]], scorer: Callable[[Task, Any], Score] | None = None
    ) -> None:
        self.splits = splits
        self.scorer = scorer

    def split_names(self) -> tuple[str, ...]:
        return tuple(self.splits)

    def tasks(self, split: str) -> list[Task]:
        return self.splits[split]

    def environment(self, task: Task) -> NoTools:
        return NoTools()

    def score(self, task: Task, output: Any, env: Any) -> Score:
        assert self.scorer is not None, "this FakeSuite was made without a scorer"
        return self.scorer(task, output)
