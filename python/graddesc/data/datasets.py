"""Embedded datasets that need no download: spirals (generated) and digits (shipped).

digits: the 8x8 handwritten digits of the UCI "Optical Recognition of Handwritten Digits" data
set (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0), 1,797 images stored in `digits.npz` next to
this file; see DIGITS_LICENSE.txt for the source and how the file was made.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import zipfile

import numpy as np

from graddesc._tensor import Tensor

DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")
DIGITS_SAMPLES = 1797
DIGITS_TRAIN = 1437
DIGITS_TEST = 360


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"spirals: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"spirals: {name} must be >= {minimum}, got {value}")
    return int(value)


def spirals(n: int = 100, classes: int = 3, seed: int = 0,
            noise: float = 0.2) -> tuple[Tensor, Tensor]:
    """Interleaved spiral arms, one per class (the CS231n toy problem for a 2-layer network).

    Arm j holds n points with radius r going linearly from 0 to 1 and angle
    4*j + 4*r plus Gaussian noise of standard deviation `noise` (radians); the point is
    (r*sin(angle), r*cos(angle)). Rows are ordered by class: rows j*n .. (j+1)*n-1 are class j.

    Args:
        n: points per class (>= 1).
        classes: number of arms (>= 1).
        seed: seed of the PCG64 generator drawing the noise (same seed, same data).
        noise: standard deviation of the angle noise (>= 0).

    Returns:
        (X, y) with X float32 (n*classes, 2) and y int64 (n*classes,), values 0..classes-1.

    >>> X, y = gd.data.datasets.spirals(n=50, classes=3)
    >>> tuple(X.shape), sorted(set(y.tolist()))
    ((150, 2), [0, 1, 2])
    """
    n = _check_int(n, "n", 1)
    classes = _check_int(classes, "classes", 1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"spirals: seed must be a non-negative int, got {seed!r}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"spirals: noise must be a float, got {type(noise).__name__}")
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"spirals: noise must be finite and >= 0, got {noise}")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    r = np.linspace(0.0, 1.0, n)
    X = np.empty((n * classes, 2), dtype=np.float64)
    y = np.repeat(np.arange(classes, dtype=np.int64), n)
    for j in range(classes):
        angle = np.linspace(4.0 * j, 4.0 * (j + 1), n) + rng.standard_normal(n) * noise
        X[j * n:(j + 1) * n, 0] = r * np.sin(angle)
        X[j * n:(j + 1) * n, 1] = r * np.cos(angle)
    return Tensor._make(X.astype(np.float32)), Tensor._make(y)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) in 0..16, labels uint8 (1797,), split uint8 (1797,))."""
    try:
        with np.load(DIGITS_FILE, allow_pickle=False) as f:
            images, labels, split = f["images"], f["labels"], f["split"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise RuntimeError(f"digits: the embedded data file {DIGITS_FILE} is missing or "
                           f"damaged ({e}); reinstall graddesc") from None
    ok = (images.shape == (DIGITS_SAMPLES, 8, 8) and images.dtype == np.uint8
          and labels.shape == (DIGITS_SAMPLES,) and labels.dtype == np.uint8
          and split.shape == (DIGITS_SAMPLES,) and split.dtype == np.uint8
          and int(images.max()) <= 16 and int(labels.max()) <= 9 and int(split.max()) <= 1
          and int(split.sum()) == DIGITS_TEST)
    if not ok:
        raise RuntimeError(f"digits: the embedded data file {DIGITS_FILE} has unexpected "
                           "contents; reinstall graddesc")
    for a in (images, labels, split):
        a.setflags(write=False)
    return images, labels, split


def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The real 8x8 handwritten digits (UCI optdigits, 1,797 images) with a fixed split.

    Features are the 64 pixel counts (0..16) of each image in row-major order divided by 16,
    so they lie in [0, 1]. The split is fixed and stored in the file: per class, 20% of the
    images (rounded so the total is 360) were drawn for the test set with a PCG64 generator
    seeded with 0; both parts keep the original order.

    Returns:
        X_train float32 (1437, 64), y_train int64 (1437,), X_test float32 (360, 64),
        y_test int64 (360,); fresh tensors on every call.

    >>> X_train, y_train, X_test, y_test = gd.data.datasets.digits()
    >>> tuple(X_train.shape), tuple(X_test.shape)
    ((1437, 64), (360, 64))
    """
    images, labels, split = _digits_arrays()
    X = images.reshape(DIGITS_SAMPLES, 64).astype(np.float32) / np.float32(16.0)
    y = labels.astype(np.int64)
    test = split.astype(bool)
    return (Tensor._make(np.ascontiguousarray(X[~test])), Tensor._make(y[~test]),
            Tensor._make(np.ascontiguousarray(X[test])), Tensor._make(y[test]))
