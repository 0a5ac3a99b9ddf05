"""F.group_norm and F.instance_norm through the batch-norm kernel (functional/norm.py).

Both normalize over groups of elements that the (N, C, L) batch-norm kernel sees as channels:
group norm views input (N, C, *) as (1, N * num_groups, rest), instance norm as (1, N * C, rest);
the per-channel affine is applied afterwards by elementwise kernels. So a compiled step records
them like BatchNorm, forward and backward. Instance norm's running statistics follow PyTorch:
the kernel updates a per-(sample, channel) copy, whose mean over the batch becomes the new value.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from graddesc import _creation
from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode
from graddesc.functional import norm as fn


def _affine(y: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], C: int,
            op: str) -> Tensor:
    shape = (1, C) + (1,) * (y.ndim - 2)
    for name, t in (("weight", weight), ("bias", bias)):
        fn._tensor_or_none(t, name, op)
        if t is not None:
            fn._check_float(t, name, op, y._data.dtype)
            if tuple(t.shape) != (C,):
                raise ValueError(f"{op}: argument '{name}' expected shape ({C},), got "
                                 f"{tuple(t.shape)}")
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _input(input: Any, op: str, min_dim: int) -> Tensor:  # noqa: A002
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a Tensor, got {type(input).__name__}")
    fn._check_float(input, "input", op)
    if input.ndim < min_dim:
        raise ValueError(f"{op}: expected input of at least {min_dim} dimensions, got "
                         f"{input.ndim}D input of shape {tuple(input.shape)}")
    return input


def group_norm(input: Tensor, num_groups: int, weight: Optional[Tensor] = None,  # noqa: A002
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """Normalizes each sample's channels in num_groups groups (mean 0, variance 1 over the
    group's channels and spatial positions), then weight/bias per channel (F.group_norm).

    >>> x = gd.tensor([[1.0, 3.0, 10.0, 30.0]])
    >>> F.group_norm(x, 2)
    tensor([[-1.0000,  1.0000, -1.0000,  1.0000]])
    """
    op = "group_norm"
    x = _input(input, op, 2)
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"{op}: num_groups must be a positive int, got {num_groups!r}")
    N, C = x.shape[0], x.shape[1]
    if C % num_groups:
        raise ValueError(f"{op}: the number of channels ({C}) must be divisible by "
                         f"num_groups ({num_groups})")
    rest = (C // num_groups) * math.prod(x.shape[2:])
    if rest == 1 or x.numel() == 0:  # one element per group: x - mean = 0 (and its gradient)
        return _affine(x - x, weight, bias, C, op)
    y = fn.batch_norm(x.reshape(1, N * num_groups, rest), None, None, None, None, True, 0.0,
                      float(eps))
    return _affine(y.reshape(x.shape), weight, bias, C, op)


def instance_norm(input: Tensor, running_mean: Optional[Tensor] = None,  # noqa: A002
                  running_var: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                  bias: Optional[Tensor] = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalizes each (sample, channel) over its spatial positions (F.instance_norm); with
    use_input_stats=False the running statistics are used instead; given running statistics
    and use_input_stats, they are updated with momentum (the unbiased variance, averaged over
    the batch), as PyTorch does.

    >>> F.instance_norm(gd.tensor([[[1.0, 3.0], [10.0, 30.0]]]))
    tensor([[[-1.0000,  1.0000],
             [-1.0000,  1.0000]]])
    """
    op = "instance_norm"
    x = _input(input, op, 3)
    N, C = x.shape[0], x.shape[1]
    L = math.prod(x.shape[2:])
    if use_input_stats and L <= 1:
        raise ValueError(f"{op}: expected more than 1 spatial element when training, got "
                         f"input of shape {tuple(x.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: running_mean and running_var must both be given or both None")
    if not use_input_stats and running_mean is None:
        raise ValueError(f"{op}: use_input_stats=False needs running_mean and running_var")
    xr = x.reshape(1, N * C, L)
    if running_mean is None:
        y = fn.batch_norm(xr, None, None, None, None, True, 0.0, float(eps))
    else:
        fn._running(running_mean, "running_mean", C, x._data.dtype)
        fn._running(running_var, "running_var", C, x._data.dtype)
        with grad_mode.no_grad():  # a per-(sample, channel) copy for the kernel to update
            rm = (running_mean.reshape(1, C) + _creation.zeros(N, 1, dtype=x.dtype)).reshape(N * C)
            rv = (running_var.reshape(1, C) + _creation.zeros(N, 1, dtype=x.dtype)).reshape(N * C)
        y = fn.batch_norm(xr, rm, rv, None, None, bool(use_input_stats),
                          0.0 if momentum is None else float(momentum), float(eps))
        if use_input_stats:
            with grad_mode.no_grad():
                running_mean.copy_(rm.reshape(N, C).mean(dim=0))
                running_var.copy_(rv.reshape(N, C).mean(dim=0))
    return _affine(y.reshape(x.shape), weight, bias, C, op)


__all__ = ["group_norm", "instance_norm"]
