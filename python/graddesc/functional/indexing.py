"""Indexing and rearranging: gather, scatter, scatter_add, index_select, masked_fill, repeat,
flip, unbind. Each moves values without arithmetic, so each backward is the adjoint move
(gather <-> scatter-add), written as Functions so that backward differentiates again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, _norm_dim, call_kernel
from graddesc.autograd.function import Function
from graddesc.functional import elementwise as ew
from graddesc.functional.shape import int64_bits_as_float64


def _check(x: Any, name: str, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")


def _index_array(index: Any, op: str) -> np.ndarray:
    _check(index, "index", op)
    if index._data.dtype != np.int64:
        raise TypeError(f"{op}: index must be an int64 tensor, got {index.dtype}")
    return index._data


def _grids(idx: np.ndarray, dim: int) -> tuple:
    """NumPy index tuple selecting, per position p of idx, the element p with p[dim] = idx[p]."""
    g = list(np.indices(idx.shape, sparse=True))
    g[dim] = idx
    return tuple(g)


def _check_gather_shapes(x_shape: tuple, idx: np.ndarray, dim: int, op: str,
                         other: str = "input", values: bool = True) -> None:
    """Shapes, and with `values` the index range (the kernels check the range themselves: no
    host read of the indices while gd.compile records)."""
    if idx.ndim != len(x_shape):
        raise RuntimeError(f"{op}: index {tuple(idx.shape)} must have as many dims as "
                           f"{other} {tuple(x_shape)}")
    for i, (a, b) in enumerate(zip(idx.shape, x_shape)):
        if i != dim and a > b:
            raise RuntimeError(f"{op}: index {tuple(idx.shape)} is larger than {other} "
                               f"{tuple(x_shape)} in dimension {i}")
    n = x_shape[dim] if x_shape else 1
    if values and idx.size and (idx.min() < -n or idx.max() >= n):
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"{op}: index {bad} is out of bounds for dimension {dim} with size {n}")


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def gather_array(x: np.ndarray, idx: np.ndarray, dim: int) -> np.ndarray:
    """x at idx along dim (idx int64 of x's ndim, entries in [-n, n)): the C++ kernel for float
    arrays (recorded by gd.compile), NumPy for the other dtypes."""
    if x.dtype in _FLOATS and x.ndim >= 1:
        return call_kernel(_core.index_gather, x, idx, dim)
    return np.ascontiguousarray(x[_grids(idx, dim)])


def scatter_array(base: np.ndarray | None, idx: np.ndarray, src: np.ndarray | None, dim: int,
                  accumulate: bool, shape: tuple | None = None, value: Any = 0) -> np.ndarray:
    """A copy of base (or zeros of `shape` and src's dtype) with src (or value) written, or
    added (accumulate), at idx along dim; src has idx's shape. Kernel for float arrays."""
    dt = (base if base is not None else src).dtype
    if dt in _FLOATS and idx.ndim >= 1 and (value is None or isinstance(value, (int, float))):
        return call_kernel(_core.index_scatter, base, idx, src, dim, accumulate,
                           None if base is not None else tuple(shape),
                           0.0 if value is None else float(value))
    out = np.zeros(shape, dt) if base is None else base.copy()
    grids = _grids(idx, dim)
    if accumulate:
        np.add.at(out, grids, src)
    else:
        out[grids] = value if src is None else src
    return out


class Gather(Function):
    @staticmethod
    def forward(ctx, x, idx, dim):
        ctx.idx, ctx.dim, ctx.shape = idx, dim, x._data.shape
        return Tensor._make(gather_array(x._data, idx, dim))

    @staticmethod
    def backward(ctx, g):
        return ScatterAdd.apply(None, ctx.idx, g, ctx.dim, ctx.shape), None, None


class ScatterAdd(Function):
    """out = x (or zeros of `shape` when x is None) with src added at index along dim."""

    @staticmethod
    def forward(ctx, x, idx, src, dim, shape):
        ctx.idx, ctx.dim = idx, dim
        return Tensor._make(scatter_array(None if x is None else x._data, idx, src._data, dim,
                                          True, shape))

    @staticmethod
    def backward(ctx, g):
        return g, None, Gather.apply(g, ctx.idx, ctx.dim), None, None


class Scatter(Function):
    """out = x with src (or a scalar) written at index along dim; the overwritten entries of x
    get no gradient, src gets the gradient of where it was written to."""

    @staticmethod
    def forward(ctx, x, idx, src, dim, value):
        ctx.idx, ctx.dim, ctx.src_shape = idx, dim, None if src is None else src._data.shape
        return Tensor._make(scatter_array(x._data, idx, None if src is None else src._data, dim,
                                          False, None, value))

    @staticmethod
    def backward(ctx, g):
        gx = Scatter.apply(g, ctx.idx, None, ctx.dim, 0.0)  # zero where the forward wrote
        gsrc = None
        if ctx.src_shape is not None and ctx.needs_input_grad[2]:
            gsrc = Gather.apply(g, ctx.idx, ctx.dim)
        return gx, None, gsrc, None, None


def gather(x: Tensor, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:
    """out[i][j] = x[index[i][j]][j] for dim 0 (and so on): values picked along dim.

    >>> x = gd.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> gd.gather(x, 1, gd.tensor([[1], [0]])).tolist()
    [[2.0], [3.0]]
    """
    _check(x, "input", "gather")
    idx = _index_array(index, "gather")
    d = _norm_dim(dim, max(x.ndim, 1), "gather")
    if x.ndim == 0:
        raise RuntimeError("gather: input must have at least one dimension")
    _check_gather_shapes(x._data.shape, idx, d, "gather", values=x._data.dtype not in _FLOATS)
    return Gather.apply(x, idx, d)


def _scatter_args(x: Any, dim: Any, index: Any, src: Any, op: str) -> tuple:
    _check(x, "input", op)
    if x.ndim == 0:
        raise RuntimeError(f"{op}: input must have at least one dimension")
    idx = _index_array(index, op)
    d = _norm_dim(dim, x.ndim, op)
    _check_gather_shapes(x._data.shape, idx, d, op, values=x._data.dtype not in _FLOATS)
    if isinstance(src, Tensor):
        if src.ndim != idx.ndim or any(a > b for a, b in zip(idx.shape, src.shape)):
            raise RuntimeError(f"{op}: src {tuple(src.shape)} must have index's number of dims "
                               f"and be at least index's size {tuple(idx.shape)} in each")
        if src._data.dtype != x._data.dtype:
            raise RuntimeError(f"{op}: expected src of dtype {x.dtype}, got {src.dtype}")
        if src._data.shape != idx.shape:  # only src's leading block (index's shape) is used
            src = src[tuple(slice(0, s) for s in idx.shape)]
    return d, idx, src


def scatter(x: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None,
            reduce: Any = None) -> Tensor:
    """A copy of x with src[i][j] (or a scalar `value`) written to x[index[i][j]][j] (dim 0).
    Where index repeats a position, which write wins is unspecified (as in PyTorch).

    >>> gd.scatter(gd.zeros(3), 0, gd.tensor([2, 0]), gd.tensor([5.0, 7.0])).tolist()
    [7.0, 0.0, 5.0]
    """
    if reduce is not None:
        raise ValueError("scatter: reduce= is not supported; use scatter_add for sums")
    if src is None and value is None:
        raise TypeError("scatter: give src (a Tensor) or value (a number)")
    if src is not None and not isinstance(src, Tensor):
        value, src = src, None
    d, idx, src = _scatter_args(x, dim, index, src, "scatter")
    return Scatter.apply(x, idx, src, d, value)


def scatter_add(x: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """A copy of x with src[i][j] added to x[index[i][j]][j] (dim 0); repeats accumulate.

    >>> gd.scatter_add(gd.zeros(3), 0, gd.tensor([1, 1]), gd.tensor([5.0, 7.0])).tolist()
    [0.0, 12.0, 0.0]
    """
    _check(src, "src", "scatter_add")
    d, idx, src = _scatter_args(x, dim, index, src, "scatter_add")
    return ScatterAdd.apply(x, idx, src, d, None)


class IndexSelect(Function):
    @staticmethod
    def forward(ctx, x, idx, dim):
        ctx.idx, ctx.dim, ctx.shape = idx, dim, x._data.shape
        if x._data.dtype in _FLOATS:
            return Tensor._make(call_kernel(_core.index_take, x._data, idx, dim))
        bits = int64_bits_as_float64(x._data)
        if bits is not None:  # int64 items moved as 8-byte floats (bit for bit), recorded
            return Tensor._make(call_kernel(_core.index_take, bits, idx, dim).view(np.int64))
        return Tensor._make(np.ascontiguousarray(np.take(x._data, idx, axis=dim)))

    @staticmethod
    def backward(ctx, g):
        return IndexAdd.apply(g, ctx.idx, ctx.dim, ctx.shape), None, None


class IndexAdd(Function):
    """The adjoint of IndexSelect: zeros of `shape` with g's slices added at idx along dim."""

    @staticmethod
    def forward(ctx, g, idx, dim, shape):
        ctx.idx, ctx.dim = idx, dim
        if g._data.dtype in _FLOATS:
            return Tensor._make(call_kernel(_core.index_take, g._data, idx, dim, True,
                                            shape[dim]))
        out = np.zeros(shape, g._data.dtype)
        sl = [slice(None)] * len(shape)
        sl[dim] = idx
        np.add.at(out, tuple(sl), g._data)
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, gg):
        return IndexSelect.apply(gg, ctx.idx, ctx.dim), None, None, None


def index_select(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """The slices x[..., index[k], ...] along dim, for a 1-d (or 0-d) int64 index.

    >>> gd.index_select(gd.tensor([10.0, 20.0, 30.0]), 0, gd.tensor([2, 0])).tolist()
    [30.0, 10.0]
    """
    _check(x, "input", "index_select")
    idx = _index_array(index, "index_select")
    if idx.ndim > 1:
        raise IndexError(f"index_select: index must be 0-d or 1-d, got shape {tuple(idx.shape)}")
    if x.ndim == 0:
        raise RuntimeError("index_select: input must have at least one dimension")
    d = _norm_dim(dim, x.ndim, "index_select")
    n = x._data.shape[d]
    idx = idx.reshape(-1)
    if x._data.dtype not in _FLOATS and idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"index_select: index {bad} is out of range for dimension {d} with "
                         f"size {n}")
    return IndexSelect.apply(x, idx, d)


def masked_fill(x: Tensor, mask: Tensor, value: Any) -> Tensor:
    """x with `value` where mask (a bool tensor broadcastable to x) is True.

    >>> x = gd.tensor([1.0, 2.0, 3.0])
    >>> gd.masked_fill(x, x > 1.5, 0.0).tolist()
    [1.0, 0.0, 0.0]
    """
    _check(x, "input", "masked_fill")
    _check(mask, "mask", "masked_fill")
    if mask._data.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype}")
    try:
        shape = np.broadcast_shapes(mask._data.shape, x._data.shape)
    except ValueError:
        raise RuntimeError(f"masked_fill: mask {tuple(mask.shape)} is not broadcastable to "
                           f"input {tuple(x.shape)}") from None
    if shape != x._data.shape:
        raise RuntimeError(f"masked_fill: mask {tuple(mask.shape)} would broadcast input "
                           f"{tuple(x.shape)} to {shape}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill: value must be a number or a 0-d tensor, got shape "
                               f"{tuple(value.shape)}")
        v: Any = value.to(x.dtype)
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"masked_fill: value must be a number, got {type(value).__name__}")
        if x._data.dtype.kind == "f" and x._data.dtype.itemsize >= 4 and \
                (not isinstance(value, (int, np.integer)) or abs(int(value)) <= 2**53):
            # a number: the where kernel takes it as a scalar (converted to x's dtype as NumPy
            # does), so a compiled step records it
            return ew.where(mask, float(value), x)
        v = Tensor._make(np.asarray(value, dtype=x._data.dtype))
    return ew.where(mask, v, x)


class Repeat(Function):
    @staticmethod
    def forward(ctx, x, reps):
        a = x._data.reshape((1,) * (len(reps) - x._data.ndim) + x._data.shape)
        ctx.shape, ctx.in_shape, ctx.reps = a.shape, x._data.shape, reps
        if a.dtype in _FLOATS and a.ndim:
            # the elementwise copy kernel reading a broadcast view (rep r_k, size s_k per axis):
            # one kernel call that gd.compile records, no NumPy arithmetic
            split = [d for r, n in zip(reps, a.shape) for d in (r, n)]
            view = np.broadcast_to(a.reshape([d for n in a.shape for d in (1, n)]), split)
            out = call_kernel(_core.elementwise, _core.EW_OPS["copy"], view)
            return Tensor._make(out.reshape([r * n for r, n in zip(reps, a.shape)]))
        return Tensor._make(np.tile(a, reps))

    @staticmethod
    def backward(ctx, g):
        # out axis k = (rep r_k) x (size s_k): split every axis in two and sum the rep halves
        split = []
        for r, s in zip(ctx.reps, ctx.shape):
            split += [r, s]
        gs = g.reshape(*split)
        summed = gs.sum(dim=tuple(range(0, 2 * len(ctx.reps), 2))) if ctx.reps else gs
        return summed.reshape(*ctx.in_shape), None


def repeat(x: Tensor, *sizes: Any) -> Tensor:
    """x tiled sizes[k] times along dim k (leading new dims when len(sizes) > x.ndim).

    >>> gd.repeat(gd.tensor([1, 2]), 2).tolist()
    [1, 2, 1, 2]
    """
    _check(x, "input", "repeat")
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"repeat: sizes must be non-negative ints, got {sizes}")
    if len(sizes) < x.ndim:
        raise RuntimeError(f"repeat: number of repeat dims ({len(sizes)}) can not be smaller "
                           f"than number of tensor dims ({x.ndim})")
    return Repeat.apply(x, tuple(int(s) for s in sizes))


class Flip(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        if x._data.dtype in _FLOATS and x._data.ndim:
            # the elementwise copy kernel reading the reversed view (negative strides)
            return Tensor._make(call_kernel(_core.elementwise, _core.EW_OPS["copy"],
                                            np.flip(x._data, dims)))
        return Tensor._make(np.ascontiguousarray(np.flip(x._data, dims)))

    @staticmethod
    def backward(ctx, g):
        return Flip.apply(g, ctx.dims), None


def flip(x: Tensor, *dims: Any) -> Tensor:
    """x reversed along each of dims (a copy, as in PyTorch).

    >>> gd.flip(gd.tensor([1, 2, 3]), [0]).tolist()
    [3, 2, 1]
    """
    _check(x, "input", "flip")
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    ds = tuple(_norm_dim(d, x.ndim, "flip") for d in dims)
    if len(set(ds)) != len(ds):
        raise RuntimeError(f"flip: dims {dims} has a dimension more than once")
    if x.ndim == 0:
        return x.clone()
    return Flip.apply(x, ds)


def unbind(x: Tensor, dim: int = 0) -> tuple:
    """The slices of x along dim, as a tuple of tensors (views, differentiable).

    >>> [t.tolist() for t in gd.unbind(gd.tensor([[1, 2], [3, 4]]))]
    [[1, 2], [3, 4]]
    """
    _check(x, "input", "unbind")
    if x.ndim == 0:
        raise RuntimeError("unbind: dimension specified as 0 but tensor has no dimensions")
    d = _norm_dim(dim, x.ndim, "unbind")
    lead = (slice(None),) * d
    return tuple(x[lead + (i,)] for i in range(x._data.shape[d]))
