"""Elementwise nonlinearities backed by the C++ kernels (src/cpp/activation.cpp).

`Activation` runs y = f(x) in C++ and saves x, or y where f' is cheaper from it (tanh, sigmoid,
exp). Its backward is `ActivationGrad(g, s)` = g * f'(s), again a C++ kernel and again a Function,
whose own backward uses f'' (written with differentiable ops), so derivatives of any order work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, call_kernel
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function
from graddesc.functional import elementwise as ew

_SAVES_OUTPUT = frozenset(_core.ACTIVATIONS_SAVING_OUTPUT)
# relu' is 1 exactly where relu(x) > 0, so relu saves its output and hands it to the kernel in
# place of x: then relu_ can overwrite its input without invalidating the saved tensor.
_SAVES_OUTPUT_AS_X = frozenset({"relu"})
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _label(name: str, suffix: str) -> str:
    """The node's display name: 'ReluBackward' for relu, 'GeluTanhGradBackward', ..."""
    label = _LABELS.get((name, suffix))
    if label is None:
        label = _LABELS[(name, suffix)] = name.title().replace("_", "") + suffix
    return label


_LABELS: dict = {}


def _float_array(x: Tensor, op: str) -> np.ndarray:
    a = x._data
    if a.dtype.kind != "f":
        raise TypeError(f"{op}: expected a float32 or float64 tensor, got {x.dtype}")
    return a


class Activation(Function):
    @staticmethod
    def forward(ctx, x, name, alpha):
        y = Tensor._make(call_kernel(_core.activation_forward, name, _float_array(x, name),
                                     alpha))
        ctx.act, ctx.alpha = name, alpha
        ctx._label = _label(name, "Backward")
        ctx.save_for_backward(y if name in _SAVES_OUTPUT or name in _SAVES_OUTPUT_AS_X else x)
        return y

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        if not grad_mode.is_grad_enabled():  # no graph of the gradient: the kernel alone
            return Tensor._make(_activation_grad(g, s, ctx.act, ctx.alpha)), None, None
        return ActivationGrad.apply(g, s, ctx.act, ctx.alpha), None, None


def _activation_grad(g: Tensor, s: Tensor, name: str, alpha: float) -> np.ndarray:
    """g * f'(s) from the C++ kernel, s the saved x or y."""
    sa = _float_array(s, name)
    ga = g._data
    if ga.dtype != sa.dtype:
        ga = ga.astype(sa.dtype)
    if name in _SAVES_OUTPUT:  # (name, dy, x, y, alpha)
        return call_kernel(_core.activation_backward, name, ga, None, sa, alpha)
    return call_kernel(_core.activation_backward, name, ga, sa, None, alpha)


class ActivationGrad(Function):
    """dx = g * f'(s), s the saved x or y. Backward: d/dg = f'(s), d/ds = g f''(s)."""

    @staticmethod
    def forward(ctx, g, s, name, alpha):
        dx = _activation_grad(g, s, name, alpha)
        ctx.act, ctx.alpha = name, alpha
        ctx._label = _label(name, "GradBackward")
        ctx.save_for_backward(g, s)
        return Tensor._make(dx)

    @staticmethod
    def backward(ctx, gg):
        g, s = ctx.saved_tensors
        name = ctx.act
        dg = ActivationGrad.apply(gg, s, name, ctx.alpha) if ctx.needs_input_grad[0] else None
        ds = None
        if ctx.needs_input_grad[1]:
            second = _second_derivative(name, s, ctx.alpha)
            ds = None if second is None else gg * g * second
        return dg, ds, None, None


def _second_derivative(name: str, s: Tensor, alpha: float) -> Any:
    """d/ds of f'(s) where f' is expressed in the saved s (x, or y for tanh/sigmoid/exp)."""
    if name in ("relu", "leaky_relu"):
        # piecewise linear: f'' = 0 almost everywhere. A zero tensor rather than None, so that
        # grad(grad(leaky_relu(x)), x) is zeros, as in PyTorch, not "x was not used".
        return Tensor._make(np.zeros_like(s._data))
    if name == "tanh":  # f' = 1 - y^2
        return -2.0 * s
    if name == "sigmoid":  # f' = y (1 - y)
        return 1.0 - 2.0 * s
    if name == "exp":  # f' = y
        return Tensor._make(np.ones_like(s._data))
    if name == "log":  # f' = 1 / x
        return -1.0 / (s * s)
    if name == "softplus":  # f' = sigmoid(x) below the threshold alpha, 1 above it
        p = sigmoid(s)
        # f' is constant above the threshold; PyTorch's softplus_double_backward keeps x < t
        below = Tensor._make((s._data < alpha).astype(s._data.dtype))
        return p * (1.0 - p) * below
    if name == "gelu":  # f' = Phi + x phi  ->  f'' = phi (2 - x^2)
        phi = exp(-0.5 * s * s) * _INV_SQRT_2PI
        return phi * (2.0 - s * s)
    if name == "gelu_tanh":
        u1 = _SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * s * s)
        u2 = _SQRT_2_OVER_PI * 6.0 * 0.044715 * s
        t = tanh(_SQRT_2_OVER_PI * (s + 0.044715 * s * s * s))
        return (1.0 - t * t) * (u1 - s * t * u1 * u1 + 0.5 * s * u2)
    raise ValueError(f"unknown activation {name!r}")


def _apply(x: Any, name: str, alpha: float = 0.01) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
    return Activation.apply(x, name, alpha)


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise.

    >>> gd.relu(gd.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return _apply(x, "relu")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x for x > 0, negative_slope * x otherwise.

    >>> gd.leaky_relu(gd.tensor([-2.0, 1.0]), 0.5).tolist()
    [-1.0, 1.0]
    """
    return _apply(x, "leaky_relu", float(negative_slope))


def tanh(x: Tensor) -> Tensor:
    """The hyperbolic tangent elementwise (C++ kernel); its derivative is 1 - tanh(x)**2.

    >>> gd.tanh(gd.tensor([0.0])).tolist()
    [0.0]
    """
    return _apply(x, "tanh")


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), stable for large |x|.

    >>> gd.sigmoid(gd.tensor([0.0])).tolist()
    [0.5]
    """
    return _apply(x, "sigmoid")


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, stable for large |x|; x itself where beta x > threshold
    (PyTorch's definition: there the gradient is exactly 1).

    >>> round(gd.softplus(gd.tensor([0.0])).item(), 4)
    0.6931
    """
    if beta == 1.0:
        return _apply(x, "softplus", float(threshold))
    # The kernel without a threshold, then x itself above it: (beta x) / beta would round, and
    # overflow to inf for a large finite x.
    z = x * beta
    y = _apply(z, "softplus", math.inf) / beta
    return ew.where(z > threshold, x, y)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (approximate='none') or PyTorch's tanh approximation (approximate='tanh').

    >>> gd.gelu(gd.tensor([0.0])).tolist()
    [0.0]
    """
    if approximate == "none":
        return _apply(x, "gelu")
    if approximate == "tanh":
        return _apply(x, "gelu_tanh")
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def exp(x: Tensor) -> Tensor:
    """e**x elementwise (C++ kernel).

    >>> gd.exp(gd.tensor([0.0])).tolist()
    [1.0]
    """
    return _apply(x, "exp")


def log(x: Tensor) -> Tensor:
    """Natural logarithm elementwise (C++ kernel).

    >>> gd.log(gd.tensor([1.0])).tolist()
    [0.0]
    """
    return _apply(x, "log")
