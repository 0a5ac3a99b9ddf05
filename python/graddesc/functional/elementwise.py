"""Elementwise arithmetic with NumPy broadcasting: + - * / ** neg abs sqrt clamp where maximum.

The forward passes of float32/float64 operands run the C++ kernels of the elementwise family
(src/cpp/elementwise.cpp: strided operands read in place, deterministic for any thread count,
recorded by gd.compile); integer, bool and mixed-dtype operands stay on NumPy, so the result
dtype is always NumPy's. The engine reduces broadcast gradients back to each input's shape.
Every backward is written with differentiable ops, so higher derivatives work.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor, _value, call_kernel, check_int_cast
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function

_EW = _core.EW_OPS  # op name -> kernel op id (the table in src/cpp/elementwise.hpp)
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOAT_DTYPES = (_F32, _F64)
_NUMBERS = (float, int, bool)
_EXACT_INT = 2**53  # Python ints converted to a float exactly (NumPy's conversion agrees)


def _floats(a: Any, b: Any = None, c: Any = None) -> bool:
    """Whether the kernel computes an op of a, b, c (NumPy values or None) with NumPy's result
    dtype: every array float32, or every one float64, and the rest Python numbers, which
    NumPy 2 treats as weak (they take the array's dtype)."""
    # the usual calls first (one array, two of one dtype, an array and a float): NumPy's
    # native float dtypes are singletons, so `is` decides them
    if type(a) is np.ndarray and c is None:
        dt = a.dtype
        if (dt is _F32 or dt is _F64) and (b is None or type(b) is float or
                                           (type(b) is np.ndarray and b.dtype is dt)):
            return True
    dt = None
    for v in (a, b, c):
        t = type(v)
        if t is np.ndarray:
            if dt is None:
                dt = v.dtype
                if dt != _F32 and dt != _F64:
                    return False
            elif v.dtype != dt:
                return False
        elif t in _NUMBERS:
            if t is int and not -_EXACT_INT <= v <= _EXACT_INT:
                return False
        elif v is not None:
            return False
    return dt is not None


# dtypes the bool/integer kernels (src/cpp/bind_intops.cpp) take
_INT_KERNEL_DTYPES = frozenset(np.dtype(t) for t in (np.bool_, np.int32, np.int64, np.float32,
                                                     np.float64))
_INT_KINDS = frozenset("biu")
_I64_MIN, _I64_MAX = -2**63, 2**63 - 1


def _int_operand(v: Any) -> bool:
    """Whether _core.int_binary takes v: an array of a kernel dtype, a bool, a float or an int
    that fits in int64."""
    t = type(v)
    if t is np.ndarray:
        return v.dtype in _INT_KERNEL_DTYPES
    if t is int:
        return _I64_MIN <= v <= _I64_MAX
    return t is bool or t is float


def _int_kernel(op: str, a: Any, b: Any) -> Any:
    """_core.int_binary(op, a, b) as a Tensor (PyTorch's result dtype) when the kernel takes a
    and b, else None. A compiled step records the call, as it does the float kernels."""
    if not (_int_operand(a) and _int_operand(b)) or \
            (type(a) is not np.ndarray and type(b) is not np.ndarray):
        return None
    return Tensor._make(call_kernel(_core.int_binary, op, a, b))


_MIXED_OK = frozenset(np.dtype(t) for t in (np.bool_, np.int32, np.int64, np.float32,
                                             np.float64))


def _mixed_kernel(name: str, a: Any, b: Any) -> Any:
    """a op b by the float kernel `name` when NumPy's result dtype of a and b (arrays of the
    kernel dtypes, or Python numbers) is float32 or float64 but the operands are not all of it
    (float32 with float64, a float with an int or bool array): each array operand is first
    cast to the result dtype by the cast kernel, exactly as NumPy converts them before the
    operation (so the bits are NumPy's), and gd.compile records both. None otherwise."""
    arrays = [v for v in (a, b) if type(v) is np.ndarray]
    if not arrays or any(v.dtype not in _MIXED_OK for v in arrays) or \
            any(type(v) not in (np.ndarray, int, float, bool) for v in (a, b)):
        return None
    rt = np.result_type(a, b)
    if name == "div" and rt.kind in "biu":  # true division of integers: float64, as NumPy
        rt = _F64
    if rt not in _FLOAT_DTYPES:
        return None
    a2 = a if type(a) is not np.ndarray or a.dtype == rt else \
        call_kernel(_core.int_unary, "cast", a, rt)
    b2 = b if type(b) is not np.ndarray or b.dtype == rt else \
        call_kernel(_core.int_unary, "cast", b, rt)
    if not _floats(a2, b2):
        return None
    return _kernel(name, a2, b2)


def _int_arith(op: str, a: Any, b: Any) -> Any:
    """Integer a op b (add, sub, mul: wrapping around, as NumPy and PyTorch) by the kernel when
    both are integer or bool arrays or Python ints/bools, not all bool; else None."""
    isint = False
    for v in (a, b):
        t = type(v)
        if t is np.ndarray:
            if v.dtype.kind not in _INT_KINDS:
                return None
            isint = isint or v.dtype.kind != "b"
        elif t is int:
            isint = True
        elif t is not bool:
            return None
    return _int_kernel(op, a, b) if isint else None


def _int_minmax(op: str, a: Any, b: Any) -> Any:
    """max/min of bool or integer operands (arrays of those dtypes, Python ints and bools)
    by the kernel (PyTorch's result dtype); None when an operand is a float."""
    for v in (a, b):
        t = type(v)
        if (t is np.ndarray and v.dtype.kind not in _INT_KINDS) or \
                t not in (np.ndarray, int, bool):
            return None
    return _int_kernel(op, a, b)


def _int_where(c: np.ndarray, a: Any, b: Any) -> Any:
    """where(c, a, b) for integer operands (arrays of int32/int64, or Python ints; no float,
    not all bool) by kernels gd.compile records: b + int(c) * (a - b), in integers that wrap
    around, which is a where c holds and b elsewhere exactly (the arithmetic is modulo 2^64).
    None otherwise."""
    r = _int_arith("sub", a, b)
    if r is None:
        return None
    ci = call_kernel(_core.int_unary, "cast", c, r._data.dtype)
    return _int_kernel("add", b, _int_kernel("mul", ci, r._data)._data)


def _kernel(name: str, a: Any, b: Any = None, c: Any = None) -> Tensor:
    """The elementwise kernel `name` on NumPy values (arrays of any strides or numbers)."""
    try:
        return Tensor._make(_core.elementwise(_EW[name], a, b, c))
    except ValueError:  # misaligned or odd strides: call_kernel retries on contiguous copies
        return Tensor._make(call_kernel(_core.elementwise, _EW[name], a, b, c))


def _quiet(fn: Callable) -> Callable:
    """fn, run again with NumPy's floating-point warnings off when one of them was raised as an
    exception (`-W error`, pytest's filterwarnings=error, np.seterr(all="raise")): inf - inf is
    NaN and 1e30 * 1e30 Inf either way, never an error. Under the default filters NumPy's
    RuntimeWarning shows as it would for NumPy itself. (A try costs nothing; np.errstate on
    every call would add about 0.5 us to each op.)"""

    @functools.wraps(fn)
    def quiet(*args: Any) -> Any:
        try:
            return fn(*args)
        except (RuntimeWarning, FloatingPointError):
            with np.errstate(all="ignore"):
                return fn(*args)

    return quiet


def _t(x: Any) -> Any:
    """Numpy scalars become Python scalars (weakly typed, as PyTorch treats them)."""
    if isinstance(x, np.generic):
        return x.item()
    return x


def _wrap(a: Any) -> Tensor:
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype.itemsize < 4:
        a = a.astype(np.float32)
    return Tensor._make(a)


def _check_operand(x: Any, op: str) -> None:
    if isinstance(x, Tensor):
        return
    # NumPy scalars (np.float32(0.5), an element of an array) are accepted like Python
    # numbers; _t() turns them into one before the op runs.
    if isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating)):
        return
    if isinstance(x, np.ndarray):
        raise TypeError(f"{op}: got a numpy.ndarray operand; convert it with graddesc.tensor() "
                        "or graddesc.from_numpy() first")
    raise TypeError(f"{op}: unsupported operand type {type(x).__name__}")


class Add(Function):
    __slots__ = ("alpha",)  # (a slot, not the instance dict: one object less per node)
    _no_stash = True

    @staticmethod
    def forward(ctx, a, b, alpha):
        av, bv = _value(a), _value(b)
        ctx.alpha = alpha
        if alpha == 1:
            if _floats(av, bv):
                return _kernel("add", av, bv)
            r = _int_arith("add", av, bv)
            if r is None:
                r = _mixed_kernel("add", av, bv)
            if r is not None:
                return r
        return _add_numpy(av, bv, alpha)

    @staticmethod
    def backward(ctx, g):
        na, nb = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return (g if na else None, (g * ctx.alpha if ctx.alpha != 1 else g) if nb else None, None)


@_quiet
def _add_numpy(av: Any, bv: Any, alpha: Any) -> Tensor:
    if alpha == 1:
        return _wrap(np.add(av, bv))
    if np.result_type(av, bv) == np.float32:
        # PyTorch fuses a + alpha b (one rounding), so alpha b may exceed the float32 range
        # while the sum does not (inf + 2 * -3e38 is inf, not NaN); float64 holds alpha b.
        return _wrap(np.add(av, np.multiply(bv, alpha, dtype=np.float64)).astype(np.float32))
    return _wrap(np.add(av, bv * alpha))


class Sub(Function):
    _no_stash = True
    @staticmethod
    def forward(ctx, a, b):
        av, bv = _value(a), _value(b)
        if _floats(av, bv):
            return _kernel("sub", av, bv)
        r = _int_arith("sub", av, bv)
        if r is None:
            r = _mixed_kernel("sub", av, bv)
        return _numpy_op(np.subtract, av, bv) if r is None else r

    @staticmethod
    def backward(ctx, g):
        return (g if ctx.needs_input_grad[0] else None,
                _negate(g) if ctx.needs_input_grad[1] else None)


def _negate(g: Tensor) -> Tensor:
    """-g: straight to the kernel when nothing records (a backward without create_graph) and
    g is a float tensor, what Neg.apply would compute without its bookkeeping."""
    d = g._data
    if not grad_mode._state.enabled and type(g) is Tensor and (d.dtype is _F32 or d.dtype is _F64):
        return _kernel("neg", d)
    return -g


class Mul(Function):
    __slots__ = ("sa", "sb")  # the number operands (slots: no object per node to hold them)
    _no_stash = True

    @staticmethod
    def forward(ctx, a, b):
        ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
        ctx.save_for_backward(a if ta and ctx.needs_input_grad[1] else None,
                              b if tb and ctx.needs_input_grad[0] else None)
        ctx.sa = None if ta else a
        ctx.sb = None if tb else b
        av = a._data if ta else a
        bv = b._data if tb else b
        if _floats(av, bv):
            return _kernel("mul", av, bv)
        r = _int_arith("mul", av, bv)
        if r is None:
            r = _mixed_kernel("mul", av, bv)
        return _numpy_op(np.multiply, av, bv) if r is None else r

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.sa, ctx.sb
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = _scale(g, sb) if b is None else g * b
        if ctx.needs_input_grad[1]:
            gb = _scale(g, sa) if a is None else g * a
        return ga, gb


def _scale(g: Tensor, s: Any) -> Tensor:
    """g * s for a Python number s: straight to the kernel when nothing records (a backward
    without create_graph), what Mul.apply would compute without its bookkeeping."""
    d = g._data
    if not grad_mode._state.enabled and type(s) is float and type(d) is np.ndarray and \
            (d.dtype is _F32 or d.dtype is _F64):
        return _kernel("mul", d, s)
    return g * s


@_quiet
def _numpy_op(ufunc: Any, av: Any, bv: Any) -> Tensor:
    return _wrap(ufunc(av, bv))


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        # a is needed only for b's gradient: a / c (c a number or a constant) saves nothing of
        # a, so an in-place op on a afterwards leaves this backward valid (as in PyTorch)
        ctx.save_for_backward(a if isinstance(a, Tensor) and ctx.needs_input_grad[1] else None,
                              b if isinstance(b, Tensor) else None)
        ctx.scalars = (None if isinstance(a, Tensor) else a, None if isinstance(b, Tensor) else b)
        av, bv = _value(a), _value(b)
        if _floats(av, bv):
            return _kernel("div", av, bv)
        r = _mixed_kernel("div", av, bv)
        if r is not None:
            return r
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _wrap(np.true_divide(av, bv))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.scalars
        bb = b if b is not None else sb
        aa = a if a is not None else sa
        ga = g / bb if ctx.needs_input_grad[0] else None
        # -g a / b^2 as PyTorch orders it, -g ((a / b) / b): b * b would overflow or vanish
        # first (0 / 1e-310^2 is NaN, inf / 1e300^2 NaN, 1e300 / 1e300^2 zero)
        gb = -g * ((aa / bb) / bb) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        if a._data.dtype == np.bool_:
            raise TypeError("neg: negation of a bool tensor is not supported; use ~ or "
                            "logical_not()")
        if _floats(a._data):
            return _kernel("neg", a._data)
        return _wrap(np.negative(a._data))

    @staticmethod
    def backward(ctx, g):
        return _negate(g)


class Pow(Function):
    """a ** b with a or b a tensor. d/da = b a^(b-1), 0 where b = 0; d/db = a^b log(a), 0 where
    a = 0 and b >= 0 (PyTorch's values, docs/special-values.md)."""

    @staticmethod
    def forward(ctx, a, b):
        av, bv = _value(a), _value(b)
        if _floats(av, bv) and not (type(bv) is float and bv in (0.5, -0.5)):
            # the usual case (t ** 2, t ** 3.0, t ** t2): the kernel, which raises no NumPy
            # warning, so no np.errstate (about a microsecond) around it
            y = _kernel("pow", av, bv)
        else:
            y = _pow_other(av, bv)
        ctx.save_for_backward(a if isinstance(a, Tensor) else None,
                              b if isinstance(b, Tensor) else None,
                              y if ctx.needs_input_grad[1] else None)
        ctx.scalars = (None if isinstance(a, Tensor) else a, None if isinstance(b, Tensor) else b)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        sa, sb = ctx.scalars
        ga = gb = None
        if ctx.needs_input_grad[0]:
            # b a^(b-1) is 0 * inf = NaN at b = 0, a = 0 (or a NaN): there the gradient is 0
            if b is None:
                if sb == 0:
                    ga = zeros_like_value(g)
                else:
                    ga = _pow_scalar_grad(g, a, sb)
                    if ga is None:
                        ga = g * (sb * a ** (sb - 1))
            else:
                ga = where(b == 0, 0.0, g * (b * a ** (b - 1)))
        if ctx.needs_input_grad[1]:
            # a^b log(a), except 0 where a = 0 and b >= 0 (PyTorch's choice: 0 * -inf there);
            # for b < 0 it is inf * -inf = -inf, and negative bases have no log (NaN)
            if a is None:
                if sa == 0:
                    gb = g * where(b >= 0, 0.0, y * -math.inf)
                else:
                    gb = g * (y * (math.log(sa) if sa > 0 else math.nan))
            else:
                gb = g * where((a == 0) & (b >= 0), 0.0, y * log(a))
        return ga, gb


def _pow_scalar_grad(g: Tensor, a: Tensor, sb: Any) -> Any:
    """g * (sb * a ** (sb - 1)) for a number sb by the same kernels the ops would call, when
    nothing records (a backward without create_graph) and every operand is a float array of one
    dtype; None otherwise (the caller then goes through the ops)."""
    if grad_mode._state.enabled or type(sb) not in (float, int) or type(g) is not Tensor:
        return None
    ad, gd_ = a._data, g._data
    e = sb - 1
    if not (_floats(ad, e) and _floats(ad, sb) and _floats(gd_, ad)):
        return None
    if type(e) is float and e in (0.5, -0.5):  # (Pow.forward's sqrt and rsqrt)
        p = _kernel("sqrt" if e == 0.5 else "rsqrt", ad)
    else:
        p = _kernel("pow", ad, e)
    return _kernel("mul", gd_, _kernel("mul", p._data, sb)._data)


def _pow_other(av: Any, bv: Any) -> Tensor:
    """Pow.forward's other cases: integers (NumPy), x ** 0.5 and x ** -0.5 (sqrt, rsqrt)."""
    with np.errstate(all="ignore"):
        if isinstance(av, np.ndarray) and av.dtype.kind in "iu" and \
                np.any(np.asarray(bv) < 0) and np.asarray(bv).dtype.kind in "iu":
            raise ValueError("pow: integers to negative integer powers are not allowed")
        if isinstance(bv, float) and bv in (0.5, -0.5) and isinstance(av, np.ndarray) and \
                av.dtype.kind == "f":
            # PyTorch's x ** 0.5 is sqrt and x ** -0.5 rsqrt: at -inf and -0.0 they differ
            # from C's pow (NaN and -0.0 for sqrt where pow gives +inf and +0)
            op = "sqrt" if bv == 0.5 else "rsqrt"
            y = _kernel(op, av) if _floats(av) else _wrap(
                np.sqrt(av) if bv == 0.5 else np.reciprocal(np.sqrt(av)))
        elif _floats(av, bv):
            y = _kernel("pow", av, bv)
        else:
            y = _wrap(np.power(av, bv))
    return y


def ones_like_value(t: Tensor) -> Tensor:
    return Tensor._make(np.ones_like(t._data))


def zeros_like_value(t: Tensor) -> Tensor:
    """Zeros of t's shape and dtype (the gradient of a flat function): made inside a recorded
    step, a constant of the program, as gd.zeros_like is."""
    return Tensor._make(_compile_state.constant(np.zeros_like(t._data)))


class Abs(Function):
    """d|a|/da = sign(a): 0 at the kink a = 0 and at NaN (PyTorch's values)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        if _floats(a._data):
            return _kernel("abs", a._data)
        return _wrap(np.abs(a._data))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        # sign(NaN) is NaN (NumPy's, kept by gd.sign); PyTorch's sgn there is 0
        if _floats(a._data):
            return g * Sgn.apply(a)
        return g * where(isnan(a), 0.0, sign(a))


class Sign(Function):
    # sign(NaN) stays NaN, as in NumPy (NaN propagates); torch.sign gives 0 there
    @staticmethod
    def forward(ctx, a):
        if _floats(a._data):
            return _kernel("sign", a._data)
        return _wrap(np.sign(a._data))

    @staticmethod
    def backward(ctx, g):
        # zero even where g is NaN or inf: sign is flat, PyTorch returns zeros
        return zeros_like_value(g)


class Sgn(Function):
    """PyTorch's sign (0 at NaN): abs's derivative; flat, so its own gradient is 0."""

    @staticmethod
    def forward(ctx, a):
        return _kernel("sgn", a._data)

    @staticmethod
    def backward(ctx, g):
        return zeros_like_value(g)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        if _floats(a._data):
            y = _kernel("sqrt", a._data)
        else:
            with np.errstate(invalid="ignore"):
                y = _wrap(np.sqrt(a._data))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g / (2.0 * y)


class Reciprocal(Function):
    """1 / a for a float tensor (the reciprocal kernel); backward -g * (y * y), PyTorch's."""

    @staticmethod
    def forward(ctx, a):
        y = _kernel("reciprocal", a._data)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return -g * (y * y)


def rdiv(c: Any, b: Tensor) -> Tensor:
    """c / b for a Python number c, computed as PyTorch does, b.reciprocal() * c: the same bits
    as PyTorch, and what backward keeps is 1 / b, so an in-place change of b afterwards leaves
    the gradient valid (saving b itself, as a / b must, would make backward raise)."""
    if type(b._data) is np.ndarray and b._data.dtype in (_F32, _F64) and \
            (type(c) is float or (type(c) is int and -_EXACT_INT <= c <= _EXACT_INT)):
        return Mul.apply(Reciprocal.apply(b), c)
    return Div.apply(c, b)


class Clamp(Function):
    """Gradient passes where min <= x <= max (PyTorch's convention at the boundaries)."""

    @staticmethod
    def forward(ctx, a, lo, hi):
        x = a._data
        lv, hv = _value(lo), _value(hi)
        ctx.save_for_backward(a, lo if isinstance(lo, Tensor) else None,
                              hi if isinstance(hi, Tensor) else None)
        ctx.bounds = (lo, hi)
        if _floats(x, lv, hv):
            # minimum(maximum(x, lo), hi): NaN in x or a bound propagates (NumPy's and
            # torch.clamp's rule); a missing bound changes nothing
            return _kernel("clamp", x, lv, hv)
        y = x
        # min(max(x, lo), hi): hi wins when lo > hi, and a NaN in x or in a bound gives NaN
        # (np.maximum/np.minimum propagate it, as torch.clamp does)
        for bound, op, fn in ((lo, "max", np.maximum), (hi, "min", np.minimum)):
            if bound is not None:  # bool and integer operands: the kernel (gd.compile records)
                r = _int_minmax(op, y, _value(bound))
                y = fn(y, _value(bound)) if r is None else r._data
        if y is x:
            y = x.copy()
        # NaN stays NaN (np.maximum propagates it, as torch.clamp does)
        return _wrap(y)

    @staticmethod
    def backward(ctx, g):
        # PyTorch's clamp_backward / clamp_backward_min_max: x gets g where lo <= x <= hi (never
        # at NaN); lo gets it where x < lo < hi, hi where x > hi or hi < lo (so with lo == hi
        # and x below them neither does). Selects, not products: a NaN g elsewhere stays out.
        a, lo_t, hi_t = ctx.saved_tensors
        lo, hi = ctx.bounds
        x = a._data
        lov = None if lo is None else _value(lo_t if lo_t is not None else lo)
        hiv = None if hi is None else _value(hi_t if hi_t is not None else hi)
        ga = glo = ghi = None
        if ctx.needs_input_grad[0] and _floats(x, lov, hiv) and \
                g._data.dtype == x.dtype and g._data.shape == x.shape:
            # x's mask with the comparison and where kernels (a compiled step records them)
            ga = g
            if lov is not None:
                ga = where(ge(a, Tensor._make(lov) if type(lov) is np.ndarray else lov), ga, 0.0)
            if hiv is not None:
                ga = where(le(a, Tensor._make(hiv) if type(hiv) is np.ndarray else hiv), ga, 0.0)
        with np.errstate(invalid="ignore"):
            if ctx.needs_input_grad[0] and ga is None:
                mask = np.ones(x.shape, dtype=bool)
                if lov is not None:
                    mask = mask & (x >= lov)
                if hiv is not None:
                    mask = mask & (x <= hiv)
                ga = where(Tensor._make(mask), g, 0.0)
            if ctx.needs_input_grad[1]:
                mask = x < lov if hiv is None else (x < lov) & (lov < hiv)
                glo = where(Tensor._make(np.asarray(mask)), g, 0.0)
            if ctx.needs_input_grad[2]:
                mask = x > hiv if lov is None else (x > hiv) | (hiv < lov)
                ghi = where(Tensor._make(np.asarray(mask)), g, 0.0)
        return ga, glo, ghi


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        c = np.asarray(cond._data if isinstance(cond, Tensor) else cond)  # 0-d: an array
        if c.dtype != np.bool_:
            raise TypeError(f"where: condition must be a bool tensor, got dtype {c.dtype}")
        ctx.cond = c
        av, bv = _value(a), _value(b)
        if _floats(av, bv):
            return _kernel("where", c, av, bv)
        r = _int_where(c, av, bv)
        if r is not None:
            return r
        return _wrap(np.where(c, av, bv))

    @staticmethod
    def backward(ctx, g):
        c = Tensor._make(ctx.cond)
        ga = where(c, g, 0.0) if ctx.needs_input_grad[1] else None
        gb = where(c, 0.0, g) if ctx.needs_input_grad[2] else None
        return None, ga, gb


class Maximum(Function):
    """Elementwise max/min; on ties the gradient is split evenly, as in PyTorch, and where
    either input is NaN both get all of it (PyTorch zeroes only the strict loser)."""

    @staticmethod
    def forward(ctx, a, b, is_max):
        av, bv = _value(a), _value(b)
        ctx.save_for_backward(a if isinstance(a, Tensor) else None,
                              b if isinstance(b, Tensor) else None)
        ctx.vals = (av, bv)
        ctx.is_max = is_max
        if _floats(av, bv):
            return _kernel("maximum" if is_max else "minimum", av, bv)
        r = _int_minmax("max" if is_max else "min", av, bv)
        if r is not None:
            return r
        return _wrap(np.maximum(av, bv) if is_max else np.minimum(av, bv))

    @staticmethod
    def backward(ctx, g):
        av, bv = ctx.vals
        if _floats(av, bv) and g._data.dtype == (av if type(av) is np.ndarray else bv).dtype:
            # the same selects with the comparison and where kernels (a compiled step records
            # them): half on ties, nothing to the strict loser
            a, b = Tensor._make(av) if type(av) is np.ndarray else av, \
                Tensor._make(bv) if type(bv) is np.ndarray else bv
            gs = where(eq(a, b), g * 0.5, g)
            lose_a, lose_b = (lt(a, b), gt(a, b)) if ctx.is_max else (gt(a, b), lt(a, b))
            return (where(lose_a, 0.0, gs) if ctx.needs_input_grad[0] else None,
                    where(lose_b, 0.0, gs) if ctx.needs_input_grad[1] else None, None)
        with np.errstate(invalid="ignore"):
            a_loses = (av < bv) if ctx.is_max else (av > bv)
            b_loses = (av > bv) if ctx.is_max else (av < bv)
            tie = av == bv
        dt = g._data.dtype
        half = Tensor._make(np.where(tie, 0.5, 1.0).astype(dt))
        gs = g * half
        return (where(Tensor._make(np.asarray(~a_loses)), gs, 0.0)
                if ctx.needs_input_grad[0] else None,
                where(Tensor._make(np.asarray(~b_loses)), gs, 0.0)
                if ctx.needs_input_grad[1] else None, None)


class Log(Function):
    # NumPy-backed log used for the pow exponent gradient; the public log is the C++ one
    # (functional/activation.py).
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        if _floats(a._data):
            return _kernel("log", a._data)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _wrap(np.log(a._data))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class Cast(Function):
    @staticmethod
    def forward(ctx, a, np_dtype):
        ctx.src = a._data.dtype
        if ctx.src in _INT_KERNEL_DTYPES and np_dtype in _INT_KERNEL_DTYPES:
            # the kernel (recorded by gd.compile); it refuses NaN, Inf and out-of-range floats
            # for an integer dtype as check_int_cast does
            return Tensor._make(call_kernel(_core.int_unary, "cast", a._data, np_dtype))
        check_int_cast(a._data, np.dtype(np_dtype), "to")
        with np.errstate(over="ignore"):  # float64 -> float32 beyond the range is +-Inf
            return Tensor._make(a._data.astype(np_dtype))

    @staticmethod
    def backward(ctx, g):
        return Cast.apply(g, ctx.src) if ctx.src.kind == "f" else None, None


class BroadcastCopy(Function):
    @staticmethod
    def forward(ctx, src, shape, np_dtype):
        ctx.src = src._data.dtype
        return Tensor._make(np.broadcast_to(src._data, shape).astype(np_dtype))

    @staticmethod
    def backward(ctx, g):
        return (Cast.apply(g, ctx.src) if g._data.dtype != ctx.src else g), None, None


# ---- public functions -------------------------------------------------------------------
def add(a: Any, b: Any, alpha: Any = 1) -> Tensor:
    """a + alpha * b with broadcasting.

    >>> gd.add(gd.tensor([1.0, 2.0]), gd.tensor([10.0, 20.0]), alpha=2)
    tensor([21., 42.])
    """
    _check_operand(a, "add")
    _check_operand(b, "add")
    return Add.apply(_t(a), _t(b), alpha)


def sub(a: Any, b: Any, alpha: Any = 1) -> Tensor:
    """a - alpha * b with broadcasting.

    >>> gd.sub(gd.tensor([[5.0], [7.0]]), gd.tensor([1.0, 2.0]))  # (2, 1) and (2,) broadcast
    tensor([[4., 3.],
            [6., 5.]])
    """
    _check_operand(a, "sub")
    _check_operand(b, "sub")
    if alpha != 1:
        return Add.apply(_t(a), _t(b), -alpha)
    return Sub.apply(_t(a), _t(b))


def mul(a: Any, b: Any) -> Tensor:
    """a * b with broadcasting.

    >>> x = gd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> gd.mul(x, x).sum().backward()  # d(sum x*x)/dx = 2x
    >>> x.grad
    tensor([2., 4., 6.])
    """
    _check_operand(a, "mul")
    _check_operand(b, "mul")
    return Mul.apply(_t(a), _t(b))


def div(a: Any, b: Any) -> Tensor:
    """a / b (true division) with broadcasting.

    >>> gd.div(gd.tensor([1.0, 3.0]), 2)
    tensor([0.5000, 1.5000])
    """
    _check_operand(a, "div")
    _check_operand(b, "div")
    return Div.apply(_t(a), _t(b))


def neg(a: Tensor) -> Tensor:
    """-a elementwise (also `-t`).

    >>> gd.neg(gd.tensor([1.0, -2.0])).tolist()
    [-1.0, 2.0]
    """
    return Neg.apply(a)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001
    """a ** b with broadcasting; either may be a Python number.

    >>> gd.pow(gd.tensor([1.0, 2.0, 3.0]), 2)
    tensor([1., 4., 9.])
    >>> gd.pow(2, gd.tensor([0.0, 3.0]))
    tensor([1., 8.])
    """
    _check_operand(a, "pow")
    _check_operand(b, "pow")
    return Pow.apply(_t(a), _t(b))


def abs(a: Tensor) -> Tensor:  # noqa: A001
    """|a| elementwise; its gradient is sign(a) (0 at 0, as in PyTorch).

    >>> gd.abs(gd.tensor([-1.5, 2.0])).tolist()
    [1.5, 2.0]
    """
    return Abs.apply(a)


def sign(a: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of each element (NaN stays NaN); its gradient is 0.

    >>> gd.sign(gd.tensor([-3.0, 0.0, 2.0])).tolist()
    [-1.0, 0.0, 1.0]
    """
    return Sign.apply(a)


def sqrt(a: Tensor) -> Tensor:
    """Square root elementwise (NaN for negative numbers).

    >>> gd.sqrt(gd.tensor([4.0, 9.0])).tolist()
    [2.0, 3.0]
    """
    return Sqrt.apply(a)


def log(a: Tensor) -> Tensor:
    """Natural logarithm elementwise.

    >>> gd.log(gd.tensor([1.0])).tolist()
    [0.0]
    """
    return Log.apply(a)


def clamp(a: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limits a to [min, max]; either bound may be None, a number or a tensor.

    >>> gd.clamp(gd.tensor([-2.0, 0.5, 3.0]), min=0.0, max=1.0)
    tensor([0.0000, 0.5000, 1.0000])
    >>> gd.clamp(gd.tensor([-2.0, 0.5, 3.0]), max=gd.tensor([0.0, 0.0, 2.0]))
    tensor([-2.,  0.,  2.])
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    return Clamp.apply(a, _t(min), _t(max))


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """Elementwise a where cond else b (cond a bool tensor).

    >>> x = gd.tensor([-1.0, 2.0, -3.0])
    >>> gd.where(x > 0, x, gd.zeros(3))
    tensor([0., 2., 0.])
    """
    return Where.apply(cond, _t(a), _t(b))


def maximum(a: Any, b: Any) -> Tensor:
    """The larger of a and b elementwise, with broadcasting; NaN wins; on ties the gradient is
    split equally.

    >>> gd.maximum(gd.tensor([1.0, 5.0]), gd.tensor([3.0, 2.0])).tolist()
    [3.0, 5.0]
    """
    return Maximum.apply(_t(a), _t(b), True)


def minimum(a: Any, b: Any) -> Tensor:
    """The smaller of a and b elementwise, with broadcasting; NaN wins; on ties the gradient is
    split equally.

    >>> gd.minimum(gd.tensor([1.0, 5.0]), 2.0).tolist()
    [1.0, 2.0]
    """
    return Maximum.apply(_t(a), _t(b), False)


def cast(a: Tensor, np_dtype: Any) -> Tensor:
    return Cast.apply(a, np.dtype(np_dtype))


def broadcast_copy(src: Tensor, shape: tuple, d: Any) -> Tensor:
    return BroadcastCopy.apply(src, tuple(shape), d.np)


# Comparisons: not differentiable, return bool tensors (float operands: the float kernels;
# bool, integer and mixed operands: _core.int_binary, comparing in PyTorch's result dtype, so an
# int64 compared with a float32 is compared as float32; both kinds are recorded by gd.compile;
# anything else: NumPy).
def _cmp(ufunc: Any, name: str, a: Any, b: Any) -> Tensor:
    av, bv = _value(_t(a)), _value(_t(b))
    if _floats(av, bv):
        return _kernel(name, av, bv)
    r = _int_kernel(name, av, bv)
    if r is not None:
        return r
    with np.errstate(invalid="ignore"):
        return Tensor._make(np.asarray(ufunc(av, bv)))


def eq(a: Any, b: Any) -> Tensor:
    """a == b elementwise, with broadcasting: a bool tensor (not differentiable).

    >>> gd.eq(gd.tensor([1, 2, 3]), 2).tolist()
    [False, True, False]
    """
    return _cmp(np.equal, "eq", a, b)


def ne(a: Any, b: Any) -> Tensor:
    """a != b elementwise, with broadcasting: a bool tensor.

    >>> gd.ne(gd.tensor([1, 2]), 2).tolist()
    [True, False]
    """
    return _cmp(np.not_equal, "ne", a, b)


def lt(a: Any, b: Any) -> Tensor:
    """a < b elementwise, with broadcasting: a bool tensor.

    >>> gd.lt(gd.tensor([1.0, 3.0]), 2.0).tolist()
    [True, False]
    """
    return _cmp(np.less, "lt", a, b)


def le(a: Any, b: Any) -> Tensor:
    """a <= b elementwise, with broadcasting: a bool tensor.

    >>> gd.le(gd.tensor([2.0, 3.0]), 2.0).tolist()
    [True, False]
    """
    return _cmp(np.less_equal, "le", a, b)


def gt(a: Any, b: Any) -> Tensor:
    """a > b elementwise, with broadcasting: a bool tensor.

    >>> gd.gt(gd.tensor([1.0, 3.0]), 2.0).tolist()
    [False, True]
    """
    return _cmp(np.greater, "gt", a, b)


def ge(a: Any, b: Any) -> Tensor:
    """a >= b elementwise, with broadcasting: a bool tensor.

    >>> gd.ge(gd.tensor([2.0, 1.0]), 2.0).tolist()
    [True, False]
    """
    return _cmp(np.greater_equal, "ge", a, b)


def _logical(ufunc: Any, a: Any, b: Any, op: str) -> Tensor:
    av, bv = _value(a), _value(b)
    for v in (av, bv):
        if isinstance(v, np.ndarray) and v.dtype.kind not in "biu":
            raise TypeError(f"{op}: expected bool or integer tensors, got {v.dtype}")
    if type(av) is not float and type(bv) is not float:
        r = _int_kernel(_BITWISE[op], av, bv)
        if r is not None:
            return r
    return Tensor._make(np.asarray(ufunc(av, bv)))


_BITWISE = {"&": "and", "|": "or", "^": "xor"}


def logical_and(a: Any, b: Any) -> Tensor:
    """Elementwise AND of the truth values of a and b: a bool tensor.

    >>> gd.logical_and(gd.tensor([True, True]), gd.tensor([True, False])).tolist()
    [True, False]
    """
    av, bv = _value(_t(a)), _value(_t(b))
    r = _int_kernel("land", av, bv)
    return Tensor._make(np.asarray(np.logical_and(av, bv))) if r is None else r


def logical_or(a: Any, b: Any) -> Tensor:
    """Elementwise OR of the truth values of a and b: a bool tensor.

    >>> gd.logical_or(gd.tensor([True, False]), gd.tensor([False, False])).tolist()
    [True, False]
    """
    av, bv = _value(_t(a)), _value(_t(b))
    r = _int_kernel("lor", av, bv)
    return Tensor._make(np.asarray(np.logical_or(av, bv))) if r is None else r


def logical_not(a: Tensor) -> Tensor:
    """Elementwise NOT of the truth values of a: a bool tensor.

    >>> gd.logical_not(gd.tensor([True, False])).tolist()
    [False, True]
    """
    if a._data.dtype in _INT_KERNEL_DTYPES:
        return Tensor._make(call_kernel(_core.int_unary, "not", a._data))
    return Tensor._make(np.asarray(np.logical_not(a._data)))


def isnan(a: Tensor) -> Tensor:
    """True where a is NaN.

    >>> gd.isnan(gd.tensor([1.0, float("nan")])).tolist()
    [False, True]
    """
    av = _value(_t(a))
    if _floats(av):  # NaN is the one value unequal to itself (a kernel gd.compile records)
        return _kernel("ne", av, av)
    return Tensor._make(np.asarray(np.isnan(av)))


def isfinite(a: Tensor) -> Tensor:
    """True where a is neither NaN nor infinite.

    >>> gd.isfinite(gd.tensor([1.0, float("inf"), float("nan")])).tolist()
    [True, False, False]
    """
    av = _value(_t(a))
    if _floats(av):  # x - x is 0 exactly for a finite x, NaN for inf and NaN (kernels)
        return _kernel("eq", _kernel("sub", av, av)._data, 0.0)
    return Tensor._make(np.asarray(np.isfinite(av)))
