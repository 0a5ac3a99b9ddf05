"""The package's modules import downward only (docs/architecture.md, "Layers").

Read from the source with `ast` (nothing is imported), so the rule holds for every file, whether
or not a test imports it. `python tests/test_layering.py` prints the import graph's summary.

The rule, for every import of a graddesc module, at module level or inside a function:
- it goes to a module of the same layer or a lower one (LAYERS, lowest first);
- importing `graddesc.a.b` also runs the package `graddesc.a`'s `__init__`, so that counts as an
  import of `graddesc.a` too;
- all these imports together form no cycle: no module needs one that needs it back, and no
  import is moved into a function to dodge a cycle;
- no module assigns to another graddesc module's attribute at import time (no injection of a
  class into a module below, as `_function._Tensor = Tensor` once did).
"""

from __future__ import annotations

import ast
import fnmatch
import os
import sys
from collections import defaultdict
from typing import Optional

PY_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")

# lowest first; a module takes the first layer one of whose patterns matches it (fnmatch)
LAYERS = [
    ("base", ["graddesc._core", "graddesc._runtime", "graddesc._dtype", "graddesc._device",
              "graddesc._aligned", "graddesc._compile_state"]),
    ("tensor", ["graddesc._tensor", "graddesc._random", "graddesc._creation"]),
    ("ops", ["graddesc.autograd.functional", "graddesc.functional", "graddesc.functional.*"]),
    ("tape", ["graddesc.autograd", "graddesc.autograd.*"]),
    ("methods", ["graddesc._tensor_ops"]),
    ("app", ["graddesc", "graddesc.__main__", "graddesc.cli", "graddesc.demos",
             "graddesc._bench"]),
    ("library", ["graddesc.*"]),
]
ORDER = ["base", "tensor", "tape", "ops", "methods", "library", "app"]


def layer_of(mod: str) -> str:
    for name, patterns in LAYERS:
        if any(fnmatch.fnmatchcase(mod, p) for p in patterns):
            return name
    raise AssertionError(f"{mod}: no layer")


def modules() -> dict:
    """{dotted module name: path} of every .py file of the package (a package: its __init__)."""
    out = {}
    for d, _, files in os.walk(os.path.join(PY_ROOT, "graddesc")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, PY_ROOT)[:-3].replace(os.sep, ".")
                if name.endswith(".__init__"):
                    name = name[: -len(".__init__")]
                out[name] = path
    return out


def _targets(mod: str, node: ast.AST, mods: dict, packages: set) -> list:
    """The graddesc modules an import statement imports (with the packages it runs)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:
            parts = mod.split(".") if mod in packages else mod.split(".")[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = []
        for a in node.names:  # `from pkg import sub` imports the submodule pkg.sub
            full = f"{base}.{a.name}"
            names.append(full if full in mods or full == "graddesc._core" else base)
    out = []
    for n in names:
        if n != "graddesc" and not n.startswith("graddesc."):
            continue
        parts = n.split(".")
        for i in range(2, len(parts)):  # the packages whose __init__ runs first
            pkg = ".".join(parts[:i])
            if pkg in packages and not mod.startswith(pkg + ".") and pkg != mod:
                out.append(pkg)
        if n != mod:
            out.append(n)
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(mod: str, tree: ast.Module, mods: dict, packages: set, edges: dict,
          lazy: list) -> set:
    """Adds mod's imports to edges and lazy; returns the names its module-level imports bind."""
    bound: set = set()
    todo = [(tree, False)]
    while todo:
        node, in_function = todo.pop()
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue  # not run: annotations only
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for t in _targets(mod, child, mods, packages):
                    edges[mod].add((t, in_function))
                    if in_function:
                        lazy.append((mod, child.lineno, t))
                if not in_function:
                    bound.update(a.asname or a.name.split(".")[0] for a in child.names)
            todo.append((child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))))
    return bound


def import_graph() -> tuple:
    """(edges {mod: {(target, lazy)}}, lazy imports [(mod, line, target)], injections)."""
    mods = modules()
    packages = {m for m, p in mods.items() if p.endswith("__init__.py")}
    edges: dict = defaultdict(set)
    lazy: list = []
    injections: list = []
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        imported_modules = _walk(mod, tree, mods, packages, edges, lazy)
        for stmt in tree.body:  # module level: `othermodule.name = value`
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and \
                            t.value.id in imported_modules and \
                            _names_module(mod, t.value.id, tree, mods, packages):
                        injections.append(f"{mod}:{stmt.lineno}: {ast.unparse(t)} = ...")
    return mods, edges, lazy, injections


def _names_module(mod: str, name: str, tree: ast.Module, mods: dict, packages: set) -> bool:
    """Whether `name`, bound by an import at module level, is a graddesc module."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if (a.asname or a.name.split(".")[0]) != name:
                    continue
                if isinstance(node, ast.Import):
                    return a.name.startswith("graddesc")
                return any(t in mods for t in _targets(mod, node, mods, packages)
                           if t.endswith("." + a.name))
    return False


def find_cycle(mods: dict, edges: dict) -> Optional[list]:
    """A cycle of the import graph (every import, lazy ones too), or None."""
    graph = {m: sorted({t for t, _ in edges.get(m, ()) if t in mods and t != m}) for m in mods}
    state: dict = {}
    stack: list = []

    def visit(m: str) -> Optional[list]:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                c = visit(t)
                if c:
                    return c
        stack.pop()
        state[m] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for m in sorted(graph):
        if m not in state:
            c = visit(m)
            if c:
                return c
    return None


def test_every_module_has_a_layer():
    for m in modules():
        assert layer_of(m) in ORDER


def test_imports_go_downward():
    mods, edges, _, _ = import_graph()
    bad = []
    for m, targets in edges.items():
        for t, is_lazy in targets:
            if t not in mods and t != "graddesc._core":
                continue
            if ORDER.index(layer_of(t)) > ORDER.index(layer_of(m)):
                bad.append(f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
                           + (" inside a function" if is_lazy else ""))
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    mods, edges, _, _ = import_graph()
    cycle = find_cycle(mods, edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_injection_into_other_modules():
    _, _, _, injections = import_graph()
    assert not injections, "module-level assignments to another module:\n" + "\n".join(
        injections)


def test_the_rule_catches_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above fail on a package that breaks the rule (so they can fail at all)."""
    pkg = tmp_path / "graddesc"
    (pkg / "functional").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_tensor.py").write_text("from graddesc.functional import shape\n"
                                    "shape.Tensor = 1\n")
    (pkg / "functional" / "__init__.py").write_text("")
    (pkg / "functional" / "shape.py").write_text(
        "def f():\n    from graddesc._tensor import Tensor\n    return Tensor\n")
    monkeypatch.setattr(sys.modules[__name__], "PY_ROOT", str(tmp_path))
    mods, edges, lazy, injections = import_graph()
    assert find_cycle(mods, edges) is not None
    assert lazy == [("graddesc.functional.shape", 2, "graddesc._tensor")]
    assert injections == ["graddesc._tensor:2: shape.Tensor = ..."]
    assert ORDER.index(layer_of("graddesc.functional.shape")) > \
        ORDER.index(layer_of("graddesc._tensor"))


if __name__ == "__main__":
    mods, edges, lazy, injections = import_graph()
    n = sum(len(t) for t in edges.values())
    print(f"{len(mods)} modules, {n} imports of graddesc modules, {len(lazy)} of them inside "
          "functions:")
    per: dict = defaultdict(int)
    for m, _, _ in lazy:
        per[m] += 1
    for m, k in sorted(per.items(), key=lambda x: -x[1]):
        print(f"  {k:3d} {m}")
    print("cycle:", find_cycle(mods, edges))
    print("injections:", injections)
    for name in ORDER:
        print(f"{name}: " + " ".join(sorted(m for m in mods if layer_of(m) == name)))
