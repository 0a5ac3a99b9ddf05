"""graddesc.cuda: there is no GPU backend, so code that asks before using one takes the CPU path."""

from __future__ import annotations


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Accepted and ignored, as torch.cuda.manual_seed is without a GPU."""


def manual_seed_all(seed: int) -> None:
    """Accepted and ignored, as torch.cuda.manual_seed_all is without a GPU."""
