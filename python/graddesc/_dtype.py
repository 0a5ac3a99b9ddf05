"""graddesc dtypes: float32 (default), float64, and int64/bool for indices and masks."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np


class dtype:  # noqa: N801 -- mirrors torch.dtype
    """A tensor element type; compares equal to itself and to the matching NumPy dtype.

    >>> gd.zeros(1).dtype == gd.float32, gd.float64 == np.float64
    (True, True)
    """

    __slots__ = ("name", "np", "is_floating_point", "itemsize")

    def __init__(self, name: str, np_dtype: Any) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"graddesc.{self.name}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dtype):
            return self is other
        try:
            return self.np == np.dtype(other)  # type: ignore[arg-type]
        except TypeError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self) -> str:
        return self.name


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
int64 = dtype("int64", np.int64)
bool_ = dtype("bool", np.bool_)
float = float32  # noqa: A001 -- torch.float
double = float64
long = int64

_BY_NP = {d.np: d for d in (float32, float64, int64, bool_)}
_BY_NAME = {"float32": float32, "float64": float64, "int64": int64, "bool": bool_,
            "float": float32, "double": float64, "long": int64}


def to_dtype(d: Any, arg: str = "dtype") -> dtype:
    """Resolves a graddesc dtype, a NumPy dtype/type or a name to a graddesc dtype."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    if d is builtins.float:
        return float32
    if d is builtins.int:
        return int64
    if d is builtins.bool:
        return bool_
    try:
        npd = np.dtype(d)
    except TypeError:
        raise TypeError(f"{arg}: expected a graddesc dtype (float32, float64, int64, bool), "
                        f"got {d!r}") from None
    if npd.byteorder not in "=|":
        npd = npd.newbyteorder("=")
    found = _BY_NP.get(npd)
    if found is None:
        raise TypeError(f"{arg}: unsupported dtype {npd}; graddesc supports float32, float64, "
                        "int64 and bool")
    return found


def from_numpy_dtype(npd: np.dtype) -> dtype:
    """The graddesc dtype of a NumPy dtype already known to be supported."""
    return _BY_NP[npd]
