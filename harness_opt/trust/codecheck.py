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
SANDBOX_MODULES = {"confine", "zygote", "harness_opt"}
"""The sandbox's own code: agent.py is imported in the fork server, where `confine` and `zygote` are
already loaded, and patching them there turns off every rollout's confinement."""
TERMINAL = re.compile("[\x1b\x9b\x9d\u202a-\u202e\u2066-\u2069]")
"""ESC, the 8-bit CSI/OSC and bidi overrides: text that drives a terminal or reorders what it shows."""
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


class _Hits:
    """Hits of one module, one per (kind, line), and the import aliases read so far."""

    def __init__(self) -> None:
        self.hits: dict[tuple[str, int], CodeHit] = {}
        self.aliases: dict[str, str] = {}

    def add(self, kind: str, node: ast.AST, detail: str) -> None:
        line = getattr(node, "lineno", 0)
        self.hits.setdefault((kind, line), CodeHit(kind, line, detail))


def _imports(node: ast.Import | ast.ImportFrom, out: _Hits) -> None:
    base = node.module or "" if isinstance(node, ast.ImportFrom) else ""
    for alias in node.names:
        full = f"{base}.{alias.name}" if base else alias.name
        out.aliases[alias.asname or alias.name.split(".")[0]] = full if base else alias.name
        mod = base or alias.name
        if _root(mod) in SANDBOX_MODULES:
            out.add("sandbox-tamper", node, f"imports {full}, the sandbox's own code")
        elif _root(mod) in NETWORK_MODULES:
            out.add("network", node, f"imports {full}")
        elif _root(mod) in PROCESS_MODULES or mod in PROCESS_MODULES:
            out.add("process", node, f"imports {full}")
        elif _root(mod) in ESCAPE_MODULES:
            out.add("escape", node, f"imports {full}")
        elif full in ENV_ATTRS:
            out.add("env", node, f"imports {full}")


def _name(node: ast.Attribute | ast.Name, out: _Hits) -> None:
    name = _dotted(node)
    if not name:
        return
    head, _, rest = name.partition(".")
    full = f"{out.aliases.get(head, head)}.{rest}" if rest else out.aliases.get(head, head)
    if full in ENV_ATTRS or any(full.startswith(a + ".") for a in ENV_ATTRS):
        out.add("env", node, f"reads {full}")
    elif full in PROCESS_CALLS or full.startswith(PROCESS_PREFIXES):
        out.add("process", node, f"uses {full}")
    elif full in {"sys.modules", "builtins", "sys.settrace", "sys.setprofile"}:
        out.add("escape", node, f"uses {full}")
    if isinstance(node, ast.Attribute) and head == "ctx" and rest.split(".")[0].startswith("_"):
        out.add("ctx-internals", node, f"reaches into the broker channel via {name}")


def _call(node: ast.Call, out: _Hits) -> None:
    func = _dotted(node.func)
    if func in DYNAMIC_CALLS:
        out.add("escape", node, f"calls {func}() (code the scan cannot read)")
    first = _dotted(node.args[0]) if node.args else ""
    if func in {"setattr", "delattr"} and first.startswith("ctx"):
        out.add("ctx-tamper", node, f"{func}() on ctx")
    if func in {"getattr", "vars"} and first == "ctx":
        arg = node.args[1] if len(node.args) > 1 else None
        if func == "vars" or not (isinstance(arg, ast.Constant) and arg.value in CTX_METHODS):
            out.add("ctx-internals", node, f"{func}() on ctx")


def _assign(node: ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete, out: _Hits) -> None:
    targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
    for target in targets:
        if isinstance(target, ast.Attribute | ast.Subscript):
            shown = ast.unparse(target)
            if re.search(r"\bctx\b", shown):
                out.add("ctx-tamper", node, f"replaces {shown[:60]}")


def check_code(tree: ast.AST) -> list[CodeHit]:
    """Every reach beyond the AgentContext boundary, one hit per (kind, line)."""
    out = _Hits()
    for node in ast.walk(tree):  # imports first: they define the aliases the names resolve through
        if isinstance(node, ast.Import | ast.ImportFrom):
            _imports(node, out)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name):
            _name(node, out)
        elif isinstance(node, ast.Call):
            _call(node, out)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            _assign(node, out)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _path_like(node.value):
            out.add("file", node, f"path outside the version dir: {node.value[:60]!r}")
        elif isinstance(node, ast.Constant) and node.value in SANDBOX_MODULES:  # sys.modules["confine"]
            out.add("sandbox-tamper", node, f"names the sandbox's own module {node.value!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TERMINAL.search(node.value):
            out.add("terminal", node, "a terminal control sequence, aimed at whoever reads the traces")
    return sorted(out.hits.values(), key=lambda h: (h.line, h.kind))


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
