"""GroupNorm and InstanceNorm1d/2d/3d (PyTorch's arguments, defaults, reprs and state_dict
names), over F.group_norm / F.instance_norm (functional/norm_extra.py)."""

from __future__ import annotations

from typing import Any, Optional

from graddesc import _creation
from graddesc._device import check_device
from graddesc._tensor import Tensor
from graddesc.functional import norm_extra as fx
from graddesc.nn import init
from graddesc.nn.module import Module
from graddesc.nn.norm import _count, _float_dtype, _RunningStats
from graddesc.nn.parameter import Parameter


def _affine_params(m: Module, n: int, affine: bool, bias: bool, d: Any) -> None:
    if affine:
        m.weight = Parameter(_creation.ones(n, dtype=d))
        if bias:
            m.bias = Parameter(_creation.zeros(n, dtype=d))
        else:
            m.register_parameter("bias", None)
    else:
        m.register_parameter("weight", None)
        m.register_parameter("bias", None)


class GroupNorm(Module):
    """Normalizes each sample over groups of num_channels / num_groups channels (and all
    positions), then scales and shifts per channel (learnable when affine).

    >>> gn = nn.GroupNorm(2, 4)
    >>> gn(gd.tensor([[1.0, 3.0, 10.0, 30.0]])).tolist()
    [[-0.9999..., 0.9999..., -1.0, 1.0]]
    >>> list(gn.state_dict())
    ['weight', 'bias']
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device: Any = None, dtype: Any = None, *,
                 bias: bool = True) -> None:
        check_device(device, "GroupNorm")
        super().__init__()
        self.num_groups = _count(num_groups, "num_groups", "GroupNorm")
        self.num_channels = _count(num_channels, "num_channels", "GroupNorm")
        if num_groups == 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.eps, self.affine = float(eps), bool(affine)
        _affine_params(self, num_channels, self.affine, bias, _float_dtype(dtype))

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        p = self._parameters
        return fx.group_norm(input, self.num_groups, p["weight"], p["bias"], self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.affine}, bias={self.bias is not None}")


class _InstanceNorm(_RunningStats, Module):
    _dim = 2  # the number of spatial dimensions

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        name = type(self).__name__
        check_device(device, name)
        super().__init__()
        self.num_features = _count(num_features, "num_features", name)
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        d = _float_dtype(dtype)
        _affine_params(self, num_features, self.affine, bias, d)
        self._register_running_stats(num_features, d)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(input).__name__}")
        if input.ndim not in (self._dim + 1, self._dim + 2):
            raise ValueError(f"{name}: expected {self._dim + 1}D (unbatched) or "
                             f"{self._dim + 2}D input, got {input.ndim}D input of shape "
                             f"{tuple(input.shape)}")
        unbatched = input.ndim == self._dim + 1
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected input with {self.num_features} channels in "
                             f"dimension {0 if unbatched else 1}, got input of shape "
                             f"{tuple(input.shape)}")
        b, p = self._buffers, self._parameters
        use_input_stats = self.training or not self.track_running_stats
        y = fx.instance_norm(x, b["running_mean"], b["running_var"], p["weight"], p["bias"],
                             use_input_stats, self.momentum if self.momentum is not None
                             else 0.0, self.eps)  # (PyTorch's InstanceNorm: None is 0.0)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Normalizes each (sample, channel) of (N, C, L) (or unbatched (C, L)) over L.

    >>> nn.InstanceNorm1d(1)(gd.tensor([[[1.0, 3.0]]])).tolist()
    [[[-0.9999..., 0.9999...]]]
    """

    _dim = 1


class InstanceNorm2d(_InstanceNorm):
    """Normalizes each (sample, channel) of images (N, C, H, W) (or unbatched (C, H, W)) over
    its H x W positions; affine=False and track_running_stats=False by default, as PyTorch.

    >>> y = nn.InstanceNorm2d(3)(gd.randn(2, 3, 4, 4))
    >>> abs(y[1, 2].mean().item()) < 1e-6
    True
    """

    _dim = 2


class InstanceNorm3d(_InstanceNorm):
    """Normalizes each (sample, channel) of volumes (N, C, D, H, W) over its positions.

    >>> nn.InstanceNorm3d(2)(gd.randn(1, 2, 2, 2, 2)).shape
    graddesc.Size([1, 2, 2, 2, 2])
    """

    _dim = 3


__all__ = ["GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"]
