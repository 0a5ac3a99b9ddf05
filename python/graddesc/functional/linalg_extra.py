"""Linear algebra for PyTorch ports: einsum, tensordot, the add*mm family (addmm, addmv, addbmm,
baddbmm), mv, dot, vdot, cdist, diag, diagonal, trace, kron, cross.

Each is a composition of ops that have kernels (permute, reshape, expand, index_select, sum,
matmul, elementwise arithmetic), so each is differentiable through autograd (to any order) and a
step that uses them can be captured by gd.compile. NumPy is not used to compute any value here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc import _creation
from graddesc._tensor import Tensor, _norm_dim
from graddesc.functional import elementwise as ew
from graddesc.functional import indexing as idx
from graddesc.functional import linear as lin
from graddesc.functional import reduce as red
from graddesc.functional import shape as shp
from graddesc.functional.math import _check_tensor


def _shape(t: Tensor) -> tuple:
    return tuple(t.shape)


def _need_ndim(t: Any, n: int, op: str, name: str) -> None:
    _check_tensor(t, op)
    if t.ndim != n:
        raise ValueError(f"{op}: argument '{name}' must be {n}-d, got shape {_shape(t)}")


def _same_dtype(a: Tensor, b: Tensor, op: str, na: str, nb: str) -> None:
    if a._data.dtype != b._data.dtype:
        raise TypeError(f"{op}: arguments '{na}' and '{nb}' must have the same dtype, got "
                        f"{a.dtype} and {b.dtype}")


def _scaled(t: Tensor, s: Any) -> Tensor:
    return t if (not isinstance(s, Tensor) and s == 1) else t * s


# ---- diagonals ------------------------------------------------------------------------------
def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:  # noqa: A002
    """The diagonal of input over (dim1, dim2), as a new last dimension (offset > 0: above the
    main diagonal, < 0: below). Differentiable; a copy, not a view.

    >>> gd.diagonal(gd.arange(9.0).reshape(3, 3)).tolist()
    [0.0, 4.0, 8.0]
    >>> gd.diagonal(gd.arange(9.0).reshape(3, 3), offset=1).tolist()
    [1.0, 5.0]
    """
    _check_tensor(input, "diagonal")
    if input.ndim < 2:
        raise ValueError(f"diagonal: input must have at least 2 dimensions, got shape "
                         f"{_shape(input)}")
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise TypeError(f"diagonal: offset must be an int, got {type(offset).__name__}")
    d1 = _norm_dim(dim1, input.ndim, "diagonal")
    d2 = _norm_dim(dim2, input.ndim, "diagonal")
    if d1 == d2:
        raise ValueError(f"diagonal: dim1 and dim2 must differ, got {dim1} and {dim2}")
    order = [i for i in range(input.ndim) if i not in (d1, d2)] + [d1, d2]
    x = shp.permute(input, *order) if order != list(range(input.ndim)) else input
    n, m = x.shape[-2], x.shape[-1]
    offset = int(offset)
    rows = np.arange(max(0, -offset), n, dtype=np.int64)
    rows = rows[rows + offset < m]
    flat = shp.reshape(x, *x.shape[:-2], n * m)
    index = _creation._const(np.ascontiguousarray(rows * m + rows + offset), False)
    return idx.index_select(flat, -1, index)


def diag(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """1-d input: the square matrix with input on its `diagonal`-th diagonal. 2-d input: that
    diagonal of the matrix (as PyTorch's diag). Differentiable.

    >>> gd.diag(gd.tensor([1.0, 2.0])).tolist()
    [[1.0, 0.0], [0.0, 2.0]]
    >>> gd.diag(gd.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [1.0, 4.0]
    """
    _check_tensor(input, "diag")
    if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
        raise TypeError(f"diag: diagonal must be an int, got {type(diagonal).__name__}")
    if input.ndim == 2:
        return globals()["diagonal"](input, int(diagonal))
    if input.ndim != 1:
        raise ValueError(f"diag: input must be 1-d or 2-d, got shape {_shape(input)}")
    k = int(diagonal)
    n = input.shape[0]
    def zeros(*shape: int) -> Tensor:
        return _creation.zeros(*shape, dtype=input.dtype)  # a constant under gd.compile

    # rows [v_i, 0 * n] flattened put v_i at i * (n + 1): the (n, n) diagonal, no placement
    # matrix (O(n^2) memory)
    sq = shp.cat([shp.reshape(input, n, 1), zeros(n, n)], dim=1)
    sq = shp.reshape(shp.reshape(sq, n * (n + 1))[:n * n], n, n)
    if k > 0:
        sq = shp.cat([shp.cat([zeros(n, k), sq], dim=1), zeros(k, n + k)], dim=0)
    elif k < 0:
        sq = shp.cat([zeros(-k, n - k), shp.cat([sq, zeros(n, -k)], dim=1)], dim=0)
    return sq


def trace(input: Tensor) -> Tensor:  # noqa: A002
    """The sum of a 2-d tensor's main diagonal.

    >>> gd.trace(gd.tensor([[1.0, 2.0], [3.0, 4.0]])).item()
    5.0
    """
    _need_ndim(input, 2, "trace", "input")
    return red.sum(diagonal(input))


# ---- products -------------------------------------------------------------------------------
def dot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """The inner product of two 1-d tensors of the same length and dtype (0-d result).

    >>> gd.dot(gd.tensor([1.0, 2.0]), gd.tensor([3.0, 4.0])).item()
    11.0
    """
    _need_ndim(input, 1, "dot", "input")
    _need_ndim(other, 1, "dot", "other")
    _same_dtype(input, other, "dot", "input", "other")
    if input.shape[0] != other.shape[0]:
        raise ValueError(f"dot: inputs must have the same length, got shapes {_shape(input)} "
                         f"and {_shape(other)}")
    n = input.shape[0]  # as a (1, n) @ (n, 1) product: the 2-d kernel, captured by gd.compile
    return shp.reshape(lin.matmul(shp.reshape(input, 1, n), shp.reshape(other, n, 1)))


def vdot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """dot with the first argument conjugated: for the real tensors graddesc has, dot.

    >>> gd.vdot(gd.tensor([1.0, 2.0]), gd.tensor([3.0, 4.0])).item()
    11.0
    """
    return dot(input, other)


def mv(input: Tensor, vec: Tensor) -> Tensor:  # noqa: A002
    """Matrix-vector product: (n, m) @ (m,) -> (n,).

    >>> gd.mv(gd.ones(2, 3), gd.tensor([1.0, 2.0, 3.0])).tolist()
    [6.0, 6.0]
    """
    _need_ndim(input, 2, "mv", "input")
    _need_ndim(vec, 1, "mv", "vec")
    _same_dtype(input, vec, "mv", "input", "vec")
    if input.shape[1] != vec.shape[0]:
        raise ValueError(f"mv: shapes {_shape(input)} and {_shape(vec)} don't match (expected "
                         f"(n, m) and (m,))")
    return shp.reshape(lin.matmul(input, shp.reshape(vec, vec.shape[0], 1)), input.shape[0])


def _add_product(input: Tensor, prod: Tensor, beta: Any, alpha: Any, op: str) -> Tensor:
    _check_tensor(input, op)
    try:
        np.broadcast_shapes(_shape(input), _shape(prod))
        if np.broadcast_shapes(_shape(input), _shape(prod)) != _shape(prod):
            raise ValueError
    except ValueError:
        raise ValueError(f"{op}: argument 'input' of shape {_shape(input)} does not broadcast "
                         f"to the product's shape {_shape(prod)}") from None
    p = _scaled(prod, alpha)
    if not isinstance(beta, Tensor) and beta == 0:  # PyTorch ignores input (even nan) then
        return p
    return _scaled(input, beta) + p


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta: Any = 1,  # noqa: A002
          alpha: Any = 1) -> Tensor:
    """beta * input + alpha * (mat1 @ mat2), input broadcast to (n, p) (beta=0: input ignored).

    >>> gd.addmm(gd.ones(2, 2), gd.ones(2, 3), gd.ones(3, 2), alpha=2).tolist()
    [[7.0, 7.0], [7.0, 7.0]]
    """
    _need_ndim(mat1, 2, "addmm", "mat1")
    _need_ndim(mat2, 2, "addmm", "mat2")
    if mat1.shape[1] != mat2.shape[0]:
        raise ValueError(f"addmm: shapes {_shape(mat1)} and {_shape(mat2)} don't match "
                         f"(expected (n, m) and (m, p))")
    return _add_product(input, lin.matmul(mat1, mat2), beta, alpha, "addmm")


def addmv(input: Tensor, mat: Tensor, vec: Tensor, *, beta: Any = 1,  # noqa: A002
          alpha: Any = 1) -> Tensor:
    """beta * input + alpha * (mat @ vec).

    >>> gd.addmv(gd.ones(2), gd.ones(2, 3), gd.ones(3)).tolist()
    [4.0, 4.0]
    """
    return _add_product(input, mv(mat, vec), beta, alpha, "addmv")


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta: Any = 1,  # noqa: A002
            alpha: Any = 1) -> Tensor:
    """beta * input + alpha * bmm(batch1, batch2): (b, n, m) @ (b, m, p) -> (b, n, p).

    >>> gd.baddbmm(gd.zeros(2, 1, 1), gd.ones(2, 1, 3), gd.ones(2, 3, 1)).flatten().tolist()
    [3.0, 3.0]
    """
    from graddesc.functional.port_ops import bmm

    return _add_product(input, bmm(batch1, batch2), beta, alpha, "baddbmm")


def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta: Any = 1,  # noqa: A002
           alpha: Any = 1) -> Tensor:
    """beta * input + alpha * sum over b of batch1[b] @ batch2[b]: (n, p) result.

    >>> gd.addbmm(gd.zeros(1, 1), gd.ones(2, 1, 3), gd.ones(2, 3, 1)).tolist()
    [[6.0]]
    """
    from graddesc.functional.port_ops import bmm

    return _add_product(input, red.sum(bmm(batch1, batch2), dim=0), beta, alpha, "addbmm")


def tensordot(a: Tensor, b: Tensor, dims: Any = 2) -> Tensor:
    """Contracts a's last `dims` dimensions with b's first ones (dims an int), or the listed
    dimensions (dims a pair of lists): the result has a's free dimensions, then b's.

    >>> gd.tensordot(gd.ones(2, 3, 4), gd.ones(3, 4, 5)).shape
    graddesc.Size([2, 5])
    >>> gd.tensordot(gd.ones(2, 3), gd.ones(3, 2), dims=([1], [0])).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """
    _check_tensor(a, "tensordot")
    _check_tensor(b, "tensordot")
    _same_dtype(a, b, "tensordot", "a", "b")
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool):
        k = int(dims)
        if k < 0 or k > a.ndim or k > b.ndim:
            raise ValueError(f"tensordot: dims must be in [0, {min(a.ndim, b.ndim)}], got {k}")
        da, db = list(range(a.ndim - k, a.ndim)), list(range(k))
    elif isinstance(dims, (list, tuple)) and len(dims) == 2:
        da, db = ([dims[0]] if isinstance(dims[0], int) else list(dims[0]),
                  [dims[1]] if isinstance(dims[1], int) else list(dims[1]))
        if len(da) != len(db):
            raise ValueError(f"tensordot: dims must list as many dimensions of a as of b, got "
                             f"{dims}")
        da = [_norm_dim(d, a.ndim, "tensordot") for d in da]
        db = [_norm_dim(d, b.ndim, "tensordot") for d in db]
    else:
        raise TypeError(f"tensordot: dims must be an int or a pair of lists of ints, got "
                        f"{dims!r}")
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise ValueError(f"tensordot: contracted dimension {i} of a (size {a.shape[i]}) "
                             f"doesn't match dimension {j} of b (size {b.shape[j]}); shapes "
                             f"{_shape(a)} and {_shape(b)}")
    fa = [i for i in range(a.ndim) if i not in da]
    fb = [j for j in range(b.ndim) if j not in db]
    k = int(np.prod([a.shape[i] for i in da], dtype=np.int64))
    am = shp.reshape(shp.permute(a, *(fa + da)), -1 if a.numel() else
                     int(np.prod([a.shape[i] for i in fa], dtype=np.int64)), k)
    bm = shp.reshape(shp.permute(b, *(db + fb)), k, -1 if b.numel() else
                     int(np.prod([b.shape[j] for j in fb], dtype=np.int64)))
    out = lin.matmul(am, bm)
    return shp.reshape(out, *[a.shape[i] for i in fa], *[b.shape[j] for j in fb])


def kron(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """The Kronecker product: the block tensor whose block i is input[i] * other (the shorter
    shape is padded with leading 1s).

    >>> gd.kron(gd.tensor([1.0, 2.0]), gd.tensor([1.0, 10.0])).tolist()
    [1.0, 10.0, 2.0, 20.0]
    """
    _check_tensor(input, "kron")
    _check_tensor(other, "kron")
    n = max(input.ndim, other.ndim)
    sa = (1,) * (n - input.ndim) + _shape(input)
    sb = (1,) * (n - other.ndim) + _shape(other)
    # interleave: a as (a0, 1, a1, 1, ...), b as (1, b0, 1, b1, ...)
    ia = [v for s in sa for v in (s, 1)]
    ib = [v for s in sb for v in (1, s)]
    prod = shp.reshape(input, *ia) * shp.reshape(other, *ib)
    return shp.reshape(prod, *[x * y for x, y in zip(sa, sb)])


def cross(input: Tensor, other: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """The cross product of 3-vectors along dim (broadcasting the other dimensions). dim=None
    takes the first dimension of size 3 (as torch.cross, which warns about it).

    >>> gd.cross(gd.tensor([1.0, 0.0, 0.0]), gd.tensor([0.0, 1.0, 0.0])).tolist()
    [0.0, 0.0, 1.0]
    """
    _check_tensor(input, "cross")
    _check_tensor(other, "cross")
    try:
        shape = np.broadcast_shapes(_shape(input), _shape(other))
    except ValueError:
        raise ValueError(f"cross: shapes {_shape(input)} and {_shape(other)} don't "
                         f"broadcast") from None
    if dim is None:
        dims = [i for i, s in enumerate(shape) if s == 3]
        if not dims:
            raise ValueError(f"cross: no dimension of size 3 in shape {shape}")
        d = dims[0]
    else:
        d = _norm_dim(dim, len(shape), "cross")
    if input.ndim != other.ndim:
        raise ValueError(f"cross: input and other must have the same number of dimensions, got "
                         f"shapes {_shape(input)} and {_shape(other)}")
    if input.shape[d] != 3 or other.shape[d] != 3:
        raise ValueError(f"cross: dimension {d} must have size 3 in both inputs, got shapes "
                         f"{_shape(input)} and {_shape(other)}")

    def comp(t: Tensor, i: int) -> Tensor:
        return idx.index_select(t, d, _creation._const(np.array([i], dtype=np.int64), False))

    a = [comp(input, i) for i in range(3)]
    b = [comp(other, i) for i in range(3)]
    return shp.cat([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                    a[0] * b[1] - a[1] * b[0]], dim=d)


# ---- distances ------------------------------------------------------------------------------
_MODES = ("use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist",
          "donot_use_mm_for_euclid_dist")


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str = _MODES[0]) -> Tensor:
    """Pairwise p-norm distances between the rows of x1 (..., P, M) and x2 (..., R, M):
    (..., P, R), batch dimensions broadcast.

    p=2 follows PyTorch's compute_mode: the default uses the expansion
    |x|^2 - 2 x.y + |y|^2 (one matmul; squared distances clamped at 1e-30 before the square
    root, as PyTorch does) when P > 25 or R > 25, else the differences directly. Other p (1, inf,
    any p > 0, and 0 counting nonzeros) take the differences directly. Gradients where a
    distance is 0 are 0, as PyTorch's.

    >>> gd.cdist(gd.tensor([[0.0, 0.0]]), gd.tensor([[3.0, 4.0], [1.0, 0.0]])).tolist()
    [[5.0, 1.0]]
    >>> gd.cdist(gd.tensor([[0.0, 0.0]]), gd.tensor([[3.0, 4.0]]), p=1).tolist()
    [[7.0]]
    """
    for name, t in (("x1", x1), ("x2", x2)):
        _check_tensor(t, "cdist")
        if t.ndim < 2:
            raise ValueError(f"cdist: argument '{name}' must have at least 2 dimensions, got "
                             f"shape {_shape(t)}")
        if t._data.dtype.kind != "f":
            raise TypeError(f"cdist: argument '{name}' must be floating point, got {t.dtype}")
    _same_dtype(x1, x2, "cdist", "x1", "x2")
    if x1.shape[-1] != x2.shape[-1]:
        raise ValueError(f"cdist: x1 and x2 must have the same number of columns, got shapes "
                         f"{_shape(x1)} and {_shape(x2)}")
    if compute_mode not in _MODES:
        raise ValueError(f"cdist: compute_mode must be one of {_MODES}, got {compute_mode!r}")
    p = float(p)
    if not p >= 0:
        raise ValueError(f"cdist: p must be >= 0, got {p}")
    try:
        batch = np.broadcast_shapes(_shape(x1)[:-2], _shape(x2)[:-2])
    except ValueError:
        raise ValueError(f"cdist: batch dimensions of shapes {_shape(x1)} and {_shape(x2)} "
                         f"don't broadcast") from None
    a = shp.expand(x1, *batch, *x1.shape[-2:]) if _shape(x1)[:-2] != batch else x1
    b = shp.expand(x2, *batch, *x2.shape[-2:]) if _shape(x2)[:-2] != batch else x2
    pr, rr = a.shape[-2], b.shape[-2]
    use_mm = p == 2 and (compute_mode == _MODES[1] or (compute_mode == _MODES[0]
                                                       and (pr > 25 or rr > 25)))
    if use_mm:
        an = red.sum(a * a, dim=-1, keepdim=True)
        bn = red.sum(b * b, dim=-1, keepdim=True)
        d2 = an - 2.0 * lin.matmul(a, shp.transpose(b, -2, -1)) + shp.transpose(bn, -2, -1)
        return ew.sqrt(ew.clamp(d2, 1e-30, None))
    diff = shp.unsqueeze(a, -2) - shp.unsqueeze(b, -3)  # (..., P, R, M)
    if p == 0:
        return red.sum(ew.ne(diff, 0.0).to(a.dtype), dim=-1)
    ad = ew.abs(diff)
    if p == 1:
        return red.sum(ad, dim=-1)
    if p == float("inf"):
        if diff.shape[-1] == 0:
            return red.sum(ad, dim=-1)
        return red.amax(ad, dim=-1)
    s = red.sum(ad * ad if p == 2 else ad ** p, dim=-1)
    pos = ew.gt(s, 0.0)  # a zero distance: value 0 and gradient 0 (not 0 * inf)
    one = _creation.ones((), dtype=s.dtype)  # constants under gd.compile
    zero = _creation.zeros((), dtype=s.dtype)
    safe = ew.where(pos, s, one)
    root = ew.sqrt(safe) if p == 2 else safe ** (1.0 / p)
    return ew.where(pos, root, zero)


# ---- einsum ---------------------------------------------------------------------------------
def _parse_einsum(eq: str, ops: list) -> tuple:
    """(input letter lists, output letter list) with '...' expanded to fresh letters."""
    eq = eq.replace(" ", "")
    if "->" in eq:
        lhs, rhs = eq.split("->")
    else:
        lhs, rhs = eq, None
    terms = lhs.split(",")
    if len(terms) != len(ops):
        raise ValueError(f"einsum: the equation has {len(terms)} operand(s) but "
                         f"{len(ops)} tensor(s) were given")
    ell_n = 0
    parsed = []
    for term, t in zip(terms, ops):
        if term.count("...") > 1 or "." in term.replace("...", ""):
            raise ValueError(f"einsum: invalid subscript {term!r} in {eq!r}")
        letters = term.replace("...", "")
        for c in letters:
            if not c.isalpha():
                raise ValueError(f"einsum: subscripts must be letters, got {c!r} in {eq!r}")
        if "..." in term:
            n_ell = t.ndim - len(letters)
            if n_ell < 0:
                raise ValueError(f"einsum: subscript {term!r} has more letters than operand "
                                 f"of shape {_shape(t)} has dimensions")
            ell_n = max(ell_n, n_ell)
        elif len(letters) != t.ndim:
            raise ValueError(f"einsum: subscript {term!r} has {len(letters)} letter(s) but the "
                             f"operand has shape {_shape(t)}")
        parsed.append(term)
    ell = [f"_{i}" for i in range(ell_n)]  # ellipsis dims, right-aligned across operands
    out_in = []
    for term, t in zip(parsed, ops):
        if "..." in term:
            pre, post = term.split("...")
            n_ell = t.ndim - len(pre) - len(post)
            out_in.append(list(pre) + ell[ell_n - n_ell:] + list(post))
        else:
            out_in.append(list(term))
    if rhs is None:
        counts: dict = {}
        for lets in out_in:
            for c in lets:
                counts[c] = counts.get(c, 0) + 1
        out = ell + sorted(c for c, k in counts.items() if k == 1 and not c.startswith("_"))
    else:
        if rhs.count("...") > 1 or "." in rhs.replace("...", ""):
            raise ValueError(f"einsum: invalid output subscript {rhs!r}")
        pre, _, post = rhs.partition("...")
        out = list(pre) + (ell if "..." in rhs else []) + list(post)
        seen = set()
        for c in out:
            if c in seen:
                raise ValueError(f"einsum: output subscript {c!r} appears more than once")
            seen.add(c)
            if not any(c in lets for lets in out_in):
                raise ValueError(f"einsum: output subscript {c!r} does not appear in the "
                                 f"inputs")
    return out_in, out


def _einsum_prepare(t: Tensor, lets: list, keep: set) -> tuple:
    """Take diagonals of repeated letters and sum out letters nobody else needs."""
    lets = list(lets)
    while True:
        rep = next((c for c in lets if lets.count(c) > 1), None)
        if rep is None:
            break
        i = lets.index(rep)
        j = lets.index(rep, i + 1)
        if t.shape[i] != t.shape[j]:
            raise ValueError(f"einsum: subscript {rep!r} is repeated over dimensions of "
                             f"different sizes {t.shape[i]} and {t.shape[j]}")
        t = diagonal(t, 0, i, j)  # removes i and j, appends the diagonal last
        lets = [c for k, c in enumerate(lets) if k not in (i, j)] + [rep]
    drop = [k for k, c in enumerate(lets) if c not in keep]
    if drop:
        t = red.sum(t, dim=tuple(drop))
        lets = [c for c in lets if c in keep]
    return t, lets


def _einsum_pair(a: Tensor, la: list, b: Tensor, lb: list, keep: set) -> tuple:
    """Contract two prepared operands: batch letters (both, kept), contracted (both, not kept),
    and each side's own letters, through one matmul."""
    batch = [c for c in la if c in lb and c in keep]
    contr = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    size = {}
    for t, lets in ((a, la), (b, lb)):
        for k, c in enumerate(lets):
            s = t.shape[k]
            if c in size and size[c] != s and 1 not in (size[c], s):
                raise ValueError(f"einsum: subscript {c!r} has sizes {size[c]} and {s} in "
                                 f"different operands")
            size[c] = s if c not in size or size[c] == 1 else size[c]

    def arrange(t: Tensor, lets: list, order: list) -> Tensor:
        perm = [lets.index(c) for c in order]
        if perm != list(range(len(perm))):
            t = shp.permute(t, *perm)
        full = [size[c] for c in order]
        if _shape(t) != tuple(full):
            t = shp.expand(t, *full)
        return t

    def prod(cs: list) -> int:
        return int(np.prod([size[c] for c in cs], dtype=np.int64))

    nb, nl, nr, nc = prod(batch), prod(left), prod(right), prod(contr)
    am = shp.reshape(arrange(a, la, batch + left + contr), nb, nl, nc)
    bm = shp.reshape(arrange(b, lb, batch + contr + right), nb, nc, nr)
    if nb == 1:  # a plain matrix product (the 2-d kernel)
        am, bm = shp.reshape(am, nl, nc), shp.reshape(bm, nc, nr)
    out = lin.matmul(am, bm)
    lets = batch + left + right
    return shp.reshape(out, *[size[c] for c in lets]), lets


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation: "ij,jk->ik" is matmul. Supports '...' (broadcast batch dimensions),
    the implicit output (no '->': the letters used once, sorted, after the ellipsis), repeated
    letters in one operand (a diagonal, "ii->i"; a trace, "ii") and any number of operands
    (contracted left to right). Built on permute/reshape/matmul/sum: differentiable.

    >>> a = gd.arange(6.0).reshape(2, 3)
    >>> gd.einsum("ij,kj->ik", a, a).tolist()
    [[5.0, 14.0], [14.0, 50.0]]
    >>> gd.einsum("ii", gd.eye(3)).item()
    3.0
    """
    if not isinstance(equation, str):
        raise TypeError(f"einsum: equation must be a str, got {type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum: expected at least one operand")
    for i, t in enumerate(operands):
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum: operand {i} must be a Tensor, got {type(t).__name__}")
    dt = operands[0]._data.dtype
    for i, t in enumerate(operands):
        if t._data.dtype != dt:
            raise TypeError(f"einsum: operands must have the same dtype, got "
                            f"{operands[0].dtype} (operand 0) and {t.dtype} (operand {i})")
    ins, out = _parse_einsum(equation, list(operands))
    tensors = list(operands)

    def needed(skip: set) -> set:
        s = set(out)
        for k, lets in enumerate(ins):
            if k not in skip:
                s.update(lets)
        return s

    cur, cl = _einsum_prepare(tensors[0], ins[0], needed({0}))
    for k in range(1, len(tensors)):
        later = needed(set(range(k + 1)))
        t, tl = _einsum_prepare(tensors[k], ins[k], later | set(cl))
        cur, cl = _einsum_prepare(cur, cl, later | set(tl))
        cur, cl = _einsum_pair(cur, cl, t, tl, later)
    cur, cl = _einsum_prepare(cur, cl, set(out))
    perm = [cl.index(c) for c in out]
    if perm != list(range(len(perm))):
        cur = shp.permute(cur, *perm)
    return cur


__all__ = ["addbmm", "addmm", "addmv", "baddbmm", "cdist", "cross", "diag", "diagonal", "dot",
           "einsum", "kron", "mv", "tensordot", "trace", "vdot"]
