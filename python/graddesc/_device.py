"""Devices: graddesc runs on the CPU only. `gd.device("cpu")` mirrors torch.device so that the
idiom `device = torch.device("cuda" if torch.cuda.is_available() else "cpu")` ports unchanged;
every other device type raises the same RuntimeError wherever it is asked for."""

from __future__ import annotations

from typing import Any, Optional

from graddesc import _dtype


def _unsupported(kind: str, where: str) -> RuntimeError:
    return RuntimeError(f"{where}: device '{kind}' is not available: graddesc runs on the CPU "
                        "only (use device='cpu'; graddesc.cuda.is_available() is False)")


class device:  # noqa: N801  (torch.device's spelling)
    """A device: only `device("cpu")` / `device("cpu", 0)` / `device("cpu:0")` exist.

    >>> gd.device("cpu").type
    'cpu'
    """

    __slots__ = ("_index",)

    def __init__(self, type: Any, index: Optional[int] = None) -> None:  # noqa: A002
        if isinstance(type, device):
            if index is not None:
                raise TypeError("device: index given twice (in the device and as index=)")
            self._index = type._index
            return
        if not isinstance(type, str):
            raise TypeError(f"device: type must be a str or a graddesc.device, got "
                            f"{builtin_type(type).__name__}")
        kind, sep, idx = type.partition(":")
        if sep:
            if index is not None:
                raise RuntimeError(f"device: index given twice ('{type}' and index={index})")
            if not idx.isdigit():
                raise RuntimeError(f"device: invalid device string '{type}'")
            index = int(idx)
        if kind != "cpu":
            raise _unsupported(kind, "device")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise RuntimeError(f"device: index must be a non-negative int, got {index!r}")
        self._index = index

    @property
    def type(self) -> str:
        return "cpu"

    @property
    def index(self) -> Optional[int]:
        return self._index

    def __repr__(self) -> str:
        if self._index is None:
            return "device(type='cpu')"
        return f"device(type='cpu', index={self._index})"

    def __str__(self) -> str:
        return "cpu" if self._index is None else f"cpu:{self._index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, device):
            return self._index == other._index
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("cpu", self._index))


builtin_type = type


def check_device(dev: Any, where: str) -> None:
    """Raises unless `dev` (a device argument) names the CPU; None means the default (CPU)."""
    if dev is None or isinstance(dev, device):
        return
    if isinstance(dev, str):
        kind = dev.partition(":")[0]
        if kind != "cpu":
            raise _unsupported(kind, where)
        device(dev)  # validates the index part
        return
    if isinstance(dev, int) and not isinstance(dev, bool):  # torch: an int is a CUDA ordinal
        raise _unsupported(f"cuda:{dev}", where)
    raise TypeError(f"{where}: device must be a str or a graddesc.device, got "
                    f"{builtin_type(dev).__name__}")


def is_device_arg(a: Any) -> bool:
    """True for the positional arguments of .to() that name a device rather than a dtype."""
    if isinstance(a, device):
        return True
    if isinstance(a, str):
        try:
            _dtype.to_dtype(a, "to")
        except (TypeError, ValueError):
            return True
        return False
    return False
