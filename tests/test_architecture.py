"""Dependencies point one way: project <- customers <- events_app <- automation.

The import graph of the application code is read with `ast` (no module is
imported): top-level and function-level imports, relative imports resolved,
imports under `if TYPE_CHECKING:` included (a type-only import still couples two
modules). Migrations are left out: they are frozen history, not design.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("project", "customers", "events_app", "automation")  # lowest first
# The composition root wires every app together; it may import anything and nothing
# may import it.
COMPOSITION_ROOT = frozenset(
    {
        "project.urls",
        "project.wsgi",
        "project.admin.site",
        "project.admin.dashboard",
        "project.admin.trends",
        "project.admin.live",
    }
)


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name `module` imports, anywhere in its body: `from a import b`
    gives both `a` and `a.b` (b may be a module or a name in a)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = LAYERS) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (itself excluded)."""
    modules = _modules(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            # `import a.b.c` also imports the packages a and a.b.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError("a strongly connected component without a cycle")


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/models.py": "",
        "app/top.py": "import app.models\n",
        "app/inner.py": "def f():\n    from app.top import x\n",
        "app/typed.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.inner import f\n"
        ),
        "app/sub/__init__.py": "from .. import models\n",
        "app/sub/rel.py": "from ..typed import y\nfrom . import other\n",
        "app/sub/other.py": "",
        "app/migrations/0001_initial.py": "import app.top\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    graph = import_graph(tmp_path, ("app",))

    assert graph == {
        "app": set(),
        "app.models": set(),
        "app.top": {"app.models"},
        "app.inner": {"app.top"},
        "app.typed": {"app.inner"},
        "app.sub": {"app", "app.models"},
        "app.sub.rel": {"app.typed", "app.sub", "app.sub.other"},
        "app.sub.other": set(),
    }


def test_a_cycle_is_named_module_by_module() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_the_application_code_has_no_import_cycle() -> None:
    cycles = _cycles(import_graph())

    assert cycles == [], "Import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in sorted(import_graph().items())
        if module not in COMPOSITION_ROOT
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]

    assert upward == [], "Imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_nothing_outside_the_composition_root_imports_it() -> None:
    importers = [
        f"{module} -> {target}"
        for module, targets in sorted(import_graph().items())
        if module not in COMPOSITION_ROOT
        for target in sorted(targets & COMPOSITION_ROOT)
    ]

    assert importers == []


def test_events_app_never_imports_automation() -> None:
    # Stricter than the layer rule in one respect: not even the composition root's
    # exemption could let events_app reach automation; it calls the ingest hook that
    # automation registers (events_app.ingest_hooks).
    reaching = [
        f"{module} -> {target}"
        for module, targets in sorted(import_graph().items())
        if module.split(".")[0] == "events_app"
        for target in sorted(targets)
        if target.split(".")[0] == "automation"
    ]

    assert reaching == []
