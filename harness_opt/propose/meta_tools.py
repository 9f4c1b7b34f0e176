"""The tools of the `llm` proposer's agent: look around the work dir, grep, read, write, check, finish.

They act on one work dir (`workspace.py`: the history of every candidate, this iteration's traces,
the current version under `harness/`), never outside it: a path is resolved and must stay inside
(there are no links in a work dir this process wrote). Reading is paged, and every answer is cut to
`max_chars`, so one observation can never fill the meta-model's context; the answer says how to get
the rest. Writing is allowed only to the editable files of `harness/`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_opt.propose.base import CheckResult
from harness_opt.propose.workspace import HARNESS_DIR, HISTORY_DIR, clean_path, is_editable

MAX_GREP_LINE = 240


@dataclass(frozen=True)
class ToolSpec:
    name: str
    args: dict[str, str]
    """Argument name -> what it is (all strings; optional ones say so)."""
    desc: str

    def describe(self) -> str:
        args = ", ".join(f"{k}: {v}" for k, v in self.args.items())
        return f"- {self.name}({args}): {self.desc}"


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "list_candidates",
        {},
        "history/INDEX.md: every candidate so far, ranked, with outcomes "
        "and the tasks each won and lost. Start here.",
    ),
    ToolSpec(
        "list_dir", {"path": "a directory, e.g. history/candidates/v0002"}, "the files and folders in it"
    ),
    ToolSpec(
        "read_file",
        {"path": "a file, e.g. harness/agent.py", "offset": "optional, a character offset to continue from"},
        "its text, a page at a time",
    ),
    ToolSpec(
        "grep",
        {"pattern": "a regular expression", "path": "optional, a folder or file (default history)"},
        "matching lines as path:line: text, e.g. to find failures in the "
        "raw train traces of earlier candidates (history/candidates/*/train/traces)",
    ),
    ToolSpec(
        "write_file",
        {"path": "an editable file, e.g. harness/prompts/system.j2", "content": "the complete new content"},
        "replace (or create) the file in the candidate",
    ),
    ToolSpec(
        "check",
        {"task_id": "optional, a train task id"},
        "validate the candidate as the loop "
        "will: it loads, then one train task runs through the real evaluator (score, raw trace)",
    ),
    ToolSpec(
        "finish",
        {
            "mechanism": "short name of the one mechanism you changed",
            "hypothesis": "why it should raise the score, 1-2 sentences",
        },
        "hand the candidate back; call it once you have written your change",
    ),
)


@dataclass
class Workbench:
    """The tools over one work dir, with what they did (for the proposal and the tests)."""

    root: Path
    editable: tuple[str, ...]
    max_chars: int
    checker: Callable[[Path, str | None], CheckResult] | None = None
    max_checks: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    finished: dict[str, str] | None = None

    def specs(self) -> list[ToolSpec]:
        return [t for t in TOOLS if t.name != "check" or (self.checker is not None and self.max_checks > 0)]

    def call(self, name: str, args: dict[str, Any]) -> str:
        """Run tool `name`; an error is an observation (the model reads it and tries again)."""
        handlers: dict[str, Callable[..., str]] = {
            "list_candidates": self.list_candidates,
            "list_dir": self.list_dir,
            "read_file": self.read_file,
            "grep": self.grep,
            "write_file": self.write_file,
            "check": self.check,
            "finish": self.finish,
        }
        handler = handlers.get(name)
        if handler is None or name not in {t.name for t in self.specs()}:
            return f"error: no tool {name!r}; use one of {', '.join(t.name for t in self.specs())}"
        try:
            out = handler(**{k: v for k, v in (args or {}).items() if isinstance(k, str)})
        except TypeError as exc:
            return f"error: wrong arguments for {name}: {exc}"
        return self._cut(out)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n[... {len(text) - self.max_chars} more characters cut]"

    def _resolve(self, path: str) -> Path | None:
        rel = clean_path(str(path or "."))
        if rel is None:
            return None
        target = (self.root / rel).resolve()
        root = self.root.resolve()
        return target if target == root or root in target.parents else None

    # ------------------------------------------------------------------------------ tools

    def list_candidates(self) -> str:
        return self.read_file(f"{HISTORY_DIR}/INDEX.md")

    def list_dir(self, path: str = ".") -> str:
        target = self._resolve(path)
        if target is None or not target.is_dir():
            return f"error: {path!r} is not a directory of the work dir"
        entries = sorted(target.iterdir())
        lines = [
            f"{p.name}/" if p.is_dir() else f"{p.name} ({p.stat().st_size} bytes)" for p in entries[:200]
        ]
        more = f"\n[{len(entries) - 200} more]" if len(entries) > 200 else ""
        return "\n".join(lines) + more if lines else "(empty)"

    def read_file(self, path: str, offset: int | str = 0) -> str:
        target = self._resolve(path)
        if target is None or not target.is_file():
            return f"error: {path!r} is not a file of the work dir (try list_dir)"
        text = target.read_text(encoding="utf-8", errors="replace")
        start = max(0, int(offset or 0))
        page = text[start : start + self.max_chars - 200]
        end = start + len(page)
        left = len(text) - end
        tail = f"\n[... {left} more characters: read_file({path!r}, offset={end})]" if left > 0 else ""
        return page + tail

    def grep(self, pattern: str, path: str = HISTORY_DIR) -> str:
        target = self._resolve(path)
        if target is None or not target.exists():
            return f"error: {path!r} is not in the work dir"
        try:
            regex = re.compile(str(pattern))
        except re.error:
            regex = re.compile(re.escape(str(pattern)))
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        hits: list[str] = []
        total = used = 0
        room = self.max_chars - 120  # the last line says how many more matched
        root = self.root.resolve()
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if not regex.search(line):
                    continue
                total += 1
                shown = line if len(line) <= MAX_GREP_LINE else line[:MAX_GREP_LINE] + "..."
                hit = f"{file.resolve().relative_to(root)}:{number}: {shown}"
                if used + len(hit) + 1 <= room:
                    hits.append(hit)
                    used += len(hit) + 1
        if not hits:
            return f"no match for {pattern!r} under {path}"
        extra = total - len(hits)
        more = f"\n[{extra} more matches: narrow the pattern or the path]" if extra else ""
        return "\n".join(hits) + more

    def write_file(self, path: str, content: str) -> str:
        rel = clean_path(str(path))
        if rel is not None and rel.startswith(f"{HARNESS_DIR}/"):
            rel = rel[len(HARNESS_DIR) + 1 :]
        if rel is None or not is_editable(rel, self.editable):
            return f"refused: {path!r} is not an editable file (editable: {', '.join(self.editable)})"
        if not isinstance(content, str):
            content = json.dumps(content, indent=2)
        target = self.root / HARNESS_DIR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        self.written.append(rel)
        return f"wrote {len(content)} characters to {HARNESS_DIR}/{rel}"

    def check(self, task_id: str = "") -> str:
        if self.checker is None:
            return "error: no check is available in this run"
        if len(self.checks) >= self.max_checks:
            return f"error: the check limit ({self.max_checks}) is used up; finish"
        result = self.checker(self.root / HARNESS_DIR, str(task_id) or None)
        self.checks.append(result)
        return ("OK\n" if result.ok else "FAIL\n") + result.report

    def finish(self, mechanism: str = "", hypothesis: str = "") -> str:
        self.finished = {"mechanism": str(mechanism), "hypothesis": str(hypothesis)}
        return "Completed."
