"""graddesc.cuda: there is no GPU backend, so code that asks before using one takes the CPU path."""

from __future__ import annotations


def is_available() -> bool:
    """Always False: graddesc runs on the CPU only, so code that checks before using a GPU takes
    its CPU path.

    >>> gd.cuda.is_available()
    False
    """
    return False


def device_count() -> int:
    """Always 0 (no GPU backend).

    >>> gd.cuda.device_count()
    0
    """
    return 0


def manual_seed(seed: int) -> None:
    """Accepted and ignored, as torch.cuda.manual_seed is without a GPU.

    >>> gd.cuda.manual_seed(0)  # nothing happens
    """


def manual_seed_all(seed: int) -> None:
    """Accepted and ignored, as torch.cuda.manual_seed_all is without a GPU.

    >>> gd.cuda.manual_seed_all(0)  # nothing happens
    """
