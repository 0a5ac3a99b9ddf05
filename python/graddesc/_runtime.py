"""Runtime configuration: threads, instruction set, build facts."""

from __future__ import annotations

from typing import Any

from graddesc import _core

__version__ = getattr(_core, "__version__", "0.0.0")


def set_num_threads(n: int) -> None:
    """Sets how many threads a parallel kernel may use (results do not depend on it).

    Raises:
        TypeError: n is not an int. ValueError: n < 1 or n > 2**31 - 1.
        RuntimeError: n > 1 in a process forked (os.fork, multiprocessing's 'fork' start
            method) after graddesc's OpenMP threads had started in the parent: OpenMP can't
            start threads in such a child (GNU libgomp would hang), so its kernels run on one
            thread (the budget is set to 1 at the fork). Use 'spawn' or 'forkserver' workers
            to run parallel kernels.

    >>> n = gd.get_num_threads()
    >>> gd.set_num_threads(1)
    >>> gd.get_num_threads()
    1
    >>> gd.set_num_threads(n)
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    # the kernel takes a C int: out-of-range counts get this message, not a binding's TypeError
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n > 2 ** 31 - 1:
        raise ValueError(f"set_num_threads: n must be at most 2147483647, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Returns how many threads a parallel kernel may use.

    >>> gd.get_num_threads() >= 1
    True
    """
    return _core.get_num_threads()


def config() -> dict[str, Any]:
    """Returns the version, OpenMP on/off, the instruction set in use and the thread count.

    >>> sorted(gd.config())
    ['best_isa', 'isa', 'num_threads', 'openmp', 'version']
    """
    return {
        "version": __version__,
        "openmp": bool(_core.has_openmp),
        "isa": _core.isa(),
        "best_isa": _core.best_isa(),
        "num_threads": _core.get_num_threads(),
    }


_deterministic = [False]


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Accepted for PyTorch ports: every graddesc kernel is deterministic already (fixed
    partitions and reduction orders), so either mode gives the same bits.

    >>> gd.use_deterministic_algorithms(True)
    >>> gd.are_deterministic_algorithms_enabled()
    True
    >>> gd.use_deterministic_algorithms(False)
    """
    if not isinstance(mode, bool):
        raise TypeError(f"use_deterministic_algorithms: mode must be a bool, got "
                        f"{type(mode).__name__}")
    _deterministic[0] = mode


def are_deterministic_algorithms_enabled() -> bool:
    """What use_deterministic_algorithms last set (graddesc is deterministic either way).

    >>> isinstance(gd.are_deterministic_algorithms_enabled(), bool)
    True
    """
    return _deterministic[0]
