"""A suite from your own data: tasks from JSONL / CSV / Parquet / a Hugging Face dataset, declared splits,
a stated scorer and tools bound to Python callables or HTTP endpoints — all in `suite.toml`, no code.

`load_suite` picks this loader when suite.toml has a `[data]` table and no `[suite].module`. A local
path is read with the standard library (or pyarrow for Parquet) and never touches the network; only an
`hf:` source that is not a local folder goes through `datasets` and may download.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from harness_opt.errors import SuiteError
from harness_opt.records import SPLITS, Score, Task
from harness_opt.suites.base import Environment, NoTools
from harness_opt.suites.data_schema import DataSpec, DataSuiteConfig, SplitSpec, parse_config
from harness_opt.suites.judge import LLMJudge
from harness_opt.suites.scorers import Scorer, exact_match_scorer, json_field_match, predicate_score
from harness_opt.suites.table import TableSuite
from harness_opt.suites.tool_bindings import BoundTools, ToolEnvironment, load_function

SUITE_FILE = "suite.toml"


def _format_of(spec: DataSpec, file: Path) -> str:
    if spec.format != "auto":
        return spec.format
    if spec.source.startswith("hf:"):
        return "hf"
    suffix = file.suffix.lower()
    for fmt, suffixes in (("jsonl", (".jsonl", ".ndjson")), ("csv", (".csv",)), ("parquet", (".parquet",))):
        if suffix in suffixes:
            return fmt
    raise SuiteError(
        f"cannot tell the format of {file.name}",
        where=f"{SUITE_FILE}: [data].source",
        fix='name the file .jsonl/.csv/.parquet or set [data] format = "jsonl"|"csv"|"parquet"|"hf"',
    )


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    """One JSON object per line; a malformed line is a SuiteError naming its number."""
    rows = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SuiteError(
                    f"invalid JSON: {exc}", where=f"{file}, line {number}", fix="one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise SuiteError(
                    f"line holds a {type(row).__name__}, not an object",
                    where=f"{file}, line {number}",
                    fix="one JSON object per line",
                )
            rows.append(row)
    return rows


def read_rows(spec: DataSpec, folder: Path) -> list[dict[str, Any]]:
    """All rows of `[data].source` as dicts, in file order."""
    source = spec.source.removeprefix("hf:")
    file = (folder / source).expanduser()
    fmt = _format_of(spec, file)
    if fmt != "hf" and not file.is_file():
        raise SuiteError("data file not found", where=str(file), fix="fix [data].source in suite.toml")
    if fmt == "jsonl":
        rows = read_jsonl(file)
    elif fmt == "csv":
        with file.open(encoding="utf-8", newline="") as handle:
            rows = [dict(r) for r in csv.DictReader(handle)]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(file).to_pylist()
    else:
        rows = _read_hf(spec, source, file)
    return rows[: spec.limit] if spec.limit else rows


def _read_hf(spec: DataSpec, source: str, local: Path) -> list[dict[str, Any]]:
    import datasets

    # A local folder is loaded by the packaged builders (json/csv/parquet), which read files only.
    target = str(local) if local.exists() else source
    try:
        data = datasets.load_dataset(target, spec.hf_config, split=spec.hf_split)
    except Exception as exc:
        raise SuiteError(
            f"loading Hugging Face dataset {source!r} failed: {type(exc).__name__}: {exc}",
            where=f"{SUITE_FILE}: [data].source",
            fix="check the dataset id, hf_config and hf_split; or download it once and use its folder",
        ) from exc
    return [dict(row) for row in data]


def _tasks(rows: list[dict[str, Any]], spec: DataSpec, split_column: str | None, name: str) -> list[Task]:
    reserved = {c for c in (spec.id, spec.expected, split_column) if c}
    tasks = []
    for index, row in enumerate(rows):
        missing = [c for c in [*(spec.input or []), *reserved] if c not in row]
        if missing:
            raise SuiteError(
                f"row {index} has no column(s) {missing}; it has {sorted(row)}",
                where=f"{SUITE_FILE}: [data]",
                fix="fix the column names in [data] (id, input, expected) or [splits].column",
            )
        columns = spec.input if spec.input is not None else [c for c in row if c not in reserved]
        task_id = str(row[spec.id]) if spec.id else f"{name}-{index:05d}"
        tasks.append(
            Task(
                id=task_id,
                input={c: row[c] for c in columns},
                expected=row[spec.expected] if spec.expected else None,
                metadata={
                    "row": index,
                    **{k: v for k, v in row.items() if k not in (*columns, spec.expected)},
                },
            )
        )
    return tasks


def split_tasks(tasks: list[Task], splits: SplitSpec, split_of: dict[str, str]) -> dict[str, list[Task]]:
    """Given splits (`split_of[task id]`) or seeded generated ones; generated splits are stable forever:
    the order comes from `random.Random(seed)` over tasks sorted by id, not from file order."""
    if splits.column:
        out: dict[str, list[Task]] = {}
        for task in tasks:
            out.setdefault(split_of[task.id], []).append(task)
        return out
    sizes = {"train": splits.train, "val": splits.val, "test": splits.test}
    if all(v is None for v in sizes.values()):
        sizes = {"train": 0.6, "val": 0.2, "test": 0.2}
    chosen = {k: v for k, v in sizes.items() if v is not None}
    n = len(tasks)
    fractional = all(v <= 1 for v in chosen.values()) and any(v < 1 for v in chosen.values())
    counts = {k: round(v * n) if fractional else int(v) for k, v in chosen.items()}
    if sum(counts.values()) > n:
        if fractional:  # rounding overshoot: the last split gives way
            last = list(counts)[-1]
            counts[last] -= sum(counts.values()) - n
        else:
            raise SuiteError(
                f"[splits] asks for {sum(counts.values())} tasks but the data has {n}",
                where=SUITE_FILE,
                fix="lower train/val/test or add rows",
            )
    position = {id(t): i for i, t in enumerate(tasks)}
    order = sorted(tasks, key=lambda t: t.id)
    random.Random(splits.seed).shuffle(order)
    out, start = {}, 0
    for split in SPLITS:
        if split in counts:
            out[split] = sorted(order[start : start + counts[split]], key=lambda t: position[id(t)])
            start += counts[split]
    return out


class DataSuite(TableSuite):
    """A TableSuite whose environment binds the suite's tools and whose scorer is declared in suite.toml."""

    def __init__(
        self,
        config: DataSuiteConfig,
        path: Path,
        splits: dict[str, list[Task]],
        scorer: Scorer | None,
    ) -> None:
        super().__init__(
            config.suite.name,
            path,
            splits,
            scorer=scorer or exact_match_scorer,
            description=config.suite.description,
            deterministic_scorer=config.scorer.kind != "judge",
        )
        self.config = config
        self._tools = BoundTools(path, config.tools, config.environment.timeout_s) if config.tools else None
        self._state = load_function(path, config.environment.state) if config.environment.state else None
        self._predicate = (
            load_function(path, config.scorer.function)
            if config.scorer.kind == "predicate" and config.scorer.function
            else None
        )

    def environment(self, task: Task) -> Environment:
        state = self._state(task) if self._state else None
        if self._tools is None:
            return NoTools() if state is None else ToolEnvironment(BoundTools(self.path, {}), task.id, state)
        return self._tools.environment(task.id, state)

    def score(self, task: Task, output: Any, env: Environment) -> Score:
        if self._predicate is not None:
            try:
                return predicate_score(self._predicate(task, output, env))
            except Exception as exc:  # a predicate bug scores 0 with the reason, like every scorer
                reason = f"predicate failed: {type(exc).__name__}: {exc}"
                return Score(score=0.0, passed=False, feedback=reason)
        return self._scorer(task, output)


def _scorer(config: DataSuiteConfig, folder: Path) -> Scorer | None:
    spec = config.scorer
    if spec.kind == "json_field":
        fields = list(spec.fields)
        return lambda task, output: json_field_match(task.expected, output, fields)
    if spec.kind == "judge":
        rubric = spec.rubric or ""
        if spec.rubric_file:
            file = folder / spec.rubric_file
            if not file.is_file():
                raise SuiteError("rubric file not found", where=str(file), fix="fix [scorer].rubric_file")
            rubric = file.read_text(encoding="utf-8")
        return LLMJudge(rubric, spec.model, threshold=spec.threshold)
    return None  # exact (the TableSuite default) or predicate (handled in DataSuite.score)


def load(path: Path, raw: dict[str, Any]) -> DataSuite:
    """Build the suite of folder `path` from its parsed suite.toml (`raw`)."""
    config = parse_config(raw, path / SUITE_FILE)
    rows = read_rows(config.data, path)
    if not rows:
        raise SuiteError("the data has no rows", where=config.data.source, fix="add tasks to the data file")
    column = config.splits.column
    tasks = _tasks(rows, config.data, column, config.suite.name)
    split_of = {t.id: str(rows[i][column]) for i, t in enumerate(tasks)} if column else {}
    return DataSuite(config, path, split_tasks(tasks, config.splits, split_of), _scorer(config, path))
