"""The package's layers: each imports only the layers below it, and its modules import each other
without a cycle, counting imports made only for type checking — any module can be imported first,
and each reads knowing only the modules below it."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path
from typing import Optional

CORE = Path(__file__).parents[1] / "unlearnkit"


def _imported(node: ast.stmt, modules: set[str]) -> set[str]:
    """The package's modules an import statement loads (the package itself for a name defined in it)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
    else:
        return set()
    return {name for name in names if name in modules}


def _module_level_imports(body: list[ast.stmt], modules: set[str]) -> set[str]:
    """Imports run on import or read by a type checker (top level, `if TYPE_CHECKING:`, `try:`), not
    those deferred into functions."""
    found: set[str] = set()
    for node in body:
        found |= _imported(node, modules)
        if isinstance(node, (ast.If, ast.Try)):
            blocks = [node.body, node.orelse, getattr(node, "finalbody", [])]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                found |= _module_level_imports(block, modules)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports. A module's own packages are
    left out of what it imports: Python loads them first anyway."""
    paths = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        parents = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}
        graph[name] = _module_level_imports(ast.parse(path.read_text(), str(path)).body, set(paths)) - parents
    return graph


def import_cycle(package: Path) -> Optional[list[str]]:
    """A cycle among the package's modules (`a -> b -> a`), or None."""
    graph = import_graph(package)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return exc.args[1]
    return None


def test_the_core_imports_without_a_cycle():
    cycle = import_cycle(CORE)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_through_an_import_for_type_checking_is_found_and_a_deferred_import_is_not(tmp_path):
    package = tmp_path / "unlearnkit"
    package.mkdir()
    (package / "__init__.py").write_text("from unlearnkit.data import Data\n")
    (package / "data.py").write_text("from unlearnkit import training\nclass Data: ...\n")
    (package / "training.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from unlearnkit.data import Data\n")
    assert import_cycle(package) in (["unlearnkit.data", "unlearnkit.training", "unlearnkit.data"],
                                     ["unlearnkit.training", "unlearnkit.data", "unlearnkit.training"])
    (package / "training.py").write_text("def train():\n    from unlearnkit.data import Data\n")
    assert import_cycle(package) is None


#: The layers from the bottom up (CONTRIBUTING.md, "Where things live"): a module may import modules
#: of its own room and of lower layers only. `unlearnkit` itself is the public facade on top.
LAYERS = {
    "core": 0,
    "validators": 1, "data": 1, "models": 1,
    "builtins": 2, "engine": 2,
    "bench": 3,
    "tune": 4, "audit": 4, "deletion": 4,
    "cli": 5,
    "testing": 6, "__main__": 6, "unlearnkit": 6,
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def wrong_way_imports(package: Path) -> list[str]:
    """`importer -> imported` for every import of a module in the same or a higher layer's room."""
    wrong = []
    for module, imported in sorted(import_graph(package).items()):
        room = _room(module)
        wrong += [f"{module} -> {other}" for other in sorted(imported)
                  if _room(other) != room and LAYERS[_room(other)] >= LAYERS[room]]
    return wrong


def test_every_room_of_the_package_has_a_layer():
    rooms = {_room(module) for module in import_graph(CORE)}
    assert rooms <= set(LAYERS), f"rooms without a layer: {sorted(rooms - set(LAYERS))}"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = wrong_way_imports(CORE)
    assert not wrong, "imports against the layer order: " + "; ".join(wrong)


def test_the_core_imports_nothing_else_of_unlearnkit():
    graph = import_graph(CORE)
    outside = sorted(f"{m} -> {o}" for m, imported in graph.items() if _room(m) == "core" for o in imported if _room(o) != "core")
    assert not outside, "; ".join(outside)


def test_a_wrong_way_import_is_named_with_both_modules(tmp_path):
    package = tmp_path / "unlearnkit"
    (package / "core").mkdir(parents=True)
    (package / "engine").mkdir()
    for init in (package / "__init__.py", package / "core" / "__init__.py", package / "engine" / "__init__.py"):
        init.write_text("")
    (package / "engine" / "training.py").write_text("from unlearnkit.core.errors import Error\n")
    (package / "core" / "errors.py").write_text("class Error(Exception): ...\n")
    assert wrong_way_imports(package) == []
    (package / "core" / "errors.py").write_text("from unlearnkit.engine.training import train\nclass Error(Exception): ...\n")
    assert wrong_way_imports(package) == ["unlearnkit.core.errors -> unlearnkit.engine.training"]
