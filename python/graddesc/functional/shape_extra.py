"""Shape utilities for PyTorch ports: movedim/moveaxis, swapaxes/swapdims, narrow, roll, tile,
repeat_interleave, take_along_dim, index_add/index_copy/index_fill, diff, rot90, meshgrid,
cartesian_prod.

Each is a composition of ops that have kernels or autograd Functions already (permute, slicing,
index_select, gather, scatter, scatter_add, masked_fill, repeat, flip, cat, expand, stack), so
each is differentiable. NumPy only builds the integer index arrays: those that depend on shapes
and Python ints only (roll, tile, repeat_interleave with an int, ...) are constants of a
gd.compile program, so a step using them is captured; those computed from an index tensor's
values (index_add/index_copy/index_fill, repeat_interleave with a tensor of counts,
take_along_dim with broadcasting) make a compiled step run eagerly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc import _creation
from graddesc._tensor import Tensor, _norm_dim
from graddesc.functional import indexing as idx
from graddesc.functional import shape as shp
from graddesc.functional.math import _check_tensor


def _int(v: Any, op: str, name: str) -> int:
    if isinstance(v, Tensor) and v.ndim == 0 and v._data.dtype.kind in "iu":
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {type(v).__name__}")
    return int(v)


def _ints(v: Any, op: str, name: str) -> list:
    if isinstance(v, (list, tuple)):
        return [_int(x, op, name) for x in v]
    return [_int(v, op, name)]


def _index(a: np.ndarray) -> Tensor:
    """An int64 index tensor computed from data (the same array when it already is one)."""
    return Tensor._make(np.ascontiguousarray(a, dtype=np.int64))


def _const_index(a: np.ndarray) -> Tensor:
    """An int64 index tensor that depends only on shapes and Python ints: a constant of a
    gd.compile program."""
    return _creation._const(np.ascontiguousarray(a, dtype=np.int64), False)


def movedim(input: Tensor, source: Any, destination: Any) -> Tensor:  # noqa: A002
    """input with its dimensions `source` (an int or a sequence) moved to positions
    `destination`, the others keeping their order.

    >>> gd.movedim(gd.zeros(2, 3, 4), 0, -1).shape
    graddesc.Size([3, 4, 2])
    >>> gd.movedim(gd.zeros(2, 3, 4), (0, 1), (2, 0)).shape
    graddesc.Size([3, 4, 2])
    """
    _check_tensor(input, "movedim")
    src = [_norm_dim(d, input.ndim, "movedim") for d in _ints(source, "movedim", "source")]
    dst = [_norm_dim(d, input.ndim, "movedim")
           for d in _ints(destination, "movedim", "destination")]
    if len(src) != len(dst):
        raise ValueError(f"movedim: source and destination must have the same length, got "
                         f"{len(src)} and {len(dst)}")
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError(f"movedim: repeated dim in source {source} or destination "
                         f"{destination}")
    order = [-1] * input.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(input.ndim) if i not in src)
    order = [o if o >= 0 else next(rest) for o in order]
    return shp.permute(input, *order) if order != list(range(input.ndim)) else input


moveaxis = movedim


def swapaxes(input: Tensor, axis0: int, axis1: int) -> Tensor:  # noqa: A002
    """transpose(input, axis0, axis1) (NumPy's name).

    >>> gd.swapaxes(gd.zeros(2, 3), 0, 1).shape
    graddesc.Size([3, 2])
    """
    _check_tensor(input, "swapaxes")
    return shp.transpose(input, axis0, axis1)


def swapdims(input: Tensor, dim0: int, dim1: int) -> Tensor:  # noqa: A002
    """transpose(input, dim0, dim1).

    >>> gd.swapdims(gd.zeros(2, 3, 4), 0, -1).shape
    graddesc.Size([4, 3, 2])
    """
    _check_tensor(input, "swapdims")
    return shp.transpose(input, dim0, dim1)


def narrow(input: Tensor, dim: int, start: Any, length: int) -> Tensor:  # noqa: A002
    """input[..., start:start + length, ...] along dim (a negative start counts from the end).

    >>> gd.narrow(gd.arange(5.0), 0, 1, 3).tolist()
    [1.0, 2.0, 3.0]
    """
    _check_tensor(input, "narrow")
    if input.ndim == 0:
        raise RuntimeError("narrow: input must have at least one dimension")
    d = _norm_dim(dim, input.ndim, "narrow")
    n = input.shape[d]
    s, ln = _int(start, "narrow", "start"), _int(length, "narrow", "length")
    if s < 0:
        s += n
    if not 0 <= s <= n:
        raise IndexError(f"narrow: start {start} is out of range for dimension {d} of size {n}")
    if ln < 0 or s + ln > n:
        raise ValueError(f"narrow: start ({s}) + length ({ln}) exceeds dimension {d} of size "
                         f"{n}")
    key = (slice(None),) * d + (slice(s, s + ln),)
    return shp.getitem(input, key)


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:  # noqa: A002
    """Elements shifted by `shifts` along `dims` (ints or sequences), wrapping around; with
    dims=None the flattened tensor is rolled and the shape restored.

    >>> gd.roll(gd.arange(4.0), 1).tolist()
    [3.0, 0.0, 1.0, 2.0]
    """
    _check_tensor(input, "roll")
    sh = _ints(shifts, "roll", "shifts")
    if dims is None:
        if len(sh) != 1:
            raise ValueError(f"roll: with dims=None, shifts must be one int, got {shifts}")
        flat = shp.reshape(input, -1)
        return shp.reshape(roll(flat, sh[0], 0), *input.shape)
    ds = [_norm_dim(d, max(input.ndim, 1), "roll") for d in _ints(dims, "roll", "dims")]
    if len(ds) != len(sh):
        raise ValueError(f"roll: shifts and dims must have the same length, got {len(sh)} and "
                         f"{len(ds)}")
    out = input
    for s, d in zip(sh, ds):
        n = out.shape[d]
        if n == 0 or s % n == 0:
            continue
        out = idx.index_select(out, d, _const_index(np.roll(np.arange(n), s)))
    return out


def tile(input: Tensor, dims: Any) -> Tensor:  # noqa: A002
    """input repeated dims[i] times along each dimension (dims shorter than input.ndim is
    padded with leading 1s; longer adds leading dimensions), as Tensor.repeat.

    >>> gd.tile(gd.tensor([1.0, 2.0]), (2,)).tolist()
    [1.0, 2.0, 1.0, 2.0]
    """
    _check_tensor(input, "tile")
    reps = _ints(dims, "tile", "dims")
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: dims must be non-negative, got {dims}")
    reps = [1] * (input.ndim - len(reps)) + reps
    return idx.repeat(input, *reps)


def repeat_interleave(input: Tensor, repeats: Any = None, dim: Any = None, *,  # noqa: A002
                      output_size: Any = None) -> Tensor:
    """Each element (or slice along dim) repeated `repeats` times (an int, or a 1-d int tensor
    with one count per element); dim=None flattens first. repeat_interleave(counts) alone
    gives repeat_interleave(arange(len(counts)), counts).

    >>> gd.repeat_interleave(gd.tensor([1.0, 2.0]), 2).tolist()
    [1.0, 1.0, 2.0, 2.0]
    >>> gd.repeat_interleave(gd.tensor([[1, 2], [3, 4]]), gd.tensor([1, 2]), dim=0).tolist()
    [[1, 2], [3, 4], [3, 4]]
    """
    _check_tensor(input, "repeat_interleave")
    if repeats is None:  # the one-argument form
        if input.ndim > 1 or input._data.dtype.kind not in "iu":
            raise TypeError(f"repeat_interleave: a lone argument must be a 1-d int tensor of "
                            f"counts, got {input.dtype} of shape {tuple(input.shape)}")
        counts = input._data.reshape(-1)
        return _index(np.repeat(np.arange(counts.size), counts))
    x = shp.reshape(input, -1) if dim is None else input
    d = 0 if dim is None else _norm_dim(dim, max(x.ndim, 1), "repeat_interleave")
    if x.ndim == 0:
        x = shp.reshape(x, 1)
    n = x.shape[d]
    if isinstance(repeats, Tensor):
        if repeats._data.dtype.kind not in "iu" or repeats.ndim > 1:
            raise TypeError(f"repeat_interleave: repeats must be an int or a 0-d/1-d int "
                            f"tensor, got {repeats.dtype} of shape {tuple(repeats.shape)}")
        counts = repeats._data.reshape(-1)
        if counts.size == 1:
            counts = np.full(n, counts[0])
        if counts.size != n:
            raise ValueError(f"repeat_interleave: repeats must have {n} elements (the size of "
                             f"dimension {d}), got shape {tuple(repeats.shape)}")
    else:
        counts = np.full(n, _int(repeats, "repeat_interleave", "repeats"))
    if np.any(counts < 0):
        raise ValueError("repeat_interleave: repeats must be non-negative")
    sel = np.repeat(np.arange(n), counts)
    make = _index if isinstance(repeats, Tensor) else _const_index
    if output_size is not None and int(output_size) != sel.size:
        raise ValueError(f"repeat_interleave: output_size {output_size} does not match the "
                         f"total of repeats {sel.size}")
    return idx.index_select(x, d, make(sel))


def take_along_dim(input: Tensor, indices: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """Values of input at `indices` along dim (input and indices broadcast in the other
    dimensions); dim=None takes from the flattened input. Pairs with argsort/argmax(keepdim).

    >>> x = gd.tensor([[3.0, 1.0, 2.0]])
    >>> gd.take_along_dim(x, x.argsort(dim=1), dim=1).tolist()
    [[1.0, 2.0, 3.0]]
    """
    _check_tensor(input, "take_along_dim")
    if not isinstance(indices, Tensor) or indices._data.dtype.kind not in "iu":
        raise TypeError(f"take_along_dim: argument 'indices' must be an int Tensor, got "
                        f"{getattr(indices, 'dtype', type(indices).__name__)}")
    if dim is None:
        return idx.gather(shp.reshape(input, -1), 0, shp.reshape(indices, -1))
    if input.ndim != indices.ndim:
        raise ValueError(f"take_along_dim: input and indices must have the same number of "
                         f"dimensions, got shapes {tuple(input.shape)} and "
                         f"{tuple(indices.shape)}")
    d = _norm_dim(dim, input.ndim, "take_along_dim")
    si, sx = list(input.shape), list(indices.shape)
    try:
        b = list(np.broadcast_shapes(tuple(si[:d] + [1] + si[d + 1:]),
                                     tuple(sx[:d] + [1] + sx[d + 1:])))
    except ValueError:
        raise ValueError(f"take_along_dim: shapes {tuple(si)} and {tuple(sx)} don't broadcast "
                         f"outside dimension {d}") from None
    x = input if b[:d] + b[d + 1:] == si[:d] + si[d + 1:] else \
        shp.expand(input, *(b[:d] + [si[d]] + b[d + 1:]))
    ind = indices._data
    if b[:d] + b[d + 1:] != sx[:d] + sx[d + 1:]:
        ind = np.broadcast_to(ind, b[:d] + [sx[d]] + b[d + 1:])
    return idx.gather(x, d, _index(ind))


def _index_along(input: Tensor, dim: Any, index: Any, op: str) -> tuple:
    _check_tensor(input, op)
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu" or index.ndim > 1:
        raise TypeError(f"{op}: argument 'index' must be a 0-d or 1-d int Tensor, got "
                        f"{getattr(index, 'dtype', type(index).__name__)} of shape "
                        f"{tuple(getattr(index, 'shape', ()))}")
    d = _norm_dim(dim, max(input.ndim, 1), op)
    ind = index._data.reshape(-1).astype(np.int64)
    n = input.shape[d] if input.ndim else 1
    if ind.size and (ind.min() < -n or ind.max() >= n):
        raise IndexError(f"{op}: index out of range for dimension {d} of size {n}")
    return d, np.where(ind < 0, ind + n, ind)


def _full_index(ind: np.ndarray, shape: tuple, d: int) -> Tensor:
    view = [1] * len(shape)
    view[d] = ind.size
    return _index(np.broadcast_to(ind.reshape(view), shape))


def _check_source(input: Tensor, source: Any, d: int, k: int, op: str) -> None:
    if not isinstance(source, Tensor):
        raise TypeError(f"{op}: argument 'source' must be a Tensor, got "
                        f"{type(source).__name__}")
    want = list(input.shape)
    if want:
        want[d] = k
    if list(source.shape) != want and not (source.ndim == 0 and want == [1]):
        raise ValueError(f"{op}: source must have shape {tuple(want)} (input's, with "
                         f"len(index)={k} at dimension {d}), got {tuple(source.shape)}")
    if source._data.dtype != input._data.dtype:
        raise TypeError(f"{op}: source must have input's dtype {input.dtype}, got "
                        f"{source.dtype}")


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *,  # noqa: A002
              alpha: Any = 1) -> Tensor:
    """A copy of input with alpha * source's slices added at `index` along dim (repeated
    indices accumulate). Differentiable in input and source.

    >>> gd.index_add(gd.zeros(3), 0, gd.tensor([0, 0, 2]), gd.tensor([1.0, 2.0, 3.0])).tolist()
    [3.0, 0.0, 3.0]
    """
    d, ind = _index_along(input, dim, index, "index_add")
    _check_source(input, source, d, ind.size, "index_add")
    src = source if (not isinstance(alpha, Tensor) and alpha == 1) else source * alpha
    x, s = (input, src) if input.ndim else (shp.reshape(input, 1), shp.reshape(src, 1))
    out = idx.scatter_add(x, d, _full_index(ind, tuple(s.shape), d), s)
    return out if input.ndim else shp.reshape(out)


def index_copy(input: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:  # noqa: A002
    """A copy of input with source's slices written at `index` along dim.

    >>> gd.index_copy(gd.zeros(3), 0, gd.tensor([2, 0]), gd.tensor([5.0, 7.0])).tolist()
    [7.0, 0.0, 5.0]
    """
    d, ind = _index_along(input, dim, index, "index_copy")
    _check_source(input, source, d, ind.size, "index_copy")
    x, s = (input, source) if input.ndim else (shp.reshape(input, 1), shp.reshape(source, 1))
    out = idx.scatter(x, d, _full_index(ind, tuple(s.shape), d), s)
    return out if input.ndim else shp.reshape(out)


def index_fill(input: Tensor, dim: int, index: Tensor, value: Any) -> Tensor:  # noqa: A002
    """A copy of input with the slices at `index` along dim set to value (a number or 0-d
    tensor).

    >>> gd.index_fill(gd.ones(2, 3), 1, gd.tensor([0, 2]), -1.0).tolist()
    [[-1.0, 1.0, -1.0], [-1.0, 1.0, -1.0]]
    """
    d, ind = _index_along(input, dim, index, "index_fill")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ValueError(f"index_fill: value must be a number or a 0-d tensor, got shape "
                             f"{tuple(value.shape)}")
        value = value.item()
    view = [1] * input.ndim
    mask = np.zeros(input.shape[d] if input.ndim else 1, dtype=bool)
    mask[ind] = True
    if input.ndim:
        view[d] = mask.size
    return idx.masked_fill(input, Tensor._make(np.ascontiguousarray(mask.reshape(view))), value)


def diff(input: Tensor, n: int = 1, dim: int = -1, prepend: Any = None,  # noqa: A002
         append: Any = None) -> Tensor:
    """The n-th forward difference along dim (out[i] = x[i + 1] - x[i], n times), after
    concatenating prepend/append along dim.

    >>> gd.diff(gd.tensor([1.0, 4.0, 9.0, 16.0])).tolist()
    [3.0, 5.0, 7.0]
    >>> gd.diff(gd.tensor([1.0, 4.0, 9.0, 16.0]), n=2).tolist()
    [2.0, 2.0]
    """
    _check_tensor(input, "diff")
    if input.ndim == 0:
        raise RuntimeError("diff: input must have at least one dimension")
    n = _int(n, "diff", "n")
    if n < 0:
        raise ValueError(f"diff: n must be non-negative, got {n}")
    d = _norm_dim(dim, input.ndim, "diff")
    parts = []
    for name, extra in (("prepend", prepend), ("append", append)):
        if extra is None:
            parts.append(None)
            continue
        if not isinstance(extra, Tensor):
            raise TypeError(f"diff: argument '{name}' must be a Tensor, got "
                            f"{type(extra).__name__}")
        parts.append(extra)
    x = shp.cat([t for t in (parts[0], input, parts[1]) if t is not None], dim=d) \
        if any(t is not None for t in parts) else input
    for _ in range(n):
        m = x.shape[d]
        if m == 0:
            break
        x = narrow(x, d, 1, m - 1) - narrow(x, d, 0, m - 1) if x._data.dtype != np.bool_ \
            else Tensor._make(np.asarray(narrow(x, d, 1, m - 1)._data ^
                                         narrow(x, d, 0, m - 1)._data))
    return x


def rot90(input: Tensor, k: int = 1, dims: Any = (0, 1)) -> Tensor:  # noqa: A002
    """input rotated by 90 degrees k times in the plane of dims, from the first toward the
    second.

    >>> gd.rot90(gd.tensor([[1, 2], [3, 4]])).tolist()
    [[2, 4], [1, 3]]
    """
    _check_tensor(input, "rot90")
    ds = _ints(dims, "rot90", "dims")
    if len(ds) != 2 or input.ndim < 2:
        raise ValueError(f"rot90: dims must be 2 dimensions of an input with at least 2, got "
                         f"dims={dims} for shape {tuple(input.shape)}")
    d0, d1 = (_norm_dim(d, input.ndim, "rot90") for d in ds)
    if d0 == d1:
        raise ValueError(f"rot90: dims must differ, got {dims}")
    k = _int(k, "rot90", "k") % 4
    if k == 0:
        return input
    if k == 2:
        return idx.flip(input, d0, d1)
    if k == 1:
        return shp.transpose(idx.flip(input, d1), d0, d1)
    return idx.flip(shp.transpose(input, d0, d1), d1)


def meshgrid(*tensors: Any, indexing: str = "ij") -> tuple:
    """Coordinate grids from 1-d tensors: with indexing="ij" output k varies along dimension k
    (shape (len(t0), len(t1), ...)); "xy" swaps the first two dimensions (NumPy's default).

    >>> x, y = gd.meshgrid(gd.tensor([1, 2, 3]), gd.tensor([4, 5]), indexing="ij")
    >>> x.tolist(), y.tolist()
    ([[1, 1], [2, 2], [3, 3]], [[4, 5], [4, 5], [4, 5]])
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or t.ndim > 1:
            raise TypeError(f"meshgrid: each input must be a 0-d or 1-d Tensor, got "
                            f"{getattr(t, 'shape', type(t).__name__)} at position {i}")
        if t._data.dtype != tensors[0]._data.dtype:
            raise TypeError(f"meshgrid: inputs must have the same dtype, got "
                            f"{tensors[0].dtype} and {t.dtype}")
    n = len(tensors)
    pos = list(range(n))
    if indexing == "xy" and n >= 2:
        pos[0], pos[1] = 1, 0
    full = [0] * n
    for k, t in enumerate(tensors):
        full[pos[k]] = t.numel()
    out = []
    for k, t in enumerate(tensors):
        view = [1] * n
        view[pos[k]] = -1
        out.append(shp.expand(shp.reshape(t, *view), *full))
    return tuple(out)


def cartesian_prod(*tensors: Any) -> Tensor:
    """All combinations of the 1-d inputs' elements, as rows (itertools.product order); one
    input is returned as is.

    >>> gd.cartesian_prod(gd.tensor([1, 2]), gd.tensor([3, 4])).tolist()
    [[1, 3], [1, 4], [2, 3], [2, 4]]
    """
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or t.ndim != 1:
            raise TypeError(f"cartesian_prod: each input must be a 1-d Tensor, got "
                            f"{getattr(t, 'shape', type(t).__name__)} at position {i}")
    if len(tensors) == 1:
        return tensors[0]
    grids = meshgrid(*tensors, indexing="ij")
    return shp.stack([shp.reshape(g, -1) for g in grids], dim=1)


__all__ = ["cartesian_prod", "diff", "index_add", "index_copy", "index_fill", "meshgrid",
           "moveaxis", "movedim", "narrow", "repeat_interleave", "roll", "rot90", "swapaxes",
           "swapdims", "take_along_dim", "tile"]
