"""The project's import graph, read from the AST (every import statement, function-level ones included).

Used by tests/test_layers.py; kept separate so the checks can be proven on a synthetic tree.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

GENERATED = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


@dataclass
class ImportGraph:
    """Modules of a tree and the project modules each one imports."""

    root: Path
    modules: dict[str, Path] = field(default_factory=dict)  # dotted name -> file
    edges: dict[str, set[str]] = field(default_factory=dict)  # importer -> imported project modules

    def resolve(self, name: str) -> str | None:
        """The longest project module that `name` (a dotted path, maybe to a symbol) falls in."""
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in self.modules:
                return candidate
        return None

    def cycles(self) -> list[list[str]]:
        """Strongly connected components of more than one module (or a module importing itself)."""
        index, low, stack, on_stack, out = {}, {}, [], set(), []
        counter = [0]

        def visit(node: str) -> None:
            index[node] = low[node] = counter[0]
            counter[0] += 1
            stack.append(node)
            on_stack.add(node)
            for nxt in sorted(self.edges.get(node, ())):
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in self.edges.get(node, ()):
                    out.append(sorted(component))

        for node in sorted(self.modules):
            if node not in index:
                visit(node)
        return out

    def back_imports(self, lower: str, upper: tuple[str, ...]) -> list[tuple[str, str]]:
        """(importer, imported) pairs where a module of package `lower` imports one of `upper`."""
        return sorted((a, b) for a, targets in self.edges.items() if a.split(".")[0] == lower
                      for b in targets if b.split(".")[0] in upper)

    def long_modules(self, limit: int) -> list[tuple[str, int]]:
        """Hand-written modules over `limit` lines (generated protobuf stubs excepted)."""
        out = []
        for name, path in sorted(self.modules.items()):
            if path.name.endswith(GENERATED):
                continue
            lines = len(path.read_text().splitlines())
            if lines > limit:
                out.append((name, lines))
        return out


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement brings in (for `from X import a`, both X.a and X)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
    return []


def build(root: Path, packages: tuple[str, ...]) -> ImportGraph:
    """The graph of every .py module under root/<package> for the given top-level packages."""
    graph = ImportGraph(root)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            graph.modules[_module_name(root, path)] = path
    for name, path in graph.modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = _imported(node, name, path.name == "__init__.py")
                if isinstance(node, ast.ImportFrom):
                    # `from pkg import sub` imports the submodule if there is one, else a symbol of pkg.
                    *symbols, prefix = names
                    found = {graph.resolve(s) for s in symbols}
                    found.discard(None)
                    resolved = found or {graph.resolve(prefix)}
                else:
                    resolved = {graph.resolve(n) for n in names}
                targets |= {t for t in resolved if t and t != name}
        graph.edges[name] = targets
    return graph
