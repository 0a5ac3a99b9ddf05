"""Convolution and pooling layers (PyTorch's signatures, defaults and initialisation)."""

from __future__ import annotations

import math
from typing import Any, Optional

from graddesc import _creation, _dtype
from graddesc._device import check_device
from graddesc._tensor import Tensor
from graddesc.functional import conv as cf
from graddesc.nn import init
from graddesc.nn.module import Module
from graddesc.nn.parameter import Parameter


class _ConvNd(Module):
    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        name = type(self).__name__
        check_device(device, name)
        super().__init__()
        nd = self._nd
        for v, what in ((in_channels, "in_channels"), (out_channels, "out_channels"),
                        (groups, "groups")):
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if what == "groups" else 0):
                kind = "positive" if what == "groups" else "non-negative"
                raise ValueError(f"{name}: {what} must be a {kind} int, got {v!r}")
        if in_channels % groups != 0:
            raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by groups "
                             f"({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"{name}: out_channels ({out_channels}) must be divisible by groups "
                             f"({groups})")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode must be 'zeros' (the only mode graddesc "
                             f"has), got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = cf._tuple(kernel_size, nd, "kernel_size", name, 1)
        self.stride = cf._tuple(stride, nd, "stride", name, 1)
        self.dilation = cf._tuple(dilation, nd, "dilation", name, 1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"{name}: padding must be 'valid', 'same', an int or a tuple, "
                                 f"got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 f"convolutions")
            self.padding = padding
        else:
            self.padding = cf._tuple(padding, nd, "padding", name, 0)
        self.padding_mode = padding_mode
        d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.float32
        self.weight = Parameter(_creation.empty(out_channels, in_channels // groups,
                                                *self.kernel_size, dtype=d))
        if bias:
            self.bias = Parameter(_creation.empty(out_channels, dtype=d))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's: kaiming_uniform_(a=sqrt(5)) on the weight, bias U(-1/sqrt(fan_in), ...)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-d convolution over (N, C, H, W); weight (out_channels, in_channels/groups, kH, kW).

    >>> conv = nn.Conv2d(1, 6, kernel_size=5)
    >>> conv(gd.randn(2, 1, 28, 28)).shape
    graddesc.Size([2, 6, 24, 24])
    >>> conv.weight.shape
    graddesc.Size([6, 1, 5, 5])
    """

    _nd = 2

    def forward(self, x: Tensor) -> Tensor:
        p = self._parameters
        return cf.conv2d(x, p["weight"], p["bias"], self.stride, self.padding, self.dilation,
                         self.groups)


class Conv1d(_ConvNd):
    """1-d convolution over (N, C, L); weight (out_channels, in_channels/groups, k).

    >>> conv = nn.Conv1d(2, 4, kernel_size=3, padding=1)
    >>> conv(gd.randn(8, 2, 50)).shape
    graddesc.Size([8, 4, 50])
    """

    _nd = 1

    def forward(self, x: Tensor) -> Tensor:
        p = self._parameters
        return cf.conv1d(x, p["weight"], p["bias"], self.stride, self.padding, self.dilation,
                         self.groups)


class MaxPool2d(Module):
    """2-d max pooling over (N, C, H, W): the largest value of each window (NaN wins); the
    backward sends each gradient to the element the forward chose.

    >>> gd.nn.MaxPool2d(2)(gd.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, \
            (stride if stride is not None else kernel_size), padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: Tensor) -> Any:
        return cf.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                             self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """2-d average pooling over (N, C, H, W); zero padding counts in the divisor unless
    `count_include_pad=False`.

    >>> gd.nn.AvgPool2d(2)(gd.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, \
            (stride if stride is not None else kernel_size), padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return cf.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a given output size (H_out, W_out) whatever the input's size, with
    PyTorch's window bounds (start = floor(i H / H_out), end = ceil((i + 1) H / H_out)).

    >>> gd.nn.AdaptiveAvgPool2d(1)(gd.arange(16.0).reshape(1, 1, 4, 4)).tolist()
    [[[[7.5]]]]
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return cf.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Unflatten(Module):
    """Splits dimension `dim` into the shape `unflattened_size` (the inverse of Flatten).

    >>> gd.nn.Unflatten(1, (2, 3))(gd.zeros(4, 6)).shape
    graddesc.Size([4, 2, 3])
    """

    def __init__(self, dim: int, unflattened_size: Any) -> None:
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        return cf.unflatten(x, self.dim, self.unflattened_size)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
