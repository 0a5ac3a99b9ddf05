"""Tensor's math methods and operators, each a one-line call into graddesc.functional."""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc._tensor import Tensor, _norm_dim
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional import linear as lin
from graddesc.functional import loss as lss
from graddesc.functional import reduce as red
from graddesc.functional import shape as shp


def _rsub(self: Tensor, other: Any) -> Tensor:
    return ew.sub(other, self)


def _rdiv(self: Tensor, other: Any) -> Tensor:
    return ew.div(other, self)


def _rpow(self: Tensor, other: Any) -> Tensor:
    return ew.pow(other, self)


def _rmatmul(self: Tensor, other: Any) -> Tensor:
    return lin.matmul(other, self)


def _matmul(self: Tensor, other: Any) -> Tensor:
    return lin.matmul(self, other)


def _iop(name: str, method: str) -> Any:
    def f(self: Tensor, other: Any) -> Tensor:
        return getattr(self, method)(other)

    f.__name__ = name
    return f


def _movedim(self: Tensor, source: int, destination: int) -> Tensor:
    s = _norm_dim(source, self.ndim, "movedim")
    d = _norm_dim(destination, self.ndim, "movedim")
    order = [i for i in range(self.ndim) if i != s]
    order.insert(d, s)
    return shp.permute(self, *order)


def _pow(self: Tensor, e: Any) -> Tensor:
    return ew.pow(self, e)


def _sub(self: Tensor, other: Any, alpha: Any = 1) -> Tensor:
    return ew.sub(self, other, alpha=alpha)


def _add(self: Tensor, other: Any, alpha: Any = 1) -> Tensor:
    return ew.add(self, other, alpha=alpha)


def _getitem(self: Tensor, index: Any) -> Tensor:
    return shp.getitem(self, index)


def _invert(self: Tensor) -> Tensor:
    if self._data.dtype.kind not in "biu":
        raise TypeError(f"~ (bitwise not) is only defined for bool and integer tensors, got "
                        f"{self.dtype}")
    return Tensor._make(np.asarray(~self._data))  # 0-d stays an array, not a scalar


def _and(self: Tensor, other: Any) -> Tensor:
    return ew._logical(__import__("numpy").bitwise_and, self, other, "&")


def _or(self: Tensor, other: Any) -> Tensor:
    return ew._logical(__import__("numpy").bitwise_or, self, other, "|")


def _xor(self: Tensor, other: Any) -> Tensor:
    return ew._logical(__import__("numpy").bitwise_xor, self, other, "^")


_METHODS = {
    # arithmetic
    "__add__": _add, "__radd__": _add, "add": _add,
    "__sub__": _sub, "__rsub__": _rsub, "sub": _sub,
    "__mul__": ew.mul, "__rmul__": ew.mul, "mul": ew.mul,
    "__truediv__": ew.div, "__rtruediv__": _rdiv, "div": ew.div,
    "__pow__": _pow, "__rpow__": _rpow, "pow": _pow,
    "__matmul__": _matmul, "__rmatmul__": _rmatmul, "matmul": _matmul, "mm": lin.mm,
    "__neg__": ew.neg, "neg": ew.neg, "__pos__": lambda self: self,
    "__abs__": ew.abs, "abs": ew.abs, "sign": ew.sign, "sqrt": ew.sqrt,
    "clamp": ew.clamp, "clip": ew.clamp, "maximum": ew.maximum, "minimum": ew.minimum,
    "__iadd__": _iop("__iadd__", "add_"), "__isub__": _iop("__isub__", "sub_"),
    "__imul__": _iop("__imul__", "mul_"), "__itruediv__": _iop("__itruediv__", "div_"),
    # comparisons and logic
    "__eq__": ew.eq, "__ne__": ew.ne, "__lt__": ew.lt, "__le__": ew.le, "__gt__": ew.gt,
    "__ge__": ew.ge, "eq": ew.eq, "ne": ew.ne, "lt": ew.lt, "le": ew.le, "gt": ew.gt,
    "ge": ew.ge, "__invert__": _invert, "__and__": _and, "__or__": _or, "__xor__": _xor,
    "logical_not": ew.logical_not, "isnan": ew.isnan, "isfinite": ew.isfinite,
    # nonlinearities (C++)
    "relu": act.relu, "tanh": act.tanh, "sigmoid": act.sigmoid, "exp": act.exp,
    "log": act.log, "softplus": act.softplus, "gelu": act.gelu, "leaky_relu": act.leaky_relu,
    "softmax": lss.softmax, "log_softmax": lss.log_softmax,
    # reductions
    "sum": red.sum, "mean": red.mean, "max": red.max, "min": red.min, "amax": red.amax,
    "amin": red.amin, "argmax": red.argmax, "argmin": red.argmin, "var": red.var,
    "std": red.std, "logsumexp": red.logsumexp,
    # shape
    "view": shp.view, "reshape": shp.reshape, "flatten": shp.flatten, "permute": shp.permute,
    "transpose": shp.transpose, "t": shp.t, "expand": shp.expand, "expand_as": shp.expand_as,
    "squeeze": shp.squeeze, "unsqueeze": shp.unsqueeze, "__getitem__": _getitem,
    "split": shp.split, "chunk": shp.chunk, "movedim": _movedim,
    "view_as": lambda self, other: shp.view(self, *other.shape),
    "reshape_as": lambda self, other: shp.reshape(self, *other.shape),
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: shp.permute(self, *reversed(range(self.ndim))),
                    doc="The tensor with its dims reversed.")
Tensor.mT = property(lambda self: shp.transpose(self, -2, -1),
                     doc="The last two dims swapped.")
