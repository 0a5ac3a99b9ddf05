"""Tests the sums (sum_axis, sum_all) through the kernels in `graddesc._core`.

The oracle is np.sum in float64; errors are measured against sum(|x|) along the reduced axis,
the scale any summation order's rounding error is proportional to.
"""

from __future__ import annotations

import numpy as np
import pytest
from graddesc import _core
from hypothesis import given, settings
from hypothesis import strategies as st

SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]


def _assert_sum_close(got, x, axis, dtype):
    x64 = np.asarray(x, dtype=np.float64)
    ref = np.sum(x64, axis=axis)
    scale = np.sum(np.abs(x64), axis=axis)
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == np.shape(ref)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    err = np.abs(got64 - ref)
    assert np.all(err <= rtol * scale + np.finfo(dtype).tiny), (
        f"max error {np.max(err, initial=0):g}"
    )


# (shape, axis) chosen to reach each kernel path: the reduced axis last (inner = 1), a middle axis
# with a short inner run (inner < 256, outer > 1), and a long inner run or outer = 1.
SUM_AXIS_CASES = [
    ((1,), 0),
    ((17,), 0),
    ((0,), 0),
    ((3, 5), -1),
    ((130, 65), 1),
    ((0, 3), 1),
    ((3, 0), 1),
    ((3, 0), 0),
    ((3, 5, 7), 1),
    ((4, 17, 65), -2),
    ((2, 3, 4, 5), 1),
    ((2, 3, 4, 5), 2),
    ((2, 3, 4, 5), -4),
    ((17, 65), 0),
    ((1, 65), 0),
    ((65, 1), 0),
    ((5, 3, 300), 1),
    ((3, 300), 0),
    ((4, 0, 5), 1),
    ((1000, 300), 0),
    ((300, 50, 17), 1),
    ((2000, 130), -1),
]


@pytest.mark.parametrize("shape,axis", SUM_AXIS_CASES, ids=lambda v: str(v))
def test_kernel_sum_axis_matches_numpy(isa, float_dtype, rng, threads, shape, axis):
    threads(2)
    x = rng.standard_normal(shape).astype(float_dtype)
    y = _core.sum_axis(x, axis)
    assert y.dtype == float_dtype and y.flags.c_contiguous
    _assert_sum_close(y, x, axis, float_dtype)


@pytest.mark.parametrize(
    "shape", [(), (0,), (1,), (17,), (65,), (3, 5, 7), (2, 0, 3), (200_003,), (700, 300)], ids=str
)
def test_kernel_sum_all_matches_numpy(isa, float_dtype, rng, threads, shape):
    threads(2)
    x = rng.standard_normal(shape).astype(float_dtype)
    y = _core.sum_all(x)
    assert y.shape == () and y.dtype == float_dtype
    _assert_sum_close(y, x, None, float_dtype)


@pytest.mark.parametrize("n", [1, 17, 16_384, 16_385, 200_003])
def test_kernel_sum_all_positive_relative_accuracy(isa, float_dtype, rng, n):
    # No cancellation: the sum itself is the error scale, so this is a plain relative tolerance.
    x = rng.random(n).astype(float_dtype) + float_dtype(0.5)
    ref = np.sum(x.astype(np.float64))
    rtol = 1e-5 if float_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(_core.sum_all(x), ref, rtol=rtol)


def test_kernel_sum_exact_on_integers(isa, float_dtype):
    # Small integers sum exactly in any order.
    x = np.arange(-600, 601, dtype=float_dtype).reshape(1201, 1)
    assert _core.sum_all(x) == 0
    x = np.arange(24, dtype=float_dtype).reshape(2, 3, 4)
    for axis in range(3):
        np.testing.assert_array_equal(_core.sum_axis(x, axis), x.sum(axis=axis))
        np.testing.assert_array_equal(_core.sum_axis(x, axis - 3), x.sum(axis=axis))
    assert _core.sum_all(x) == 276


def test_kernel_sum_float32_close_to_float64(isa, rng):
    x = rng.standard_normal((130, 65, 17)).astype(np.float32)
    x64 = x.astype(np.float64)
    for axis in (0, 1, 2):
        scale = np.abs(x64).sum(axis=axis)
        assert np.all(np.abs(_core.sum_axis(x, axis) - _core.sum_axis(x64, axis)) <= 1e-5 * scale)
    assert abs(_core.sum_all(x) - _core.sum_all(x64)) <= 1e-5 * np.abs(x64).sum()


def test_kernel_sum_nan_inf_like_numpy(isa, float_dtype):
    x = np.ones((3, 4), dtype=float_dtype)
    x[0, 1] = np.nan
    x[1, 2] = np.inf
    x[2, 0], x[2, 3] = np.inf, -np.inf
    for axis in (0, 1, -1):
        with np.errstate(invalid="ignore"):
            ref = np.sum(x.astype(np.float64), axis=axis)
        got = _core.sum_axis(x, axis)
        np.testing.assert_array_equal(got, ref)
    assert np.isnan(_core.sum_all(x))
    y = np.array([1.0, np.inf, 2.0], dtype=float_dtype)
    assert _core.sum_all(y) == np.inf


@pytest.mark.parametrize(
    "shape,axis",
    [((2000, 130), 1), ((300, 50, 17), 1), ((1000, 600), 0), ((3, 200, 600), 1), ((200_003,), 0)],
    ids=str,
)
def test_kernel_sum_axis_bitwise_equal_across_threads(isa, float_dtype, rng, threads, shape, axis):
    x = rng.standard_normal(shape).astype(float_dtype)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        runs.append(_core.sum_axis(x, axis))
    for y in runs[1:]:
        assert np.array_equal(y, runs[0])


@pytest.mark.parametrize("n", [200_003, 1_000_000])
def test_kernel_sum_all_bitwise_equal_across_threads(isa, float_dtype, rng, threads, n):
    x = rng.standard_normal(n).astype(float_dtype)
    runs = []
    for k in (1, 2, 3):
        threads(k)
        runs.append(_core.sum_all(x))
    for y in runs[1:]:
        assert np.array_equal(y, runs[0])


def test_kernel_sum_read_only_inputs(isa, float_dtype, rng):
    x = rng.standard_normal((5, 6, 7)).astype(float_dtype)
    expect = [_core.sum_axis(x, a) for a in range(3)] + [_core.sum_all(x)]
    x.setflags(write=False)
    got = [_core.sum_axis(x, a) for a in range(3)] + [_core.sum_all(x)]
    for g, e in zip(got, expect):
        assert np.array_equal(g, e)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    shape=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    axis_seed=st.integers(0, 100),
    negative=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_kernel_sum_axis_random_shapes(shape, axis_seed, negative, dtype):
    axis = axis_seed % len(shape) - (len(shape) if negative else 0)
    x = np.random.default_rng(axis_seed).standard_normal(shape).astype(dtype)
    previous = _core.isa()
    try:
        for name in SUPPORTED_ISAS:
            _core.set_isa(name)
            _assert_sum_close(_core.sum_axis(x, axis), x, axis, dtype)
            _assert_sum_close(_core.sum_all(x), x, None, dtype)
    finally:
        _core.set_isa(previous)


def _f32(*shape):
    return np.zeros(shape, dtype=np.float32)


def _misaligned_f32(*shape):
    n = int(np.prod(shape))
    return np.frombuffer(bytearray(4 * n + 1), dtype=np.float32, offset=1).reshape(shape)


REDUCE_ERRORS = [
    pytest.param(
        lambda: _core.sum_axis(_f32(2, 3).astype(np.float16), 0),
        TypeError,
        r"sum_axis: argument 'x'.*float16",
        id="axis-float16",
    ),
    pytest.param(
        lambda: _core.sum_axis(np.zeros((2, 3), dtype=np.int32), 0),
        TypeError,
        r"sum_axis: argument 'x'.*int32",
        id="axis-int32",
    ),
    pytest.param(
        lambda: _core.sum_axis(_f32(2, 3).astype(">f4"), 0),
        TypeError,
        r"sum_axis: argument 'x'",
        id="axis-big-endian",
    ),
    pytest.param(
        lambda: _core.sum_axis([[1.0, 2.0]], 0),
        TypeError,
        r"sum_axis: argument 'x' must be a numpy.ndarray",
        id="axis-list",
    ),
    pytest.param(
        lambda: _core.sum_axis(_f32(2, 3), 2),
        ValueError,
        r"sum_axis: axis 2 is out of range for an array of shape \(2, 3\)",
        id="axis-high",
    ),
    pytest.param(
        lambda: _core.sum_axis(_f32(2, 3), -3),
        ValueError,
        r"sum_axis: axis -3 is out of range",
        id="axis-low",
    ),
    pytest.param(
        lambda: _core.sum_axis(np.zeros((), dtype=np.float32), 0),
        ValueError,
        r"sum_axis: axis 0 is out of range",
        id="axis-0d",
    ),
    pytest.param(
        lambda: _core.sum_axis(_f32(3, 2).T, 0),
        ValueError,
        r"sum_axis: argument 'x' must be C-contiguous",
        id="axis-transposed",
    ),
    pytest.param(
        lambda: _core.sum_axis(_f32(2, 6)[:, ::2], 1),
        ValueError,
        r"sum_axis: argument 'x' must be C-contiguous",
        id="axis-strided",
    ),
    pytest.param(
        lambda: _core.sum_axis(_misaligned_f32(2, 3), 0),
        ValueError,
        r"sum_axis: argument 'x' is not aligned",
        id="axis-misaligned",
    ),
    pytest.param(
        lambda: _core.sum_all(_f32(3).astype(np.float16)),
        TypeError,
        r"sum_all: argument 'x'.*float16",
        id="all-float16",
    ),
    pytest.param(
        lambda: _core.sum_all(np.zeros(3, dtype=np.int64)),
        TypeError,
        r"sum_all: argument 'x'.*int64",
        id="all-int64",
    ),
    pytest.param(
        lambda: _core.sum_all(_f32(3).astype(">f8")),
        TypeError,
        r"sum_all: argument 'x'",
        id="all-big-endian",
    ),
    pytest.param(
        lambda: _core.sum_all([1.0, 2.0]),
        TypeError,
        r"sum_all: argument 'x' must be a numpy.ndarray",
        id="all-list",
    ),
    pytest.param(
        lambda: _core.sum_all(_f32(3, 2).T),
        ValueError,
        r"sum_all: argument 'x' must be C-contiguous",
        id="all-transposed",
    ),
    pytest.param(
        lambda: _core.sum_all(_f32(8)[::2]),
        ValueError,
        r"sum_all: argument 'x' must be C-contiguous",
        id="all-strided",
    ),
    pytest.param(
        lambda: _core.sum_all(_misaligned_f32(5)),
        ValueError,
        r"sum_all: argument 'x' is not aligned",
        id="all-misaligned",
    ),
]


@pytest.mark.parametrize("call,exc,match", REDUCE_ERRORS)
def test_kernel_reduce_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
