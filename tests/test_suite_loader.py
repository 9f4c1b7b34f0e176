"""load_suite: suite.toml errors, module errors, and the TableSuite / stratified split building blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness_opt.errors import SuiteError
from harness_opt.records import Task
from harness_opt.suites.loader import load_suite
from harness_opt.suites.splits import stratified_split
from harness_opt.suites.table import TableSuite

MODULE = """
from harness_opt.records import Task
from harness_opt.suites.table import TableSuite


def load(path, config):
    n = config["splits"]["n"]
    tasks = {s: [Task(id=f"{s}-{i}", input={"q": i}, expected=str(i)) for i in range(n)]
             for s in ("train", "val", "test")}
    return TableSuite(config["suite"]["name"], path, tasks)
"""

TOML = """[suite]
name = "toy"
description = "a toy suite"
module = "suite.py"

[splits]
n = 2
"""


def make_suite(tmp_path: Path, toml: str = TOML, module: str | None = MODULE) -> Path:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "suite.toml").write_text(toml)
    if module is not None:
        (folder / "suite.py").write_text(module)
    return folder


def error_of(path: Path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value)


def test_loads_a_toy_suite_with_config(tmp_path: Path) -> None:
    folder = make_suite(tmp_path)
    suite = load_suite(folder)
    assert suite.name == "toy" and suite.path == folder.resolve()
    assert [t.id for t in suite.tasks("val")] == ["val-0", "val-1"]
    assert load_suite(folder / "suite.toml").name == "toy"


def test_missing_folder_and_missing_toml(tmp_path: Path) -> None:
    assert "suite folder does not exist" in error_of(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    message = error_of(tmp_path / "empty")
    assert "missing suite.toml" in message and "fix:" in message


def test_bad_toml_names_line(tmp_path: Path) -> None:
    folder = make_suite(tmp_path, TOML.replace("n = 2", "n = = 2"))
    message = error_of(folder)
    assert "suite.toml, line 7, column 5" in message and "invalid TOML" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('name = "toy"', 'name = "t o y"', "line 2: [suite].name: String should match pattern"),
        ('module = "suite.py"', 'module = "suite.py"\nmodle = 1', "line 5: [suite].modle: unknown field"),
        ('[suite]\nname = "toy"\n', "[suite]\n", "[suite].name: Field required"),
    ],
)
def test_suite_table_field_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    message = error_of(make_suite(tmp_path, TOML.replace(old, new)))
    assert "suite.toml" in message and expected in message


def test_missing_suite_table(tmp_path: Path) -> None:
    assert "[suite]: Field required" in error_of(make_suite(tmp_path, "[splits]\nn = 1\n"))


def test_missing_module(tmp_path: Path) -> None:
    message = error_of(make_suite(tmp_path, module=None))
    assert "suite module 'suite.py' not found" in message and "[suite].module" in message


def test_module_without_load(tmp_path: Path) -> None:
    assert "defines no load() function" in error_of(make_suite(tmp_path, module="X = 1\n"))


def test_module_syntax_error(tmp_path: Path) -> None:
    assert "suite.py, line 2" in error_of(make_suite(tmp_path, module="x = 1\ndef load(:\n"))


def test_module_import_error(tmp_path: Path) -> None:
    assert "ZeroDivisionError" in error_of(make_suite(tmp_path, module="x = 1 / 0\n"))


def test_load_returning_a_non_suite(tmp_path: Path) -> None:
    message = error_of(make_suite(tmp_path, module="def load(path, config):\n    return 42\n"))
    assert "returned int, which is not a Suite" in message


def test_load_failure_is_wrapped(tmp_path: Path) -> None:
    message = error_of(make_suite(tmp_path, module="def load(path, config):\n    return config['nope']\n"))
    assert "load() failed: KeyError" in message


def test_name_mismatch(tmp_path: Path) -> None:
    module = MODULE.replace('config["suite"]["name"]', '"other"')
    assert "named 'other' but [suite].name is 'toy'" in error_of(make_suite(tmp_path, module=module))


def test_unknown_split(tmp_path: Path) -> None:
    suite = load_suite(make_suite(tmp_path))
    with pytest.raises(SuiteError, match="use one of: train, val, test"):
        suite.tasks("validation")


def test_table_suite_rejects_duplicate_ids(tmp_path: Path) -> None:
    task = Task(id="same", input={}, expected="x")
    with pytest.raises(SuiteError, match="appears in both 'train' and 'test'"):
        TableSuite("t", tmp_path, {"train": [task], "test": [task]})


def test_stratified_split_is_deterministic_disjoint_and_stratified() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    first = stratified_split(labels, {"val": 2, "test": 3}, seed=1)
    assert first == stratified_split(labels, {"val": 2, "test": 3}, seed=1)
    assert first != stratified_split(labels, {"val": 2, "test": 3}, seed=2)
    assert not set(first["val"]) & set(first["test"])
    assert [sum(labels[i] == lab for i in first["test"]) for lab in "abc"] == [3, 3, 3]
    assert first["val"] == sorted(first["val"])


def test_stratified_split_respects_eligibility_and_shortage() -> None:
    labels = ["a"] * 4
    picked = stratified_split(labels, {"val": 1, "test": 2}, seed=0, eligible=[False, True, True, True])
    assert 0 not in picked["val"] + picked["test"]
    with pytest.raises(ValueError, match="label 'a' has 3 eligible rows, 4 needed"):
        stratified_split(labels, {"val": 2, "test": 2}, seed=0, eligible=[False, True, True, True])
