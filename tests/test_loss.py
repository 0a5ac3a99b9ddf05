"""Tests softmax, log-softmax, cross-entropy and MSE through the kernels in `graddesc._core`.

Oracles are NumPy float64: max-subtracted softmax/logsumexp, gradients from the explicit Jacobians
(diag(s) - s s^T for softmax, I - 1 s^T for log-softmax) and from central differences of the
forward kernels.
The test_op_* tests at the end differentiate the Tensor-level ops (functional/loss.py) and check
them against NumPy oracles that follow PyTorch's definitions (weights, ignore_index, smoothing).
"""

from __future__ import annotations

import graddesc as gd
import numpy as np
import pytest
from graddesc import _core
from graddesc.autograd import gradcheck, gradgradcheck


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


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e6, -1e6])
def test_kernel_cross_entropy_large_logits_are_stable(isa, float_dtype, scale, threads):
    # rows with ties and near-ties: at 1e6 in float32 the second row of the last block is
    # 1e6 - 10 * ulp-ish apart, where a softmax read through a rounded lse was visibly off
    x = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.5, 1.0, -0.5], [1.0, 1.0, -1.0],
                  [1.0, 1.0 - 1e-4, -1.0], [1.0, 0.99999, 0.99998]]) * scale
    x = x.astype(float_dtype)
    target = np.array([0, 1, 2, 1, 1, 2], dtype=np.int64)
    loss, lse = _core.cross_entropy_forward(x, target)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(lse))
    _, ref_lse = oracle_cross_entropy(x, target)
    # the loss oracle in the shifted form (m - x_t) + log sum exp(x - m): lse - x_t would lose
    # the oracle's own digits to cancellation at 1e6
    x64 = x.astype(np.float64)
    m = x64.max(axis=1)
    ref_loss = (m - x64[np.arange(len(target)), target]) + np.log(
        np.exp(x64 - m[:, None]).sum(axis=1))
    np.testing.assert_allclose(
        loss, ref_loss, rtol=_tol(float_dtype)["rtol"], atol=_tol(float_dtype)["atol"]
    )
    np.testing.assert_allclose(lse, ref_lse, rtol=_tol(float_dtype)["rtol"])
    runs = []
    for n in (1, 2):
        threads(n)
        runs.append(_core.cross_entropy_backward(np.array(1.0, dtype=float_dtype), x, lse, target))
    assert np.array_equal(runs[0], runs[1])
    d = runs[0]
    # the probabilities come from the max-shifted logits, so each is within a few ulps of the
    # float64 oracle's (of the same rounded logits) whatever the logits' size, and rows sum to 0
    eps = np.finfo(float_dtype).eps
    np.testing.assert_allclose(d, oracle_cross_entropy_backward(1.0, x, target), rtol=0,
                               atol=4 * eps)
    np.testing.assert_allclose(d.astype(np.float64).sum(axis=1), 0.0, rtol=0, atol=4 * eps)


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


# ---- Tensor-level ops (functional/loss.py) ------------------------------------------------------
F = gd.nn.functional
REDUCTIONS = ["mean", "sum", "none"]


def _leaf(rng, shape, scale=1.0, dtype=gd.float64):
    return gd.tensor(scale * rng.standard_normal(shape), dtype=dtype, requires_grad=True)


def _check(fn, *inputs):
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def _np_reduce(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (loss.size if denom is None else denom)


def np_log_softmax(z, axis):
    m = np.max(z, axis=axis, keepdims=True, initial=-np.inf)  # initial: empty axes
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) over an empty axis
        return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def np_cross_entropy(z, t, weight=None, ignore_index=-100, reduction="mean",
                     label_smoothing=0.0):
    """PyTorch's cross_entropy in float64 NumPy: logits (N, C, ...) or (C,), targets class
    indices or probabilities."""
    z = np.asarray(z, dtype=np.float64)
    cdim = 0 if z.ndim == 1 else 1
    C = z.shape[cdim]
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    wshape = (C,) + (1,) * (z.ndim - cdim - 1)
    logp = np_log_softmax(z, cdim)
    eps = label_smoothing
    if np.asarray(t).dtype.kind == "f":
        tt = np.asarray(t) * (1 - eps) + eps / C
        loss = -np.sum(logp * tt * w.reshape(wshape), axis=cdim)
        return _np_reduce(loss, reduction)
    t = np.asarray(t)
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    picked = np.take_along_axis(logp, np.expand_dims(ts, cdim), axis=cdim).squeeze(cdim)
    wt = w[ts] * valid
    nll = -picked * wt
    smooth = -np.sum(logp * w.reshape(wshape), axis=cdim) / C * valid
    loss = (1 - eps) * nll + eps * smooth
    return _np_reduce(loss, reduction, denom=wt.sum())


# name -> (logits shape, kwargs, target: "index", "ignore" (some ignore_index), "prob")
CE_CASES = {
    "basic": ((4, 5), {}, "index"),
    "batch_1": ((1, 5), {}, "index"),
    "two_classes": ((3, 2), {}, "index"),
    "one_class": ((3, 1), {}, "index"),
    "odd": ((7, 3), {}, "index"),
    "ignore_index": ((6, 4), {}, "ignore"),
    "ignore_custom": ((6, 4), {"ignore_index": 2}, "index"),
    "weight": ((5, 4), {"weight": [0.5, 2.0, 1.0, 0.25]}, "index"),
    "weight_ignore": ((6, 4), {"weight": [0.5, 2.0, 1.0, 0.25]}, "ignore"),
    "smoothing": ((5, 4), {"label_smoothing": 0.1}, "index"),
    "smoothing_ignore": ((6, 4), {"label_smoothing": 0.2}, "ignore"),
    "smoothing_weight": ((6, 4), {"label_smoothing": 0.3, "weight": [0.5, 2.0, 1.0, 0.25]},
                         "ignore"),
    "smoothing_full": ((3, 4), {"label_smoothing": 1.0}, "index"),
    "prob": ((4, 5), {}, "prob"),
    "prob_smoothing": ((4, 5), {"label_smoothing": 0.25}, "prob"),
    "prob_weight": ((4, 3), {"weight": [0.5, 2.0, 1.0]}, "prob"),
    "vector": ((5,), {}, "index"),
    "vector_prob": ((5,), {}, "prob"),
    "spatial": ((2, 3, 4), {}, "index"),
    "spatial_ignore_weight": ((2, 3, 2, 2), {"weight": [1.0, 3.0, 0.5]}, "ignore"),
    "spatial_smoothing": ((2, 3, 4), {"label_smoothing": 0.1}, "index"),
    "spatial_prob": ((2, 3, 4), {}, "prob"),
}


def _ce_inputs(rng, name):
    shape, kw, kind = CE_CASES[name]
    kw = dict(kw)
    if "weight" in kw:
        kw["weight"] = gd.tensor(kw["weight"], dtype=gd.float64)
    z = _leaf(rng, shape, scale=2.0)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    if kind == "prob":
        p = rng.random(shape)
        t = gd.tensor(p / p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True),
                      dtype=gd.float64)
    else:
        tv = rng.integers(0, C, size=tshape)
        if kind == "ignore":
            flat = tv.reshape(-1)
            flat[::3] = kw.get("ignore_index", -100)
        t = gd.tensor(tv, dtype=gd.int64)
    return z, t, kw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(CE_CASES))
def test_op_cross_entropy_matches_numpy_and_gradcheck(rng, name, reduction):
    z, t, kw = _ce_inputs(rng, name)
    loss = F.cross_entropy(z, t, reduction=reduction, **kw)
    np_kw = {k: (v.numpy() if isinstance(v, gd.Tensor) else v) for k, v in kw.items()}
    ref = np_cross_entropy(z.detach().numpy(), t.numpy(), reduction=reduction, **np_kw)
    assert loss.shape == np.shape(ref)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-13, atol=1e-14)
    _check(lambda x: F.cross_entropy(x, t, reduction=reduction, **kw), z)


@pytest.mark.parametrize("name", ["prob", "prob_smoothing", "prob_weight", "spatial_prob"])
def test_op_cross_entropy_gradient_wrt_probability_target(rng, name):
    z, t, kw = _ce_inputs(rng, name)
    t.requires_grad_(True)
    _check(lambda x, y: F.cross_entropy(x, y, **kw), z, t)


def test_op_cross_entropy_module_and_ignored_gradients(rng):
    z, t, _ = _ce_inputs(rng, "ignore_index")
    loss = gd.nn.CrossEntropyLoss()(z, t)
    loss.backward()
    ignored = t.numpy() == -100
    assert ignored.any()
    np.testing.assert_array_equal(z.grad.numpy()[ignored], 0.0)  # ignored rows get nothing
    np.testing.assert_allclose(z.grad.numpy()[~ignored].sum(1), 0.0, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_op_cross_entropy_batch_0(rng, reduction, kind):
    z = _leaf(rng, (0, 4))
    t = gd.zeros(0, 4, dtype=gd.float64) if kind == "prob" else gd.zeros(0, dtype=gd.int64)
    loss = F.cross_entropy(z, t, reduction=reduction)
    if reduction == "none":
        assert loss.shape == (0,)
    elif reduction == "sum":
        assert loss.item() == 0.0
    else:
        assert np.isnan(loss.item())  # a mean over no samples, as in PyTorch
    loss.sum().backward()
    assert z.grad.shape == (0, 4)


def test_op_cross_entropy_all_ignored_mean_is_nan_with_zero_grad(rng):
    z = _leaf(rng, (3, 4))
    t = gd.full((3,), -100, dtype=gd.int64)
    loss = F.cross_entropy(z, t)
    assert np.isnan(loss.item())
    assert F.cross_entropy(z, t, reduction="sum").item() == 0.0
    F.cross_entropy(z, t, reduction="sum").backward()
    np.testing.assert_array_equal(z.grad.numpy(), 0.0)


@pytest.mark.parametrize("bad", [5, 7, -1, -3])
def test_op_cross_entropy_target_out_of_range_names_the_value(rng, bad):
    z = _leaf(rng, (4, 5))
    t = gd.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"target {bad}\b.*5 classes"):
        F.cross_entropy(z, t)
    with pytest.raises(ValueError, match=rf"target {bad}\b"):
        F.nll_loss(F.log_softmax(z, 1), t)


def test_op_cross_entropy_spatial_target_out_of_range(rng):
    z = _leaf(rng, (2, 3, 4))
    t = gd.zeros(2, 4, dtype=gd.int64)
    t[1, 2] = 3
    with pytest.raises(ValueError, match="target 3"):
        F.cross_entropy(z, t)


def test_op_cross_entropy_argument_validation(rng):
    z = _leaf(rng, (4, 5))
    with pytest.raises(ValueError, match="target of shape"):
        F.cross_entropy(z, gd.zeros(3, dtype=gd.int64))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, gd.zeros(4, dtype=gd.int64), label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight"):
        F.cross_entropy(z, gd.zeros(4, dtype=gd.int64), weight=gd.ones(4, dtype=gd.float64))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, gd.zeros(4, dtype=gd.int64), reduction="avg")
    with pytest.raises(ValueError, match="probability targets"):
        F.cross_entropy(z, gd.zeros(4, 4, dtype=gd.float64))


@pytest.mark.parametrize("scale", [1e4, 1e6])
@pytest.mark.parametrize("name", ["basic", "smoothing_weight", "prob", "spatial"])
def test_op_cross_entropy_large_logits_are_stable(rng, name, scale):
    z, t, kw = _ce_inputs(rng, name)
    z = gd.tensor(z.detach().numpy() * scale, dtype=gd.float64, requires_grad=True)
    loss = F.cross_entropy(z, t, **kw)
    assert np.isfinite(loss.item())
    (g,) = gd.autograd.grad(loss, z, create_graph=True)
    assert np.all(np.isfinite(g.detach().numpy()))
    np_kw = {k: (v.numpy() if isinstance(v, gd.Tensor) else v) for k, v in kw.items()}
    ref = np_cross_entropy(z.detach().numpy(), t.numpy(), **np_kw)
    np.testing.assert_allclose(loss.item(), ref, rtol=1e-12)
    (h,) = gd.autograd.grad((g * g).sum(), z)
    assert np.all(np.isfinite(h.numpy()))


@pytest.mark.parametrize("scale", [1e4, 1e6])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_op_cross_entropy_large_logits_gradient_matches_float64_oracle(
        rng, isa, threads, float_dtype, scale, reduction):
    z0 = (scale * rng.standard_normal((16, 10))).astype(float_dtype)
    z0[3] = z0[3, 0] + np.arange(10)  # a near-tie row: differences far below ulp(scale)
    t = rng.integers(0, 10, 16)
    t[5] = -100
    grads = []
    for n in (1, 2):
        threads(n)
        z = gd.tensor(z0, requires_grad=True)
        assert z.detach().numpy().dtype == float_dtype
        loss = F.cross_entropy(z, gd.tensor(t), reduction=reduction)
        loss.sum().backward()
        grads.append(z.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    keep = t != -100
    want = oracle_cross_entropy_backward(1.0, z0.astype(np.float64), t)
    if reduction == "mean":
        want = want / keep.sum()
    eps = np.finfo(z0.dtype).eps
    np.testing.assert_allclose(grads[0], want, rtol=0, atol=4 * eps)
    np.testing.assert_allclose(grads[0].astype(np.float64).sum(axis=1), 0.0, rtol=0,
                               atol=8 * eps)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_op_cross_entropy_all_ignored_with_label_smoothing(rng, weighted, reduction):
    # PyTorch: the mean over no valid target is NaN (0 / 0), the others 0; the gradient is 0
    z = _leaf(rng, (3, 4))
    t = gd.full((3,), -100, dtype=gd.int64)
    w = gd.tensor([1.0, 2.0, 0.5, 1.5], dtype=gd.float64) if weighted else None
    loss = F.cross_entropy(z, t, weight=w, reduction=reduction, label_smoothing=0.1)
    if reduction == "mean":
        assert np.isnan(loss.item())
    else:
        np.testing.assert_array_equal(loss.detach().numpy(), 0.0)
    loss.sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), 0.0)


def test_op_cross_entropy_ignored_and_smoothing_match_torch(rng):
    torch = pytest.importorskip("torch")
    z0 = rng.standard_normal((5, 4))
    w0 = np.array([1.0, 2.0, 0.5, 1.5])
    for tv in ([-100] * 5, [-100, 1, -100, 3, 0], [2, -100, -100, -100, -100]):
        for weight in (None, w0):
            for reduction in REDUCTIONS:
                kw = {"reduction": reduction, "label_smoothing": 0.2}
                tz = torch.tensor(z0, requires_grad=True)
                want = torch.nn.functional.cross_entropy(
                    tz, torch.tensor(tv), weight=None if weight is None else
                    torch.tensor(weight), **kw)
                want.sum().backward()
                z = gd.tensor(z0, requires_grad=True)
                got = F.cross_entropy(z, gd.tensor(tv), weight=None if weight is None else
                                      gd.tensor(weight), **kw)
                got.sum().backward()
                np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(),
                                           rtol=1e-13, atol=1e-15)
                np.testing.assert_allclose(z.grad.numpy(), tz.grad.numpy(), rtol=1e-12,
                                           atol=1e-15)


def test_op_cross_entropy_large_logits_float32(rng):
    z = gd.tensor(1e4 * rng.standard_normal((8, 10)), dtype=gd.float32, requires_grad=True)
    t = gd.tensor(rng.integers(0, 10, 8))
    loss = F.cross_entropy(z, t)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad.numpy()))


@pytest.mark.parametrize("name", ["basic", "weight_ignore", "smoothing_weight", "prob",
                                  "spatial_ignore_weight"])
def test_op_cross_entropy_float32_close_to_float64(rng, name):
    z, t, kw = _ce_inputs(rng, name)
    res = {}
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(z.detach().numpy(), dtype=dt, requires_grad=True)
        k = {key: (v.to(dt) if isinstance(v, gd.Tensor) else v) for key, v in kw.items()}
        tt = t.to(dt) if t.dtype == gd.float64 else t
        loss = F.cross_entropy(x, tt, **k)
        assert loss.dtype == dt
        loss.backward()
        res[dt] = (loss.item(), x.grad.numpy().astype(np.float64))
    np.testing.assert_allclose(res[gd.float32][0], res[gd.float64][0], rtol=1e-5)
    np.testing.assert_allclose(res[gd.float32][1], res[gd.float64][1], rtol=1e-4, atol=1e-6)


# ---- softmax / log_softmax ----------------------------------------------------------------------
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2, -3])
def test_op_softmax_over_each_dim(rng, log, dim):
    x = _leaf(rng, (2, 3, 4), scale=2.0)
    fn = (lambda t: t.log_softmax(dim)) if log else (lambda t: gd.softmax(t, dim=dim))
    ref = np_log_softmax(x.detach().numpy(), dim)
    np.testing.assert_allclose(fn(x).detach().numpy(), ref if log else np.exp(ref),
                               rtol=1e-13, atol=1e-15)
    _check(fn, x)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", [((), 0), ((1,), 0), ((5,), 0), ((5,), -1), ((3, 1), 1),
                                       ((1, 3), 0), ((0, 3), 1), ((0, 3), 0), ((3, 0), 1),
                                       ((64, 200), 1)], ids=str)
def test_op_softmax_small_and_empty_shapes(rng, log, shape, dim):
    x = _leaf(rng, shape, scale=2.0)
    fn = (lambda t: F.log_softmax(t, dim=dim)) if log else (lambda t: t.softmax(dim))
    y = fn(x)
    assert y.shape == shape
    xv = x.detach().numpy().reshape(shape or (1,))
    ref = np_log_softmax(xv, dim).reshape(shape)
    np.testing.assert_allclose(y.detach().numpy(), ref if log else np.exp(ref), rtol=1e-13,
                               atol=1e-15)
    y.sum().backward()
    assert x.grad.shape == shape
    if x.numel() <= 20:
        _check(fn, _leaf(rng, shape))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("view", ["transposed", "strided", "permuted_3d"])
def test_op_softmax_non_contiguous(rng, log, view):
    if view == "transposed":
        base = _leaf(rng, (5, 3))
        as_view = lambda b: b.t()  # noqa: E731
    elif view == "strided":
        base = _leaf(rng, (3, 10))
        as_view = lambda b: b[:, 1::2]  # noqa: E731
    else:
        base = _leaf(rng, (4, 2, 3))
        as_view = lambda b: b.permute(1, 0, 2)  # noqa: E731
    for dim in range(as_view(base).ndim):
        def fn(b, d=dim):
            v = as_view(b)
            return F.log_softmax(v, d) if log else F.softmax(v, d)

        ref = np_log_softmax(as_view(base).detach().numpy(), dim)
        np.testing.assert_allclose(fn(base).detach().numpy(), ref if log else np.exp(ref),
                                   rtol=1e-13, atol=1e-15)
        _check(fn, base)


def test_op_softmax_dtype_argument_and_module(rng):
    x = _leaf(rng, (3, 4), dtype=gd.float32)
    y = gd.softmax(x, dim=1, dtype=gd.float64)
    assert y.dtype == gd.float64
    y.sum().backward()
    assert x.grad.dtype == gd.float32
    np.testing.assert_allclose(gd.nn.Softmax(dim=0)(x).detach().numpy(),
                               np.exp(np_log_softmax(x.detach().numpy().astype(float), 0)),
                               rtol=1e-6)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_op_softmax_float32_close_to_float64_and_stable(rng, log):
    xv = 50.0 * rng.standard_normal((6, 9))
    xv[0] += 1e4
    w = rng.standard_normal((6, 9))
    res = {}
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(xv, dtype=dt, requires_grad=True)
        y = F.log_softmax(x, 1) if log else F.softmax(x, 1)
        (y * gd.tensor(w, dtype=dt)).sum().backward()
        assert np.all(np.isfinite(y.detach().numpy())) and np.all(np.isfinite(x.grad.numpy()))
        res[dt] = (y.detach().numpy().astype(np.float64), x.grad.numpy().astype(np.float64))
    for a32, a64 in zip(res[gd.float32], res[gd.float64]):
        np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=1e-5 * np.max(np.abs(a64)))


# ---- nll, mse, l1, bce, bce-with-logits, hinge -------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["plain", "weight", "ignore", "weight_ignore", "vector"])
def test_op_nll_loss(rng, reduction, case):
    C = 4
    shape = (C,) if case == "vector" else (6, C)
    logp = F.log_softmax(_leaf(rng, shape), -1).detach().requires_grad_(True)
    t = gd.tensor(rng.integers(0, C, shape[:-1]))
    kw = {}
    if "ignore" in case:
        t[::2] = -100
    if "weight" in case:
        kw["weight"] = gd.tensor([0.5, 2.0, 1.0, 3.0], dtype=gd.float64)
    loss = F.nll_loss(logp, t, reduction=reduction, **kw)
    # nll of log-probabilities is cross-entropy with their logits (log_softmax is idempotent)
    np_kw = {k: v.numpy() for k, v in kw.items()}
    ref = np_cross_entropy(logp.detach().numpy(), t.numpy(), reduction=reduction, **np_kw)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-13, atol=1e-15)
    _check(lambda x: F.nll_loss(x, t, reduction=reduction, **kw), logp)
    _check(lambda x: gd.nn.NLLLoss(reduction=reduction, **kw)(x.log_softmax(-1), t),
           _leaf(rng, shape))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shapes", [((4, 3), (4, 3)), ((), ()), ((1,), (1,)), ((5,), (5,)),
                                    ((2, 3, 2), (2, 3, 2)), ((4, 3), (3,))], ids=str)
def test_op_mse_loss(rng, reduction, shapes):
    a, b = _leaf(rng, shapes[0]), _leaf(rng, shapes[1])
    loss = F.mse_loss(a, b, reduction=reduction)
    ref = _np_reduce((a.detach().numpy() - b.detach().numpy()) ** 2, reduction)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-13)
    _check(lambda x, y: F.mse_loss(x, y, reduction=reduction), a, b)
    _check(lambda x: gd.nn.MSELoss(reduction=reduction)(x, b.detach()), a)


def _away(rng, shape, lo=0.1):
    """Values with lo <= |v| <= 2 (off the kink of |v| at 0)."""
    return rng.uniform(lo, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (5,), (3, 4)], ids=str)
def test_op_l1_loss(rng, reduction, shape):
    b = _leaf(rng, shape)
    a = gd.tensor(b.detach().numpy() + _away(rng, shape), dtype=gd.float64, requires_grad=True)
    loss = F.l1_loss(a, b, reduction=reduction)
    ref = _np_reduce(np.abs(a.detach().numpy() - b.detach().numpy()), reduction)
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-13)
    _check(lambda x, y: F.l1_loss(x, y, reduction=reduction), a, b)
    _check(lambda x: gd.nn.L1Loss(reduction=reduction)(x, b.detach()), a)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(), (6,), (3, 4)], ids=str)
def test_op_binary_cross_entropy(rng, reduction, weighted, shape):
    p = gd.tensor(rng.uniform(0.05, 0.95, shape), dtype=gd.float64, requires_grad=True)
    y = gd.tensor(rng.uniform(0.0, 1.0, shape), dtype=gd.float64, requires_grad=True)
    w = gd.tensor(rng.uniform(0.5, 2.0, shape[-1:]), dtype=gd.float64) if weighted else None
    loss = F.binary_cross_entropy(p, y, weight=w, reduction=reduction)
    pv, yv = p.detach().numpy(), y.detach().numpy()
    ref = -(yv * np.log(pv) + (1 - yv) * np.log1p(-pv)) * (1.0 if w is None else w.numpy())
    np.testing.assert_allclose(loss.detach().numpy(), _np_reduce(ref, reduction), rtol=1e-13)
    _check(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction), p, y)
    _check(lambda a: gd.nn.BCELoss(reduction=reduction)(a, y.detach()), p)


def test_op_binary_cross_entropy_at_0_and_1_is_finite():
    # logs are clamped at -100 (PyTorch), so p = 0 or 1 gives a finite loss
    p = gd.tensor([0.0, 1.0, 0.5], dtype=gd.float64, requires_grad=True)
    y = gd.tensor([1.0, 0.0, 1.0], dtype=gd.float64)
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [100.0, 100.0, np.log(2.0)], rtol=1e-15)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(gd.tensor([1.5], dtype=gd.float64), gd.tensor([1.0],
                                                                              dtype=gd.float64))


def _bce_saturated_case(dtype):
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30, 1.0, 0.0], dtype=dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.3, 0.25, 0.75], dtype=dtype)
    return p, y


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_op_binary_cross_entropy_gradient_at_0_and_1(float_dtype, reduction):
    # PyTorch's backward, in closed form: g (p - y) / max((1 - p) p, 1e-12 as a float), so 0
    # where a saturated p matches its target and about +-1e12 elsewhere, never NaN; the
    # target's gradient is -g logit(p), +-Inf at p = 0 or 1
    pv, yv = _bce_saturated_case(float_dtype)
    p = gd.tensor(pv, requires_grad=True)
    y = gd.tensor(yv, requires_grad=True)
    loss = F.binary_cross_entropy(p, y, reduction=reduction)
    loss.sum().backward()
    g = 1.0 / pv.size if reduction == "mean" else 1.0
    p64, y64 = pv.astype(np.float64), yv.astype(np.float64)
    floor = float(np.float32(1e-12))
    want_p = g * (p64 - y64) / np.maximum((1 - p64) * p64, floor)
    with np.errstate(divide="ignore"):
        want_y = g * (np.log1p(-p64) - np.log(p64))
    tol = {"rtol": 4 * np.finfo(float_dtype).eps, "atol": 0}
    np.testing.assert_allclose(p.grad.numpy(), want_p, **tol)
    np.testing.assert_allclose(y.grad.numpy(), want_y, **tol)
    assert p.grad.numpy()[0] == 0.0 and p.grad.numpy()[1] == 0.0
    with np.errstate(divide="ignore"):
        want = -(y64 * np.maximum(np.log(p64), -100) + (1 - y64) * np.maximum(np.log1p(-p64),
                                                                                 -100))
    np.testing.assert_allclose(loss.detach().numpy(), _np_reduce(want, reduction), **tol)


def test_op_binary_cross_entropy_at_0_and_1_matches_torch(float_dtype):
    torch = pytest.importorskip("torch")
    pv, yv = _bce_saturated_case(float_dtype)
    w = np.linspace(0.5, 2.0, pv.size).astype(float_dtype)
    for reduction in REDUCTIONS:
        tp = torch.tensor(pv, requires_grad=True)
        ty = torch.tensor(yv, requires_grad=True)
        want = torch.nn.functional.binary_cross_entropy(tp, ty, torch.tensor(w),
                                                        reduction=reduction)
        want.sum().backward()
        p = gd.tensor(pv, requires_grad=True)
        y = gd.tensor(yv, requires_grad=True)
        got = F.binary_cross_entropy(p, y, gd.tensor(w), reduction=reduction)
        got.sum().backward()
        tol = {"rtol": 4 * np.finfo(float_dtype).eps, "atol": 0}
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), **tol)
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), **tol)
        np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), **tol)


@pytest.mark.parametrize("target", [1.0, 0.0])
def test_bce_after_saturated_sigmoid_keeps_the_weights_finite(target):
    # float32 sigmoid(30) is exactly 1.0: the clamped logs' derivative was 0 / 0 = NaN there
    model = gd.nn.Sequential(gd.nn.Linear(1, 1), gd.nn.Sigmoid())
    with gd.no_grad():
        model[0].weight.fill_(30.0)
        model[0].bias.fill_(0.0)
    opt = gd.optim.SGD(model.parameters(), lr=1e-13)
    x, y = gd.tensor([[1.0]]), gd.tensor([[target]])
    loss = gd.nn.BCELoss()(model(x), y)
    loss.backward()
    opt.step()
    w = model[0].weight.detach().numpy()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(w))
    # sigmoid'(30) is 0 in float32, so the weight moves only through the +-1e12 floor term
    # times sigmoid' = 0 (target 0), or not at all (target matched)
    np.testing.assert_array_equal(w, 30.0)


@pytest.mark.parametrize("arg", ["input", "target"])
@pytest.mark.parametrize("bad", [2.0, -0.5, np.nan, np.inf])
def test_op_binary_cross_entropy_refuses_values_outside_0_1(arg, bad):
    # PyTorch raises "all elements of target should be between 0 and 1" for these (NaN too)
    good = np.array([0.25, 0.5, 1.0])
    vals = {"input": good.copy(), "target": good.copy()}
    vals[arg][1] = bad
    with pytest.raises(ValueError, match=f"all elements of {arg} should be between 0 and 1"):
        F.binary_cross_entropy(gd.tensor(vals["input"]), gd.tensor(vals["target"]))
    with pytest.raises(ValueError, match=f"all elements of {arg} should be between 0 and 1"):
        gd.nn.BCELoss(reduction="none")(gd.tensor(vals["input"]), gd.tensor(vals["target"]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("extra", ["none", "weight", "pos_weight", "both"])
@pytest.mark.parametrize("shape", [(), (6,), (3, 4)], ids=str)
def test_op_binary_cross_entropy_with_logits(rng, reduction, extra, shape):
    x = _leaf(rng, shape, scale=3.0)
    y = gd.tensor(rng.uniform(0.0, 1.0, shape), dtype=gd.float64, requires_grad=True)
    C = shape[-1] if shape else 1
    kw = {}
    if extra in ("weight", "both"):
        kw["weight"] = gd.tensor(rng.uniform(0.5, 2.0, C), dtype=gd.float64)
    if extra in ("pos_weight", "both"):
        kw["pos_weight"] = gd.tensor(rng.uniform(0.5, 3.0, C), dtype=gd.float64)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction=reduction, **kw)
    xv, yv = x.detach().numpy(), y.detach().numpy()
    pw = kw["pos_weight"].numpy() if "pos_weight" in kw else 1.0
    ref = -(pw * yv * -np.logaddexp(0, -xv) + (1 - yv) * -np.logaddexp(0, xv))
    ref = ref * (kw["weight"].numpy() if "weight" in kw else 1.0)
    np.testing.assert_allclose(loss.detach().numpy(), _np_reduce(ref, reduction), rtol=1e-13)
    _check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **kw),
           x, y)


def test_op_binary_cross_entropy_with_logits_large_logits_are_stable():
    x = gd.tensor([-1e4, -50.0, 50.0, 1e4], dtype=gd.float64, requires_grad=True)
    y = gd.tensor([1.0, 0.0, 1.0, 0.0], dtype=gd.float64)
    loss = gd.nn.BCEWithLogitsLoss(reduction="sum")(x, y)
    np.testing.assert_allclose(loss.item(), 1e4 + np.log1p(np.exp(-50.0)) * 2 + 1e4,
                               rtol=1e-15)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 0.0, 0.0, 1.0], atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4)], ids=str)
def test_op_hinge_embedding_loss(rng, reduction, margin, shape):
    y = gd.tensor(rng.choice([-1.0, 1.0], size=shape), dtype=gd.float64)
    xv = margin + _away(rng, shape)  # off the kink at x = margin
    x = gd.tensor(xv, dtype=gd.float64, requires_grad=True)
    loss = F.hinge_embedding_loss(x, y, margin=margin, reduction=reduction)
    yv = y.numpy()
    ref = np.where(yv == 1, xv, np.maximum(0.0, margin - xv))
    np.testing.assert_allclose(loss.detach().numpy(), _np_reduce(ref, reduction), rtol=1e-13)
    _check(lambda a: F.hinge_embedding_loss(a, y, margin=margin, reduction=reduction), x)
    _check(lambda a: gd.nn.HingeEmbeddingLoss(margin=margin, reduction=reduction)(a, y), x)


@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_op_hinge_embedding_loss_other_targets_as_pytorch(rng, margin):
    # PyTorch takes a target that is neither 1 nor -1 as both: x + max(0, margin - x)
    xv = np.array([0.3, -0.5, 2.0, 0.7, -1.2, 1.5])
    yv = np.array([0.0, 2.0, 0.5, 1.0, -1.0, -3.0])
    x = gd.tensor(xv, requires_grad=True)
    loss = F.hinge_embedding_loss(x, gd.tensor(yv), margin=margin, reduction="none")
    both = xv + np.maximum(0.0, margin - xv)
    want = np.where(yv == 1, xv, np.where(yv == -1, np.maximum(0.0, margin - xv), both))
    np.testing.assert_allclose(loss.detach().numpy(), want, rtol=1e-15)
    loss.sum().backward()
    active = (margin - xv > 0).astype(np.float64)  # where max(0, margin - x) has slope -1
    dwant = np.where(yv == 1, 1.0, np.where(yv == -1, -active, 1.0 - active))
    np.testing.assert_array_equal(x.grad.numpy(), dwant)


def test_op_hinge_embedding_loss_other_targets_match_torch(rng):
    torch = pytest.importorskip("torch")
    xv = rng.standard_normal(12)
    yv = np.array([0.0, 2.0, 0.5, 1.0, -1.0, -3.0] * 2)
    for reduction in REDUCTIONS:
        tx = torch.tensor(xv, requires_grad=True)
        want = torch.nn.functional.hinge_embedding_loss(tx, torch.tensor(yv), margin=0.8,
                                                        reduction=reduction)
        want.sum().backward()
        x = gd.tensor(xv, requires_grad=True)
        got = F.hinge_embedding_loss(x, gd.tensor(yv), margin=0.8, reduction=reduction)
        got.sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-15)
        np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("loss", ["mse", "l1", "bce", "bce_logits", "hinge", "nll"])
def test_op_loss_empty_input(rng, loss):
    x = gd.tensor(np.full((0, 3), 0.5), dtype=gd.float64, requires_grad=True)
    if loss == "nll":
        y = gd.zeros(0, dtype=gd.int64)
    else:
        y = gd.ones(0, 3, dtype=gd.float64)
    fn = {"mse": F.mse_loss, "l1": F.l1_loss, "bce": F.binary_cross_entropy,
          "bce_logits": F.binary_cross_entropy_with_logits, "hinge": F.hinge_embedding_loss,
          "nll": F.nll_loss}[loss]
    assert np.isnan(fn(x, y).item())  # mean over nothing
    assert fn(x, y, reduction="sum").item() == 0.0
    fn(x, y, reduction="sum").backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("loss", ["mse", "l1", "bce", "bce_logits", "hinge"])
def test_op_loss_float32_close_to_float64(rng, loss):
    xv = rng.uniform(0.1, 0.9, (5, 4))
    yv = rng.uniform(0.0, 1.0, (5, 4)) if loss != "hinge" else rng.choice([-1.0, 1.0], (5, 4))
    fn = {"mse": F.mse_loss, "l1": F.l1_loss, "bce": F.binary_cross_entropy,
          "bce_logits": F.binary_cross_entropy_with_logits, "hinge": F.hinge_embedding_loss}[loss]
    res = {}
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(xv, dtype=dt, requires_grad=True)
        out = fn(x, gd.tensor(yv, dtype=dt))
        assert out.dtype == dt
        out.backward()
        res[dt] = (out.item(), x.grad.numpy().astype(np.float64))
    np.testing.assert_allclose(res[gd.float32][0], res[gd.float64][0], rtol=1e-5)
    np.testing.assert_allclose(res[gd.float32][1], res[gd.float64][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "nll", "mse", "bce_logits", "hinge"])
def test_op_loss_non_contiguous_inputs(rng, loss):
    base = _leaf(rng, (4, 6))
    t_idx = gd.tensor(rng.integers(0, 4, 3))
    y = gd.tensor(rng.choice([-1.0, 1.0], (3, 4)) if loss == "hinge" else rng.random((3, 4)),
                  dtype=gd.float64)
    fns = {
        "cross_entropy": lambda v: F.cross_entropy(v, t_idx, label_smoothing=0.1),
        "nll": lambda v: F.nll_loss(v.log_softmax(1), t_idx),
        "mse": lambda v: F.mse_loss(v, y),
        "bce_logits": lambda v: F.binary_cross_entropy_with_logits(v, y),
        "hinge": lambda v: F.hinge_embedding_loss(v * 0.3, y),
    }
    for as_view in (lambda b: b.t()[::2], lambda b: b[:, 1::2].t()[:3]):
        def fn(b, view=as_view):
            v = view(b)
            assert v.shape == (3, 4) and not v.is_contiguous()
            return fns[loss](v)

        ref = fns[loss](gd.tensor(as_view(base).detach().numpy().copy(), dtype=gd.float64))
        np.testing.assert_allclose(fn(base).item(), ref.item(), rtol=1e-14)
        _check(fn, base)


def test_op_softmax_cross_entropy_bitwise_equal_across_threads(rng, threads):
    z0 = 4.0 * rng.standard_normal((257, 200))
    t = gd.tensor(rng.integers(0, 200, 257))
    results = []
    for n in (1, 2):
        threads(n)
        z = gd.tensor(z0, dtype=gd.float32, requires_grad=True)
        loss = F.cross_entropy(z, t) + F.log_softmax(z, 0).sum() * 1e-3 + F.softmax(z, 1).max()
        loss.backward()
        results.append((loss.item(), z.grad.numpy().copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
