"""Tests softmax, log-softmax, cross-entropy and MSE through the kernels in `graddesc._core`.

Oracles are NumPy float64: max-subtracted softmax/logsumexp, gradients from the explicit Jacobians
(diag(s) - s s^T for softmax, I - 1 s^T for log-softmax) and from central differences of the
forward kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from graddesc import _core


def _tol(dtype):
    if dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    return {"rtol": 1e-12, "atol": 1e-12}


def oracle_logsumexp(x):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=1, keepdims=True)))[:, 0]


def oracle_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def oracle_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    return x - oracle_logsumexp(x)[:, None]


def oracle_softmax_backward(dy, x):
    s = oracle_softmax(x)
    jac = np.einsum("bi,ij->bij", s, np.eye(s.shape[1])) - np.einsum("bi,bj->bij", s, s)
    return np.einsum("bij,bi->bj", jac, np.asarray(dy, dtype=np.float64))


def oracle_log_softmax_backward(dy, x):
    s = oracle_softmax(x)
    C = s.shape[1]
    jac = np.eye(C)[None, :, :] - np.ones((1, C, 1)) * s[:, None, :]  # d y_i / d x_j
    return np.einsum("bij,bi->bj", jac, np.asarray(dy, dtype=np.float64))


def oracle_cross_entropy(logits, target, ignore_index=-100):
    logits = np.asarray(logits, dtype=np.float64)
    lse = oracle_logsumexp(logits)
    keep = target != ignore_index
    picked = logits[np.arange(len(target)), np.where(keep, target, 0)]
    return np.where(keep, lse - picked, 0.0), lse


def oracle_cross_entropy_backward(dloss, logits, target, ignore_index=-100):
    B, C = logits.shape
    keep = target != ignore_index
    onehot = np.zeros((B, C))
    onehot[np.arange(B)[keep], target[keep]] = 1.0
    g = np.broadcast_to(np.asarray(dloss, dtype=np.float64), (B,))
    return np.where(keep[:, None], g[:, None] * (oracle_softmax(logits) - onehot), 0.0)


SOFTMAX_SHAPES = [(0, 3), (1, 1), (1, 17), (3, 5), (17, 65), (130, 3), (65, 130), (300, 200)]


def _logits(rng, shape, dtype, scale=3.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ------------------------------------------------------------------------------------ softmax


@pytest.mark.parametrize("B,C", SOFTMAX_SHAPES)
def test_kernel_softmax_forward_matches_numpy(isa, float_dtype, rng, B, C):
    x = _logits(rng, (B, C), float_dtype)
    y = _core.softmax_forward(x)
    assert y.shape == (B, C) and y.dtype == float_dtype
    np.testing.assert_allclose(y, oracle_softmax(x), **_tol(float_dtype))
    if B:
        np.testing.assert_allclose(
            y.astype(np.float64).sum(axis=1), 1.0, rtol=10 * np.finfo(float_dtype).eps * C
        )


@pytest.mark.parametrize("B,C", SOFTMAX_SHAPES)
def test_kernel_log_softmax_forward_matches_numpy(isa, float_dtype, rng, B, C):
    x = _logits(rng, (B, C), float_dtype)
    y = _core.log_softmax_forward(x)
    assert y.shape == (B, C) and y.dtype == float_dtype
    np.testing.assert_allclose(y, oracle_log_softmax(x), **_tol(float_dtype))


@pytest.mark.parametrize("B,C", SOFTMAX_SHAPES)
def test_kernel_softmax_backward_matches_jacobian(isa, float_dtype, rng, B, C):
    x = _logits(rng, (B, C), float_dtype)
    dy = rng.standard_normal((B, C)).astype(float_dtype)
    dx = _core.softmax_backward(dy, _core.softmax_forward(x))
    assert dx.shape == (B, C) and dx.dtype == float_dtype
    np.testing.assert_allclose(dx, oracle_softmax_backward(dy, x), **_tol(float_dtype))


@pytest.mark.parametrize("B,C", SOFTMAX_SHAPES)
def test_kernel_log_softmax_backward_matches_jacobian(isa, float_dtype, rng, B, C):
    x = _logits(rng, (B, C), float_dtype)
    dy = rng.standard_normal((B, C)).astype(float_dtype)
    dx = _core.log_softmax_backward(dy, _core.log_softmax_forward(x))
    assert dx.shape == (B, C) and dx.dtype == float_dtype
    tol = _tol(float_dtype)
    # dx = dy - softmax * sum(dy): the sum over C rows of dy adds C roundings
    tol["atol"] *= max(1.0, np.sqrt(C))
    np.testing.assert_allclose(dx, oracle_log_softmax_backward(dy, x), **tol)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("B,C", [(1, 1), (1, 4), (3, 5)])
def test_kernel_softmax_backward_matches_finite_differences(isa, rng, numerical_grad, log, B, C):
    fwd = _core.log_softmax_forward if log else _core.softmax_forward
    bwd = _core.log_softmax_backward if log else _core.softmax_backward
    x = _logits(rng, (B, C), np.float64)
    dy = rng.standard_normal((B, C))
    fd = numerical_grad(lambda v: np.sum(dy * fwd(v)), x)
    np.testing.assert_allclose(bwd(dy, fwd(x)), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("B,C", [(3, 0), (0, 0)])
def test_kernel_softmax_empty_rows(isa, float_dtype, B, C):
    x = np.zeros((B, C), dtype=float_dtype)
    for f in (_core.softmax_forward, _core.log_softmax_forward):
        assert f(x).shape == (B, C)
    assert _core.softmax_backward(x, x).shape == (B, C)
    assert _core.log_softmax_backward(x, x).shape == (B, C)


def test_kernel_softmax_float32_close_to_float64(isa, rng):
    x = _logits(rng, (65, 130), np.float32).astype(np.float64)
    dy = rng.standard_normal((65, 130)).astype(np.float32).astype(np.float64)
    for fwd, bwd in (
        (_core.softmax_forward, _core.softmax_backward),
        (_core.log_softmax_forward, _core.log_softmax_backward),
    ):
        y32, y64 = fwd(x.astype(np.float32)), fwd(x)
        np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
        d32, d64 = bwd(dy.astype(np.float32), y32), bwd(dy, y64)
        np.testing.assert_allclose(d32, d64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30])
def test_kernel_softmax_large_logits_are_stable(isa, float_dtype, rng, scale):
    x = np.array([[1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [3.0, -2.0, 0.25, 1.0]]) * scale
    x = x.astype(float_dtype)
    y = _core.softmax_forward(x)
    ly = _core.log_softmax_forward(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(ly))
    np.testing.assert_allclose(y, oracle_softmax(x), **_tol(float_dtype))
    np.testing.assert_allclose(ly, oracle_log_softmax(x), rtol=_tol(float_dtype)["rtol"], atol=0)
    x2 = (1e4 + rng.standard_normal((5, 7))).astype(float_dtype)  # big offset, O(1) spread
    np.testing.assert_allclose(_core.softmax_forward(x2), oracle_softmax(x2), **_tol(float_dtype))
    np.testing.assert_allclose(
        _core.log_softmax_forward(x2), oracle_log_softmax(x2), **_tol(float_dtype)
    )


def test_kernel_softmax_nan_propagates_like_numpy(isa, float_dtype, rng):
    x = _logits(rng, (4, 5), float_dtype)
    x[1, 3] = np.nan
    with np.errstate(invalid="ignore"):
        ref, lref = oracle_softmax(x), oracle_log_softmax(x)
    y, ly = _core.softmax_forward(x), _core.log_softmax_forward(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(ly), np.isnan(lref))
    assert np.isnan(y[1]).all() and np.isnan(ly[1]).all()
    np.testing.assert_allclose(y, ref, **_tol(float_dtype))
    np.testing.assert_allclose(ly, lref, **_tol(float_dtype))


def test_kernel_softmax_bitwise_equal_across_threads(isa, float_dtype, rng, threads):
    x = _logits(rng, (2001, 130), float_dtype)
    dy = rng.standard_normal(x.shape).astype(float_dtype)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        y, ly = _core.softmax_forward(x), _core.log_softmax_forward(x)
        runs.append((y, ly, _core.softmax_backward(dy, y), _core.log_softmax_backward(dy, ly)))
    for run in runs[1:]:
        for got, ref in zip(run, runs[0]):
            assert np.array_equal(got, ref)


# ------------------------------------------------------------------------------ cross-entropy


def _targets(rng, B, C, ignore_every=0, ignore_index=-100):
    t = rng.integers(0, C, size=B).astype(np.int64) if C else np.full(B, ignore_index, np.int64)
    if ignore_every:
        t[::ignore_every] = ignore_index
    return t


CE_SHAPES = [(0, 3), (1, 1), (1, 17), (3, 5), (17, 65), (130, 3), (300, 200)]


@pytest.mark.parametrize("ignore_every", [0, 3], ids=["all", "some-ignored"])
@pytest.mark.parametrize("B,C", CE_SHAPES)
def test_kernel_cross_entropy_forward_matches_numpy(isa, float_dtype, rng, B, C, ignore_every):
    logits = _logits(rng, (B, C), float_dtype)
    target = _targets(rng, B, C, ignore_every)
    loss, lse = _core.cross_entropy_forward(logits, target)
    assert loss.shape == lse.shape == (B,) and loss.dtype == lse.dtype == float_dtype
    ref_loss, ref_lse = oracle_cross_entropy(logits, target)
    np.testing.assert_allclose(loss, ref_loss, **_tol(float_dtype))
    np.testing.assert_allclose(lse, ref_lse, **_tol(float_dtype))
    assert np.all(loss[target == -100] == 0)


@pytest.mark.parametrize("dloss_kind", ["scalar", "per-row"])
@pytest.mark.parametrize("ignore_every", [0, 3], ids=["all", "some-ignored"])
@pytest.mark.parametrize("B,C", CE_SHAPES)
def test_kernel_cross_entropy_backward_matches_numpy(
    isa, float_dtype, rng, B, C, ignore_every, dloss_kind
):
    logits = _logits(rng, (B, C), float_dtype)
    target = _targets(rng, B, C, ignore_every)
    _, lse = _core.cross_entropy_forward(logits, target)
    if dloss_kind == "scalar":
        dloss = np.array(0.7, dtype=float_dtype)
    else:
        dloss = rng.standard_normal(B).astype(float_dtype)
    dlogits = _core.cross_entropy_backward(dloss, logits, lse, target)
    assert dlogits.shape == (B, C) and dlogits.dtype == float_dtype
    ref = oracle_cross_entropy_backward(dloss, logits, target)
    np.testing.assert_allclose(dlogits, ref, **_tol(float_dtype))
    np.testing.assert_array_equal(dlogits[target == -100], 0)


@pytest.mark.parametrize("ignore_index", [-100, -1, 2])
@pytest.mark.parametrize("B,C", [(1, 3), (4, 5), (6, 4)])
def test_kernel_cross_entropy_backward_matches_finite_differences(
    isa, rng, numerical_grad, B, C, ignore_index
):
    logits = _logits(rng, (B, C), np.float64)
    target = _targets(rng, B, C, ignore_every=2, ignore_index=ignore_index)
    dloss = rng.standard_normal(B)
    fd = numerical_grad(
        lambda v: np.sum(
            dloss * _core.cross_entropy_forward(v, target, ignore_index=ignore_index)[0]
        ),
        logits,
    )
    _, lse = _core.cross_entropy_forward(logits, target, ignore_index=ignore_index)
    got = _core.cross_entropy_backward(dloss, logits, lse, target, ignore_index=ignore_index)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_kernel_cross_entropy_custom_ignore_index(isa, float_dtype, rng):
    logits = _logits(rng, (6, 4), float_dtype)
    target = np.array([0, 2, 1, 2, 3, 2], dtype=np.int64)
    loss, lse = _core.cross_entropy_forward(logits, target, ignore_index=2)
    ref_loss, _ = oracle_cross_entropy(logits, target, ignore_index=2)
    np.testing.assert_allclose(loss, ref_loss, **_tol(float_dtype))
    assert np.all(loss[target == 2] == 0) and np.all(loss[target != 2] > 0)
    d = _core.cross_entropy_backward(
        np.array(1.0, dtype=float_dtype), logits, lse, target, ignore_index=2
    )
    np.testing.assert_allclose(
        d, oracle_cross_entropy_backward(1.0, logits, target, 2), **_tol(float_dtype)
    )
    # -100 is an ordinary (out-of-range) class when it is not the ignore index
    with pytest.raises(ValueError, match=r"cross_entropy_forward: target\[0\] = -100"):
        _core.cross_entropy_forward(logits, np.full(6, -100, dtype=np.int64), ignore_index=2)


def test_kernel_cross_entropy_float32_close_to_float64(isa, rng):
    logits = _logits(rng, (65, 130), np.float32).astype(np.float64)
    target = _targets(rng, 65, 130, ignore_every=5)
    dloss = rng.standard_normal(65).astype(np.float32).astype(np.float64)
    l32, s32 = _core.cross_entropy_forward(logits.astype(np.float32), target)
    l64, s64 = _core.cross_entropy_forward(logits, target)
    np.testing.assert_allclose(l32, l64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s32, s64, rtol=1e-5, atol=1e-5)
    d32 = _core.cross_entropy_backward(
        dloss.astype(np.float32), logits.astype(np.float32), s32, target
    )
    d64 = _core.cross_entropy_backward(dloss, logits, s64, target)
    np.testing.assert_allclose(d32, d64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_kernel_cross_entropy_large_logits_are_stable(isa, float_dtype, scale):
    x = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.5, 1.0, -0.5], [1.0, 1.0, -1.0]]) * scale
    x = x.astype(float_dtype)
    target = np.array([0, 1, 2, 1], dtype=np.int64)
    loss, lse = _core.cross_entropy_forward(x, target)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(lse))
    ref_loss, ref_lse = oracle_cross_entropy(x, target)
    np.testing.assert_allclose(
        loss, ref_loss, rtol=_tol(float_dtype)["rtol"], atol=_tol(float_dtype)["atol"]
    )
    np.testing.assert_allclose(lse, ref_lse, rtol=_tol(float_dtype)["rtol"])
    d = _core.cross_entropy_backward(np.array(1.0, dtype=float_dtype), x, lse, target)
    assert np.all(np.isfinite(d))
    # Backward reads softmax as exp(logits - lse) from the saved lse, which is rounded to the
    # dtype: its probabilities carry a relative error up to eps * |lse| (6e-4 at 1e4 in float32).
    eps = np.finfo(float_dtype).eps
    tol = {"rtol": 2 * eps * abs(scale), "atol": 2 * eps * abs(scale)}
    np.testing.assert_allclose(d, oracle_cross_entropy_backward(1.0, x, target), **tol)


def test_kernel_cross_entropy_nan_propagates(isa, float_dtype, rng):
    logits = _logits(rng, (3, 4), float_dtype)
    logits[1, 2] = np.nan
    target = np.array([0, 1, 3], dtype=np.int64)
    loss, lse = _core.cross_entropy_forward(logits, target)
    assert np.isnan(loss[1]) and np.isnan(lse[1])
    assert np.isfinite(loss[[0, 2]]).all()
    d = _core.cross_entropy_backward(np.array(1.0, dtype=float_dtype), logits, lse, target)
    assert np.isnan(d[1]).all() and np.isfinite(d[[0, 2]]).all()


def test_kernel_cross_entropy_bitwise_equal_across_threads(isa, float_dtype, rng, threads):
    B, C = 2001, 130
    logits = _logits(rng, (B, C), float_dtype)
    target = _targets(rng, B, C, ignore_every=7)
    dloss = rng.standard_normal(B).astype(float_dtype)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        loss, lse = _core.cross_entropy_forward(logits, target)
        d_rows = _core.cross_entropy_backward(dloss, logits, lse, target)
        d_scalar = _core.cross_entropy_backward(
            np.array(0.5, dtype=float_dtype), logits, lse, target
        )
        runs.append((loss, lse, d_rows, d_scalar))
    for run in runs[1:]:
        for got, ref in zip(run, runs[0]):
            assert np.array_equal(got, ref)


# ------------------------------------------------------------------------------------- mse

MSE_SHAPES = [(), (0,), (1,), (3,), (17,), (3, 5, 7), (2, 0, 3), (200_003,)]


@pytest.mark.parametrize("shape", MSE_SHAPES, ids=str)
def test_kernel_mse_forward_matches_numpy(isa, float_dtype, rng, threads, shape):
    threads(2)
    a = rng.standard_normal(shape).astype(float_dtype)
    b = rng.standard_normal(shape).astype(float_dtype)
    out = _core.mse_forward(a, b)
    assert out.shape == () and out.dtype == float_dtype
    ref = np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    rtol = 1e-5 if float_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=0)


@pytest.mark.parametrize("scale", [1.0, -0.5, 2.0 / 17])
@pytest.mark.parametrize("shape", MSE_SHAPES, ids=str)
def test_kernel_mse_backward_matches_numpy(isa, float_dtype, rng, threads, shape, scale):
    threads(2)
    a = rng.standard_normal(shape).astype(float_dtype)
    b = rng.standard_normal(shape).astype(float_dtype)
    da = _core.mse_backward(a, b, scale)
    assert da.shape == a.shape and da.dtype == float_dtype
    ref = float_dtype(scale) * (a.astype(np.float64) - b.astype(np.float64))
    np.testing.assert_allclose(da, ref, **_tol(float_dtype))


def test_kernel_mse_backward_matches_finite_differences(isa, rng, numerical_grad):
    a = rng.standard_normal((3, 5))
    b = rng.standard_normal((3, 5))
    fd = numerical_grad(lambda v: _core.mse_forward(v, b), a)
    np.testing.assert_allclose(_core.mse_backward(a, b, 2.0), fd, rtol=1e-7, atol=1e-8)
    fd_b = numerical_grad(lambda v: _core.mse_forward(a, v), b)
    np.testing.assert_allclose(_core.mse_backward(a, b, -2.0), fd_b, rtol=1e-7, atol=1e-8)


def test_kernel_mse_float32_close_to_float64(isa, rng):
    a = rng.standard_normal(100_001).astype(np.float32)
    b = rng.standard_normal(100_001).astype(np.float32)
    f64 = _core.mse_forward(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(_core.mse_forward(a, b), f64, rtol=1e-5)
    np.testing.assert_allclose(
        _core.mse_backward(a, b, 0.25),
        _core.mse_backward(a.astype(np.float64), b.astype(np.float64), 0.25),
        rtol=1e-6,
        atol=1e-7,
    )


def test_kernel_mse_nan_inf_propagate(isa, float_dtype):
    a = np.array([1.0, np.nan, 3.0], dtype=float_dtype)
    b = np.zeros(3, dtype=float_dtype)
    assert np.isnan(_core.mse_forward(a, b))
    assert np.isnan(_core.mse_backward(a, b, 1.0)[1])
    a[1] = np.inf
    assert _core.mse_forward(a, b) == np.inf
    b[1] = np.inf
    assert np.isnan(_core.mse_forward(a, b))  # inf - inf


def test_kernel_mse_bitwise_equal_across_threads(isa, float_dtype, rng, threads):
    a = rng.standard_normal(200_003).astype(float_dtype)
    b = rng.standard_normal(200_003).astype(float_dtype)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        runs.append((_core.mse_forward(a, b), _core.mse_backward(a, b, 1e-3)))
    for f, d in runs[1:]:
        assert np.array_equal(f, runs[0][0]) and np.array_equal(d, runs[0][1])


# ------------------------------------------------------------------------------ read-only / errors


def test_kernel_loss_read_only_inputs(isa, float_dtype, rng):
    x = _logits(rng, (5, 4), float_dtype)
    dy = rng.standard_normal((5, 4)).astype(float_dtype)
    t = np.array([0, 3, 1, -100, 2], dtype=np.int64)
    g = np.array(1.0, dtype=float_dtype)

    def run():
        y, ly = _core.softmax_forward(x), _core.log_softmax_forward(x)
        loss, lse = _core.cross_entropy_forward(x, t)
        return (
            y,
            ly,
            _core.softmax_backward(dy, y),
            _core.log_softmax_backward(dy, ly),
            loss,
            lse,
            _core.cross_entropy_backward(g, x, lse, t),
            _core.mse_forward(x, dy),
            _core.mse_backward(x, dy, 0.5),
        )

    expect = run()
    for v in (x, dy, t, g):
        v.setflags(write=False)
    for a in expect:
        a.setflags(write=False)
    got = run()
    for a, e in zip(got, expect):
        assert np.array_equal(a, e)
    ro_lse = expect[5]  # a read-only saved output is fine for backward
    assert np.array_equal(_core.cross_entropy_backward(g, x, ro_lse, t), expect[6])


def _f32(*shape):
    return np.zeros(shape, dtype=np.float32)


def _i64(*shape):
    return np.zeros(shape, dtype=np.int64)


def _misaligned(dtype, *shape):
    n, size = int(np.prod(shape)), np.dtype(dtype).itemsize
    return np.frombuffer(bytearray(size * n + 1), dtype=dtype, offset=1).reshape(shape)


SM, LSM = _core.softmax_forward, _core.log_softmax_forward
SMB, LSMB = _core.softmax_backward, _core.log_softmax_backward
CE, CEB = _core.cross_entropy_forward, _core.cross_entropy_backward
ONE = np.array(1.0, dtype=np.float32)

LOSS_ERRORS = [
    # softmax / log_softmax
    pytest.param(
        lambda: SM(_f32(2, 3).astype(np.float16)),
        TypeError,
        r"softmax_forward: argument 'x'.*float16",
        id="sm-float16",
    ),
    pytest.param(
        lambda: LSM(np.zeros((2, 3), dtype=np.int32)),
        TypeError,
        r"log_softmax_forward: argument 'x'.*int32",
        id="lsm-int32",
    ),
    pytest.param(
        lambda: SM(_f32(2, 3).astype(">f4")),
        TypeError,
        r"softmax_forward: argument 'x'",
        id="sm-big-endian",
    ),
    pytest.param(
        lambda: SM([[1.0, 2.0]]),
        TypeError,
        r"softmax_forward: argument 'x' must be a numpy.ndarray",
        id="sm-list",
    ),
    pytest.param(
        lambda: SM(_f32(3)), ValueError, r"softmax_forward: argument 'x' must be 2-d", id="sm-1d"
    ),
    pytest.param(
        lambda: LSM(_f32(2, 3, 4)),
        ValueError,
        r"log_softmax_forward: argument 'x' must be 2-d",
        id="lsm-3d",
    ),
    pytest.param(
        lambda: SM(_f32(3, 2).T),
        ValueError,
        r"softmax_forward: argument 'x' must be C-contiguous",
        id="sm-transposed",
    ),
    pytest.param(
        lambda: LSM(_f32(2, 6)[:, ::2]),
        ValueError,
        r"log_softmax_forward: argument 'x' must be C-contiguous",
        id="lsm-strided",
    ),
    pytest.param(
        lambda: SM(_misaligned(np.float32, 2, 3)),
        ValueError,
        r"softmax_forward: argument 'x' is not aligned",
        id="sm-misaligned",
    ),
    pytest.param(
        lambda: SMB(_f32(2, 3), _f32(2, 3).astype(np.float64)),
        TypeError,
        r"softmax_backward: argument 'y'.*float32",
        id="smb-mixed",
    ),
    pytest.param(
        lambda: LSMB(_f32(2, 3).astype(np.float16), _f32(2, 3)),
        TypeError,
        r"log_softmax_backward: argument 'dy'.*float16",
        id="lsmb-float16",
    ),
    pytest.param(
        lambda: SMB(_f32(2, 3), _f32(3, 2)),
        ValueError,
        r"softmax_backward: argument 'y' expected shape \(2, 3\), got \(3, 2\)",
        id="smb-shape",
    ),
    pytest.param(
        lambda: LSMB(_f32(3), _f32(3)),
        ValueError,
        r"log_softmax_backward: argument 'dy' must be 2-d",
        id="lsmb-1d",
    ),
    pytest.param(
        lambda: SMB(_f32(2, 3), _f32(3, 2).T),
        ValueError,
        r"softmax_backward: argument 'y' must be C-contiguous",
        id="smb-transposed",
    ),
    pytest.param(
        lambda: LSMB(_f32(2, 3), [[0.0] * 3] * 2),
        TypeError,
        r"log_softmax_backward: argument 'y' must be a numpy.ndarray",
        id="lsmb-list",
    ),
    # cross_entropy_forward
    pytest.param(
        lambda: CE(_f32(2, 3).astype(np.float16), _i64(2)),
        TypeError,
        r"cross_entropy_forward: argument 'logits'.*float16",
        id="ce-float16",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3).astype(">f8"), _i64(2)),
        TypeError,
        r"cross_entropy_forward: argument 'logits'",
        id="ce-big-endian",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), np.zeros(2, dtype=np.int32)),
        TypeError,
        r"cross_entropy_forward: argument 'target'.*int64.*int32",
        id="ce-target-int32",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), _f32(2)),
        TypeError,
        r"cross_entropy_forward: argument 'target'.*int64",
        id="ce-target-float",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), _i64(2).astype(">i8")),
        TypeError,
        r"cross_entropy_forward: argument 'target'",
        id="ce-target-big-endian",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), [0, 1]),
        TypeError,
        r"cross_entropy_forward: argument 'target' must be a numpy.ndarray",
        id="ce-target-list",
    ),
    pytest.param(
        lambda: CE(_f32(3), _i64(1)),
        ValueError,
        r"cross_entropy_forward: argument 'logits' must be 2-d",
        id="ce-1d",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), _i64(3)),
        ValueError,
        r"cross_entropy_forward: argument 'target' expected shape \(2,\), got \(3,\)",
        id="ce-target-shape",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), _i64(2, 1)),
        ValueError,
        r"cross_entropy_forward: argument 'target' expected shape \(2,\), got \(2, 1\)",
        id="ce-target-2d",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), np.array([0, 3], dtype=np.int64)),
        ValueError,
        r"cross_entropy_forward: target\[1\] = 3 is out of range",
        id="ce-target-high",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), np.array([-1, 0], dtype=np.int64)),
        ValueError,
        r"cross_entropy_forward: target\[0\] = -1 is out of range",
        id="ce-target-negative",
    ),
    pytest.param(
        lambda: CE(_f32(3, 2).T, _i64(2)),
        ValueError,
        r"cross_entropy_forward: argument 'logits' must be C-contiguous",
        id="ce-transposed",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), _i64(4)[::2]),
        ValueError,
        r"cross_entropy_forward: argument 'target' must be C-contiguous",
        id="ce-target-strided",
    ),
    pytest.param(
        lambda: CE(_f32(2, 3), _misaligned(np.int64, 2)),
        ValueError,
        r"cross_entropy_forward: argument 'target' is not aligned",
        id="ce-target-misaligned",
    ),
    pytest.param(
        lambda: CE(_misaligned(np.float32, 2, 3), _i64(2)),
        ValueError,
        r"cross_entropy_forward: argument 'logits' is not aligned",
        id="ce-misaligned",
    ),
    # cross_entropy_backward
    pytest.param(
        lambda: CEB(ONE.astype(np.float64), _f32(2, 3), _f32(2), _i64(2)),
        TypeError,
        r"cross_entropy_backward: argument 'dloss'.*float32",
        id="ceb-mixed-dloss",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3), _f32(2).astype(np.float64), _i64(2)),
        TypeError,
        r"cross_entropy_backward: argument 'lse'.*float32",
        id="ceb-mixed-lse",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3).astype(np.float16), _f32(2), _i64(2)),
        TypeError,
        r"cross_entropy_backward: argument 'logits'.*float16",
        id="ceb-float16",
    ),
    pytest.param(
        lambda: CEB(1.0, _f32(2, 3), _f32(2), _i64(2)),
        TypeError,
        r"cross_entropy_backward: argument 'dloss' must be a numpy.ndarray",
        id="ceb-float-dloss",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3), _f32(2), np.zeros(2, dtype=np.int32)),
        TypeError,
        r"cross_entropy_backward: argument 'target'.*int64",
        id="ceb-target-int32",
    ),
    pytest.param(
        lambda: CEB(_f32(3), _f32(2, 3), _f32(2), _i64(2)),
        ValueError,
        r"cross_entropy_backward: argument 'dloss' expected shape \(2,\), got \(3,\)",
        id="ceb-dloss-shape",
    ),
    pytest.param(
        lambda: CEB(_f32(2, 1), _f32(2, 3), _f32(2), _i64(2)),
        ValueError,
        r"cross_entropy_backward: argument 'dloss' expected shape \(2,\), got \(2, 1\)",
        id="ceb-dloss-2d",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3), _f32(3), _i64(2)),
        ValueError,
        r"cross_entropy_backward: argument 'lse' expected shape \(2,\), got \(3,\)",
        id="ceb-lse-shape",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3), _f32(2), _i64(1)),
        ValueError,
        r"cross_entropy_backward: argument 'target' expected shape \(2,\), got \(1,\)",
        id="ceb-target-shape",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3), _f32(2), np.array([0, 7], dtype=np.int64)),
        ValueError,
        r"cross_entropy_backward: target\[1\] = 7 is out of range",
        id="ceb-target-range",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2, 3), _f32(2, 3)[:, 0], _i64(2)),
        ValueError,
        r"cross_entropy_backward: argument 'lse' must be C-contiguous",
        id="ceb-lse-strided",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(3, 2).T, _f32(2), _i64(2)),
        ValueError,
        r"cross_entropy_backward: argument 'logits' must be C-contiguous",
        id="ceb-transposed",
    ),
    pytest.param(
        lambda: CEB(ONE, _f32(2), _f32(2), _i64(2)),
        ValueError,
        r"cross_entropy_backward: argument 'logits' must be 2-d",
        id="ceb-logits-1d",
    ),
    # mse
    pytest.param(
        lambda: _core.mse_forward(_f32(3), _f32(3).astype(np.float64)),
        TypeError,
        r"mse_forward: argument 'target'.*float32",
        id="mse-mixed",
    ),
    pytest.param(
        lambda: _core.mse_forward(_f32(3).astype(np.float16), _f32(3)),
        TypeError,
        r"mse_forward: argument 'input'.*float16",
        id="mse-float16",
    ),
    pytest.param(
        lambda: _core.mse_forward(np.zeros(3, dtype=np.int32), _f32(3)),
        TypeError,
        r"mse_forward: argument 'input'.*int32",
        id="mse-int32",
    ),
    pytest.param(
        lambda: _core.mse_forward(_f32(3), _f32(3).astype(">f4")),
        TypeError,
        r"mse_forward: argument 'target'",
        id="mse-big-endian",
    ),
    pytest.param(
        lambda: _core.mse_forward([1.0, 2.0], _f32(2)),
        TypeError,
        r"mse_forward: argument 'input' must be a numpy.ndarray",
        id="mse-list",
    ),
    pytest.param(
        lambda: _core.mse_forward(_f32(3), _f32(4)),
        ValueError,
        r"mse_forward: argument 'target' expected shape \(3,\), got \(4,\)",
        id="mse-shape",
    ),
    pytest.param(
        lambda: _core.mse_forward(_f32(2, 3), _f32(6)),
        ValueError,
        r"mse_forward: argument 'target' expected shape \(2, 3\), got \(6,\)",
        id="mse-ndim",
    ),
    pytest.param(
        lambda: _core.mse_forward(_f32(3, 2).T, _f32(2, 3)),
        ValueError,
        r"mse_forward: argument 'input' must be C-contiguous",
        id="mse-transposed",
    ),
    pytest.param(
        lambda: _core.mse_forward(_misaligned(np.float32, 3), _f32(3)),
        ValueError,
        r"mse_forward: argument 'input' is not aligned",
        id="mse-misaligned",
    ),
    pytest.param(
        lambda: _core.mse_backward(_f32(3), _f32(3).astype(np.float64), 1.0),
        TypeError,
        r"mse_backward: argument 'target'.*float32",
        id="mseb-mixed",
    ),
    pytest.param(
        lambda: _core.mse_backward(_f32(3), _f32(2), 1.0),
        ValueError,
        r"mse_backward: argument 'target' expected shape \(3,\), got \(2,\)",
        id="mseb-shape",
    ),
    pytest.param(
        lambda: _core.mse_backward(_f32(3), _f32(6)[::2], 1.0),
        ValueError,
        r"mse_backward: argument 'target' must be C-contiguous",
        id="mseb-strided",
    ),
    pytest.param(
        lambda: _core.mse_backward(_f32(3), [0.0] * 3, 1.0),
        TypeError,
        r"mse_backward: argument 'target' must be a numpy.ndarray",
        id="mseb-list",
    ),
]


@pytest.mark.parametrize("call,exc,match", LOSS_ERRORS)
def test_kernel_loss_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
