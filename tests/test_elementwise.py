"""Differentiates the elementwise ops (functional/elementwise.py) through the Tensor API.

Every op is checked with gradcheck and gradgradcheck in float64 (central differences) on shapes
that include broadcasting pairs, Python scalars on either side, 0-d, size-1 and empty tensors and
non-contiguous views (a transposed leaf, a strided slice); inputs are drawn away from kinks and
singularities. Forward values are compared with NumPy, float32 gradients with float64 ones.
"""

from __future__ import annotations

import graddesc as gd
import numpy as np
import pytest
from graddesc.autograd import gradcheck, gradgradcheck


def _draw(rng, shape, domain):
    """float64 values for `domain`: 'any' in [-2, 2], 'pos' in [0.5, 2], 'nonzero' with
    0.3 <= |x| <= 2, 'away_half' (|x| and |x -+ 0.5| at least 0.1)."""
    if domain == "pos":
        return rng.uniform(0.5, 2.0, size=shape)
    if domain == "nonzero":
        return rng.uniform(0.3, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    x = rng.uniform(-2.0, 2.0, size=shape)
    if domain == "away_half":  # kinks of clamp(-0.5, 0.5), relu-like ops at 0, and 0.3
        for k in (-0.5, 0.0, 0.3, 0.5):
            x = np.where(np.abs(x - k) < 0.1, x + 0.2, x)
    return x


def _leaf(rng, shape, domain="any", dtype=gd.float64):
    return gd.tensor(_draw(rng, shape, domain), dtype=dtype, requires_grad=True)


def _check(fn, *inputs, second=True):
    """gradcheck (and gradgradcheck) of fn at inputs, raising with the worst element on failure."""
    assert gradcheck(fn, inputs)
    if second:
        assert gradgradcheck(fn, inputs)


# ---- unary ops and ops with one Python-scalar operand -------------------------------------
# name -> (graddesc function, NumPy oracle, input domain)
UNARY = {
    "neg": (lambda x: -x, np.negative, "any"),
    "neg_fn": (gd.neg, np.negative, "any"),
    "pos": (lambda x: +x * 1.0, lambda x: x, "any"),
    "abs": (gd.abs, np.abs, "nonzero"),
    "abs_method": (lambda x: abs(x), np.abs, "nonzero"),
    "sign": (gd.sign, np.sign, "nonzero"),
    "sqrt": (gd.sqrt, np.sqrt, "pos"),
    "square_fanout": (lambda x: x * x, np.square, "any"),
    "pow_2": (lambda x: x ** 2, lambda x: x ** 2, "any"),
    "pow_3": (lambda x: x.pow(3), lambda x: x ** 3, "any"),
    "pow_0": (lambda x: x ** 0, lambda x: x ** 0, "any"),
    "pow_1": (lambda x: x ** 1, lambda x: x ** 1, "any"),
    "pow_half": (lambda x: x ** 0.5, np.sqrt, "pos"),
    "pow_neg": (lambda x: x ** -1.5, lambda x: x ** -1.5, "pos"),
    "pow_fn": (lambda x: gd.pow(x, 2.5), lambda x: x ** 2.5, "pos"),
    "rpow": (lambda x: 2.0 ** x, lambda x: 2.0 ** x, "any"),
    "rpow_fraction": (lambda x: 0.5 ** x, lambda x: 0.5 ** x, "any"),
    "rpow_int": (lambda x: 3 ** x, lambda x: 3.0 ** x, "any"),
    "add_scalar": (lambda x: x + 1.5, lambda x: x + 1.5, "any"),
    "radd_scalar": (lambda x: 1.5 + x, lambda x: 1.5 + x, "any"),
    "sub_scalar": (lambda x: x - 1.5, lambda x: x - 1.5, "any"),
    "rsub_scalar": (lambda x: 1.5 - x, lambda x: 1.5 - x, "any"),
    "mul_scalar": (lambda x: x * -2.0, lambda x: x * -2.0, "any"),
    "rmul_scalar": (lambda x: 3 * x, lambda x: 3 * x, "any"),
    "div_scalar": (lambda x: x / 3.0, lambda x: x / 3.0, "any"),
    "rdiv_scalar": (lambda x: 3.0 / x, lambda x: 3.0 / x, "nonzero"),
    "numpy_scalar": (lambda x: x * np.float64(2.5) + np.float32(0.5),
                     lambda x: x * 2.5 + 0.5, "any"),
    "clamp": (lambda x: x.clamp(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), "away_half"),
    "clamp_min": (lambda x: gd.clamp(x, min=0.0), lambda x: np.maximum(x, 0.0), "away_half"),
    "clamp_max": (lambda x: x.clamp(max=0.3), lambda x: np.minimum(x, 0.3), "away_half"),
    "clip": (lambda x: x.clip(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), "away_half"),
    "maximum_scalar": (lambda x: gd.maximum(x, 0.3), lambda x: np.maximum(x, 0.3), "away_half"),
    "minimum_scalar": (lambda x: gd.minimum(0.3, x), lambda x: np.minimum(0.3, x), "away_half"),
    "where_scalar": (lambda x: gd.where(x > 0, x, 0.25), lambda x: np.where(x > 0, x, 0.25),
                     "away_half"),
    "where_scalar_first": (lambda x: gd.where(x > 0, -1.0, x * x),
                           lambda x: np.where(x > 0, -1.0, x * x), "away_half"),
    "add_alpha_self": (lambda x: gd.add(x, x, alpha=2.0), lambda x: 3.0 * x, "any"),
    "sub_alpha": (lambda x: x.sub(x * x, alpha=0.5), lambda x: x - 0.5 * x * x, "any"),
}
UNARY_SHAPES = [(), (1,), (5,), (2, 3), (2, 1, 3), (1, 1)]


@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradcheck(rng, name, shape):
    fn, _, domain = UNARY[name]
    _check(fn, _leaf(rng, shape, domain))


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward_matches_numpy(rng, name):
    fn, oracle, domain = UNARY[name]
    x = _draw(rng, (3, 4), domain)
    got = fn(gd.tensor(x, dtype=gd.float64))
    assert got.dtype == gd.float64
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got.numpy(), oracle(x), rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_zero_d_stays_zero_d(rng, name):
    fn, oracle, domain = UNARY[name]
    x = _leaf(rng, (), domain)
    y = fn(x)
    assert y.shape == ()
    np.testing.assert_allclose(y.item(), oracle(x.item()), rtol=1e-14)
    y.backward()
    assert x.grad.shape == ()


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 2, 1)], ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_empty_backward_gives_empty_grad(rng, name, shape):
    fn, _, domain = UNARY[name]
    x = _leaf(rng, shape, domain)
    y = fn(x)
    assert y.shape == shape
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == shape and x.grad.dtype == gd.float64
    _check(fn, _leaf(rng, shape, domain))


@pytest.mark.parametrize("view", ["transposed", "strided"])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_non_contiguous_input(rng, name, view):
    fn, oracle, domain = UNARY[name]
    base = _leaf(rng, (3, 4) if view == "transposed" else (3, 8), domain)

    def f(b):
        v = b.t() if view == "transposed" else b[:, ::2]
        assert not v.is_contiguous()
        return fn(v)

    _check(f, base)
    b = base.detach().numpy()
    ref = oracle(b.T if view == "transposed" else b[:, ::2])
    np.testing.assert_allclose(f(base).detach().numpy(), ref, rtol=1e-14)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float32_grad_close_to_float64(rng, name):
    fn, _, domain = UNARY[name]
    x = _draw(rng, (4, 5), domain)
    w = rng.standard_normal((4, 5))
    grads = {}
    for dt in (gd.float32, gd.float64):
        xt = gd.tensor(x, dtype=dt, requires_grad=True)
        y = fn(xt)
        assert y.dtype == dt  # Python and NumPy scalars do not promote float32
        (y * gd.tensor(w, dtype=dt)).sum().backward()
        assert xt.grad.dtype == dt
        grads[dt] = xt.grad.numpy().astype(np.float64)
    np.testing.assert_allclose(grads[gd.float32], grads[gd.float64], rtol=2e-5, atol=2e-6)


# ---- binary ops with broadcasting --------------------------------------------------------
def _maxmin_pair(rng, sa, sb):
    """Operands whose broadcast elements differ by at least 0.1 (no ties near the kink)."""
    while True:
        a, b = rng.uniform(-2, 2, size=sa), rng.uniform(-2, 2, size=sb)
        if np.all(np.abs(a - b) > 0.1):
            return a, b


# name -> (graddesc function, NumPy oracle, domain of a, domain of b)
BINARY = {
    "add": (lambda a, b: a + b, np.add, "any", "any"),
    "add_fn_alpha": (lambda a, b: gd.add(a, b, alpha=-0.5), lambda a, b: a - 0.5 * b,
                     "any", "any"),
    "sub": (lambda a, b: a - b, np.subtract, "any", "any"),
    "sub_alpha": (lambda a, b: a.sub(b, alpha=2), lambda a, b: a - 2 * b, "any", "any"),
    "mul": (lambda a, b: a * b, np.multiply, "any", "any"),
    "mul_fn": (gd.mul, np.multiply, "any", "any"),
    "div": (lambda a, b: a / b, np.divide, "any", "nonzero"),
    "div_fn": (gd.div, np.divide, "any", "nonzero"),
    "pow": (lambda a, b: a ** b, np.power, "pos", "any"),
    "pow_fn": (gd.pow, np.power, "pos", "any"),
    "maximum": (gd.maximum, np.maximum, "maxmin", "maxmin"),
    "minimum": (gd.minimum, np.minimum, "maxmin", "maxmin"),
    "max_elementwise": (lambda a, b: gd.max(a, b), np.maximum, "maxmin", "maxmin"),
    "where": (lambda a, b: gd.where(a > b, a, b * 2.0), lambda a, b: np.where(a > b, a, b * 2.0),
              "maxmin", "maxmin"),
    "fanout": (lambda a, b: a * b + a / (b * b + 1.0) - (a - b) ** 2,
               lambda a, b: a * b + a / (b * b + 1.0) - (a - b) ** 2, "any", "any"),
}
PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 1, 4), (5, 4)),
    ((5, 4), (3, 1, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
    ((1,), (4,)),
    ((2, 1), (1, 3)),
    ((1, 1), (1,)),
]


def _binary_inputs(rng, name, sa, sb, dtype=gd.float64):
    _, _, da, db = BINARY[name]
    if da == "maxmin":
        a, b = _maxmin_pair(rng, sa, sb)
    else:
        a, b = _draw(rng, sa, da), _draw(rng, sb, db)
    return (gd.tensor(a, dtype=dtype, requires_grad=True),
            gd.tensor(b, dtype=dtype, requires_grad=True))


@pytest.mark.parametrize("sa,sb", PAIRS, ids=lambda s: str(s))
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradcheck_with_broadcasting(rng, name, sa, sb):
    a, b = _binary_inputs(rng, name, sa, sb)
    _check(BINARY[name][0], a, b)


@pytest.mark.parametrize("sa,sb", PAIRS, ids=lambda s: str(s))
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_forward_matches_numpy(rng, name, sa, sb):
    fn, oracle = BINARY[name][:2]
    a, b = _binary_inputs(rng, name, sa, sb)
    got = fn(a, b)
    ref = oracle(a.detach().numpy(), b.detach().numpy())
    assert got.shape == np.shape(ref)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sa,sb", [((0, 3), (1, 3)), ((2, 0), (2, 1)), ((0,), ()),
                                   ((3, 1, 0), (5, 1))], ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_empty_backward_gives_grads_of_input_shape(rng, name, sa, sb):
    a, b = _binary_inputs(rng, name, sa, sb)
    y = BINARY[name][0](a, b)
    assert y.numel() == 0
    y.sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    # b's elements were each used zero times: their gradient is 0, not garbage
    np.testing.assert_array_equal(b.grad.numpy(), np.zeros(sb))
    _check(BINARY[name][0], *_binary_inputs(rng, name, sa, sb))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_one_side_without_grad(rng, name):
    a, b = _binary_inputs(rng, name, (3, 1), (4,))
    b.requires_grad_(False)
    _check(lambda x: BINARY[name][0](x, b), a)
    a.requires_grad_(False)
    b.requires_grad_(True)
    _check(lambda y: BINARY[name][0](a, y), b)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_non_contiguous_inputs(rng, name):
    # a is seen through a transpose (4, 3) -> (3, 4), b through a strided slice (3, 8) -> (3, 4)
    a0, b0 = _binary_inputs(rng, name, (3, 4), (3, 4))
    base_a = gd.tensor(a0.detach().numpy().T, dtype=gd.float64, requires_grad=True)
    wide = np.zeros((3, 8))
    wide[:, ::2] = b0.detach().numpy()
    wide[:, 1::2] = 7.0  # never read: a wrong stride shows up in the forward value
    base_b = gd.tensor(wide, dtype=gd.float64, requires_grad=True)
    fn, oracle = BINARY[name][:2]

    def f(ba, bb):
        return fn(ba.t(), bb[:, ::2])

    np.testing.assert_allclose(f(base_a, base_b).detach().numpy(),
                               oracle(a0.detach().numpy(), b0.detach().numpy()), rtol=1e-14)
    _check(f, base_a, base_b)
    f(base_a, base_b).sum().backward()
    np.testing.assert_array_equal(base_b.grad.numpy()[:, 1::2], 0.0)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_float32_grad_close_to_float64(rng, name):
    a, b = _binary_inputs(rng, name, (3, 1, 4), (5, 4))
    w = rng.standard_normal((3, 5, 4))
    grads = {}
    for dt in (gd.float32, gd.float64):
        at = gd.tensor(a.detach().numpy(), dtype=dt, requires_grad=True)
        bt = gd.tensor(b.detach().numpy(), dtype=dt, requires_grad=True)
        out = BINARY[name][0](at, bt)
        assert out.dtype == dt
        (out * gd.tensor(w, dtype=dt)).sum().backward()
        grads[dt] = (at.grad.numpy().astype(np.float64), bt.grad.numpy().astype(np.float64))
    for g32, g64 in zip(grads[gd.float32], grads[gd.float64]):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


# ---- ops with tensor-valued extra arguments ------------------------------------------------
def test_clamp_with_tensor_bounds(rng):
    lo = gd.tensor(rng.uniform(-1.0, -0.2, size=(4,)), dtype=gd.float64, requires_grad=True)
    hi = gd.tensor(rng.uniform(0.2, 1.0, size=(3, 1)), dtype=gd.float64, requires_grad=True)
    x = rng.uniform(-2, 2, size=(3, 4))
    lv, hv = lo.detach().numpy(), hi.detach().numpy()
    # keep x at least 0.05 away from each bound it is compared with
    x = np.where(np.abs(x - lv) < 0.05, x + 0.1, x)
    x = np.where(np.abs(x - hv) < 0.05, x + 0.1, x)
    x = np.where(np.abs(x - lv) < 0.05, x + 0.1, x)
    xt = gd.tensor(x, dtype=gd.float64, requires_grad=True)
    np.testing.assert_array_equal(gd.clamp(xt, lo, hi).detach().numpy(),
                                  np.minimum(np.maximum(x, lv), hv))
    _check(lambda a, b, c: gd.clamp(a, b, c), xt, lo, hi)
    _check(lambda a, b: a.clamp(min=b), xt, lo)
    _check(lambda a, c: a.clamp(max=c), xt, hi)


def test_clamp_gradient_at_the_bounds_passes_through():
    # PyTorch's convention: d clamp(x, lo, hi) / dx = 1 for lo <= x <= hi (bounds included)
    x = gd.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=gd.float64, requires_grad=True)
    x.clamp(-0.5, 0.5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])


def test_clamp_needs_a_bound():
    with pytest.raises(ValueError, match="clamp"):
        gd.clamp(gd.ones(2))


def test_where_gradient_goes_to_the_chosen_branch(rng):
    cond = gd.tensor(rng.random((3, 1, 4)) > 0.5)
    a = _leaf(rng, (5, 4))
    b = _leaf(rng, (3, 5, 1))
    _check(lambda x, y: gd.where(cond, x, y), a, b)
    out = gd.where(cond, a, b)
    np.testing.assert_array_equal(out.detach().numpy(),
                                  np.where(cond.numpy(), a.detach().numpy(), b.detach().numpy()))
    out.sum().backward()
    c = np.broadcast_to(cond.numpy(), (3, 5, 4))
    np.testing.assert_array_equal(a.grad.numpy(), c.sum(0))
    np.testing.assert_array_equal(b.grad.numpy(), (~c).sum(2, keepdims=True))


def test_where_condition_must_be_bool():
    with pytest.raises(TypeError, match="bool"):
        gd.where(gd.ones(2), gd.ones(2), gd.zeros(2))


@pytest.mark.parametrize("fn", [gd.maximum, gd.minimum])
def test_maximum_minimum_ties_split_the_gradient(fn):
    a = gd.tensor([1.0, 2.0, 3.0], dtype=gd.float64, requires_grad=True)
    b = gd.tensor([1.0, 0.0, 3.0], dtype=gd.float64, requires_grad=True)
    fn(a, b).sum().backward()
    wa = [0.5, 1.0, 0.5] if fn is gd.maximum else [0.5, 0.0, 0.5]
    np.testing.assert_array_equal(a.grad.numpy(), wa)
    np.testing.assert_array_equal(b.grad.numpy(), 1.0 - np.array(wa))


def test_abs_and_sign_at_zero_have_zero_gradient():
    x = gd.tensor([0.0, -2.0, 3.0], dtype=gd.float64, requires_grad=True)
    (x.abs() + x.sign()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, -1.0, 1.0])


def test_pow_exponent_gradient_at_zero_base():
    # d/db 0^b = 0 for b > 0 (PyTorch's value); b log(a) would be 0 * -inf = nan
    a = gd.tensor([0.0, 2.0], dtype=gd.float64, requires_grad=True)
    b = gd.tensor([2.0, 3.0], dtype=gd.float64, requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 8.0 * np.log(2.0)], rtol=1e-15)
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 12.0], rtol=1e-15)
    c = gd.tensor([0.0, 2.0], dtype=gd.float64, requires_grad=True)
    (0.0 ** c).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), [0.0, 0.0])


def test_pow_third_derivative():
    # d^3/dx^3 x^4 = 24 x, through three create_graph levels
    x = gd.tensor([0.5, -1.5], dtype=gd.float64, requires_grad=True)
    (g1,) = gd.autograd.grad((x ** 4).sum(), x, create_graph=True)
    (g2,) = gd.autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = gd.autograd.grad(g2.sum(), x)
    np.testing.assert_allclose(g3.numpy(), 24 * x.detach().numpy(), rtol=1e-14)


@pytest.mark.parametrize("op,ufunc", [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                                      ("le", np.less_equal), ("gt", np.greater),
                                      ("ge", np.greater_equal)])
def test_comparisons_are_bool_and_not_differentiable(rng, op, ufunc):
    a = gd.tensor(rng.integers(0, 3, (3, 1, 4)).astype(np.float64), requires_grad=True)
    b = gd.tensor(rng.integers(0, 3, (5, 4)).astype(np.float64), requires_grad=True)
    for x, y, ref in [(a, b, ufunc(a.detach().numpy(), b.detach().numpy())),
                      (a, 1.0, ufunc(a.detach().numpy(), 1.0)),
                      (a, a, ufunc(a.detach().numpy(), a.detach().numpy()))]:
        out = getattr(x, op)(y)
        assert out.dtype == gd.bool
        assert not out.requires_grad and out.grad_fn is None
        np.testing.assert_array_equal(out.numpy(), ref)
    sym = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "le": "__le__", "gt": "__gt__",
           "ge": "__ge__"}[op]
    np.testing.assert_array_equal(getattr(a, sym)(b).numpy(),
                                  ufunc(a.detach().numpy(), b.detach().numpy()))
    np.testing.assert_array_equal(getattr(gd, op)(a, b).numpy(),
                                  ufunc(a.detach().numpy(), b.detach().numpy()))


def test_comparison_on_empty_and_zero_d(rng):
    assert (gd.zeros(0, 3) < 1.0).shape == (0, 3)
    assert bool(gd.tensor(2.0) > 1.0)


def test_gradient_of_unused_broadcast_operand_keeps_dtype_and_shape(rng):
    a = _leaf(rng, (2, 3))
    b = gd.tensor(rng.standard_normal((1, 3)), dtype=gd.float32, requires_grad=True)
    # mixed float32/float64 promotes to float64 (NumPy's rule); b's gradient comes back float32
    out = a * b
    assert out.dtype == gd.float64
    out.sum().backward()
    assert b.grad.dtype == gd.float32 and b.grad.shape == (1, 3)
    np.testing.assert_allclose(b.grad.numpy(), a.detach().numpy().sum(0, keepdims=True),
                               rtol=1e-6)
