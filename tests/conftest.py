"""Shared fixtures for the graddesc test suite; the kernel tests go through `graddesc._core`.

- `isa`: runs a test once per instruction set this CPU supports, restoring the previous one.
- `threads`: a setter for the kernel thread budget that restores the original count afterwards.
- `rng`: a seeded NumPy generator, so every run draws the same inputs.
- `float_dtype`: float32 and float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from graddesc import _core

SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]


@pytest.fixture(autouse=True)
def _restore_kernel_runtime() -> Iterator[None]:
    """Guards against a test leaking its ISA or thread count into the next one."""
    isa, n = _core.isa(), _core.get_num_threads()
    yield
    _core.set_isa(isa)
    _core.set_num_threads(n)


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Selects each instruction set the CPU supports in turn (the name is the fixture value)."""
    previous = _core.isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(previous)


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """Returns set(n) for the kernel thread budget; the original count comes back afterwards."""
    previous = _core.get_num_threads()

    def set_threads(n: int) -> None:
        _core.set_num_threads(n)
        assert _core.get_num_threads() == n

    yield set_threads
    _core.set_num_threads(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed."""
    return np.random.default_rng(20240611)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def float_dtype(request: pytest.FixtureRequest) -> type:
    """Each floating-point dtype the kernels accept."""
    return request.param


def _central_difference(
    f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """d f / d x by central differences, one float64 element at a time (x is left unchanged)."""
    x = np.array(x, dtype=np.float64, copy=True)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = float(f(x))
        flat[i] = old - eps
        down = float(f(x))
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.fixture
def numerical_grad() -> Callable[..., np.ndarray]:
    """numerical_grad(f, x, eps=1e-6): the gradient of the scalar f at x by central differences."""
    return _central_difference
