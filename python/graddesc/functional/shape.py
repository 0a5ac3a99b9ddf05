"""Shape ops: views (view, reshape, transpose, permute, expand, squeeze, unsqueeze, indexing with
slices) share memory and the version counter with their input, as in PyTorch; copies (integer
array indexing, cat, stack, clone, dtype casts) do not. All are differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from graddesc import _compile_state, _core, _dtype
from graddesc._device import check_device, is_device_arg
from graddesc._tensor import Tensor, _norm_dim, _value, call_kernel, copy_c
from graddesc.autograd.function import Function
from graddesc.functional import elementwise as ew


def _view_out(x: Tensor, data: np.ndarray, fn: Any) -> Tensor:
    return x._view_of(data, fn) if np.shares_memory(data, x._data) else Tensor._make(data)


def _resolve_shape(shape: Sequence[Any], numel: int, op: str) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    out = []
    infer = -1
    for i, s in enumerate(shape):
        if isinstance(s, Tensor):
            s = s.item()
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{op}: shape must be ints, got {type(s).__name__}")
        if s == -1:
            if infer >= 0:
                raise RuntimeError(f"{op}: only one dimension can be inferred")
            infer = i
        elif s < 0:
            raise RuntimeError(f"{op}: invalid shape dimension {s}")
        out.append(int(s))
    known = 1
    for i, s in enumerate(out):
        if i != infer:
            known *= s
    if infer >= 0:
        if known == 0 or numel % known:
            raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
        out[infer] = numel // known
    elif known != numel:
        raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
    return tuple(out)


# NumPy 2.5 deprecates setting .shape (the old way to reshape without copying); 2.1 and newer
# have reshape(copy=False) instead, which raises ValueError where a copy would be needed.
_RESHAPE_HAS_COPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def _reshape_without_copy(a: np.ndarray, shape: tuple) -> np.ndarray | None:
    """A view of a in the given shape, or None when the layout needs a copy for it."""
    if _RESHAPE_HAS_COPY:
        try:
            return np.reshape(a, shape, copy=False)
        except ValueError:
            return None
    v = a.view()
    try:
        v.shape = shape
    except AttributeError:
        return None
    return v


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape, must_view):
        ctx.in_shape = x._data.shape
        a = x._data
        if must_view:
            v = _reshape_without_copy(a, shape)
            if v is None:
                raise RuntimeError("view size is not compatible with input tensor's size and "
                                   "stride (at least one dimension spans across two contiguous "
                                   "subspaces). Use .reshape(...) instead.")
            return x._view_of(v, lambda b: b.reshape(shape))
        return _view_out(x, a.reshape(shape), lambda b: b.reshape(shape))

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.in_shape), None, None


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """The same elements in a new shape (a view when possible); one dim may be -1.

    >>> gd.reshape(gd.arange(6), (2, -1)).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    s = _resolve_shape(shape, x._data.size, "reshape")
    return Reshape.apply(x, s, False)


def view(x: Tensor, *shape: Any) -> Tensor:
    """A view with a new shape; raises if the memory layout does not allow one."""
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int, np.integer, Tensor)):
        raise TypeError(f"view: reinterpreting memory as {shape[0]!r} is not supported; use "
                        ".to(dtype) to convert")
    s = _resolve_shape(shape, x._data.size, "view")
    return Reshape.apply(x, s, True)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merges dims start_dim..end_dim into one.

    >>> tuple(gd.flatten(gd.zeros(2, 3, 4), start_dim=1).shape)
    (2, 12)
    """
    if x.ndim == 0:
        return reshape(x, 1)
    s = _norm_dim(start_dim, x.ndim, "flatten")
    e = _norm_dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shp = x.shape
    n = 1
    for d in shp[s:e + 1]:
        n *= d
    return reshape(x, tuple(shp[:s]) + (n,) + tuple(shp[e + 1:]))


class Permute(Function):
    @staticmethod
    def forward(ctx, x, perm):
        inv = [0] * len(perm)  # the inverse permutation (np.argsort's, as Python ints)
        for i, d in enumerate(perm):
            inv[d] = i
        ctx.inv = tuple(inv)
        return x._view_of(np.transpose(x._data, perm), lambda b: np.transpose(b, perm))

    @staticmethod
    def backward(ctx, g):
        return g.permute(*ctx.inv), None


def permute(x: Tensor, *dims: Any) -> Tensor:
    """The dims of x reordered as `dims` (a view: no data is copied).

    >>> tuple(gd.permute(gd.zeros(2, 3, 4), (2, 0, 1)).shape)
    (4, 2, 3)
    """
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute: number of dims don't match in permute: got {len(dims)} "
                           f"dims for a {x.ndim}-d tensor")
    perm = tuple(_norm_dim(d, x.ndim, "permute") for d in dims)
    if len(set(perm)) != len(perm):
        raise RuntimeError(f"permute: repeated dim in {tuple(dims)}")
    return Permute.apply(x, perm)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swaps two dims (a view).

    >>> gd.transpose(gd.tensor([[1, 2], [3, 4]]), 0, 1).tolist()
    [[1, 3], [2, 4]]
    """
    if x.ndim == 0:
        return Permute.apply(x, ())
    a = _norm_dim(dim0, x.ndim, "transpose")
    b = _norm_dim(dim1, x.ndim, "transpose")
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return Permute.apply(x, tuple(perm))


def t(x: Tensor) -> Tensor:
    """Transpose of a tensor with at most 2 dims."""
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return transpose(x, 0, 1) if x.ndim == 2 else Permute.apply(x, tuple(range(x.ndim)))


class Expand(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x._data.shape
        try:
            out = np.broadcast_to(x._data, shape)
        except ValueError:
            raise RuntimeError(f"expand: the expanded size {list(shape)} is not compatible with "
                               f"the tensor's shape {list(x._data.shape)}") from None
        return x._view_of(out, lambda b: np.broadcast_to(b, shape))

    @staticmethod
    def backward(ctx, g):
        return g, None  # the engine sums g back to the input's shape


def expand(x: Tensor, *sizes: Any) -> Tensor:
    """Broadcasts to a larger shape without copying; -1 keeps a dim."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < x.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                           f"or equal to the number of dimensions in the tensor ({x.ndim})")
    lead = len(sizes) - x.ndim
    shape = tuple(int(x.shape[i - lead]) if (s == -1 and i >= lead) else int(s)
                  for i, s in enumerate(sizes))
    return Expand.apply(x, shape)


def expand_as(x: Tensor, other: Tensor) -> Tensor:
    return expand(x, *other.shape)


def squeeze(x: Tensor, dim: Any = None) -> Tensor:
    """Removes size-1 dims (all, or the given ones when they have size 1).

    >>> tuple(gd.squeeze(gd.zeros(1, 3, 1)).shape)
    (3,)
    """
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        ds = {_norm_dim(d, x.ndim, "squeeze") for d in dims} if x.ndim else set()
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in ds and s == 1))
    return Reshape.apply(x, shape, False)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Inserts a size-1 dim at `dim` (-ndim-1 <= dim <= ndim).

    >>> tuple(gd.unsqueeze(gd.zeros(3), 0).shape)
    (1, 3)
    """
    nd = x.ndim + 1
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -nd <= dim < nd:
        raise IndexError(f"unsqueeze: Dimension out of range (expected to be in range of "
                         f"[{-nd}, {nd - 1}], but got {dim})")
    d = int(dim) % nd
    shape = tuple(x.shape[:d]) + (1,) + tuple(x.shape[d:])
    return Reshape.apply(x, shape, False)


# ---- indexing ---------------------------------------------------------------------------
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def np_index(index: Any) -> Any:
    """Translates an index that may hold Tensors into a NumPy index."""
    if isinstance(index, tuple):
        return tuple(_np_index_item(i) for i in index)
    return _np_index_item(index)


def _np_index_item(i: Any) -> Any:
    if isinstance(i, Tensor):
        a = i._data
        if a.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int or bool tensors")
        return a
    if isinstance(i, list):
        a = np.asarray([_value(v) for v in i])
        if a.size == 0:  # x[[]] selects nothing (np.asarray([]) would be a float array)
            a = a.astype(np.int64)
        if a.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int or bool tensors")
        return a
    if isinstance(i, (np.ndarray,)) and i.dtype.kind == "f":
        raise IndexError("arrays used as indices must be of integer or boolean type")
    return i


def _is_basic(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis
               for i in items) and not any(isinstance(i, bool) for i in items)


class Index(Function):
    @staticmethod
    def forward(ctx, x, idx):
        ctx.idx, ctx.shape = idx, x._data.shape
        basic = _is_basic(idx)
        if basic:  # a trailing Ellipsis keeps even a full integer index a 0-d view
            items = idx if isinstance(idx, tuple) else (idx,)
            if not any(i is Ellipsis for i in items):
                items = items + (Ellipsis,)
            idx = items
        try:
            out = x._data[idx]
        except IndexError as e:
            raise IndexError(f"index is out of bounds for a tensor of shape "
                             f"{tuple(x.shape)}: {e}") from None
        ctx.idx = idx
        if basic:
            return x._view_of(out, lambda b: b[idx])
        return Tensor._make(np.asarray(out))

    @staticmethod
    def backward(ctx, g):
        return IndexBackward.apply(g, ctx.idx, ctx.shape), None


class IndexBackward(Function):
    """Scatter-adds g into zeros of the input shape (repeated indices accumulate)."""

    @staticmethod
    def forward(ctx, g, idx, shape):
        ctx.idx = idx
        dt = g._data.dtype
        if _is_basic(idx) and len(shape) and dt in (np.float32, np.float64):
            # two copy kernels (zeros from a one-element constant, then g into its slice), so a
            # compiled step records them: slicing is everywhere in user code
            zero = _compile_state.constant(np.zeros((1,) * len(shape), dtype=dt))
            out = _core.elementwise(_core.EW_OPS["copy"], np.broadcast_to(zero, shape))
            if g._data.size:
                _core.elementwise(_core.EW_OPS["copy"], g._data, out=out[idx])
            return Tensor._make(out)
        out = np.zeros(shape, dtype=dt)
        if _is_basic(idx):
            out[idx] = g._data
        else:
            np.add.at(out, idx, g._data)
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, gg):
        return Index.apply(gg, ctx.idx), None, None


def _adjacent_arrays(idx: Any, ndim: int) -> Any:
    """(dim, arrays) when idx is int64 C-contiguous index arrays of one shape on adjacent
    dimensions, with only full slices and one Ellipsis around them (x[i], x[i, j], x[:, i],
    x[..., i]): indexing the index_nd kernel does (so that gd.compile records it). None for
    any other index, which NumPy's indexing handles."""
    items = idx if isinstance(idx, tuple) else (idx,)
    arrays: list = []
    first = last = -1
    ellipsis = -1
    for pos, it in enumerate(items):
        if isinstance(it, np.ndarray):
            if it.dtype != np.int64 or it.ndim == 0 or not it.flags.c_contiguous or \
                    (arrays and it.shape != arrays[0].shape) or (arrays and last != pos - 1):
                return None
            if not arrays:
                first = pos
            arrays.append(it)
            last = pos
        elif it is Ellipsis and ellipsis < 0:
            ellipsis = pos
        elif not (isinstance(it, slice) and it == slice(None)):
            return None
    if not arrays or len(items) - (ellipsis >= 0) > ndim:
        return None
    dim = first if ellipsis < 0 or ellipsis > first else first - 1 + ndim - (len(items) - 1)
    return dim, arrays


class TakeNd(Function):
    """x[..., i_0, .., i_{k-1}, ...] for index arrays on adjacent dims (a copy, as NumPy's)."""

    @staticmethod
    def forward(ctx, x, arrays, dim):
        ctx.arrays, ctx.dim, ctx.shape = arrays, dim, x._data.shape
        return Tensor._make(call_kernel(_core.index_nd, x._data, arrays, dim))

    @staticmethod
    def backward(ctx, g):
        return TakeNdBackward.apply(g, ctx.arrays, ctx.dim, ctx.shape), None, None


class TakeNdBackward(Function):
    """The adjoint of TakeNd: zeros of the input's shape with g added at the indexed places
    (repeated indices accumulate, in order)."""

    @staticmethod
    def forward(ctx, g, arrays, dim, shape):
        ctx.arrays, ctx.dim = arrays, dim
        return Tensor._make(call_kernel(_core.index_nd, g._data, arrays, dim, True, shape))

    @staticmethod
    def backward(ctx, gg):
        return TakeNd.apply(gg, ctx.arrays, ctx.dim), None, None, None


_I64 = np.dtype(np.int64)


def int64_bits_as_float64(a: np.ndarray) -> Optional[np.ndarray]:
    """An aligned int64 array seen as float64 (the same 8-byte items), for the index kernels,
    which only move items (loads and stores keep every bit): integer labels are taken by the
    kernels gd.compile records. None when a is not an aligned int64 array."""
    if a.dtype == _I64 and a.flags.aligned and a.ndim >= 1:
        return a.view(np.float64)
    return None


def getitem(x: Tensor, index: Any) -> Tensor:
    idx = np_index(index)
    if type(idx) is np.ndarray or (type(idx) is tuple and np.ndarray in map(type, idx)):
        # (a cheap test first: slicing is everywhere)
        dt = x._data.dtype
        if dt in _FLOAT_DTYPES:
            adv = _adjacent_arrays(idx, x.ndim)
            if adv is not None:
                return TakeNd.apply(x, adv[1], adv[0])
        elif dt == _I64 and not x.requires_grad:
            adv = _adjacent_arrays(idx, x.ndim)
            bits = int64_bits_as_float64(x._data) if adv is not None else None
            if bits is not None:  # labels reordered or picked (y[perm]): not differentiable
                return Tensor._make(call_kernel(_core.index_nd, bits, adv[1], adv[0])
                                    .view(np.int64))
    return Index.apply(x, idx)


def writable_float(a: np.ndarray) -> bool:
    """An array the elementwise kernel may write in place: float32/float64, native, aligned
    and writable (any strides)."""
    return a.dtype in (np.float32, np.float64) and a.dtype.isnative and a.flags.aligned and \
        a.flags.writeable and all(st or n <= 1 for n, st in zip(a.shape, a.strides))


def kernel_operand(a: np.ndarray, other: Any) -> Any:
    """`other` as an operand of an in-place elementwise kernel writing `a` (a Python number,
    or an array of a's dtype that broadcasts to a's shape and does not overlap a other than
    element for element), else None: then NumPy writes (and a gd.compile recording falls
    back to eager)."""
    if type(other) in (int, float, bool):
        if type(other) is int and not -2**53 <= other <= 2**53:
            return None  # (its float conversion would round differently from NumPy's cast)
        return float(other)
    if not isinstance(other, np.ndarray) or other.dtype != a.dtype or \
            not other.dtype.isnative or not other.flags.aligned or other.ndim > a.ndim or \
            any(o != 1 and o != n for o, n in zip(other.shape[::-1], a.shape[::-1])):
        return None
    if other.size and a.size and np.may_share_memory(a, other) and not (
            other.shape == a.shape and other.strides == a.strides and
            other.__array_interface__["data"][0] == a.__array_interface__["data"][0]):
        return None  # a shifted or broadcast view of itself: NumPy buffers, the kernel would not
    return other


def basic_view(a: np.ndarray, idx: Any) -> Any:
    """a[idx] as a view when idx is basic indexing (integers, slices, None, Ellipsis), else
    None (advanced indexing makes a copy)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    if not all(i is None or i is Ellipsis or isinstance(i, slice) or
               isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))
               for i in items):
        return None
    if not any(i is Ellipsis for i in items):
        items = (*items, Ellipsis)  # (all integers: a 0-d view, not a NumPy scalar)
    try:
        return a[items]
    except IndexError as e:
        raise IndexError(f"__setitem__: {e}") from None


TRUE = np.ones((), dtype=bool)  # the condition of the where that writes a value in place


def kernel_write(a: np.ndarray, value: Any) -> bool:
    """a[...] = value (a number, or an array of a's dtype broadcasting to a's shape) by the
    elementwise kernel, y = where(True, value, a), which gd.compile records; False (nothing
    written) when a or value is not for the kernel."""
    if not writable_float(a):
        return False
    v = kernel_operand(a, value)
    if v is None:
        return False
    if a.size:
        _core.elementwise(_core.EW_OPS["where"],
                          np.broadcast_to(_compile_state.constant(TRUE), a.shape), v, a, a)
    return True


def _index_put_kernels(xd: np.ndarray, idx: Any, v: Any) -> Optional[np.ndarray]:
    """A copy of a float array xd with xd[idx] = v, for basic indexing and a number or an
    array of xd's dtype: the copy kernel, then kernel_write into the copy's view (both
    recorded by gd.compile). None for anything else."""
    if xd.dtype not in _FLOAT_DTYPES or basic_view(xd, idx) is None:
        return None
    out = copy_c(xd)
    return out if kernel_write(basic_view(out, idx), v) else None


class IndexPut(Function):
    """out = x with out[idx] = value (value broadcast); the out-of-place form of __setitem__."""

    @staticmethod
    def forward(ctx, x, idx, value):
        ctx.idx, ctx.vshape = idx, (value._data.shape if isinstance(value, Tensor) else None)
        out = _index_put_kernels(x._data, idx, _value(value))
        if out is not None:
            return Tensor._make(out)
        out = x._data.copy()
        try:
            out[idx] = _value(value)
        except (IndexError, ValueError) as e:
            raise IndexError(f"__setitem__: {e}") from None
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, g):
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = IndexPut.apply(g, ctx.idx, 0.0)
        if ctx.needs_input_grad[2]:
            gv = Index.apply(g, ctx.idx)
        return gx, None, gv


def index_put(x: Tensor, index: Any, value: Any) -> Tensor:
    return IndexPut.apply(x, np_index(index), value)


# ---- views after in-place ops -------------------------------------------------------------
# An in-place op on a tensor rewrites its history, and that of the tensors that view its memory
# (PyTorch's view + in-place semantics). The view's elements are found through its view function
# (Tensor._vinfo) applied to an array of element numbers shaped like the root: `positions`. The
# backward passes below gather and scatter with those numbers, so they hold for any chain of
# views (slices, transposes, reshapes, broadcasts) whatever the root's memory layout.
class ViewPositions:
    """The element numbers (C order in a root of `shape`) of the view that `fn` takes, computed
    on first use (only a backward needs them) and kept."""

    __slots__ = ("shape", "fn", "_pos")

    def __init__(self, shape: tuple, fn: Any) -> None:
        self.shape, self.fn, self._pos = shape, fn, None

    def get(self) -> np.ndarray:
        if self._pos is None:
            n = 1
            for d in self.shape:
                n *= d
            self._pos = np.asarray(self.fn(np.arange(n, dtype=np.int64).reshape(self.shape)))
        return self._pos


class ViewGather(Function):
    """A view of x (the root): x.flat[pos]. Gives a regenerated view its history (forward
    returns `data`, the view's own memory, when given)."""

    @staticmethod
    def forward(ctx, x, pos, data=None):
        ctx.pos, ctx.shape = pos, x._data.shape
        if data is not None:
            return Tensor._make(data)
        return Tensor._make(np.ascontiguousarray(x._data).reshape(-1)[pos.get()])

    @staticmethod
    def backward(ctx, g):
        return ViewScatter.apply(g, ctx.pos, ctx.shape), None, None


class ViewScatter(Function):
    """Zeros of `shape` with g added at the view's elements (a broadcast view adds repeats)."""

    @staticmethod
    def forward(ctx, g, pos, shape):
        ctx.pos = pos
        p = pos.get()
        n = 1
        for d in shape:
            n *= d
        dt = g._data.dtype
        gd_ = np.broadcast_to(g._data, p.shape)
        if _has_repeats(p):
            out = np.bincount(p.reshape(-1), weights=gd_.reshape(-1).astype(np.float64),
                              minlength=n).astype(dt)
        else:
            out = np.zeros(n, dtype=dt)
            out[p.reshape(-1)] = gd_.reshape(-1)
        return Tensor._make(out.reshape(shape))

    @staticmethod
    def backward(ctx, gg):
        return ViewGather.apply(gg, ctx.pos), None, None


def _has_repeats(pos: np.ndarray) -> bool:
    # only a broadcast (a zero stride over a dim longer than 1) repeats an element
    return any(st == 0 and n > 1 for st, n in zip(pos.strides, pos.shape))


class ViewFill(Function):
    """g with the view's elements set to zero: what an overwritten region passes back."""

    @staticmethod
    def forward(ctx, g, pos):
        ctx.pos = pos
        out = np.array(g._data, order="C", copy=True)
        out.reshape(-1)[pos.get().reshape(-1)] = 0
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, gg):
        return ViewFill.apply(gg, ctx.pos), None


class CopySlices(Function):
    """The root after an in-place op on one of its views wrote `value` into the view's elements:
    the gradient of the old root is g outside the view, that of `value` is g inside it."""

    @staticmethod
    def forward(ctx, root, value, pos):
        ctx.pos = pos
        return Tensor._make(root._data)  # the op already wrote the root's memory

    @staticmethod
    def backward(ctx, g):
        groot = ViewFill.apply(g, ctx.pos) if ctx.needs_input_grad[0] else None
        gval = ViewGather.apply(g, ctx.pos) if ctx.needs_input_grad[1] else None
        return groot, gval, None


# ---- joining ----------------------------------------------------------------------------
_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Cat(Function):
    @staticmethod
    def forward(ctx, dim, *ts):
        ctx.dim = dim
        arrays = [t._data for t in ts]
        ctx.sizes = sizes = [a.shape[dim] for a in arrays]
        dt = arrays[0].dtype
        if dt in _KERNEL_FLOATS and all(a.dtype is dt or a.dtype == dt for a in arrays):
            # each piece copied into its slice by the elementwise copy kernel: a compiled step
            # records the copies (and, once every element is written, the whole result)
            shape = list(arrays[0].shape)
            shape[dim] = sum(sizes)
            out = np.empty(shape, dtype=dt)
            if out.size:
                pre = (slice(None),) * dim
                copy = _core.EW_OPS["copy"]
                start = 0
                for a, n in zip(arrays, sizes):
                    if n:
                        _core.elementwise(copy, a, out=out[pre + (slice(start, start + n),)])
                    start += n
            return Tensor._make(out)
        return Tensor._make(np.concatenate(arrays, axis=dim))

    @staticmethod
    def backward(ctx, g):
        out = [None]
        start = 0
        for n, need in zip(ctx.sizes, ctx.needs_input_grad[1:]):
            if need:
                sl = [slice(None)] * g.ndim
                sl[ctx.dim] = slice(start, start + n)
                out.append(g[tuple(sl)])
            else:
                out.append(None)
            start += n
        return tuple(out)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Joins tensors along an existing dim.

    >>> gd.cat([gd.zeros(2), gd.ones(1)]).tolist()
    [0.0, 0.0, 1.0]
    """
    ts = list(tensors)
    if not ts:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(ts):
        if not isinstance(t, Tensor):
            raise TypeError(f"cat(): expected a sequence of Tensors, element {i} is "
                            f"{type(t).__name__}")
    # PyTorch skips 1-d empty tensors in cat
    nonempty = [t for t in ts if not (t._data.ndim == 1 and t._data.size == 0)] or ts[:1]
    d = _norm_dim(dim, nonempty[0]._data.ndim, "cat")
    ref = nonempty[0]._data.shape
    for i, t in enumerate(nonempty):
        s = t._data.shape
        if s != ref and (len(s) != len(ref) or any(a != b for k, (a, b) in enumerate(zip(s, ref))
                                                   if k != d)):
            raise RuntimeError(f"cat(): Sizes of tensors must match except in dimension {d}. "
                               f"Expected {tuple(ref)} but got {tuple(t.shape)} for tensor "
                               f"number {i} in the list.")
    out = Cat.apply(d, *nonempty)
    if len(nonempty) < len(ts):  # the skipped empty tensors still take part in type promotion
        dt = np.result_type(*(t._data.dtype for t in ts))
        if dt != out._data.dtype:
            out = ew.cast(out, dt)
    return out


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Joins same-shape tensors along a new dim.

    >>> tuple(gd.stack([gd.zeros(3), gd.ones(3)]).shape)
    (2, 3)
    """
    ts = list(tensors)
    if not ts:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, t in enumerate(ts):
        if not isinstance(t, Tensor):
            raise TypeError(f"stack(): expected a sequence of Tensors, element {i} is "
                            f"{type(t).__name__}")
        if t.shape != ts[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{tuple(ts[0].shape)} at entry 0 and {tuple(t.shape)} at entry {i}")
    nd = ts[0].ndim + 1
    if not -nd <= dim < nd:
        raise IndexError(f"stack: Dimension out of range (expected to be in range of [{-nd}, "
                         f"{nd - 1}], but got {dim})")
    return cat([unsqueeze(t, dim) for t in ts], dim)


# ---- copies -----------------------------------------------------------------------------
class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return Tensor._make(copy_c(x._data))

    @staticmethod
    def backward(ctx, g):
        return g


def clone(x: Tensor) -> Tensor:
    return Clone.apply(x)


def to(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """Converts dtype (devices other than 'cpu' raise RuntimeError)."""
    target = kwargs.pop("dtype", None)
    for a in args:
        if is_device_arg(a):
            check_device(a, "Tensor.to")
            continue
        if isinstance(a, Tensor):
            target = a.dtype
            continue
        target = a
    check_device(kwargs.pop("device", None), "Tensor.to")
    kwargs.pop("non_blocking", None)
    copy = kwargs.pop("copy", False)
    if kwargs:
        raise TypeError(f"to: unexpected arguments {sorted(kwargs)}")
    if target is None:
        return clone(self) if copy else self
    d = _dtype.to_dtype(target, "to")
    if d.np == self._data.dtype and not copy:
        return self
    return ew.cast(self, d.np)  # an integer or bool result never joins the graph


def contiguous(x: Tensor) -> Tensor:
    return x if x._data.flags.c_contiguous else clone(x)


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple:
    """Splits into chunks of a given size, or of the listed sizes, along dim (views).

    >>> [p.tolist() for p in gd.split(gd.arange(5), 2)]
    [[0, 1], [2, 3], [4]]
    """
    d = _norm_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise RuntimeError("split: split_size must be positive")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got {sizes}")
    out = []
    start = 0
    for s in sizes:
        sl = [slice(None)] * x.ndim
        sl[d] = slice(start, start + s)
        out.append(getitem(x, tuple(sl)))
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    """x split into `chunks` pieces along `dim` (each of ceil(n / chunks) elements, the last
    may be smaller), as a tuple of views.

    >>> [c.tolist() for c in gd.chunk(gd.arange(5), 2)]
    [[0, 1, 2], [3, 4]]
    """
    d = _norm_dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    size = -(-n // chunks) if chunks > 0 else 0
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0")
    return split(x, max(size, 1), d) if n else (x,)


class Overwritten(Function):
    """A tensor with history after an in-place op wrote values that carry no gradient into it
    (fill_, zero_, copy_ of a constant): it stays on the graph and passes a zero gradient to
    its old history, as PyTorch's FillBackward does."""

    @staticmethod
    def forward(ctx, t):
        return Tensor._make(t._data)

    @staticmethod
    def backward(ctx, g):
        return Tensor._make(np.zeros_like(g._data))


def rebase_history(t: Tensor, res: Any) -> None:
    """After an in-place op wrote `res` (a Tensor, or None for a constant) into t's memory (in
    grad mode): t takes res's place on the graph. When t is a view, its root takes the place of
    CopySlices(old root, res), and every live view of the root gets its history anew."""
    info = t._vinfo
    if info is not None:
        root, fn = info
        value = res if res is not None and res.requires_grad else None
        if value is None and not root.requires_grad:
            return
        out = CopySlices.apply(root, value, ViewPositions(root._data.shape, fn))
        root.grad_fn, root._output_nr, root.requires_grad = out.grad_fn, 0, True
        regenerate_views(root)
        return
    if res is not None and res.grad_fn is not None:
        t.grad_fn, t._output_nr, t.requires_grad = res.grad_fn, res._output_nr, True
    elif t.grad_fn is not None:  # overwritten with values that carry no gradient
        out = Overwritten.apply(t)
        t.grad_fn, t._output_nr = out.grad_fn, 0
    else:
        return
    if t._views:
        regenerate_views(t)


def regenerate_views(root: Tensor) -> None:
    """Gives every live view of root a history that reads root's current one."""
    live = []
    for ref in root._views:
        v = ref()
        if v is None:
            continue
        live.append(ref)
        if root.requires_grad:
            out = ViewGather.apply(root, ViewPositions(root._data.shape, v._vinfo[1]), v._data)
            v.grad_fn, v._output_nr, v.requires_grad = out.grad_fn, 0, True
        else:
            v.grad_fn, v.requires_grad = None, False
    root._views = live
