"""The banking77 suite: classify a customer-support message into one of 77 intents (exact label match).

Task ids come from the row index in the source file (`b77-train-00042` is row 42 of train.csv,
`b77-test-01234` row 1234 of test.csv), so they never change when the split parameters do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness_opt.errors import SuiteError
from harness_opt.records import Task
from harness_opt.suites.splits import stratified_split
from harness_opt.suites.table import TableSuite, read_csv

NAME = "banking77"


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def _task(prefix: str, index: int, row: dict[str, str], source: str) -> Task:
    return Task(
        id=f"b77-{prefix}-{index:05d}",
        input={"text": row["text"].strip()},
        expected=row["category"].strip(),
        metadata={"source": source, "row": index},
    )


def load(path: Path, config: dict[str, Any]) -> TableSuite:
    splits = config.get("splits", {})
    data = config.get("data", {})
    train_file = path / data.get("train", "data/train.csv")
    heldout_file = path / data.get("heldout", "data/test.csv")
    labels_file = path / data.get("labels", "data/categories.json")

    train_rows = read_csv(train_file, ["text", "category"])
    heldout_rows = read_csv(heldout_file, ["text", "category"])
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    for file, rows in ((train_file, train_rows), (heldout_file, heldout_rows)):
        unknown = sorted({r["category"] for r in rows} - set(labels))
        if unknown:
            raise SuiteError(
                f"labels not in {labels_file.name}: {unknown[:5]}",
                where=str(file),
                fix="restore the original data files",
            )

    # A held-out text that also occurs in train (or earlier in the held-out file) would leak or count
    # twice, so such rows are never drawn into val or test.
    seen = {_normal(r["text"]) for r in train_rows}
    eligible = []
    for row in heldout_rows:
        key = _normal(row["text"])
        eligible.append(key not in seen)
        seen.add(key)

    per_label = {"val": int(splits.get("val_per_label", 3)), "test": int(splits.get("test_per_label", 5))}
    try:
        picked = stratified_split(
            [r["category"] for r in heldout_rows], per_label, seed=splits.get("seed", 2020), eligible=eligible
        )
    except ValueError as exc:
        raise SuiteError(
            str(exc), where=str(heldout_file), fix="lower val_per_label / test_per_label"
        ) from None

    source = heldout_file.name
    return TableSuite(
        NAME,
        path,
        {
            "train": [_task("train", i, row, train_file.name) for i, row in enumerate(train_rows)],
            "val": [_task("test", i, heldout_rows[i], source) for i in picked["val"]],
            "test": [_task("test", i, heldout_rows[i], source) for i in picked["test"]],
        },
        description=config.get("suite", {}).get("description", ""),
        deterministic_scorer=True,
    )
