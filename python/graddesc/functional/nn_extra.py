"""nn.functional additions for PyTorch ports: dropout, silu, one_hot, normalize, and the losses
huber_loss, smooth_l1_loss, kl_div. Each is composed of differentiable Tensor ops (no new
kernel), so its gradient, and the gradient of that, come from the ops it is made of.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from graddesc import _compile_state, _creation, _random
from graddesc._tensor import Tensor, _norm_dim
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional import math as gmath
from graddesc.functional import reduce as red
from graddesc.functional.loss import _reduce


def _check_tensor(x: Any, name: str, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")


def _check_float(x: Any, name: str, op: str) -> None:
    _check_tensor(x, name, op)
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating point tensor, got {x.dtype}")


def _check_same_shape(input: Tensor, target: Tensor, op: str) -> None:  # noqa: A002
    _check_float(input, "input", op)
    _check_float(target, "target", op)
    if input.shape != target.shape:
        raise ValueError(f"{op}: target shape {tuple(target.shape)} must equal input shape "
                         f"{tuple(input.shape)}")


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,  # noqa: A002
            generator: Optional[_random.Generator] = None) -> Tensor:
    """Zeros each element with probability p and scales the rest by 1/(1-p) (training only);
    the mask is drawn from graddesc's generator (gd.manual_seed), so runs repeat.

    >>> F.dropout(gd.ones(4), p=0.5, training=False).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    _check_float(input, "input", "dropout")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    dt = input._data.dtype
    if p == 1:
        keep = _compile_state.constant(np.zeros(input._data.shape, dt))
    elif dt in (np.float32, np.float64):
        # drawn by a kernel from the generator's stream, so a compiled step draws anew each call
        keep = _random.dropout_mask(input._data.shape, p, dt, generator)
    else:
        u = _random._rng(generator).random(input._data.shape)
        keep = ((u >= p) / (1.0 - p)).astype(dt)
    mask = Tensor._make(keep)
    if inplace:
        return input.mul_(mask)
    return ew.mul(input, mask)


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """x * sigmoid(x).

    >>> F.silu(gd.tensor([0.0])).tolist()
    [0.0]
    """
    _check_float(input, "input", "silu")
    return ew.mul(input, act.sigmoid(input))


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """An int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each class index;
    num_classes=-1 uses max + 1.

    >>> F.one_hot(gd.tensor([0, 2]), num_classes=3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    _check_tensor(tensor, "tensor", "one_hot")
    a = tensor._data
    if a.dtype != np.int64:
        raise TypeError(f"one_hot: tensor must be an int64 tensor of class indices, got "
                        f"{tensor.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"one_hot: num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes == -1:
        _compile_state.value_read("one_hot(num_classes=-1)")  # (the count comes from the data)
        _one_hot_check(a, None)
        if a.size == 0:
            raise RuntimeError("one_hot: can not infer the number of classes from an empty "
                               "tensor (pass num_classes)")
        num_classes = int(a.max()) + 1
    elif num_classes < 1 and a.size or num_classes < 0:
        raise RuntimeError(f"one_hot: num_classes must be positive (or -1), got {num_classes}")
    num_classes = int(num_classes)
    if a.ndim == 0 or a.size == 0 or num_classes == 0:
        _one_hot_check(a, num_classes)
        out = np.zeros(a.shape + (num_classes,), np.int64)
        np.put_along_axis(out, a[..., None], 1, axis=-1)
        return Tensor._make(out)
    # kernels only, so gd.compile records it: each class gathered from arange(C) (float: the
    # gather kernel's dtypes; exact below 2^24), which checks the range on every call, replays
    # included (a negative class is sent out of range, where the gather would wrap it around),
    # then compared with arange(C)
    classes = _creation.arange(num_classes, dtype=np.float64 if num_classes > 2 ** 24
                               else np.float32)
    try:
        picked = classes[tensor + (tensor < 0).long() * (num_classes - tensor)]
    except IndexError:
        _one_hot_check(a, num_classes)
        raise
    return (picked.unsqueeze(-1) == classes).long()


def _one_hot_check(a: np.ndarray, num_classes: Optional[int]) -> None:
    """one_hot's errors for class values below 0 or (given num_classes) not below it."""
    if a.size and a.min() < 0:
        raise RuntimeError(f"one_hot: class values must be non-negative, got {int(a.min())}")
    if num_classes is not None and a.size and a.max() >= num_classes:
        raise RuntimeError(f"one_hot: class value {int(a.max())} is out of range for "
                           f"num_classes={num_classes}")


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:  # noqa: A002
    """input / max(||input||_p over dim, eps): unit vectors along dim.

    >>> F.normalize(gd.tensor([[3.0, 4.0]]), dim=1).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    _check_float(input, "input", "normalize")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"normalize: eps must be a non-negative number, got {eps!r}")
    d = _norm_dim(dim, max(input.ndim, 1), "normalize")
    n = gmath.norm(input, p, dim=d, keepdim=True) if input.ndim else gmath.norm(input, p)
    return ew.div(input, ew.clamp(n, min=eps))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean",  # noqa: A002
               delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), for d = input - target.

    >>> F.huber_loss(gd.tensor([0.5, 3.0]), gd.tensor([0.0, 0.0]), reduction="none").tolist()
    [0.125, 2.5]
    """
    _check_same_shape(input, target, "huber_loss")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta!r}")
    d = ew.sub(input, target)
    a = ew.abs(d)
    loss = ew.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction, "huber_loss")


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean",  # noqa: A002
                   beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta = 0: the L1 loss).

    >>> F.smooth_l1_loss(gd.tensor([0.5, 3.0]), gd.tensor([0.0, 0.0]), reduction="none").tolist()
    [0.125, 2.5]
    """
    _check_same_shape(input, target, "smooth_l1_loss")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta!r}")
    d = ew.sub(input, target)
    a = ew.abs(d)
    if beta == 0:
        loss = a
    else:
        loss = ew.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean",  # noqa: A002
           log_target: bool = False) -> Tensor:
    """Pointwise target * (log target - input), input being log-probabilities (PyTorch's
    convention); 0 where target is 0. 'batchmean' divides the sum by input.shape[0], which is
    the mathematical KL divergence per sample ('mean' divides by every element).

    >>> p = gd.tensor([0.5, 0.5])
    >>> F.kl_div(gd.log(p), p, reduction="sum").item()
    0.0
    """
    _check_same_shape(input, target, "kl_div")
    if not isinstance(log_target, bool):
        raise TypeError(f"kl_div: log_target must be a bool, got {type(log_target).__name__}")
    if log_target:
        loss = act.exp(target) * (target - input)
    else:
        pos = target > 0
        safe = ew.where(pos, target, 1.0)  # log(0) never evaluated where target is 0
        loss = ew.where(pos, target * (act.log(safe) - input), 0.0 * input)
    if reduction == "batchmean":
        n = input.shape[0] if input.ndim else 1
        return red.sum(loss) / n
    return _reduce(loss, reduction, "kl_div")
