"""Batch norm, layer norm and embedding lookup, backed by src/cpp/norm.cpp (PyTorch's semantics).

Each op runs one C++ kernel forward and one backward. The statistics the forward pass computes
(per-channel mean and 1/std for batch norm, per-row for layer norm) are saved for the backward
kernel, which returns every gradient in one call. BatchNorm's running statistics (and its
num_batches_tracked counter) are updated in place by the forward kernel itself, so a recorded
step (gd.compile) replays the update instead of repeating a value computed while recording.

When a graph of the gradient is requested (create_graph=True), the backward recomputes the
forward with differentiable tensor ops and differentiates that, so higher derivatives work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, call_kernel, contiguous
from graddesc.autograd import grad_mode
from graddesc.autograd.engine import grad as autograd_grad
from graddesc.autograd.function import Function


def _tensor_or_none(t: Any, name: str, op: str) -> Optional[Tensor]:
    if t is not None and not isinstance(t, Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a Tensor or None, got "
                        f"{type(t).__name__}")
    return t


def _data(t: Optional[Tensor]) -> Optional[np.ndarray]:
    return None if t is None else t._data


def _composite_grads(fn: Any, inputs: tuple, g: Tensor, needs: tuple) -> list:
    """Gradients of fn(*inputs) (the op written with differentiable tensor ops) against g,
    with a graph: an op's backward under create_graph=True, for higher derivatives."""
    with grad_mode.enable_grad():
        y = fn(*inputs)
    wanted = [t for t, n in zip(inputs, needs) if t is not None and n]
    got = list(autograd_grad([y], wanted, [g], retain_graph=True, create_graph=True,
                             allow_unused=True))
    return [got.pop(0) if (t is not None and n) else None for t, n in zip(inputs, needs)]


# ---- batch norm ----------------------------------------------------------------------------

def _batch_norm_composite(x: Tensor, w: Optional[Tensor], b: Optional[Tensor], mean: Any,
                          invstd: Any, training: bool, eps: float) -> Tensor:
    """Batch norm with tensor ops (for higher derivatives): mean/invstd recomputed from x in
    training, the saved constants otherwise."""
    axes = (0,) if x.ndim == 2 else (0, 2)
    shape = (1, x.shape[1]) if x.ndim == 2 else (1, x.shape[1], 1)
    if training:
        m = x.mean(dim=axes, keepdim=True)
        xc = x - m
        var = (xc * xc).mean(dim=axes, keepdim=True)
        y = xc / (var + eps).sqrt()
    else:
        y = (x - Tensor._make(mean.reshape(shape))) * Tensor._make(invstd.reshape(shape))
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y


class BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the channels of x (N, C[, L])."""

    @staticmethod
    def forward(ctx, x, w, b, running_mean, running_var, nbt, training, momentum, eps):
        y, mean, invstd = call_kernel(_core.batch_norm_forward, x._data, _data(w), _data(b),
                                      running_mean, running_var, nbt, training, momentum, eps)
        ctx.training, ctx.eps = training, eps
        ctx.mean, ctx.invstd = mean, invstd
        ctx.save_for_backward(x, w, b)
        return Tensor._make(y)

    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        if grad_mode.is_grad_enabled():
            dx, dw, db = _composite_grads(
                lambda x_, w_, b_: _batch_norm_composite(x_, w_, b_, ctx.mean, ctx.invstd,
                                                         ctx.training, ctx.eps),
                (x, w, b), g, (nx, nw, nb))
        else:
            gd_ = g._data if g._data.dtype == x._data.dtype else g._data.astype(x._data.dtype)
            dx, dw, db = call_kernel(_core.batch_norm_backward, gd_, x._data, _data(w), ctx.mean,
                                     ctx.invstd, ctx.training, bool(nx), bool(nw and w is not None),
                                     bool(nb and b is not None))
            dx, dw, db = (None if a is None else Tensor._make(a) for a in (dx, dw, db))
        return dx, dw, db, None, None, None, None, None, None


def _check_float(t: Tensor, name: str, op: str, dtype: Any = None) -> None:
    kind = t._data.dtype
    if kind.kind != "f":
        raise TypeError(f"{op}: argument '{name}' must be a float32 or float64 tensor, got "
                        f"{t.dtype}")
    if dtype is not None and kind != dtype:
        raise TypeError(f"{op}: argument '{name}' has dtype {t.dtype} but input has dtype "
                        f"{np.dtype(dtype).name}: they must match")


def _running(t: Optional[Tensor], name: str, C: int, dtype: Any) -> Optional[np.ndarray]:
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"batch_norm: argument '{name}' must be a Tensor or None, got "
                        f"{type(t).__name__}")
    _check_float(t, name, "batch_norm", dtype)
    a = t._data
    if a.shape != (C,):
        raise ValueError(f"batch_norm: argument '{name}' expected shape ({C},), got "
                         f"{tuple(a.shape)}")
    if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable):
        raise ValueError(f"batch_norm: argument '{name}' must be a contiguous, writeable tensor "
                         "(it is updated in place)")
    return a


def batch_norm(input: Tensor, running_mean: Optional[Tensor],  # noqa: A002
               running_var: Optional[Tensor], weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, training: bool = False,
               momentum: Optional[float] = 0.1, eps: float = 1e-5,
               num_batches_tracked: Optional[Tensor] = None) -> Tensor:
    """Batch normalization of input (N, C, *) per channel C (PyTorch's F.batch_norm): (N, C),
    (N, C, L), (N, C, H, W), (N, C, D, H, W), ... (the spatial dimensions are flattened into one
    for the kernel, a view of a contiguous input).

    training=True normalizes with the batch statistics and, when running_mean/running_var are
    given, updates them in place: running = momentum * batch_stat + (1 - momentum) * running
    (the variance unbiased). training=False normalizes with the running statistics.
    momentum=None (with the **(gd)** argument num_batches_tracked, a 0-d int64 tensor that is
    incremented) makes the running statistics a cumulative average, as BatchNorm1d does.

    >>> x = gd.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> mean, var = gd.zeros(2), gd.ones(2)
    >>> F.batch_norm(x, mean, var, training=True)
    tensor([[-1.0000, -1.0000],
            [ 1.0000,  1.0000]])
    >>> mean, var  # updated in place (the variance unbiased)
    (tensor([0.2000, 2.0000]), tensor([1.1000, 20.9000]))
    """
    op = "batch_norm"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a Tensor, got {type(input).__name__}")
    _check_float(input, "input", op)
    if input.ndim < 2:
        raise ValueError(f"{op}: expected input of at least 2 dimensions (N, C, *), got "
                         f"{input.ndim}D input of shape {tuple(input.shape)}")
    dt = input._data.dtype
    C = input.shape[1]
    for name, t in (("weight", weight), ("bias", bias)):
        _tensor_or_none(t, name, op)
        if t is not None:
            _check_float(t, name, op, dt)
            if tuple(t.shape) != (C,):
                raise ValueError(f"{op}: argument '{name}' expected shape ({C},) for input of "
                                 f"shape {tuple(input.shape)}, got {tuple(t.shape)}")
    rm = _running(running_mean, "running_mean", C, dt)
    rv = _running(running_var, "running_var", C, dt)
    nbt = None
    if num_batches_tracked is not None:
        if not isinstance(num_batches_tracked, Tensor) or \
                num_batches_tracked._data.dtype != np.int64:
            raise TypeError(f"{op}: num_batches_tracked must be an int64 Tensor")
        nbt = num_batches_tracked._data
    if momentum is None:
        if training and rm is not None and nbt is None:
            raise ValueError(f"{op}: momentum=None (a cumulative average) needs "
                             "num_batches_tracked")
        mom = -1.0
    else:
        mom = float(momentum)
    x = input
    if input.ndim > 3:  # (N, C, H, W, ...) as (N, C, H*W*...): the (N, C, L) kernel
        n, c = input.shape[0], input.shape[1]
        x = input.reshape(n, c, math.prod(input.shape[2:]))
    y = BatchNorm.apply(x, weight, bias, rm, rv, nbt if training else None,
                        bool(training), mom, float(eps))
    if y.ndim != input.ndim:
        y = y.reshape(input.shape)
    if training:
        for t in (running_mean, running_var, num_batches_tracked):
            if t is not None:
                t._vc[0] += 1
    return y


# ---- layer norm ----------------------------------------------------------------------------

def _layer_norm_composite(x: Tensor, w: Optional[Tensor], b: Optional[Tensor], D: int,
                          eps: float) -> Tensor:
    x2 = x.reshape(-1, D) if x.numel() else x.reshape(0, D)
    m = x2.mean(dim=1, keepdim=True)
    xc = x2 - m
    y = xc / ((xc * xc).mean(dim=1, keepdim=True) + eps).sqrt()
    if w is not None:
        y = y * w.reshape(1, D)
    if b is not None:
        y = y + b.reshape(1, D)
    return y.reshape(x.shape)


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last D elements of each row."""

    @staticmethod
    def forward(ctx, x, w, b, D, eps):
        xd = x._data
        M = xd.size // D if D else 0
        x2 = contiguous(xd).reshape(M, D)
        wd = None if w is None else contiguous(w._data).reshape(D)
        bd = None if b is None else contiguous(b._data).reshape(D)
        y, mean, rstd = call_kernel(_core.layer_norm_forward, x2, wd, bd, eps)
        ctx.D, ctx.eps, ctx.mean, ctx.rstd = D, eps, mean, rstd
        ctx.save_for_backward(x, w, b)
        return Tensor._make(y.reshape(xd.shape))

    @staticmethod
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        D = ctx.D
        if grad_mode.is_grad_enabled():
            return tuple(_composite_grads(
                lambda x_, w_, b_: _layer_norm_composite(x_, w_, b_, D, ctx.eps),
                (x, w, b), g, (nx, nw, nb))) + (None, None)
        xd = x._data
        M = xd.size // D if D else 0
        gd_ = g._data if g._data.dtype == xd.dtype else g._data.astype(xd.dtype)
        wd = None if w is None else contiguous(w._data).reshape(D)
        dx, dw, db = call_kernel(_core.layer_norm_backward, contiguous(gd_).reshape(M, D),
                                 contiguous(xd).reshape(M, D), wd, ctx.mean, ctx.rstd, bool(nx),
                                 bool(nw and w is not None), bool(nb and b is not None))
        return (None if dx is None else Tensor._make(dx.reshape(xd.shape)),
                None if dw is None else Tensor._make(dw.reshape(w.shape)),
                None if db is None else Tensor._make(db.reshape(b.shape)), None, None)


def _normalized_shape(normalized_shape: Any, op: str) -> tuple:
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        return (int(normalized_shape),)
    try:
        shape = tuple(int(s) for s in normalized_shape)
    except TypeError:
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got "
                        f"{normalized_shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{op}: normalized_shape must not be negative, got {shape}")
    return shape


def layer_norm(input: Tensor, normalized_shape: Sequence[int],  # noqa: A002
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Tensor:
    """Layer normalization over the trailing dimensions normalized_shape (F.layer_norm).

    >>> F.layer_norm(gd.tensor([[1.0, 3.0], [2.0, 6.0]]), (2,))
    tensor([[-1.0000,  1.0000],
            [-1.0000,  1.0000]])
    """
    op = "layer_norm"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a Tensor, got {type(input).__name__}")
    _check_float(input, "input", op)
    ns = _normalized_shape(normalized_shape, op)
    if len(ns) == 0 or input.ndim < len(ns) or tuple(input.shape[input.ndim - len(ns):]) != ns:
        raise ValueError(f"{op}: normalized_shape={list(ns)} expects input of shape "
                         f"[*, {', '.join(map(str, ns))}], got input of shape "
                         f"{tuple(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        _tensor_or_none(t, name, op)
        if t is not None:
            _check_float(t, name, op, input._data.dtype)
            if tuple(t.shape) != ns:
                raise ValueError(f"{op}: argument '{name}' expected shape {ns}, got "
                                 f"{tuple(t.shape)}")
    return LayerNorm.apply(input, weight, bias, math.prod(ns), float(eps))


# ---- embedding -----------------------------------------------------------------------------

class Embedding(Function):
    """y = weight[indices]; the gradient scatter-adds the rows of dy (indices in order)."""

    @staticmethod
    def forward(ctx, weight, indices, padding_idx, scale_grad_by_freq):
        idx = contiguous(indices._data)
        y = call_kernel(_core.embedding_forward, weight._data, idx)
        ctx.padding_idx, ctx.V, ctx.scale = padding_idx, weight.shape[0], scale_grad_by_freq
        ctx.save_for_backward(indices)  # its version is checked: no silent in-place change
        return Tensor._make(y)

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        if grad_mode.is_grad_enabled():  # dW is linear in g: a node whose backward gathers
            dw = EmbeddingGrad.apply(g, indices, ctx.V, ctx.padding_idx)
        else:
            idx = contiguous(indices._data)
            dw = Tensor._make(_embedding_grad(g._data, idx, ctx.V, ctx.padding_idx))
        if ctx.scale:  # row r divided by how often index r occurs in the batch (a kernel
            # multiply: gd.compile sees a batch-dependent operand and runs the step eagerly)
            dw = dw * Tensor._make(_inverse_counts(indices._data, ctx.V, g._data.dtype))
        return dw, None, None, None


def _inverse_counts(idx: np.ndarray, V: int, dtype: Any) -> np.ndarray:
    """(V, 1): 1 / the number of occurrences of each row index in idx (1 where it is absent)."""
    counts = np.bincount(idx.reshape(-1), minlength=V)
    return (1.0 / np.maximum(counts, 1)).astype(dtype).reshape(V, 1)


def _embedding_grad(g: np.ndarray, idx: np.ndarray, V: int, padding_idx: int) -> np.ndarray:
    return call_kernel(_core.embedding_backward, g, idx, V, padding_idx)


class EmbeddingGrad(Function):
    """dW = scatter-add of g's rows at idx; its own gradient gathers: d/dg = gg[idx]."""

    @staticmethod
    def forward(ctx, g, indices, V, padding_idx):
        ctx.padding_idx = padding_idx
        ctx.save_for_backward(indices)
        return Tensor._make(_embedding_grad(g._data, contiguous(indices._data), V, padding_idx))

    @staticmethod
    def backward(ctx, gg):
        (indices,) = ctx.saved_tensors
        if ctx.padding_idx >= 0:  # the padding row received nothing: its entries give nothing
            gg = gg * Tensor._make(_padding_mask(gg, ctx.padding_idx))
        return Embedding.apply(gg, indices, -1, False), None, None, None


def _padding_mask(gg: Tensor, padding_idx: int) -> np.ndarray:
    m = np.ones((gg.shape[0], 1), dtype=gg._data.dtype)
    m[padding_idx] = 0
    return m


def _indices(input: Any, op: str) -> np.ndarray:
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a Tensor of int64 indices, got "
                        f"{type(input).__name__}")
    a = input._data
    if a.dtype != np.int64:
        raise TypeError(f"{op}: argument 'input' (the indices) must have dtype int64, got "
                        f"{input.dtype}")
    return contiguous(a)


def embedding(input: Tensor, weight: Tensor, padding_idx: Optional[int] = None,  # noqa: A002
              max_norm: Optional[float] = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of weight (V, D) at the int64 indices input: (*input.shape, D) (F.embedding).

    The gradient of weight is dense (V, D); the row padding_idx gets none. With max_norm, the
    looked-up rows whose norm of order norm_type exceeds max_norm are first scaled down to it,
    in place (as PyTorch does). With scale_grad_by_freq, the gradient of row r is divided by
    the number of times r occurs in input (PyTorch's rule). sparse=True (sparse gradients)
    raises ValueError: graddesc's gradients are dense.

    >>> w = gd.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])
    >>> F.embedding(gd.tensor([2, 1, 2]), w)
    tensor([[3., 4.],
            [1., 2.],
            [3., 4.]])
    """
    op = "embedding"
    idx = _indices(input, op)
    if not isinstance(weight, Tensor):
        raise TypeError(f"{op}: argument 'weight' must be a Tensor, got {type(weight).__name__}")
    _check_float(weight, "weight", op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: argument 'weight' must be 2-d (num_embeddings, embedding_dim), "
                         f"got shape {tuple(weight.shape)}")
    for name, flag in (("scale_grad_by_freq", scale_grad_by_freq), ("sparse", sparse)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{op}: {name} must be a bool, got {type(flag).__name__}")
    if sparse:
        raise ValueError(f"{op}: sparse=True is not supported by graddesc (gradients are dense)")
    V = weight.shape[0]
    pad = _padding_idx(padding_idx, V, op)
    if max_norm is not None:
        with grad_mode.no_grad():
            _core.embedding_renorm(weight._data, idx, float(max_norm), float(norm_type))
            weight._vc[0] += 1
    return Embedding.apply(weight, input, pad, bool(scale_grad_by_freq))


def _padding_idx(padding_idx: Any, V: int, op: str) -> int:
    """padding_idx as an index in [0, V), or -1 for none; negative values count from the end."""
    if padding_idx is None:
        return -1
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"{op}: padding_idx must be an int or None, got "
                        f"{type(padding_idx).__name__}")
    p = int(padding_idx)
    if not -V <= p < V:
        raise ValueError(f"{op}: padding_idx must be within num_embeddings ({V}), got {p}")
    return p + V if p < 0 else p
