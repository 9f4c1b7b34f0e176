"""What a candidate's code reaches for beyond `ctx`: network, processes, env vars, files, ctx internals.

A static read (AST), so it sees intent, not effect: the sandbox is what contains the effect. A finding
here tells the search (and the person reading `diff`) that a candidate tried, even when the sandbox
made the attempt fail and the candidate merely scored 0.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass

NETWORK_MODULES = {"socket", "urllib", "http", "requests", "httpx", "aiohttp", "ftplib", "smtplib", "ssl"}
PROCESS_MODULES = {"subprocess", "multiprocessing", "pty", "concurrent.futures.process"}
PROCESS_CALLS = {
    "os.system",
    "os.popen",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.posix_spawnp",
    "os.kill",
    "os.killpg",
    "signal.signal",
}
PROCESS_PREFIXES = ("os.exec", "os.spawn")
ENV_ATTRS = {"os.environ", "os.environb", "os.getenv", "os.getenvb", "os.putenv"}
ESCAPE_MODULES = {"ctypes", "cffi", "importlib", "gc", "inspect"}
DYNAMIC_CALLS = {"eval", "exec", "compile", "__import__"}
CTX_METHODS = ("llm", "call_tool", "log", "render", "say")
_ALLOWED_ABSOLUTE = ("/harness", "/scratch")


@dataclass(frozen=True)
class CodeHit:
    kind: str
    line: int
    detail: str


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _root(name: str) -> str:
    return name.split(".")[0]


def ctx_calls(tree: ast.AST) -> Counter[str]:
    """How many `ctx.<method>(...)` call sites the code has, by method."""
    out: Counter[str] = Counter()
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "ctx"
            and func.attr in CTX_METHODS
        ):
            out[func.attr] += 1
    return out


def _path_like(value: str) -> bool:
    if value.startswith(_ALLOWED_ABSOLUTE) or "\n" in value or " " in value:
        return False
    return (value.startswith("/") and value.count("/") >= 2) or value.startswith("~/") or "../" in value


def check_code(tree: ast.AST) -> list[CodeHit]:
    """Every reach beyond the AgentContext boundary, one hit per (kind, line)."""
    hits: dict[tuple[str, int], CodeHit] = {}
    aliases: dict[str, str] = {}

    def add(kind: str, node: ast.AST, detail: str) -> None:
        line = getattr(node, "lineno", 0)
        hits.setdefault((kind, line), CodeHit(kind, line, detail))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            base = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                aliases[alias.asname or alias.name.split(".")[0]] = full if base else alias.name
                mod = base or alias.name
                if _root(mod) in NETWORK_MODULES:
                    add("network", node, f"imports {full}")
                elif _root(mod) in PROCESS_MODULES or mod in PROCESS_MODULES:
                    add("process", node, f"imports {full}")
                elif _root(mod) in ESCAPE_MODULES:
                    add("escape", node, f"imports {full}")
                elif full in ENV_ATTRS:
                    add("env", node, f"imports {full}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name):
            name = _dotted(node)
            if not name:
                continue
            head, _, rest = name.partition(".")
            full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
            if full in ENV_ATTRS or any(full.startswith(a + ".") for a in ENV_ATTRS):
                add("env", node, f"reads {full}")
            elif full in PROCESS_CALLS or full.startswith(PROCESS_PREFIXES):
                add("process", node, f"uses {full}")
            elif full in {"sys.modules", "builtins", "sys.settrace", "sys.setprofile"}:
                add("escape", node, f"uses {full}")
            if isinstance(node, ast.Attribute) and head == "ctx" and rest.split(".")[0].startswith("_"):
                add("ctx-internals", node, f"reaches into the broker channel via {name}")
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            if func in DYNAMIC_CALLS:
                add("escape", node, f"calls {func}() (code the scan cannot read)")
            if func in {"setattr", "delattr"} and node.args and _dotted(node.args[0]).startswith("ctx"):
                add("ctx-tamper", node, f"{func}() on ctx")
            if func in {"getattr", "vars"} and node.args and _dotted(node.args[0]) == "ctx":
                arg = node.args[1] if len(node.args) > 1 else None
                if func == "vars" or not (isinstance(arg, ast.Constant) and arg.value in CTX_METHODS):
                    add("ctx-internals", node, f"{func}() on ctx")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                if not isinstance(target, ast.Attribute | ast.Subscript):
                    continue
                shown = ast.unparse(target)
                if re.search(r"\bctx\b", shown):
                    add("ctx-tamper", node, f"replaces {shown[:60]}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _path_like(node.value):
            add("file", node, f"path outside the version dir: {node.value[:60]!r}")
    return sorted(hits.values(), key=lambda h: (h.line, h.kind))


def prints_score(tree: ast.AST) -> int | None:
    """Line of a print/write whose text mentions a score or PASS: grepping stdout must not be trusted."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) in {
            "print",
            "sys.stdout.write",
            "sys.stderr.write",
        }:
            for arg in ast.walk(node):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    low = arg.value.lower()
                    if "score" in low or "pass" in low or "accuracy" in low:
                        return node.lineno
    return None
