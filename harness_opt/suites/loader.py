"""`load_suite`: read `tasks/<name>/suite.toml` and call its module's `load(path, config)`.

The suite module is trusted project code (unlike harness code), so it is imported in-process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness_opt.errors import SuiteError, UserError
from harness_opt.suites.base import Suite

SUITE_FILE = "suite.toml"
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class SuiteInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Suite name, stored in every rollout.")
    description: str = ""
    module: str = Field(default="suite.py", description="Python file in the folder defining load().")


class SuiteConfig(BaseModel):
    """suite.toml. Tables other than [suite] belong to the suite module and are passed to it as-is."""

    model_config = ConfigDict(extra="allow")

    suite: SuiteInfo
    splits: dict[str, Any] = Field(default_factory=dict, description="Documented sizes/seeds of splits.")


def _line_of(text: str, table: str, key: str | None) -> int | None:
    lines = text.splitlines()
    header = next(
        (i for i, ln in enumerate(lines) if re.match(rf"^\s*\[\s*{re.escape(table)}\s*\]", ln)), None
    )
    if header is None or key is None:
        return None if header is None else header + 1
    for i in range(header + 1, len(lines)):
        if lines[i].lstrip().startswith("["):
            break
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return header + 1


def read_suite_config(folder: Path) -> tuple[SuiteConfig, dict[str, Any]]:
    """Parse and validate suite.toml; returns the model and the raw dict passed to the module."""
    path = folder / SUITE_FILE
    if not path.is_file():
        raise SuiteError(
            f"missing {SUITE_FILE}",
            where=str(folder),
            fix=f'add {SUITE_FILE} with [suite] name = "...", module = "suite.py"',
        )
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.search(str(exc))
        where = f"{path}, line {match[1]}, column {match[2]}" if match else str(path)
        what = _TOML_POSITION.sub("", str(exc)).strip()
        raise SuiteError(f"invalid TOML: {what}", where=where, fix="fix the TOML syntax") from None
    try:
        config = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        table, key = (loc[0], loc[1] if len(loc) > 1 else None) if loc else ("suite", None)
        line = _line_of(text, table, key)
        label = f"[{table}].{'.'.join(loc[1:])}" if key else f"[{table}]"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise SuiteError(
            f"{label}: {msg}",
            where=f"{path}, line {line}" if line else str(path),
            fix="[suite] needs name (letters, digits, _ . -), optional description and module",
        ) from None
    return config, raw


def _import_module(file: Path, suite_name: str) -> Any:
    """Import the suite module from its file under a unique private name (two folders never clash)."""
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:10]
    mod_name = f"_harness_opt_suite_{re.sub(r'[^A-Za-z0-9_]', '_', suite_name)}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise SuiteError("cannot import the suite module", where=str(file), fix="check the module path")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise SuiteError(
            f"syntax error: {exc.msg}", where=f"{file}, line {exc.lineno}", fix="fix the suite module"
        ) from None
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise SuiteError(
            f"importing the suite module failed: {type(exc).__name__}: {exc}",
            where=str(file),
            fix="fix the error in the suite module (run `python <module>` to see the traceback)",
        ) from exc
    return module


def load_suite(path: Path | str, **options: Any) -> Suite:
    """Load the suite in folder `path` (a `tasks/<name>/` directory or its suite.toml).

    `options` (e.g. `user_model=`, `data=` from the CLI) are merged over suite.toml's `[options]`
    table and reach the module as `config["options"]`; a None value means "not given" and keeps the
    file's setting, so a CLI default never overrides what the suite author wrote.
    """
    folder = Path(path).expanduser()
    if folder.name == SUITE_FILE and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise SuiteError(
            "suite folder does not exist",
            where=str(path),
            fix="pass a folder like tasks/banking77 that holds a suite.toml",
        )
    config, raw = read_suite_config(folder)
    if "module" not in raw.get("suite", {}) and "data" in raw:  # a data suite: no code, just suite.toml
        from harness_opt.suites import data_suite

        raw["options"] = {**(raw.get("options") or {}), **{k: v for k, v in options.items() if v is not None}}
        return data_suite.load(folder.resolve(), raw)
    table = raw.get("options") or {}
    if not isinstance(table, dict):
        raise SuiteError(
            "[options] must be a table", where=str(folder / SUITE_FILE), fix="write it as [options]"
        )
    raw["options"] = {**table, **{k: v for k, v in options.items() if v is not None}}
    module_file = folder / config.suite.module
    if not module_file.is_file():
        raise SuiteError(
            f"suite module {config.suite.module!r} not found",
            where=f"{folder / SUITE_FILE}: [suite].module",
            fix=f"create {module_file} defining `load(path, config) -> Suite`, or fix [suite].module",
        )
    module = _import_module(module_file, config.suite.name)
    load = getattr(module, "load", None)
    if not callable(load):
        raise SuiteError(
            "the suite module defines no load() function",
            where=str(module_file),
            fix="define `def load(path: Path, config: dict) -> Suite`",
        )
    try:
        suite = load(folder.resolve(), raw)
    except UserError:
        raise
    except Exception as exc:
        raise SuiteError(
            f"load() failed: {type(exc).__name__}: {exc}",
            where=str(module_file),
            fix="fix the suite module or its data (the chained traceback shows where)",
        ) from exc
    if not isinstance(suite, Suite):
        raise SuiteError(
            f"load() returned {type(suite).__name__}, which is not a Suite",
            where=str(module_file),
            fix="return an object with name, path, deterministic_scorer, split_names, tasks, "
            "environment and score (e.g. harness_opt.suites.table.TableSuite)",
        )
    if suite.name != config.suite.name:
        raise SuiteError(
            f"load() returned a suite named {suite.name!r} but [suite].name is {config.suite.name!r}",
            where=str(module_file),
            fix="use the same name in both places",
        )
    return suite
