"""No import cycles in harness_opt/: not between modules, and not between its packages (the layers).

Every import counts, wherever it stands (top level, inside a function, under TYPE_CHECKING): a lazy
import still ties two modules together, it only hides it from the interpreter. The layers read
bottom-up in docs/architecture.md; a package may import only packages below it, so `domains/`
imports `search/`, never the reverse.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness_opt"


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The harness_opt modules `name` imports (the longest known prefix of each imported name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            found = resolve(target)
            if found is not None and found != name:
                yield found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(edges.get(node, ())):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    """harness_opt.search.loop -> harness_opt.search (a top-level module is its own layer)."""
    return ".".join(module.split(".")[:2])


def shortest_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One shortest way round a component: [a, b, ..., a] (breadth-first from each node)."""
    inside = set(component)
    best: list[str] = []
    for start in component:
        parent: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            children = sorted(edges.get(node, set()) & inside)
            if start in children:
                path = [node]
                while (up := parent[path[-1]]) is not None:
                    path.append(up)
                cycle = [*reversed(path), start]
                best = cycle if not best or len(cycle) < len(best) else best
                break
            for child in children:
                if child not in parent:
                    parent[child] = node
                    queue.append(child)
    return best


def explain(component: list[str], edges: dict[str, set[str]], group: dict[str, str] | None = None) -> str:
    """A shortest cycle of the component, hop by hop; for packages, with the module imports behind
    each hop (`group`: module -> its package)."""
    if group is None:
        return "  " + " -> ".join(shortest_cycle(component, edges))
    packages: dict[str, set[str]] = {}
    for m, targets in edges.items():
        packages.setdefault(group[m], set()).update(group[t] for t in targets if group[t] != group[m])
    path = shortest_cycle(component, packages)
    lines = []
    for a, b in itertools.pairwise(path):
        why = sorted(f"{m} -> {t}" for m in edges if group[m] == a for t in edges[m] if group[t] == b)
        lines.append(f"  {a} -> {b}: {'; '.join(why)}")
    return "\n".join(lines)


def test_no_module_imports_itself_through_others() -> None:
    edges = graph()
    found = cycles(edges)
    assert not found, "import cycles between modules:\n" + "\n".join(explain(c, edges) for c in found)


def test_no_package_imports_a_package_that_imports_it() -> None:
    edges = graph()
    of = {m: layer(m) for m in edges}
    packages: dict[str, set[str]] = {}
    for module, targets in edges.items():
        for target in targets:
            # the root package's __init__ re-exports the public API lazily: it is above every layer
            if of[module] != of[target] and of[target] != "harness_opt":
                packages.setdefault(of[module], set()).add(of[target])
    found = cycles(packages)
    detail = "\n\n".join(explain(c, edges, of) for c in found)
    assert not found, "import cycles between packages (module by module):\n" + detail


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert shortest_cycle(["a", "b", "c"], {"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}) == ["a", "c", "a"]
