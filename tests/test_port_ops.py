"""The Tensor methods added for PyTorch ports (functional/math.py, indexing.py, sorting.py):
forward against NumPy (and PyTorch when installed), gradcheck and gradgradcheck in float64,
the in-place forms, and bad arguments raising errors that name them."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graddesc as gd
from graddesc.autograd import gradcheck, gradgradcheck


def _leaf(a):
    return gd.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _check(fn, *inputs, second=True):
    assert gradcheck(fn, inputs)
    if second:
        assert gradgradcheck(fn, inputs)


@pytest.fixture
def x34(rng):
    # away from 0 and from ties, where norm/sort/abs have kinks
    return rng.uniform(0.3, 1.5, size=(3, 4)) * rng.choice([-1.0, 1.0], size=(3, 4))


# ---- math ---------------------------------------------------------------------------------------
NORMS = [(2, None), (1, None), (math.inf, None), (-math.inf, None), (3, None), ("fro", None),
         (2, 1), (1, 0), (math.inf, 1), (0.5, (0, 1)), ("fro", 0)]


@pytest.mark.parametrize("p,dim", NORMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_norm_forward_and_grad(x34, p, dim, keepdim):
    x = _leaf(x34)
    got = x.norm(p=p, dim=dim, keepdim=keepdim)
    order = 2 if p == "fro" else p
    ax = dim if dim is not None else None
    a = np.abs(x34)
    if order == math.inf:
        ref = a.max(axis=ax, keepdims=keepdim)
    elif order == -math.inf:
        ref = a.min(axis=ax, keepdims=keepdim)
    else:
        ref = (a ** order).sum(axis=ax, keepdims=keepdim) ** (1 / order)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-12)
    second = order not in (math.inf, -math.inf, 1)  # piecewise linear: second derivative 0
    _check(lambda t: t.norm(p=p, dim=dim, keepdim=keepdim), x, second=second)


def test_norm_gradient_at_zero_is_zero():
    x = gd.zeros(3, dtype=gd.float64, requires_grad=True)
    x.norm().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_norm_ties_split_the_inf_gradient():
    x = _leaf([1.0, -2.0, 2.0])
    x.norm(p=math.inf).backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, -0.5, 0.5])


def test_norm_bad_arguments():
    x = gd.ones(3)
    with pytest.raises(ValueError, match="p must be"):
        x.norm(p="nuc")
    with pytest.raises(TypeError, match="floating point"):
        gd.arange(3).norm()
    with pytest.raises(TypeError, match="keepdim"):
        x.norm(keepdim=1)


@pytest.mark.parametrize("name,oracle", [("sin", np.sin), ("cos", np.cos),
                                         ("square", np.square)])
def test_smooth_elementwise(x34, name, oracle):
    x = _leaf(x34)
    np.testing.assert_allclose(getattr(x, name)().detach().numpy(), oracle(x34), rtol=1e-14)
    _check(lambda t: getattr(t, name)(), x)


@pytest.mark.parametrize("name,oracle", [("floor", np.floor), ("ceil", np.ceil),
                                         ("round", np.round)])
def test_steps_have_zero_gradient(x34, name, oracle):
    x = _leaf(x34 * 3)
    y = getattr(x, name)()
    np.testing.assert_array_equal(y.detach().numpy(), oracle(x34 * 3))
    y.sum().backward()
    assert not x.grad.numpy().any()


def test_round_half_to_even_and_decimals():
    t = gd.tensor([0.5, 1.5, 2.5, -0.5, 1.2345], dtype=gd.float64)
    np.testing.assert_array_equal(gd.round(t).numpy(), np.round(t.numpy()))
    np.testing.assert_allclose(gd.round(t, decimals=2).numpy(), np.round(t.numpy(), 2))


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_prod(x34, dim):
    x = _leaf(x34)
    got = x.prod() if dim is None else x.prod(dim)
    np.testing.assert_allclose(got.detach().numpy(), np.prod(x34, axis=dim), rtol=1e-13)
    _check(lambda t: t.prod() if dim is None else t.prod(dim, keepdim=True), x)


def test_prod_gradient_with_zeros():
    a = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 5.0]])
    x = _leaf(a)
    x.prod(dim=1).sum().backward()
    # d/dx_j prod = product of the others, also where x_j or another entry is 0
    ref = np.array([[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [10.0, 5.0, 2.0]])
    np.testing.assert_array_equal(x.grad.numpy(), ref)
    assert gradcheck(lambda t: t.prod(dim=1), (x,))


def test_all_any(rng):
    a = rng.standard_normal((3, 4)) > 0
    t = gd.tensor(a)
    assert bool(t.all()) == a.all() and bool(t.any()) == a.any()
    np.testing.assert_array_equal(t.all(dim=1).numpy(), a.all(axis=1))
    np.testing.assert_array_equal(gd.any(t, dim=0, keepdim=True).numpy(),
                                  a.any(axis=0, keepdims=True))
    assert gd.tensor([1.0, 0.0]).any().dtype == gd.bool


# ---- sorting ------------------------------------------------------------------------------------
@pytest.mark.parametrize("descending", [False, True])
def test_sort_argsort(x34, descending):
    x = _leaf(x34)
    v, i = x.sort(dim=1, descending=descending)
    ref = np.sort(x34, axis=1)
    if descending:
        ref = ref[:, ::-1]
    np.testing.assert_array_equal(v.detach().numpy(), ref)
    np.testing.assert_array_equal(np.take_along_axis(x34, i.numpy(), 1), ref)
    np.testing.assert_array_equal(x.argsort(dim=0, descending=descending).numpy(),
                                  np.argsort(-x34 if descending else x34, axis=0))
    _check(lambda t: t.sort(dim=1, descending=descending).values, x)


def test_sort_nan_is_largest():
    t = gd.tensor([1.0, float("nan"), -1.0])
    assert t.sort().indices.tolist() == [2, 0, 1]
    assert t.sort(descending=True).indices.tolist() == [1, 0, 2]


@pytest.mark.parametrize("largest", [True, False])
def test_topk(x34, largest):
    x = _leaf(x34)
    v, i = x.topk(2, dim=1, largest=largest)
    s = np.sort(x34, axis=1)
    ref = s[:, ::-1][:, :2] if largest else s[:, :2]
    np.testing.assert_array_equal(v.detach().numpy(), ref)
    np.testing.assert_array_equal(np.take_along_axis(x34, i.numpy(), 1), ref)
    _check(lambda t: t.topk(3, dim=0, largest=largest).values, x)
    with pytest.raises(RuntimeError, match="k"):
        x.topk(5, dim=1)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum_cumprod(x34, dim):
    x = _leaf(x34)
    np.testing.assert_allclose(x.cumsum(dim).detach().numpy(), np.cumsum(x34, axis=dim))
    np.testing.assert_allclose(gd.cumprod(x, dim).detach().numpy(), np.cumprod(x34, axis=dim))
    _check(lambda t: t.cumsum(dim), x)
    _check(lambda t: gd.cumprod(t, dim), x)


def test_cumprod_gradient_with_zero():
    x = _leaf([2.0, 0.0, 3.0, 4.0])
    assert gradcheck(lambda t: gd.cumprod(t, 0), (x,))


def test_cumsum_of_ints_and_bools():
    assert gd.tensor([True, True, False]).cumsum(0).tolist() == [1, 2, 2]
    assert gd.tensor([1, 2, 3]).cumsum(0).dtype == gd.int64


# ---- indexing -----------------------------------------------------------------------------------
def test_gather(x34):
    x = _leaf(x34)
    idx = np.array([[3, 0], [1, 1], [2, 0]])
    got = x.gather(1, gd.tensor(idx))
    np.testing.assert_array_equal(got.detach().numpy(), np.take_along_axis(x34, idx, 1))
    _check(lambda t: t.gather(1, gd.tensor(idx)), x)
    _check(lambda t: t.gather(0, gd.tensor([[2, 0, 1, 1]])), x)
    with pytest.raises(IndexError, match="out of bounds"):
        x.gather(1, gd.tensor([[4]]))
    with pytest.raises(TypeError, match="index"):
        x.gather(1, gd.tensor([[0.0]]))


def test_scatter_and_scatter_add(x34, rng):
    x = _leaf(x34)
    src = _leaf(rng.standard_normal((2, 4)))
    idx = np.array([[2, 0, 1, 0], [0, 1, 2, 2]])
    ref = x34.copy()
    for i in range(2):
        for j in range(4):
            ref[idx[i, j], j] = src.detach().numpy()[i, j]
    np.testing.assert_array_equal(x.scatter(0, gd.tensor(idx), src).detach().numpy(), ref)
    _check(lambda a, b: a.scatter(0, gd.tensor(idx), b), x, src)
    rep = np.array([[0, 0, 1, 0], [0, 1, 1, 0]])  # repeats accumulate
    ref = x34.copy()
    np.add.at(ref, (rep, np.arange(4)[None, :].repeat(2, 0)), src.detach().numpy())
    np.testing.assert_allclose(x.scatter_add(0, gd.tensor(rep), src).detach().numpy(), ref)
    _check(lambda a, b: a.scatter_add(0, gd.tensor(rep), b), x, src)
    filled = x.scatter(1, gd.tensor([[0], [1], [2]]), 7.0)
    assert filled.detach().numpy()[[0, 1, 2], [0, 1, 2]].tolist() == [7.0, 7.0, 7.0]


def test_index_select(x34):
    x = _leaf(x34)
    i = gd.tensor([2, 0, 2])
    np.testing.assert_array_equal(x.index_select(0, i).detach().numpy(), x34[[2, 0, 2]])
    _check(lambda t: t.index_select(1, gd.tensor([3, 3, 1])), x)
    with pytest.raises(IndexError, match="out of range"):
        x.index_select(0, gd.tensor([3]))


def test_masked_fill(x34):
    x = _leaf(x34)
    mask = gd.tensor(x34 > 0)
    np.testing.assert_array_equal(x.masked_fill(mask, -1.0).detach().numpy(),
                                  np.where(x34 > 0, -1.0, x34))
    _check(lambda t: t.masked_fill(mask, 0.5), x)
    v = gd.tensor(2.0, dtype=gd.float64, requires_grad=True)
    _check(lambda t, s: t.masked_fill(mask, s), x, v)
    with pytest.raises(TypeError, match="mask"):
        x.masked_fill(gd.tensor(x34), 0.0)


def test_repeat_flip_unbind(x34):
    x = _leaf(x34)
    np.testing.assert_array_equal(x.repeat(2, 1, 3).detach().numpy(), np.tile(x34, (2, 1, 3)))
    _check(lambda t: t.repeat(2, 3), x)
    np.testing.assert_array_equal(x.flip(0, 1).detach().numpy(), x34[::-1, ::-1])
    _check(lambda t: t.flip(1), x)
    parts = x.unbind(1)
    assert len(parts) == 4
    np.testing.assert_array_equal(parts[2].detach().numpy(), x34[:, 2])
    with pytest.raises(RuntimeError, match="repeat dims"):
        x.repeat(2)


# ---- in place -----------------------------------------------------------------------------------
def test_inplace_forms_match_out_of_place(x34):
    mask = gd.tensor(x34 > 0)
    for name, args in [("masked_fill_", (mask, 0.0)), ("sin_", ()), ("floor_", ()),
                       ("scatter_", (1, gd.tensor([[0], [1], [2]]), 9.0)),
                       ("scatter_add_", (1, gd.tensor([[0], [1], [2]]),
                                         gd.ones(3, 1, dtype=gd.float64)))]:
        t = gd.tensor(x34)
        ref = getattr(t, name[:-1])(*args)
        out = getattr(t, name)(*args)
        assert out is t
        np.testing.assert_array_equal(t.numpy(), ref.numpy())


def test_inplace_on_graph_differentiates():
    x = _leaf([0.2, -0.4, 0.9])

    def f(t):
        y = t * 2
        y.sin_()
        return y.masked_fill_(gd.tensor([False, True, False]), 0.0)

    _check(f, x)


def test_inplace_on_leaf_that_requires_grad_raises():
    x = _leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf"):
        x.sin_()


# ---- factories, dtype, NumPy and DLPack interop -------------------------------------------------
def test_new_factories_keep_dtype():
    t = gd.ones(2, dtype=gd.float64)
    assert t.new_zeros(3).dtype == gd.float64 and t.new_zeros(3).tolist() == [0.0] * 3
    assert t.new_ones((2, 2)).shape == (2, 2)
    assert t.new_full((2,), 3.0).tolist() == [3.0, 3.0]
    assert t.new_tensor([1, 2]).dtype == gd.float64
    assert t.new_zeros(2, dtype=gd.int64).dtype == gd.int64
    assert gd.ones(2).type_as(t).dtype == gd.float64
    gd.manual_seed(0)
    r = gd.rand_like(t)
    assert r.dtype == gd.float64 and ((r.numpy() >= 0) & (r.numpy() < 1)).all()
    assert gd.randn_like(gd.ones(50, 40)).numpy().std() == pytest.approx(1.0, abs=0.1)


def test_ndarray_operands():
    a = np.arange(3.0)
    t = gd.ones(3)
    for got, ref in [(t + a, 1 + a), (a + t, a + 1), (a - t, a - 1), (t * a, a),
                     (a / (t + 1), a / 2), (t ** a, 1.0 ** a)]:
        assert isinstance(got, gd.Tensor)
        assert got.dtype == gd.float64  # float32 tensor with a float64 array: float64
        np.testing.assert_array_equal(got.numpy(), ref)
    assert (t == np.ones(3)).tolist() == [True] * 3


def test_tensor_from_foreign_keeps_dtype_and_dlpack_roundtrip():
    a = np.arange(6.0).reshape(2, 3)
    t = gd.from_dlpack(a)
    assert t.dtype == gd.float64
    a[0, 0] = 5.0
    assert t[0, 0].item() == 5.0  # shares memory
    back = np.from_dlpack(t)
    assert back.dtype == np.float64 and back[0, 0] == 5.0
    with pytest.raises(RuntimeError, match="requires grad"):
        gd.ones(2, requires_grad=True).__dlpack__()
    with pytest.raises(TypeError, match="dtype"):
        gd.from_dlpack(np.ones(2, np.int16))


def test_torch_interop():
    torch = pytest.importorskip("torch")
    tt = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    t = gd.tensor(tt)
    assert t.dtype == gd.float64 and t.tolist() == tt.tolist()
    assert gd.as_tensor(torch.ones(2, requires_grad=True)).tolist() == [1.0, 1.0]
    back = torch.as_tensor(gd.tensor([1.5, 2.5], dtype=gd.float64))
    assert back.dtype == torch.float64 and back.tolist() == [1.5, 2.5]
    shared = torch.from_dlpack(gd.tensor([1.0, 2.0]))
    assert shared.tolist() == [1.0, 2.0]
    big = torch.randn(1000, 1000)  # no per-element Python loop: same values, at once
    np.testing.assert_array_equal(gd.tensor(big).numpy(), big.numpy())


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((4, 5))
    x, tx = _leaf(a), torch.tensor(a, requires_grad=True)
    idx = rng.integers(0, 5, size=(4, 3))

    def both(f):
        y = f(x, gd)
        ty = f(tx, torch)
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
        w = rng.standard_normal(tuple(ty.shape))
        x.grad = None
        tx.grad = None
        (y * gd.tensor(w)).sum().backward()
        (ty * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)

    both(lambda t, m: t.norm(dim=1))
    both(lambda t, m: t.norm(p=3, dim=0, keepdim=True))
    both(lambda t, m: t.gather(1, m.tensor(idx)))
    both(lambda t, m: t.sort(dim=0).values)
    both(lambda t, m: t.topk(2, dim=1).values)
    both(lambda t, m: t.cumsum(1))
    both(lambda t, m: t.prod(1))
    both(lambda t, m: t.repeat(2, 1).flip(0))
    both(lambda t, m: t.index_select(1, m.tensor([4, 0, 4])))
    both(lambda t, m: m.zeros(6, 5, dtype=m.float64).scatter_add(0, m.tensor(idx[:, :1]
                                                                              .repeat(5, 1)), t))
