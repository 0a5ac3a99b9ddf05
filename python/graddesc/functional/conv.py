"""Convolutions and pooling (NCHW, PyTorch's layouts and defaults), backed by src/cpp/conv.cpp.

conv2d(x, w) slides each filter w[o] (C/groups, KH, KW) over the zero-padded input: a matrix
product per sample of the filters with the input's unrolled patches (im2col), so its backward
is two more matrix products. conv1d is conv2d on a height-1 image. Pooling windows are computed
here (small int64 arrays, cached per geometry) and the kernel runs over them; max pooling keeps
the index of each maximum for its backward.

The backward runs the fused C++ kernel (dx, dW, db in one call) unless a graph of the gradient
is being built (create_graph=True); then it is written with conv ops that are themselves
differentiable (the input and weight gradients are linear in the output gradient), so second
derivatives work too.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Union

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, call_kernel
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function
from graddesc.functional.shape import getitem

__all__ = ["adaptive_avg_pool2d", "avg_pool2d", "conv1d", "conv2d", "max_pool2d", "unflatten"]


def _tuple(v: Any, n: int, name: str, op: str, minimum: int) -> tuple:
    """An int or a sequence of n ints, each >= minimum, as a tuple of n ints."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(vals) != n or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                             for a in vals):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    if any(a < minimum for a in vals):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    return tuple(int(a) for a in vals)


def _check_tensor(t: Any, name: str, op: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(t).__name__}")


def _check_float(x: Tensor, op: str) -> None:
    if x._data.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: expected a float32 or float64 input, got {x.dtype}")


# ---------------------------------------------------------------------------- convolution


def _conv_geometry(x_shape: tuple, w_shape: tuple, stride: tuple, padding: Any,
                   dilation: tuple, groups: int, op: str) -> tuple:
    """-> (pad_before (2), out (2)) after checking the shapes against PyTorch's rules."""
    n, c, h, w = x_shape
    oc, cg, kh, kw = w_shape
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if oc % groups != 0:
        raise ValueError(f"{op}: out_channels ({oc}, weight shape {w_shape}) must be divisible "
                         f"by groups={groups}")
    if cg * groups != c:
        raise ValueError(f"{op}: expected input {x_shape} to have {cg * groups} channels "
                         f"(weight {w_shape}, groups={groups}), but got {c} channels")
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: the weight {w_shape} has an empty kernel")
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if isinstance(padding, str):
        if padding == "valid":
            before, total = (0, 0), (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            total = (ekh - 1, ekw - 1)
            before = (total[0] // 2, total[1] // 2)  # PyTorch: the extra zero goes after
        else:
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a tuple, got "
                             f"{padding!r}")
    else:
        before = _tuple(padding, 2, "padding", op, 0)
        total = (2 * before[0], 2 * before[1])
    ph, pw = h + total[0], w + total[1]
    if ph < ekh or pw < ekw:
        raise ValueError(f"{op}: the kernel ({kh}, {kw}) with dilation {dilation} spans "
                         f"({ekh}, {ekw}), larger than the padded input ({ph}, {pw}) (input "
                         f"{x_shape})")
    out = ((ph - ekh) // stride[0] + 1, (pw - ekw) // stride[1] + 1)
    return before, out


class _ConvArgs:
    """The geometry of one conv2d call, shared by its backward ops."""

    __slots__ = ("dilation", "groups", "pad", "stride")

    def __init__(self, stride: tuple, pad: tuple, dilation: tuple, groups: int) -> None:
        self.stride, self.pad, self.dilation, self.groups = stride, pad, dilation, groups


def _conv_forward(xd: np.ndarray, wd: np.ndarray, bd: Optional[np.ndarray], a: _ConvArgs,
                  out: tuple, relu: bool = False) -> np.ndarray:
    return call_kernel(_core.conv2d_forward, xd, wd, bd, a.stride, a.pad, a.dilation, a.groups,
                       out, relu)


class Conv2d(Function):
    """y = conv2d(x, w) + b; x (N, C, H, W), w (OC, C/groups, KH, KW), b (OC,)."""

    @staticmethod
    def forward(ctx, x, w, b, args, out):
        ctx.args = args
        ctx.save_for_backward(x, w)
        return Tensor._make(_conv_forward(x._data, w._data, None if b is None else b._data,
                                          args, out))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        a = ctx.args
        if grad_mode.is_grad_enabled():  # building a graph of the gradient
            dx = _ConvInputGrad.apply(g, w, a, tuple(x.shape)) if nx else None
            dw = _ConvWeightGrad.apply(g, x, a, tuple(w.shape)) if nw else None
            db = g.sum((0, 2, 3)) if nb else None
            return dx, dw, db, None, None
        gd = g._data
        if gd.dtype != x._data.dtype:
            gd = gd.astype(x._data.dtype)
        dx, dw, db = call_kernel(_core.conv2d_backward, gd, x._data, w._data, a.stride, a.pad,
                                 a.dilation, a.groups, bool(nx), bool(nw), bool(nb))
        return (None if dx is None else Tensor._make(dx), None if dw is None else Tensor._make(dw),
                None if db is None else Tensor._make(db), None, None)


class _ConvInputGrad(Function):
    """dx = A(w)^T dy for y = A(w) x: linear in dy and in w. <G, dx> = <conv(G, w), dy>."""

    @staticmethod
    def forward(ctx, dy, w, a, x_shape):
        ctx.args, ctx.x_shape = a, x_shape
        ctx.save_for_backward(dy, w)
        x_dummy = np.empty(x_shape, dtype=w._data.dtype)
        dx = call_kernel(_core.conv2d_backward, dy._data.astype(w._data.dtype, copy=False),
                         x_dummy, w._data, a.stride, a.pad, a.dilation, a.groups, True, False,
                         False)[0]
        return Tensor._make(dx)

    @staticmethod
    def backward(ctx, G):
        dy, w = ctx.saved_tensors
        a = ctx.args
        ndy, nw = ctx.needs_input_grad[:2]
        gdy = Conv2d.apply(G, w, None, a, tuple(dy.shape[2:])) if ndy else None
        gw = _ConvWeightGrad.apply(dy, G, a, tuple(w.shape)) if nw else None
        return gdy, gw, None, None


class _ConvWeightGrad(Function):
    """dw = sum over samples of dy cols(x)^T: linear in dy and in x. <G, dw> = <conv(x, G), dy>."""

    @staticmethod
    def forward(ctx, dy, x, a, w_shape):
        ctx.args, ctx.w_shape = a, w_shape
        ctx.save_for_backward(dy, x)
        w_dummy = np.zeros(w_shape, dtype=x._data.dtype)
        dw = call_kernel(_core.conv2d_backward, dy._data.astype(x._data.dtype, copy=False),
                         x._data, w_dummy, a.stride, a.pad, a.dilation, a.groups, False, True,
                         False)[1]
        return Tensor._make(dw)

    @staticmethod
    def backward(ctx, G):
        dy, x = ctx.saved_tensors
        a = ctx.args
        ndy, nx = ctx.needs_input_grad[:2]
        gdy = Conv2d.apply(x, G, None, a, tuple(dy.shape[2:])) if ndy else None
        gx = _ConvInputGrad.apply(dy, G, a, tuple(x.shape)) if nx else None
        return gdy, gx, None, None


def _conv_nd(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Any,  # noqa: A002
             padding: Any, dilation: Any, groups: int, op: str, nd: int) -> Tensor:
    _check_tensor(input, "input", op)
    _check_tensor(weight, "weight", op)
    if bias is not None:
        _check_tensor(bias, "bias", op)
    _check_float(input, op)
    if input.ndim not in (nd + 1, nd + 2):
        kind = "(N, C, L) or (C, L)" if nd == 1 else "(N, C, H, W) or (C, H, W)"
        raise ValueError(f"{op}: expected a {nd + 2}-d input {kind}, got shape "
                         f"{tuple(input.shape)}")
    if weight.ndim != nd + 2:
        raise ValueError(f"{op}: expected a {nd + 2}-d weight (out_channels, in_channels/groups"
                         f"{', kL' if nd == 1 else ', kH, kW'}), got shape {tuple(weight.shape)}")
    if weight._data.dtype != input._data.dtype or (bias is not None and
                                                   bias._data.dtype != input._data.dtype):
        raise TypeError(f"{op}: input, weight and bias must share one dtype, got {input.dtype}, "
                        f"{weight.dtype}" + (f", {bias.dtype}" if bias is not None else ""))
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    w = weight
    if nd == 1:  # (N, C, L) as (N, C, 1, L)
        x, w = x.unsqueeze(2), w.unsqueeze(2)
        stride = (1,) + _tuple(stride, 1, "stride", op, 1)
        dilation = (1,) + _tuple(dilation, 1, "dilation", op, 1)
        if not isinstance(padding, str):
            padding = (0,) + _tuple(padding, 1, "padding", op, 0)
    else:
        stride = _tuple(stride, 2, "stride", op, 1)
        dilation = _tuple(dilation, 2, "dilation", op, 1)
    pad, out = _conv_geometry(tuple(x.shape), tuple(w.shape), stride, padding, dilation,
                              groups, op)
    y = Conv2d.apply(x, w, bias, _ConvArgs(stride, pad, dilation, int(groups)), out)
    if nd == 1:
        y = y.squeeze(2)
    return y.squeeze(0) if unbatched else y


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,  # noqa: A002
           stride: Any = 1, padding: Union[int, tuple, str] = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """2-d convolution (cross-correlation, as in PyTorch): input (N, C, H, W) or (C, H, W),
    weight (OC, C/groups, KH, KW), bias (OC,); padding an int, a pair, 'valid' or 'same'.

    >>> x = gd.arange(9.0).reshape(1, 1, 3, 3)
    >>> F.conv2d(x, gd.ones(1, 1, 2, 2))  # the sums of the 2x2 windows
    tensor([[[[8., 12.],
              [20., 24.]]]])
    >>> F.conv2d(x, gd.ones(1, 1, 3, 3), padding="same").shape
    graddesc.Size([1, 1, 3, 3])
    """
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, "conv2d", 2)


def conv1d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,  # noqa: A002
           stride: Any = 1, padding: Union[int, tuple, str] = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """1-d convolution: input (N, C, L) or (C, L), weight (OC, C/groups, K), bias (OC,).

    >>> x = gd.tensor([[[1.0, 2.0, 4.0, 8.0]]])  # (N, C, L) = (1, 1, 4)
    >>> F.conv1d(x, gd.tensor([[[1.0, 0.0, -1.0]]]))  # cross-correlation: x[i] - x[i + 2]
    tensor([[[-3., -6.]]])
    """
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, "conv1d", 1)


# ---------------------------------------------------------------------------- pooling


@functools.lru_cache(maxsize=256)
def _pool_axis(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool, op: str) -> tuple:
    """PyTorch's output length and, per output, (first valid input, count of valid taps), and
    the unclipped window ends for the divisor of an average pool."""
    span = d * (k - 1) + 1
    num = size + 2 * p - span + ((s - 1) if ceil_mode else 0)
    if num < 0:
        raise ValueError(f"{op}: the window (kernel {k}, dilation {d}) spans {span}, larger "
                         f"than the padded input ({size} + 2 * {p})")
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ValueError(f"{op}: output size {out} is too small (input {size}, kernel {k})")
    starts = np.arange(out, dtype=np.int64) * s - p
    i0 = np.where(starts >= 0, 0, (-starts + d - 1) // d)
    i1 = np.minimum(k, (size - starts + d - 1) // d)
    first = starts + i0 * d
    count = np.maximum(0, i1 - i0)
    return out, np.ascontiguousarray(first), np.ascontiguousarray(count), starts


def _pool_args(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
               op: str) -> tuple:
    _check_tensor(x, "input", op)
    _check_float(x, op)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    k = _tuple(kernel_size, 2, "kernel_size", op, 1)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _tuple(stride, 2, "stride", op, 1)
    p = _tuple(padding, 2, "padding", op, 0)
    d = _tuple(dilation, 2, "dilation", op, 1)
    return k, s, p, d


class _MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, win, dil, indices_out):
        hs, hn, ws, wn = win
        y, idx = call_kernel(_core.maxpool2d_forward, x._data, hs, hn, ws, wn, dil[0], dil[1])
        ctx.idx, ctx.in_shape = idx, tuple(x.shape)
        indices_out.append(idx)
        return Tensor._make(y)

    @staticmethod
    def backward(ctx, g):
        if grad_mode.is_grad_enabled():
            return _MaxUnpoolGrad.apply(g, ctx.idx, ctx.in_shape), None, None, None
        return Tensor._make(call_kernel(_core.maxpool2d_backward, g._data, ctx.idx,
                                        list(ctx.in_shape))), None, None, None


class _MaxUnpoolGrad(Function):
    """dx = scatter of dy to the argmax positions; linear in dy, its adjoint a gather."""

    @staticmethod
    def forward(ctx, g, idx, in_shape):
        ctx.idx = idx
        return Tensor._make(call_kernel(_core.maxpool2d_backward, g._data, idx, list(in_shape)))

    @staticmethod
    def backward(ctx, G):
        n, c = ctx.idx.shape[:2]
        flat = G.reshape(n, c, -1)
        ni = np.arange(n)[:, None, None, None]
        ci = np.arange(c)[None, :, None, None]
        return getitem(flat, (ni, ci, ctx.idx.reshape(n, c, *ctx.idx.shape[2:]))), None, None


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None,  # noqa: A002
               padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:
    """Max over each window; with return_indices also the flat index (h * W + w) of each max.

    >>> x = gd.arange(16.0).reshape(1, 1, 4, 4)
    >>> F.max_pool2d(x, 2)
    tensor([[[[5., 7.],
              [13., 15.]]]])
    >>> F.max_pool2d(x, 2, return_indices=True)[1]
    tensor([[[[ 5,  7],
              [13, 15]]]])
    """
    op = "max_pool2d"
    k, s, p, d = _pool_args(input, kernel_size, stride, padding, dilation, op)
    for i in range(2):
        if p[i] > (d[i] * (k[i] - 1) + 1) // 2:
            raise ValueError(f"{op}: padding {p} should be at most half of the effective kernel "
                             f"size (kernel {k}, dilation {d})")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    _, h, w = x.shape[1:]
    oh, hs, hn, _ = _pool_axis(h, k[0], s[0], p[0], d[0], bool(ceil_mode), op)
    ow, ws, wn, _ = _pool_axis(w, k[1], s[1], p[1], d[1], bool(ceil_mode), op)
    holder: list = []
    y = _MaxPool2d.apply(x, (hs, hn, ws, wn), d, holder)
    idx = Tensor._make(holder[0])
    if input.ndim == 3:
        y, idx = y.squeeze(0), idx.squeeze(0)
    return (y, idx) if return_indices else y


@functools.lru_cache(maxsize=256)
def _avg_divisor(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                 ceil_mode: bool, count_include_pad: bool, divisor_override: Optional[int],
                 op: str) -> tuple:
    oh, hs, hn, h0 = _pool_axis(h, kh, sh, ph, 1, ceil_mode, op)
    ow, ws, wn, w0 = _pool_axis(w, kw, sw, pw, 1, ceil_mode, op)
    if divisor_override is not None:
        div = np.full(oh * ow, divisor_override, dtype=np.int64)
    elif count_include_pad:  # the window clipped to the padded input (PyTorch's pool_size)
        eh = np.minimum(h0 + kh, h + ph) - h0
        ew = np.minimum(w0 + kw, w + pw) - w0
        div = (eh[:, None] * ew[None, :]).reshape(-1)
    else:
        div = (hn[:, None] * wn[None, :]).reshape(-1)
    return hs, hn, ws, wn, np.ascontiguousarray(np.maximum(div, 1), dtype=np.int64)


class _AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, win):
        ctx.win, ctx.in_shape = win, tuple(x.shape)
        return Tensor._make(call_kernel(_core.avgpool2d_forward, x._data, *win))

    @staticmethod
    def backward(ctx, g):
        if grad_mode.is_grad_enabled():
            return _AvgPoolGrad.apply(g, ctx.win, ctx.in_shape), None
        return Tensor._make(call_kernel(_core.avgpool2d_backward, g._data, list(ctx.in_shape),
                                        *ctx.win)), None


class _AvgPoolGrad(Function):
    """dx of an average pool: linear in dy; its adjoint is the pool itself."""

    @staticmethod
    def forward(ctx, g, win, in_shape):
        ctx.win = win
        return Tensor._make(call_kernel(_core.avgpool2d_backward, g._data, list(in_shape), *win))

    @staticmethod
    def backward(ctx, G):
        return _AvgPool2d.apply(G, ctx.win), None, None


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None,  # noqa: A002
               padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> Tensor:
    """Mean over each window (PyTorch's divisor rules for padding and ceil_mode).

    >>> x = gd.arange(16.0).reshape(1, 1, 4, 4)
    >>> F.avg_pool2d(x, 2)
    tensor([[[[2.5000, 4.5000],
              [10.5000, 12.5000]]]])
    """
    op = "avg_pool2d"
    k, s, p, _ = _pool_args(input, kernel_size, stride, padding, 1, op)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    if divisor_override is not None and (isinstance(divisor_override, bool) or
                                         not isinstance(divisor_override, int) or
                                         divisor_override < 1):
        raise ValueError(f"{op}: divisor_override must be a positive int, got "
                         f"{divisor_override!r}")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    h, w = x.shape[2:]
    win = _avg_divisor(h, w, k[0], k[1], s[0], s[1], p[0], p[1], bool(ceil_mode),
                       bool(count_include_pad), divisor_override, op)
    y = _AvgPool2d.apply(x, win)
    return y.squeeze(0) if input.ndim == 3 else y


@functools.lru_cache(maxsize=256)
def _adaptive_windows(h: int, w: int, oh: int, ow: int) -> tuple:
    def axis(size: int, out: int) -> tuple:
        o = np.arange(out, dtype=np.int64)
        start = (o * size) // out
        end = ((o + 1) * size + out - 1) // out
        return np.ascontiguousarray(start), np.ascontiguousarray(end - start)

    hs, hn = axis(h, oh)
    ws, wn = axis(w, ow)
    div = np.ascontiguousarray((hn[:, None] * wn[None, :]).reshape(-1), dtype=np.int64)
    return hs, hn, ws, wn, div


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average pool to a given output size: window o covers [floor(o H / OH),
    ceil((o + 1) H / OH)).

    >>> x = gd.arange(16.0).reshape(1, 1, 4, 4)
    >>> F.adaptive_avg_pool2d(x, 2)
    tensor([[[[2.5000, 4.5000],
              [10.5000, 12.5000]]]])
    >>> F.adaptive_avg_pool2d(x, 1).flatten()  # global average pooling
    tensor([7.5000])
    """
    op = "adaptive_avg_pool2d"
    _check_tensor(input, "input", op)
    _check_float(input, op)
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape "
                         f"{tuple(input.shape)}")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    h, w = x.shape[2:]
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(size) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    size = (h if size[0] is None else size[0], w if size[1] is None else size[1])
    oh, ow = _tuple(size, 2, "output_size", op, 1)
    if h < 1 or w < 1:
        raise ValueError(f"{op}: the input {tuple(input.shape)} has an empty plane")
    y = _AvgPool2d.apply(x, _adaptive_windows(h, w, oh, ow))
    return y.squeeze(0) if input.ndim == 3 else y


def unflatten(input: Tensor, dim: int, sizes: Any) -> Tensor:  # noqa: A002
    """Splits dimension dim into sizes (one entry may be -1).

    >>> F.unflatten(gd.zeros(2, 12), 1, (3, -1)).shape
    graddesc.Size([2, 3, 4])
    """
    _check_tensor(input, "input", "unflatten")
    nd = input.ndim
    if not -nd <= dim < nd:
        raise IndexError(f"unflatten: dim {dim} out of range for a {nd}-d tensor")
    dim %= nd
    sizes = tuple(int(v) for v in sizes)
    n = input.shape[dim]
    known = math.prod(v for v in sizes if v != -1)
    if sizes.count(-1) > 1 or (sizes.count(-1) == 0 and known != n) or \
            (sizes.count(-1) == 1 and (known == 0 or n % known != 0)):
        raise ValueError(f"unflatten: sizes {sizes} do not multiply to dimension {dim}'s size "
                         f"{n} (input {tuple(input.shape)})")
    if sizes.count(-1):
        sizes = tuple(n // known if v == -1 else v for v in sizes)
    return input.reshape(tuple(input.shape[:dim]) + sizes + tuple(input.shape[dim + 1:]))


# ---------------------------------------------------------------------------- gd.compile

# The bindings gd.compile records (argument names in order, defaults) and their translation into
# the program's one "conv" instruction (src/cpp/conv.hpp lists its layout per kind).
CAPTURE_SIGS = {
    "conv2d_forward": (("input", "weight", "bias", "stride", "padding", "dilation", "groups",
                        "out_size", "relu"), {"relu": False}),
    "conv2d_backward": (("grad_output", "input", "weight", "stride", "padding", "dilation",
                         "groups", "need_dx", "need_dw", "need_db"),
                        {"need_dx": True, "need_dw": True, "need_db": True}),
    "maxpool2d_forward": (("input", "hs", "hn", "ws", "wn", "dh", "dw"), {}),
    "maxpool2d_backward": (("grad_output", "indices", "input_shape"), {}),
    "avgpool2d_forward": (("input", "hs", "hn", "ws", "wn", "divisor"), {}),
    "avgpool2d_backward": (("grad_output", "input_shape", "hs", "hn", "ws", "wn", "divisor"), {}),
}


def _shape_ints(x_shape: tuple, w_shape: tuple, a: dict, out_hw: tuple) -> list:
    """ConvShape's fields in order: N C H W, OC KH KW G, SH SW, PH PW, DH DW, OH OW."""
    n, c, h, w = x_shape
    oc, _, kh, kw = w_shape
    return [int(v) for v in (n, c, h, w, oc, kh, kw, a["groups"], *a["stride"], *a["padding"],
                             *a["dilation"], *out_hw)]


def _window_ints(p: int, h: int, w: int, oh: int, ow: int, dh: int, dw: int, win: tuple) -> list:
    return [int(v) for v in (p, h, w, oh, ow, dh, dw)] + \
        [int(v) for arr in win for v in np.asarray(arr).reshape(-1)]


def capture_instruction(name: str, a: dict, out: Any) -> tuple:
    """(f64, [(array or None, what)], ints) of the "conv" instruction for a recorded call."""
    if name == "conv2d_forward":
        x, w = a["input"], a["weight"]
        ints = [0] + _shape_ints(x.shape, w.shape, a, tuple(a["out_size"])) + \
            [int(bool(a["relu"]))]
        return x.dtype == np.float64, [(out, "y"), (x, "input"), (w, "weight"),
                                       (a["bias"], "bias")], ints
    if name == "conv2d_backward":
        dy, x, w = a["grad_output"], a["input"], a["weight"]
        dx, dw, db = out
        ints = [1] + _shape_ints(x.shape, w.shape, a, dy.shape[2:])
        return x.dtype == np.float64, [(dx, "dx"), (dw, "dw"), (db, "db"), (dy, "grad_output"),
                                       (x if dw is not None else None, "input"),
                                       (w if dx is not None else None, "weight")], ints
    if name in ("maxpool2d_forward", "avgpool2d_forward"):
        x = a["input"]
        n, c, h, w = x.shape
        win = (a["hs"], a["hn"], a["ws"], a["wn"])
        oh, ow = len(a["hs"]), len(a["ws"])
        if name == "maxpool2d_forward":
            y, idx = out
            ints = [2] + _window_ints(n * c, h, w, oh, ow, a["dh"], a["dw"], win)
            return x.dtype == np.float64, [(y, "y"), (idx, "indices"), (x, "input")], ints
        ints = [4] + _window_ints(n * c, h, w, oh, ow, 1, 1, win + (a["divisor"],))
        return x.dtype == np.float64, [(out, "y"), (x, "input")], ints
    dy = a["grad_output"]
    n, c, h, w = (int(v) for v in a["input_shape"])
    if name == "maxpool2d_backward":
        oh, ow = dy.shape[2:]
        one = np.ones(1, np.int64)
        win = (np.zeros(oh, np.int64), np.ones(oh, np.int64), np.zeros(ow, np.int64),
               np.ones(ow, np.int64)) if h and w else (one[:0],) * 4
        ints = [3] + _window_ints(n * c, h, w, oh, ow, 1, 1, win)
        return dy.dtype == np.float64, [(out, "dx"), (dy, "grad_output"),
                                        (a["indices"], "indices")], ints
    win = (a["hs"], a["hn"], a["ws"], a["wn"], a["divisor"])
    ints = [5] + _window_ints(n * c, h, w, len(a["hs"]), len(a["ws"]), 1, 1, win)
    return dy.dtype == np.float64, [(out, "dx"), (dy, "grad_output")], ints
