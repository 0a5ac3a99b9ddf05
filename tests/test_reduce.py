"""Tests the sums (sum_axis, sum_all) through the kernels in `graddesc._core`.

The oracle is np.sum in float64; errors are measured against sum(|x|) along the reduced axis,
the scale any summation order's rounding error is proportional to.
The test_op_* tests at the end differentiate the Tensor-level reductions (functional/reduce.py).
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
        lambda: _core.sum_axis(misaligned_f32(2, 3), 0),
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
        lambda: _core.sum_all(misaligned_f32(5)),
        ValueError,
        r"sum_all: argument 'x' is not aligned",
        id="all-misaligned",
    ),
]


@pytest.mark.parametrize("call,exc,match", REDUCE_ERRORS)
def test_kernel_reduce_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- Tensor-level reductions (functional/reduce.py) ------------------------------------------
def _leaf(rng, shape, dtype=gd.float64):
    return gd.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)


def _check(fn, *inputs):
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def _np_dim(dim):
    return tuple(dim) if isinstance(dim, list) else dim


# (shape, dim, keepdim)
SUM_CASES = [
    ((), None, False),
    ((), 0, False),
    ((), -1, True),
    ((1,), None, False),
    ((1,), 0, True),
    ((5,), 0, False),
    ((3, 4), None, True),
    ((3, 4), 1, False),
    ((3, 4), -2, True),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), [2, 1], True),
    ((2, 3, 4), (0, 1, 2), False),
    ((2, 1, 3), 1, False),
    ((0, 3), 0, False),
    ((0, 3), 1, True),
    ((3, 0), None, False),
]


@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("shape,dim,keepdim", SUM_CASES, ids=str)
def test_op_sum_mean(rng, op, shape, dim, keepdim):
    x = _leaf(rng, shape)
    fn = (lambda t: getattr(t, op)(dim=dim, keepdim=keepdim)) if dim is not None or keepdim \
        else (lambda t: getattr(gd, op)(t))
    y = fn(x)
    xv = x.detach().numpy()
    nd = None if dim is None or (x.ndim == 0) else _np_dim(dim)
    with np.errstate(invalid="ignore", divide="ignore"):  # a mean over 0 elements is NaN
        ref = np.sum(xv, axis=nd, keepdims=keepdim)
        if op == "mean":
            ref = ref / (xv.size // max(np.size(ref), 1) if xv.size else 0.0)
    assert y.shape == np.shape(ref)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-14, atol=1e-15)
    _check(fn, x)
    y.sum().backward()
    assert x.grad.shape == shape
    n = max(xv.size // max(np.size(ref), 1), 1)
    np.testing.assert_allclose(x.grad.numpy(), np.full(shape, 1.0 if op == "sum" else 1.0 / n),
                               rtol=1e-15)


@pytest.mark.parametrize("op", ["sum", "mean"])
def test_op_sum_mean_non_contiguous(rng, op):
    base = _leaf(rng, (4, 3, 6))
    for dim in (None, 0, 1, 2, (0, 2)):
        def fn(b, d=dim):
            v = b.permute(2, 0, 1)[::2]
            return getattr(v, op)(d) if d is not None else getattr(v, op)()
        ref = getattr(np, op)(base.detach().numpy().transpose(2, 0, 1)[::2], axis=dim)
        np.testing.assert_allclose(fn(base).detach().numpy(), ref, rtol=1e-14)
        _check(fn, base)


@pytest.mark.parametrize("op", ["sum", "mean"])
def test_op_sum_mean_float32_close_to_float64(rng, op):
    xv = rng.standard_normal((7, 13, 5))
    res = {}
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(xv, dtype=dt, requires_grad=True)
        y = getattr(x, op)(dim=(0, 2))
        assert y.dtype == dt
        (y * gd.arange(13, dtype=dt)).sum().backward()
        res[dt] = (y.detach().numpy().astype(np.float64), x.grad.numpy().astype(np.float64))
    for a32, a64 in zip(res[gd.float32], res[gd.float64]):
        np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("shape,dim,keepdim", [((5,), 0, False), ((3, 4), 1, False),
                                               ((3, 4), 0, True), ((2, 3, 4), -2, False),
                                               ((1, 4), 0, False), ((3, 1), 1, True)], ids=str)
def test_op_max_min_with_dim(rng, op, shape, dim, keepdim):
    x = _leaf(rng, shape)
    out = getattr(x, op)(dim, keepdim=keepdim)
    values, indices = out
    assert out.values is values and out.indices is indices
    xv = x.detach().numpy()
    ref_i = (np.argmax if op == "max" else np.argmin)(xv, axis=dim, keepdims=keepdim)
    np.testing.assert_array_equal(indices.numpy(), ref_i)
    assert indices.dtype == gd.int64 and not indices.requires_grad
    np.testing.assert_array_equal(values.detach().numpy(),
                                  getattr(np, op)(xv, axis=dim, keepdims=keepdim))
    _check(lambda t: getattr(t, op)(dim, keepdim=keepdim).values, x)
    _check(lambda t: getattr(gd, "a" + op)(t, dim, keepdim=keepdim), x)


@pytest.mark.parametrize("op", ["max", "min", "amax", "amin"])
def test_op_max_min_all_elements(rng, op):
    for shape in [(), (1,), (7,), (3, 4)]:
        x = _leaf(rng, shape)
        y = getattr(gd, op)(x)
        assert y.shape == ()
        np.testing.assert_array_equal(y.item(), getattr(np, op[-3:])(x.detach().numpy()))
        _check(lambda t: getattr(t, op)(), x)


@pytest.mark.parametrize("op", ["max", "min", "amax", "amin"])
def test_op_max_min_ties_without_dim_split_evenly(op):
    v = 3.0 if op.endswith("max") else -3.0
    x = gd.tensor([[v, 0.0, v], [1.0, v, 2.0]], dtype=gd.float64, requires_grad=True)
    getattr(x, op)().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (x.detach().numpy() == v) / 3.0)


@pytest.mark.parametrize("op", ["amax", "amin"])
@pytest.mark.parametrize("dim,keepdim", [(1, False), (0, True), ((0, 1), False), (-1, True)])
def test_op_amax_amin_ties_split_evenly_per_slice(op, dim, keepdim):
    # PyTorch: amax/amin share the gradient between equal values (max(dim) picks one index)
    v = 3.0 if op == "amax" else -3.0
    a = np.array([[v, 0.0, v, 1.0], [2.0 * np.sign(v), 2.0 * np.sign(v), 1.0, 0.0]])
    x = gd.tensor(a, dtype=gd.float64, requires_grad=True)
    y = getattr(x, op)(dim=dim, keepdim=keepdim)
    ref = getattr(np, op[1:])(a, axis=dim, keepdims=keepdim)
    np.testing.assert_array_equal(y.detach().numpy(), ref)
    y.sum().backward()
    m = a == getattr(np, op[1:])(a, axis=dim, keepdims=True)
    np.testing.assert_array_equal(x.grad.numpy(), m / m.sum(axis=dim, keepdims=True))


@pytest.mark.parametrize("op", ["max", "min"])
def test_op_max_min_ties_with_dim_go_to_the_returned_index(op):
    x = gd.tensor([[1.0, 1.0, 0.0], [0.0, 0.5, 0.5]], dtype=gd.float64, requires_grad=True)
    x = x if op == "max" else (-x).detach().requires_grad_(True)
    values, indices = getattr(x, op)(dim=1)
    values.sum().backward()
    expect = np.zeros((2, 3))
    expect[np.arange(2), indices.numpy()] = 1.0
    np.testing.assert_array_equal(x.grad.numpy(), expect)


@pytest.mark.parametrize("op", ["amax", "amin"])
@pytest.mark.parametrize("dim", [(0, 2), [1], (2, -3, 1)])
def test_op_amax_amin_tuple_dims(rng, op, dim):
    x = _leaf(rng, (2, 3, 4))
    ref = getattr(np, op[1:])(x.detach().numpy(), axis=_np_dim(dim))
    np.testing.assert_array_equal(getattr(x, op)(dim).detach().numpy(), ref)
    _check(lambda t: getattr(gd, op)(t, dim, keepdim=True), x)


def test_op_max_of_empty_raises(rng):
    with pytest.raises(RuntimeError, match="numel"):
        gd.max(_leaf(rng, (0, 3)))
    with pytest.raises(IndexError, match="non-zero size"):
        _leaf(rng, (0, 3)).max(dim=0)
    assert _leaf(rng, (0, 3)).max(dim=1).values.shape == (0,)


def test_op_max_min_non_contiguous(rng):
    base = _leaf(rng, (5, 8))
    for fn in (lambda b: b.t()[::2].max(dim=1).values, lambda b: b[:, 1::3].min(0)[0],
               lambda b: b.t().amax(dim=(0,)), lambda b: b[::2].t().max()):
        _check(fn, base)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_op_argmax_argmin_are_not_differentiable(rng, op):
    x = _leaf(rng, (3, 4))
    xv = x.detach().numpy()
    f = getattr(np, op)
    for kw, ref in [({}, f(xv)), ({"dim": 1}, f(xv, axis=1)),
                    ({"dim": 0, "keepdim": True}, f(xv, axis=0, keepdims=True))]:
        out = getattr(x, op)(**kw)
        assert out.dtype == gd.int64 and not out.requires_grad and out.grad_fn is None
        np.testing.assert_array_equal(out.numpy(), ref)


# (shape, dim, kwargs)
VAR_CASES = [
    ((6,), None, {}),
    ((6,), 0, {"unbiased": False}),
    ((3, 4), 1, {}),
    ((3, 4), 0, {"keepdim": True}),
    ((3, 4), None, {"correction": 0}),
    ((2, 3, 4), (0, 2), {}),
    ((2, 3, 4), -1, {"correction": 2, "keepdim": True}),
    ((4, 1), 0, {}),
]


@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("shape,dim,kw", VAR_CASES, ids=str)
def test_op_var_std(rng, op, shape, dim, kw):
    x = _leaf(rng, shape)
    y = getattr(x, op)(dim, **kw) if dim is not None else getattr(x, op)(**kw)
    ddof = kw.get("correction", 0 if kw.get("unbiased") is False else 1)
    ref = getattr(np, op)(x.detach().numpy(), axis=dim, ddof=ddof,
                          keepdims=kw.get("keepdim", False))
    assert y.shape == np.shape(ref)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-13)
    _check(lambda t: getattr(gd, op)(t, dim, **kw), x)


def test_op_var_std_non_contiguous_and_float32(rng):
    base = _leaf(rng, (6, 5))
    _check(lambda b: b.t()[:, ::2].var(dim=1), base)
    _check(lambda b: b.t().std(), base)
    xv = rng.standard_normal((9, 7))
    res = {}
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(xv, dtype=dt, requires_grad=True)
        y = x.std(dim=0)
        y.sum().backward()
        assert y.dtype == dt
        res[dt] = (y.detach().numpy().astype(np.float64), x.grad.numpy().astype(np.float64))
    for a32, a64 in zip(res[gd.float32], res[gd.float64]):
        np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-6)


def test_op_var_of_one_element_is_nan():
    x = gd.tensor([2.0], dtype=gd.float64, requires_grad=True)
    assert np.isnan(x.var().item())
    assert x.var(correction=0).item() == 0.0


@pytest.mark.parametrize("shape,dim,keepdim", [((5,), 0, False), ((3, 4), 1, False),
                                               ((3, 4), 0, True), ((2, 3, 4), (0, 2), False),
                                               ((2, 3, 4), -1, True), ((1, 1), 1, False),
                                               ((), 0, False)], ids=str)
def test_op_logsumexp(rng, shape, dim, keepdim):
    x = _leaf(rng, shape)
    y = gd.logsumexp(x, dim, keepdim=keepdim)
    xv = x.detach().numpy()
    nd = None if xv.ndim == 0 else dim
    m = np.max(xv, axis=nd, keepdims=True)
    ref = np.log(np.sum(np.exp(xv - m), axis=nd, keepdims=True)) + m
    if not keepdim:
        ref = ref.reshape(y.shape)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-14)
    _check(lambda t: t.logsumexp(dim, keepdim=keepdim), x)


def test_op_logsumexp_is_stable_and_softmax_is_its_gradient(rng):
    xv = 1e4 * rng.standard_normal((3, 5))
    x = gd.tensor(xv, dtype=gd.float64, requires_grad=True)
    y = x.logsumexp(1)
    np.testing.assert_allclose(y.detach().numpy(), xv.max(1) + np.log(
        np.exp(xv - xv.max(1, keepdims=True)).sum(1)), rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), gd.softmax(x.detach(), 1).numpy(), atol=1e-15)
    z = gd.tensor([[-np.inf, 0.0], [-np.inf, -np.inf]], dtype=gd.float64)
    np.testing.assert_array_equal(z.logsumexp(1).numpy(), [0.0, -np.inf])


def test_op_reductions_of_a_fan_out(rng):
    # one tensor feeding several reductions: gradients add up over the consumers
    x = _leaf(rng, (3, 4))
    _check(lambda t: t.sum() * t.mean(0).max() + t.var(1).sum() - t.logsumexp(0).mean(), x)


def test_op_reductions_bitwise_equal_across_threads(rng, threads):
    xv = rng.standard_normal((513, 257))
    results = []
    for n in (1, 2):
        threads(n)
        x = gd.tensor(xv, dtype=gd.float32, requires_grad=True)
        y = x.sum() + x.mean(0).sum() + x.sum(1).var() + x.logsumexp(1).mean()
        y.backward()
        results.append((y.item(), x.grad.numpy().copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
