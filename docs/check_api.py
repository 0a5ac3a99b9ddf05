"""Checks the docstrings of graddesc's public API and runs their examples (run by .ci/docs).

    python docs/check_api.py            # fails if a public callable has no docstring, has no
                                        # example, or an example in a docstring fails
    python docs/check_api.py --list     # also lists the public callables without an example

"Public" is what the API reference documents: the names in `__all__` of the modules below
(a module without `__all__`: its names without a leading underscore) that are functions or
classes defined inside graddesc. Each is checked once, under its first name. The examples are
doctests (`>>>` lines); they run with `gd`, `nn`, `F` and `np` already imported, as the API
reference's readers have them. docs/additions.py's names must all exist.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import inspect
import os
import sys
from typing import Any

import numpy as np

import graddesc as gd

PUBLIC_MODULES = [
    "graddesc", "graddesc.autograd", "graddesc.autograd.functional", "graddesc.nn",
    "graddesc.nn.functional", "graddesc.nn.init", "graddesc.nn.utils", "graddesc.optim",
    "graddesc.optim.lr_scheduler", "graddesc.data", "graddesc.data.datasets", "graddesc.viz",
    "graddesc.cuda", "graddesc.utils.data",
]


def public_callables() -> dict:
    """{qualified public name: object}, each object once, in module order."""
    seen: set = set()
    out: dict = {}
    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        names = getattr(mod, "__all__", None)
        if names is None:
            names = [n for n in vars(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not (getattr(obj, "__module__", "") or "").startswith("graddesc"):
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            out[f"{modname}.{name}"] = obj
    return out


def _own_doc(obj: Any) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return (doc or "").strip()


def _resolve(name: str) -> Any:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list callables without an example")
    args = ap.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from additions import ADDITIONS

    problems = []
    for name in ADDITIONS:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            problems.append(f"docs/additions.py names {name}, which does not exist")

    objs = public_callables()
    undocumented = [n for n, o in objs.items() if not _own_doc(o)]
    problems += [f"{n}: no docstring" for n in undocumented]

    import graddesc.nn as nn
    import graddesc.nn.functional as F

    globs = {"gd": gd, "nn": nn, "F": F, "np": np}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with_example, examples = set(), 0
    np.set_printoptions(precision=4, suppress=True)
    for name, obj in objs.items():
        for test in finder.find(obj, name, module=False, globs=dict(globs)):
            if test.examples:
                with_example.add(name)
                examples += len(test.examples)
                gd.manual_seed(0)
                runner.run(test)
    result = runner.summarize(verbose=False)
    if result.failed:
        problems.append(f"{result.failed} of {result.attempted} doctest examples failed")

    missing = [n for n in objs if n not in with_example]
    problems += [f"{n}: no example (a `>>>` line) in its docstring" for n in missing]
    print(f"{len(objs)} public callables: {len(objs) - len(undocumented)} with a docstring, "
          f"{len(with_example)} with an example; {examples} examples run, "
          f"{result.failed} failed")
    if args.list:
        for n in missing:
            print("  no example:", n)
    for p in problems:
        print("error:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
