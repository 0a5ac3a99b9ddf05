"""Softmax family and losses. softmax, log_softmax and cross-entropy run the fused, stable C++
kernels (src/cpp/loss.cpp); the other losses are short compositions of differentiable ops.

Every loss takes reduction='mean' | 'sum' | 'none': 'none' is the lecture's per-sample loss
L(x[p], y[p], w), 'mean' the average loss L(S, w).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from graddesc import _compile_state, _core, _creation
from graddesc._tensor import Tensor, _norm_dim, call_kernel, contiguous
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional import reduce as red

_REDUCTIONS = ("mean", "sum", "none")
_INT64 = np.dtype(np.int64)


def _rows(a: np.ndarray, dim: int) -> tuple:
    """a with `dim` moved last, as a C-contiguous (rows, C) array, and the moved shape."""
    moved = np.moveaxis(a, dim, -1) if dim != a.ndim - 1 else a
    # an explicit row count: reshape(-1, C) is ambiguous when the array is empty
    rows = math.prod(moved.shape[:-1])
    return contiguous(moved).reshape(rows, a.shape[dim] if a.ndim else 1), moved.shape


def _unrows(r: np.ndarray, moved_shape: tuple, dim: int, ndim: int) -> np.ndarray:
    out = r.reshape(moved_shape)
    # C-contiguous, as PyTorch's result: a later view()/reshape() of it must be a view, so that
    # in-place ops on one are seen through the other
    return np.ascontiguousarray(np.moveaxis(out, -1, dim)) if dim != ndim - 1 else out


def _check_float(x: Any, op: str, arg: str = "input") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: argument '{arg}' must be a Tensor, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: argument '{arg}' must be float32 or float64, got {x.dtype}")


class Softmax(Function):
    """y = exp(x - logsumexp(x)) along dim; dx = y * (g - sum(g * y))."""

    @staticmethod
    def forward(ctx, x, dim, log):
        a = x._data
        if a.ndim == 0:
            a = a.reshape(1)
        r, moved = _rows(a, dim)
        yr = _core.log_softmax_forward(r) if log else _core.softmax_forward(r)
        y = Tensor._make(_unrows(yr, moved, dim, a.ndim).reshape(x._data.shape))
        ctx.dim, ctx.log = dim, log
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        dim = ctx.dim
        if grad_mode.is_grad_enabled():
            if ctx.log:
                return g - act.exp(y) * red.sum(g, dim, keepdim=True), None, None
            return y * (g - red.sum(g * y, dim, keepdim=True)), None, None
        ya = y._data.reshape(1) if y.ndim == 0 else y._data
        ga = g._data.reshape(1) if g.ndim == 0 else g._data
        yr, moved = _rows(ya, dim)
        gr, _ = _rows(ga.astype(ya.dtype, copy=False), dim)
        dr = _core.log_softmax_backward(gr, yr) if ctx.log else _core.softmax_backward(gr, yr)
        return Tensor._make(_unrows(dr, moved, dim, ya.ndim).reshape(y._data.shape)), None, None


def softmax(x: Tensor, dim: Optional[int] = None, dtype: Any = None) -> Tensor:
    """exp(x) / sum(exp(x)) along dim, computed stably (max-subtracted).

    >>> gd.softmax(gd.zeros(1, 4), dim=1).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """
    return _softmax(x, dim, dtype, False, "softmax")


def log_softmax(x: Tensor, dim: Optional[int] = None, dtype: Any = None) -> Tensor:
    """x - logsumexp(x) along dim, computed stably.

    >>> round(gd.log_softmax(gd.zeros(2), dim=0)[0].item(), 4)
    -0.6931
    """
    return _softmax(x, dim, dtype, True, "log_softmax")


def _softmax(x: Tensor, dim: Any, dtype: Any, log: bool, op: str) -> Tensor:
    if dtype is not None:
        x = x.to(dtype)
    _check_float(x, op)
    if dim is None:
        # PyTorch's legacy implicit choice: dim 0 for 0-, 1- and 3-d inputs, else 1
        dim = 0 if x.ndim in (0, 1, 3) else 1
    d = _norm_dim(dim, x.ndim, op)
    return Softmax.apply(x, d, log)


class CrossEntropy(Function):
    """Per-row loss = logsumexp(z) - z[target], fused with its gradient
    dz = g * (softmax(z) - onehot(target)) (one pass over the logits each way).

    With reduction 'sum' or 'mean' the op also reduces, returning a 0-d tensor, so the usual mean
    costs no extra graph nodes; the mean's 1 / #valid-targets comes from a kernel
    (count_scale), so a step recorded by gd.compile recomputes it from each batch's targets."""

    @staticmethod
    def forward(ctx, logits, target, ignore_index, reduction):
        z, t = logits._data, target._data
        loss, lse = call_kernel(_core.cross_entropy_forward, z, t, ignore_index)
        ctx.lse, ctx.t, ctx.ignore = lse, t, ignore_index
        ctx.scale = call_kernel(_core.count_scale, t, ignore_index) if reduction == "mean" \
            else None
        ctx.reduced = reduction != "none"
        ctx.save_for_backward(logits)
        if not ctx.reduced:
            return Tensor._make(loss)
        total = _core.sum_all(loss)
        if ctx.scale is not None:
            total = _core.scale(total, ctx.scale)
        return Tensor._make(total)

    @staticmethod
    def backward(ctx, g):
        (logits,) = ctx.saved_tensors
        if grad_mode.is_grad_enabled():
            p = softmax(logits, 1)
            onehot = np.zeros(logits._data.shape, dtype=logits._data.dtype)
            valid = ctx.t != ctx.ignore
            rows = np.nonzero(valid)[0]
            onehot[rows, ctx.t[rows]] = 1.0
            mask = Tensor._make(valid.astype(logits._data.dtype)[:, None])
            if not ctx.reduced:
                gg = g.unsqueeze(1)
            else:
                gg = g * float(ctx.scale) if ctx.scale is not None else g
            return (p - Tensor._make(onehot)) * (gg * mask), None, None, None
        z, gd = logits._data, g._data
        if gd.dtype != z.dtype:
            gd = gd.astype(z.dtype)
        if ctx.scale is not None:  # 0-d: the kernel broadcasts it over the rows
            gd = call_kernel(_core.scale, gd, ctx.scale)
        return Tensor._make(call_kernel(_core.cross_entropy_backward, gd, z, ctx.lse, ctx.t,
                                        ctx.ignore)), None, None, None


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return red.mean(loss)
    if reduction == "sum":
        return red.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,  # noqa: A002
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy from logits (N, C) (or (C,), or (N, C, d1, ...)) and class-index
    targets (N,) (int64); or class-probability targets shaped like the input.

    >>> logits = gd.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(F.cross_entropy(logits, gd.tensor([0, 1])).item(), 4)
    0.1269
    """
    op = "cross_entropy"
    _check_float(input, op)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of 'mean', 'sum', 'none', got "
                         f"{reduction!r}")
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: argument 'target' must be a Tensor, got {type(target).__name__}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    shape = input._data.shape
    if not shape:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d tensor")
    C = shape[0] if len(shape) == 1 else shape[1]
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != C):
        raise ValueError(f"{op}: weight must have shape ({C},), got {tuple(weight.shape)}")
    kind = target._data.dtype.kind
    if kind == "f":  # class probabilities
        if target.shape != input.shape:
            raise ValueError(f"{op}: probability targets must have the input's shape "
                             f"{tuple(input.shape)}, got {tuple(target.shape)}")
        cdim = 0 if input.ndim == 1 else 1
        logp = log_softmax(input, cdim)
        tgt = target
        if label_smoothing:
            tgt = tgt * (1 - label_smoothing) + label_smoothing / C
        w = tgt if weight is None else tgt * weight.reshape((C,) + (1,) * (input.ndim - cdim - 1))
        loss = -red.sum(logp * w, cdim)
        if reduction == "mean":
            n = loss.numel()
            return red.sum(loss) / n if n else red.sum(loss) * np.nan
        return _reduce(loss, reduction, op)
    if kind not in "iu":
        raise TypeError(f"{op}: class-index targets must be int64, got {target.dtype}")
    # normalise to logits (N, C) and targets (N,)
    if len(shape) == 1:
        if target.ndim != 0:
            raise ValueError(f"{op}: for 1-d input (C,) the target must be 0-d, got shape "
                             f"{tuple(target.shape)}")
        z, t, out_shape = input.unsqueeze(0), target.reshape(1), ()
    elif len(shape) == 2:
        if target._data.shape != shape[:1]:
            raise ValueError(f"{op}: expected target of shape ({shape[0]},) for input of "
                             f"shape {tuple(shape)}, got {tuple(target.shape)}")
        z, t, out_shape = input, target, shape[:1]
    else:
        want = (input.shape[0],) + tuple(input.shape[2:])
        if tuple(target.shape) != want:
            raise ValueError(f"{op}: expected target of shape {want} for input of shape "
                             f"{tuple(input.shape)}, got {tuple(target.shape)}")
        z = input.movedim(1, -1).reshape(-1, C)
        t, out_shape = target.reshape(-1), want
    t64 = t if t._data.dtype == _INT64 else t.long()
    td = t64._data
    try:
        if weight is None and not label_smoothing and reduction != "none":
            # the common case: one fused node computes the rows' losses and their mean or sum
            return CrossEntropy.apply(z, t64, int(ignore_index), reduction)
        nll = CrossEntropy.apply(z, t64, int(ignore_index), "none")
    except ValueError:
        # the kernel checks the targets' range (cheaper than NumPy's min and max here); this
        # names the first target out of range
        _check_targets(td, C, ignore_index, op)
        raise
    # the rows' weights by kernels, never a value read in Python (gd.compile records them)
    valid, wt = _target_weights(t64, weight, ignore_index, z._data.dtype)
    loss = nll * wt if weight is not None else nll
    if label_smoothing:
        logp = log_softmax(z, 1)
        w_all = weight.reshape(1, C) if weight is not None else 1.0
        # ignored rows are selected away, not multiplied by 0 (PyTorch's masked_fill): a mean
        # over no valid target is 0 / 0 = NaN, whose gradient NaN * 0 would be NaN, not 0
        smooth = ew.where(valid, -red.sum(logp * w_all, 1) / C, 0.0)
        loss = loss * (1 - label_smoothing) + smooth * label_smoothing
    if reduction == "none":
        return loss.reshape(out_shape)
    if reduction == "sum":
        return red.sum(loss)
    return red.sum(loss) / red.sum(wt)  # (no valid target: 0 / 0 = NaN, as PyTorch's mean)


def _target_weights(t: Tensor, weight: Optional[Tensor], ignore_index: int,
                    dtype: Any) -> tuple:
    """(valid, w): valid = t != ignore_index (bool), w = weight[t] where valid else 0 (1 in
    place of weight[t] without weights), in `dtype`; all kernels, no value read in Python."""
    valid = ew.ne(t, int(ignore_index))
    vf = valid.to(dtype)
    if weight is None:
        return valid, vf
    safe = t * valid.long()  # an ignored row's index becomes 0 (its weight is then dropped)
    return valid, weight.to(dtype)[safe] * vf


def _check_targets(td: np.ndarray, C: int, ignore_index: int, op: str) -> None:
    """Raises ValueError naming the first class index in td outside [0, C) (ignore_index aside)."""
    bad = (td != ignore_index) & ((td < 0) | (td >= C))
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        raise ValueError(f"{op}: target {int(td[k])} at position {k} is out of bounds for "
                         f"{C} classes (expected 0 <= target < {C} or target == "
                         f"ignore_index={ignore_index})")


def nll_loss(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,  # noqa: A002
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """-input[n, target[n]] from log-probabilities (N, C).

    >>> F.nll_loss(gd.tensor([[-0.5, -1.0], [-2.0, -0.25]]), gd.tensor([0, 1])).item()
    0.375
    """
    op = "nll_loss"
    _check_float(input, op)
    if input.ndim != 2:
        if input.ndim == 1:
            return nll_loss(input.unsqueeze(0), target.reshape(1), weight, ignore_index,
                            reduction).reshape(()) if reduction == "none" else \
                nll_loss(input.unsqueeze(0), target.reshape(1), weight, ignore_index, reduction)
        raise ValueError(f"{op}: expected input of shape (N, C) or (C,), got "
                         f"{tuple(input.shape)}")
    N, C = input.shape
    if target.shape != (N,) or target._data.dtype.kind not in "iu":
        raise ValueError(f"{op}: expected int64 target of shape ({N},), got "
                         f"{tuple(target.shape)} {target.dtype}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be one of 'mean', 'sum', 'none', got "
                         f"{reduction!r}")
    t = target if target._data.dtype == _INT64 else target.long()
    # kernels only (gd.compile records them): the picked log-probabilities by the gather
    # kernel, which checks the range of each index on every call, replays included
    valid, w = _target_weights(t, weight, ignore_index, input._data.dtype)
    # the gather index: t, 0 for an ignored row, C (out of range: the gather raises) for a
    # negative target, which the gather would otherwise wrap around
    neg = ((t < 0) & valid).long()
    idx = t * valid.long() + neg * (C - t)
    try:
        picked = input[_creation.arange(N), idx]
    except IndexError:
        _check_targets(t._data, C, ignore_index, op)  # (names the first bad target)
        raise
    loss = -picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return red.sum(loss)
    return red.sum(loss) / red.sum(w)  # (no valid target: 0 / 0 = NaN, as PyTorch's mean)


class MSE(Function):
    """scale * sum((a - b)^2) in one C++ pass (scale = 1/n for the mean);
    d/da = 2 scale g (a - b)."""

    @staticmethod
    def forward(ctx, a, b, scale):
        ctx.save_for_backward(a, b)
        ctx.scale = scale
        out = call_kernel(_core.mse_forward, a._data, b._data)
        if scale != 1.0:
            out = _core.scale(out, _compile_state_const(scale))
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        if grad_mode.is_grad_enabled():
            d = (2.0 * ctx.scale) * g * (a - b)
            return (d if ctx.needs_input_grad[0] else None,
                    -d if ctx.needs_input_grad[1] else None, None)
        # the kernel's scale is (2 scale) * g, read from g's memory (so a recorded step reads
        # each replay's g, not the value seen while recording)
        da = call_kernel(_core.mse_backward, a._data, b._data, 2.0 * ctx.scale, g._data)
        return (Tensor._make(da) if ctx.needs_input_grad[0] else None,
                Tensor._make(np.asarray(-da)) if ctx.needs_input_grad[1] else None, None)


def _compile_state_const(value: float) -> np.ndarray:
    """A constant 0-d float64 array that gd.compile may snapshot (it depends on shapes only)."""
    a = np.array(value, dtype=np.float64)
    rec = _compile_state.active
    if rec is not None:
        rec.constants[id(a)] = a
    return a


def _check_pair(input: Any, target: Any, op: str) -> None:  # noqa: A002
    _check_float(input, op, "input")
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: argument 'target' must be a Tensor, got {type(target).__name__}")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """(input - target)^2, reduced; shapes must match or broadcast.

    >>> F.mse_loss(gd.tensor([1.0, 2.0]), gd.tensor([0.0, 0.0])).item()
    2.5
    >>> F.mse_loss(gd.tensor([1.0, 2.0]), gd.tensor([0.0, 0.0]), reduction="none").tolist()
    [1.0, 4.0]
    """
    op = "mse_loss"
    _check_pair(input, target, op)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of 'mean', 'sum', 'none', got "
                         f"{reduction!r}")
    if input.shape == target.shape and input.dtype == target.dtype and reduction != "none":
        n = input.numel()
        return MSE.apply(input, target, 1.0 if reduction == "sum" else
                         (1.0 / n if n else float("nan")))
    _check_broadcast(input, target, op)
    d = input - target
    return _reduce(d * d, reduction, op)


def _check_broadcast(input: Tensor, target: Tensor, op: str) -> None:  # noqa: A002
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(f"{op}: input shape {tuple(input.shape)} and target shape "
                         f"{tuple(target.shape)} do not broadcast") from None


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """|input - target|, reduced.

    >>> F.l1_loss(gd.tensor([1.0, -3.0]), gd.tensor([0.0, 0.0])).item()
    2.0
    """
    _check_pair(input, target, "l1_loss")
    _check_broadcast(input, target, "l1_loss")
    return _reduce(ew.abs(input - target), reduction, "l1_loss")


# PyTorch's floor of p (1 - p) in the BCE backward: the float constant 1e-12 in either dtype
# (in float64 its gradient at a saturated p is 1.0000000039958e12, not 1e12)
_BCE_EPS = float(np.float32(1e-12))


class BinaryCrossEntropy(Function):
    """Elementwise -(y log p + (1 - y) log(1 - p)) with each log clamped at -100, as PyTorch.

    Its backward is PyTorch's, not the derivative of the clamped logs (which is 0 / 0 = NaN at
    p = 0 or 1 and ruins the parameters of a saturated sigmoid):
    dp = g (p - y) / max((1 - p) p, _BCE_EPS), so 0 where the target matches a saturated p and
    about +-1e12 g where it does not; dy = g (log(1 - p) - log(p)) = -g logit(p), unclamped
    (+-Inf at p = 0 or 1, as in PyTorch). Both are differentiable ops, so create_graph works."""

    @staticmethod
    def forward(ctx, p, y):
        ctx.save_for_backward(p, y)
        logp = ew.clamp(act.log(p), min=-100.0)
        log1mp = ew.clamp(act.log(1.0 - p), min=-100.0)
        return (y - 1.0) * log1mp - y * logp

    @staticmethod
    def backward(ctx, g):
        p, y = ctx.saved_tensors
        dp = dy = None
        if ctx.needs_input_grad[0]:
            dp = g * (p - y) / ew.clamp((1.0 - p) * p, min=_BCE_EPS)
        if ctx.needs_input_grad[1]:
            dy = g * (act.log(1.0 - p) - act.log(p))
        return dp, dy


def _check_unit_interval(a: np.ndarray, op: str, arg: str) -> None:
    # PyTorch's test (a >= 0) & (a <= 1) is false for NaN as well, so NaN is refused too
    if a.size and not ((a >= 0) & (a <= 1)).all():
        raise ValueError(f"{op}: all elements of {arg} should be between 0 and 1")


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,  # noqa: A002
                         reduction: str = "mean") -> Tensor:
    """-(y log p + (1 - y) log(1 - p)) for probabilities p in [0, 1]; logs clamped at -100.

    input and target must hold values in [0, 1] (NaN included in neither), else ValueError, as
    PyTorch refuses them; see BinaryCrossEntropy for the gradient at p = 0 or 1.

    >>> round(F.binary_cross_entropy(gd.tensor([0.5]), gd.tensor([1.0])).item(), 4)
    0.6931
    """
    op = "binary_cross_entropy"
    _check_pair(input, target, op)
    if input.shape != target.shape:
        raise ValueError(f"{op}: target shape {tuple(target.shape)} must equal input shape "
                         f"{tuple(input.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of 'mean', 'sum', 'none', got "
                         f"{reduction!r}")
    _check_unit_interval(input._data, op, "input")
    _check_unit_interval(target._data, op, "target")
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, op)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,  # noqa: A002
                                     weight: Optional[Tensor] = None, reduction: str = "mean",
                                     pos_weight: Optional[Tensor] = None) -> Tensor:
    """BCE of sigmoid(input), computed stably as softplus(-x) + (1 - y) x.

    >>> round(F.binary_cross_entropy_with_logits(gd.tensor([0.0]), gd.tensor([1.0])).item(), 4)
    0.6931
    """
    op = "binary_cross_entropy_with_logits"
    _check_pair(input, target, op)
    if input.shape != target.shape:
        raise ValueError(f"{op}: target shape {tuple(target.shape)} must equal input shape "
                         f"{tuple(input.shape)}")
    # -log sigmoid(x), exact: no threshold (F.softplus's default 20 makes it linear beyond)
    sp_neg = act.softplus(-input, threshold=math.inf)
    if pos_weight is None:
        loss = (1.0 - target) * input + sp_neg
    else:
        loss = (1.0 - target) * input + (1.0 + (pos_weight - 1.0) * target) * sp_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, op)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0,  # noqa: A002
                         reduction: str = "mean") -> Tensor:
    """x where y = 1, max(0, margin - x) where y = -1.

    Targets are meant to be 1 or -1. Any other value gets PyTorch's result, the sum of both
    terms, x + max(0, margin - x) (PyTorch computes it without complaint, and a check would
    read the targets on the host, which a step recorded by gd.compile must not do).

    >>> F.hinge_embedding_loss(gd.tensor([0.25, 0.5]), gd.tensor([1.0, -1.0])).item()
    0.375
    """
    op = "hinge_embedding_loss"
    _check_pair(input, target, op)
    _check_broadcast(input, target, op)
    zero = Tensor._make(np.zeros((), dtype=input._data.dtype))
    pos = ew.where(target != -1, input, zero)
    neg = ew.where(target != 1, ew.clamp(margin - input, min=0.0), zero)
    return _reduce(neg + pos, reduction, op)
