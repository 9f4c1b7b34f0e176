"""The `suite.toml` schema of a data suite (no `module`, a `[data]` table), with errors that name the line.

A user who brings their own data writes this file by hand, so every mistake is reported as
`suite.toml, line N: [scorer].fields: ...` with what to write instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness_opt.errors import SuiteError
from harness_opt.suites.tool_bindings import HttpTool, PythonTool

FORMATS = ("jsonl", "csv", "parquet", "hf")


class DataSpec(BaseModel):
    """`[data]`: where the tasks come from and which columns are what."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="File relative to the suite folder, or 'hf:<dataset id or local dir>'.")
    format: Literal["auto", "jsonl", "csv", "parquet", "hf"] = "auto"
    id: str | None = Field(default=None, description="Column holding a stable task id (else the row number).")
    input: list[str] | None = Field(
        default=None, description="Columns the agent sees (default: all but id, expected and split)."
    )
    expected: str | None = Field(default="expected", description="Column with the expected outcome.")
    hf_config: str | None = None
    hf_split: str = Field(default="train", description="Which split of the HF dataset to read rows from.")
    limit: int | None = Field(default=None, ge=1, description="Only the first N rows (quick trials).")


class SplitSpec(BaseModel):
    """`[splits]`: given by a column, or generated from the rows with a seed (fractions or counts)."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, description="Column naming each row's split.")
    seed: int = 0
    train: float | None = Field(default=None, ge=0)
    val: float | None = Field(default=None, ge=0)
    test: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_way(self) -> SplitSpec:
        sizes = [s for s in (self.train, self.val, self.test) if s is not None]
        if self.column and sizes:
            raise ValueError("give either column (splits in the data) or train/val/test sizes, not both")
        if self.fractions and sum(sizes) > 1.0001:
            raise ValueError(f"fractions add up to {sum(sizes):g}, more than 1")
        if sizes and not self.fractions and any(s != int(s) for s in sizes):
            raise ValueError("sizes are either all fractions below 1 or all whole row counts")
        return self

    @property
    def fractions(self) -> bool:
        """True when the sizes are fractions of the rows (all <= 1, one below 1), else row counts."""
        sizes = [s for s in (self.train, self.val, self.test) if s is not None]
        return bool(sizes) and all(s <= 1 for s in sizes) and any(s < 1 for s in sizes)


class ScorerSpec(BaseModel):
    """`[scorer]`: how an output is judged."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["exact", "json_field", "predicate", "judge"] = "exact"
    fields: list[str] = Field(default_factory=list, description="json_field: dot paths compared.")
    function: str | None = Field(default=None, description="predicate: 'checks.py:name'.")
    rubric: str | None = Field(default=None, description="judge: the grading rubric.")
    rubric_file: str | None = Field(default=None, description="judge: a file holding the rubric.")
    model: str = Field(default="local/smollm2", description="judge: litellm model string.")
    threshold: float = Field(default=0.5, ge=0, le=1, description="judge: pass at or above this grade.")

    @model_validator(mode="after")
    def _complete(self) -> ScorerSpec:
        if self.kind == "json_field" and not self.fields:
            raise ValueError('json_field needs fields = ["status", "order.id", ...]')
        if self.kind == "predicate" and not (self.function and re.match(r"^[^:]+\.py:\w+$", self.function)):
            raise ValueError('predicate needs function = "checks.py:name" (a file in the suite folder)')
        if self.kind == "judge" and not (self.rubric or self.rubric_file):
            raise ValueError('judge needs rubric = "..." or rubric_file = "rubric.md"')
        return self


class EnvironmentSpec(BaseModel):
    """`[environment]`: per-rollout state and the default tool timeout."""

    model_config = ConfigDict(extra="forbid")

    state: str | None = Field(
        default=None, description="'tools.py:new_state', called with the task at the start of each rollout."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Per-call tool timeout unless a tool sets one.")


ToolSpec = Annotated[PythonTool | HttpTool, Field(discriminator="kind")]


class SuiteMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""


class DataSuiteConfig(BaseModel):
    """The whole suite.toml of a data suite."""

    model_config = ConfigDict(extra="forbid")

    suite: SuiteMeta
    data: DataSpec
    splits: SplitSpec = Field(default_factory=SplitSpec)
    scorer: ScorerSpec = Field(default_factory=ScorerSpec)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    options: dict[str, Any] = Field(default_factory=dict)


def _header_line(lines: list[str], table: str) -> int | None:
    pattern = re.compile(rf"^\s*\[\s*{re.escape(table)}\s*\]")
    return next((i for i, line in enumerate(lines) if pattern.match(line)), None)


def locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the TOML key at pydantic error location `loc` (else its table header)."""
    parts = [str(p) for p in loc if str(p) not in ("python", "http")]
    lines = text.splitlines()
    for depth in range(len(parts), 0, -1):
        header = _header_line(lines, ".".join(parts[:depth]))
        if header is None:
            continue
        key = parts[depth] if depth < len(parts) else None
        if key is not None:
            for i in range(header + 1, len(lines)):
                if lines[i].lstrip().startswith("["):
                    break
                if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
                    return i + 1
        return header + 1
    return None


def parse_config(raw: dict[str, Any], toml_file: Path) -> DataSuiteConfig:
    """Validate the raw TOML dict; the first error becomes a SuiteError naming the file and line."""
    try:
        return DataSuiteConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        text = toml_file.read_text(encoding="utf-8") if toml_file.is_file() else ""
        line = locate(text, loc)
        shown = [str(p) for p in loc if str(p) not in ("python", "http")]
        lines = text.splitlines()
        depth = next(
            (d for d in range(len(shown), 0, -1) if _header_line(lines, ".".join(shown[:d])) is not None), 1
        )
        label = (
            f"[{'.'.join(shown[:depth])}]" + "".join(f".{p}" for p in shown[depth:])
            if shown
            else "suite.toml"
        )
        msg = err["msg"].removeprefix("Value error, ")
        msg = "unknown field" if err["type"] == "extra_forbidden" else msg
        raise SuiteError(
            f"{label}: {msg}",
            where=f"{toml_file}, line {line}" if line else str(toml_file),
            fix="see docs in harness_opt/suites/data_schema.py: [data] source/format/id/input/expected, "
            "[splits] column or train/val/test + seed, [scorer] kind = exact|json_field|predicate|judge, "
            '[tools.NAME] kind = "python"|"http"',
        ) from None
