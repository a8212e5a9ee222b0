"""The product's source read as data (by `ast`, never imported): its modules, the imports between them,
the attribute chains a module writes. Used by the tests that hold the house's rules (floors, circles,
faces off the store, one error table, one role table), which feed the same functions synthetic
sources to show that each rule catches what it is meant to catch."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("gateway", "adapters", "consent", "audit")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the product module imported (a submodule when `from pkg import sub` names one)
    line: int


def product_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name → path, for every .py file of the product (a package by its `__init__`)."""
    found = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, source: str, known: Iterable[str], *, is_package: bool = False) -> list[Import]:
    """Every product module `source` (the text of module `name`) imports, wherever the statement is:
    at module level, under `if TYPE_CHECKING:`, or inside a function. Relative imports are resolved."""
    known = set(known)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _closest(alias.name, known)
                if target:
                    found.append(Import(name, target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                target = _closest(f"{base}.{alias.name}", known) or _closest(base, known)
                if target:
                    found.append(Import(name, target, node.lineno))
    return [i for i in found if i.target != name]


def _closest(dotted: str, known: set[str]) -> str | None:
    """The module `dotted` names, or the nearest package above it that is a product module."""
    while dotted and dotted not in known:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def import_graph(modules: dict[str, Path]) -> list[Import]:
    return [found for name, path in modules.items()
            for found in imports_of(name, path.read_text(), modules, is_package=path.name == "__init__.py")]


def circles(edges: Iterable[tuple[str, str]]) -> list[frozenset[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def attribute_chains(source: str) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Each outermost attribute chain of `source` as names, with its line: `portal(request).services
    .exchange.patients.get(pid)` gives ('portal', 'services', 'exchange', 'patients', 'get') — a call in
    the chain contributes the name it calls, so `services(request).exchange` reads as `services.exchange`."""
    tree = ast.parse(source)
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            value = node.value.func if isinstance(node.value, ast.Call) else node.value
            if isinstance(value, ast.Attribute):
                inner.add(id(value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            names = chain_of(node)
            if len(names) > 1:
                yield node.lineno, tuple(names)


def chain_of(node: ast.AST) -> list[str]:
    """The names of one attribute chain, outermost last (calls contribute the name they call)."""
    names: list[str] = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            names.append(node.id)
            return names[::-1]
        else:
            return names[::-1]


def contains(chain: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """`path` appears in `chain` as consecutive names."""
    return any(chain[i:i + len(path)] == path for i in range(len(chain) - len(path) + 1))


def string_collections(source: str) -> Iterator[tuple[int, frozenset[str]]]:
    """Every literal set, tuple or list of strings (also inside `frozenset(...)`), with its line."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(values) == len(node.elts) and values:
                yield node.lineno, frozenset(values)
