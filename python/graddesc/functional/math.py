"""Elementwise math and reductions beyond the C++ families: sin, cos, square, floor, ceil,
round, prod, norm, all, any. NumPy computes the forward (except floor, ceil and round to whole
numbers of a float tensor: a kernel, which gd.compile records); each backward is written with
Tensor ops, so it is itself differentiable (create_graph=True gives second derivatives).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from graddesc import _core
from graddesc._tensor import Tensor, call_kernel
from graddesc.autograd.function import Function
from graddesc.autograd.grad_mode import is_grad_enabled
from graddesc.functional import elementwise as ew
from graddesc.functional.reduce import _dims, _is_kernel_float, _reduce

_KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_tensor(x: Any, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(x).__name__}")


def _check_float(x: Any, op: str) -> None:
    _check_tensor(x, op)
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating point tensor, got {x.dtype}")


def _check_keepdim(keepdim: Any, op: str) -> None:
    if not isinstance(keepdim, (bool, np.bool_)):
        raise TypeError(f"{op}: keepdim must be a bool, got {type(keepdim).__name__}")


def _keep(g: Tensor, in_shape: tuple, dims: Optional[tuple], keepdim: bool) -> Tensor:
    """g (the reduced shape) with the reduced dims back as size 1, ready to broadcast."""
    if keepdim or not in_shape:
        return g
    if dims is None:
        return g.reshape(*([1] * len(in_shape)))
    shape = [1 if i in dims else s for i, s in enumerate(in_shape)]
    return g.reshape(*shape)


# ---- sin, cos --------------------------------------------------------------------------------
class Sin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ew._kernel("sin", x._data)  # the C++ elementwise kernel: gd.compile records it

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * cos(x)


class Cos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ew._kernel("cos", x._data)  # the C++ elementwise kernel: gd.compile records it

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -(g * sin(x))


def sin(x: Tensor) -> Tensor:
    """Elementwise sine.

    >>> gd.sin(gd.tensor([0.0])).tolist()
    [0.0]
    """
    _check_float(x, "sin")
    return Sin.apply(x)


def cos(x: Tensor) -> Tensor:
    """Elementwise cosine.

    >>> gd.cos(gd.tensor([0.0])).tolist()
    [1.0]
    """
    _check_float(x, "cos")
    return Cos.apply(x)


def square(x: Tensor) -> Tensor:
    """x * x (differentiable through mul).

    >>> gd.square(gd.tensor([3.0])).tolist()
    [9.0]
    """
    _check_tensor(x, "square")
    return ew.mul(x, x)


# ---- piecewise constant: floor, ceil, round --------------------------------------------------
class _Step(Function):
    """A piecewise-constant function: its derivative is 0 wherever it exists (PyTorch's
    convention also at the jumps)."""

    @staticmethod
    def forward(ctx, x, fn):
        if isinstance(fn, str):  # round, floor, ceil of a float array: the kernel (recorded)
            return Tensor._make(call_kernel(_core.int_unary, fn, x._data))
        return Tensor._make(np.asarray(fn(x._data)))

    @staticmethod
    def backward(ctx, g):
        return g * 0.0, None


def floor(x: Tensor) -> Tensor:
    """Elementwise floor (gradient 0).

    >>> gd.floor(gd.tensor([1.5, -1.5])).tolist()
    [1.0, -2.0]
    """
    _check_tensor(x, "floor")
    if x._data.dtype.kind != "f":
        return x.clone()
    return _Step.apply(x, "floor" if x._data.dtype in _KERNEL_FLOATS else np.floor)


def ceil(x: Tensor) -> Tensor:
    """Elementwise ceiling (gradient 0).

    >>> gd.ceil(gd.tensor([1.5, -1.5])).tolist()
    [2.0, -1.0]
    """
    _check_tensor(x, "ceil")
    if x._data.dtype.kind != "f":
        return x.clone()
    return _Step.apply(x, "ceil" if x._data.dtype in _KERNEL_FLOATS else np.ceil)


def round(x: Tensor, decimals: int = 0) -> Tensor:  # noqa: A001
    """Rounds half to even (as PyTorch and NumPy), to `decimals` decimal places (gradient 0).

    >>> gd.round(gd.tensor([0.5, 1.5, 2.4])).tolist()  # halves to even
    [0.0, 2.0, 2.0]
    """
    _check_tensor(x, "round")
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise TypeError(f"round: decimals must be an int, got {type(decimals).__name__}")
    if x._data.dtype.kind != "f":
        return x.clone()
    d = int(decimals)
    if d == 0 and x._data.dtype in _KERNEL_FLOATS:
        return _Step.apply(x, "round")
    return _Step.apply(x, lambda a: np.round(a, d))


# ---- all, any ----------------------------------------------------------------------------------
def _bool_reduce(x: Tensor, dim: Any, keepdim: bool, fn: Any, op: str) -> Tensor:
    _check_tensor(x, op)
    _check_keepdim(keepdim, op)
    dims = _dims(dim, x.ndim, op)
    a = x._data != 0
    out = fn(a, axis=dims, keepdims=bool(keepdim)) if x.ndim else fn(a)
    return Tensor._make(np.asarray(out, dtype=np.bool_))


def all(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """True where every element (along dim) is nonzero; a bool tensor.

    >>> gd.all(gd.tensor([True, False])).item()
    False
    """
    return _bool_reduce(x, dim, keepdim, np.all, "all")


def any(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """True where some element (along dim) is nonzero; a bool tensor.

    >>> gd.any(gd.tensor([True, False])).item()
    True
    """
    return _bool_reduce(x, dim, keepdim, np.any, "any")


# ---- prod ----------------------------------------------------------------------------------------
def _exclusive_prod(a: np.ndarray, axis: int) -> np.ndarray:
    """Per element, the product of the other elements along axis (exact with zeros: prefix
    products times suffix products, no division)."""
    n = a.shape[axis]
    ones_shape = list(a.shape)
    ones_shape[axis] = 1
    one = np.ones(ones_shape, a.dtype)
    head = np.cumprod(np.concatenate([one, np.take(a, range(n - 1), axis)], axis), axis)
    rev = np.flip(a, axis)
    tail = np.cumprod(np.concatenate([one, np.take(rev, range(n - 1), axis)], axis), axis)
    return head * np.flip(tail, axis)


class Prod(Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim):
        a = x._data
        ctx.dims = None if dim is None else (dim,)
        ctx.keepdim = keepdim
        ctx.in_shape = a.shape
        ctx.save_for_backward(x)
        if dim is None:
            return Tensor._make(np.asarray(np.prod(a), dtype=a.dtype))
        return Tensor._make(np.asarray(np.prod(a, axis=dim, keepdims=keepdim), dtype=a.dtype))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gk = _keep(g, ctx.in_shape, ctx.dims, ctx.keepdim)
        a = x._data
        if not np.any(a == 0):
            # d prod / d x_i = prod / x_i, written with Tensor ops so it differentiates again
            y = prod(x) if ctx.dims is None else prod(x, ctx.dims[0], keepdim=True)
            return gk * y / x, None, None
        if is_grad_enabled():
            raise RuntimeError("prod: double backward (create_graph=True) through a product "
                               "with zero entries is not supported")
        if ctx.dims is None:
            others = _exclusive_prod(a.reshape(-1), 0).reshape(a.shape)
        else:
            others = _exclusive_prod(a, ctx.dims[0])
        return gk * Tensor._make(others), None, None


def prod(x: Tensor, dim: Optional[int] = None, keepdim: bool = False,
         dtype: Any = None) -> Tensor:
    """The product of all elements, or along one dim.

    >>> gd.prod(gd.tensor([2.0, 3.0, 4.0])).item()
    24.0
    """
    _check_tensor(x, "prod")
    _check_keepdim(keepdim, "prod")
    if dtype is not None:
        x = x.to(dtype)
    if dim is not None:
        if isinstance(dim, (tuple, list)):
            raise TypeError("prod: dim must be a single int (PyTorch's prod reduces one dim)")
        dims = _dims(dim, x.ndim, "prod")
        dim = None if dims is None else dims[0]
        if dim is None:  # a 0-d tensor: its one element
            return x.clone()
    if x._data.dtype.kind != "f":
        if x.requires_grad:
            raise TypeError("prod: only floating point tensors are differentiable")
        a = x._data.astype(np.int64) if x._data.dtype.kind == "b" else x._data
        return Tensor._make(np.asarray(np.prod(a, axis=dim, keepdims=bool(keepdim)
                                               if dim is not None else False)))
    return Prod.apply(x, dim, bool(keepdim))


# ---- norm ------------------------------------------------------------------------------------
def _vector_norm_np(a: np.ndarray, p: float, dims: Optional[tuple]) -> np.ndarray:
    """||a||_p over dims (None: all), keeping the dims (size 1)."""
    ax = dims
    b = np.abs(a)
    if b.size == 0:
        if p == math.inf:
            raise RuntimeError("norm: the infinity norm of an empty tensor is undefined")
        return np.zeros([1 if dims is None or i in dims else s
                         for i, s in enumerate(a.shape)], a.dtype)
    if p == math.inf:
        return np.max(b, axis=ax, keepdims=True)
    if p == -math.inf:
        return np.min(b, axis=ax, keepdims=True)
    if p == 0:
        return np.sum(b != 0, axis=ax, keepdims=True).astype(a.dtype)
    if p == 1:
        return np.sum(b, axis=ax, keepdims=True)
    if p == 2:
        return np.sqrt(np.sum(b * b, axis=ax, keepdims=True))
    with np.errstate(divide="ignore", over="ignore"):
        return np.sum(b ** p, axis=ax, keepdims=True) ** (1.0 / p)


class Norm(Function):
    """r = (sum |x|^p)^(1/p) over dims. dr/dx = sign(x) |x|^(p-1) / r^(p-1): x / r for p=2,
    sign(x) for p=1; for p=+-inf the gradient goes to the extreme entries, split evenly among
    ties. Where r = 0 the gradient is 0 (PyTorch's subgradient)."""

    @staticmethod
    def forward(ctx, x, p, dims, keepdim):
        ctx.p, ctx.dims, ctx.keepdim = p, dims, keepdim
        ctx.save_for_backward(x)
        if _is_kernel_float(x._data) and x._data.size:  # the reduce kernel: gd.compile records it
            return Tensor._make(_reduce("norm", x._data, dims, keepdim, p))
        r = _vector_norm_np(x._data, p, dims)
        out = r if keepdim else (r.reshape(()) if dims is None else np.squeeze(r, axis=dims))
        return Tensor._make(np.ascontiguousarray(out))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        p, dims = ctx.p, ctx.dims
        gk = _keep(g, tuple(x.shape), dims, ctx.keepdim)
        if p == 0:
            return gk * x * 0.0, None, None, None
        if p == 1:
            return gk * ew.sign(x), None, None, None
        # r recomputed with Norm itself, so this backward differentiates again
        r = Norm.apply(x, p, dims, True)
        zero = r == 0
        r_safe = ew.where(zero, 1.0, r)
        if p in (math.inf, -math.inf):
            hit = (ew.abs(x) == r).to(x.dtype)
            count = hit.sum(dim=dims, keepdim=True) if dims is not None else hit.sum()
            return gk * ew.sign(x) * hit / count, None, None, None
        if p == 2:
            dx = x / r_safe
        else:
            dx = ew.sign(x) * ew.abs(x) ** (p - 1) / r_safe ** (p - 1)
        return ew.where(zero, 0.0, gk * dx), None, None, None


def norm(x: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False,
         dtype: Any = None) -> Tensor:
    """The vector p-norm of x (all elements, or over dim): p a number, inf, -inf, or 'fro'
    (the 2-norm of the elements, as torch.norm). 'nuc' is not supported.

    >>> gd.norm(gd.tensor([3.0, 4.0])).item()
    5.0
    """
    _check_float(x, "norm")
    _check_keepdim(keepdim, "norm")
    if dtype is not None:
        x = x.to(dtype)
    if isinstance(p, str):
        if p != "fro":
            raise ValueError(f"norm: p must be a number, inf, -inf or 'fro', got {p!r} "
                             "(matrix norms such as 'nuc' are not supported)")
        p = 2.0
    elif p is None:
        p = 2.0
    elif isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm: p must be a number or 'fro', got {type(p).__name__}")
    p = float(p)
    if math.isnan(p):
        raise ValueError("norm: p must not be NaN")
    dims = _dims(dim, x.ndim, "norm")
    if x.ndim == 0:
        dims = None
    return Norm.apply(x, p, dims, bool(keepdim))
