"""Pointwise math and reductions for PyTorch ports.

Compositions of kernel ops (differentiable for free, captured by gd.compile): log2, log10,
logaddexp, nan_to_num, logit, std_mean, var_mean, nansum, nanmean. Compositions that involve a
NumPy step (differentiable, but a gd.compile step using them runs eagerly): trunc and frac
(floor/ceil), heaviside (no gradient), median, cummax, cummin (the indices are picked with
NumPy, the values taken with gather, so the gradient reaches the picked elements).

NumPy forward with a Tensor-op backward (as functional/port_ops.py; the backward is
differentiable again; a gd.compile step that uses them runs eagerly, with the compiler's
warning): erf, erfc, erfinv, atan2, hypot, sinh, cosh, tan, asin, acos, atan, asinh, acosh,
atanh, exp2, logcumsumexp. NumPy has no erf: `_erf_np`/`_erfc_np` below evaluate it (a power
series below |x| = 2, a continued fraction for erfc above, exp(-x^2) with x split in two so that
x^2 is exact), within a few units in the last place of float64 (the tests compare with math.erf
and math.erfc elementwise).
"""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import numpy as np

from graddesc import _creation
from graddesc._tensor import Tensor, _norm_dim
from graddesc.autograd.function import Function
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional import indexing as idx
from graddesc.functional import math as gmath
from graddesc.functional import reduce as red
from graddesc.functional.math import _check_float, _check_tensor
from graddesc.functional.port_ops import _binary_values, _sum_to, _Unary

values_indices = namedtuple("values_indices", ["values", "indices"])


# ---- erf in NumPy ---------------------------------------------------------------------------
def _exp_mx2(x: np.ndarray) -> np.ndarray:
    """exp(-x^2) without the rounding error of x * x: x = hi + lo with hi a multiple of 2^-12."""
    hi = np.round(x * 4096.0) / 4096.0
    return np.exp(-hi * hi) * np.exp(-(x - hi) * (x + hi))


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!! (positive terms), |x| < 2."""
    x2 = x * x
    term = x.copy()
    s = x.copy()
    for n in range(1, 100):
        term = term * (2.0 * x2 / (2 * n + 1))
        s = s + term
    return (2.0 / math.sqrt(math.pi)) * _exp_mx2(x) * s


def _erfc_cf(x: np.ndarray) -> np.ndarray:
    """erfc(x) for x >= 1: exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))."""
    t = x.copy()
    for n in range(300, 0, -1):
        t = x + (n / 2.0) / t
    return _exp_mx2(x) / (math.sqrt(math.pi) * t)


def _erf_np(a: np.ndarray) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    ax = np.abs(x)
    out = np.empty_like(x)
    small = ax < 2.0
    with np.errstate(all="ignore"):
        out[small] = _erf_series(ax[small])
        big = ~small & ~np.isnan(ax)
        out[big] = 1.0 - _erfc_cf(np.minimum(ax[big], 40.0))
    out[np.isnan(ax)] = np.nan
    return np.copysign(out, x)


def _erfc_np(a: np.ndarray) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    out = np.empty_like(x)
    tail = x >= 1.0
    with np.errstate(all="ignore"):
        out[tail] = _erfc_cf(np.minimum(x[tail], 40.0))
        head = ~tail & ~np.isnan(x)
        out[head] = 1.0 - _erf_np(x[head])
    out[np.isnan(x)] = np.nan
    return out


def _erfinv_np(a: np.ndarray) -> np.ndarray:
    """Winitzki's closed form as the start, then Newton steps on erf (the residual of |y| > 0.5
    computed from erfc and 1 - |y|, which is exact there)."""
    y = np.asarray(a, dtype=np.float64)
    ay = np.abs(y)
    with np.errstate(all="ignore"):
        ln = np.log1p(-ay * ay)
        c = 2.0 / (math.pi * 0.147) + ln / 2.0
        x = np.sqrt(np.sqrt(c * c - ln / 0.147) - c)
        for _ in range(4):
            r = np.where(ay > 0.5, _erfc_np(x) - (1.0 - ay), ay - _erf_np(x))
            step = r / ((2.0 / math.sqrt(math.pi)) * _exp_mx2(x))
            x = np.where(np.isfinite(x), x + step, x)
    x = np.where(ay == 1.0, np.inf, np.where(ay > 1.0, np.nan, x))
    return np.copysign(x, y)


def _as_float(x: Any, op: str) -> Tensor:
    _check_tensor(x, op)
    return x if x._data.dtype.kind == "f" else x.float()


def _unary(x: Tensor, op: str, f: Any, grad: Any) -> Tensor:
    return _Unary.apply(_as_float(x, op), f, grad)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf(input: Tensor) -> Tensor:  # noqa: A002
    """The error function 2/sqrt(pi) * integral of exp(-t^2) from 0 to input.

    >>> round(gd.erf(gd.tensor([1.0], dtype=gd.float64)).item(), 12)
    0.84270079295
    """
    return _unary(input, "erf", _erf_np, lambda g, x, y: g * act.exp(-(x * x)) *
                  _TWO_OVER_SQRT_PI)


def erfc(input: Tensor) -> Tensor:  # noqa: A002
    """1 - erf(input), accurate where erf is close to 1.

    >>> gd.erfc(gd.tensor([0.0])).item()
    1.0
    """
    return _unary(input, "erfc", _erfc_np, lambda g, x, y: g * act.exp(-(x * x)) *
                  -_TWO_OVER_SQRT_PI)


def erfinv(input: Tensor) -> Tensor:  # noqa: A002
    """The inverse of erf on (-1, 1) (+-inf at +-1, nan outside).

    >>> round(gd.erfinv(gd.tensor([0.5], dtype=gd.float64)).item(), 12)
    0.476936276204
    """
    return _unary(input, "erfinv", _erfinv_np, lambda g, x, y: g * act.exp(y * y) *
                  (math.sqrt(math.pi) / 2.0))


# ---- trigonometric and hyperbolic -----------------------------------------------------------
def _inv_sqrt(t: Tensor) -> Tensor:
    return ew.sqrt(t).reciprocal()


def sinh(input: Tensor) -> Tensor:  # noqa: A002
    """Hyperbolic sine.

    >>> gd.sinh(gd.tensor([0.0])).item()
    0.0
    """
    return _unary(input, "sinh", np.sinh, lambda g, x, y: g * cosh(x))


def cosh(input: Tensor) -> Tensor:  # noqa: A002
    """Hyperbolic cosine.

    >>> gd.cosh(gd.tensor([0.0])).item()
    1.0
    """
    return _unary(input, "cosh", np.cosh, lambda g, x, y: g * sinh(x))


def tan(input: Tensor) -> Tensor:  # noqa: A002
    """Tangent.

    >>> gd.tan(gd.tensor([0.0])).item()
    0.0
    """
    return _unary(input, "tan", np.tan, lambda g, x, y: g * (y * y + 1.0))


def asin(input: Tensor) -> Tensor:  # noqa: A002
    """Inverse sine (nan outside [-1, 1]).

    >>> gd.asin(gd.tensor([0.0])).item()
    0.0
    """
    return _unary(input, "asin", np.arcsin, lambda g, x, y: g * _inv_sqrt(1.0 - x * x))


def acos(input: Tensor) -> Tensor:  # noqa: A002
    """Inverse cosine (nan outside [-1, 1]).

    >>> gd.acos(gd.tensor([1.0])).item()
    0.0
    """
    return _unary(input, "acos", np.arccos, lambda g, x, y: -(g * _inv_sqrt(1.0 - x * x)))


def atan(input: Tensor) -> Tensor:  # noqa: A002
    """Inverse tangent.

    >>> gd.atan(gd.tensor([0.0])).item()
    0.0
    """
    return _unary(input, "atan", np.arctan, lambda g, x, y: g / (x * x + 1.0))


def asinh(input: Tensor) -> Tensor:  # noqa: A002
    """Inverse hyperbolic sine.

    >>> gd.asinh(gd.tensor([0.0])).item()
    0.0
    """
    return _unary(input, "asinh", np.arcsinh, lambda g, x, y: g * _inv_sqrt(x * x + 1.0))


def acosh(input: Tensor) -> Tensor:  # noqa: A002
    """Inverse hyperbolic cosine (nan below 1).

    >>> gd.acosh(gd.tensor([1.0])).item()
    0.0
    """
    return _unary(input, "acosh", np.arccosh, lambda g, x, y: g * _inv_sqrt(x * x - 1.0))


def atanh(input: Tensor) -> Tensor:  # noqa: A002
    """Inverse hyperbolic tangent (+-inf at +-1, nan outside).

    >>> gd.atanh(gd.tensor([0.0])).item()
    0.0
    """
    return _unary(input, "atanh", np.arctanh, lambda g, x, y: g / (1.0 - x * x))


def exp2(input: Tensor) -> Tensor:  # noqa: A002
    """2 ** input.

    >>> gd.exp2(gd.tensor([3.0])).item()
    8.0
    """
    return _unary(input, "exp2", np.exp2, lambda g, x, y: g * y * math.log(2.0))


def log2(input: Tensor) -> Tensor:  # noqa: A002
    """Base-2 logarithm: log(input) / log(2) (the log kernel).

    >>> gd.log2(gd.tensor([8.0])).item()
    3.0
    """
    return act.log(_as_float(input, "log2")) * (1.0 / math.log(2.0))


def log10(input: Tensor) -> Tensor:  # noqa: A002
    """Base-10 logarithm: log(input) / log(10) (the log kernel).

    >>> round(gd.log10(gd.tensor([100.0])).item(), 5)
    2.0
    """
    return act.log(_as_float(input, "log10")) * (1.0 / math.log(10.0))


def _isnan(t: Tensor) -> Tensor:
    """t != t: the comparison kernel (gd.compile records it; isnan is NumPy)."""
    return ew.ne(t, t)


def _isfinite(t: Tensor) -> Tensor:
    """t - t == 0 (nan for +-inf and nan): kernels only."""
    return ew.eq(t - t, 0.0)


# ---- binary ---------------------------------------------------------------------------------
class _Binary(Function):
    """y = f(a, b) by NumPy (broadcasting); the gradients from (a, b, y) with Tensor ops."""

    @staticmethod
    def forward(ctx, a, b, f, grad):
        with np.errstate(all="ignore"):
            y = Tensor._make(np.asarray(f(a._data, b._data)).astype(a._data.dtype, copy=False))
        ctx.grad = grad
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        ga, gb = ctx.grad(g, a, b, y)
        return _sum_to(ga, a.shape), _sum_to(gb, b.shape), None, None


def _float_pair(input: Any, other: Any, op: str) -> tuple:
    a, b, dt = _binary_values(input, other, op)
    if dt.kind != "f":
        dt = np.dtype(np.float32)
    a = a if a._data.dtype == dt else a.to(_dtype_of(dt))
    b = b if b._data.dtype == dt else b.to(_dtype_of(dt))
    return a, b


def _dtype_of(dt: np.dtype) -> Any:
    from graddesc._dtype import float32, float64

    return float64 if dt == np.float64 else float32


def atan2(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """The angle of the point (other, input): atan(input / other) in the right quadrant.

    >>> round(gd.atan2(gd.tensor([1.0]), gd.tensor([-1.0])).item(), 5)
    2.35619
    """
    a, b = _float_pair(input, other, "atan2")

    def grad(g: Tensor, a: Tensor, b: Tensor, y: Tensor) -> tuple:
        r = g / (a * a + b * b)
        return r * b, -(r * a)

    return _Binary.apply(a, b, np.arctan2, grad)


def hypot(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """sqrt(input^2 + other^2) without overflow or underflow in the squares.

    >>> gd.hypot(gd.tensor([3.0]), gd.tensor([4.0])).item()
    5.0
    """
    a, b = _float_pair(input, other, "hypot")
    return _Binary.apply(a, b, np.hypot, lambda g, a, b, y: (g * a / y, g * b / y))


def logaddexp(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """log(exp(input) + exp(other)) without overflow: max + softplus(-|input - other|).

    >>> round(gd.logaddexp(gd.tensor([0.0]), gd.tensor([0.0])).item(), 6)
    0.693147
    """
    a, b = _float_pair(input, other, "logaddexp")
    m = ew.maximum(a, b)
    d = ew.abs(a - b)
    finite = _isfinite(d)  # both -inf (or equal infinities): the max alone
    zero = _creation.zeros((), dtype=d.dtype)
    return m + ew.where(finite, act.softplus(-ew.where(finite, d, zero)), zero)


# ---- rounding and cleaning ------------------------------------------------------------------
def trunc(input: Tensor) -> Tensor:  # noqa: A002
    """Rounds toward zero (zero gradient, as PyTorch).

    >>> gd.trunc(gd.tensor([-1.5, 1.5])).tolist()
    [-1.0, 1.0]
    """
    _check_tensor(input, "trunc")
    if input._data.dtype.kind != "f":
        return input.clone()
    zero = _creation.zeros((), dtype=input.dtype)  # a constant under gd.compile
    return ew.where(ew.lt(input, zero), gmath.ceil(input), gmath.floor(input))


def frac(input: Tensor) -> Tensor:  # noqa: A002
    """input - trunc(input), the fractional part with input's sign (gradient 1).

    >>> gd.frac(gd.tensor([-1.5, 2.25])).tolist()
    [-0.5, 0.25]
    """
    _check_float(input, "frac")
    return input - trunc(input).detach()


def nan_to_num(input: Tensor, nan: float = 0.0, posinf: Any = None,  # noqa: A002
               neginf: Any = None) -> Tensor:
    """nan, +inf and -inf replaced (by default with 0 and the dtype's largest and lowest finite
    values); the gradient passes where input is finite, 0 elsewhere.

    >>> gd.nan_to_num(gd.tensor([float("nan"), 1.0, float("-inf")]), neginf=-5.0).tolist()
    [0.0, 1.0, -5.0]
    """
    _check_tensor(input, "nan_to_num")
    if input._data.dtype.kind != "f":
        return input.clone()
    info = np.finfo(input._data.dtype)
    pi = float(info.max) if posinf is None else float(posinf)
    ni = float(info.min) if neginf is None else float(neginf)

    def const(v: float) -> Tensor:
        return _creation.full((), v, dtype=input.dtype)  # a constant under gd.compile

    pos = ew.gt(input, 0.0)
    fill = ew.where(_isnan(input), const(nan), ew.where(pos, const(pi), const(ni)))
    return ew.where(_isfinite(input), input, fill)


def logit(input: Tensor, eps: Any = None) -> Tensor:  # noqa: A002
    """log(p / (1 - p)); with eps, p is clamped to [eps, 1 - eps] first (gradient 0 outside).

    >>> gd.logit(gd.tensor([0.5])).item()
    0.0
    """
    x = _as_float(input, "logit")
    if eps is not None:
        e = float(eps)
        if not 0.0 <= e <= 0.5:
            raise ValueError(f"logit: eps must be in [0, 0.5], got {eps}")
        x = ew.clamp(x, e, 1.0 - e)
    return act.log(x / (1.0 - x))


def heaviside(input: Tensor, values: Any) -> Tensor:  # noqa: A002
    """0 where input < 0, 1 where input > 0, values (broadcast) where input == 0.

    >>> gd.heaviside(gd.tensor([-1.0, 0.0, 2.0]), gd.tensor([0.5])).tolist()
    [0.0, 0.5, 1.0]
    """
    _check_tensor(input, "heaviside")
    if not isinstance(values, Tensor):
        raise TypeError(f"heaviside: argument 'values' must be a Tensor, got "
                        f"{type(values).__name__}")
    if values._data.dtype != input._data.dtype:
        raise TypeError(f"heaviside: input and values must have the same dtype, got "
                        f"{input.dtype} and {values.dtype}")
    a, v = input._data, values._data
    try:
        out = np.where(a == 0, v, (a > 0).astype(a.dtype))
    except ValueError:
        raise ValueError(f"heaviside: values of shape {tuple(values.shape)} does not broadcast "
                         f"with input of shape {tuple(input.shape)}") from None
    return Tensor._make(np.ascontiguousarray(out.astype(a.dtype, copy=False)))


# ---- reductions -----------------------------------------------------------------------------
def var_mean(input: Tensor, dim: Any = None, unbiased: Any = None,  # noqa: A002
             keepdim: bool = False, *, correction: Any = None) -> tuple:
    """(var, mean) over dim, as var(...) and mean(...).

    >>> v, m = gd.var_mean(gd.tensor([1.0, 3.0]))
    >>> v.item(), m.item()
    (2.0, 2.0)
    """
    return (red.var(input, dim, unbiased, keepdim, correction=correction),
            red.mean(input, dim, keepdim))


def std_mean(input: Tensor, dim: Any = None, unbiased: Any = None,  # noqa: A002
             keepdim: bool = False, *, correction: Any = None) -> tuple:
    """(std, mean) over dim, as std(...) and mean(...).

    >>> s, m = gd.std_mean(gd.tensor([1.0, 3.0]), correction=0)
    >>> s.item(), m.item()
    (1.0, 2.0)
    """
    return (red.std(input, dim, unbiased, keepdim, correction=correction),
            red.mean(input, dim, keepdim))


def nansum(input: Tensor, dim: Any = None, keepdim: bool = False, *,  # noqa: A002
           dtype: Any = None) -> Tensor:
    """sum with nan counted as 0 (gradient 0 at the nans).

    >>> gd.nansum(gd.tensor([1.0, float("nan"), 2.0])).item()
    3.0
    """
    _check_tensor(input, "nansum")
    if input._data.dtype.kind != "f":
        return red.sum(input, dim, keepdim, dtype=dtype)
    zero = _creation.zeros((), dtype=input.dtype)  # a constant under gd.compile
    return red.sum(ew.where(_isnan(input), zero, input), dim, keepdim, dtype=dtype)


def nanmean(input: Tensor, dim: Any = None, keepdim: bool = False, *,  # noqa: A002
            dtype: Any = None) -> Tensor:
    """mean over the elements that are not nan (nan where all are).

    >>> gd.nanmean(gd.tensor([1.0, float("nan"), 2.0])).item()
    1.5
    """
    _check_float(input, "nanmean")
    one = _creation.ones((), dtype=input.dtype)
    zero = _creation.zeros((), dtype=input.dtype)
    count = red.sum(ew.where(ew.eq(input, input), one, zero), dim, keepdim)
    return nansum(input, dim, keepdim, dtype=dtype) / count


def _pick(input: Tensor, dim: Any, keepdim: bool, op: str, choose: Any) -> Any:
    """values and indices from an int64 index array that `choose(a, axis)` picks along dim
    (keepdims shape); the values by gather, so the gradient flows to the picked elements."""
    _check_tensor(input, op)
    x = input if input.ndim else input.reshape(1)
    d = _norm_dim(dim, x.ndim, op)
    if x.shape[d] == 0:
        raise IndexError(f"{op}: expected a non-empty dimension {d}, got shape "
                         f"{tuple(input.shape)}")
    ind = np.ascontiguousarray(choose(x._data, d).astype(np.int64))
    vals = idx.gather(x, d, Tensor._make(ind))
    if not keepdim or not input.ndim:
        vals = vals.squeeze(d)
        ind = ind.squeeze(d)
    if not input.ndim:
        vals, ind = vals.reshape(()), ind.reshape(())
    return values_indices(vals, Tensor._make(np.ascontiguousarray(ind)))


def _lower_median_index(a: np.ndarray, d: int) -> np.ndarray:
    n = a.shape[d]
    order = np.argsort(a, axis=d, kind="stable")  # nan sorts last
    k = np.take(order, [(n - 1) // 2], axis=d)
    if a.dtype.kind == "f":
        isn = np.isnan(a)
        has = isn.any(axis=d, keepdims=True)
        k = np.where(has, np.argmax(isn, axis=d, keepdims=True), k)  # a nan: its (first) index
    return k


def median(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A002
    """The lower median (the smaller middle element for an even count, as PyTorch): over all
    elements (a 0-d tensor) or along dim ((values, indices)); nan if the slice has a nan.

    >>> gd.median(gd.tensor([4.0, 1.0, 3.0, 2.0])).item()
    2.0
    >>> gd.median(gd.tensor([[1.0, 5.0, 3.0]]), dim=1).indices.tolist()
    [2]
    """
    _check_tensor(input, "median")
    if dim is None:
        if input.numel() == 0:
            return Tensor._make(np.asarray(np.nan, dtype=input._data.dtype))
        return _pick(input.reshape(-1), 0, False, "median", _lower_median_index).values
    return _pick(input, dim, keepdim, "median", _lower_median_index)


def _cum_index(a: np.ndarray, d: int, better: Any) -> np.ndarray:
    """The running arg-best along d: a later element wins ties (PyTorch's rule), a nan wins
    and keeps winning."""
    m = np.moveaxis(a, d, 0)
    out = np.empty(m.shape, dtype=np.int64)
    best = m[0].copy()
    bi = np.zeros(m.shape[1:], dtype=np.int64)
    out[0] = bi
    fl = a.dtype.kind == "f"
    for i in range(1, m.shape[0]):
        v = m[i]
        take = better(v, best)
        if fl:
            take = (take | np.isnan(v)) & ~np.isnan(best)
        best = np.where(take, v, best)
        bi = np.where(take, i, bi)
        out[i] = bi
    return np.moveaxis(out, 0, d)


def _cum(input: Tensor, dim: int, op: str, better: Any) -> Any:
    _check_tensor(input, op)
    x = input if input.ndim else input.reshape(1)
    d = _norm_dim(dim, x.ndim, op)
    if x.numel() == 0:
        return values_indices(input.clone(), Tensor._make(np.zeros(input.shape, np.int64)))
    ind = np.ascontiguousarray(_cum_index(x._data, d, better))
    vals = idx.gather(x, d, Tensor._make(ind))
    if not input.ndim:
        vals, ind = vals.reshape(()), ind.reshape(())
    return values_indices(vals, Tensor._make(np.ascontiguousarray(ind)))


def cummax(input: Tensor, dim: int) -> Any:  # noqa: A002
    """The running maximum along dim and where it was taken (values, indices).

    >>> gd.cummax(gd.tensor([1.0, 3.0, 2.0, 5.0]), 0).values.tolist()
    [1.0, 3.0, 3.0, 5.0]
    """
    return _cum(input, dim, "cummax", np.greater_equal)


def cummin(input: Tensor, dim: int) -> Any:  # noqa: A002
    """The running minimum along dim and where it was taken (values, indices).

    >>> gd.cummin(gd.tensor([3.0, 1.0, 2.0, 0.0]), 0).indices.tolist()
    [0, 1, 1, 3]
    """
    return _cum(input, dim, "cummin", np.less_equal)


class _LogCumSumExp(Function):
    """y = log(cumsum(exp(x))) along dim by np.logaddexp.accumulate (no overflow, no
    underflow of the early terms). dL/dx_j = sum over i >= j of g_i exp(x_j - y_i), computed in
    the log domain (a reversed logcumsumexp of log|g| - y, positive and negative g apart), so
    large |x| neither overflows nor underflows."""

    @staticmethod
    def forward(ctx, x, dim):
        with np.errstate(all="ignore"):
            y = np.logaddexp.accumulate(x._data, axis=dim).astype(x._data.dtype, copy=False)
        out = Tensor._make(np.ascontiguousarray(y))
        ctx.dim = dim
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        d = ctx.dim
        zero = _creation.zeros((), dtype=g.dtype)
        ninf = _creation.full((), -math.inf, dtype=g.dtype)

        def part(gp: Tensor) -> Tensor:  # gp >= 0
            lg = ew.where(ew.gt(gp, zero), act.log(ew.where(ew.gt(gp, zero), gp,
                                                            zero + 1.0)), ninf) - y
            rev = idx.flip(logcumsumexp(idx.flip(lg, d), d), d)
            return act.exp(x + rev)

        return part(ew.maximum(g, zero)) - part(ew.maximum(-g, zero)), None


def logcumsumexp(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """log(cumsum(exp(input), dim)) without overflow or underflow.

    >>> [round(v, 4) for v in gd.logcumsumexp(gd.tensor([0.0, 0.0, 0.0]), 0).tolist()]
    [0.0, 0.6931, 1.0986]
    """
    x = _as_float(input, "logcumsumexp")
    if x.ndim == 0:
        return _LogCumSumExp.apply(x.reshape(1), 0).reshape(())
    return _LogCumSumExp.apply(x, _norm_dim(dim, x.ndim, "logcumsumexp"))


__all__ = ["acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cosh", "cummax",
           "cummin", "erf", "erfc", "erfinv", "exp2", "frac", "heaviside", "hypot", "log10",
           "log2", "logaddexp", "logcumsumexp", "logit", "median", "nan_to_num", "nanmean",
           "nansum", "sinh",
           "std_mean", "tan", "trunc", "var_mean"]
