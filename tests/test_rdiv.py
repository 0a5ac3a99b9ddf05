"""A Python number over a tensor (c / t) is computed as PyTorch computes it, t.reciprocal() * c:
PyTorch's bits, a backward that keeps 1 / t (so an in-place change of t afterwards leaves it
valid), differentiable twice, and recorded by gd.compile."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test extra
    torch = None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [-1.5, 3, 1e-3])
def test_value_is_reciprocal_times_c(dtype, c) -> None:
    x = np.random.default_rng(0).standard_normal(500).astype(dtype)
    x[0], x[1] = 0.0, -0.0  # +-inf, as 1 / 0 gives
    with np.errstate(divide="ignore"):
        want = np.multiply(np.reciprocal(x), c)
    np.testing.assert_array_equal((c / gd.tensor(x)).numpy(), want)
    if torch is not None:
        np.testing.assert_array_equal((c / gd.tensor(x)).numpy(), (c / torch.tensor(x)).numpy())


def test_gradient_survives_an_in_place_change_of_the_denominator() -> None:
    t0 = gd.tensor([1.5, -0.5, 2.0], dtype=gd.float64, requires_grad=True)
    t1 = t0 * 1.0
    t2 = -1.5 / t1
    t1.add_(-1.5)
    (t1 + t2).sum().backward()
    x = np.array([1.5, -0.5, 2.0])
    np.testing.assert_allclose(t0.grad.numpy(), 1.0 + 1.5 / x ** 2, rtol=1e-15)


def test_gradcheck_and_gradgradcheck() -> None:
    x = gd.tensor(np.random.default_rng(1).uniform(0.5, 2.0, 6), requires_grad=True)
    assert gd.autograd.gradcheck(lambda t: 2.5 / t, (x,))
    assert gd.autograd.gradgradcheck(lambda t: 2.5 / t, (x,))


def test_non_float_and_bool_operands_keep_numpy_division() -> None:
    np.testing.assert_array_equal((True / gd.tensor([2.0, 4.0])).numpy(), [0.5, 0.25])
    np.testing.assert_array_equal((3 / gd.tensor([2, 4])).numpy(), np.array([1.5, 0.75]))


def test_captured_by_compile() -> None:
    w = gd.tensor(np.random.default_rng(2).uniform(1.0, 2.0, (4, 3)), requires_grad=True)
    opt = gd.optim.SGD([w], lr=0.01)

    def step(x):
        opt.zero_grad()
        loss = (1.0 / (x @ w)).sum()
        loss.backward()
        opt.step()
        return loss

    compiled = gd.compile(step)
    x = gd.tensor(np.random.default_rng(3).uniform(1.0, 2.0, (5, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            compiled(x)
    names = [n for e in compiled._cache.values() if getattr(e, "program", None) is not None
             for n in e.program.names()]
    assert names
