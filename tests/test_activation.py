"""Tests the elementwise activations through the kernels in `graddesc._core`.

Oracles are NumPy float64 closed forms written independently of the kernels (sigmoid and softplus
via logaddexp, gelu via erfc), derivatives are checked against closed forms and against central
differences of the forward kernel.
The test_op_* tests at the end differentiate the Tensor-level ops (functional/activation.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import graddesc as gd
from _arrays import misaligned_f32
from graddesc import _core
from graddesc.autograd import gradcheck, gradgradcheck

ACTIVATIONS = [
    "relu",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "softplus",
    "gelu",
    "gelu_tanh",
    "exp",
    "log",
]
SAVES_OUTPUT = {"tanh", "sigmoid", "exp"}
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def _phi_cdf(x):
    # Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation for negative x, unlike 1 + erf.
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def oracle_forward(name, x, alpha=0.01):
    """act(x) in float64 NumPy."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        if name == "relu":
            return np.maximum(x, 0.0)
        if name == "leaky_relu":
            return np.where(x > 0, x, alpha * x)
        if name == "tanh":
            return np.tanh(x)
        if name == "sigmoid":
            return _sigmoid(x)
        if name == "softplus":
            return np.logaddexp(0.0, x)
        if name == "gelu":
            return x * _phi_cdf(x)
        if name == "gelu_tanh":
            return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
        if name == "exp":
            return np.exp(x)
        if name == "log":
            return np.log(x)
    raise AssertionError(name)


def oracle_derivative(name, x, alpha=0.01):
    """act'(x) in float64 NumPy (0 at the relu kink, like PyTorch)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        if name == "relu":
            return np.where(x > 0, 1.0, 0.0)
        if name == "leaky_relu":
            return np.where(x > 0, 1.0, alpha)
        if name == "tanh":
            return 1.0 / np.cosh(x) ** 2
        if name == "sigmoid":
            s = _sigmoid(x)
            return s * (1.0 - s)
        if name == "softplus":
            return _sigmoid(x)
        if name == "gelu":
            return _phi_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        if name == "gelu_tanh":
            u = SQRT_2_OVER_PI * (x + 0.044715 * x**3)
            du = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x**2)
            return 0.5 * (1.0 + np.tanh(u)) + 0.5 * x * du / np.cosh(u) ** 2
        if name == "exp":
            return np.exp(x)
        if name == "log":
            return 1.0 / x
    raise AssertionError(name)


def _inputs(rng, name, shape, dtype):
    """Random inputs in the activation's domain, kept at least 1e-3 away from the kink at 0."""
    x = 3.0 * rng.standard_normal(shape)
    x = np.where(np.abs(x) < 1e-3, 1e-3 * np.sign(x) + (x == 0) * 1e-3, x)
    if name == "log":
        x = np.abs(x) + 0.05
    return np.array(x, dtype=dtype)  # (np.abs of a 0-d array is a scalar)


def _backward(name, dy, x, alpha=None):
    """Calls activation_backward with exactly the saved tensor the op needs (alpha None: the
    activation's default, leaky_relu's slope 0.01 or softplus's threshold 20)."""
    if name in SAVES_OUTPUT:
        return _core.activation_backward(name, dy, y=_core.activation_forward(name, x), alpha=alpha)
    return _core.activation_backward(name, dy, x=x, alpha=alpha)


def _tol(dtype):
    # float32: a few ulp of the float32 result plus an absolute floor for values that cancel
    # (1 - tanh^2 near saturation, gelu far left); float64: ~1e-12.
    if dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    return {"rtol": 1e-12, "atol": 1e-12}


SHAPES = [(), (0,), (1,), (3,), (17,), (65,), (130,), (3, 5, 7), (2, 0, 3), (1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_forward_matches_numpy(isa, float_dtype, rng, name, shape):
    x = _inputs(rng, name, shape, float_dtype)
    y = _core.activation_forward(name, x)
    assert y.shape == x.shape and y.dtype == float_dtype and y.flags.c_contiguous
    np.testing.assert_allclose(y, oracle_forward(name, x), **_tol(float_dtype))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_backward_matches_analytic(isa, float_dtype, rng, name, shape):
    x = _inputs(rng, name, shape, float_dtype)
    dy = rng.standard_normal(shape).astype(float_dtype)
    dx = _backward(name, dy, x)
    assert dx.shape == x.shape and dx.dtype == float_dtype
    ref = dy.astype(np.float64) * oracle_derivative(name, x)
    tol = _tol(float_dtype)
    if float_dtype == np.float32 and name in ("exp", "log"):
        tol = {"rtol": 2e-5, "atol": 2e-6 * max(1.0, float(np.max(np.abs(ref), initial=0)))}
    np.testing.assert_allclose(dx, ref, **tol)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_backward_matches_finite_differences(isa, rng, name):
    x = _inputs(rng, name, (4, 33), np.float64)
    dy = rng.standard_normal(x.shape)
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    # Elementwise op: d/dx_i sum(dy * f(x)) = dy_i f'(x_i), one central difference per element.
    fd = (
        dy
        * (_core.activation_forward(name, x + h) - _core.activation_forward(name, x - h))
        / (2 * h)
    )
    np.testing.assert_allclose(_backward(name, dy, x), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.2, 0.0, 1.5, -0.3])
def test_kernel_leaky_relu_alpha(isa, float_dtype, rng, alpha):
    x = _inputs(rng, "leaky_relu", (65,), float_dtype)
    dy = rng.standard_normal(65).astype(float_dtype)
    y = _core.activation_forward("leaky_relu", x, alpha=alpha)
    np.testing.assert_allclose(y, oracle_forward("leaky_relu", x, alpha), **_tol(float_dtype))
    dx = _core.activation_backward("leaky_relu", dy, x=x, alpha=alpha)
    ref = dy.astype(np.float64) * oracle_derivative("leaky_relu", x, alpha)
    np.testing.assert_allclose(dx, ref, **_tol(float_dtype))


def test_kernel_relu_derivative_at_zero_is_zero(isa, float_dtype):
    x = np.array([-1.0, -0.0, 0.0, 1e-30, 2.0], dtype=float_dtype)
    dy = np.full(5, 3.0, dtype=float_dtype)
    np.testing.assert_array_equal(_core.activation_forward("relu", x), [0, 0, 0, x[3], 2])
    np.testing.assert_array_equal(_core.activation_backward("relu", dy, x=x), [0, 0, 0, 3, 3])
    np.testing.assert_array_equal(
        _core.activation_backward("leaky_relu", dy, x=x, alpha=0.5), [1.5, 1.5, 1.5, 3, 3]
    )


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_float32_close_to_float64(isa, rng, name):
    x64 = _inputs(rng, name, (130,), np.float32).astype(np.float64)
    dy64 = rng.standard_normal(130).astype(np.float32).astype(np.float64)
    y32 = _core.activation_forward(name, x64.astype(np.float32))
    y64 = _core.activation_forward(name, x64)
    scale = max(1.0, float(np.max(np.abs(y64))))
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=2e-6 * scale)
    d32 = _backward(name, dy64.astype(np.float32), x64.astype(np.float32))
    d64 = _backward(name, dy64, x64)
    dscale = max(1.0, float(np.max(np.abs(d64))))
    np.testing.assert_allclose(d32, d64, rtol=1e-4, atol=2e-6 * dscale)


EXTREMES = [-1000.0, -100.0, -50.0, -20.0, -1.5, 0.5, 20.0, 50.0, 100.0, 1000.0]


@pytest.mark.parametrize(
    "name", ["sigmoid", "softplus", "tanh", "relu", "leaky_relu", "gelu", "gelu_tanh"]
)
def test_kernel_activation_large_inputs_are_finite_and_correct(isa, float_dtype, name):
    x = np.array(EXTREMES, dtype=float_dtype)
    y = _core.activation_forward(name, x)
    assert np.all(np.isfinite(y))
    tol = _tol(float_dtype)
    if name in ("sigmoid", "softplus", "tanh", "relu", "leaky_relu"):
        # Relative accuracy even in the tails (sigmoid(-50) ~ 2e-22); only float32 results below
        # the normal range (sigmoid(-100) ~ 4e-44 is subnormal) are compared absolutely.
        tol = {"rtol": tol["rtol"], "atol": 1e-30 if float_dtype == np.float32 else 0.0}
    np.testing.assert_allclose(y, oracle_forward(name, x), **tol)
    # Derivatives from a saturated saved output (1 - y^2 with y ~ 1) are only accurate absolutely.
    dx = _backward(name, np.ones_like(x), x)
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, oracle_derivative(name, x), **_tol(float_dtype))


def test_kernel_sigmoid_softplus_closed_forms_at_1000(isa, float_dtype):
    x = np.array([-1000.0, 1000.0], dtype=float_dtype)
    np.testing.assert_array_equal(_core.activation_forward("sigmoid", x), [0.0, 1.0])
    np.testing.assert_array_equal(_core.activation_forward("softplus", x), [0.0, 1000.0])
    np.testing.assert_array_equal(
        _core.activation_backward("softplus", np.ones_like(x), x=x), [0.0, 1.0]
    )


SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_nan_inf_like_numpy(isa, float_dtype, name):
    values = SPECIALS
    if name in ("gelu", "gelu_tanh"):
        values = [
            v for v in SPECIALS if np.isfinite(v) or np.isnan(v)
        ]  # x * Phi(x) at -inf is 0 * inf
    x = np.array(values, dtype=float_dtype)
    y = _core.activation_forward(name, x)
    ref = oracle_forward(name, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_allclose(y, ref, **_tol(float_dtype))  # inf == inf, NaN == NaN
    assert np.isnan(y[0])  # relu(NaN) is NaN, like np.maximum


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_backward_nan_propagates(isa, float_dtype, rng, name):
    x = _inputs(rng, name, (7,), float_dtype)
    x[2] = abs(x[2])  # the local derivative is nonzero there for every op
    dy = np.ones_like(x)
    dy[2] = np.nan
    dx = _backward(name, dy, x)
    assert np.isnan(dx[2])
    assert np.isfinite(np.delete(dx, 2)).all()
    if name not in ("relu", "leaky_relu"):
        # smooth ops: a NaN in the saved input/output reaches the gradient
        dy = np.ones_like(x)
        saved = _core.activation_forward(name, x) if name in SAVES_OUTPUT else x.copy()
        saved[4] = np.nan
        if name in SAVES_OUTPUT:
            dx = _core.activation_backward(name, dy, y=saved)
        else:
            dx = _core.activation_backward(name, dy, x=saved)
        assert np.isnan(dx[4]) and np.isfinite(np.delete(dx, 4)).all()


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_bitwise_equal_across_threads(isa, float_dtype, rng, threads, name):
    x = _inputs(rng, name, (200_003,), float_dtype)
    dy = rng.standard_normal(x.shape).astype(float_dtype)
    runs = []
    for n in (1, 2, 3):
        threads(n)
        runs.append((_core.activation_forward(name, x), _backward(name, dy, x)))
    for y, dx in runs[1:]:
        assert np.array_equal(y, runs[0][0])
        assert np.array_equal(dx, runs[0][1])


def test_kernel_activation_large_matches_numpy(isa, float_dtype, rng, threads):
    threads(2)
    x = _inputs(rng, "tanh", (300, 700), float_dtype)
    dy = rng.standard_normal(x.shape).astype(float_dtype)
    for name in ("relu", "sigmoid", "gelu_tanh"):
        np.testing.assert_allclose(
            _core.activation_forward(name, x), oracle_forward(name, x), **_tol(float_dtype)
        )
        ref = dy.astype(np.float64) * oracle_derivative(name, x)
        np.testing.assert_allclose(_backward(name, dy, x), ref, **_tol(float_dtype))


def test_kernel_activation_saving_output_list():
    assert set(_core.ACTIVATIONS_SAVING_OUTPUT) == SAVES_OUTPUT


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_backward_accepts_both_saved(isa, rng, name):
    x = _inputs(rng, name, (17,), np.float64)
    y = _core.activation_forward(name, x)
    dy = rng.standard_normal(17)
    both = _core.activation_backward(name, dy, x=x, y=y)
    assert np.array_equal(both, _backward(name, dy, x))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernel_activation_read_only_inputs(isa, float_dtype, rng, name):
    x = _inputs(rng, name, (5, 3), float_dtype)
    dy = rng.standard_normal((5, 3)).astype(float_dtype)
    y = _core.activation_forward(name, x)
    expect = (y, _backward(name, dy, x))
    for v in (x, y, dy):
        v.setflags(write=False)
    got_y = _core.activation_forward(name, x)
    if name in SAVES_OUTPUT:
        got_dx = _core.activation_backward(name, dy, y=y)
    else:
        got_dx = _core.activation_backward(name, dy, x=x)
    assert np.array_equal(got_y, expect[0]) and np.array_equal(got_dx, expect[1])


def _f32(*shape):
    return np.ones(shape, dtype=np.float32)


FWD = _core.activation_forward
BWD = _core.activation_backward

ACTIVATION_ERRORS = [
    pytest.param(
        lambda: FWD("swish", _f32(3)),
        ValueError,
        r"activation_forward: unknown activation 'swish'",
        id="fwd-unknown",
    ),
    pytest.param(
        lambda: BWD("swish", _f32(3), x=_f32(3)),
        ValueError,
        r"activation_backward: unknown activation 'swish'",
        id="bwd-unknown",
    ),
    pytest.param(
        lambda: FWD("relu", _f32(3).astype(np.float16)),
        TypeError,
        r"activation_forward: argument 'x'.*float16",
        id="fwd-float16",
    ),
    pytest.param(
        lambda: FWD("relu", np.arange(3, dtype=np.int32)),
        TypeError,
        r"activation_forward: argument 'x'.*int32",
        id="fwd-int32",
    ),
    pytest.param(
        lambda: FWD("relu", _f32(3).astype(">f4")),
        TypeError,
        r"activation_forward: argument 'x'",
        id="fwd-big-endian",
    ),
    pytest.param(
        lambda: FWD("relu", _f32(3).astype(">f8")),
        TypeError,
        r"activation_forward: argument 'x'",
        id="fwd-big-endian-f8",
    ),
    pytest.param(
        lambda: FWD("relu", [1.0, 2.0]),
        TypeError,
        r"activation_forward: argument 'x' must be a numpy.ndarray",
        id="fwd-list",
    ),
    pytest.param(
        lambda: FWD("relu", _f32(4, 3).T),
        ValueError,
        r"activation_forward: argument 'x' must be C-contiguous",
        id="fwd-transposed",
    ),
    pytest.param(
        lambda: FWD("relu", _f32(3, 8)[:, ::2]),
        ValueError,
        r"activation_forward: argument 'x' must be C-contiguous",
        id="fwd-strided",
    ),
    pytest.param(
        lambda: FWD("relu", misaligned_f32(5)),
        ValueError,
        r"activation_forward: argument 'x' is not aligned",
        id="fwd-misaligned",
    ),
    pytest.param(
        lambda: BWD("tanh", _f32(3), x=_f32(3)),
        ValueError,
        r"activation_backward: 'tanh' backward needs the saved 'y'",
        id="bwd-tanh-no-y",
    ),
    pytest.param(
        lambda: BWD("sigmoid", _f32(3)),
        ValueError,
        r"activation_backward: 'sigmoid' backward needs the saved 'y'",
        id="bwd-sigmoid-no-y",
    ),
    pytest.param(
        lambda: BWD("exp", _f32(3), x=_f32(3)),
        ValueError,
        r"activation_backward: 'exp' backward needs the saved 'y'",
        id="bwd-exp-no-y",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(3), y=_f32(3)),
        ValueError,
        r"activation_backward: 'relu' backward needs the saved 'x'",
        id="bwd-relu-no-x",
    ),
    pytest.param(
        lambda: BWD("gelu", _f32(3)),
        ValueError,
        r"activation_backward: 'gelu' backward needs the saved 'x'",
        id="bwd-gelu-no-x",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(3), x=_f32(3).astype(np.float64)),
        TypeError,
        r"activation_backward: argument 'x'.*float32",
        id="bwd-mixed-x",
    ),
    pytest.param(
        lambda: BWD("tanh", _f32(3).astype(np.float64), y=_f32(3)),
        TypeError,
        r"activation_backward: argument 'y'.*float64",
        id="bwd-mixed-y",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(3).astype(np.float16), x=_f32(3)),
        TypeError,
        r"activation_backward: argument 'dy'.*float16",
        id="bwd-float16",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(3), x=_f32(3).astype(">f4")),
        TypeError,
        r"activation_backward: argument 'x'",
        id="bwd-big-endian",
    ),
    pytest.param(
        lambda: BWD("relu", [1.0], x=_f32(1)),
        TypeError,
        r"activation_backward: argument 'dy' must be a numpy.ndarray",
        id="bwd-list-dy",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(1), x=[1.0]),
        TypeError,
        r"activation_backward: argument 'x' must be a numpy.ndarray",
        id="bwd-list-x",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(3), x=_f32(4)),
        ValueError,
        r"activation_backward: argument 'x' expected shape \(3,\), got \(4,\)",
        id="bwd-shape",
    ),
    pytest.param(
        lambda: BWD("tanh", _f32(2, 3), y=_f32(3, 2)),
        ValueError,
        r"activation_backward: argument 'y' expected shape \(2, 3\), got \(3, 2\)",
        id="bwd-shape-y",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(3, 2).T, x=_f32(2, 3)),
        ValueError,
        r"activation_backward: argument 'dy' must be C-contiguous",
        id="bwd-transposed",
    ),
    pytest.param(
        lambda: BWD("relu", _f32(2, 3), x=_f32(2, 6)[:, ::2]),
        ValueError,
        r"activation_backward: argument 'x' must be C-contiguous",
        id="bwd-strided",
    ),
    pytest.param(
        lambda: BWD("relu", misaligned_f32(3), x=_f32(3)),
        ValueError,
        r"activation_backward: argument 'dy' is not aligned",
        id="bwd-misaligned",
    ),
]


@pytest.mark.parametrize("call,exc,match", ACTIVATION_ERRORS)
def test_kernel_activation_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- Tensor-level ops (functional/activation.py): gradcheck, gradgradcheck, NumPy, float32 ------
F = gd.nn.functional

# name -> (graddesc function, oracle name, alpha)
OPS = {
    "relu": (lambda x: x.relu(), "relu", 0.01),
    "relu_fn": (gd.relu, "relu", 0.01),
    "relu_F": (F.relu, "relu", 0.01),
    "leaky_relu": (F.leaky_relu, "leaky_relu", 0.01),
    "leaky_relu_0.2": (lambda x: gd.leaky_relu(x, negative_slope=0.2), "leaky_relu", 0.2),
    "leaky_relu_method": (lambda x: x.leaky_relu(0.3), "leaky_relu", 0.3),
    "tanh": (lambda x: x.tanh(), "tanh", 0.01),
    "tanh_fn": (gd.tanh, "tanh", 0.01),
    "sigmoid": (lambda x: x.sigmoid(), "sigmoid", 0.01),
    "sigmoid_fn": (gd.sigmoid, "sigmoid", 0.01),
    "softplus": (gd.softplus, "softplus", 0.01),
    "gelu": (gd.gelu, "gelu", 0.01),
    "gelu_method": (lambda x: x.gelu(), "gelu", 0.01),
    "gelu_tanh": (lambda x: gd.gelu(x, approximate="tanh"), "gelu_tanh", 0.01),
    "exp": (lambda x: x.exp(), "exp", 0.01),
    "exp_fn": (gd.exp, "exp", 0.01),
    "log": (lambda x: x.log(), "log", 0.01),
    "log_fn": (gd.log, "log", 0.01),
}
OP_SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (1, 1, 1)]


def _op_values(rng, name, shape):
    """float64 values in [-3, 3], at least 0.1 from the kink at 0; positive for log."""
    x = rng.uniform(-3.0, 3.0, size=shape)
    x = np.where(np.abs(x) < 0.1, x + 0.2, x)
    if OPS[name][1] == "log":
        x = np.abs(x)
    return x


def _op_leaf(rng, name, shape, dtype=gd.float64):
    return gd.tensor(_op_values(rng, name, shape), dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("shape", OP_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_activation_gradcheck(rng, name, shape):
    x = _op_leaf(rng, name, shape)
    fn = OPS[name][0]
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_activation_forward_and_grad_match_numpy(rng, name):
    fn, oracle, alpha = OPS[name]
    x = _op_leaf(rng, name, (4, 9))
    w = rng.standard_normal((4, 9))
    y = fn(x)
    assert y.dtype == gd.float64 and y.shape == (4, 9)
    xv = x.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), oracle_forward(oracle, xv, alpha),
                               rtol=1e-13, atol=1e-15)
    (y * gd.tensor(w, dtype=gd.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), w * oracle_derivative(oracle, xv, alpha),
                               rtol=1e-12, atol=1e-15)


def test_op_softplus_beta(rng):
    x = _op_leaf(rng, "softplus", (3, 4))
    fn = lambda t: gd.softplus(t, beta=2.0)  # noqa: E731
    np.testing.assert_allclose(fn(x).detach().numpy(),
                               np.logaddexp(0.0, 2.0 * x.detach().numpy()) / 2.0, rtol=1e-14)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_activation_third_derivative(rng, name):
    # gradcheck of the second derivative (built with create_graph) checks the third
    fn = OPS[name][0]

    def second(x):
        with gd.enable_grad():  # gradcheck evaluates fn under no_grad for its differences
            (g,) = gd.autograd.grad(fn(x).sum(), x, create_graph=True)
            (h,) = gd.autograd.grad(g.sum(), x, create_graph=True)
        return h

    x = _op_leaf(rng, name, (5,))
    if OPS[name][1] in ("relu", "leaky_relu"):
        # piecewise linear: the second derivative is zero (a tensor of zeros, as in PyTorch)
        np.testing.assert_array_equal(second(x).detach().numpy(), np.zeros(5))
        return
    assert gradcheck(second, (x,))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)], ids=str)
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_activation_empty(rng, name, shape):
    x = _op_leaf(rng, name, shape)
    y = OPS[name][0](x)
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape and x.grad.dtype == gd.float64
    assert gradgradcheck(OPS[name][0], (_op_leaf(rng, name, shape),))


@pytest.mark.parametrize("view", ["transposed", "strided"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_activation_non_contiguous_input(rng, name, view):
    fn, oracle, alpha = OPS[name]
    base = _op_leaf(rng, name, (5, 3) if view == "transposed" else (3, 10))

    def f(b):
        v = b.t() if view == "transposed" else b[:, ::2]
        assert not v.is_contiguous()
        return fn(v)

    bv = base.detach().numpy()
    ref = oracle_forward(oracle, bv.T if view == "transposed" else bv[:, ::2], alpha)
    np.testing.assert_allclose(f(base).detach().numpy(), ref, rtol=1e-13, atol=1e-15)
    assert gradcheck(f, (base,))
    assert gradgradcheck(f, (base,))


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_activation_float32_grad_close_to_float64(rng, name):
    fn = OPS[name][0]
    xv = _op_values(rng, name, (6, 7))
    w = rng.standard_normal((6, 7))
    out = {}
    for dt in (gd.float32, gd.float64):
        x = gd.tensor(xv, dtype=dt, requires_grad=True)
        y = fn(x)
        assert y.dtype == dt
        (g,) = gd.autograd.grad((y * gd.tensor(w, dtype=dt)).sum(), x, create_graph=True)
        (h,) = gd.autograd.grad(g.sum(), x, allow_unused=True)
        assert g.dtype == dt
        out[dt] = [y.detach().numpy().astype(np.float64), g.detach().numpy().astype(np.float64),
                   None if h is None else h.numpy().astype(np.float64)]
    for a32, a64 in zip(out[gd.float32], out[gd.float64]):
        if a32 is not None:
            scale = np.max(np.abs(a64))
            np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64], ids=str)
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "gelu", "gelu_tanh", "relu",
                                  "leaky_relu"])
def test_op_activation_saturated_inputs_give_finite_gradients(dtype, name):
    fn, oracle, alpha = OPS[name]
    xv = np.array([-1e4, -800.0, -40.0, 40.0, 800.0, 1e4])
    x = gd.tensor(xv, dtype=dtype, requires_grad=True)
    y = fn(x)
    assert np.all(np.isfinite(y.detach().numpy()))
    (g,) = gd.autograd.grad(y.sum(), x, create_graph=True)
    assert np.all(np.isfinite(g.detach().numpy()))
    np.testing.assert_allclose(g.detach().numpy(), oracle_derivative(oracle, xv, alpha),
                               atol=1e-6)
    if g.requires_grad:
        (h,) = gd.autograd.grad(g.sum(), x)
        assert np.all(np.isfinite(h.numpy()))


def test_op_relu_gradient_at_zero_is_zero():
    x = gd.tensor([-1.0, 0.0, 2.0], dtype=gd.float64, requires_grad=True)
    (x.relu() + gd.leaky_relu(x, 0.1)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.1, 0.1, 2.0])


def test_op_relu_of_fan_out_accumulates(rng):
    # one tensor feeding relu, tanh and itself: dC/dx sums over the three consumers
    x = gd.tensor(_op_values(rng, "relu", (4,)), dtype=gd.float64, requires_grad=True)
    (x.relu() * x.tanh() + x).sum().backward()
    xv = x.detach().numpy()
    ref = (xv > 0) * np.tanh(xv) + np.maximum(xv, 0) / np.cosh(xv) ** 2 + 1.0
    np.testing.assert_allclose(x.grad.numpy(), ref, rtol=1e-14)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "exp", "log", "gelu"])
def test_op_activation_rejects_integer_tensors(name):
    with pytest.raises(TypeError, match="float32 or float64"):
        OPS[name][0](gd.tensor([1, 2]))
