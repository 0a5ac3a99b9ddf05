"""Tests the arithmetic of graddesc.distributed's shared-memory reduction: `_core.average_ranks`
(src/cpp/collective.cpp), which DistributedDataParallel runs on views of MPI shared-memory
windows (tests/test_distributed.py runs it inside real MPI jobs).

The oracle is NumPy doing the same operations one pass at a time: the inputs added in list
order, then divided by their count, in the inputs' dtype. The kernel must give the same bits
(the ranks' replicas stay identical only if every rank computes the same bits), on every ISA
and for any thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

from graddesc import _core


def _oracle(inputs: list) -> np.ndarray:
    acc = inputs[0].copy()
    for x in inputs[1:]:
        acc = acc + x
    return acc / acc.dtype.type(len(inputs))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 2047, 2048, 2049, 70001])
def test_average_ranks_against_numpy(isa, float_dtype, rng, count, n):
    inputs = [(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)).astype(float_dtype)
              for _ in range(count)]
    want = _oracle(inputs)
    out = np.full(n, np.nan, dtype=float_dtype)
    _core.average_ranks(out, inputs)
    np.testing.assert_array_equal(out, want)
    out2 = np.full(n, np.nan, dtype=float_dtype)
    out[:] = np.nan
    _core.average_ranks(out, tuple(inputs), out2)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(out2, want)


def test_average_ranks_order_is_rank_order(float_dtype):
    """((x0 + x1) + x2) / 3, not x0 + (x1 + x2): values chosen so the two orders differ."""
    big = float_dtype(2.0 ** (25 if float_dtype == np.float32 else 54))
    inputs = [np.array([big], float_dtype), np.array([-big], float_dtype),
              np.array([1.0], float_dtype)]
    out = np.empty(1, float_dtype)
    _core.average_ranks(out, inputs)
    assert out[0] == float_dtype(1.0) / float_dtype(3)
    out2 = np.empty(1, float_dtype)
    _core.average_ranks(out2, [inputs[1], inputs[2], inputs[0]])
    assert out2[0] == float_dtype(0.0)  # (-big + 1) rounds to -big, then + big
    np.testing.assert_array_equal(out, _oracle(inputs))
    np.testing.assert_array_equal(out2, _oracle([inputs[1], inputs[2], inputs[0]]))


def test_average_ranks_special_values(isa, float_dtype):
    inf, nan = float_dtype(np.inf), float_dtype(np.nan)
    a = np.array([inf, -inf, nan, 0.0, -0.0, 1.0, inf, np.finfo(float_dtype).max], float_dtype)
    b = np.array([1.0, -inf, 1.0, -0.0, -0.0, nan, -inf, np.finfo(float_dtype).max],
                 float_dtype)
    for count_inputs in ([a, b], [a, b, a]):
        with np.errstate(invalid="ignore", over="ignore"):
            want = _oracle(count_inputs)
        out = np.empty_like(a)
        _core.average_ranks(out, count_inputs)
        np.testing.assert_array_equal(out, want)  # (NaN where NumPy has NaN, signed zeros)
        assert np.array_equal(np.signbit(out), np.signbit(want))


def test_average_ranks_threads_bitwise(threads, float_dtype, rng):
    n = 1 << 20  # above the parallel threshold
    inputs = [rng.standard_normal(n).astype(float_dtype) for _ in range(3)]
    outs = []
    for t in (1, 2):
        threads(t)
        out = np.empty(n, float_dtype)
        _core.average_ranks(out, inputs)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], _oracle(inputs))


def test_average_ranks_views_of_one_buffer(float_dtype, rng):
    """As DistributedDataParallel calls it: chunks of ranks' segments of one window."""
    mem = rng.standard_normal(3 * 100).astype(float_dtype)
    segs = [mem[100 * q:100 * (q + 1)] for q in range(3)]
    out = np.empty(40, float_dtype)
    out2 = np.empty(40, float_dtype)
    _core.average_ranks(out, [s[30:70] for s in segs], out2)
    np.testing.assert_array_equal(out, _oracle([s[30:70] for s in segs]))
    np.testing.assert_array_equal(out2, out)


def test_average_ranks_bad_input():
    x = np.ones(5, np.float32)
    out = np.empty(5, np.float32)
    with pytest.raises(TypeError, match="argument 'inputs' must be a list"):
        _core.average_ranks(out, x)
    with pytest.raises(ValueError, match="'inputs' must hold at least one array"):
        _core.average_ranks(out, [])
    with pytest.raises(TypeError, match="argument 'out' must be a numpy.ndarray"):
        _core.average_ranks([0.0] * 5, [x])
    with pytest.raises(TypeError, match="argument 'out' must have dtype float32 or float64"):
        _core.average_ranks(np.empty(5, np.int64), [x])
    with pytest.raises(TypeError, match=r"argument 'inputs\[1\]' must have dtype float32"):
        _core.average_ranks(out, [x, np.ones(5)])
    with pytest.raises(ValueError, match=r"argument 'inputs\[1\]' must have out's 5 elements, "
                                         r"got 4"):
        _core.average_ranks(out, [x, np.ones(4, np.float32)])
    with pytest.raises(ValueError, match=r"argument 'inputs\[0\]' must be C-contiguous"):
        _core.average_ranks(np.empty(3, np.float32), [np.ones(6, np.float32)[::2]])
    with pytest.raises(ValueError, match="argument 'out' must be C-contiguous"):
        _core.average_ranks(np.empty(10, np.float32)[::2], [x])
    with pytest.raises(ValueError, match=r"argument 'out' overlaps argument 'inputs\[1\]'"):
        _core.average_ranks(out, [x, out])
    with pytest.raises(ValueError, match="argument 'out' overlaps argument 'out2'"):
        _core.average_ranks(out, [x], out)
    with pytest.raises(ValueError, match=r"argument 'out2' overlaps argument 'inputs\[0\]'"):
        _core.average_ranks(out, [x], x)
    with pytest.raises(ValueError, match="argument 'out2' must have out's 5 elements"):
        _core.average_ranks(out, [x], np.empty(6, np.float32))
    with pytest.raises(TypeError, match="argument 'out2' must have dtype float32"):
        _core.average_ranks(out, [x], np.empty(5))
    ro = np.empty(5, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="argument 'out' is read-only"):
        _core.average_ranks(ro, [x])
    with pytest.raises(ValueError, match="argument 'out2' is read-only"):
        _core.average_ranks(out, [x], ro)
    with pytest.raises(TypeError, match=r"argument 'inputs\[0\]' must be a numpy.ndarray"):
        _core.average_ranks(out, [[1.0] * 5])
