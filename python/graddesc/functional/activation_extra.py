"""More of PyTorch's activations (F.relu6, hardtanh, elu, selu, celu, prelu, glu, logsigmoid,
softsign, hardswish, hardsigmoid, mish, tanhshrink, softshrink, hardshrink, softmin), each a
composition of the C++ kernels (elementwise arithmetic, comparisons, where, clamp, exp, log,
tanh, sigmoid, softplus, softmax), so a compiled step (gd.compile) records and replays them.

Where PyTorch's gradient differs from what the composition would give (the masks of hardtanh
and hardsigmoid are strict at the boundaries, elu's gradient is alpha * exp(x)), a small
Function computes the forward with kernel ops and returns PyTorch's gradient, written with
differentiable kernel ops (so higher derivatives work too).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode
from graddesc.autograd.function import Function
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional import loss as fl
from graddesc.functional import shape as fs
from graddesc.functional.inplace import check_inplace, inplace_result

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_ONE_SIXTH = float(np.float32(1.0) / np.float32(6.0))  # PyTorch's constant (1.0f / 6.0f)


class _Pointwise(Function):
    """y = fwd(x) with kernel ops; dx = bwd(g, x) with differentiable kernel ops."""

    @staticmethod
    def forward(ctx, x, fwd, bwd, label):
        with grad_mode.no_grad():
            y = fwd(x.detach())
        ctx.bwd = bwd
        ctx._label = label
        ctx.save_for_backward(x)
        return Tensor._make(y._data)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        dx = ctx.bwd(g, x)
        if grad_mode.is_grad_enabled() and x.requires_grad:
            # (a graph of the gradient) dx as a node of x with a zero derivative: for the
            # piecewise-linear f (hardtanh, hardsigmoid, softshrink) f'' = 0, and
            # grad(grad(f(x)), x) is zeros, as in PyTorch, not "x was not used"
            dx = ew.where(Tensor._make(np.zeros(dx._data.shape, dtype=bool)), x, dx)
        return dx, None, None, None


def _float_input(x: Any, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: argument 'input' must be a Tensor, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: argument 'input' must be a float32 or float64 tensor, got "
                        f"{x.dtype}")
    return x


def _number(v: Any, name: str, op: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: argument '{name}' must be a number, got {type(v).__name__}")
    return float(v)


def _flag(v: Any, name: str, op: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: argument '{name}' must be a bool, got {type(v).__name__}")
    return bool(v)


def _run(x: Tensor, f: Callable, inplace: bool, op: str) -> Tensor:
    """f(x), or with inplace=True f's result written into x (x takes its place on the graph;
    f sees a copy of x when the graph needs the old value, as clamp_ does)."""
    if not inplace:
        return f(x)
    check_inplace(x, op + "_")
    if x.requires_grad and grad_mode.is_grad_enabled():
        return inplace_result(x, f(fs.clone(x)), op + "_")
    return inplace_result(x, f(x.detach()), op + "_")


def _dt(x: Tensor, v: float) -> float:
    """v rounded to x's dtype (PyTorch's kernels convert their coefficients to it first)."""
    return float(x._data.dtype.type(v))


# ---- hardtanh, relu6 -------------------------------------------------------------------------

def _hardtanh(x: Tensor, lo: float, hi: float) -> Tensor:
    def fwd(t: Tensor) -> Tensor:
        return ew.clamp(t, lo, hi)

    def bwd(g: Tensor, t: Tensor) -> Tensor:  # PyTorch: 0 at and beyond the bounds
        return ew.where(t > lo, ew.where(t < hi, g, 0.0), 0.0)

    return _Pointwise.apply(x, fwd, bwd, "HardtanhBackward")


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,  # noqa: A002
             inplace: bool = False) -> Tensor:
    """input clamped to [min_val, max_val]; the gradient passes strictly inside (PyTorch's).

    >>> F.hardtanh(gd.tensor([-2.0, 0.5, 3.0]))
    tensor([-1.0000,  0.5000,  1.0000])
    """
    op = "hardtanh"
    x = _float_input(input, op)
    lo, hi = _number(min_val, "min_val", op), _number(max_val, "max_val", op)
    if lo > hi:
        raise ValueError(f"{op}: min_val ({lo}) cannot be greater than max_val ({hi})")
    return _run(x, lambda t: _hardtanh(t, lo, hi), _flag(inplace, "inplace", op), op)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """min(max(input, 0), 6) (hardtanh(input, 0, 6), as PyTorch).

    >>> F.relu6(gd.tensor([-1.0, 3.0, 8.0])).tolist()
    [0.0, 3.0, 6.0]
    """
    op = "relu6"
    x = _float_input(input, op)
    return _run(x, lambda t: _hardtanh(t, 0.0, 6.0), _flag(inplace, "inplace", op), op)


# ---- elu, selu, celu -------------------------------------------------------------------------

def _expm1(t: Tensor) -> Tensor:
    """exp(t) - 1 from kernels, accurate near 0: Kahan's (u - 1) t / log(u), u = exp(t), for
    |t| < 0.5 (t itself where u rounds to 1); u - 1 elsewhere (no cancellation there)."""
    u = act.exp(t)
    r = ew.where(ew.eq(u, 1.0), t, (u - 1.0) * t / act.log(u))
    return ew.where(ew.lt(ew.abs(t), 0.5), r, u - 1.0)


def _elu(x: Tensor, alpha: float, scale: float, input_scale: float, label: str,
         grad_input_scale: Optional[float] = None) -> Tensor:
    """PyTorch's elu kernel: x <= 0: expm1(x * input_scale) * (alpha * scale), else x * scale;
    gradient g * input_scale * (alpha * scale) * exp(x * input_scale), or g * scale
    (grad_input_scale: the input_scale PyTorch's backward uses, when it differs)."""
    neg, pos, ins = _dt(x, _dt(x, alpha) * _dt(x, scale)), _dt(x, scale), _dt(x, input_scale)
    gins = ins if grad_input_scale is None else _dt(x, grad_input_scale)

    def fwd(t: Tensor) -> Tensor:
        z = t if ins == 1.0 else t * ins
        return ew.where(ew.le(t, 0.0), _expm1(z) * neg, t * pos)

    def bwd(g: Tensor, t: Tensor) -> Tensor:
        z = t if gins == 1.0 else t * gins
        return ew.where(ew.le(t, 0.0), g * gins * neg * act.exp(z), g * pos)

    return _Pointwise.apply(x, fwd, bwd, label)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """input where input > 0, alpha * (exp(input) - 1) elsewhere (expm1, as PyTorch).

    >>> F.elu(gd.tensor([-1.0, 2.0], dtype=gd.float64)).tolist()
    [-0.6321205588285577, 2.0]
    """
    op = "elu"
    x = _float_input(input, op)
    a = _number(alpha, "alpha", op)
    return _run(x, lambda t: _elu(t, a, 1.0, 1.0, "EluBackward"),
                _flag(inplace, "inplace", op), op)


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """scale * elu(input, alpha) with PyTorch's constants (alpha 1.6733, scale 1.0507).

    >>> round(F.selu(gd.tensor([1.0])).item(), 4)
    1.0507
    """
    op = "selu"
    x = _float_input(input, op)
    return _run(x, lambda t: _elu(t, _SELU_ALPHA, _SELU_SCALE, 1.0, "EluBackward"),
                _flag(inplace, "inplace", op), op)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)).

    >>> F.celu(gd.tensor([-2.0, 1.0], dtype=gd.float64), alpha=2.0).tolist()
    [-1.2642411176571153, 1.0]
    """
    op = "celu"
    x = _float_input(input, op)
    a = _number(alpha, "alpha", op)
    if a == 0.0:
        raise ValueError(f"{op}: alpha must not be 0 (the input is divided by it)")
    # PyTorch's celu backward divides by alpha rounded to float32 (1.0 / alpha.toFloat())
    ga = 1.0 / float(np.float32(a))
    return _run(x, lambda t: _elu(t, a, 1.0, 1.0 / a, "EluBackward", ga),
                _flag(inplace, "inplace", op), op)


# ---- hardsigmoid, hardswish ------------------------------------------------------------------

def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """min(max(x + 3, 0), 6) / 6; the gradient 1/6 strictly inside (-3, 3) (PyTorch's).

    >>> F.hardsigmoid(gd.tensor([-4.0, 0.0, 4.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    op = "hardsigmoid"
    x = _float_input(input, op)

    def fwd(t: Tensor) -> Tensor:
        return ew.clamp(t + 3.0, 0.0, 6.0) / 6.0

    def bwd(g: Tensor, t: Tensor) -> Tensor:
        return ew.where(t > -3.0, ew.where(t < 3.0, g * _ONE_SIXTH, 0.0), 0.0)

    return _run(x, lambda t: _Pointwise.apply(t, fwd, bwd, "HardsigmoidBackward"),
                _flag(inplace, "inplace", op), op)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """x * min(max(x + 3, 0), 6) / 6 (PyTorch's forward and gradient).

    >>> F.hardswish(gd.tensor([-4.0, 1.0, 4.0])).tolist()
    [-0.0, 0.6666666865348816, 4.0]
    """
    op = "hardswish"
    x = _float_input(input, op)

    def fwd(t: Tensor) -> Tensor:
        return t * ew.clamp(t + 3.0, 0.0, 6.0) / 6.0

    def bwd(g: Tensor, t: Tensor) -> Tensor:
        return ew.where(t <= -3.0, 0.0, ew.where(t < 3.0, g * (t / 3.0 + 0.5), g))

    return _run(x, lambda t: _Pointwise.apply(t, fwd, bwd, "HardswishBackward"),
                _flag(inplace, "inplace", op), op)


# ---- shrinks ---------------------------------------------------------------------------------

def _lambd(lambd: Any, op: str) -> float:
    v = _number(lambd, "lambd", op)
    if not v >= 0:
        raise ValueError(f"{op}: lambd must be non-negative, got {lambd!r}")
    return v


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    """x - lambd where x > lambd, x + lambd where x < -lambd, 0 elsewhere.

    >>> F.softshrink(gd.tensor([-2.0, 0.25, 1.5])).tolist()
    [-1.5, 0.0, 1.0]
    """
    op = "softshrink"
    x = _float_input(input, op)
    lam = _lambd(lambd, op)

    def fwd(t: Tensor) -> Tensor:
        return ew.where(t > lam, t - lam, ew.where(t < -lam, t + lam, t * 0.0))

    def bwd(g: Tensor, t: Tensor) -> Tensor:
        return ew.where(t >= -lam, ew.where(t <= lam, 0.0, g), g)

    return _Pointwise.apply(x, fwd, bwd, "SoftshrinkBackward")


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    """x where |x| > lambd, 0 elsewhere.

    >>> F.hardshrink(gd.tensor([-2.0, 0.25, 1.5])).tolist()
    [-2.0, 0.0, 1.5]
    """
    op = "hardshrink"
    x = _float_input(input, op)
    lam = _lambd(lambd, op)
    return ew.where(x >= -lam, ew.where(x <= lam, 0.0, x), x)


def tanhshrink(input: Tensor) -> Tensor:  # noqa: A002
    """x - tanh(x).

    >>> F.tanhshrink(gd.tensor([0.0])).tolist()
    [0.0]
    """
    x = _float_input(input, "tanhshrink")
    return x - act.tanh(x)


# ---- smooth ones -----------------------------------------------------------------------------

def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|.

    >>> round(F.logsigmoid(gd.tensor([0.0])).item(), 4)
    -0.6931
    """
    x = _float_input(input, "logsigmoid")
    return -act.softplus(-x, 1.0, math.inf)


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    """x / (1 + |x|).

    >>> F.softsign(gd.tensor([-3.0, 1.0])).tolist()
    [-0.75, 0.5]
    """
    x = _float_input(input, "softsign")
    return x / (ew.abs(x) + 1.0)


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """x * tanh(softplus(x)).

    >>> F.mish(gd.tensor([0.0])).tolist()
    [0.0]
    """
    op = "mish"
    x = _float_input(input, op)
    return _run(x, lambda t: t * act.tanh(act.softplus(t, 1.0, math.inf)),
                _flag(inplace, "inplace", op), op)


def softmin(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3,  # noqa: A002
            dtype: Any = None) -> Tensor:
    """softmax(-input, dim).

    >>> F.softmin(gd.tensor([[0.0, 0.0]]), dim=1).tolist()
    [[0.5, 0.5]]
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"softmin: argument 'input' must be a Tensor, got "
                        f"{type(input).__name__}")
    if dtype is not None:
        input = input.to(dtype)
    return fl.softmax(-input, dim)


def glu(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    """a * sigmoid(b), a and b the two halves of input along dim.

    >>> F.glu(gd.tensor([[1.0, 2.0, 0.0, 0.0]])).tolist()
    [[0.5, 1.0]]
    """
    op = "glu"
    x = _float_input(input, op)
    if x.ndim == 0:
        raise ValueError(f"{op}: glu does not support scalars (0-d input)")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: argument 'dim' must be an int, got {type(dim).__name__}")
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for a {x.ndim}-d input")
    d = int(dim) % x.ndim
    n = x.shape[d]
    if n % 2:
        raise ValueError(f"{op}: halving dimension must be even, but dimension {d} is size {n}")
    a, b = x.chunk(2, d) if n else (x, x)
    return a * act.sigmoid(b)


def prelu(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """input where input > 0, weight * input elsewhere; weight has 1 element or one per
    channel (dimension 1; a 0-d or 1-d input has one channel, as in PyTorch).

    >>> F.prelu(gd.tensor([[-2.0, 3.0]]), gd.tensor([0.25])).tolist()
    [[-0.5, 3.0]]
    """
    op = "prelu"
    x = _float_input(input, op)
    if not isinstance(weight, Tensor):
        raise TypeError(f"{op}: argument 'weight' must be a Tensor, got "
                        f"{type(weight).__name__}")
    if weight._data.dtype != x._data.dtype:
        raise TypeError(f"{op}: argument 'weight' has dtype {weight.dtype} but input has "
                        f"dtype {x.dtype}: they must match")
    if weight.ndim > 1:
        raise ValueError(f"{op}: argument 'weight' must be 0-d or 1-d, got shape "
                         f"{tuple(weight.shape)}")
    n = weight.numel()
    w = weight
    if n != 1:
        c = x.shape[1] if x.ndim >= 2 else 1  # PyTorch: a 1-d input has one channel
        if n != c:
            raise ValueError(f"{op}: argument 'weight' has {n} elements, which must be 1 or "
                             f"the number of channels {c} of input of shape "
                             f"{tuple(x.shape)}")
        if x.ndim >= 2:
            w = weight.reshape((1, n) + (1,) * (x.ndim - 2))
    elif weight.ndim == 1 and x.ndim == 0:
        w = weight.reshape(())
    return ew.where(x > 0.0, x, w * x)


__all__ = ["celu", "elu", "glu", "hardshrink", "hardsigmoid", "hardswish", "hardtanh",
           "logsigmoid", "mish", "prelu", "relu6", "selu", "softmin", "softshrink", "softsign",
           "tanhshrink"]
