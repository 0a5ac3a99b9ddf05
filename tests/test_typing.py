"""Static typing: the stubs are current, shipped, and make Tensor's methods visible to a type
checker (Tensor's methods are bound at import time by graddesc._tensor_ops, so only the stub
`_tensor.pyi` shows them to tools that read the source)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from graddesc import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "python", "graddesc")


def _gen_stubs():
    spec = importlib.util.spec_from_file_location("gen_stubs",
                                                  os.path.join(ROOT, "tools", "gen_stubs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["_tensor.pyi", "__init__.pyi"])
def test_generated_stub_is_current(name):
    with open(os.path.join(PKG, name), encoding="utf-8") as f:
        on_disk = f.read()
    gen = _gen_stubs()
    written = gen.tensor_stub() if name == "_tensor.pyi" else gen.init_stub()
    assert written == on_disk, f"python/graddesc/{name} is stale: run python tools/gen_stubs.py"


def test_init_stub_exports_every_public_name():
    import graddesc as gd

    with open(os.path.join(PKG, "__init__.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    declared = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    declared |= {a.asname for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
                 if a.asname}
    declared |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}  # pi: float
    assert set(gd.__all__) - declared == set()


def test_tensor_stub_declares_every_method():
    """Independently of the generator: every attribute of the runtime class is in the stub."""
    import graddesc as gd

    with open(os.path.join(PKG, "_tensor.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Tensor")
    declared = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    declared |= {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    runtime = {n for n in dir(gd.Tensor) if n not in dir(object) or n in vars(gd.Tensor)}
    # (__slotnames__ is copyreg's cache, there once any Tensor has been pickled)
    runtime -= {"__dict__", "__module__", "__slots__", "__weakref__", "__doc__", "__slotnames__"}
    assert runtime - declared == set()
    for name in ("sum", "backward", "add_", "relu", "reshape", "item", "to", "__add__"):
        assert name in declared


def test_core_stub_declares_every_binding():
    with open(os.path.join(PKG, "_core.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {n.target.id for n in tree.body
                 if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert public - declared == set(), \
        "python/graddesc/_core.pyi is stale: run python tools/gen_stubs.py"


def test_typing_files_are_in_the_package_and_not_ignored():
    """scikit-build-core puts every file of python/graddesc into the wheel except what git
    ignores; .ci/docs checks the files in the installed package of a real build."""
    names = ["py.typed", "_tensor.pyi", "__init__.pyi", "_core.pyi"]
    for n in names:
        assert os.path.isfile(os.path.join(PKG, n)), n
    try:
        r = subprocess.run(["git", "check-ignore", *[os.path.join(PKG, n) for n in names]],
                           cwd=ROOT, capture_output=True, text=True)
    except OSError:
        pytest.skip("git is not installed")
    if r.returncode == 128:
        pytest.skip("not a git checkout")
    assert r.stdout == "", f"ignored by git, so left out of the wheel: {r.stdout}"


USER_SCRIPT = """\
import graddesc as gd
import graddesc.nn as nn

x: gd.Tensor = gd.randn(4, 3, requires_grad=True)
w = gd.zeros(3, 2, requires_grad=True)
y = (x @ w).relu().sum(dim=1).mean()
y.backward()
z = x.detach().clone().to(gd.float64).reshape(2, 6).t().contiguous()
z.add_(1.0).mul_(2.0).clamp_(min=0.0)
z[0] = 3.0
n: int = z.numel()
s: gd.Size = z.shape
v: float = z.sum().item()
for row in z:
    row.exp()
out = nn.Linear(3, 2)(x).softmax(dim=-1).argmax(dim=1)
wrong: str = x.sum()
x.no_such_method()
"""


def test_mypy_sees_tensor_methods(tmp_path):
    """A user script type-checks under --strict; its two deliberate mistakes (the last lines)
    are reported."""
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    import graddesc

    env = dict(os.environ)
    src = os.path.join(ROOT, "python")
    if os.path.abspath(graddesc.__file__).startswith(src + os.sep):
        # an editable install (mypy cannot follow its import hook): the source tree. mypy then
        # also checks the package's own modules under --strict; only user.py's lines count
        env["MYPYPATH"] = src
    # else the installed package, as a user's mypy sees it (py.typed and the stubs)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                        "--cache-dir", str(tmp_path / "cache"), "--hide-error-context",
                        str(script)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    lines = [ln for ln in r.stdout.splitlines() if "user.py:" in ln]
    n = USER_SCRIPT.count("\n")
    expected = [f'user.py:{n - 1}: error: Incompatible types in assignment (expression has type '
                f'"Tensor", variable has type "str")  [assignment]',
                f'user.py:{n}: error: "Tensor" has no attribute "no_such_method"  '
                '[attr-defined]']
    got = [ln[ln.index("user.py"):] for ln in lines]
    assert got == expected, textwrap.indent(r.stdout + r.stderr, "  ")
