"""Array helpers shared by the kernel tests."""

from __future__ import annotations

import numpy as np


def misaligned_f32(*shape: int) -> np.ndarray:
    """A float32 array whose data starts one byte past an aligned address."""
    n = int(np.prod(shape))
    return np.frombuffer(bytearray(4 * n + 1), dtype=np.float32, offset=1).reshape(shape)
