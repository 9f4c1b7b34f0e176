"""The `harness.toml` manifest of a harness version, as pydantic models.

The `[harness]` table is provenance (who made this version and why); `[model]`, `[runtime]` and
`[prompts]` change behaviour and so take part in the version's content hash.
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness_opt.errors import HarnessError
from harness_opt.harness import toml_writer
from harness_opt.llm.params import ParamError, check_params


class HarnessInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Agent name: the folder under harnesses/.")
    version: int = Field(ge=1, description="Version number; the directory is v{version:04d}.")
    parent: str | None = Field(default=None, description="Content hash of the parent version (lineage).")
    parent_dir: str | None = Field(default=None, description="Directory name of the parent, e.g. v0001.")
    created: datetime | None = None
    proposer: str = Field(default="human", description="seed, human, llm, agent, operators:<name>, ...")
    hypothesis: str = Field(default="", description="Why this version should be better than its parent.")
    changes: list[str] = Field(default_factory=list, description="One line per change made.")


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="local/smollm2", description="Default litellm model string for ctx.llm.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Default call params (temperature, max_tokens, ...)."
    )

    @field_validator("params")
    @classmethod
    def _allowlisted(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Only sampling settings: an endpoint or key here would send the user's key elsewhere."""
        try:
            return check_params(value)
        except ParamError as exc:
            raise ValueError(f"{exc} (see harness_opt/llm/params.py)") from None


class RolloutLimits(BaseModel):
    """Per-rollout limits the broker enforces; hitting one scores 0 with the limit as the reason."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=30, ge=1, description="ctx.llm + ctx.call_tool calls per rollout.")
    max_tokens: int = Field(default=100_000, ge=1, description="Prompt + completion tokens per rollout.")
    max_cost_usd: float | None = Field(default=None, ge=0, description="Dollar cap per rollout.")
    wall_time_s: float = Field(default=120.0, gt=0, description="Wall-clock seconds per rollout.")
    memory_mb: int = Field(default=1024, ge=64, description="Address-space limit of the harness process.")


class RuntimeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entrypoint: str = Field(default="agent.py:run", description="'<file>:<function>' called as f(task, ctx).")
    limits: RolloutLimits = Field(default_factory=RolloutLimits)


class PromptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: list[str] = Field(
        default_factory=list,
        description="Template variables beyond `task` and `tools` that agent.py passes to ctx.render; "
        "any other undeclared name in a template is an error at load time.",
    )


class HarnessManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    harness: HarnessInfo
    model: ModelSettings = Field(default_factory=ModelSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)

    def behaviour_dict(self) -> dict[str, Any]:
        """The parts that change what the agent does; provenance is left out of the content hash."""
        return {
            "model": self.model.model_dump(mode="json"),
            "runtime": self.runtime.model_dump(mode="json"),
            "prompts": self.prompts.model_dump(mode="json"),
        }


# --- reading and writing harness.toml -------------------------------------------------------------

MANIFEST_FILE = "harness.toml"
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_toml(path: Path, text: str | None = None) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a UserError naming the file, line and column."""
    try:
        source = path.read_text(encoding="utf-8") if text is None else text
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        where = f"{path}, line {match[1]}, column {match[2]}" if match else str(path)
        what = _TOML_POSITION.sub("", message).strip()
        raise HarnessError(f"invalid TOML: {what}", where=where, fix="fix the TOML syntax") from None
    except UnicodeDecodeError:
        raise HarnessError("not UTF-8 text", where=str(path), fix="save the file as UTF-8") from None


def _field_line(text: str, tables: list[str], key: str | None) -> int | None:
    """Best-effort line of `key` inside `[tables]` (or of the table header), for error messages."""
    lines = text.splitlines()
    start = 0
    if tables:
        header = re.compile(
            r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(t) for t in tables) + r"\s*\]\s*(#.*)?$"
        )
        found = next((i for i, line in enumerate(lines) if header.match(line)), None)
        if found is None:
            return None
        if key is None:
            return found + 1
        start = found + 1
    if key is None:
        return None
    pattern = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
    for i in range(start, len(lines)):
        if i > start and re.match(r"^\s*\[", lines[i]):
            break
        if pattern.match(lines[i]):
            return i + 1
    return None


def describe_loc(raw: dict[str, Any], loc: tuple[int | str, ...]) -> tuple[list[str], str | None]:
    """Split a pydantic error location into the TOML table path and the field inside it."""
    tables: list[str] = []
    node: Any = raw
    parts = list(loc)
    while parts and isinstance(parts[0], str) and len(parts) > 1:
        nxt = node.get(parts[0]) if isinstance(node, dict) else None
        if not isinstance(nxt, dict) or parts[0] == "params":
            break
        tables.append(str(parts.pop(0)))
        node = nxt
    if not parts:
        return tables, None
    field = str(parts[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])
    return tables, field


def manifest_from_dict(raw: dict[str, Any], path: Path, text: str = "") -> HarnessManifest:
    """Validate parsed TOML as a manifest; field errors become one HarnessError naming table and field."""
    try:
        return HarnessManifest.model_validate(raw)
    except ValidationError as exc:
        problems = []
        first_line: int | None = None
        for err in exc.errors():
            tables, field = describe_loc(raw, tuple(err["loc"]))
            msg = err["msg"]
            top_level_table = not tables and field is not None and "." not in field and "[" not in field
            if top_level_table and (err["type"] == "missing" or isinstance(raw.get(field or ""), dict)):
                # A whole table is missing or misspelt: name the table, not a field of nothing.
                tables, field = [field or ""], None
                if err["type"] == "extra_forbidden":
                    msg = "unknown table (harness.toml has [harness], [model], [runtime], [prompts])"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field (not part of harness.toml; check the spelling)"
            table = f"[{'.'.join(tables)}]" if tables else "(top level)"
            problems.append(f"{table}.{field}: {msg}" if field else f"{table}: {msg}")
            if first_line is None and text:
                key = field.split(".")[0].split("[")[0] if field else None
                first_line = _field_line(text, tables, key)
        where = f"{path}, line {first_line}" if first_line else str(path)
        raise HarnessError(
            "; ".join(problems),
            where=where,
            fix="correct the field (see harness_opt/harness/manifest.py for every field and its meaning)",
        ) from None


def load_manifest(path: Path) -> HarnessManifest:
    """Read and validate a harness.toml file."""
    if not path.is_file():
        raise HarnessError(
            f"missing {MANIFEST_FILE}",
            where=str(path.parent),
            fix=f"add a {MANIFEST_FILE} with at least [harness] name and version",
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    raw = parse_toml(path, text)
    return manifest_from_dict(raw, path, text)


def dumps_manifest(manifest: HarnessManifest) -> str:
    """The manifest as harness.toml text; `model.params` is written inline, None fields are left out."""
    data = manifest.model_dump(mode="python", exclude_none=True)
    if data["harness"].get("created") is not None:
        data["harness"]["created"] = data["harness"]["created"].replace(microsecond=0)
    return toml_writer.dumps(data, inline=("model.params",))
