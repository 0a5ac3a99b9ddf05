"""nn.Parameter: a leaf Tensor that a Module registers as one of its weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc._tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a module's parameter (requires_grad=True by default); shares memory
    with the tensor it wraps.

    >>> p = nn.Parameter(gd.zeros(2))
    >>> p.requires_grad, isinstance(p, gd.Tensor)
    (True, True)
    """

    __slots__ = ()

    def __new__(cls, data: Any = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            arr = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            arr = data._data
        else:
            raise TypeError(f"Parameter: data must be a Tensor, got {type(data).__name__}")
        p = object.__new__(cls)
        p._init(arr, False)
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        pass

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
