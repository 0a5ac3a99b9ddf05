"""Reductions: sum, mean, max/min (values differentiable), argmax/argmin, var/std, logsumexp.

The forward of every reduction of a float32/float64 tensor is one call of the C++ kernel
_core.reduce (src/cpp/reduce.cpp) over any set of axes, reading the tensor in place whatever
its strides: identical bits for any thread count, and recorded by gd.compile. Integer and bool
tensors stay on NumPy. Backward formulas are written with other ops.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from typing import Any, Optional

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, _norm_dim, call_kernel, contiguous
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function
from graddesc.autograd.grad_mode import is_grad_enabled
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional.indexing import gather_array, scatter_array

values_indices = namedtuple("values_indices", ["values", "indices"])


def _dims(dim: Any, ndim: int, op: str) -> Optional[tuple]:
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        dims = tuple(sorted({_norm_dim(d, ndim, op) for d in dim}))
        if len(dims) != len(dim):
            raise RuntimeError(f"{op}: dim {tuple(dim)} appears multiple times in the list of dims")
    else:
        dims = (_norm_dim(dim, ndim, op),)
    # a 0-d tensor accepts dim 0 or -1 (as in PyTorch) but has no axis: reduce its one element
    return None if ndim == 0 and dims else dims


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_kernel_float(a: np.ndarray) -> bool:
    return a.dtype in _KERNEL_DTYPES


def _reduce(name: str, a: np.ndarray, dims: Optional[tuple], keepdim: bool,
            param: float = 0.0) -> Any:
    """The kernel reduction `name` (a key of _core.REDUCE_OPS) of a over dims (None: all)."""
    return call_kernel(_core.reduce, _core.REDUCE_OPS[name], a, dims, keepdim, param)


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        a = x._data
        ctx.shape = a.shape
        ctx.dims, ctx.keepdim = dims, keepdim
        if _is_kernel_float(a):
            return Tensor._make(_reduce("sum", a, dims, keepdim))
        if a.dtype.kind in "bi" and a.dtype in ew._INT_KERNEL_DTYPES:
            # bool, int32, int64: the int64 sum by the kernel (gd.compile records it)
            return Tensor._make(call_kernel(_core.int_sum, a, dims, keepdim))
        with np.errstate(all="ignore"):  # inf + -inf is NaN silently, as in the kernels
            out = np.sum(a, axis=dims, dtype=np.int64 if a.dtype.kind in "biu" else None)
        if keepdim:
            out = np.reshape(out, _keep_shape(a.shape, dims))
        return Tensor._make(np.asarray(out))

    @staticmethod
    def backward(ctx, g):
        fast = _spread(g, ctx.shape, ctx.dims, ctx.keepdim, 0)
        if fast is not None:
            return fast, None, None
        if not ctx.keepdim:
            g = g.reshape(_keep_shape(ctx.shape, ctx.dims))
        return g.expand(*ctx.shape), None, None


def _spread(g: Any, shape: tuple, dims: Optional[tuple], keepdim: bool, n: int) -> Any:
    """Sum's and Mean's gradient (g, divided by n unless n is 0, broadcast back to `shape`) by
    what the ops reshape, / and expand do, without their bookkeeping, when nothing records (a
    backward without create_graph) and g is a float tensor the kernels take; else None."""
    if grad_mode._state.enabled or type(g) is not Tensor:
        return None
    d = g._data
    if d.dtype not in _KERNEL_DTYPES:
        return None
    if not keepdim:
        d = d.reshape(_keep_shape(shape, dims))
    if n:
        if type(n) is not int:
            return None
        d = ew._kernel("div", d, n)._data
    try:
        return Tensor._make(np.broadcast_to(d, shape))
    except ValueError:  # (Expand reports it, below)
        return None


def _keep_shape(shape: tuple, dims: Optional[tuple]) -> tuple:
    if dims is None:
        return (1,) * len(shape)
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def sum(x: Tensor, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:  # noqa: A001
    """Sum over `dim` (an int, a tuple, or None for all elements).

    >>> x = gd.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> gd.sum(x).item(), gd.sum(x, dim=0).tolist()
    (10.0, [4.0, 6.0])
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"sum: expected a Tensor, got {type(x).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    dims = _dims(dim, x.ndim, "sum")
    if dims == () and dim is not None:
        dims = None
    return Sum.apply(x, dims, bool(keepdim))


def mean(x: Tensor, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    """Mean over `dim`; a mean over zero elements is NaN, as in PyTorch.

    >>> gd.mean(gd.tensor([[1.0, 2.0], [3.0, 4.0]]), dim=1).tolist()
    [1.5, 3.5]
    """
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype.kind != "f":
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {x.dtype}")
    dims = _dims(dim, x.ndim, "mean")
    if dims == ():  # dim=() reduces every dim, as in sum (PyTorch's rule)
        dims = None
    if _is_kernel_float(x._data):
        return Mean.apply(x, dims, bool(keepdim))
    n = x._data.size if dims is None else int(np.prod([x.shape[d] for d in dims]))
    s = sum(x, dim, keepdim)
    return s / n if n else s * np.nan


def _count(shape: tuple, dims: Optional[tuple]) -> int:
    """Number of elements each output of a reduction over dims (None: all) takes."""
    return math.prod(shape if dims is None else [shape[d] for d in dims])


class Mean(Function):
    """Mean over dims of a float32/float64 tensor (kernel); dx = dy / n, broadcast back."""

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        a = x._data
        ctx.shape, ctx.dims, ctx.keepdim = a.shape, dims, keepdim
        ctx.n = _count(a.shape, dims)
        return Tensor._make(_reduce("mean", a, dims, keepdim))

    @staticmethod
    def backward(ctx, g):
        fast = _spread(g, ctx.shape, ctx.dims, ctx.keepdim, ctx.n)
        if fast is not None:
            return fast, None, None
        if not ctx.keepdim:
            g = g.reshape(_keep_shape(ctx.shape, ctx.dims))
        if ctx.n:  # (n = 0: x and its gradient are empty)
            g = g / ctx.n
        return g.expand(*ctx.shape), None, None


class MaxDim(Function):
    """max/min over one dim: (values, indices); the gradient goes to the chosen index."""

    @staticmethod
    def forward(ctx, x, dim, keepdim, is_max):
        a = x._data
        if _is_kernel_float(a):
            # the first occurrence of the extreme, or of the first NaN (PyTorch's rule)
            vals, idx = _reduce("max" if is_max else "min", a, (dim,), keepdim)
            ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
            ctx.idx_k = idx if keepdim else np.expand_dims(idx, dim)
            indices = Tensor._make(idx)
            ctx.mark_non_differentiable(indices)
            return Tensor._make(vals), indices
        idx = np.argmax(a, axis=dim) if is_max else np.argmin(a, axis=dim)
        # NaN wins, as in PyTorch: argmax/argmin return the first NaN
        nan_rows = np.isnan(a).any(axis=dim) if a.dtype.kind == "f" else None
        if nan_rows is not None and nan_rows.any():
            idx = np.where(nan_rows, np.argmax(np.isnan(a), axis=dim), idx)
        idx_k = np.expand_dims(idx, dim)
        vals = np.take_along_axis(a, idx_k, axis=dim)
        if not keepdim:
            vals = np.squeeze(vals, axis=dim)
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.idx_k = idx_k
        # asarray: argmax over the only axis of a 1-d array is a NumPy scalar, not an array
        indices = Tensor._make(idx_k.astype(np.int64) if keepdim else
                               np.asarray(idx, dtype=np.int64))
        ctx.mark_non_differentiable(indices)
        return Tensor._make(contiguous(vals)), indices

    @staticmethod
    def backward(ctx, g, _gi):
        if not ctx.keepdim:
            g = g.unsqueeze(ctx.dim)
        return _scatter(g, ctx.idx_k, ctx.dim, ctx.shape), None, None, None


class Scatter(Function):
    """Places g (shape with 1 at dim) at positions idx along dim in a zero tensor of `shape`."""

    @staticmethod
    def forward(ctx, g, idx_k, dim, shape):
        ctx.idx_k, ctx.dim = idx_k, dim
        return Tensor._make(scatter_array(None, idx_k, g._data, dim, False, shape))

    @staticmethod
    def backward(ctx, gg):
        return Tensor._make(gather_array(gg._data, ctx.idx_k, ctx.dim)) \
            if not is_grad_enabled() else Gather.apply(gg, ctx.idx_k, ctx.dim), None, None, None


class Gather(Function):
    @staticmethod
    def forward(ctx, x, idx_k, dim):
        ctx.idx_k, ctx.dim, ctx.shape = idx_k, dim, x._data.shape
        return Tensor._make(gather_array(x._data, idx_k, dim))

    @staticmethod
    def backward(ctx, g):
        return Scatter.apply(g, ctx.idx_k, ctx.dim, ctx.shape), None, None


def _scatter(g: Tensor, idx_k: np.ndarray, dim: int, shape: tuple) -> Tensor:
    return Scatter.apply(g, idx_k, dim, shape)


class MaxAll(Function):
    """max/min of all elements, or amax/amin over `dims` (a tuple); ties share the gradient
    evenly (PyTorch's rule for these, unlike max(dim), which picks one index).

    At a NaN the two differ, as in PyTorch: max()/min() give the gradient to the NaNs (shared
    evenly), amax/amin compare the result with the input, which no NaN equals, so every
    gradient of that reduced slice is g / 0 * 0 = NaN."""

    @staticmethod
    def forward(ctx, x, is_max, dims=None, keepdim=False, amax=False):
        a = x._data
        op = "max" if is_max else "min"
        if a.size == 0 and dims is None:
            raise RuntimeError(f"{op}(): Expected reduction dim to be specified for "
                               "input.numel() == 0. Specify the reduction dim with the 'dim' "
                               "argument.")
        if dims is not None and any(a.shape[d] == 0 for d in dims):
            raise IndexError(f"a{op}(): Expected reduction dims {dims} to have non-zero size, "
                             f"got shape {tuple(a.shape)}")
        if _is_kernel_float(a):
            v = _reduce("amax" if is_max else "amin", a, dims, True)
        else:  # asarray: NumPy returns a scalar, not a 0-d array, for a 0-d input
            v = np.asarray(np.max(a, axis=dims, keepdims=True) if is_max else
                           np.min(a, axis=dims, keepdims=True))
        ctx.save_for_backward(x)
        ctx.v, ctx.dims, ctx.keepdim, ctx.amax = v, dims, keepdim, amax
        if keepdim:
            return Tensor._make(v)
        return Tensor._make(v.reshape(()) if dims is None else np.squeeze(v, axis=dims))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        a, v = x._data, ctx.v
        if not ctx.keepdim:
            g = g.reshape(_keep_shape(a.shape, ctx.dims))
        if _is_kernel_float(a):  # the same arithmetic in kernels, which gd.compile records
            xt, vt = x.detach(), Tensor._make(v)
            hit = ew.eq(xt, vt)
            if not ctx.amax:  # max()/min(): where the result is NaN, the NaNs take it
                hit = ew.logical_or(hit, ew.logical_and(ew.isnan(xt), ew.isnan(vt)))
            count = Tensor._make(call_kernel(
                _core.int_unary, "cast", call_kernel(_core.int_sum, hit._data, ctx.dims, True),
                a.dtype))
            if ctx.amax:
                mask = Tensor._make(call_kernel(_core.int_unary, "cast", hit._data, a.dtype))
                return (g / count) * mask, None, None, None, None
            return ew.where(hit, g / count, 0.0), None, None, None, None
        with np.errstate(invalid="ignore", divide="ignore"):
            if ctx.amax:  # (g / count) * mask: NaN over a slice whose result is NaN
                mask = a == v
                count = mask.sum(axis=ctx.dims, keepdims=True).astype(a.dtype)
                return (g / Tensor._make(count)) * Tensor._make(mask.astype(a.dtype)), \
                    None, None, None, None
            # max()/min(): a NaN is the result, so the NaNs take the gradient
            mask = np.isnan(a) if a.dtype.kind == "f" and np.isnan(v).any() else a == v
            count = mask.sum(axis=ctx.dims, keepdims=True).astype(a.dtype)
        return ew.where(Tensor._make(mask), g / Tensor._make(count), 0.0), None, None, None, \
            None


def max(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """max of all elements, or (values, indices) over `dim`; max(x, other) is elementwise.

    >>> gd.max(gd.tensor([1.0, 5.0, 3.0])).item()
    5.0
    >>> values, indices = gd.max(gd.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=1)
    >>> values.tolist(), indices.tolist()
    ([5.0, 7.0], [1, 0])
    """
    return _max_min(x, dim, keepdim, True)


def min(x: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    """min of all elements, or (values, indices) over `dim`; min(x, other) is elementwise.

    >>> gd.min(gd.tensor([4.0, 2.0, 3.0])).item()
    2.0
    """
    return _max_min(x, dim, keepdim, False)


def _max_min(x: Tensor, dim: Any, keepdim: bool, is_max: bool) -> Any:
    op = "max" if is_max else "min"
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if isinstance(dim, Tensor):
        return ew.maximum(x, dim) if is_max else ew.minimum(x, dim)
    if dim is None:
        return MaxAll.apply(x, is_max)
    d = _norm_dim(dim, x.ndim, op)
    if x.ndim == 0:
        return values_indices(x.clone(), Tensor._make(np.zeros((), dtype=np.int64)))
    if x.shape[d] == 0:
        raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size.")
    vals, idx = MaxDim.apply(x, d, bool(keepdim), is_max)
    return values_indices(vals, idx)


def amax(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Max over `dim` (an int, a tuple, or None for all); ties share the gradient evenly.

    >>> gd.amax(gd.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=0).tolist()
    [7.0, 5.0]
    """
    return _amax_amin(x, dim, keepdim, True)


def amin(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Min over `dim` (an int, a tuple, or None for all); ties share the gradient evenly.

    >>> gd.amin(gd.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=0).tolist()
    [1.0, 2.0]
    """
    return _amax_amin(x, dim, keepdim, False)


def _amax_amin(x: Tensor, dim: Any, keepdim: bool, is_max: bool) -> Tensor:
    dims = _dims(dim, x.ndim, "amax" if is_max else "amin")
    if not dims:  # None or (): every dim, as in PyTorch
        dims = None if not keepdim else tuple(range(x.ndim))
    return MaxAll.apply(x, is_max, dims, bool(keepdim), True)


def argmax(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (flat if dim is None); never differentiable.

    >>> gd.argmax(gd.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=1).tolist()
    [1, 0]
    """
    return _arg(x, dim, keepdim, True)


def argmin(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element (flat if dim is None); never differentiable.

    >>> gd.argmin(gd.tensor([3.0, 1.0, 2.0])).item()
    1
    """
    return _arg(x, dim, keepdim, False)


def _arg(x: Tensor, dim: Any, keepdim: bool, is_max: bool) -> Tensor:
    a = x._data
    op = "argmax" if is_max else "argmin"
    if a.size == 0 and dim is None:
        raise RuntimeError(f"{op}(): Expected reduction dim to be specified for input.numel() "
                           "== 0.")
    f = np.argmax if is_max else np.argmin
    kernel = _is_kernel_float(a)
    if dim is None and kernel:  # the flat index in C order, whatever the strides
        return Tensor._make(_reduce(op, a, None, bool(keepdim)))
    if dim is None:
        r = np.asarray(f(a.ravel()) if not _has_nan(a) else np.argmax(np.isnan(a.ravel())))
        if keepdim:
            r = r.reshape((1,) * a.ndim)
        return Tensor._make(r.astype(np.int64))
    d = _norm_dim(dim, a.ndim, op)
    if a.ndim == 0:
        return Tensor._make(np.zeros((), dtype=np.int64))
    if a.shape[d] == 0:
        raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size, got shape "
                         f"{tuple(a.shape)}")
    if kernel:
        return Tensor._make(_reduce(op, a, (d,), bool(keepdim)))
    r = f(a, axis=d)
    if _has_nan(a):
        nan_rows = np.isnan(a).any(axis=d)
        r = np.where(nan_rows, np.argmax(np.isnan(a), axis=d), r)
    if keepdim:
        r = np.expand_dims(r, d)
    return Tensor._make(np.asarray(r, dtype=np.int64))


def _has_nan(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and bool(np.isnan(a).any())


def _correction(unbiased: Any, correction: Any) -> float:
    if correction is None:
        return 1.0 if unbiased is None or unbiased else 0.0
    return float(correction)


class VarStd(Function):
    """var or std over dims of a float32/float64 tensor (kernel, two-pass; float32 accumulated in
    float64, as PyTorch does, so the squares of 1e30 do not overflow). PyTorch's backward:
    dvar/dx = 2 (x - mean) / dof, dstd/dx = (x - mean) / (dof std), 0 where std = 0;
    dof = max(0, n - correction)."""

    @staticmethod
    def forward(ctx, x, dims, correction, keepdim, is_std):
        a = x._data
        # (the kernel accumulates float32 in float64 and rounds back: beyond float32's range,
        # inf, as PyTorch)
        out = Tensor._make(_reduce("std" if is_std else "var", a, dims, keepdim, correction))
        ctx.dims, ctx.keepdim, ctx.is_std = dims, keepdim, is_std
        ctx.dof = builtins.max(0.0, _count(a.shape, dims) - correction)
        ctx.save_for_backward(x, out if is_std else None)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        keep = _keep_shape(x.shape, ctx.dims)
        if not ctx.keepdim:
            g = g.reshape(keep)
        dev = x - mean(x, ctx.dims, keepdim=True)
        dof = ctx.dof
        if not ctx.is_std:
            scale = 2.0 / dof if dof > 0 else float("inf")
            return g * scale * dev, None, None, None, None
        s = out if ctx.keepdim else out.reshape(keep)
        w = g / (s * dof)
        w = ew.where(s == 0, 0.0, w)
        return w * dev, None, None, None, None


def var(x: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Variance with Bessel's correction by default (correction=1), as in PyTorch.

    >>> gd.var(gd.tensor([1.0, 3.0])).item()
    2.0
    """
    if _is_kernel_float(x._data):
        dims = _dims(dim, x.ndim, "var")
        return VarStd.apply(x, dims or None, _correction(unbiased, correction), bool(keepdim),
                            False)
    return _var_numpy(x, dim, unbiased, keepdim, correction)


def _var_numpy(x: Tensor, dim: Any, unbiased: Any, keepdim: bool, correction: Any) -> Tensor:
    correction = _correction(unbiased, correction)
    dims = _dims(dim, x.ndim, "var")
    if dims == ():  # dim=() reduces every dim, as in sum (PyTorch's rule)
        dims = None
    n = x._data.size if dims is None else int(np.prod([x.shape[d] for d in dims]))
    mu = mean(x, dim, keepdim=True)
    d = x - mu
    dof = n - correction
    # no degrees of freedom left: NaN, as PyTorch gives
    return sum(d * d, dim, keepdim) / (float(dof) if dof > 0 else float("nan"))


def std(x: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Standard deviation, the square root of var(x, dim, unbiased, keepdim, correction).

    >>> gd.std(gd.tensor([1.0, 3.0])).item()  # unbiased by default, as in PyTorch
    1.4142135381698608
    """
    if _is_kernel_float(x._data):
        dims = _dims(dim, x.ndim, "std")
        return VarStd.apply(x, dims or None, _correction(unbiased, correction), bool(keepdim),
                            True)
    return ew.sqrt(var(x, dim, unbiased, keepdim, correction=correction))


def logsumexp(x: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x), dim)), max-shifted so it never overflows.

    >>> round(gd.logsumexp(gd.tensor([0.0, 0.0]), dim=0).item(), 4)
    0.6931
    """
    if _is_kernel_float(x._data):
        dims = _dims(dim, x.ndim, "logsumexp")
        return LogSumExp.apply(x, dims or None, bool(keepdim))
    m = amax(x.detach(), dim, keepdim=True)
    m = Tensor._make(np.where(np.isfinite(m._data), m._data, 0).astype(m._data.dtype))
    out = act.log(sum(act.exp(x - m), dim, keepdim=True)) + m
    return out if keepdim else out.squeeze(dim)


class LogSumExp(Function):
    """logsumexp over dims of a float32/float64 tensor (kernel: shifted by the max unless it
    is infinite, as PyTorch); dx = dy exp(x - y), the softmax."""

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        out = Tensor._make(_reduce("logsumexp", x._data, dims, keepdim))
        ctx.dims, ctx.keepdim = dims, keepdim
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        if not ctx.keepdim:
            g = g.reshape(_keep_shape(x.shape, ctx.dims))
        # the softmax over dims from max-shifted exponentials: exp(x - out) is 1 where out =
        # max + log(n) rounds to the max (two entries of 1e30 would get 1 each, not 1/2)
        a = x._data
        if a.size:  # kernels (gd.compile records them): the max, 0 where it is not finite
            m = Tensor._make(_reduce("amax", a, ctx.dims, True))
            m = ew.where(ew.lt(ew.abs(m), math.inf), m, 0.0)
        else:
            m = Tensor._make(np.zeros((1,) * a.ndim, a.dtype))
        e = (x - m).exp()
        return g * (e / sum(e, ctx.dims, keepdim=True)), None, None
