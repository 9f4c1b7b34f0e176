"""Static checks of a version's prompts and code, done without ever running agent.py.

agent.py is untrusted (a model wrote it), so the parent process only parses and compiles it: the
entrypoint is found in the AST, never by importing the module.
"""

from __future__ import annotations

import ast
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.environment import Environment
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from harness_opt.errors import HarnessError

BUILTIN_VARIABLES = frozenset({"task", "tools"})
"""Template variables every harness may use: the task input and the tool schemas."""


def template_environment() -> Environment:
    """The jinja2 environment prompts render in: sandboxed (templates are model-written) and strict."""
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def check_template(env: Environment, source: str, rel: str, declared: frozenset[str] | set[str]) -> None:
    """Raise HarnessError for a syntax error or a variable that is neither built in nor declared."""
    try:
        tree = env.parse(source, name=rel)
    except TemplateSyntaxError as exc:
        raise HarnessError(
            f"template syntax error: {exc.message}",
            where=f"{rel}, line {exc.lineno}",
            fix="fix the jinja2 syntax",
        ) from None
    allowed = BUILTIN_VARIABLES | set(declared) | set(env.globals)
    unknown = sorted(meta.find_undeclared_variables(tree) - allowed)
    if unknown:
        name = unknown[0]
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), None)
        where = f"{rel}, line {line}" if line else rel
        raise HarnessError(
            f"undefined template variable {name!r}"
            + (f" (also {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else ""),
            where=where,
            fix=f"use only `task`, `tools` or a declared variable; to pass {name!r} from agent.py "
            f'add it to harness.toml: [prompts] variables = ["{name}"]',
        )


def check_python(source: str, rel: str) -> ast.Module:
    """Compile (not run) a Python file; a syntax error names the file and line."""
    try:
        tree = ast.parse(source, filename=rel)
        compile(tree, rel, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise HarnessError(
            f"Python syntax error: {exc.msg}",
            where=f"{rel}, line {exc.lineno}",
            fix="fix the syntax (agent.py is compiled at load time, never imported)",
        ) from None
    return tree


def check_entrypoint(tree: ast.Module, rel: str, function: str) -> None:
    """Require a top-level `def <function>(task, ctx)`: callable with exactly two positional arguments."""
    found = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
    ]
    fix = f"define a top-level `def {function}(task, ctx):` that returns the agent's output"
    if not found:
        raise HarnessError(f"no top-level function {function!r}", where=rel, fix=fix)
    node = found[-1]  # the last definition wins at import time
    where = f"{rel}, line {node.lineno}"
    if isinstance(node, ast.AsyncFunctionDef):
        raise HarnessError(f"{function}() must not be async", where=where, fix=fix)
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required_kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if len(positional) != 2 or args.vararg is not None or required_kwonly:
        shown = ", ".join(a.arg for a in positional) or "no parameters"
        raise HarnessError(
            f"{function}() must take exactly two parameters (task, ctx); it takes ({shown})",
            where=where,
            fix=fix,
        )


def read_text(path: Path, rel: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HarnessError("not UTF-8 text", where=rel, fix="save the file as UTF-8") from None
