"""nn.utils: gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """Scales all gradients together so their joint norm is at most max_norm; returns the
    norm before clipping.

    >>> w = nn.Parameter(gd.zeros(2))
    >>> w.grad = gd.tensor([3.0, 4.0])
    >>> nn.utils.clip_grad_norm_([w], max_norm=1.0).item()  # the norm before clipping
    5.0
    >>> [round(v, 4) for v in w.grad.tolist()]
    [0.6, 0.8]
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if max_norm < 0 if isinstance(max_norm, (int, float)) else False:
        raise ValueError(f"clip_grad_norm_: max_norm must be non-negative, got {max_norm}")
    if not grads:
        return Tensor._make(np.zeros((), dtype=np.float32))
    norm_type = float(norm_type)
    arrays = [g._data for g in grads]
    dtype = arrays[0].dtype
    if norm_type > 0 and dtype in (np.float32, np.float64) and \
            all(a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable and
                a.flags.aligned for a in arrays):
        if error_if_nonfinite:
            # whether to raise is decided per call; a replay would not raise, so a step
            # recorded by gd.compile falls back to eager (the kernel raises before scaling)
            _compile_state.value_read("clip_grad_norm_ (error_if_nonfinite decides in Python "
                                      "whether to raise)")
        # the kernel computes the norm (the same bits on every ISA and thread count) and decides
        # per call whether to scale, so a step recorded by gd.compile repeats the test on each
        # replay's gradients
        total = _core.clip_norm(arrays, norm_type, float(max_norm), bool(error_if_nonfinite))
        for g in grads:
            g._vc[0] += 1
        return Tensor._make(np.asarray(total, dtype=dtype))
    # Here whether to scale (or raise) is decided in Python on the gradients' values; a step
    # recorded by gd.compile would replay that one decision on every later call (no clipping
    # ever after a recording below the limit), so the recording falls back to eager.
    _compile_state.value_read("clip_grad_norm_ (the norm decides in Python whether to scale)")
    if norm_type == float("inf"):
        total = max(float(np.max(np.abs(g._data))) if g._data.size else 0.0 for g in grads)
    else:
        total = float(sum(float(np.sum(np.abs(g._data.astype(np.float64)) ** norm_type))
                          for g in grads) ** (1.0 / norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           "`parameters` is non-finite, so it cannot be clipped. To disable "
                           "this error and scale the gradients by the non-finite norm anyway, "
                           "set `error_if_nonfinite=False`")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1:  # (a NaN norm scales by NaN, as PyTorch's clamp keeps it)
        for g in grads:
            _compile_state.inplace_write("clip_grad_norm_")
            g._data *= g._data.dtype.type(coef)
            g._vc[0] += 1
    return Tensor._make(np.asarray(total, dtype=grads[0]._data.dtype))


_CLAMP = _core.EW_OPS["clamp"]


def clip_grad_value_(parameters: Any, clip_value: float, foreach: Any = None) -> None:
    """Clamps every gradient into [-clip_value, clip_value] in place (NaN stays NaN).

    >>> w = gd.zeros(3, requires_grad=True)
    >>> (w * gd.tensor([-5.0, 0.5, 5.0])).sum().backward()
    >>> nn.utils.clip_grad_value_([w], 1.0)
    >>> w.grad
    tensor([-1.0000,  0.5000,  1.0000])
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    if isinstance(clip_value, bool) or not isinstance(clip_value, (int, float, np.integer,
                                                                   np.floating)):
        raise TypeError(f"clip_grad_value_: clip_value must be a real number, got "
                        f"{type(clip_value).__name__}")
    c = float(clip_value)
    if not c >= 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for p in params:
        g = p.grad
        if g is None:
            continue
        a = g._data
        if a.dtype in (np.float32, np.float64) and a.dtype.isnative and a.flags.aligned and \
                a.flags.writeable:
            # the elementwise kernel in place: a step recorded by gd.compile repeats it
            _core.elementwise(_CLAMP, a, -c, c, a)
            g._vc[0] += 1
        else:  # (a read-only gradient is replaced, as zero_grad does)
            _compile_state.inplace_write("clip_grad_value_")
            p.grad = Tensor._make(np.clip(a, a.dtype.type(-c), a.dtype.type(c)))


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All the parameters flattened and concatenated into one 1-d tensor, in order.

    >>> layer = nn.Linear(3, 2)
    >>> tuple(nn.utils.parameters_to_vector(layer.parameters()).shape)
    (8,)
    """
    from graddesc.functional.shape import cat

    return cat([p.reshape(-1) for p in parameters])


__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector"]
