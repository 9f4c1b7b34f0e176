"""`harness-opt init`: scaffold a harness (harnesses/NAME/v0001/) and a data suite (tasks/NAME/).

The shortest path from "my agent" to "optimized overnight": bring the tool schemas you already give
your model (OpenAI format) and your system prompt; init writes a working tool-calling agent around
them and a suite skeleton whose comments say what to fill in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness_opt.errors import UserError
from harness_opt.harness.tools import load_tools
from harness_opt.scaffold import templates as t

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class InitResult:
    harness_dir: Path
    suite_dir: Path
    files: list[Path]


def _system_template(prompt: str) -> str:
    """The user's prompt as a jinja2 template; text that is not valid jinja is kept literally."""
    try:
        jinja2.Environment().parse(prompt)
        body = prompt
    except jinja2.TemplateSyntaxError:
        body = "{% raw %}" + prompt + "{% endraw %}"
    return t.SYSTEM_J2_HEADER + body.rstrip("\n") + "\n"


def _params(schema: dict[str, Any]) -> str:
    props = (schema.get("parameters") or {}).get("properties") or {}
    required = set((schema.get("parameters") or {}).get("required") or [])
    names = [p for p in props if p.isidentifier()]
    return ", ".join(
        [*(n for n in names if n in required), *(f"{n}=None" for n in names if n not in required)]
    )


def init_project(
    name: str,
    root: Path | str = ".",
    *,
    tools_file: Path | str | None = None,
    system_prompt: Path | str | None = None,
    model: str = "local/smollm2",
    force: bool = False,
) -> InitResult:
    """Write harnesses/NAME/v0001/ and tasks/NAME/ under `root`; refuse to overwrite unless `force`."""
    if not NAME.match(name):
        raise UserError(
            f"bad agent name {name!r}", where="NAME", fix="use letters, digits, _ . - (e.g. acme-support)"
        )
    base = Path(root)
    harness_dir = base / "harnesses" / name / "v0001"
    suite_dir = base / "tasks" / name
    for folder in (harness_dir, suite_dir):
        if folder.exists() and any(folder.iterdir()) and not force:
            raise UserError("already exists", where=str(folder), fix="pick another NAME or pass --force")
    tools: list[dict[str, Any]] = []
    if tools_file is not None:
        tools = load_tools(Path(tools_file))  # validated: a bad schema is an error naming the tool
    prompt = t.DEFAULT_SYSTEM
    if system_prompt is not None:
        path = Path(system_prompt)
        if not path.is_file():
            raise UserError("system prompt file not found", where=str(path), fix="pass a text/markdown file")
        prompt = path.read_text(encoding="utf-8")

    functions = [tool.get("function", tool) for tool in tools]
    files = {
        harness_dir / "harness.toml": t.HARNESS_TOML.format(name=name, model=model),
        harness_dir / "agent.py": t.AGENT_PY.format(name=name),
        harness_dir / "tools.json": json.dumps(tools, indent=2) + "\n",
        harness_dir / "prompts" / "system.j2": _system_template(prompt),
        harness_dir / "prompts" / "user.j2": t.USER_J2,
        suite_dir / "suite.toml": t.SUITE_TOML.format(
            name=name, tools="\n".join(t.TOOL_BINDING.format(tool=f["name"]) for f in functions)
        ),
        suite_dir / "tasks.jsonl": t.TASKS_JSONL,
    }
    if functions:
        files[suite_dir / "tools.py"] = t.TOOLS_PY_HEADER.format(name=name) + "".join(
            t.TOOL_FUNCTION.format(
                tool=f["name"],
                params=_params(f),
                name=name,
                description=str(f.get("description", "")).replace('"""', "'''"),
            )
            for f in functions
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return InitResult(harness_dir, suite_dir, sorted(files))
