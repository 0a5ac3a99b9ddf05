"""Tests gemm and the linear layer kernels through `graddesc._core`.

Oracles are NumPy float64 products; tolerances come from the standard error bound of a dot product,
|fl(a . b) - a . b| <= K eps |a| . |b|, so they hold for any summation order the kernels choose.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graddesc as gd
from _arrays import misaligned_f32
from graddesc import _core
from graddesc.autograd import gradcheck, gradgradcheck

SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]

# (M, N, K): odd sizes, empty dimensions, K = 1 outer products, M <= 4 (the dot-product path)
# and sizes that cross the parallel threshold.
GEMM_SHAPES = [
    (1, 1, 1),
    (3, 17, 5),
    (17, 3, 65),
    (65, 130, 17),
    (130, 65, 3),
    (1, 130, 65),
    (4, 17, 65),
    (5, 33, 9),
    (17, 65, 1),
    (0, 3, 4),
    (3, 0, 4),
    (3, 4, 0),
]
TRANS = [(False, False), (True, False), (False, True), (True, True)]
TRANS_IDS = ["nn", "tn", "nt", "tt"]


def _operands(rng, M, N, K, ta, tb, dtype):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return a, b


def _op(m, trans):
    return m.T if trans else m


def _assert_product_close(got, ref, bound, K, dtype):
    """|got - ref| <= tol * bound elementwise, bound = |alpha| |op(a)| |op(b)| (+ |beta| |c|)."""
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == ref.shape
    tol = 2.0 * (K + 4) * np.finfo(dtype).eps
    err = np.abs(got64 - ref)
    limit = tol * bound + np.finfo(dtype).tiny
    worst = float(np.max(err - limit)) if err.size else 0.0
    assert np.all(err <= limit), f"max error exceeds the bound by {worst:g} (tol {tol:g})"


# ---------------------------------------------------------------------------------------- gemm


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
def test_kernel_gemm_matches_numpy(isa, float_dtype, rng, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    got = _core.gemm(a, b, trans_a=ta, trans_b=tb)
    assert got.dtype == float_dtype and got.shape == (M, N)
    assert got.flags.c_contiguous
    a64, b64 = _op(a.astype(np.float64), ta), _op(b.astype(np.float64), tb)
    _assert_product_close(got, a64 @ b64, np.abs(a64) @ np.abs(b64), K, float_dtype)


@pytest.mark.parametrize(
    "alpha,beta", [(2.5, 0.0), (1.0, 1.0), (-0.5, 0.75), (0.0, 2.0), (1.0, -1.0)]
)
@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("M,N,K", [(3, 17, 5), (17, 65, 1), (4, 130, 33), (33, 9, 65), (2, 3, 0)])
def test_kernel_gemm_alpha_beta_out(isa, float_dtype, rng, M, N, K, ta, tb, alpha, beta):
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    c = rng.standard_normal((M, N)).astype(float_dtype)
    c_before = c.astype(np.float64)
    got = _core.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=c)
    assert got is c  # written in place and handed back
    a64, b64 = _op(a.astype(np.float64), ta), _op(b.astype(np.float64), tb)
    ref = alpha * (a64 @ b64) + beta * c_before
    bound = abs(alpha) * (np.abs(a64) @ np.abs(b64)) + abs(beta) * np.abs(c_before)
    _assert_product_close(c, ref, bound, K, float_dtype)


@pytest.mark.parametrize("M,N,K", [(3, 17, 5), (33, 9, 65)])
def test_kernel_gemm_alpha_without_out(isa, float_dtype, rng, M, N, K):
    a, b = _operands(rng, M, N, K, False, False, float_dtype)
    got = _core.gemm(a, b, alpha=-3.0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    _assert_product_close(
        got, -3.0 * (a64 @ b64), 3.0 * (np.abs(a64) @ np.abs(b64)), K, float_dtype
    )


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("M,N,K", [(3, 17, 5), (33, 9, 65)])
def test_kernel_gemm_beta_zero_ignores_out_contents(isa, float_dtype, rng, M, N, K, ta, tb):
    # beta = 0 means "overwrite": stale NaN/Inf in the output buffer must not leak through.
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    c = np.full((M, N), np.nan, dtype=float_dtype)
    c[0, 0] = np.inf
    _core.gemm(a, b, trans_a=ta, trans_b=tb, beta=0.0, out=c)
    a64, b64 = _op(a.astype(np.float64), ta), _op(b.astype(np.float64), tb)
    _assert_product_close(c, a64 @ b64, np.abs(a64) @ np.abs(b64), K, float_dtype)


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_kernel_gemm_large_crosses_parallel_threshold(isa, float_dtype, rng, threads, ta, tb):
    threads(2)
    M, N, K = 300, 200, 150
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    got = _core.gemm(a, b, trans_a=ta, trans_b=tb)
    a64, b64 = _op(a.astype(np.float64), ta), _op(b.astype(np.float64), tb)
    ref = a64 @ b64
    _assert_product_close(got, ref, np.abs(a64) @ np.abs(b64), K, float_dtype)
    if float_dtype == np.float64:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_kernel_gemm_float32_close_to_float64(isa, rng):
    a = rng.standard_normal((65, 130))
    b = rng.standard_normal((130, 17))
    a, b = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    g32 = _core.gemm(a.astype(np.float32), b.astype(np.float32))
    g64 = _core.gemm(a, b)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * np.abs(g64).max())


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("M,N,K", [(512, 512, 512), (4, 4096, 256)], ids=["square", "dots"])
def test_kernel_gemm_bitwise_equal_across_threads(isa, float_dtype, rng, threads, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    c0 = rng.standard_normal((M, N)).astype(float_dtype)
    results = []
    for n in (1, 2, 3):
        threads(n)
        c = c0.copy()
        _core.gemm(a, b, trans_a=ta, trans_b=tb, alpha=0.5, beta=0.25, out=c)
        results.append((_core.gemm(a, b, trans_a=ta, trans_b=tb), c))
    for plain, scaled in results[1:]:
        assert np.array_equal(plain, results[0][0])
        assert np.array_equal(scaled, results[0][1])


def test_kernel_gemm_nan_and_inf_propagate(isa, float_dtype):
    a = np.ones((3, 4), dtype=float_dtype)
    b = np.ones((4, 5), dtype=float_dtype)
    a[1, 2] = np.nan
    b[0, 3] = np.inf
    got = _core.gemm(a, b)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[finite], ref[finite])


def test_kernel_gemm_read_only_inputs(isa, float_dtype, rng):
    a, b = _operands(rng, 17, 9, 33, False, True, float_dtype)
    a.setflags(write=False)
    b.setflags(write=False)
    got = _core.gemm(a, b, trans_b=True)
    a64, b64 = a.astype(np.float64), b.astype(np.float64).T
    _assert_product_close(got, a64 @ b64, np.abs(a64) @ np.abs(b64), 33, float_dtype)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    M=st.integers(0, 40),
    N=st.integers(0, 40),
    K=st.integers(0, 40),
    ta=st.booleans(),
    tb=st.booleans(),
    alpha=st.sampled_from([1.0, -2.0, 0.5]),
    beta=st.sampled_from([0.0, 1.0, -0.25]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_gemm_random_shapes(M, N, K, ta, tb, alpha, beta, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, M, N, K, ta, tb, dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    a64, b64 = _op(a.astype(np.float64), ta), _op(b.astype(np.float64), tb)
    ref = alpha * (a64 @ b64) + beta * c0.astype(np.float64)
    bound = abs(alpha) * (np.abs(a64) @ np.abs(b64)) + abs(beta) * np.abs(c0.astype(np.float64))
    previous = _core.isa()
    try:
        for name in SUPPORTED_ISAS:
            _core.set_isa(name)
            c = c0.copy()
            _core.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=c)
            _assert_product_close(c, ref, bound, K, dtype)
    finally:
        _core.set_isa(previous)


def _f32(*shape):
    return np.zeros(shape, dtype=np.float32)


GEMM_ERRORS = [
    pytest.param(
        lambda: _core.gemm(_f32(2, 3).astype(np.float16), _f32(3, 2)),
        TypeError,
        r"gemm: argument 'a'.*float16",
        id="float16",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3).astype(np.int32), _f32(3, 2)),
        TypeError,
        r"gemm: argument 'a'.*int32",
        id="int32",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2).astype(">f4")),
        TypeError,
        r"gemm: argument 'b'",
        id="big-endian",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2).astype(np.float64)),
        TypeError,
        r"gemm: argument 'b'.*float64",
        id="mixed",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2), out=_f32(2, 2).astype(np.float64)),
        TypeError,
        r"gemm: argument 'out'",
        id="out-dtype",
    ),
    pytest.param(
        lambda: _core.gemm([[1.0, 2.0]], _f32(2, 1)),
        TypeError,
        r"gemm: argument 'a' must be a numpy.ndarray",
        id="list",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(3), _f32(3, 2)),
        ValueError,
        r"gemm: argument 'a' must be 2-d",
        id="a-1d",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2, 1)),
        ValueError,
        r"gemm: argument 'b' must be 2-d",
        id="b-3d",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(4, 2)),
        ValueError,
        r"gemm: inner dimensions differ",
        id="inner",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(4, 3), trans_b=False),
        ValueError,
        r"gemm: inner dimensions differ",
        id="inner-trans",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2), out=_f32(2, 3)),
        ValueError,
        r"gemm: argument 'out' expected shape \(2, 2\), got \(2, 3\)",
        id="out-shape",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2), beta=1.0),
        ValueError,
        r"gemm: beta != 0 needs .*'out'",
        id="beta-no-out",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(4, 4).T, _f32(4, 2)),
        ValueError,
        r"gemm: argument 'a' must be C-contiguous",
        id="transposed-view",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 8)[:, ::2]),
        ValueError,
        r"gemm: argument 'b' must be C-contiguous",
        id="strided",
    ),
    pytest.param(
        lambda: _core.gemm(_f32(2, 3), _f32(3, 2), out=_f32(2, 4)[:, ::2]),
        ValueError,
        r"gemm: argument 'out' must be C-contiguous",
        id="out-strided",
    ),
    pytest.param(
        lambda: _core.gemm(misaligned_f32(2, 3), _f32(3, 2)),
        ValueError,
        r"gemm: argument 'a' is not aligned",
        id="misaligned",
    ),
]


@pytest.mark.parametrize("call,exc,match", GEMM_ERRORS)
def test_kernel_gemm_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_kernel_gemm_out_read_only_or_overlapping():
    a = np.ones((3, 3), dtype=np.float64)
    b = np.ones((3, 3), dtype=np.float64)
    out = np.zeros((3, 3))
    out.setflags(write=False)
    with pytest.raises(ValueError, match=r"gemm: argument 'out' is read-only"):
        _core.gemm(a, b, out=out)
    with pytest.raises(ValueError, match=r"gemm: argument 'out' overlaps argument 'a'"):
        _core.gemm(a, b, out=a)
    with pytest.raises(ValueError, match=r"gemm: argument 'out' overlaps argument 'b'"):
        _core.gemm(a, b, out=b)
    buf = np.ones(18)
    with pytest.raises(ValueError, match=r"gemm: argument 'out' overlaps argument 'a'"):
        _core.gemm(buf[:9].reshape(3, 3), b, out=buf[6:15].reshape(3, 3))
    np.testing.assert_array_equal(a, 1.0)
    np.testing.assert_array_equal(b, 1.0)


# -------------------------------------------------------------------------------------- linear


def _linear_oracle(x, w, b):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y = y + b.astype(np.float64)
    bound = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    if b is not None:
        bound = bound + np.abs(b.astype(np.float64))
    return y, bound


LINEAR_SHAPES = [(0, 3, 5), (1, 1, 1), (1, 17, 3), (3, 5, 4), (17, 65, 3), (130, 17, 65), (4, 0, 3)]


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("B,IN,OUT", LINEAR_SHAPES)
def test_kernel_linear_forward_matches_numpy(isa, float_dtype, rng, B, IN, OUT, with_bias):
    x = rng.standard_normal((B, IN)).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    b = rng.standard_normal(OUT).astype(float_dtype) if with_bias else None
    got = _core.linear_forward(x, w, b)
    assert got.dtype == float_dtype and got.shape == (B, OUT)
    ref, bound = _linear_oracle(x, w, b)
    _assert_product_close(got, ref, bound, IN + 1, float_dtype)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("IN,OUT", [(1, 1), (17, 3), (65, 130)])
def test_kernel_linear_forward_vector_input(isa, float_dtype, rng, IN, OUT, with_bias):
    x = rng.standard_normal(IN).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    b = rng.standard_normal(OUT).astype(float_dtype) if with_bias else None
    got = _core.linear_forward(x, w, bias=b)
    assert got.shape == (OUT,)
    ref, bound = _linear_oracle(x[None, :], w, b)
    _assert_product_close(got, ref[0], bound[0], IN + 1, float_dtype)


def test_kernel_linear_forward_large_and_float32_close_to_float64(isa, rng, threads):
    threads(2)
    x = rng.standard_normal((300, 200)).astype(np.float32)
    w = rng.standard_normal((150, 200)).astype(np.float32)
    b = rng.standard_normal(150).astype(np.float32)
    y32 = _core.linear_forward(x, w, b)
    y64 = _core.linear_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    ref, _ = _linear_oracle(x, w, b)
    np.testing.assert_allclose(y64, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("B,IN,OUT", LINEAR_SHAPES)
def test_kernel_linear_backward_matches_analytic(isa, float_dtype, rng, B, IN, OUT):
    x = rng.standard_normal((B, IN)).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    dy = rng.standard_normal((B, OUT)).astype(float_dtype)
    dx, dw, db = _core.linear_backward(dy, x, w)
    assert dx.shape == (B, IN) and dw.shape == (OUT, IN) and db.shape == (OUT,)
    assert dx.dtype == dw.dtype == db.dtype == float_dtype
    x64, w64, dy64 = (v.astype(np.float64) for v in (x, w, dy))
    _assert_product_close(dx, dy64 @ w64, np.abs(dy64) @ np.abs(w64), OUT, float_dtype)
    _assert_product_close(dw, dy64.T @ x64, np.abs(dy64).T @ np.abs(x64), B, float_dtype)
    _assert_product_close(db, dy64.sum(axis=0), np.abs(dy64).sum(axis=0), B, float_dtype)


@pytest.mark.parametrize("IN,OUT", [(1, 1), (17, 3), (65, 130)])
def test_kernel_linear_backward_vector_input_is_outer_product(isa, float_dtype, rng, IN, OUT):
    x = rng.standard_normal(IN).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    dy = rng.standard_normal(OUT).astype(float_dtype)
    dx, dw, db = _core.linear_backward(dy, x, w)
    assert dx.shape == (IN,) and dw.shape == (OUT, IN) and db.shape == (OUT,)
    x64, w64, dy64 = (v.astype(np.float64) for v in (x, w, dy))
    _assert_product_close(dx, dy64 @ w64, np.abs(dy64) @ np.abs(w64), OUT, float_dtype)
    _assert_product_close(dw, np.outer(dy64, x64), np.abs(np.outer(dy64, x64)), 1, float_dtype)
    np.testing.assert_array_equal(db, dy)


@pytest.mark.parametrize("B,IN,OUT", [(1, 4, 3), (3, 5, 2), (5, 2, 7)])
def test_kernel_linear_backward_matches_finite_differences(isa, rng, numerical_grad, B, IN, OUT):
    x = rng.standard_normal((B, IN))
    w = rng.standard_normal((OUT, IN))
    b = rng.standard_normal(OUT)
    dy = rng.standard_normal((B, OUT))

    def loss(x_, w_, b_):
        return float(np.sum(dy * _core.linear_forward(x_, w_, b_)))

    dx, dw, db = _core.linear_backward(dy, x, w)
    np.testing.assert_allclose(dx, numerical_grad(lambda v: loss(v, w, b), x), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(dw, numerical_grad(lambda v: loss(x, v, b), w), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(db, numerical_grad(lambda v: loss(x, w, v), b), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("need", [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])
def test_kernel_linear_backward_need_flags(isa, float_dtype, rng, need):
    x = rng.standard_normal((5, 3)).astype(float_dtype)
    w = rng.standard_normal((4, 3)).astype(float_dtype)
    dy = rng.standard_normal((5, 4)).astype(float_dtype)
    full = _core.linear_backward(dy, x, w)
    got = _core.linear_backward(
        dy, x, w, need_dx=bool(need[0]), need_dw=bool(need[1]), need_db=bool(need[2])
    )
    assert isinstance(got, tuple) and len(got) == 3
    for wanted, part, ref in zip(need, got, full):
        if wanted:
            assert np.array_equal(part, ref)
        else:
            assert part is None


# On 2 threads a backward that needs dx and dW computes the two products at once, one per thread
# (above a size): every subset of outputs must still give the 1-thread bits, above and below it.
@pytest.mark.parametrize("B,IN,OUT", [(64, 96, 48), (2, 9, 5), (300, 200, 150)])
@pytest.mark.parametrize("need", [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])
def test_kernel_linear_backward_two_threads_bitwise(isa, float_dtype, rng, threads, B, IN, OUT,
                                                     need):
    x = rng.standard_normal((B, IN)).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    dy = rng.standard_normal((B, OUT)).astype(float_dtype)
    threads(1)
    ref = _core.linear_backward(dy, x, w)
    threads(2)
    got = _core.linear_backward(
        dy, x, w, need_dx=bool(need[0]), need_dw=bool(need[1]), need_db=bool(need[2])
    )
    for wanted, part, r in zip(need, got, ref):
        if wanted:
            assert np.array_equal(part, r)
        else:
            assert part is None
    # and the 2-thread products are the products (float64 oracle)
    if need == (1, 1, 1):
        x64, w64, dy64 = (v.astype(np.float64) for v in (x, w, dy))
        _assert_product_close(got[0], dy64 @ w64, np.abs(dy64) @ np.abs(w64), OUT, float_dtype)
        _assert_product_close(got[1], dy64.T @ x64, np.abs(dy64).T @ np.abs(x64), B,
                              float_dtype)


def test_kernel_linear_backward_large(isa, float_dtype, rng, threads):
    threads(2)
    B, IN, OUT = 300, 200, 150
    x = rng.standard_normal((B, IN)).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    dy = rng.standard_normal((B, OUT)).astype(float_dtype)
    dx, dw, db = _core.linear_backward(dy, x, w)
    x64, w64, dy64 = (v.astype(np.float64) for v in (x, w, dy))
    _assert_product_close(dx, dy64 @ w64, np.abs(dy64) @ np.abs(w64), OUT, float_dtype)
    _assert_product_close(dw, dy64.T @ x64, np.abs(dy64).T @ np.abs(x64), B, float_dtype)
    _assert_product_close(db, dy64.sum(axis=0), np.abs(dy64).sum(axis=0), B, float_dtype)


@pytest.mark.parametrize("B", [1, 3, 512])
def test_kernel_linear_bitwise_equal_across_threads(isa, float_dtype, rng, threads, B):
    IN, OUT = 512, 384
    x = rng.standard_normal((B, IN)).astype(float_dtype)
    w = rng.standard_normal((OUT, IN)).astype(float_dtype)
    b = rng.standard_normal(OUT).astype(float_dtype)
    dy = rng.standard_normal((B, OUT)).astype(float_dtype)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        runs.append((_core.linear_forward(x, w, b), *_core.linear_backward(dy, x, w)))
    for run in runs[1:]:
        for got, ref in zip(run, runs[0]):
            assert np.array_equal(got, ref)


def test_kernel_linear_nan_propagates(isa, float_dtype):
    x = np.ones((2, 3), dtype=float_dtype)
    w = np.ones((4, 3), dtype=float_dtype)
    b = np.zeros(4, dtype=float_dtype)
    x[1, 0] = np.nan
    b[2] = np.inf
    got = _core.linear_forward(x, w, b)
    ref, _ = _linear_oracle(x, w, b)
    np.testing.assert_array_equal(got, ref.astype(float_dtype))


def test_kernel_linear_read_only_inputs(isa, float_dtype, rng):
    x = rng.standard_normal((5, 3)).astype(float_dtype)
    w = rng.standard_normal((4, 3)).astype(float_dtype)
    b = rng.standard_normal(4).astype(float_dtype)
    dy = rng.standard_normal((5, 4)).astype(float_dtype)
    expect = (_core.linear_forward(x, w, b), *_core.linear_backward(dy, x, w))
    for v in (x, w, b, dy):
        v.setflags(write=False)
    got = (_core.linear_forward(x, w, b), *_core.linear_backward(dy, x, w))
    for g, e in zip(got, expect):
        assert np.array_equal(g, e)


LINEAR_ERRORS = [
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3).astype(np.float16), _f32(4, 3)),
        TypeError,
        r"linear_forward: argument 'x'.*float16",
        id="fwd-float16",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3).astype(np.int32), _f32(4, 3)),
        TypeError,
        r"linear_forward: argument 'x'.*int32",
        id="fwd-int32",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3).astype(">f4"), _f32(4, 3)),
        TypeError,
        r"linear_forward: argument 'x'",
        id="fwd-big-endian",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(4, 3).astype(np.float64)),
        TypeError,
        r"linear_forward: argument 'weight'.*float32",
        id="fwd-mixed-weight",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(4, 3), _f32(4).astype(np.float64)),
        TypeError,
        r"linear_forward: argument 'bias'.*float32",
        id="fwd-mixed-bias",
    ),
    pytest.param(
        lambda: _core.linear_forward([1.0, 2.0, 3.0], _f32(4, 3)),
        TypeError,
        r"linear_forward: argument 'x' must be a numpy.ndarray",
        id="fwd-list",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), [[1.0] * 3] * 4),
        TypeError,
        r"linear_forward: argument 'weight' must be a numpy.ndarray",
        id="fwd-list-weight",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 2, 3), _f32(4, 3)),
        ValueError,
        r"linear_forward: argument 'x' must be 1 or 2-d",
        id="fwd-x-3d",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(3)),
        ValueError,
        r"linear_forward: argument 'weight' must be 2-d",
        id="fwd-w-1d",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(4, 5)),
        ValueError,
        r"linear_forward: .*argument 'weight' must have shape \(OUT, 3\), got \(4, 5\)",
        id="fwd-w-shape",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(3, 3), _f32(4)),
        ValueError,
        r"linear_forward: argument 'bias' expected shape \(3,\), got \(4,\)",
        id="fwd-bias-shape",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(3, 3), _f32(1, 3)),
        ValueError,
        r"linear_forward: argument 'bias' expected shape \(3,\), got \(1, 3\)",
        id="fwd-bias-2d",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(3, 2).T, _f32(4, 3)),
        ValueError,
        r"linear_forward: argument 'x' must be C-contiguous",
        id="fwd-transposed",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 6)[:, ::2], _f32(4, 3)),
        ValueError,
        r"linear_forward: argument 'x' must be C-contiguous",
        id="fwd-strided",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(3, 4).T),
        ValueError,
        r"linear_forward: argument 'weight' must be C-contiguous",
        id="fwd-weight-transposed",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), _f32(4, 3), _f32(8)[::2]),
        ValueError,
        r"linear_forward: argument 'bias' must be C-contiguous",
        id="fwd-bias-strided",
    ),
    pytest.param(
        lambda: _core.linear_forward(misaligned_f32(2, 3), _f32(4, 3)),
        ValueError,
        r"linear_forward: argument 'x' is not aligned",
        id="fwd-misaligned",
    ),
    pytest.param(
        lambda: _core.linear_forward(_f32(2, 3), misaligned_f32(4, 3)),
        ValueError,
        r"linear_forward: argument 'weight' is not aligned",
        id="fwd-misaligned-weight",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4), _f32(2, 3).astype(np.float16), _f32(4, 3)),
        TypeError,
        r"linear_backward: argument 'x'.*float16",
        id="bwd-float16",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4).astype(np.float64), _f32(2, 3), _f32(4, 3)),
        TypeError,
        r"linear_backward: argument 'dy'.*float32",
        id="bwd-mixed-dy",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4), _f32(2, 3), _f32(4, 3).astype(">f4")),
        TypeError,
        r"linear_backward: argument 'weight'",
        id="bwd-big-endian",
    ),
    pytest.param(
        lambda: _core.linear_backward([[0.0] * 4] * 2, _f32(2, 3), _f32(4, 3)),
        TypeError,
        r"linear_backward: argument 'dy' must be a numpy.ndarray",
        id="bwd-list",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 5), _f32(2, 3), _f32(4, 3)),
        ValueError,
        r"linear_backward: argument 'dy' expected shape \(2, 4\), got \(2, 5\)",
        id="bwd-dy-shape",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4), _f32(3), _f32(4, 3)),
        ValueError,
        r"linear_backward: argument 'dy' expected shape \(4,\), got \(2, 4\)",
        id="bwd-dy-vector",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4), _f32(2, 3), _f32(4, 2)),
        ValueError,
        r"linear_backward: argument 'weight' expected shape \(4, 3\), got \(4, 2\)",
        id="bwd-w-shape",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4), _f32(1, 2, 3), _f32(4, 3)),
        ValueError,
        r"linear_backward: argument 'x' must be 1 or 2-d",
        id="bwd-x-3d",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(4, 2).T, _f32(2, 3), _f32(4, 3)),
        ValueError,
        r"linear_backward: argument 'dy' must be C-contiguous",
        id="bwd-dy-transposed",
    ),
    pytest.param(
        lambda: _core.linear_backward(_f32(2, 4), _f32(2, 6)[:, ::2], _f32(4, 3)),
        ValueError,
        r"linear_backward: argument 'x' must be C-contiguous",
        id="bwd-strided",
    ),
    pytest.param(
        lambda: _core.linear_backward(misaligned_f32(2, 4), _f32(2, 3), _f32(4, 3)),
        ValueError,
        r"linear_backward: argument 'dy' is not aligned",
        id="bwd-misaligned",
    ),
]


@pytest.mark.parametrize("call,exc,match", LINEAR_ERRORS)
def test_kernel_linear_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- Tensor-level ops (functional/linear.py): matmul, mm, linear -----------------------------
F = gd.nn.functional


def _leaf(rng, shape, dtype=gd.float64):
    return gd.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)


def _check(fn, *inputs):
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((1, 4), (4, 1)),
    ((5, 1), (1, 3)),
    ((4,), (4, 3)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((1,), (1,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
    ((0, 4), (4, 3)),
    ((3, 0), (0, 5)),
    ((3, 4), (4, 0)),
    ((0, 3, 4), (4, 2)),
    ((0,), (0,)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
def test_op_matmul_gradcheck_and_numpy(rng, sa, sb):
    a, b = _leaf(rng, sa), _leaf(rng, sb)
    y = a @ b
    ref = np.matmul(a.detach().numpy(), b.detach().numpy())
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-13, atol=1e-14)
    _check(lambda x, z: x @ z, a, b)
    _check(gd.matmul, a, b)
    y.sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    ones = np.ones(ref.shape)
    av, bv = a.detach().numpy(), b.detach().numpy()
    if len(sa) == 2 and len(sb) == 2:
        np.testing.assert_allclose(a.grad.numpy(), ones @ bv.T, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(b.grad.numpy(), av.T @ ones, rtol=1e-13, atol=1e-14)


# view -> (base shapes, graddesc views, NumPy views)
MATMUL_VIEWS = {
    "a_transposed": (((4, 3), (4, 5)), lambda x, z: (x.t(), z), lambda x, z: (x.T, z)),
    "b_transposed": (((3, 4), (5, 4)), lambda x, z: (x, z.t()), lambda x, z: (x, z.T)),
    "both_transposed": (((4, 3), (5, 4)), lambda x, z: (x.T, z.T), lambda x, z: (x.T, z.T)),
    "strided": (((3, 8), (8, 5)), lambda x, z: (x[:, ::2], z[1::2]),
                lambda x, z: (x[:, ::2], z[1::2])),
    "batched_transposed": (((2, 4, 3), (2, 5, 4)), lambda x, z: (x.transpose(-1, -2), z.mT),
                           lambda x, z: (x.swapaxes(-1, -2), z.swapaxes(-1, -2))),
    "vector_strided": (((3, 4), (9,)), lambda x, z: (x, z[::2][:4]),
                       lambda x, z: (x, z[::2][:4])),
}


@pytest.mark.parametrize("view", sorted(MATMUL_VIEWS))
def test_op_matmul_non_contiguous(rng, view):
    (sa, sb), views, np_views = MATMUL_VIEWS[view]
    ba, bb = _leaf(rng, sa), _leaf(rng, sb)

    def f(x, z):
        u, v = views(x, z)
        return u @ v

    _check(f, ba, bb)
    ref = np.matmul(*np_views(ba.detach().numpy(), bb.detach().numpy()))
    np.testing.assert_allclose(f(ba, bb).detach().numpy(), ref, rtol=1e-13, atol=1e-14)


def test_op_matmul_rmatmul_and_mm(rng):
    a, b = _leaf(rng, (3, 4)), _leaf(rng, (4, 2))
    _check(gd.mm, a, b)
    _check(lambda x, z: x.mm(z), a, b)
    _check(lambda x, z: x.__rmatmul__(z), b, a)
    with pytest.raises(RuntimeError, match="mm"):
        gd.mm(a, b[:, 0])


def test_op_matmul_fan_out_quadratic_form(rng):
    # x^T A x: x feeds both sides of the product; grad = (A + A^T) x, Hessian A + A^T
    A = _leaf(rng, (4, 4))
    x = _leaf(rng, (4,))
    _check(lambda m, v: v @ m @ v, A, x)
    (g,) = gd.autograd.grad(x @ A @ x, x, create_graph=True)
    Av = A.detach().numpy()
    np.testing.assert_allclose(g.detach().numpy(), (Av + Av.T) @ x.detach().numpy(), rtol=1e-13)
    rows = [gd.autograd.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(4)]
    np.testing.assert_allclose(np.stack(rows), Av + Av.T, rtol=1e-14)


def test_op_matmul_errors(rng):
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        _leaf(rng, (3, 4)) @ _leaf(rng, (3, 4))
    with pytest.raises(RuntimeError, match="at least 1 dimension"):
        _leaf(rng, ()) @ _leaf(rng, (3,))
    with pytest.raises(RuntimeError, match="same dtype"):
        _leaf(rng, (3, 4)) @ _leaf(rng, (4,), dtype=gd.float32)


# x shape, OUT, bias
LINEAR_CASES = [
    ((5,), 3, True),
    ((5,), 3, False),
    ((1, 5), 3, True),
    ((4, 5), 3, True),
    ((4, 5), 3, False),
    ((7, 13), 5, True),
    ((1, 1), 1, True),
    ((0, 5), 3, True),
    ((4, 0), 3, True),
    ((4, 5), 0, True),
    ((2, 3, 5), 4, True),
    ((2, 3, 5), 4, False),
    ((2, 1, 3, 5), 2, True),
    ((0, 3, 5), 2, True),
]


def _linear_inputs(rng, xs, out, bias, dtype=gd.float64):
    x = _leaf(rng, xs, dtype)
    W = _leaf(rng, (out, xs[-1]), dtype)
    b = _leaf(rng, (out,), dtype) if bias else None
    return x, W, b


@pytest.mark.parametrize("xs,out,bias", LINEAR_CASES, ids=str)
def test_op_linear_gradcheck_and_numpy(rng, xs, out, bias):
    x, W, b = _linear_inputs(rng, xs, out, bias)
    y = F.linear(x, W, b)
    ref = x.detach().numpy() @ W.detach().numpy().T
    if bias:
        ref = ref + b.detach().numpy()
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-13, atol=1e-14)
    if bias:
        _check(F.linear, x, W, b)
    else:
        _check(lambda u, v: F.linear(u, v), x, W)
    # backward without create_graph runs the fused C++ kernel: compare it with NumPy
    w = rng.standard_normal(ref.shape)
    (y * gd.tensor(w, dtype=gd.float64)).sum().backward()
    rows = int(np.prod(xs[:-1]))
    w2 = w.reshape(rows, out)
    x2 = x.detach().numpy().reshape(rows, xs[-1])
    np.testing.assert_allclose(x.grad.numpy(), (w2 @ W.detach().numpy()).reshape(xs),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(W.grad.numpy(), w2.T @ x2, rtol=1e-12, atol=1e-14)
    if bias:
        np.testing.assert_allclose(b.grad.numpy(), w2.sum(0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("need", ["x", "W", "b", "xW"])
def test_op_linear_partial_requires_grad(rng, need):
    x, W, b = _linear_inputs(rng, (3, 4), 2, True)
    for name, t in (("x", x), ("W", W), ("b", b)):
        t.requires_grad_(name in need)
    F.linear(x, W, b).sum().backward()
    for name, t in (("x", x), ("W", W), ("b", b)):
        assert (t.grad is not None) == (name in need)


@pytest.mark.parametrize("view", ["x_transposed", "x_strided", "W_transposed", "x_3d_permuted"])
def test_op_linear_non_contiguous_inputs(rng, view):
    if view == "x_transposed":
        bx, W, b = _leaf(rng, (5, 4)), _leaf(rng, (3, 5)), _leaf(rng, (3,))
        f = lambda u, v, c: F.linear(u.t(), v, c)  # noqa: E731
    elif view == "x_strided":
        bx, W, b = _leaf(rng, (4, 10)), _leaf(rng, (3, 5)), _leaf(rng, (3,))
        f = lambda u, v, c: F.linear(u[:, ::2], v, c)  # noqa: E731
    elif view == "W_transposed":
        bx, W, b = _leaf(rng, (4, 5)), _leaf(rng, (5, 3)), _leaf(rng, (3,))
        f = lambda u, v, c: F.linear(u, v.t(), c)  # noqa: E731
    else:
        bx, W, b = _leaf(rng, (5, 2, 3)), _leaf(rng, (3, 5)), _leaf(rng, (3,))
        f = lambda u, v, c: F.linear(u.permute(1, 2, 0), v, c)  # noqa: E731
    _check(f, bx, W, b)
    y = f(bx, W, b)
    y.sum().backward()  # the fused kernel path
    g_fused = [t.grad.numpy().copy() for t in (bx, W, b)]
    for t in (bx, W, b):
        t.grad = None
    gs = gd.autograd.grad(f(bx, W, b).sum(), (bx, W, b), create_graph=True)  # the op path
    for a, c in zip(g_fused, gs):
        np.testing.assert_allclose(a, c.detach().numpy(), rtol=1e-13, atol=1e-14)


def test_op_linear_matches_matmul_composition(rng):
    x, W, b = _linear_inputs(rng, (6, 5), 4, True)
    _check(lambda u, v, c: F.linear(u, v, c) - (u @ v.t() + c), x, W, b)
    np.testing.assert_allclose(F.linear(x, W, b).detach().numpy(),
                               (x @ W.T + b).detach().numpy(), rtol=1e-14)


@pytest.mark.parametrize("xs,out", [((7, 13), 5), ((13,), 3), ((2, 3, 9), 4)], ids=str)
def test_op_linear_and_matmul_float32_close_to_float64(rng, xs, out):
    xv, Wv, bv = (rng.standard_normal(xs), rng.standard_normal((out, xs[-1])),
                  rng.standard_normal(out))
    w = rng.standard_normal(xs[:-1] + (out,))
    res = {}
    for dt in (gd.float32, gd.float64):
        x, W, b = (gd.tensor(v, dtype=dt, requires_grad=True) for v in (xv, Wv, bv))
        y = F.linear(x, W, b) + x @ W.t()
        assert y.dtype == dt
        (y * gd.tensor(w, dtype=dt)).sum().backward()
        res[dt] = [t.numpy().astype(np.float64) for t in (y.detach(), x.grad, W.grad, b.grad)]
    for a32, a64 in zip(res[gd.float32], res[gd.float64]):
        np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=1e-4 * np.max(np.abs(a64)))


def test_op_linear_validation(rng):
    x, W, b = _linear_inputs(rng, (3, 4), 2, True)
    with pytest.raises(ValueError, match="4 features"):
        F.linear(x, W.t(), None)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        F.linear(_leaf(rng, ()), W)
    with pytest.raises(TypeError, match="share one float dtype"):
        F.linear(x.float(), W, b)


def test_op_linear_gelu_sigmoid_chain(rng):
    # the lecture's block: weighted sum, nonlinearity, weighted sum, squashing
    x = _leaf(rng, (5, 4))
    W1, b1 = _leaf(rng, (6, 4)), _leaf(rng, (6,))
    W2, b2 = _leaf(rng, (2, 6)), _leaf(rng, (2,))
    _check(lambda u, a, c, d, e: F.linear(gd.gelu(F.linear(u, a, c)), d, e).sigmoid(),
           x, W1, b1, W2, b2)


def test_op_linear_and_matmul_bitwise_equal_across_threads(rng, threads):
    xv, Wv, bv = (rng.standard_normal((300, 129)), rng.standard_normal((65, 129)),
                  rng.standard_normal(65))
    results = []
    for n in (1, 2):
        threads(n)
        x, W, b = (gd.tensor(v, dtype=gd.float32, requires_grad=True) for v in (xv, Wv, bv))
        y = F.linear(x, W, b).tanh() @ W
        (y * y).sum().backward()
        results.append([t.numpy().copy() for t in (y.detach(), x.grad, W.grad, b.grad)])
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)
