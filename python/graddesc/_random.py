"""Random number generation: a global seeded generator and gd.Generator objects (PCG64)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from graddesc._device import check_device
from graddesc._tensor import Tensor


class Generator:
    """A seeded source of random numbers (NumPy's PCG64 underneath).

    >>> g = gd.Generator().manual_seed(0)
    >>> a = gd.rand(3, generator=g).tolist()
    >>> gd.rand(3, generator=gd.Generator().manual_seed(0)).tolist() == a
    True
    """

    def __init__(self, device: Any = "cpu") -> None:
        check_device(device, "Generator")
        self._seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self._rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> Generator:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(int(seed) % (2 ** 64)))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def seed(self) -> int:
        s = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.manual_seed(s)
        return s

    def get_state(self) -> Any:
        return self._rng.bit_generator.state

    def set_state(self, state: Any) -> Generator:
        self._rng.bit_generator.state = state
        return self


default_generator = Generator()
default_generator.manual_seed(0)


def manual_seed(seed: int) -> Generator:
    """Seeds the global generator (used when no generator= is given).

    >>> _ = gd.manual_seed(0)
    >>> a = gd.randn(3).tolist()
    >>> _ = gd.manual_seed(0)
    >>> gd.randn(3).tolist() == a
    True
    """
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    """The seed the global generator was last seeded with.

    >>> _ = gd.manual_seed(42)
    >>> gd.initial_seed()
    42
    """
    return default_generator.initial_seed()


def _rng(generator: Optional[Generator]) -> np.random.Generator:
    if generator is None:
        return default_generator._rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a graddesc.Generator, got {type(generator).__name__}")
    return generator._rng


def normal(shape: tuple, mean: float, std: float, dtype: Any, generator: Any) -> Any:
    a = _rng(generator).standard_normal(size=tuple(shape), dtype=np.float64) * std + mean
    return Tensor._make(a.astype(dtype.np))


def uniform(shape: tuple, a: float, b: float, dtype: Any, generator: Any) -> Any:
    u = _rng(generator).random(size=tuple(shape), dtype=np.float64) * (b - a) + a
    return Tensor._make(u.astype(dtype.np))
