"""Random tensor programs for the differential fuzzer (tests/test_fuzz_torch.py).

A program is a list of `Line`s of Python source over the names `m` (the library: graddesc or
torch), `F` (its nn.functional) and `t0, t1, ...` (the pool of tensors). The same source runs on
both libraries, so a failing program prints as code that can be pasted into a test, and there is
one interpreter (`run`) for both backends. Hypothesis builds a program step by step from its
choices while this module tracks every pool tensor's shape, dtype and grad state symbolically, so
each step is (mostly) valid whatever was drawn before: deleting a step while shrinking
re-derives the later ones instead of breaking them.

Each line may carry guards: conditions on the values of its inputs that PyTorch's run checks
before executing it (kept away from kinks of relu/abs/clamp/max, inside the domain of log/sqrt/
division). A program whose PyTorch run violates a guard, or produces non-finite or huge values,
is not meaningful (a kink's subgradient or float32 rounding decides the result) and is rejected.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from typing import Any

import numpy as np
from hypothesis import strategies as st

DTYPES = ("float32", "float64")
# Inputs are multiples of 1/8 in [-2, -1/4] U [1/4, 2]: exact in both dtypes, away from zero,
# short to print.
_GRID = np.array([k / 8 for k in range(-16, 17) if abs(k) >= 2])
_SCALARS = (-1.5, -0.5, 0.25, 0.5, 2.0, 3.0)
# GRADDESC_FUZZ_SKIP_VIEW_BUG=1 leaves out in-place ops on a base that has views, so that a long
# run looks for other bugs while the view bug of issue 21 is not fixed.
SKIP_VIEW_BUG = os.environ.get("GRADDESC_FUZZ_SKIP_VIEW_BUG") == "1"


@dataclasses.dataclass(frozen=True)
class Line:
    """One statement; `guards` are (kind, expression, argument) checked on PyTorch's values."""

    code: str
    guards: tuple = ()


@dataclasses.dataclass
class Program:
    dtype: str
    lines: list

    def source(self) -> str:
        return "\n".join(line.code for line in self.lines)

    def __repr__(self) -> str:  # hypothesis prints the falsifying example with this
        return f"Program({self.dtype}):\n" + self.source()


@dataclasses.dataclass
class _Sym:
    """What the generator knows about a pool tensor without running it."""

    shape: tuple
    requires_grad: bool
    leaf: bool
    base: int | None  # index of the tensor whose memory this one views (None: owns its memory)
    torch_saves: bool = False  # PyTorch's backward needs this value, graddesc's not (_inplace)
    has_views: bool = False  # some pool tensor views this one's memory
    gd_strided: bool = False  # bug G: graddesc's result is not contiguous where PyTorch's is
    # a strided view (t, transpose, getitem, expand) or computed from one: PyTorch's elementwise
    # results keep such an input's strides, graddesc's kernels write contiguous results (see
    # _view: no reshape/view of such a tensor)
    strided: bool = False


# ---- generation ---------------------------------------------------------------------------------

_shapes = st.lists(st.sampled_from([1, 2, 3, 4]), min_size=0, max_size=3).map(tuple)


def _literal(shape: tuple, seed: int) -> str:
    a = np.random.default_rng(seed).choice(_GRID, size=shape)
    return repr(a.tolist())


class _Builder:
    def __init__(self, draw: Any, dtype: str) -> None:
        self.draw = draw
        self.dtype = dtype
        self.pool: list[_Sym] = []
        self.lines: list[Line] = []

    # pool helpers
    def new(self, code: str, sym: _Sym, guards: tuple = ()) -> int:
        n = len(self.pool)
        # bug G spreads: elementwise ops keep their input's layout (as PyTorch's do), so any
        # result computed from a tensor graddesc made strided may be strided too
        used = [self.pool[int(i)] for i in re.findall(r"\bt(\d+)\b", code)]
        sym.gd_strided = sym.gd_strided or any(u.gd_strided for u in used)
        sym.strided = sym.strided or any(u.strided for u in used)
        self.pool.append(sym)
        self.lines.append(Line(f"t{n} = {code}", guards))
        return n

    def base_rg(self, i: int) -> bool:
        b = self.pool[i].base
        return self.pool[i].requires_grad or (b is not None and self.pool[b].requires_grad)

    def leaf(self, shape: tuple, requires_grad: bool | None = None) -> int:
        if requires_grad is None:
            requires_grad = self.draw(st.booleans())
        seed = self.draw(st.integers(0, 2**16))
        return self.new(f"m.tensor({_literal(shape, seed)}, dtype=m.{self.dtype}, "
                        f"requires_grad={requires_grad})",
                        _Sym(shape, requires_grad, True, None))

    def pick(self, ok: Any = lambda s: True) -> int | None:
        cands = [i for i, s in enumerate(self.pool) if ok(s)]
        if not cands:
            return None
        return self.draw(st.sampled_from(cands))

    def operand(self, shape: tuple, exact: bool = False) -> int:
        """A pool tensor whose shape broadcasts to `shape` (equals it if exact), or a new leaf."""

        def fits(s: _Sym) -> bool:
            if exact:
                return s.shape == shape
            return len(s.shape) <= len(shape) and all(
                a in (1, b) for a, b in zip(reversed(s.shape), reversed(shape)))

        i = self.pick(fits) if self.draw(st.booleans()) else None
        if i is not None:
            return i
        if exact:
            return self.leaf(shape)
        # drop leading dims and set some dims to 1: still broadcasts to `shape`
        k = self.draw(st.integers(0, len(shape)))
        sub = tuple(1 if self.draw(st.booleans()) else d for d in shape[k:])
        return self.leaf(sub)

    def dim(self, ndim: int) -> int:
        return self.draw(st.integers(-ndim, ndim - 1))


def _bshape(a: tuple, b: tuple) -> tuple:
    return tuple(np.broadcast_shapes(a, b))


def _index(b: _Builder, shape: tuple) -> tuple[str, tuple]:
    """A basic index (ints and slices) for `shape`, and the shape it selects."""
    parts, out = [], []
    n = b.draw(st.integers(1, len(shape)))
    for d in shape[:n]:
        if b.draw(st.booleans()):
            i = b.draw(st.integers(-d, d - 1))
            parts.append(str(i))
        else:
            start = b.draw(st.integers(0, d - 1))
            step = b.draw(st.sampled_from([1, 1, 2]))
            stop = b.draw(st.integers(start + 1, d))
            parts.append(f"{start}:{stop}" + (f":{step}" if step != 1 else ""))
            out.append(len(range(start, stop, step)))
    return ", ".join(parts), tuple(out) + tuple(shape[n:])


def _step(b: _Builder) -> None:
    """Appends one instruction (or a few) to the program."""
    kind = b.draw(st.sampled_from(["leaf", "unary", "scalar", "binary", "reduce", "matmul",
                                   "view", "view", "inplace", "inplace", "softmax", "loss",
                                   "copy"]))
    if kind == "leaf" or not b.pool:
        b.leaf(b.draw(_shapes))
        return
    # mostly tensors on the graph: constants alone can't show a gradient bug
    x = b.pick(lambda s: s.requires_grad) if b.draw(st.integers(0, 3)) else None
    x = b.pick() if x is None else x
    s = b.pool[x]
    rg = s.requires_grad
    t = f"t{x}"
    if kind == "unary":
        op = b.draw(st.sampled_from(["neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid",
                                     "relu", "clamp"]))
        guards: tuple = ()
        if op == "clamp":
            lo = b.draw(st.sampled_from([-1.0, -0.5, 0.0]))
            hi = b.draw(st.sampled_from([0.5, 1.0, 1.5]))
            code, guards = f"{t}.clamp(min={lo}, max={hi})", (("away", t, lo), ("away", t, hi))
        else:
            code = f"{t}.{op}()"
            if op in ("log", "sqrt"):
                guards = (("pos", t, None),)
            elif op in ("abs", "relu"):
                guards = (("away", t, 0.0),)
            elif op == "exp":
                guards = (("below", t, 8.0),)
        b.new(code, _Sym(s.shape, rg, False, None), guards)
    elif kind == "scalar":
        c = b.draw(st.sampled_from(_SCALARS))
        form = b.draw(st.sampled_from(["{t} + {c}", "{c} + {t}", "{t} - {c}", "{c} - {t}",
                                       "{t} * {c}", "{c} * {t}", "{t} / {c}", "{c} / {t}",
                                       "{t} ** 2", "{t} ** 3", "{t} ** -1", "{t} ** 0.5",
                                       "{t} ** 1.5", "2.0 ** {t}"]))
        guards = ()
        if form in ("{c} / {t}", "{t} ** -1"):
            guards = (("away", t, 0.0),)
        elif form in ("{t} ** 0.5", "{t} ** 1.5"):
            guards = (("pos", t, None),)
        elif form == "2.0 ** {t}":
            guards = (("below", t, 8.0),)
        b.new(form.format(t=t, c=c), _Sym(s.shape, rg, False, None), guards)
    elif kind == "binary":
        y = b.operand(s.shape)
        op = b.draw(st.sampled_from(["+", "-", "*", "/"]))
        if b.draw(st.booleans()):  # the operand on the left: broadcasting from either side
            code = f"t{y} {op} {t}"
            guards = (("away", t, 0.0),) if op == "/" else ()
        else:
            code = f"{t} {op} t{y}"
            guards = (("away", f"t{y}", 0.0),) if op == "/" else ()
        sy = b.pool[y]
        b.new(code, _Sym(_bshape(s.shape, sy.shape), rg or sy.requires_grad, False, None),
              guards)
    elif kind == "reduce":
        op = b.draw(st.sampled_from(["sum", "mean", "max", "min", "var"]))
        if not s.shape or b.draw(st.booleans()):
            if op == "var" and math.prod(s.shape) < 2:
                op = "sum"
            s.torch_saves = s.torch_saves or op == "var"
            guards = (("gap", t, None),) if op in ("max", "min") else ()
            b.new(f"{t}.{op}()", _Sym((), rg, False, None, torch_saves=op in ("max", "min")),
                  guards)
            return
        d = b.dim(len(s.shape))
        keep = b.draw(st.booleans())
        if op == "var" and s.shape[d] < 2:
            op = "mean"
        s.torch_saves = s.torch_saves or op == "var"  # graddesc saves x - mean instead of x
        out = list(s.shape)
        if keep:
            out[d] = 1
        else:
            del out[d]
        code = f"{t}.{op}(dim={d}, keepdim={keep})"
        guards = ()
        if op in ("max", "min"):
            code += ".values"
            guards = (("gap", t, d),)
        b.new(code, _Sym(tuple(out), rg, False, None), guards)
    elif kind == "matmul":
        if len(s.shape) not in (1, 2, 3):
            return
        k = s.shape[-1]
        if b.draw(st.booleans()) or len(s.shape) == 3:  # x @ W (W 2-d, or 1-d: a vector)
            n = b.draw(st.sampled_from([None, 1, 2, 3]))
            w = b.operand((k,) if n is None else (k, n), exact=True)
            out = s.shape[:-1] + (() if n is None else (n,))
            if b.draw(st.booleans()) and n is not None and len(s.shape) >= 1:
                # F.linear(x, W^T-shaped weight, bias): the layer form the lecture uses
                w = b.operand((n, k), exact=True)
                bias = b.operand((n,), exact=True) if b.draw(st.booleans()) else None
                extra = f", t{bias}" if bias is not None else ""
                rgs = rg or b.pool[w].requires_grad or (
                    bias is not None and b.pool[bias].requires_grad)
                b.new(f"F.linear({t}, t{w}{extra})", _Sym(out, rgs, False, None))
                return
            b.new(f"{t} @ t{w}", _Sym(out, rg or b.pool[w].requires_grad, False, None))
        else:  # A @ x
            n = b.draw(st.sampled_from([1, 2, 3]))
            a = b.operand((n, s.shape[0]), exact=True)
            out = (n,) + s.shape[1:]
            b.new(f"t{a} @ {t}", _Sym(out, rg or b.pool[a].requires_grad, False, None))
    elif kind == "view":
        _view(b, x)
    elif kind == "inplace":
        _inplace(b)
    elif kind == "softmax":
        if not s.shape:
            return
        d = b.dim(len(s.shape))
        fn = b.draw(st.sampled_from(["{t}.softmax(dim={d})", "F.log_softmax({t}, dim={d})",
                                     "{t}.log_softmax(dim={d})", "F.softmax({t}, dim={d})"]))
        b.new(fn.format(t=t, d=d), _Sym(s.shape, rg, False, None,
                                        gd_strided=d % len(s.shape) != len(s.shape) - 1))
    elif kind == "loss":
        red = b.draw(st.sampled_from(["mean", "sum", "none"]))
        if len(s.shape) == 2 and b.draw(st.booleans()):
            nb, nc = s.shape
            seed = b.draw(st.integers(0, 2**16))
            target = np.random.default_rng(seed).integers(0, nc, size=nb).tolist()
            # Bug F: graddesc's cross_entropy(reduction='none') returns a view (of an internal
            # tensor), so an in-place op on it raises; base=x keeps _inplace off it when on the
            # graph.
            b.new(f"F.cross_entropy({t}, m.tensor({target}), reduction='{red}')",
                  _Sym(() if red != "none" else (nb,), rg, False, None if red != "none" else x))
            return
        y = b.operand(s.shape, exact=True)
        if red == "none":
            s.torch_saves = b.pool[y].torch_saves = True
        b.new(f"F.mse_loss({t}, t{y}, reduction='{red}')",
              _Sym(() if red != "none" else s.shape, rg or b.pool[y].requires_grad, False, None))
    elif kind == "copy":
        op = b.draw(st.sampled_from(["clone", "detach"]))
        b.new(f"{t}.{op}()", _Sym(s.shape, rg and op == "clone", op == "detach",
                                  x if op == "detach" else None))


def _view(b: _Builder, x: int) -> None:
    s = b.pool[x]
    t, shape, nd = f"t{x}", s.shape, len(s.shape)
    base = s.base if s.base is not None else x
    # reshape/view of a result computed from a strided view: PyTorch's result kept the strides,
    # so its reshape copies (and view raises) where graddesc's contiguous result gives a view;
    # an in-place op on the base then shows through only in graddesc. Aliasing that depends on
    # the layout is unspecified in both libraries, so the fuzzer does not compare it.
    ops = ["getitem", "unsqueeze", "expand", "squeeze"] + \
        ([] if s.strided else ["reshape", "view"])
    if nd == 2:
        ops.append("t")
    if nd >= 2:
        ops.append("transpose")
    op = b.draw(st.sampled_from(ops))
    if op == "getitem" and nd:
        idx, out = _index(b, shape)
        code = f"{t}[{idx}]"
    elif op == "t" and nd == 2:
        code, out = f"{t}.t()", shape[::-1]
    elif op == "transpose" and nd >= 2:
        d0, d1 = b.dim(nd), b.dim(nd)
        o = list(shape)
        o[d0], o[d1] = o[d1], o[d0]
        code, out = f"{t}.transpose({d0}, {d1})", tuple(o)
    elif op in ("reshape", "view"):
        if op == "view" and s.gd_strided:
            op = "reshape"  # bug G: graddesc's view raises "not compatible with ... stride"
        n = math.prod(shape)
        cands = [(-1,), (n,), (1, n), (n, 1)]
        if nd >= 2:
            cands.append(shape[:-2] + (shape[-2] * shape[-1],))
            cands.append(shape[::-1])  # a different factorization of the same size
        new = b.draw(st.sampled_from(cands))
        out = (n,) if new == (-1,) else new
        code = f"{t}.{op}({', '.join(map(str, new))})"
    elif op == "squeeze" and nd:
        d = b.dim(nd)
        out = shape[:d % nd] + shape[d % nd + 1:] if shape[d] == 1 else shape
        code = f"{t}.squeeze({d})"
    elif op == "expand":
        lead = b.draw(st.sampled_from([(), (2,)]))
        o = tuple(b.draw(st.sampled_from([1, 3])) if d == 1 else d for d in shape)
        out = (lead + o) or (2,)  # a 0-d tensor expands to a vector
        code = f"{t}.expand({', '.join(map(str, out))})"
    else:
        d = b.draw(st.integers(-nd - 1, nd))
        o = list(shape)
        o.insert(d % (nd + 1), 1)
        code, out = f"{t}.unsqueeze({d})", tuple(o)
    b.pool[base].has_views = True
    b.new(code, _Sym(tuple(out), s.requires_grad, False, base, gd_strided=s.gd_strided,
                     strided=code.startswith((f"{t}.t(", f"{t}.transpose(", f"{t}[",
                                              f"{t}.expand("))))


def _root(b: _Builder, i: int) -> int:
    """The pool tensor that owns i's memory."""
    return b.pool[i].base if b.pool[i].base is not None else i


def _inplace(b: _Builder) -> None:
    # graddesc refuses in-place ops on a view of a tensor that requires grad (documented in
    # Tensor._check_inplace: "not supported; use the out-of-place op") where PyTorch rebases
    # the view; that is a missing feature, not a wrong result, so targets are tensors that own
    # their memory, or views of tensors that don't require grad.
    # A leaf that requires grad is allowed: both libraries must refuse it.
    def ok(s: _Sym) -> bool:
        return s.base is None or not (s.requires_grad or b.pool[s.base].requires_grad)

    # mostly a tensor on the graph, and among those one that has views: the cases where PyTorch
    # must rebase views and check saved values, so where an autograd engine goes wrong
    how = b.draw(st.integers(0, 3))
    x = None
    if how >= 2:
        x = b.pick(lambda s: ok(s) and s.requires_grad and not s.leaf and s.has_views)
    if how >= 1 and x is None:
        x = b.pick(lambda s: ok(s) and s.requires_grad and not s.leaf)
    x = b.pick(ok) if x is None else x
    if x is None:
        return
    s = b.pool[x]
    if s.base is not None and b.pool[s.base].requires_grad:
        return
    t = f"t{x}"
    op = b.draw(st.sampled_from(["add_", "sub_", "mul_", "div_", "setitem", "zero_", "fill_",
                                 "copy_", "clamp_"]))
    rg_in = False
    guards: tuple = ()
    if op in ("add_", "sub_", "mul_", "div_", "copy_"):
        if b.draw(st.booleans()) and op != "copy_":
            c = b.draw(st.sampled_from(_SCALARS))
            code = f"{t}.{op}({c})"
        else:
            y = b.operand(s.shape)
            rg_in = b.pool[y].requires_grad
            code = f"{t}.{op}(t{y})"
            if op == "copy_" and _root(b, y) == _root(b, x) and y != x:
                return  # as for setitem below: PyTorch refuses partial overlap
            if op == "div_":
                guards = (("away", f"t{y}", 0.0),)
    elif op == "setitem":
        if not s.shape:
            return
        idx, sel = _index(b, s.shape)
        if b.draw(st.booleans()):
            code = f"{t}[{idx}] = {b.draw(st.sampled_from(_SCALARS))}"
        else:
            y = b.operand(sel)
            rg_in = b.pool[y].requires_grad
            code = f"{t}[{idx}] = t{y}"
            if _root(b, y) == _root(b, x):
                # PyTorch refuses a write from a tensor that overlaps the target ("clone() the
                # tensor first"); graddesc copies as NumPy does. Not a wrong result.
                return
    elif op == "clamp_":
        lo = b.draw(st.sampled_from([-1.0, -0.5, 0.0]))
        hi = b.draw(st.sampled_from([0.5, 1.0, 1.5]))
        code, guards = f"{t}.clamp_({lo}, {hi})", (("away", t, lo), ("away", t, hi))
    elif op == "fill_":
        code = f"{t}.fill_({b.draw(st.sampled_from(_SCALARS))})"
    else:
        code = f"{t}.zero_()"
    on_graph = s.requires_grad and not s.leaf  # the target's old value is on the graph
    # Bugs graddesc has today (listed in tests/test_fuzz_torch.py), excluded so that the random
    # run can look for others; delete a line here once its bug is fixed:
    if (on_graph or rg_in) and s.has_views and SKIP_VIEW_BUG:
        return  # the bug of issue 21: views keep the graph (or no graph) of the base's old value
    if s.torch_saves:
        # PyTorch's max()/min() save their output, var() its input and mse_loss(reduction=
        # 'none') both, so PyTorch refuses a backward after they are modified; graddesc saves
        # other values (the argmax, x - mean, the difference) and gives the right gradient.
        return
    if on_graph and op == "copy_" and rg_in:
        # bug E: copy_ of a tensor on the graph drops the old branch, where PyTorch runs it with
        # a zero gradient (and so raises if a value it saved there was modified)
        return
    b.lines.append(Line(code, guards))
    if rg_in and not (s.leaf and s.requires_grad):  # (that one raises; nothing changes)
        s.requires_grad, s.leaf = True, False  # now on the graph, as the op's output


def _finale(b: _Builder) -> None:
    """The loss of some pool tensors, backward or a double backward, maybe optimizer steps."""
    floats = list(range(len(b.pool)))
    prefer = [i for i in floats if b.pool[i].requires_grad] or floats
    ks = b.draw(st.lists(st.sampled_from(prefer), min_size=1, max_size=3, unique=True))
    terms = []
    for k in ks:
        form = b.draw(st.sampled_from(["t{k}.sum()", "(t{k} * t{k}).sum()",
                                       "(t{k} * t{k}).mean()"]))
        terms.append(form.format(k=k))
    b.lines.append(Line("loss = " + " + ".join(terms)))
    leaves = [f"t{i}" for i, s in enumerate(b.pool) if s.leaf and s.requires_grad]
    mode = b.draw(st.sampled_from(["backward", "backward", "grad2"])) if leaves else "backward"
    if mode == "grad2":
        b.lines.append(Line(f"gs = m.autograd.grad(loss, [{', '.join(leaves)}], "
                            "create_graph=True, allow_unused=True)"))
        b.lines.append(Line("s = loss + sum((g * g).sum() for g in gs if g is not None)"))
        b.lines.append(Line("s.backward()"))
    else:
        b.lines.append(Line("loss.backward()"))
    opt = b.draw(st.sampled_from([None, None, "sgd", "adam"])) if leaves else None
    if opt is not None:
        ctor = ("m.optim.SGD([{p}], lr=0.1, momentum=0.9)" if opt == "sgd" else
                "m.optim.Adam([{p}], lr=0.01)")
        # Adam divides by the gradient's running magnitude: a gradient that is zero up to
        # rounding (sum(softmax(x)) has one) becomes a full step of random sign; not meaningful.
        tiny = tuple(("tiny", f"{p}.grad", None) for p in leaves) if opt == "adam" else ()
        b.lines.append(Line("opt = " + ctor.format(p=", ".join(leaves)), tiny))
        for _ in range(b.draw(st.integers(1, 2))):
            b.lines.append(Line("opt.step()"))


@st.composite
def programs(draw: Any, max_steps: int = 10) -> Program:
    """A random program: a few leaves, up to `max_steps` ops, a loss, backward, maybe steps."""
    b = _Builder(draw, draw(st.sampled_from(DTYPES)))
    b.leaf(draw(_shapes), requires_grad=True)
    for _ in range(draw(st.integers(0, max_steps))):
        _step(b)
    _finale(b)
    return Program(b.dtype, b.lines)


# ---- execution ----------------------------------------------------------------------------------

class RejectedError(Exception):
    """PyTorch's run is not meaningful for this program (a kink, a domain edge, an overflow)."""


@dataclasses.dataclass
class Outcome:
    snaps: list  # per line: the value(s) it assigned or modified, as NumPy (None for none)
    finals: dict  # name -> final value, grad and requires_grad of every pool tensor
    error: tuple | None  # (line number, exception) of the first line that raised


def _np(t: Any) -> Any:
    if t is None:
        return None
    if isinstance(t, (tuple, list)):
        return [_np(u) for u in t]
    if hasattr(t, "detach"):
        return np.array(t.detach().numpy(), copy=True)
    return None


def _check_guard(env: dict, kind: str, expr: str, arg: Any, dtype: str) -> None:
    t = eval(expr, env)  # noqa: S307
    if t is None:  # a leaf with no gradient
        return
    v = np.asarray(t.detach().numpy(), dtype=np.float64)
    if v.size == 0:
        return
    rel = 1e-3 if dtype == "float32" else 1e-6
    margin = rel * max(1.0, float(np.abs(v).max()))
    if kind == "pos":
        bad = v <= margin
    elif kind == "away":
        # exactly on the kink is fine (both libraries compute it exactly and must agree on the
        # subgradient); near it, float rounding decides the side.
        d = np.abs(v - arg)
        bad = (d > 0) & (d < margin)
    elif kind == "below":
        bad = v > arg
    elif kind == "tiny":
        bad = (v != 0) & (np.abs(v) < margin)
    else:  # "gap": the largest and smallest values must be unique by a margin, or exactly tied
        flat = v.reshape(-1) if arg is None else np.moveaxis(v, arg, -1).reshape(-1, v.shape[arg])
        srt = np.sort(flat, axis=-1)
        if srt.shape[-1] < 2:
            return
        gaps = np.concatenate([srt[..., 1:2] - srt[..., 0:1], srt[..., -1:] - srt[..., -2:-1]],
                              axis=-1)
        bad = (gaps > 0) & (gaps < margin)
    if np.any(bad):
        raise RejectedError(f"guard {kind} on {expr}")


def run(program: Program, m: Any, F: Any, check_guards: bool = False) -> Outcome:
    """Runs the program on library `m`; with check_guards (PyTorch's run) RejectedError means the
    program's results are not meaningful."""
    env: dict = {"m": m, "F": F}
    snaps: list = []
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # var of one element and the like: NaN, rejected below
        for n, line in enumerate(program.lines):
            if check_guards:
                for kind, expr, arg in line.guards:
                    _check_guard(env, kind, expr, arg, program.dtype)
            try:
                exec(line.code, env)  # noqa: S102
            except Exception as e:  # noqa: BLE001 - every failure is a result to compare
                error = (n, e)
                break
            target = line.code.split("=")[0].split(".")[0].split("[")[0].strip()
            value = _np(env.get(target))
            snaps.append(value)
            if check_guards:
                for a in value if isinstance(value, list) else [value]:
                    if a is not None and not (np.all(np.isfinite(a)) and
                                              np.all(np.abs(a) < 1e4)):
                        raise RejectedError(f"line {n}: non-finite or huge value")
    finals = {}
    for name, t in env.items():
        if name[0] == "t" and name[1:].isdigit():
            finals[name] = (_np(t), _np(t.grad) if t.is_leaf else None, bool(t.requires_grad))
    if check_guards:
        for _, g, _ in finals.values():
            if g is not None and not (np.all(np.isfinite(g)) and np.all(np.abs(g) < 1e6)):
                raise RejectedError("non-finite or huge gradient")
    return Outcome(snaps, finals, error)


# ---- comparison ---------------------------------------------------------------------------------

# Error classes that count as the same failure: PyTorch reports most misuse (shape mismatch,
# in-place on a leaf, a modified saved tensor, backward through a freed graph) as RuntimeError
# where graddesc's boundary checks may say ValueError (DESIGN.md: "raise ValueError/TypeError
# with a message"); an out-of-range index or dim is IndexError in both, though PyTorch reports
# some as RuntimeError. Anything else (AttributeError, AssertionError, KeyError, ZeroDivision...)
# from graddesc is a bug whatever PyTorch does.
_FAMILIES = {
    RuntimeError: {RuntimeError, ValueError, IndexError},
    ValueError: {RuntimeError, ValueError, IndexError},
    IndexError: {IndexError, RuntimeError, ValueError},
    TypeError: {TypeError, RuntimeError},
}


def _family(e: BaseException) -> type | None:
    for cls in (IndexError, TypeError, ValueError, RuntimeError):  # subclasses first
        if isinstance(e, cls):
            return cls
    return None


def tolerances(dtype: str) -> tuple[float, float]:
    """(rtol, atol relative to the largest magnitude of the reference array)."""
    return (1e-9, 1e-10) if dtype == "float64" else (2e-4, 2e-5)


def _close(a: Any, b: Any, dtype: str) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(_close(x, y, dtype) for x, y in zip(a, b)))
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype != b.dtype and a.dtype.kind == "f" and b.dtype.kind == "f":
        return False
    if a.dtype.kind != "f" or b.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    rtol, atol = tolerances(dtype)
    scale = float(np.abs(b).max()) if b.size else 0.0
    return bool(np.allclose(a, b, rtol=rtol, atol=atol * max(scale, 1.0)))


def compare(program: Program, got: Outcome, ref: Outcome) -> list[str]:
    """The differences between graddesc's outcome and PyTorch's (empty: they agree)."""
    diffs = []
    if got.error or ref.error:
        if got.error is None:
            n, e = ref.error
            return [f"PyTorch raises at line {n} ({type(e).__name__}: {e}); graddesc does not"]
        if ref.error is None:
            n, e = got.error
            return [f"graddesc raises at line {n} ({type(e).__name__}: {e}); PyTorch does not"]
        (gn, ge), (rn, re) = got.error, ref.error
        fam = _family(re)
        same = gn == rn and fam is not None and _family(ge) in _FAMILIES[fam]
        if not same:
            return [f"graddesc raises at line {gn} ({type(ge).__name__}: {ge}); PyTorch at "
                    f"line {rn} ({type(re).__name__}: {re})"]
        # after the same error, compare the lines before it; what a failed backward already
        # accumulated is unspecified (PyTorch has run part of the graph, graddesc maybe not)
        return [f"line {k} `{program.lines[k].code}`: graddesc {a}, PyTorch {b}"
                for k, (a, b) in enumerate(zip(got.snaps, ref.snaps))
                if not _close(a, b, program.dtype)]
    for n, (a, b) in enumerate(zip(got.snaps, ref.snaps)):
        if not _close(a, b, program.dtype):
            diffs.append(f"line {n} `{program.lines[n].code}`: graddesc {a}, PyTorch {b}")
    for name, (rv, rg, rrg) in ref.finals.items():
        if name not in got.finals:
            continue  # both raised before creating it (checked above)
        gv, gg, grg = got.finals[name]
        if not _close(gv, rv, program.dtype):
            diffs.append(f"final {name}: graddesc {gv}, PyTorch {rv}")
        # Bug E: where PyTorch's graph keeps a leaf behind an overwrite (copy_, fill_) and gives
        # it a zero gradient, graddesc drops the edge and leaves .grad None; compared as equal so
        # that the random run looks past it (a non-zero gradient against None still differs).
        if gg is None and rg is not None and not np.any(rg):
            gg = np.zeros_like(rg)
        if not _close(gg, rg, program.dtype):
            diffs.append(f"{name}.grad: graddesc {gg}, PyTorch {rg}")
        if grg != rrg:
            diffs.append(f"{name}.requires_grad: graddesc {grg}, PyTorch {rrg}")
    return diffs
