"""Random number generation: a global seeded generator and gd.Generator objects (PCG64), plus
the counter-based stream that kernels draw dropout masks from (so gd.compile records them).

Every draw from the PCG64 stream goes through `draw`: its values depend only on the generator
and the draw's own arguments (shape, dtype, distribution), never on a tensor's values, so inside
a gd.compile recording the array becomes a host-fed input of the program, and every replay makes
the same draw from the same generator, in the recorded order, before the program runs
(_compile_state.random_draw). A compiled step thus consumes the stream as the eager step does."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from graddesc import _compile_state, _core
from graddesc._device import check_device
from graddesc._tensor import Tensor

_M64 = (1 << 64) - 1


def _stream_key(seed: int) -> int:
    """The 64-bit key of a seed's kernel stream (SplitMix64 of the seed)."""
    z = (seed + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class Generator:
    """A seeded source of random numbers (NumPy's PCG64 underneath).

    >>> g = gd.Generator().manual_seed(0)
    >>> a = gd.rand(3, generator=g).tolist()
    >>> gd.rand(3, generator=gd.Generator().manual_seed(0)).tolist() == a
    True
    """

    def __init__(self, device: Any = "cpu") -> None:
        check_device(device, "Generator")
        # [key, counter] of the stream kernels draw from (dropout masks): written in place
        # only, since a compiled step holds its address
        self._stream = np.zeros(2, np.uint64)
        self.manual_seed(int(np.random.SeedSequence().entropy % (2 ** 63)))

    def manual_seed(self, seed: int) -> Generator:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(int(seed) % (2 ** 64)))
        self._stream[0] = _stream_key(int(seed) % (2 ** 64))
        self._stream[1] = 0
        return self

    def initial_seed(self) -> int:
        return self._seed

    def seed(self) -> int:
        s = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.manual_seed(s)
        return s

    def get_state(self) -> Any:
        """The whole state (a dict: NumPy's PCG64 state and the kernel stream's position)."""
        state = dict(self._rng.bit_generator.state)
        state["graddesc_stream"] = [int(self._stream[0]), int(self._stream[1])]
        return state

    def set_state(self, state: Any) -> Generator:
        state = dict(state)
        stream = state.pop("graddesc_stream", None)
        self._rng.bit_generator.state = state
        if stream is not None:
            self._stream[0], self._stream[1] = int(stream[0]), int(stream[1])
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


def _gen(generator: Optional[Generator]) -> Generator:
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a graddesc.Generator, got {type(generator).__name__}")
    return generator


def _rng(generator: Optional[Generator]) -> np.random.Generator:
    return _gen(generator)._rng


def draw(generator: Optional[Generator], sample: Callable[[np.random.Generator], Any],
         requires_grad: bool = False) -> Any:
    """sample(rng), a new array made from the generator's PCG64 stream (`sample` must depend on
    nothing but its argument and constants). Inside a gd.compile recording the array is a
    host-fed input of the program: each replay refills it with sample() of the generator's
    stream as it is then (after a manual_seed, the reseeded one), in the order of the eager
    step. A draw that requires grad is a new leaf each call and is not registered (the step
    falls back to eager)."""
    g = _gen(generator)
    arr = sample(g._rng)
    if not requires_grad:
        _compile_state.random_draw(arr, g, sample)
    return arr


def dropout_mask(shape: tuple, p: float, dtype: Any, generator: Optional[Generator]) -> Any:
    """1/(1-p) where a uniform draw is >= p, else 0 (0 <= p < 1), as an array of `shape` and
    `dtype` (float32 or float64) from the generator's kernel stream."""
    g = default_generator if generator is None else generator
    if not isinstance(g, Generator):
        raise TypeError(f"generator must be a graddesc.Generator, got {type(g).__name__}")
    _compile_state.generator_state(g._stream)
    return _core.dropout_mask(list(shape), float(p), g._stream, np.dtype(dtype) == np.float64)


def normal(shape: tuple, mean: float, std: float, dtype: Any, generator: Any,
           requires_grad: bool = False) -> Any:
    shape, out = tuple(shape), dtype.np

    def sample(rng: np.random.Generator) -> Any:
        return (rng.standard_normal(size=shape, dtype=np.float64) * std + mean).astype(out)

    return Tensor._make(draw(generator, sample, requires_grad))


def uniform(shape: tuple, a: float, b: float, dtype: Any, generator: Any,
            requires_grad: bool = False) -> Any:
    shape, out = tuple(shape), dtype.np

    def sample(rng: np.random.Generator) -> Any:
        return (rng.random(size=shape, dtype=np.float64) * (b - a) + a).astype(out)

    return Tensor._make(draw(generator, sample, requires_grad))


def integers(shape: tuple, low: int, high: int, dtype: Any, generator: Any,
             requires_grad: bool = False) -> Any:
    shape, out = tuple(shape), dtype.np

    def sample(rng: np.random.Generator) -> Any:
        return rng.integers(low, high, size=shape, dtype=np.int64).astype(out)

    return Tensor._make(draw(generator, sample, requires_grad))


def permutation(n: int, dtype: Any, generator: Any) -> Any:
    out = dtype.np

    def sample(rng: np.random.Generator) -> Any:
        return rng.permutation(n).astype(out)

    return Tensor._make(draw(generator, sample))
