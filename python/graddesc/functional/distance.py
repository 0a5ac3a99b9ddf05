"""F.cosine_similarity, F.pairwise_distance and the losses built on them (triplet_margin_loss,
margin_ranking_loss, cosine_embedding_loss), as compositions of the C++ kernels (elementwise
arithmetic, comparisons, where, clamp, sums, sqrt, pow), so a compiled step records them.

cosine_similarity follows PyTorch 2.x: each input is divided by its own 2-norm clamped to eps,
then the products are summed ((x1 / max(|x1|, eps)) . (x2 / max(|x2|, eps))); the clamp is
applied to the value only, the gradient flows through the norm as PyTorch's does. The norms'
gradients are PyTorch's (0 where a norm is 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function
from graddesc.functional import elementwise as ew
from graddesc.functional import reduce as red
from graddesc.functional.loss import _reduce


class _PNorm(Function):
    """(sum |x|^p)^(1/p) over dim (kept), p finite > 0, from kernels. Gradient as PyTorch's
    norm_backward: x * (g / r) for p = 2, sign(x) g for p = 1, sign(x) |x|^(p-1) (g / r^(p-1))
    otherwise; 0 where r = 0."""

    @staticmethod
    def forward(ctx, x, p, dim):
        with grad_mode.no_grad():
            t = x.detach()
            if p == 2.0:
                r = ew.sqrt(red.sum(t * t, dim=dim, keepdim=True))
            elif p == 1.0:
                r = red.sum(ew.abs(t), dim=dim, keepdim=True)
            else:
                r = red.sum(ew.abs(t) ** p, dim=dim, keepdim=True) ** (1.0 / p)
        ctx.p, ctx.dim, ctx.r = p, dim, r
        ctx.save_for_backward(x)
        return Tensor._make(r._data)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        p = ctx.p
        # with a graph of the gradient, r again as a node of it (higher derivatives)
        r = _PNorm.apply(x, p, ctx.dim) if grad_mode.is_grad_enabled() else ctx.r
        if p == 1.0:
            return ew.sign(x) * g, None, None
        zero = ew.eq(r, 0.0)
        if p == 2.0:
            return x * ew.where(zero, 0.0, g / r), None, None
        scale = ew.where(zero, 0.0, g / r ** (p - 1.0))
        return ew.sign(x) * ew.abs(x) ** (p - 1.0) * scale, None, None


def _pnorm(x: Tensor, p: float, dim: int, keepdim: bool) -> Tensor:
    r = _PNorm.apply(x, p, dim)
    return r if keepdim else r.squeeze(dim)


class _ClampValue(Function):
    """max(x, lo) in value; the gradient passes unchanged (PyTorch clamps the norm in place
    under no_grad in cosine_similarity)."""

    @staticmethod
    def forward(ctx, x, lo):
        with grad_mode.no_grad():
            return Tensor._make(ew.clamp(x.detach(), lo, None)._data)

    @staticmethod
    def backward(ctx, g):
        return g, None


def _pair(x1: Any, x2: Any, op: str) -> tuple:
    for name, t in (("x1", x1), ("x2", x2)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(t).__name__}")
        if t._data.dtype.kind != "f":
            raise TypeError(f"{op}: argument '{name}' must be a float32 or float64 tensor, "
                            f"got {t.dtype}")
    if x1._data.dtype != x2._data.dtype:
        raise TypeError(f"{op}: x1 has dtype {x1.dtype} and x2 {x2.dtype}: they must match")
    try:
        shape = np.broadcast_shapes(tuple(x1.shape), tuple(x2.shape))
    except ValueError:
        raise ValueError(f"{op}: the shapes of x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)} "
                         "do not broadcast") from None
    return shape


def _eps(eps: Any, op: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: argument 'eps' must be a number, got {type(eps).__name__}")
    return float(eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """The cosine of the angle between x1 and x2 along dim (they broadcast): the sum over dim
    of (x1 / max(|x1|, eps)) * (x2 / max(|x2|, eps)), as PyTorch 2.x computes it.

    >>> F.cosine_similarity(gd.tensor([[1.0, 0.0], [3.0, 4.0]]), gd.tensor([[2.0, 0.0],
    ...                     [4.0, -3.0]])).tolist()
    [1.0, 0.0]
    """
    op = "cosine_similarity"
    shape = _pair(x1, x2, op)
    e = _eps(eps, op)
    nd = len(shape)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: argument 'dim' must be an int, got {type(dim).__name__}")
    if not -max(nd, 1) <= dim < max(nd, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for inputs of {nd} dimensions")
    if nd == 0:
        x1, x2 = x1.reshape(1), x2.reshape(1)
        shape, d = (1,), 0
    else:
        d = int(dim) % nd
    a = x1 if tuple(x1.shape) == shape else x1.expand(*shape)
    b = x2 if tuple(x2.shape) == shape else x2.expand(*shape)
    na = _ClampValue.apply(_pnorm(a, 2.0, d, True), e)
    nb = _ClampValue.apply(_pnorm(b, 2.0, d, True), e)
    out = red.sum((a / na) * (b / nb), dim=d)
    return out.reshape(()) if nd == 0 else out


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """The p-norm of x1 - x2 + eps over the last dimension (PyTorch's definition); p a finite
    positive number.

    >>> F.pairwise_distance(gd.tensor([[3.0, 4.0]]), gd.tensor([[0.0, 0.0]]), eps=0.0).tolist()
    [5.0]
    """
    op = "pairwise_distance"
    shape = _pair(x1, x2, op)
    e = _eps(eps, op)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: argument 'p' must be a number, got {type(p).__name__}")
    pf = float(p)
    if not (pf > 0 and math.isfinite(pf)):
        raise ValueError(f"{op}: p must be a finite positive number in graddesc, got {p!r}")
    if not isinstance(keepdim, (bool, np.bool_)):
        raise TypeError(f"{op}: argument 'keepdim' must be a bool, got {type(keepdim).__name__}")
    diff = x1 - x2 + e
    if len(shape) == 0:
        diff = diff.reshape(1)
        r = _pnorm(diff, pf, 0, False)
        return r.reshape(()) if not keepdim else r
    return _pnorm(diff, pf, len(shape) - 1, bool(keepdim))


def _loss_tensor(t: Any, name: str, op: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(t).__name__}")
    return t


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor,
                        margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                        swap: bool = False, size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """max(d(a, p) - d(a, n) + margin, 0), d the pairwise_distance (swap: d(a, n) replaced by
    min(d(a, n), d(p, n))).

    >>> a = gd.tensor([[0.0, 0.0]])
    >>> F.triplet_margin_loss(a, gd.tensor([[1.0, 0.0]]), gd.tensor([[3.0, 0.0]]),
    ...                       eps=0.0).item()
    0.0
    """
    op = "triplet_margin_loss"
    for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        _loss_tensor(t, name, op)
    _legacy(size_average, reduce, op)
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = ew.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    loss = ew.clamp(d_pos - d_neg + float(margin), 0.0, None)
    return _reduce(loss, reduction, op)


def _legacy(size_average: Any, reduce: Any, op: str) -> None:
    if size_average is not None or reduce is not None:
        raise ValueError(f"{op}: size_average and reduce are deprecated in PyTorch and not "
                         "supported; use reduction=")


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """max(0, -target * (input1 - input2) + margin), target +1 or -1.

    >>> F.margin_ranking_loss(gd.tensor([1.0, 0.0]), gd.tensor([0.0, 1.0]),
    ...                       gd.tensor([1.0, 1.0]), reduction="none").tolist()
    [0.0, 1.0]
    """
    op = "margin_ranking_loss"
    for name, t in (("input1", input1), ("input2", input2), ("target", target)):
        _loss_tensor(t, name, op)
    _legacy(size_average, reduce, op)
    if not (input1.ndim == input2.ndim == target.ndim):
        raise ValueError(f"{op}: input1, input2 and target must have the same number of "
                         f"dimensions, got shapes {tuple(input1.shape)}, "
                         f"{tuple(input2.shape)} and {tuple(target.shape)}")
    loss = ew.clamp(-target * (input1 - input2) + float(margin), 0.0, None)
    return _reduce(loss, reduction, op)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average: Any = None, reduce: Any = None,
                          reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1, with
    PyTorch's cos = x1.x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12)) over the last dimension.

    >>> F.cosine_embedding_loss(gd.tensor([[1.0, 0.0]]), gd.tensor([[0.0, 1.0]]),
    ...                         gd.tensor([1.0])).item()
    1.0
    """
    op = "cosine_embedding_loss"
    for name, t in (("input1", input1), ("input2", input2), ("target", target)):
        _loss_tensor(t, name, op)
    _legacy(size_average, reduce, op)
    if input1.ndim not in (1, 2) or tuple(input1.shape) != tuple(input2.shape):
        raise ValueError(f"{op}: input1 and input2 must be 1-d or 2-d of the same shape, got "
                         f"{tuple(input1.shape)} and {tuple(input2.shape)}")
    if target.ndim != input1.ndim - 1:
        raise ValueError(f"{op}: target must be {input1.ndim - 1}-d for {input1.ndim}-d "
                         f"inputs, got shape {tuple(target.shape)}")
    d = input1.ndim - 1
    prod = red.sum(input1 * input2, dim=d)
    m1 = red.sum(input1 * input1, dim=d) + 1e-12
    m2 = red.sum(input2 * input2, dim=d) + 1e-12
    cos = prod / ew.sqrt(m1 * m2)
    t = target if target._data.dtype == cos._data.dtype else target.to(cos.dtype)
    pos = ew.where(ew.eq(t, 1.0), 1.0 - cos, 0.0)
    neg = ew.where(ew.eq(t, -1.0), ew.clamp(cos - float(margin), 0.0, None), 0.0)
    return _reduce(pos + neg, reduction, op)


__all__ = ["cosine_embedding_loss", "cosine_similarity", "margin_ranking_loss",
           "pairwise_distance", "triplet_margin_loss"]
