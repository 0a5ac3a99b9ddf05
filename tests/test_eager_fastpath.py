"""The eager fast paths (issue 22): the arithmetic operators go straight to the op for a tensor or
Python-number operand, Mul's backward scales by a number in one kernel call, and the tape shares
equal bookkeeping tuples between nodes. Each must give what the general path gives: checked
against NumPy (the forward), closed-form gradients, and PyTorch when installed."""

from __future__ import annotations

import operator

import numpy as np
import pytest

import graddesc as gd
from graddesc.autograd import function as gd_function

OPS = [("add", operator.add, np.add), ("sub", operator.sub, np.subtract),
       ("mul", operator.mul, np.multiply), ("div", operator.truediv, np.true_divide)]


def _arr(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) + 2.0).astype(dtype)


@pytest.mark.parametrize("name,op,npop", OPS)
@pytest.mark.parametrize("other", [1.5, 3, True, -0.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_operator_with_a_number_matches_numpy_both_orders(name, op, npop, other, dtype):
    a = _arr((3, 4), dtype)
    t = gd.tensor(a)
    with np.errstate(all="ignore"):
        want = npop(a, other)
        want_r = npop(other, a)
    got = op(t, other)
    got_r = op(other, t)
    assert got.dtype == gd.tensor(want).dtype and got_r.dtype == gd.tensor(want_r).dtype
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(got_r.numpy(), want_r)
    # the named method (the general path) agrees
    np.testing.assert_array_equal(getattr(t, name)(other).numpy(), want)


@pytest.mark.parametrize("name,op,npop", OPS)
def test_operator_broadcasting_promotion_and_strides(name, op, npop):
    a = _arr((4, 3), np.float32, 1).T  # non-contiguous (3, 4)
    b = _arr((4,), np.float64, 2)
    ta, tb = gd.tensor(_arr((4, 3), np.float32, 1)).t(), gd.tensor(b)
    assert not ta.is_contiguous()
    got = op(ta, tb)
    want = npop(a, b)
    assert got.numpy().dtype == want.dtype == np.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-15)
    ti = gd.tensor(np.arange(4))  # int64 with float32: NumPy's result dtype (the docs' rule)
    got = op(ta, ti)
    with np.errstate(all="ignore"):
        want = npop(a, np.arange(4))
    assert got.numpy().dtype == want.dtype
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    # the named method (the general path) agrees
    np.testing.assert_array_equal(getattr(ta, name)(ti).numpy(), got.numpy())


def test_operator_numpy_scalars_and_arrays_take_the_general_path():
    t = gd.tensor([1.0, 2.0])
    np.testing.assert_array_equal((t * np.float32(2)).numpy(), [2.0, 4.0])
    np.testing.assert_array_equal((t + np.array([1.0, 1.0])).numpy(), [2.0, 3.0])
    np.testing.assert_array_equal((np.int64(3) - t).numpy(), [2.0, 1.0])


@pytest.mark.parametrize("bad", ["x", None, [1.0, 2.0], object()])
@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv])
def test_operator_bad_operand_raises(op, bad):
    t = gd.tensor([1.0, 2.0])
    with pytest.raises(TypeError):
        op(t, bad)
    with pytest.raises(TypeError):
        op(bad, t)


def test_operator_shape_mismatch_raises():
    with pytest.raises((ValueError, RuntimeError)):
        gd.ones(3) * gd.ones(4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("s", [1.0001, -2.5, 3, True])
def test_mul_backward_by_a_number(dtype, s):
    a = _arr((5,), dtype)
    x = gd.tensor(a, requires_grad=True)
    g = _arr((5,), dtype, 3)
    (x * s).backward(gd.tensor(g))
    assert x.grad.numpy().dtype == dtype
    np.testing.assert_array_equal(x.grad.numpy(), (g * dtype(s)).astype(dtype))
    x.grad = None
    (s * x).backward(gd.tensor(g))
    np.testing.assert_array_equal(x.grad.numpy(), (g * dtype(s)).astype(dtype))


def test_mul_by_a_number_double_backward():
    # with create_graph the scaled gradient must stay on the tape
    x = gd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = ((x * 2.5) * x).sum()  # d/dx = 5 x, d2/dx2 = 5
    (gx,) = gd.autograd.grad(y, x, create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), 5.0 * np.array([1.0, 2.0, 3.0]))
    gx.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0, 5.0])


def test_long_chain_matches_closed_form_and_torch():
    n = 300
    x = gd.ones(7, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    want = np.float32(1)
    for _ in range(n):
        want = np.float32(want * np.float32(1.0001))
    np.testing.assert_allclose(x.grad.numpy(), np.full(7, want), rtol=1e-6)
    torch = pytest.importorskip("torch")
    tx = torch.ones(7, requires_grad=True)
    ty = tx
    for _ in range(n):
        ty = ty * 1.0001 + 0.0
    ty.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


def test_shared_bookkeeping_is_per_node_correct():
    a = gd.tensor([1.0, 2.0], requires_grad=True)
    b = gd.tensor([3.0, 4.0])
    y1 = a * b
    y2 = b * a
    assert y1.grad_fn.needs_input_grad == (True, False)
    assert y2.grad_fn.needs_input_grad == (False, True)
    assert y1.grad_fn._input_meta == (((2,), np.dtype(np.float32)),) * 2
    z = gd.tensor([1.0], dtype=gd.float64, requires_grad=True) * 2.0
    assert z.grad_fn._input_meta == (((1,), np.dtype(np.float64)), None)
    assert z.grad_fn._output_meta == (((1,), np.dtype(np.float64)),)


def test_shared_table_is_bounded():
    for n in range(1, 5000):
        gd.ones(n, requires_grad=True) * 2.0
    assert len(gd_function._SHARED) <= 4096


def test_inplace_after_save_still_detected():
    a = gd.tensor([1.0, 2.0], requires_grad=True)
    b = a * 1.0
    c = b * b  # saves b twice
    b.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.sum().backward()
