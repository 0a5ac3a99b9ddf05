"""Matrix products and the Linear layer's op, backed by src/cpp/linear.cpp and gemm.cpp.

linear(x, W, b) = x W^T + b is the lecture's weighted sum s[i] = sum_j w[i, j] z[j].
The backward runs the fused C++ kernel (dx, dW, db in one call) unless a higher-order graph is
being built (create_graph=True), in which case it is written with differentiable matmuls.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, call_kernel, contiguous
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function


def _gemm_operand(a: np.ndarray) -> tuple:
    """(array, transposed) such that the kernel reads a without copying when possible."""
    flags = a.flags
    if flags.aligned and flags.c_contiguous:
        return a, False
    if flags.aligned and flags.f_contiguous:  # (a.T is C-contiguous)
        return a.T, True
    return contiguous(a), False


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, N) for float arrays of one dtype, via the C++ GEMM."""
    A, ta = _gemm_operand(a)
    B, tb = _gemm_operand(b)
    return _core.gemm(A, B, trans_a=ta, trans_b=tb)


_GEMM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _rows(a: np.ndarray, rows: int) -> np.ndarray:
    """a (..., n) as (rows, n) C-contiguous, which the kernels read: a view of a C-contiguous
    a, else one copy by the copy kernel (not NumPy's reshape, which gd.compile cannot see)."""
    return contiguous(a).reshape(rows, a.shape[-1])


# A batched product runs one GEMM call per batch index from Python (a few microseconds each)
# only when each product is big enough for that to be small beside it; smaller ones stay with
# NumPy's matmul (so gd.compile falls back on them, with a warning). The choice depends on the
# shapes alone: eager and a replay always take the same path.
_BATCHED_MIN_WORK = 1 << 20  # M * N * K


def _batched_mm(a: np.ndarray, b: np.ndarray) -> Optional[np.ndarray]:
    """a @ b for float arrays of one dtype with ndim >= 2 and batch dims that broadcast, by the
    C++ GEMM (which gd.compile records): (..., M, K) @ (K, N) with a C-contiguous as one
    (.. M, K) @ (K, N) product; products of at least _BATCHED_MIN_WORK multiply-adds one GEMM
    per batch index into its slice of the result (each sums in the GEMM's order, whatever the
    batch); None for the rest (NumPy's matmul)."""
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if b.ndim == 2 and a.flags.c_contiguous and a.flags.aligned:
        return _mm(a.reshape(math.prod(a.shape[:-1]), K), b).reshape(batch + (M, N))
    if M * N * K < _BATCHED_MIN_WORK:
        return None
    # (NumPy's own allocation: the array owning its memory is the result itself, which lets a
    # recording see the slices' products cover it)
    out = np.empty(batch + (M, N), a.dtype)
    if out.size == 0:
        return out
    if K == 0:
        out.fill(0)
        return out
    ab = np.broadcast_to(a, batch + (M, K))
    bb = np.broadcast_to(b, batch + (K, N))
    for idx in np.ndindex(*batch):
        A, ta = _gemm_operand(ab[idx])
        B, tb = _gemm_operand(bb[idx])
        _core.gemm(A, B, trans_a=ta, trans_b=tb, out=out[idx])
    return out


def _check_tensors(a: Tensor, b: Tensor, op: str) -> None:
    for name, t in (("input", a), ("other", b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(t).__name__}")


class MatMul(Function):
    """a @ b with NumPy's matmul rules (1-d vectors, batched leading dims that broadcast)."""

    @staticmethod
    def forward(ctx, a, b):
        ad, bd = a._data, b._data
        if ad.ndim == 0 or bd.ndim == 0:
            raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes "
                               f"{tuple(ad.shape)} and {tuple(bd.shape)}")
        k_a = ad.shape[-1]
        k_b = bd.shape[0] if bd.ndim == 1 else bd.shape[-2]
        if k_a != k_b:
            raise RuntimeError(f"matmul: shapes {tuple(ad.shape)} and {tuple(bd.shape)} cannot be "
                               f"multiplied ({k_a} != {k_b})")
        if ad.dtype is not bd.dtype and ad.dtype != bd.dtype:
            raise RuntimeError(f"matmul: expected both arguments to have the same dtype, got "
                               f"{a.dtype} and {b.dtype}")
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None,
                              b if ctx.needs_input_grad[0] else None)
        ctx.a_ndim, ctx.b_ndim = ad.ndim, bd.ndim
        if ad.ndim == 2 and bd.ndim == 2 and ad.dtype.kind == "f":
            return Tensor._make(_mm(ad, bd))
        if ad.ndim >= 2 and bd.ndim >= 2 and ad.dtype in _GEMM_DTYPES and \
                (ad.ndim > 2 or bd.ndim > 2):
            out = _batched_mm(ad, bd)
            if out is not None:
                return Tensor._make(out)
        # vector @ vector gives a NumPy scalar: keep it a 0-d array; Inf * 0 is NaN silently
        with np.errstate(all="ignore"):
            return Tensor._make(np.asarray(np.matmul(ad, bd)))

    @staticmethod
    def backward(ctx, g):
        # With a_ = a as a matrix (a row if a is 1-d) and b_ likewise (a column if 1-d),
        # y_ = a_ b_ gives dA_ = g_ b_^T and dB_ = a_^T g_; the engine sums broadcast batch dims.
        a, b = ctx.saved_tensors
        if ctx.a_ndim == 2 and ctx.b_ndim == 2 and not grad_mode._state.enabled and \
                type(g) is Tensor and g._data.ndim == 2:
            # nothing records (no create_graph): the two products by the GEMM, as the ops below
            # would run them (g @ b^T, a^T @ g), without their bookkeeping
            gd_ = g._data
            dt = gd_.dtype
            if dt.kind == "f" and (a is None or a._data.dtype == dt) and \
                    (b is None or b._data.dtype == dt):
                na, nb = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
                return (Tensor._make(_mm(gd_, b._data.T)) if na else None,
                        Tensor._make(_mm(a._data.T, gd_)) if nb else None)
        a_vec, b_vec = ctx.a_ndim == 1, ctx.b_ndim == 1
        if a_vec and b_vec:
            g_ = g.reshape(1, 1)
        elif a_vec:
            g_ = g.unsqueeze(-2)
        elif b_vec:
            g_ = g.unsqueeze(-1)
        else:
            g_ = g
        ga = gb = None
        if ctx.needs_input_grad[0]:
            b_ = b.unsqueeze(-1) if b_vec else b
            ga = g_ @ b_.transpose(-1, -2)
            ga = ga.squeeze(-2) if a_vec else ga
        if ctx.needs_input_grad[1]:
            if ctx.b_ndim == 2 and ctx.a_ndim > 2:
                # b's gradient summed over a's batch in one product: (rows of a)^T (rows of g)
                rows = math.prod(a.shape[:-1])  # (not -1: ambiguous for 0 elements)
                gb = a.reshape(rows, a.shape[-1]).transpose(0, 1) @ g_.reshape(rows, g_.shape[-1])
            else:
                a_ = a.unsqueeze(0) if a_vec else a
                gb = a_.transpose(-1, -2) @ g_
                gb = gb.squeeze(-1) if b_vec else gb
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b (NumPy/PyTorch matmul semantics); 2-d float products run the C++ GEMM.

    >>> gd.matmul(gd.tensor([[1.0, 2.0]]), gd.tensor([[3.0], [4.0]])).tolist()
    [[11.0]]
    """
    _check_tensors(a, b, "matmul")
    return MatMul.apply(a, b)


def mm(a: Tensor, b: Tensor) -> Tensor:
    """2-d matrix product.

    >>> gd.mm(gd.eye(2), gd.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm: expected 2-d tensors, got shapes {tuple(a.shape)} and "
                           f"{tuple(b.shape)}")
    return matmul(a, b)


class Linear(Function):
    """y = x W^T + b for x (IN,), (B, IN) or (..., IN)."""

    @staticmethod
    def forward(ctx, x, W, b):
        xd, Wd = x._data, W._data
        if xd.ndim <= 2:
            y = call_kernel(_core.linear_forward, xd, Wd, None if b is None else b._data)
        else:  # (..., IN) as (rows, IN); explicit row counts here and in backward:
            # reshape(-1, n) is ambiguous for 0 elements
            x2 = xd.reshape(math.prod(xd.shape[:-1]), xd.shape[-1])
            y = call_kernel(_core.linear_forward, x2, Wd, None if b is None else b._data)
            y = y.reshape(xd.shape[:-1] + (Wd.shape[0],))
        # x's values are needed only for W's gradient: with W frozen, an in-place op on x
        # afterwards leaves this backward valid (as in PyTorch); the kernel still gets x's
        # array (it reads only its shape then, and gd.compile sees the same buffer)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, W)
        ctx.x_data = xd
        return Tensor._make(y)

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad
        xd = ctx.x_data
        if grad_mode.is_grad_enabled():  # building a graph of the gradient: differentiable ops
            dx = g @ W if nx else None
            if xd.ndim == 1:
                dW = g.unsqueeze(1) * x.unsqueeze(0) if nw else None
                db = g if nb else None
            else:
                rows = math.prod(xd.shape[:-1])
                g2 = g.reshape(rows, g.shape[-1])
                dW = g2.transpose(0, 1) @ x.reshape(rows, xd.shape[-1]) if nw else None
                db = g2.sum(0) if nb else None
            return dx, dW, db
        x2, g2, gd = xd, g._data, g._data
        if xd.ndim > 2:  # (..., IN) as (rows, IN)
            rows = math.prod(xd.shape[:-1])
            # (a broadcast gradient, e.g. of mean(1), has no 2-d view: copied by the kernel,
            # which gd.compile records, not by NumPy's reshape)
            x2, g2 = _rows(xd, rows), _rows(gd, rows)
        if g2.dtype != x2.dtype:
            g2 = g2.astype(x2.dtype)
        # (nb: there is a bias and it needs a gradient)
        dx, dW, db = call_kernel(_core.linear_backward, g2, x2, W._data, bool(nx), bool(nw),
                                 bool(nb))
        if dx is not None and xd.ndim > 2:
            dx = dx.reshape(xd.shape)
        return (Tensor._make(dx) if dx is not None else None,
                Tensor._make(dW) if dW is not None else None,
                Tensor._make(db) if db is not None else None)


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:  # noqa: A002
    """input @ weight.T + bias; input (IN,) or (..., IN), weight (OUT, IN), bias (OUT,).

    >>> w, b = gd.tensor([[1.0, 2.0]]), gd.tensor([0.5])
    >>> F.linear(gd.tensor([[3.0, 4.0]]), w, b).tolist()
    [[11.5]]
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"linear: argument 'input' must be a Tensor, got {type(input).__name__}")
    if not isinstance(weight, Tensor):
        raise TypeError(f"linear: argument 'weight' must be a Tensor, got "
                        f"{type(weight).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"linear: argument 'bias' must be a Tensor or None, got "
                        f"{type(bias).__name__}")
    xd, wd = input._data, weight._data
    if xd.ndim == 0:
        raise ValueError("linear: argument 'input' must have at least 1 dimension, got a 0-d "
                         "tensor")
    if wd.ndim != 2:
        raise ValueError(f"linear: argument 'weight' must be 2-d (out_features, in_features), "
                         f"got shape {tuple(wd.shape)}")
    if xd.shape[-1] != wd.shape[1]:
        raise ValueError(f"linear: input has {xd.shape[-1]} features (shape "
                         f"{tuple(xd.shape)}) but weight has shape {tuple(wd.shape)} "
                         f"(expected (out_features, {xd.shape[-1]}))")
    if xd.dtype != wd.dtype or (bias is not None and bias._data.dtype != wd.dtype):
        raise TypeError(f"linear: input, weight and bias must share one float dtype, got "
                        f"{input.dtype}, {weight.dtype}"
                        + (f", {bias.dtype}" if bias is not None else ""))
    return Linear.apply(input, weight, bias)


