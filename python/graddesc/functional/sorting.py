"""Sorting and scans: sort, argsort, topk, cumsum, cumprod. The values of sort/topk are
differentiable (the gradient goes back to where each value came from); indices are int64."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from graddesc._tensor import Tensor, _norm_dim
from graddesc.autograd.function import Function
from graddesc.autograd.grad_mode import is_grad_enabled

values_indices = namedtuple("values_indices", ["values", "indices"])


def _check(x: Any, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")


def _check_bool(v: Any, name: str, op: str) -> None:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {type(v).__name__}")


class TakeAlong(Function):
    """y = take_along_axis(x, idx, dim); its gradient scatters g back (adds at repeats)."""

    @staticmethod
    def forward(ctx, x, idx, dim):
        ctx.idx, ctx.dim, ctx.shape = idx, dim, x._data.shape
        return Tensor._make(np.ascontiguousarray(np.take_along_axis(x._data, idx, dim)))

    @staticmethod
    def backward(ctx, g):
        return PutAlong.apply(g, ctx.idx, ctx.dim, ctx.shape), None, None


class PutAlong(Function):
    """The adjoint of TakeAlong: zeros of `shape` with g added at idx along dim."""

    @staticmethod
    def forward(ctx, g, idx, dim, shape):
        ctx.idx, ctx.dim = idx, dim
        out = np.zeros(shape, g._data.dtype)
        grids = list(np.indices(idx.shape, sparse=True))
        grids[dim] = idx
        np.add.at(out, tuple(grids), g._data)
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, gg):
        return TakeAlong.apply(gg, ctx.idx, ctx.dim), None, None, None


def _sort_idx(a: np.ndarray, dim: int, descending: bool) -> np.ndarray:
    """Always a stable order: equal values keep their positions (what PyTorch's CPU sort gives
    in practice, so that indices agree with it also for ties)."""
    if descending:
        # a stable descending order: sort the negation (NaN sorts last in NumPy, first in
        # PyTorch's descending order, as the largest value)
        if a.dtype.kind == "b":
            key = ~a
        elif a.dtype.kind == "f":
            key = np.where(np.isnan(a), -np.inf, -a)
            nan = np.isnan(a)
            idx = np.argsort(key, axis=dim, kind="stable")
            # NaNs first, each group keeping its order
            first = np.argsort(~np.take_along_axis(nan, idx, dim), axis=dim, kind="stable")
            return np.take_along_axis(idx, first, dim)
        else:
            key = -a
        return np.argsort(key, axis=dim, kind="stable")
    return np.argsort(a, axis=dim, kind="stable")


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """(values, indices) of x sorted along dim; NaN counts as the largest value.

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
    idx = _sort_idx(x._data, d, bool(descending))
    vals = TakeAlong.apply(x, idx, d)
    return values_indices(vals, Tensor._make(idx.astype(np.int64)))


def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort x along dim.

    >>> gd.argsort(gd.tensor([3.0, 1.0, 2.0])).tolist()
    [1, 2, 0]
    """
    return sort(x, dim, descending, stable).indices


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
    """(values, indices) of the k largest (or smallest) entries along dim, in sorted order.

    >>> values, indices = gd.topk(gd.tensor([3.0, 1.0, 2.0]), 2)
    >>> values.tolist(), indices.tolist()
    ([3.0, 2.0], [0, 2])
    """
    _check(x, "topk")
    _check_bool(largest, "largest", "topk")
    _check_bool(sorted, "sorted", "topk")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"topk: k must be an int, got {type(k).__name__}")
    d = _norm_dim(dim, x.ndim, "topk") if x.ndim else 0
    n = x.shape[d] if x.ndim else 1
    if k < 0 or k > n:
        raise RuntimeError(f"topk: k ({k}) is out of range for dimension {d} of size {n}")
    if x.ndim == 0:
        return values_indices(x.clone(), Tensor._make(np.zeros((), np.int64)))
    idx = _sort_idx(x._data, d, bool(largest))
    idx = np.ascontiguousarray(np.take(idx, range(int(k)), axis=d))
    return values_indices(TakeAlong.apply(x, idx, d), Tensor._make(idx.astype(np.int64)))


class Cumsum(Function):
    """y_i = sum_{j<=i} x_j along dim; dx_j = sum_{i>=j} g_i (a reversed cumsum of g)."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return Tensor._make(np.cumsum(x._data, axis=dim))

    @staticmethod
    def backward(ctx, g):
        return RevCumsum.apply(g, ctx.dim), None


class RevCumsum(Function):
    """y_j = sum_{i>=j} x_i along dim (the adjoint of Cumsum)."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        a = np.flip(x._data, dim)
        return Tensor._make(np.ascontiguousarray(np.flip(np.cumsum(a, axis=dim), dim)))

    @staticmethod
    def backward(ctx, g):
        return Cumsum.apply(g, ctx.dim), None


def _scan_args(x: Any, dim: Any, dtype: Any, op: str) -> tuple:
    _check(x, op)
    if dtype is not None:
        x = x.to(dtype)
    elif x._data.dtype.kind == "b":
        x = x.to("int64")
    d = _norm_dim(dim, x.ndim, op) if x.ndim else None
    return x, d


def cumsum(x: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Cumulative sums along dim.

    >>> gd.cumsum(gd.tensor([1, 2, 3]), dim=0).tolist()
    [1, 3, 6]
    """
    x, d = _scan_args(x, dim, dtype, "cumsum")
    if d is None:
        return x.clone()
    if x._data.dtype.kind != "f":
        return Tensor._make(np.cumsum(x._data, axis=d))
    return Cumsum.apply(x, d)


class Cumprod(Function):
    """y_i = prod_{j<=i} x_j. Without zeros, dx_j = (sum_{i>=j} g_i y_i) / x_j; with zeros,
    each prefix is recomputed without x_j (exact, O(n^2) along dim)."""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        y = Tensor._make(np.cumprod(x._data, axis=dim))
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        d = ctx.dim
        if not np.any(x._data == 0):
            return RevCumsum.apply(g * y, d) / x, None
        if is_grad_enabled():
            raise RuntimeError("cumprod: double backward (create_graph=True) through a product "
                               "with zero entries is not supported")
        a, gd_ = np.moveaxis(x._data, d, -1), np.moveaxis(g._data, d, -1)
        n = a.shape[-1]
        out = np.zeros_like(a)
        for j in range(n):
            b = a.copy()
            b[..., j] = 1.0
            cp = np.cumprod(b, axis=-1)
            # dy_i/dx_j = prod_{k<=i, k!=j} x_k for i >= j
            out[..., j] = np.sum(gd_[..., j:] * cp[..., j:], axis=-1)
        return Tensor._make(np.ascontiguousarray(np.moveaxis(out, -1, d))), None


def cumprod(x: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Cumulative products along dim.

    >>> gd.cumprod(gd.tensor([1.0, 2.0, 3.0]), dim=0).tolist()
    [1.0, 2.0, 6.0]
    """
    x, d = _scan_args(x, dim, dtype, "cumprod")
    if d is None:
        return x.clone()
    if x._data.dtype.kind != "f":
        return Tensor._make(np.cumprod(x._data, axis=d))
    return Cumprod.apply(x, d)
