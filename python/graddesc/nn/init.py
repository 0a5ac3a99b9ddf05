"""Parameter initialisation in place (under no_grad), with PyTorch's formulas."""

from __future__ import annotations

import math
from typing import Any, Optional

from graddesc._tensor import Tensor
from graddesc.autograd.grad_mode import no_grad


def _check(t: Any, fn: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: expected a Tensor, got {type(t).__name__}")


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    >>> round(nn.init.calculate_gain("relu"), 4)
    1.4142
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fans(t: Tensor) -> tuple:
    if t.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (got shape {tuple(t.shape)})")
    receptive = 1
    for s in t.shape[2:]:
        receptive *= s
    return t.shape[1] * receptive, t.shape[0] * receptive


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
    """Fills `t` in place with samples of U(a, b); returns `t`.

    >>> w = nn.init.uniform_(gd.empty(1000), -1.0, 1.0)
    >>> bool((w >= -1).all() and (w < 1).all())
    True
    """
    _check(t, "uniform_")
    with no_grad():
        return t.uniform_(a, b, generator=generator)


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
    """Fills `t` in place with samples of N(mean, std**2); returns `t`.

    >>> w = nn.init.normal_(gd.empty(10000), mean=3.0, std=0.1)
    >>> round(w.mean().item(), 1)
    3.0
    """
    _check(t, "normal_")
    with no_grad():
        return t.normal_(mean, std, generator=generator)


def constant_(t: Tensor, val: float) -> Tensor:
    """Fills `t` in place with `val` (no gradient is recorded); returns `t`.

    >>> nn.init.constant_(gd.empty(3), 0.5).tolist()
    [0.5, 0.5, 0.5]
    """
    _check(t, "constant_")
    with no_grad():
        return t.fill_(val)


def zeros_(t: Tensor) -> Tensor:
    """Fills `t` in place with zeros; returns `t`.

    >>> nn.init.zeros_(gd.ones(2)).tolist()
    [0.0, 0.0]
    """
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    """Fills `t` in place with ones; returns `t`.

    >>> nn.init.ones_(gd.zeros(2)).tolist()
    [1.0, 1.0]
    """
    return constant_(t, 1.0)


def eye_(t: Tensor) -> Tensor:
    """Fills the 2-d tensor `t` in place with the identity (ones on the diagonal); returns `t`.

    >>> nn.init.eye_(gd.empty(2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    import numpy as np

    _check(t, "eye_")
    if t.ndim != 2:
        raise ValueError("eye_: only tensors with 2 dimensions are supported")
    with no_grad():
        return t.copy_(Tensor._make(np.eye(*t.shape, dtype=t._data.dtype)))


def xavier_uniform_(t: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).

    >>> w = nn.init.xavier_uniform_(gd.empty(30, 20))
    >>> bool(w.abs().max() <= (6 / 50) ** 0.5)
    True
    """
    fan_in, fan_out = _fans(t)
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(t, -a, a, generator)


def xavier_normal_(t: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out)), in place; returns `t`.

    >>> w = nn.init.xavier_normal_(gd.empty(200, 300))
    >>> round(w.std().item(), 2)
    0.06
    """
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator: Any = None) -> Tensor:
    """U(-b, b) with b = gain * sqrt(3 / fan).

    >>> w = nn.init.kaiming_uniform_(gd.empty(30, 20), nonlinearity="relu")
    >>> bool(w.abs().max() <= (6 / 20) ** 0.5)
    True
    """
    fan_in, fan_out = _fans(t)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_uniform_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        return t
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator: Any = None) -> Tensor:
    """N(0, std**2) with std = gain / sqrt(fan) (fan_in or fan_out by `mode`), in place;
    returns `t`.

    >>> w = nn.init.kaiming_normal_(gd.empty(100, 200), nonlinearity="relu")
    >>> round(w.std().item(), 1)
    0.1
    """
    fan_in, fan_out = _fans(t)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        return t
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)
