"""F.pad (mode "constant"): PyTorch's pad-tuple convention, negative pads crop.

The forward fills the output from a one-element constant and copies the kept part of the input
into its slice, both with the elementwise copy kernel (float32/float64), so a compiled step
records them. The backward is the same op with the pads negated and value 0 (the slice of the
gradient that the input fed), hence differentiable again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor
from graddesc.autograd.function import Function

_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _regions(shape: tuple, pads: tuple) -> tuple:
    """(output shape, source slices, destination slices, whether anything is copied)."""
    out, src, dst = [], [], []
    copied = True
    for n, (lo, hi) in zip(shape, pads):
        out.append(n + lo + hi)
        m = n - max(-lo, 0) - max(-hi, 0)  # how many input elements are kept
        copied = copied and m > 0
        m = max(m, 0)
        src.append(slice(max(-lo, 0), max(-lo, 0) + m))
        dst.append(slice(max(lo, 0), max(lo, 0) + m))
    return tuple(out), tuple(src), tuple(dst), copied


class Pad(Function):
    """y = value outside, x (cropped by the negative pads) inside; pads per dim, from dim 0."""

    @staticmethod
    def forward(ctx, x, pads, value):
        a = x._data
        ctx.pads = pads
        shape, src, dst, copied = _regions(a.shape, pads)
        dt = a.dtype
        if dt in _KERNEL_FLOATS and a.ndim and 0 not in shape:
            const = _compile_state.constant(np.full((1,) * a.ndim, value, dtype=dt))
            copy = _core.EW_OPS["copy"]
            out = _core.elementwise(copy, np.broadcast_to(const, shape))
            if copied:
                _core.elementwise(copy, a[src], out=out[dst])
            return Tensor._make(out)
        out = np.full(shape, value, dtype=dt)
        if copied:
            out[dst] = a[src]
        return Tensor._make(out)

    @staticmethod
    def backward(ctx, g):
        return Pad.apply(g, tuple((-lo, -hi) for lo, hi in ctx.pads), 0), None, None


def _pad_tuple(pad: Any, op: str) -> tuple:
    if isinstance(pad, (int, np.integer)) and not isinstance(pad, bool):
        raise TypeError(f"{op}: argument 'pad' must be a tuple of ints, got an int ({pad}); "
                        "the modules (nn.ZeroPad2d, ...) take a single int")
    if not isinstance(pad, Sequence) and not isinstance(pad, np.ndarray):
        raise TypeError(f"{op}: argument 'pad' must be a tuple of ints, got "
                        f"{type(pad).__name__}")
    out = []
    for p in pad:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise TypeError(f"{op}: argument 'pad' must contain ints, got {p!r} "
                            f"({type(p).__name__})")
        out.append(int(p))
    return tuple(out)


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant",  # noqa: A002
        value: Any = None) -> Tensor:
    """Pads input with `value` (None: 0) as PyTorch's F.pad: pad = (left, right) for the last
    dimension, then (top, bottom) for the one before it, and so on backwards; a negative pad
    crops. Only mode="constant" is implemented (other modes raise NotImplementedError, as an
    unknown mode does in PyTorch). The gradient is the slice of the output's gradient.

    >>> F.pad(gd.tensor([[1.0, 2.0]]), (1, 2))
    tensor([[0., 1., 2., 0., 0.]])
    >>> F.pad(gd.tensor([[1.0, 2.0, 3.0]]), (-1, 0, 1, 0), value=9.0)
    tensor([[9., 9.],
            [2., 3.]])
    """
    op = "pad"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a Tensor, got {type(input).__name__}")
    p = _pad_tuple(pad, op)
    if len(p) % 2:
        raise ValueError(f"{op}: the length of 'pad' must be divisible by 2, got {len(p)}")
    if len(p) // 2 > input.ndim:
        raise ValueError(f"{op}: 'pad' of length {len(p)} pads {len(p) // 2} dimensions, but "
                         f"input has only {input.ndim} (shape {tuple(input.shape)})")
    if not isinstance(mode, str):
        raise TypeError(f"{op}: argument 'mode' must be a str, got {type(mode).__name__}")
    if mode != "constant":
        raise NotImplementedError(f"{op}: mode {mode!r} is not supported by graddesc (only "
                                  "'constant')")
    if value is None:
        value = 0
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: argument 'value' must be a number, got {type(value).__name__}")
    k = len(p) // 2
    pads = [(0, 0)] * (input.ndim - k) + [(p[2 * i], p[2 * i + 1]) for i in range(k - 1, -1, -1)]
    for d, (n, (lo, hi)) in enumerate(zip(input.shape, pads)):
        if n + lo + hi < 0 or n - max(-lo, 0) < 0 or n - max(-hi, 0) < 0:
            raise ValueError(f"{op}: pads ({lo}, {hi}) of dimension {d} (size {n}) crop more "
                             "than the dimension holds")
    dt = input._data.dtype
    v = value.item() if isinstance(value, np.generic) else value
    if dt.kind != "f":
        v = int(v)  # PyTorch truncates a float fill value for an integer tensor
    return Pad.apply(input, tuple(pads), v)


__all__ = ["pad"]
