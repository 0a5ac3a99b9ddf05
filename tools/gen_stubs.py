"""Writes the type stubs of graddesc's two modules whose contents static tools can't see.

    python tools/gen_stubs.py           # writes python/graddesc/_tensor.pyi, __init__.pyi and,
                                        # when pybind11-stubgen is installed, _core.pyi
    python tools/gen_stubs.py --check   # exit 1 if _tensor.pyi or __init__.pyi is stale

- `_tensor.pyi`: Tensor's methods are defined in the layers above `_tensor.py` and bound to the
  class by `graddesc._tensor_ops` (docs/architecture.md, "Layers"), so an IDE or a type checker
  reading `_tensor.py` alone would not see `t.sum()`. The stub is written from the class as it is
  after `import graddesc`: every method with the signature of the function bound to it. Regenerate
  it after adding a method (tests/test_typing.py fails while it is stale).
- `__init__.pyi`: the package's names, re-exported explicitly (the package builds `__all__` at
  import time, which type checkers don't evaluate; without the stub, `mypy --strict` and pyright
  would call `gd.tensor` not exported).
- `_core.pyi`: the compiled extension's functions, as pybind11-stubgen reads them from the module.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import types
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "python", "graddesc")

HEADER = '''# ruff: noqa
"""Type stub of graddesc._tensor, written by tools/gen_stubs.py (don't edit it: run
`python tools/gen_stubs.py`). It declares the methods that graddesc._tensor_ops binds to Tensor,
so that IDEs and type checkers see them."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional, Union

import numpy as np

from graddesc._dtype import dtype as _DType
'''

# names an annotation may use in the stub; an annotation naming anything else becomes Any
_KNOWN = {"Any", "Callable", "Optional", "Union", "Iterable", "Iterator", "Sequence", "Tensor",
          "Size", "_DType", "np", "int", "float", "bool", "str", "bytes", "tuple", "list", "dict",
          "set", "None", "object", "type", "slice"}

# the types of the slots (instance attributes) of Tensor
_SLOTS = {"_data": "np.ndarray", "requires_grad": "bool", "_grad": "Optional[Tensor]",
          "grad_fn": "Any", "_output_nr": "int", "_vc": "list[int]",
          "_base": "Optional[Tensor]", "_leaf_edge": "Optional[tuple]", "_vinfo": "Any",
          "_views": "Optional[list]"}


# builtin types that Tensor's methods shadow inside the class body (Tensor.bool, Tensor.float,
# ...): annotations there name them as builtins.X
_shadowed: set = set()


class _Unshadow(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _shadowed:
            return ast.Attribute(value=ast.Name(id="builtins", ctx=ast.Load()), attr=node.id,
                                 ctx=ast.Load())
        return node


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty or a is inspect.Signature.empty:
        return "Any"
    if isinstance(a, type):
        a = a.__name__ if a.__name__ in _KNOWN else "Any"
    elif not isinstance(a, str):
        a = inspect.formatannotation(a)
    try:
        tree = ast.parse(a, mode="eval")
    except SyntaxError:
        return "Any"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in _KNOWN:
            return "Any"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return "Any"  # a forward reference inside an annotation string
    return ast.unparse(_Unshadow().visit(tree))


def _params(fn: Any, method: bool) -> str:
    """The parameter list of fn as stub text; a method's first parameter is `self`."""
    sig = inspect.signature(fn)
    out = []
    star_done = False
    for i, p in enumerate(sig.parameters.values()):
        if method and i == 0 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            out.append("self")
            continue
        if p.kind is p.KEYWORD_ONLY and not star_done:
            out.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
            out.append(f"*{p.name}: {_annotation(p.annotation)}")
            if method and i == 0:
                out[-1] = "self, " + out[-1]
            continue
        if p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}: {_annotation(p.annotation)}")
            continue
        text = f"{p.name}: {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += " = ..."
        out.append(text)
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(sig.parameters) or list(
                sig.parameters.values())[i + 1].kind is not p.POSITIONAL_ONLY):
            out.append("/")
    if method and not out:
        out = ["self"]
    return ", ".join(out)


def _def(name: str, fn: Any, indent: str, method: bool) -> list:
    ret = _annotation(inspect.signature(fn).return_annotation)
    ignore = "  # type: ignore[override]" if name in ("__eq__", "__ne__") else ""
    return [f"{indent}def {name}({_params(fn, method)}) -> {ret}: ...{ignore}"]


def tensor_stub() -> str:
    import graddesc  # noqa: F401  (binds the methods)
    from graddesc import _tensor

    lines = [HEADER]
    for name, obj in vars(_tensor).items():
        if isinstance(obj, types.FunctionType) and obj.__module__ == _tensor.__name__:
            lines.append("")
            lines += _def(name, obj, "", False)
    lines += ["", "", "class Size(tuple[int, ...]):"]
    for name, obj in vars(_tensor.Size).items():
        if isinstance(obj, types.FunctionType):
            lines += _def(name, obj, "    ", True)
    lines += ["", "", "class Tensor:"]
    cls = _tensor.Tensor
    _shadowed.update(n for n in vars(cls) if hasattr(builtins, n) and not n.startswith("_"))
    for name in _tensor.Tensor.__slots__:
        if name != "__weakref__":
            lines.append(f"    {name}: {_SLOTS.get(name, 'Any')}")
    lines.append(f"    __array_priority__: {type(cls.__array_priority__).__name__}")
    for name in sorted(vars(cls)):
        obj = vars(cls)[name]
        # (__slotnames__: copyreg's cache, set on the class once a Tensor has been pickled)
        if name in ("__module__", "__doc__", "__slots__", "__array_priority__", "__weakref__",
                    "__slotnames__") or name in cls.__slots__:
            continue
        if isinstance(obj, property):
            ret = _annotation(inspect.signature(obj.fget).return_annotation)
            lines += ["    @property", f"    def {name}(self) -> {ret}: ..."]
            if obj.fset is not None:
                value = list(inspect.signature(obj.fset).parameters.values())[1]
                setter = f"def {name}(self, value: {_annotation(value.annotation)}) -> None: ..."
                lines += [f"    @{name}.setter", "    " + setter]
        elif isinstance(obj, staticmethod):
            lines += ["    @staticmethod"] + _def(name, obj.__func__, "    ", False)
        elif callable(obj):
            lines += _def(name, obj, "    ", True)
        else:
            raise TypeError(f"Tensor.{name}: don't know how to declare a {type(obj).__name__}")
    _shadowed.clear()
    return "\n".join(lines) + "\n"


INIT_HEADER = '''# ruff: noqa
"""Type stub of the package graddesc, written by tools/gen_stubs.py (don't edit it: run
`python tools/gen_stubs.py`). It re-exports the names of graddesc.__all__ explicitly: the
package computes __all__ at import time, which type checkers can't evaluate."""

from __future__ import annotations

from typing import Any
'''


def _home(name: str, obj: Any) -> str:
    """`from M import A as name` for obj, M the graddesc module that defines it."""
    mod = getattr(obj, "__module__", None)
    attr = getattr(obj, "__name__", None)
    if isinstance(obj, (types.FunctionType, type)) and mod and \
            getattr(sys.modules.get(mod), attr, None) is obj:
        return f"from {mod} import {attr} as {name}"
    mods = sorted(m for m in sys.modules if m.startswith("graddesc.") and sys.modules[m])
    for m in mods:  # an object (a dtype, the default generator): the module holding it
        if getattr(sys.modules[m], name, None) is obj:
            return f"from {m} import {name} as {name}"
    for m in mods:
        for a, v in vars(sys.modules[m]).items():
            if v is obj and not a.startswith("__"):
                return f"from {m} import {a} as {name}"
    raise LookupError(f"graddesc.{name}: no module defines it")


def init_stub() -> str:
    import graddesc

    lines = [INIT_HEADER]
    for name in sorted(graddesc.__all__ + ["__version__"]):
        obj = getattr(graddesc, name)
        if isinstance(obj, types.ModuleType):
            assert obj.__name__ == f"graddesc.{name}", name
            lines.append(f"from . import {name} as {name}")
        elif isinstance(obj, types.FunctionType) and obj.__module__ == "graddesc":
            lines += _def(name, obj, "", False)
        elif type(obj) is float:  # pi, e, inf, nan
            lines.append(f"{name}: float")
        else:
            lines.append(_home(name, obj))
    return "\n".join(lines) + "\n"


def write_core_stub() -> bool:
    """Writes _core.pyi with pybind11-stubgen; False when it is not installed."""
    exe = shutil.which("pybind11-stubgen") or os.path.join(os.path.dirname(sys.executable),
                                                          "pybind11-stubgen")
    if not os.path.exists(exe):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([exe, "graddesc._core", "-o", tmp], check=True, cwd=tmp)
        with open(os.path.join(tmp, "graddesc", "_core.pyi"), encoding="utf-8") as f:
            text = f.read()
    with open(os.path.join(PKG, "_core.pyi"), "w", encoding="utf-8") as f:
        f.write("# ruff: noqa\n# Written by tools/gen_stubs.py with pybind11-stubgen: don't "
                "edit it.\n" + text)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that _tensor.pyi is current")
    args = ap.parse_args()
    stubs = {os.path.join(PKG, "_tensor.pyi"): tensor_stub(),
             os.path.join(PKG, "__init__.pyi"): init_stub()}
    if args.check:
        stale = []
        for path, text in stubs.items():
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    stale.append(path)
        for path in stale:
            print(f"{path} is stale: run python tools/gen_stubs.py")
        return 1 if stale else 0
    for path, text in stubs.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print("wrote", path)
    if write_core_stub():
        print("wrote", os.path.join(PKG, "_core.pyi"))
    else:
        print("pybind11-stubgen is not installed: _core.pyi left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
