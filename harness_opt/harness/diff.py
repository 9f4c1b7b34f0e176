"""What changed between two harness versions: file diffs, a semantic tools.json diff, and the lineage path.

Pure functions over loaded versions (no ledger, no model): `harness-opt diff`, the HTML report and a
proposer's evidence can all show the same answer. tools.json is compared as tool schemas, not as JSON
text, because a reordered or re-indented file is no change to the model, while a renamed parameter or
a new `required` entry is the change that explains a flip.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness_opt.harness.manifest import MANIFEST_FILE
from harness_opt.harness.version import TOOLS_FILE, HarnessVersion

# ------------------------------------------------------------------------------------------ records

WordOp = tuple[Literal["equal", "delete", "insert"], str]


class FileDiff(BaseModel):
    path: str
    status: Literal["added", "removed", "modified"]
    diff: str = Field(description="Unified diff text ('' for a binary or summarised data file).")
    binary: bool = False
    summary: str = Field(default="", description="Set instead of a diff for data files: sizes, lines.")


class ToolChange(BaseModel):
    """One semantic change of tools.json; `kind` names it so a reader (or a test) can filter."""

    kind: Literal[
        "tool_added",
        "tool_removed",
        "tool_renamed",
        "description_changed",
        "param_added",
        "param_removed",
        "param_retyped",
        "param_required",
        "param_optional",
        "param_description_changed",
        "param_enum_changed",
    ]
    tool: str = Field(description="Tool name in B (in A for a removed tool).")
    param: str | None = Field(default=None, description="Dotted path of the parameter, e.g. 'order.items[]'.")
    before: Any = None
    after: Any = None
    words: list[WordOp] = Field(default_factory=list, description="Word diff of a changed description.")

    def summary(self) -> str:
        """One plain line, e.g. "get_order: parameter 'id' retyped string -> integer"."""
        where = f"{self.tool}: parameter {self.param!r}" if self.param else self.tool
        match self.kind:
            case "tool_added":
                return f"{self.tool}: tool added"
            case "tool_removed":
                return f"{self.tool}: tool removed"
            case "tool_renamed":
                return f"{self.before} -> {self.after}: tool renamed"
            case "param_added":
                return f"{where} added ({self.after})"
            case "param_removed":
                return f"{where} removed (was {self.before})"
            case "param_retyped":
                return f"{where} retyped {self.before} -> {self.after}"
            case "param_required":
                return f"{where} is now required"
            case "param_optional":
                return f"{where} is now optional"
            case "param_enum_changed":
                return f"{where} enum {self.before} -> {self.after}"
            case _:
                return f"{where} description changed: {render_words_plain(self.words)}"


class SettingChange(BaseModel):
    """A behaviour setting of harness.toml ([model], [runtime], [prompts]) that differs."""

    key: str
    before: Any = None
    after: Any = None


class LineageStep(BaseModel):
    """One version on the path from A to B, with the reasons its author gave."""

    label: str
    hash: str
    proposer: str = ""
    hypothesis: str = ""
    changes: list[str] = Field(default_factory=list)
    direction: Literal["from_a", "to_b"] = Field(
        default="to_b",
        description="to_b: a step from the common ancestor towards B; from_a: a step of A's own branch "
        "that B does not have (walking back from A to the common ancestor).",
    )


class VersionDiff(BaseModel):
    a_label: str
    a_hash: str
    b_label: str
    b_hash: str
    files: list[FileDiff] = Field(default_factory=list)
    tools: list[ToolChange] = Field(default_factory=list)
    settings: list[SettingChange] = Field(default_factory=list)
    lineage: list[LineageStep] = Field(default_factory=list)
    common_ancestor: str | None = Field(default=None, description="Label of the nearest common ancestor.")

    @property
    def identical(self) -> bool:
        return self.a_hash == self.b_hash


# ----------------------------------------------------------------------------------- word diffs

_WORD = re.compile(r"\s+|[^\s]+")


def word_diff(before: str, after: str) -> list[WordOp]:
    """Word-level diff of two texts: runs of ('equal'|'delete'|'insert', text), whitespace kept."""
    a, b = _WORD.findall(before or ""), _WORD.findall(after or "")
    ops: list[WordOp] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(("equal", "".join(a[i1:i2])))
            continue
        if tag in ("delete", "replace"):
            ops.append(("delete", "".join(a[i1:i2])))
        if tag in ("insert", "replace"):
            ops.append(("insert", "".join(b[j1:j2])))
    return ops


def render_words_plain(ops: Sequence[WordOp]) -> str:
    """A word diff as text: [-deleted-]{+inserted+} (the convention of `git diff --word-diff`)."""
    out = []
    for op, text in ops:
        out.append(text if op == "equal" else f"[-{text}-]" if op == "delete" else f"{{+{text}+}}")
    return "".join(out)


# ----------------------------------------------------------------------------------- file diffs


DATA_DIFF_LIMIT = 20_000
"""Bytes above which a non-code file (or anything under data/) is summarised rather than diffed."""


def _is_data(path: str, old: bytes | None, new: bytes | None) -> bool:
    code = path.endswith((".py", ".j2", ".md", ".txt", ".toml"))
    big = max(len(old or b""), len(new or b"")) > DATA_DIFF_LIMIT
    return path.startswith("data/") or (big and not code)


def _size(blob: bytes | None) -> str:
    n = len(blob or b"")
    lines = (blob or b"").count(b"\n") + (1 if blob and not blob.endswith(b"\n") else 0)
    return f"{n / 1e6:.2f} MB, {lines} lines" if n >= 1e5 else f"{n:,} bytes, {lines} lines"


def diff_files(
    files_a: dict[str, bytes], files_b: dict[str, bytes], a_name: str = "a", b_name: str = "b"
) -> list[FileDiff]:
    """Unified diffs of every file that differs, except tools.json and harness.toml (diffed semantically)."""
    out: list[FileDiff] = []
    for path in sorted(set(files_a) | set(files_b)):
        if path in (TOOLS_FILE, MANIFEST_FILE):
            continue
        old, new = files_a.get(path), files_b.get(path)
        if old == new:
            continue
        status: Literal["added", "removed", "modified"] = (
            "added" if old is None else "removed" if new is None else "modified"
        )
        try:
            old_text = (old or b"").decode("utf-8")
            new_text = (new or b"").decode("utf-8")
        except UnicodeDecodeError:
            out.append(FileDiff(path=path, status=status, diff="", binary=True))
            continue
        if _is_data(path, old, new):
            # A retrieval index or demo set is data, not logic: a megabyte of JSON diff hides the
            # change a reader is looking for. Say what changed in size instead.
            summary = (
                f"data file: {_size(old)} -> {_size(new)}"
                if old and new
                else f"data file, {_size(old or new)}"
            )
            out.append(FileDiff(path=path, status=status, diff="", summary=summary))
            continue
        lines = difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"{a_name}/{path}" if old is not None else "/dev/null",
            tofile=f"{b_name}/{path}" if new is not None else "/dev/null",
            n=3,
        )
        text = "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )
        out.append(FileDiff(path=path, status=status, diff=text))
    return out


# ----------------------------------------------------------------------------------- tools.json


def _type_name(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        name = "|".join(str(k) for k in kind)
    else:
        name = str(kind) if kind is not None else "any"
    if name == "array" and isinstance(schema.get("items"), dict):
        name += f"<{_type_name(schema['items'])}>"
    return name


def _flatten(schema: dict[str, Any], prefix: str = "") -> dict[str, tuple[dict[str, Any], bool]]:
    """Every parameter by dotted path -> (its schema, whether its parent object requires it)."""
    out: dict[str, tuple[dict[str, Any], bool]] = {}
    required = set(schema.get("required") or [])
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        path = f"{prefix}{name}"
        out[path] = (sub, name in required)
        if isinstance(sub.get("properties"), dict):
            out.update(_flatten(sub, f"{path}."))
        items = sub.get("items")
        if isinstance(items, dict) and isinstance(items.get("properties"), dict):
            out.update(_flatten(items, f"{path}[]."))
    return out


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    return fn if isinstance(fn, dict) else {}


def _canonical_params(tool: dict[str, Any]) -> str:
    return json.dumps(_function(tool).get("parameters") or {}, sort_keys=True)


def _rename_pairs(
    removed: dict[str, dict[str, Any]], added: dict[str, dict[str, Any]]
) -> list[tuple[str, str]]:
    """Pair removed with added tools that are the same tool under a new name.

    Same parameter schema, or a description at least 60% alike (difflib ratio) with the same parameter
    names: either way a reader would call it a rename, and its remaining edits are shown as such.
    """
    pairs: list[tuple[str, str]] = []
    free = dict(added)
    for old_name, old in removed.items():
        best: tuple[float, str] | None = None
        for new_name, new in free.items():
            if _canonical_params(old) == _canonical_params(new):
                score = 2.0
            else:
                same_names = set(_flatten(_function(old).get("parameters") or {})) == set(
                    _flatten(_function(new).get("parameters") or {})
                )
                ratio = difflib.SequenceMatcher(
                    None, _function(old).get("description", ""), _function(new).get("description", "")
                ).ratio()
                score = ratio if same_names and ratio >= 0.6 else 0.0
            if score > 0 and (best is None or score > best[0]):
                best = (score, new_name)
        if best is not None:
            pairs.append((old_name, best[1]))
            del free[best[1]]
    return pairs


def _compare_tool(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[ToolChange]:
    changes: list[ToolChange] = []
    old_fn, new_fn = _function(old), _function(new)
    if old_fn.get("description", "") != new_fn.get("description", ""):
        changes.append(
            ToolChange(
                kind="description_changed",
                tool=name,
                before=old_fn.get("description", ""),
                after=new_fn.get("description", ""),
                words=word_diff(old_fn.get("description", ""), new_fn.get("description", "")),
            )
        )
    params_a = _flatten(old_fn.get("parameters") or {})
    params_b = _flatten(new_fn.get("parameters") or {})
    for path in params_a.keys() - params_b.keys():
        changes.append(
            ToolChange(kind="param_removed", tool=name, param=path, before=_type_name(params_a[path][0]))
        )
    for path in params_b.keys() - params_a.keys():
        changes.append(
            ToolChange(kind="param_added", tool=name, param=path, after=_type_name(params_b[path][0]))
        )
    for path in sorted(params_a.keys() & params_b.keys()):
        (sa, req_a), (sb, req_b) = params_a[path], params_b[path]
        if _type_name(sa) != _type_name(sb):
            changes.append(
                ToolChange(
                    kind="param_retyped", tool=name, param=path, before=_type_name(sa), after=_type_name(sb)
                )
            )
        if req_a != req_b:
            changes.append(
                ToolChange(kind="param_required" if req_b else "param_optional", tool=name, param=path)
            )
        if sa.get("enum") != sb.get("enum"):
            changes.append(
                ToolChange(
                    kind="param_enum_changed",
                    tool=name,
                    param=path,
                    before=sa.get("enum"),
                    after=sb.get("enum"),
                )
            )
        da, db = str(sa.get("description", "")), str(sb.get("description", ""))
        if da != db:
            changes.append(
                ToolChange(
                    kind="param_description_changed",
                    tool=name,
                    param=path,
                    before=da,
                    after=db,
                    words=word_diff(da, db),
                )
            )
    order = {"param_removed": 0, "param_added": 1}
    return sorted(
        changes,
        key=lambda c: ((c.kind == "description_changed" and -1) or 0, c.param or "", order.get(c.kind, 2)),
    )


def diff_tools(tools_a: Sequence[dict[str, Any]], tools_b: Sequence[dict[str, Any]]) -> list[ToolChange]:
    """Semantic diff of two tools.json lists (OpenAI function format); tool order does not matter."""
    by_a = {_function(t).get("name", f"#{i}"): t for i, t in enumerate(tools_a)}
    by_b = {_function(t).get("name", f"#{i}"): t for i, t in enumerate(tools_b)}
    removed = {n: t for n, t in by_a.items() if n not in by_b}
    added = {n: t for n, t in by_b.items() if n not in by_a}
    renames = _rename_pairs(removed, added)
    changes: list[ToolChange] = []
    for old_name, new_name in renames:
        changes.append(ToolChange(kind="tool_renamed", tool=new_name, before=old_name, after=new_name))
        changes.extend(_compare_tool(new_name, by_a[old_name], by_b[new_name]))
        removed.pop(old_name)
        added.pop(new_name)
    for name in sorted(removed):
        changes.append(ToolChange(kind="tool_removed", tool=name))
    for name in sorted(added):
        changes.append(ToolChange(kind="tool_added", tool=name))
    for name in sorted(by_a.keys() & by_b.keys()):
        changes.extend(_compare_tool(name, by_a[name], by_b[name]))
    return changes


# ------------------------------------------------------------------------------- settings, lineage


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_leaves(sub, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def diff_settings(a: HarnessVersion, b: HarnessVersion) -> list[SettingChange]:
    """Behaviour settings of harness.toml that differ, e.g. model.params.temperature 0.0 -> 0.7."""
    la, lb = _leaves(a.manifest.behaviour_dict()), _leaves(b.manifest.behaviour_dict())
    return [
        SettingChange(key=key, before=la.get(key), after=lb.get(key))
        for key in sorted(la.keys() | lb.keys())
        if la.get(key) != lb.get(key)
    ]


def lineage_path(
    chain_a: Sequence[LineageStep], chain_b: Sequence[LineageStep]
) -> tuple[list[LineageStep], str | None]:
    """The steps between A and B given each one's ancestry (root first, ending with itself).

    A an ancestor of B (the usual case): the steps after A down to B. Otherwise the path goes back from
    A to the nearest common ancestor (steps marked from_a, A first) and then down to B. Returns the
    steps and the common ancestor's label (None when the two share no ancestor).
    """
    hashes_a = [s.hash for s in chain_a]
    common = None
    for i, step in enumerate(chain_b):
        if step.hash in hashes_a:
            common = i
    if common is None:
        back = [s.model_copy(update={"direction": "from_a"}) for s in reversed(chain_a)]
        return back + [s.model_copy(update={"direction": "to_b"}) for s in chain_b], None
    ancestor = chain_b[common]
    at = hashes_a.index(ancestor.hash)
    back = [s.model_copy(update={"direction": "from_a"}) for s in reversed(chain_a[at + 1 :])]
    forward = [s.model_copy(update={"direction": "to_b"}) for s in chain_b[common + 1 :]]
    return back + forward, ancestor.label


def _step(version: HarnessVersion) -> LineageStep:
    info = version.manifest.harness
    return LineageStep(
        label=version.label,
        hash=version.hash,
        proposer=info.proposer,
        hypothesis=info.hypothesis,
        changes=list(info.changes),
    )


def _chain(version: HarnessVersion) -> list[LineageStep]:
    """Ancestry as steps; a broken chain (a parent dir missing or edited) ends at the version itself."""
    from harness_opt.errors import HarnessError
    from harness_opt.harness.lineage import lineage

    try:
        return [_step(v) for v in lineage(version)]
    except HarnessError:
        return [_step(version)]


def diff_versions(a: HarnessVersion, b: HarnessVersion) -> VersionDiff:
    """Everything that differs between A and B, read from their directories (and their ancestors')."""
    steps, ancestor = lineage_path(_chain(a), _chain(b))
    return VersionDiff(
        a_label=a.label,
        a_hash=a.hash,
        b_label=b.label,
        b_hash=b.hash,
        files=diff_files(a.files(), b.files(), a.label, b.label),
        tools=diff_tools(a.tools, b.tools),
        settings=diff_settings(a, b),
        lineage=steps,
        common_ancestor=ancestor,
    )
