"""functional/port_ops.py and the Tensor methods and operators it adds (%, //, log1p, tril, ...):
values against NumPy (and PyTorch when installed), float64 gradcheck, in-place forms against
the out-of-place ones, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
from graddesc.autograd import gradcheck, gradgradcheck


@pytest.fixture
def rng():
    return np.random.default_rng(16)


def _t(a, requires_grad=False):
    return gd.tensor(np.asarray(a), requires_grad=requires_grad)


UNARY = [("log1p", np.log1p, lambda r: r.uniform(-0.5, 2, (3, 4))),
         ("expm1", np.expm1, lambda r: r.normal(size=(3, 4))),
         ("reciprocal", np.reciprocal, lambda r: r.uniform(0.5, 2, (3, 4)) * r.choice([-1, 1],
                                                                                   (3, 4))),
         ("rsqrt", lambda a: 1 / np.sqrt(a), lambda r: r.uniform(0.2, 3, (3, 4)))]


@pytest.mark.parametrize(("name", "oracle", "make"), UNARY)
def test_unary_values_and_gradients(rng, name, oracle, make):
    a = make(rng)
    fn = getattr(gd, name)
    np.testing.assert_allclose(fn(_t(a)).numpy(), oracle(a), rtol=1e-14)
    np.testing.assert_allclose(getattr(_t(a.astype(np.float32)), name)().numpy(),
                               oracle(a).astype(np.float32), rtol=1e-6)
    x = _t(a, requires_grad=True)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))
    if name in ("log1p", "reciprocal"):  # the in-place forms PyTorch scripts use
        y = _t(a).clone()
        assert getattr(y, name + "_")() is y
        np.testing.assert_array_equal(y.numpy(), fn(_t(a)).numpy())


def test_log1p_is_accurate_for_tiny_values():
    x = np.array([1e-12, -1e-15, 3e-20])
    np.testing.assert_allclose(gd.log1p(_t(x)).numpy(), x, rtol=1e-12)
    np.testing.assert_allclose(gd.expm1(_t(x)).numpy(), x, rtol=1e-12)


@pytest.mark.parametrize("floored", [True, False])
def test_remainder_and_fmod(rng, floored):
    a = rng.uniform(-9, 9, (4, 5))
    b = rng.uniform(0.7, 3, (5,)) * rng.choice([-1, 1], 5)
    fn, oracle = (gd.remainder, np.remainder) if floored else (gd.fmod, np.fmod)
    np.testing.assert_allclose(fn(_t(a), _t(b)).numpy(), oracle(a, b), rtol=1e-14, atol=1e-14)
    ai = rng.integers(-20, 20, (6,))
    bi = rng.integers(1, 7, (6,)) * rng.choice([-1, 1], 6)
    got = fn(_t(ai), _t(bi))
    assert got.dtype == gd.int64
    np.testing.assert_array_equal(got.numpy(), oracle(ai, bi))
    # differentiable in both arguments (away from the jumps)
    xa, xb = _t(a, requires_grad=True), _t(b, requires_grad=True)
    assert gradcheck(fn, (xa, xb))
    if floored:
        np.testing.assert_allclose((_t(a) % _t(b)).numpy(), np.remainder(a, b), rtol=1e-14)
        np.testing.assert_array_equal((7 % _t(bi)).numpy(), 7 % bi)
        np.testing.assert_allclose((_t(a) % b).numpy(), np.remainder(a, b), rtol=1e-14)


def test_floor_divide_operator(rng):
    ai = rng.integers(-20, 20, (8,))
    bi = rng.integers(1, 5, (8,)) * rng.choice([-1, 1], 8)
    np.testing.assert_array_equal((_t(ai) // _t(bi)).numpy(), ai // bi)
    np.testing.assert_array_equal((_t(ai) // 3).numpy(), ai // 3)
    np.testing.assert_array_equal((100 // _t(bi)).numpy(), 100 // bi)
    a = rng.normal(size=8) * 5
    np.testing.assert_array_equal((_t(a) // 2.0).numpy(), np.floor_divide(a, 2.0))
    with pytest.raises(RuntimeError, match="by zero"):
        _t(ai) // 0
    with pytest.raises(RuntimeError, match="by zero"):
        _t(ai) % _t(np.zeros(8, np.int64))


def test_mixed_dtypes_follow_pytorch_for_python_numbers():
    torch = pytest.importorskip("torch")
    cases = ["i % 2.5", "i % 2", "7 % i", "7.5 % i", "a % 2", "2.5 // a", "ad % 2.0", "i // 2",
             "a // 2"]
    for e in cases:
        def make(lib):
            return {"a": lib.tensor([5.0, -3.0, 7.5]), "i": lib.tensor([5, -3, 7]),
                    "ad": lib.tensor([1.5, 2.0, -3.0], dtype=lib.float64)}
        g, t = eval(e, make(gd)), eval(e, make(torch))  # noqa: S307
        assert g.tolist() == t.tolist(), e
        assert str(g.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], e


@pytest.mark.parametrize("diagonal", [-1, 0, 2])
def test_tril_triu(rng, diagonal):
    a = rng.normal(size=(2, 3, 4))
    for name, oracle in (("tril", np.tril), ("triu", np.triu)):
        fn = getattr(gd, name)
        np.testing.assert_array_equal(fn(_t(a), diagonal).numpy(), oracle(a, diagonal))
        np.testing.assert_array_equal(getattr(_t(a), name)(diagonal=diagonal).numpy(),
                                      oracle(a, diagonal))
        x = _t(a, requires_grad=True)
        assert gradcheck(lambda x, fn=fn: fn(x, diagonal) ** 2, (x,))
        y = _t(a).clone()
        getattr(y, name + "_")(diagonal)
        np.testing.assert_array_equal(y.numpy(), oracle(a, diagonal))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gd.tril(gd.ones(3))
    with pytest.raises(TypeError, match="diagonal must be an int"):
        gd.triu(gd.ones(3, 3), 1.0)


def test_outer_bmm(rng):
    u, v = rng.normal(size=3), rng.normal(size=4)
    np.testing.assert_allclose(gd.outer(_t(u), _t(v)).numpy(), np.outer(u, v), rtol=1e-14)
    assert gradcheck(gd.outer, (_t(u, True), _t(v, True)))
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
    np.testing.assert_allclose(gd.bmm(_t(a), _t(b)).numpy(), a @ b, rtol=1e-12)
    assert gradcheck(gd.bmm, (_t(a, True), _t(b, True)))
    with pytest.raises(ValueError, match="argument 'vec2' must be 1-d, got shape"):
        gd.outer(_t(u), _t(a))
    with pytest.raises(ValueError, match="argument 'mat2' must be 3-d"):
        gd.bmm(_t(a), _t(v))
    with pytest.raises(ValueError, match=r"shapes \(2, 3, 4\) and \(2, 5, 4\) don't match"):
        gd.bmm(_t(a), _t(b.transpose(0, 2, 1)))


def test_selection_and_tests(rng):
    a = rng.normal(size=(3, 4))
    a[0, 1] = 0.0
    m = a > 0
    np.testing.assert_array_equal(gd.masked_select(_t(a), _t(m)).numpy(), a[m])
    np.testing.assert_array_equal(_t(a).masked_select(_t(m[0])).numpy(),
                                  a[np.broadcast_to(m[0], a.shape)])
    x = _t(a, requires_grad=True)
    assert gradcheck(lambda x: gd.masked_select(x, _t(m)), (x,))
    np.testing.assert_array_equal(gd.nonzero(_t(a)).numpy(), np.argwhere(a))
    for got, want in zip(_t(a).nonzero(as_tuple=True), np.nonzero(a)):
        np.testing.assert_array_equal(got.numpy(), want)
    assert gd.count_nonzero(_t(a)).item() == np.count_nonzero(a)
    np.testing.assert_array_equal(gd.count_nonzero(_t(a), dim=1).numpy(),
                                  np.count_nonzero(a, axis=1))
    b = np.array([1.0, np.inf, -np.inf, np.nan])
    np.testing.assert_array_equal(_t(b).isinf().numpy(), np.isinf(b))
    np.testing.assert_array_equal(gd.isclose(_t(b), _t(b), equal_nan=True).numpy(),
                                  np.isclose(b, b, equal_nan=True))
    assert gd.allclose(_t(a), _t(a + 1e-9)) and not gd.allclose(_t(a), _t(a + 1e-3))
    assert gd.equal(_t(a), _t(a.copy())) and not gd.equal(_t(a), _t(a[:2]))
    with pytest.raises(TypeError, match="argument 'mask' must be a bool Tensor"):
        gd.masked_select(_t(a), _t(a))
    with pytest.raises(ValueError, match="does not broadcast"):
        gd.masked_select(_t(a), _t(np.ones(5, bool)))


def test_where_method_and_inplace_forms(rng):
    a = rng.normal(size=(3, 4))
    x = _t(a)
    np.testing.assert_array_equal(x.where(x > 0, 0.0).numpy(), np.where(a > 0, a, 0.0))
    for name, oracle in (("exp_", np.exp), ("sigmoid_", lambda v: 1 / (1 + np.exp(-v))),
                         ("tanh_", np.tanh), ("abs_", np.abs), ("neg_", np.negative),
                         ("clamp_min_", lambda v: np.maximum(v, 0.1)),
                         ("clamp_max_", lambda v: np.minimum(v, 0.1)),
                         ("pow_", lambda v: v ** 2)):
        y = _t(a).clone()
        args = (0.1,) if name.startswith("clamp") else (2,) if name == "pow_" else ()
        assert getattr(y, name)(*args) is y
        np.testing.assert_allclose(y.numpy(), oracle(a), rtol=1e-12, err_msg=name)
    for name, oracle in (("sqrt_", np.sqrt), ("log_", np.log)):
        y = _t(np.abs(a)).clone()
        getattr(y, name)()
        np.testing.assert_allclose(y.numpy(), oracle(np.abs(a)), rtol=1e-12, err_msg=name)
    # on the graph: the in-place result differentiates like the out-of-place one
    w = _t(a, requires_grad=True)
    h = w * 1.0
    h.exp_()
    h.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.exp(a), rtol=1e-12)
    with pytest.raises(RuntimeError, match="leaf"):
        _t(a, requires_grad=True).exp_()


def test_math_constants_like_torch():
    torch = pytest.importorskip("torch")
    assert (gd.pi, gd.e, gd.inf) == (torch.pi, torch.e, torch.inf)
    assert np.isnan(gd.nan) and np.isnan(torch.nan)
