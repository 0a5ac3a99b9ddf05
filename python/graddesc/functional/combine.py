"""addcmul, addcdiv and lerp: PyTorch's fused pointwise updates (what optimizers written by hand
use), as compositions of the elementwise kernels in PyTorch's order of operations. They are
differentiable through those ops, and a gd.compile step that uses them is captured.

Every operation rounds once, as in graddesc's optimizer kernels (src/cpp/optim.cpp), so
PyTorch's Adam loop written with these gives optim.Adam's bits (tests/test_combine.py).
PyTorch's own vectorised CPU kernels fuse the last multiply-add of addcmul and lerp into one
rounding, so its results may differ from these in the last bit."""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc._tensor import Tensor
from graddesc.functional import elementwise as ew


def _tensor_arg(x: Any, op: str, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a Tensor, got {type(x).__name__}")
    return x


def _number(v: Any, op: str) -> float:
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{op}: argument 'value' must be a number, got {type(v).__name__}")
    return v


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *,  # noqa: A002
            value: Any = 1) -> Tensor:
    """input + value * tensor1 * tensor2 with broadcasting, as PyTorch's ((value * tensor1) *
    tensor2, then the sum).

    >>> gd.addcmul(gd.tensor([1.0, 1.0]), gd.tensor([2.0, 3.0]), gd.tensor([4.0, 5.0]),
    ...            value=0.5).tolist()
    [5.0, 8.5]
    """
    for x, name in ((input, "input"), (tensor1, "tensor1"), (tensor2, "tensor2")):
        _tensor_arg(x, "addcmul", name)
    value = _number(value, "addcmul")
    t = tensor1 if value == 1 else ew.mul(tensor1, value)  # (1 * t is t, bit for bit)
    return ew.add(input, ew.mul(t, tensor2))


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *,  # noqa: A002
            value: Any = 1) -> Tensor:
    """input + value * tensor1 / tensor2 with broadcasting, as PyTorch's ((value * tensor1) /
    tensor2, then the sum); integer tensor1 and tensor2 are refused, as there.

    >>> gd.addcdiv(gd.tensor([1.0, 1.0]), gd.tensor([2.0, 3.0]), gd.tensor([4.0, 6.0]),
    ...            value=-2).tolist()
    [0.0, 0.0]
    """
    for x, name in ((input, "input"), (tensor1, "tensor1"), (tensor2, "tensor2")):
        _tensor_arg(x, "addcdiv", name)
    value = _number(value, "addcdiv")
    if tensor1._data.dtype.kind in "biu" and tensor2._data.dtype.kind in "biu":
        raise RuntimeError("addcdiv: integer division with addcdiv is not supported; use "
                           "(input + value * tensor1 / tensor2) with float tensors")
    t = tensor1 if value == 1 else ew.mul(tensor1, value)
    return ew.add(input, ew.div(t, tensor2))


def lerp(input: Tensor, end: Tensor, weight: Any) -> Tensor:  # noqa: A002
    """input + weight * (end - input), with broadcasting; weight a number or a tensor. As
    PyTorch computes it: where |weight| >= 0.5, end - (end - input) * (1 - weight) instead, so
    that weight 1 gives end exactly.

    >>> gd.lerp(gd.tensor([0.0, 10.0]), gd.tensor([10.0, 20.0]), 0.25).tolist()
    [2.5, 12.5]
    """
    _tensor_arg(input, "lerp", "input")
    _tensor_arg(end, "lerp", "end")
    if input._data.dtype.kind != "f" or end._data.dtype.kind != "f":
        raise TypeError(f"lerp: expected floating point tensors, got {input.dtype} and "
                        f"{end.dtype}")
    diff = ew.sub(end, input)
    if isinstance(weight, Tensor):
        if weight._data.dtype.kind != "f":
            raise TypeError(f"lerp: weight must be a floating point tensor, got {weight.dtype}")
        low = ew.add(input, ew.mul(weight, diff))
        high = ew.sub(end, ew.mul(diff, ew.sub(1.0, weight)))
        return ew.where(ew.lt(ew.abs(weight), 0.5), low, high)
    if isinstance(weight, np.generic):
        weight = weight.item()
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"lerp: weight must be a number or a Tensor, got "
                        f"{type(weight).__name__}")
    dt = np.result_type(input._data.dtype, end._data.dtype)
    w = dt.type(weight)  # (the weight in the tensors' dtype, as PyTorch's kernel takes it)
    if abs(w) < 0.5:
        return ew.add(input, ew.mul(diff, float(w)))
    return ew.sub(end, ew.mul(diff, float(dt.type(1) - w)))
