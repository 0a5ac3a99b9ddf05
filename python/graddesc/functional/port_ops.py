"""More of PyTorch's everyday tensor functions (issue 16): log1p, expm1, reciprocal, rsqrt,
remainder, fmod, floor_divide (the % and // operators), tril, triu, outer, bmm, masked_select,
nonzero, count_nonzero, isinf, isclose, allclose, equal, clamp_min, clamp_max.

NumPy computes each forward; the backward of the differentiable ones is written with Tensor ops
(so it is differentiable again). Under gd.compile a step that uses them runs eagerly, with the
compiler's warning. Results follow PyTorch's definitions (remainder takes the sign of the
divisor, fmod of the dividend; floor_divide rounds toward negative infinity).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor, call_kernel
from graddesc.autograd.function import Function
from graddesc.functional import elementwise as ew
from graddesc.functional import linear as lin
from graddesc.functional.math import _check_float, _check_tensor


def _operand(v: Any, like: Tensor, op: str, name: str) -> Tensor:
    """A Tensor operand from a Tensor, a Python number or a NumPy array/scalar."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (bool, int, float, np.ndarray, np.generic)):
        if isinstance(v, (bool, int, float)):  # a weak Python number: the tensor's dtype
            kind = like._data.dtype.kind
            dt = like._data.dtype if (kind == "f" or not isinstance(v, float)) else np.float32
            # (a constant of a recorded program, as the number itself would be)
            return Tensor._make(_compile_state.constant(np.asarray(v, dtype=dt)))
        from graddesc._tensor import _convert_array

        return Tensor._make(_convert_array(np.asarray(v), None, op))
    raise TypeError(f"{op}: argument '{name}' must be a Tensor or a number, got "
                    f"{type(v).__name__}")


class _Unary(Function):
    """y = f(x) by NumPy; dy/dx from (x, y) with Tensor ops."""

    @staticmethod
    def forward(ctx, x, f, grad):
        with np.errstate(all="ignore"):
            y = Tensor._make(np.asarray(f(x._data)).astype(x._data.dtype, copy=False))
        ctx.grad = grad
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return ctx.grad(g, x, y), None, None


def log1p(x: Tensor) -> Tensor:
    """log(1 + x), accurate for small x.

    >>> gd.log1p(gd.tensor([0.0, 1.0], dtype=gd.float64)).tolist()
    [0.0, 0.6931471805599453]
    """
    _check_float(x, "log1p")
    return _Unary.apply(x, np.log1p, lambda g, x, y: g / (x + 1.0))


def expm1(x: Tensor) -> Tensor:
    """exp(x) - 1, accurate for small x.

    >>> gd.expm1(gd.tensor([0.0])).tolist()
    [0.0]
    """
    _check_float(x, "expm1")
    return _Unary.apply(x, np.expm1, lambda g, x, y: g * (y + 1.0))


def reciprocal(x: Tensor) -> Tensor:
    """1 / x (integer input gives float32, as PyTorch).

    >>> gd.reciprocal(gd.tensor([2.0, 4.0])).tolist()
    [0.5, 0.25]
    """
    _check_tensor(x, "reciprocal")
    if x._data.dtype.kind != "f":
        x = x.float()
    if x._data.dtype in (np.float32, np.float64):  # the kernel (gd.compile records it)
        return ew.Reciprocal.apply(x)
    return _Unary.apply(x, np.reciprocal, lambda g, x, y: -(g * y * y))


def rsqrt(x: Tensor) -> Tensor:
    """1 / sqrt(x).

    >>> gd.rsqrt(gd.tensor([4.0])).tolist()
    [0.5]
    """
    _check_tensor(x, "rsqrt")
    if x._data.dtype.kind != "f":
        x = x.float()
    return _Unary.apply(x, lambda a: 1.0 / np.sqrt(a), lambda g, x, y: g * y * y * y * -0.5)


# ---- remainder, fmod, floor_divide -----------------------------------------------------------
def _binary_values(a: Any, b: Any, op: str) -> tuple:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    like = a if isinstance(a, Tensor) else b
    ta, tb = _operand(a, like, op, "input"), _operand(b, like, op, "other")
    weak = [isinstance(v, (bool, int, float)) for v in (a, b)]
    if any(weak):  # a Python number is weak (PyTorch's rule): the tensor's dtype decides,
        # except an int tensor with a float number, which gives float32
        return ta, tb, ta._data.dtype if weak[1] and like is a and not (
            isinstance(b, float) and like._data.dtype.kind != "f") else \
            tb._data.dtype if weak[0] and not (isinstance(a, float) and
                                                like._data.dtype.kind != "f") else \
            np.dtype(np.float32)
    return ta, tb, np.result_type(ta._data, tb._data)


_INT_KERNEL = (np.dtype(np.int32), np.dtype(np.int64))


class _Mod(Function):
    """remainder (floored) or fmod (truncated): d/da = 1, d/db = -q with q the quotient."""

    @staticmethod
    def forward(ctx, a, b, floored, dt):
        av, bv = a._data.astype(dt, copy=False), b._data.astype(dt, copy=False)
        if floored and dt in _INT_KERNEL:  # the kernel, which gd.compile records (integers are
            ctx.shapes, ctx.q = None, None  # not differentiable: no quotient to keep)
            return Tensor._make(call_kernel(_core.int_binary, "rem", av, bv))
        if dt.kind in "iu" and np.any(bv == 0):
            raise RuntimeError("ZeroDivisionError: integer remainder by zero")
        with np.errstate(all="ignore"):
            r = np.remainder(av, bv) if floored else np.fmod(av, bv)
            q = np.floor_divide(av, bv) if floored else np.trunc(av / bv)
        ctx.shapes = (a.shape, b.shape)
        ctx.q = Tensor._make(np.asarray(q))
        return Tensor._make(np.asarray(r))

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        ga = _sum_to(g, sa)
        gb = _sum_to(-(g * ctx.q), sb)
        return ga, gb, None, None


def _sum_to(g: Tensor, shape: Any) -> Tensor:
    """g summed over the dimensions that broadcasting added or stretched, back to shape."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape)
                                if s == 1 and g.shape[lead + i] != 1]
    out = g.sum(dim=tuple(dims), keepdim=True) if dims else g
    return out.reshape(*shape)


def remainder(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """input - floor(input / other) * other: the sign of the divisor (Python's %), as
    `input % other`. Differentiable in both arguments (d/d other = -floor(input / other)).

    >>> gd.remainder(gd.tensor([-3, 5]), 3).tolist()
    [0, 2]
    """
    a, b, dt = _binary_values(input, other, "remainder")
    return _Mod.apply(a, b, True, dt)


def fmod(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """The C remainder: the sign of the dividend.

    >>> gd.fmod(gd.tensor([-3.0, 5.0]), 3).tolist()
    [-0.0, 2.0]
    """
    a, b, dt = _binary_values(input, other, "fmod")
    return _Mod.apply(a, b, False, dt)


def floor_divide(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """floor(input / other), as `input // other` (not differentiable, as in PyTorch).

    >>> gd.floor_divide(gd.tensor([-3, 7]), 2).tolist()
    [-2, 3]
    """
    a, b, dt = _binary_values(input, other, "floor_divide")
    av, bv = a._data.astype(dt, copy=False), b._data.astype(dt, copy=False)
    if dt in _INT_KERNEL:  # (a zero divisor raises the same RuntimeError there, also in a replay)
        return Tensor._make(call_kernel(_core.int_binary, "floordiv", av, bv))
    if dt.kind in "iu" and np.any(bv == 0):
        raise RuntimeError("ZeroDivisionError: integer floor_divide by zero")
    with np.errstate(all="ignore"):
        return Tensor._make(np.asarray(np.floor_divide(av, bv)))


# ---- triangles, outer, bmm -------------------------------------------------------------------
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class _Tri(Function):
    @staticmethod
    def forward(ctx, x, diagonal, upper):
        ctx.args = (diagonal, upper)
        xd = x._data
        if xd.dtype in _FLOATS:
            # where(triangle, x, 0) by the where kernel (what np.tril computes, +0.0 outside),
            # the triangle a constant of the shape, so a compiled step records it
            n, m = xd.shape[-2:]
            keep = ~np.tri(n, m, diagonal - 1, dtype=bool) if upper else \
                np.tri(n, m, diagonal, dtype=bool)
            return ew._kernel("where", _compile_state.constant(keep), xd, 0.0)
        f = np.triu if upper else np.tril
        return Tensor._make(np.ascontiguousarray(f(xd, diagonal)))

    @staticmethod
    def backward(ctx, g):
        diagonal, upper = ctx.args
        return _Tri.apply(g, diagonal, upper), None, None


def _tri(x: Tensor, diagonal: Any, upper: bool, op: str) -> Tensor:
    _check_tensor(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}")
    if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
        raise TypeError(f"{op}: diagonal must be an int, got {type(diagonal).__name__}")
    return _Tri.apply(x, int(diagonal), upper)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The lower triangle of the last two dimensions (entries above `diagonal` set to 0).

    >>> gd.tril(gd.ones(2, 2)).tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    return _tri(input, diagonal, False, "tril")


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The upper triangle of the last two dimensions (entries below `diagonal` set to 0).

    >>> gd.triu(gd.ones(2, 2)).tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    return _tri(input, diagonal, True, "triu")


def outer(input: Tensor, vec2: Tensor) -> Tensor:  # noqa: A002
    """The outer product of two 1-d tensors: (n,) x (m,) -> (n, m).

    >>> gd.outer(gd.tensor([1.0, 2.0]), gd.tensor([3.0, 4.0])).tolist()
    [[3.0, 4.0], [6.0, 8.0]]
    """
    for name, v in (("input", input), ("vec2", vec2)):
        _check_tensor(v, "outer")
        if v.ndim != 1:
            raise ValueError(f"outer: argument '{name}' must be 1-d, got shape "
                             f"{tuple(v.shape)}")
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:  # noqa: A002
    """Batched matrix product: (b, n, k) @ (b, k, m) -> (b, n, m), without broadcasting.

    >>> gd.bmm(gd.ones(2, 1, 3), gd.ones(2, 3, 1)).shape
    graddesc.Size([2, 1, 1])
    """
    for name, v in (("input", input), ("mat2", mat2)):
        _check_tensor(v, "bmm")
        if v.ndim != 3:
            raise ValueError(f"bmm: argument '{name}' must be 3-d, got shape {tuple(v.shape)}")
    if input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise ValueError(f"bmm: shapes {tuple(input.shape)} and {tuple(mat2.shape)} don't "
                         f"match (expected (b, n, k) and (b, k, m))")
    return lin.matmul(input, mat2)


# ---- selection and tests ---------------------------------------------------------------------
def masked_select(input: Tensor, mask: Tensor) -> Tensor:  # noqa: A002
    """The 1-d tensor of input's elements where the bool mask (broadcast to input) is True.

    >>> gd.masked_select(gd.tensor([1.0, 2.0, 3.0]), gd.tensor([True, False, True])).tolist()
    [1.0, 3.0]
    """
    _check_tensor(input, "masked_select")
    if not isinstance(mask, Tensor) or mask._data.dtype != np.bool_:
        raise TypeError(f"masked_select: argument 'mask' must be a bool Tensor, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    try:
        shape = np.broadcast_shapes(tuple(input.shape), tuple(mask.shape))
    except ValueError:
        raise ValueError(f"masked_select: mask of shape {tuple(mask.shape)} does not broadcast "
                         f"with input of shape {tuple(input.shape)}") from None
    x = input.expand(*shape) if tuple(input.shape) != shape else input
    m = np.broadcast_to(mask._data, shape)
    return x[Tensor._make(np.ascontiguousarray(m))]


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Any:  # noqa: A002
    """The int64 indices of the nonzero elements: (n, ndim), or a tuple of ndim 1-d tensors.

    >>> gd.nonzero(gd.tensor([0.0, 2.0, 3.0])).tolist()
    [[1], [2]]
    """
    _check_tensor(input, "nonzero")
    a = input._data
    if as_tuple:
        return tuple(Tensor._make(i.astype(np.int64)) for i in np.nonzero(np.atleast_1d(a)))
    return Tensor._make(np.argwhere(a).astype(np.int64).reshape(-1, a.ndim))


def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """The number of nonzero elements (over dim, an int or tuple, or all), int64.

    >>> gd.count_nonzero(gd.tensor([[0, 1], [2, 3]]), dim=0).tolist()
    [1, 2]
    """
    _check_tensor(input, "count_nonzero")
    return Tensor._make(np.asarray(np.count_nonzero(input._data, axis=dim), dtype=np.int64))


def isinf(input: Tensor) -> Tensor:  # noqa: A002
    """Where input is +-infinity (bool).

    >>> gd.isinf(gd.tensor([1.0, float("inf")])).tolist()
    [False, True]
    """
    _check_tensor(input, "isinf")
    return Tensor._make(np.asarray(np.isinf(input._data)))


def isclose(input: Tensor, other: Any, rtol: float = 1e-05, atol: float = 1e-08,  # noqa: A002
            equal_nan: bool = False) -> Tensor:
    """|input - other| <= atol + rtol * |other| elementwise (bool), with broadcasting.

    >>> gd.isclose(gd.tensor([1.0, 2.0]), gd.tensor([1.0, 2.1])).tolist()
    [True, False]
    """
    a, b, _ = _binary_values(input, other, "isclose")
    return Tensor._make(np.asarray(np.isclose(a._data, b._data, rtol=rtol, atol=atol,
                                              equal_nan=equal_nan)))


def allclose(input: Tensor, other: Any, rtol: float = 1e-05, atol: float = 1e-08,  # noqa: A002
             equal_nan: bool = False) -> bool:
    """Whether isclose holds everywhere (a Python bool).

    >>> gd.allclose(gd.tensor([1.0]), gd.tensor([1.0 + 1e-9]))
    True
    """
    return bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def equal(input: Tensor, other: Tensor) -> bool:  # noqa: A002
    """Whether both have the same shape and the same values (a Python bool).

    >>> gd.equal(gd.tensor([1, 2]), gd.tensor([1, 2]))
    True
    """
    _check_tensor(input, "equal")
    _check_tensor(other, "equal")
    return tuple(input.shape) == tuple(other.shape) and bool(np.all(input._data == other._data))


def clamp_min(input: Tensor, min: Any) -> Tensor:  # noqa: A002
    """clamp(input, min=min).

    >>> gd.clamp_min(gd.tensor([-1.0, 2.0]), 0.0).tolist()
    [0.0, 2.0]
    """
    return ew.clamp(input, min, None)


def clamp_max(input: Tensor, max: Any) -> Tensor:  # noqa: A002
    """clamp(input, max=max).

    >>> gd.clamp_max(gd.tensor([-1.0, 2.0]), 0.0).tolist()
    [-1.0, 0.0]
    """
    return ew.clamp(input, None, max)


__all__ = ["allclose", "bmm", "clamp_max", "clamp_min", "count_nonzero", "equal", "expm1",
           "floor_divide", "fmod", "isclose", "isinf", "log1p", "masked_select", "nonzero",
           "outer", "reciprocal", "remainder", "rsqrt", "tril", "triu"]
