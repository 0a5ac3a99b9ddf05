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
        if name == "div" and type(other) in (float, int):
            # a number over a tensor is PyTorch's t.reciprocal() * c (so that backward keeps
            # 1 / t, not t), rounded twice: PyTorch's bits, not NumPy's c / t
            want_r = np.multiply(np.reciprocal(a), other)
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


# ---- the backward fast paths (a backward without create_graph calls the kernels directly) ---
# Each is checked against the general path, the same backward run with create_graph=True (where
# every gradient goes through the ops): the same kernels in the same order, so bit for bit.
def _grads_both_ways(fn, *arrays):
    """fn's gradients w.r.t. arrays as NumPy arrays, by backward() (the fast paths) and by
    autograd.grad with create_graph=True (the ops)."""
    xs = [gd.tensor(a, requires_grad=True) for a in arrays]
    fn(*xs).backward()
    fast = [x.grad.numpy().copy() for x in xs]
    ys = [gd.tensor(a, requires_grad=True) for a in arrays]
    general = gd.autograd.grad(fn(*ys), ys, create_graph=True)
    return fast, [g.detach().numpy() for g in general]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("e", [2, 3, 2.0, 1.5, 0.5, 2.5, -1, -2.0, 1, 0])
def test_pow_by_a_number_backward_fast_equals_general(dtype, e):
    a = np.abs(_arr((3, 4), dtype)) + 0.25
    g = _arr((3, 4), dtype, 5)
    fast, general = _grads_both_ways(lambda x: ((x ** e) * gd.tensor(g)).sum(), a)
    np.testing.assert_array_equal(fast[0], general[0])
    assert fast[0].dtype == dtype
    with np.errstate(all="ignore"):
        want = g * (e * a ** (e - 1)) if e != 0 else np.zeros_like(a)
    np.testing.assert_allclose(fast[0], want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_pow_special_exponents_forward_unchanged():
    # x ** 0.5 is sqrt and x ** -0.5 rsqrt (PyTorch's values at -0.0 and -inf), integers stay
    # on NumPy and refuse negative integer powers
    a = np.array([-np.inf, -0.0, 0.0, 4.0], np.float32)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal((gd.tensor(a) ** 0.5).numpy(), np.sqrt(a))
        np.testing.assert_array_equal((gd.tensor(a) ** -0.5).numpy(), 1 / np.sqrt(a))
        np.testing.assert_array_equal((gd.tensor(a) ** 3).numpy(), a ** 3)
    assert (gd.tensor([2, 3]) ** 2).tolist() == [4, 9]
    with pytest.raises(ValueError, match="negative integer powers"):
        gd.tensor([2, 3]) ** -1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", ["sum", "mean"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (1, True), (1, False), ((0, 2), False),
                                         (0, True)])
def test_sum_mean_backward_fast_equals_general(dtype, how, dim, keepdim):
    a = _arr((2, 3, 4), dtype)
    w = _arr((2, 3, 4), dtype, 7)

    def f(x):
        r = getattr(x, how)() if dim is None else getattr(x, how)(dim, keepdim=keepdim)
        return (r * r).sum() + (x * gd.tensor(w)).sum()

    fast, general = _grads_both_ways(f, a)
    np.testing.assert_array_equal(fast[0], general[0])
    r = a.sum(axis=dim, keepdims=True) if dim is not None else a.sum(keepdims=True)
    n = a.size // r.size if how == "mean" else 1
    want = 2 * r / n / n + w if how == "mean" else 2 * r + w
    np.testing.assert_allclose(fast[0], np.broadcast_to(want, a.shape),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_mean_backward_of_an_empty_tensor():
    x = gd.zeros(0, 3, requires_grad=True)
    x.mean(0).sum().backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_backward_fast_equals_general_and_numpy(dtype):
    a, b = _arr((3, 5), dtype), _arr((5, 2), dtype, 1)
    g = _arr((3, 2), dtype, 2)
    fast, general = _grads_both_ways(lambda x, y: ((x @ y) * gd.tensor(g)).sum(), a, b)
    for f_, g_ in zip(fast, general):
        np.testing.assert_array_equal(f_, g_)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast[0], g @ b.T, rtol=tol)
    np.testing.assert_allclose(fast[1], a.T @ g, rtol=tol)
    # a transposed operand (a strided view) and one that needs no gradient
    bt = gd.tensor(b.T.copy()).t()
    x = gd.tensor(a, requires_grad=True)
    ((x @ bt) * gd.tensor(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), g @ b.T, rtol=tol)


def test_neg_and_sub_backward_fast_equals_general():
    a, b = _arr((4,), np.float32), _arr((4,), np.float32, 1)
    fast, general = _grads_both_ways(lambda x, y: ((-x - y) * (x - 2.0 * y)).sum(), a, b)
    for f_, g_ in zip(fast, general):
        np.testing.assert_array_equal(f_, g_)
    np.testing.assert_allclose(fast[0], -(a - 2 * b) + (-a - b), rtol=1e-6)


@pytest.mark.parametrize("perm", [(1, 0), (2, 0, 1), (1, 2, 0), (0, 3, 1, 2), (3, 2, 1, 0)])
def test_permute_backward_inverse(perm):
    shape = (2, 3, 4, 5)[:len(perm)]
    a = _arr(shape, np.float64)
    w = _arr(tuple(shape[p] for p in perm), np.float64, 4)
    x = gd.tensor(a, requires_grad=True)
    (x.permute(*perm) * gd.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.transpose(w, np.argsort(perm)))


def test_zero_grad_fast_path_and_the_general_one():
    w = gd.nn.Parameter(gd.ones(3))
    b = gd.tensor([1.0], requires_grad=True)
    opt = gd.optim.SGD([w, b], lr=0.1)
    (w.sum() + b.sum()).backward()
    opt.zero_grad()
    assert w.grad is None and b.grad is None
    (w.sum() * 2 + b.sum()).backward()
    opt.zero_grad(set_to_none=False)
    assert w.grad.tolist() == [0.0, 0.0, 0.0] and b.grad.tolist() == [0.0]
    (w.sum() * 2).backward()  # accumulated into the zeroed .grad; b has none
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), [0.8, 0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), [1.0])


def test_zero_grad_calls_a_subclass_grad_setter():
    cleared = []

    class Watched(gd.Tensor):
        __slots__ = ()

        @property
        def grad(self):
            return self._grad

        @grad.setter
        def grad(self, value):
            cleared.append(value)
            self._grad = value

    p = gd.tensor([1.0, 2.0])
    w = Watched.__new__(Watched)
    w._init(p._data.copy(), True)
    opt = gd.optim.SGD([w], lr=0.5)
    (w * w).sum().backward()
    opt.step()  # the subclass's getter is used for the gradient
    np.testing.assert_allclose(w._data, [0.0, 0.0])
    opt.zero_grad()
    assert cleared == [None] and w._grad is None


def test_pow_and_matmul_operators_agree_with_the_functions():
    a = _arr((3, 3), np.float32)
    t = gd.tensor(a)
    for e in (2, 3.0, True, -1.5):
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal((t ** e).numpy(), gd.pow(t, e).numpy())
            np.testing.assert_array_equal((e ** t).numpy(), gd.pow(e, t).numpy())
    np.testing.assert_array_equal((t ** gd.tensor(a)).numpy(), gd.pow(t, gd.tensor(a)).numpy())
    np.testing.assert_array_equal((t ** np.float32(2)).numpy(), (a ** 2))
    np.testing.assert_array_equal((t ** np.full((3, 3), 2.0, np.float32)).numpy(), a ** 2)
    np.testing.assert_allclose((t @ t).numpy(), a @ a, rtol=1e-6)
    for bad in ("x", None, [1.0]):
        with pytest.raises(TypeError):
            t ** bad
    with pytest.raises(TypeError):
        t @ a  # a NumPy array: matmul wants tensors
    with pytest.raises(TypeError):
        t @ 2.0


def test_short_tapes_keep_their_tuples_long_tapes_share_them():
    x = gd.ones(3, requires_grad=True)
    (x * 2.0).sum().backward()  # (a backward starts a new tape)
    y = x * 2.0
    assert y.grad_fn.needs_input_grad == (True, False)
    for _ in range(gd_function._SHARE_AFTER + 10):
        y = y * 1.0
    z1 = y * 1.0
    z2 = y * 1.0
    assert z1.grad_fn._input_meta is z2.grad_fn._input_meta
    assert z1.grad_fn.needs_input_grad is z2.grad_fn.needs_input_grad
    z1.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0, 4.0])
