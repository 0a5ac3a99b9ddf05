"""Sorting, selection and scans: sort, argsort, topk, kthvalue, cumsum, cumprod. The values of
sort/topk/kthvalue are differentiable (the gradient goes back to where each value came from);
indices are int64.

For float32/float64 (and int32/int64 sorts, int64 scans) every forward and backward pass is a C++
kernel (src/cpp/sort.cpp, bound in bind_sort.cpp; the backward scatter is bind_index.cpp's), so a
step compiled with gd.compile records them; other dtypes go through NumPy with the same results.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, _norm_dim, call_kernel
from graddesc.autograd.function import Function
from graddesc.autograd.grad_mode import is_grad_enabled
from graddesc.functional.indexing import gather_array, scatter_array

values_indices = namedtuple("values_indices", ["values", "indices"])

_SORT_KERNEL = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32),
                np.dtype(np.int64))
_SCAN_KERNEL = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


def _check(x: Any, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")


def _check_bool(v: Any, name: str, op: str) -> None:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {type(v).__name__}")


def _check_int(v: Any, name: str, op: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    return int(v)


class TakeAlong(Function):
    """y = x at idx along dim (the gather kernel); its gradient writes g back at idx."""

    @staticmethod
    def forward(ctx, x, idx, dim):
        ctx.idx, ctx.dim, ctx.shape = idx, dim, x._data.shape
        return Tensor._make(gather_array(x._data, idx, dim))

    @staticmethod
    def backward(ctx, g):
        return PutAlong.apply(g, ctx.idx, ctx.dim, ctx.shape), None, None


class PutAlong(Function):
    """The adjoint of TakeAlong for indices without repeats (a permutation or a selection along
    dim): zeros of `shape` with g written at idx along dim (the scatter kernel)."""

    @staticmethod
    def forward(ctx, g, idx, dim, shape):
        ctx.idx, ctx.dim = idx, dim
        return Tensor._make(scatter_array(None, idx, g._data, dim, False, shape))

    @staticmethod
    def backward(ctx, gg):
        return TakeAlong.apply(gg, ctx.idx, ctx.dim), None, None, None


class Selected(Function):
    """The values a sort/topk/kthvalue kernel picked from x at idx along dim (already computed:
    forward only wraps them); the gradient goes back to those positions."""

    @staticmethod
    def forward(ctx, x, values, idx, dim):
        ctx.idx, ctx.dim, ctx.shape = idx, dim, x._data.shape
        return Tensor._make(values)

    @staticmethod
    def backward(ctx, g):
        return PutAlong.apply(g, ctx.idx, ctx.dim, ctx.shape), None, None, None


def _sort_idx(a: np.ndarray, dim: int, descending: bool) -> np.ndarray:
    """The kernel's order in NumPy, for the dtypes the kernel does not take (bool, uint8,
    float16, ...): stable, NaN the largest value."""
    if descending:
        if a.dtype.kind == "b":
            key = ~a
        elif a.dtype.kind == "f":
            key = np.where(np.isnan(a), -np.inf, -a)
            nan = np.isnan(a)
            idx = np.argsort(key, axis=dim, kind="stable")
            first = np.argsort(~np.take_along_axis(nan, idx, dim), axis=dim, kind="stable")
            return np.take_along_axis(idx, first, dim)
        elif a.dtype.kind == "u":
            key = -a.astype(np.int64)
        else:
            key = -a
        return np.argsort(key, axis=dim, kind="stable")
    return np.argsort(a, axis=dim, kind="stable")


def _select(x: Tensor, dim: int, descending: bool, k: int, order: str) -> tuple:
    """(values Tensor, indices array) of the sort kernel (k = -1: all; order 'sorted', 'index'
    or 'kth'), or of NumPy for the dtypes it does not take."""
    a = x._data
    if a.dtype in _SORT_KERNEL:
        vals, idx = call_kernel(_core.sort, a, dim, descending, k, order)
    else:
        idx = _sort_idx(a, dim, descending)
        if order == "kth":
            idx = np.take(idx, [k - 1], axis=dim)
        else:
            if k >= 0:
                idx = np.take(idx, range(k), axis=dim)
            if order == "index":
                idx = np.sort(idx, axis=dim)
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        vals = np.ascontiguousarray(np.take_along_axis(a, idx, dim))
    return Selected.apply(x, vals, idx, dim), idx


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """(values, indices) of x sorted along dim: always a stable order (equal values keep their
    positions), NaN the largest value (last, or first when descending), -0.0 equal to 0.0.

    `stable` is accepted for PyTorch's signature; the order is stable either way.

    >>> values, indices = gd.sort(gd.tensor([3.0, 1.0, 2.0]))
    >>> values.tolist(), indices.tolist()
    ([1.0, 2.0, 3.0], [1, 2, 0])
    """
    _check(x, "sort")
    _check_bool(descending, "descending", "sort")
    _check_bool(stable, "stable", "sort")
    if x.ndim == 0:
        return values_indices(x.clone(), Tensor._make(np.zeros((), np.int64)))
    d = _norm_dim(dim, x.ndim, "sort")
    vals, idx = _select(x, d, bool(descending), -1, "sorted")
    return values_indices(vals, Tensor._make(idx))


def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort x along dim (the stable order of `sort`).

    >>> gd.argsort(gd.tensor([3.0, 1.0, 2.0])).tolist()
    [1, 2, 0]
    """
    return sort(x, dim, descending, stable).indices


def _k_arg(x: Tensor, k: Any, dim: int, op: str, lo: int) -> tuple:
    k = _check_int(k, "k", op)
    d = _norm_dim(dim, x.ndim, op) if x.ndim else 0
    n = x.shape[d] if x.ndim else 1
    if k < lo or k > n:
        raise RuntimeError(f"{op}: k ({k}) is out of range for dimension {d} of size {n} "
                           f"(expected {lo} <= k <= {n})")
    return k, d


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
    """(values, indices) of the k largest (or smallest) entries along dim.

    The entries are the first k of `sort`'s stable order (descending for largest): of equal
    values the earlier ones. With sorted=True they come in that order, with sorted=False in the
    order of their positions along dim.

    >>> values, indices = gd.topk(gd.tensor([3.0, 1.0, 2.0]), 2)
    >>> values.tolist(), indices.tolist()
    ([3.0, 2.0], [0, 2])
    """
    _check(x, "topk")
    _check_bool(largest, "largest", "topk")
    _check_bool(sorted, "sorted", "topk")
    k, d = _k_arg(x, k, dim, "topk", 0)
    if x.ndim == 0:
        return values_indices(x.clone(), Tensor._make(np.zeros((), np.int64)))
    vals, idx = _select(x, d, bool(largest), k, "sorted" if sorted else "index")
    return values_indices(vals, Tensor._make(idx))


def kthvalue(x: Tensor, k: int, dim: int = -1, keepdim: bool = False) -> Any:
    """(values, indices) of the k-th smallest entry (k counts from 1) along dim: position k - 1
    of `sort`'s stable order; NaN counts as the largest value.

    >>> values, indices = gd.kthvalue(gd.tensor([3.0, 1.0, 2.0]), 2)
    >>> values.item(), indices.item()
    (2.0, 2)
    """
    _check(x, "kthvalue")
    _check_bool(keepdim, "keepdim", "kthvalue")
    k, d = _k_arg(x, k, dim, "kthvalue", 1)
    if x.ndim == 0:
        return values_indices(x.clone(), Tensor._make(np.zeros((), np.int64)))
    vals, idx = _select(x, d, False, k, "kth")
    ind = Tensor._make(idx)
    if not keepdim:
        vals, ind = vals.squeeze(d), ind.squeeze(d)
    return values_indices(vals, ind)


def _scan(a: np.ndarray, dim: int, op: str, reverse: bool) -> np.ndarray:
    """The running sum/product kernel, or NumPy for the dtypes it does not take."""
    if a.dtype in _SCAN_KERNEL:
        return call_kernel(_core.scan, a, dim, op, reverse)
    f = np.cumsum if op == "sum" else np.cumprod
    if reverse:
        return np.ascontiguousarray(np.flip(f(np.flip(a, dim), axis=dim), dim))
    return f(a, axis=dim)


class Cumsum(Function):
    """y_i = sum_{j<=i} x_j along dim; dx_j = sum_{i>=j} g_i (a reversed cumsum of g)."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return Tensor._make(_scan(x._data, dim, "sum", False))

    @staticmethod
    def backward(ctx, g):
        return RevCumsum.apply(g, ctx.dim), None


class RevCumsum(Function):
    """y_j = sum_{i>=j} x_i along dim (the adjoint of Cumsum)."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return Tensor._make(_scan(x._data, dim, "sum", True))

    @staticmethod
    def backward(ctx, g):
        return Cumsum.apply(g, ctx.dim), None


def _scan_args(x: Any, dim: Any, dtype: Any, op: str) -> tuple:
    _check(x, op)
    if dtype is not None:
        x = x.to(dtype)
    elif x._data.dtype.kind in "biu" and x._data.dtype != np.int64:
        x = x.to("int64")  # as PyTorch: integer and bool scans give int64
    d = _norm_dim(dim, x.ndim, op) if x.ndim else None
    return x, d


def cumsum(x: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Cumulative sums along dim, added one element after the other (the same bits for any
    thread count); integers and bools give int64.

    >>> gd.cumsum(gd.tensor([1, 2, 3]), dim=0).tolist()
    [1, 3, 6]
    """
    x, d = _scan_args(x, dim, dtype, "cumsum")
    if d is None:
        return x.clone()
    if x._data.dtype.kind != "f":
        return Tensor._make(_scan(x._data, d, "sum", False))
    return Cumsum.apply(x, d)


class Cumprod(Function):
    """y_i = prod_{j<=i} x_j. The backward kernel (cumprod_backward) is exact with zeros in x:
    for j before the first zero z, dx_j = (sum_{i>=j} g_i y_i) / x_j; dx_z is the sum of g_i
    times the products without x_z; after z, 0."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        y = Tensor._make(_scan(x._data, dim, "prod", False))
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        d = ctx.dim
        if not is_grad_enabled():
            return Tensor._make(call_kernel(_core.cumprod_backward, g._data, x._data, y._data,
                                            d)), None
        # create_graph=True: the same formula in differentiable ops (without zeros)
        if np.any(x._data == 0):
            raise RuntimeError("cumprod: double backward (create_graph=True) through a product "
                               "with zero entries is not supported")
        return RevCumsum.apply(g * y, d) / x, None


def cumprod(x: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Cumulative products along dim, multiplied one element after the other; integers and bools
    give int64.

    >>> gd.cumprod(gd.tensor([1.0, 2.0, 3.0]), dim=0).tolist()
    [1.0, 2.0, 6.0]
    """
    x, d = _scan_args(x, dim, dtype, "cumprod")
    if d is None:
        return x.clone()
    if x._data.dtype.kind != "f":
        return Tensor._make(_scan(x._data, d, "prod", False))
    return Cumprod.apply(x, d)
