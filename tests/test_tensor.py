"""Tensor creation, dtypes, NumPy interop, printing, and the non-differentiable surface."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd


def test_tensor_default_dtypes_follow_pytorch():
    assert gd.tensor([1.0, 2.0]).dtype == gd.float32
    assert gd.tensor([1, 2]).dtype == gd.int64
    assert gd.tensor([True, False]).dtype == gd.bool
    assert gd.tensor(3.5).shape == ()
    assert gd.tensor(np.zeros(3)).dtype == gd.float64
    assert gd.tensor(np.zeros(3, np.int32)).dtype == gd.int64
    assert gd.tensor(np.zeros(3, np.float16)).dtype == gd.float32
    assert gd.tensor([[1, 2], [3, 4]], dtype=gd.float64).dtype == gd.float64


@pytest.mark.parametrize("make", [
    lambda a: a[:, ::2],
    lambda a: a[::-1],
    lambda a: np.asfortranarray(a),
    lambda a: a.astype(">f8"),
    lambda a: _readonly(a),
])
def test_tensor_copies_any_numpy_layout(make):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    src = make(base)
    t = gd.tensor(src)
    np.testing.assert_array_equal(t.numpy(), np.asarray(src))
    assert t.numpy().flags.c_contiguous and t.numpy().dtype.isnative
    assert not np.shares_memory(t.numpy(), base)


def _readonly(a):
    b = a.copy()
    b.setflags(write=False)
    return b


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array(["a"]), np.array([object()]),
                                 "text", None])
def test_tensor_rejects_unsupported_data(bad):
    with pytest.raises(TypeError):
        gd.tensor(bad)


def test_from_numpy_shares_memory_both_ways():
    a = np.zeros(3, dtype=np.float32)
    t = gd.from_numpy(a)
    t.add_(1.0)
    np.testing.assert_array_equal(a, [1, 1, 1])
    a[0] = 5
    assert t[0].item() == 5
    with pytest.raises(TypeError, match="int32"):
        gd.from_numpy(np.zeros(2, np.int32))


def test_creation_functions_shapes_and_values():
    assert gd.zeros(2, 3).shape == (2, 3)
    assert gd.zeros((2, 3)).shape == (2, 3)
    assert gd.ones(4, dtype=gd.float64).dtype == gd.float64
    np.testing.assert_array_equal(gd.full((2,), 7).numpy(), [7, 7])
    assert gd.full((2,), 7).dtype == gd.int64
    np.testing.assert_array_equal(gd.arange(5).numpy(), np.arange(5))
    assert gd.arange(0, 1, 0.25).dtype == gd.float32
    np.testing.assert_array_equal(gd.eye(3).numpy(), np.eye(3))
    assert gd.zeros_like(gd.ones(2, 2, dtype=gd.float64)).dtype == gd.float64
    assert gd.randn(3, 10, 20).shape == (3, 10, 20)
    assert gd.rand(5).numpy().min() >= 0
    ri = gd.randint(0, 4, (100,))
    assert ri.dtype == gd.int64 and ri.numpy().min() >= 0 and ri.numpy().max() < 4
    with pytest.raises(ValueError, match="negative dimension"):
        gd.zeros(-1)
    with pytest.raises(TypeError, match="ints"):
        gd.zeros(2.5)


def test_seeding_is_reproducible():
    gd.manual_seed(123)
    a = gd.randn(4)
    gd.manual_seed(123)
    b = gd.randn(4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    g1 = gd.Generator().manual_seed(7)
    g2 = gd.Generator().manual_seed(7)
    np.testing.assert_array_equal(gd.rand(3, generator=g1).numpy(),
                                  gd.rand(3, generator=g2).numpy())


def test_item_tolist_float_len_iter():
    t = gd.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t[1, 0].item() == 3.0
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert float(t.sum()) == 10.0
    assert len(t) == 2
    assert [row.tolist() for row in t] == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(RuntimeError, match="4 elements"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)


def test_repr_like_pytorch():
    assert repr(gd.tensor([1.0, 2.5])) == "tensor([1.0000, 2.5000])"
    assert repr(gd.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(gd.tensor([1, 2])) == "tensor([1, 2])"
    assert "requires_grad=True" in repr(gd.ones(2, requires_grad=True))
    assert "grad_fn=<MulBackward>" in repr(gd.ones(2, requires_grad=True) * 2)
    assert "dtype=graddesc.float64" in repr(gd.ones(1, dtype=gd.float64))


def test_dtype_conversion_and_promotion():
    f = gd.ones(2)
    d = gd.ones(2, dtype=gd.float64)
    i = gd.tensor([1, 2])
    assert (f + d).dtype == gd.float64
    assert (f * 2.5).dtype == gd.float32        # Python scalars don't upcast
    assert (f * np.float64(2.5)).dtype == gd.float32
    assert (i + 1).dtype == gd.int64
    assert (i * 0.5).dtype == gd.float64        # NumPy's rule for int64 with float
    assert f.double().dtype == gd.float64 and d.float().dtype == gd.float32
    assert f.to(gd.int64).dtype == gd.int64
    assert f.to("float64").dtype == gd.float64
    with pytest.raises(TypeError):
        f.to(np.complex64)


def test_comparisons_and_where_are_not_differentiable():
    x = gd.tensor([1.0, -2.0, 3.0], requires_grad=True)
    m = x > 0
    assert m.dtype == gd.bool and not m.requires_grad
    np.testing.assert_array_equal(m.numpy(), [True, False, True])
    np.testing.assert_array_equal((x == 3.0).numpy(), [False, False, True])
    np.testing.assert_array_equal((~m).numpy(), [False, True, False])
    np.testing.assert_array_equal((m & (x < 2)).numpy(), [True, False, False])


def test_argmax_argmin_nan_first():
    x = gd.tensor([[1.0, 5.0, 2.0], [np.nan, 0.0, 9.0]])
    np.testing.assert_array_equal(gd.argmax(x, dim=1).numpy(), [1, 0])
    np.testing.assert_array_equal(x.argmin(dim=1).numpy(), [0, 0])
    assert x.argmax().item() == 3
    assert gd.argmax(gd.tensor([1.0, 3.0, 2.0])).item() == 1


def test_sum_mean_match_numpy(rng):
    a = rng.standard_normal((3, 4, 5))
    t = gd.tensor(a)
    np.testing.assert_allclose(t.sum().item(), a.sum(), rtol=1e-12)
    np.testing.assert_allclose(t.sum(1).numpy(), a.sum(1), rtol=1e-12)
    np.testing.assert_allclose(t.sum((0, 2), keepdim=True).numpy(), a.sum((0, 2), keepdims=True),
                               rtol=1e-12)
    np.testing.assert_allclose(t.mean(-1).numpy(), a.mean(-1), rtol=1e-12)
    assert gd.tensor([True, True, False]).sum().item() == 2
    assert np.isnan(gd.zeros(0).mean().item())
    with pytest.raises(IndexError, match="Dimension out of range"):
        t.sum(3)


def test_view_requires_compatible_layout():
    t = gd.arange(12).reshape(3, 4)
    assert t.view(-1).shape == (12,)
    assert t.view(2, -1).shape == (2, 6)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        t.t().view(-1)
    assert t.t().reshape(-1).shape == (12,)
    with pytest.raises(RuntimeError, match="invalid for input of size 12"):
        t.view(5, -1)


def test_shape_ops_match_numpy(rng):
    a = rng.standard_normal((2, 3, 4))
    t = gd.tensor(a)
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.transpose(0, 2).numpy(), a.swapaxes(0, 2))
    np.testing.assert_array_equal(t.flatten(1).numpy(), a.reshape(2, 12))
    np.testing.assert_array_equal(t.unsqueeze(1).numpy(), a[:, None])
    np.testing.assert_array_equal(t[:, :1].squeeze(1).numpy(), a[:, 0])
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    np.testing.assert_array_equal(gd.cat([t, t], 1).numpy(), np.concatenate([a, a], 1))
    np.testing.assert_array_equal(gd.stack([t, t], -1).numpy(), np.stack([a, a], -1))
    np.testing.assert_array_equal(t[0, 1:, [0, 2]].numpy(), a[0, 1:, [0, 2]])
    np.testing.assert_array_equal(t[t > 0].numpy(), a[a > 0])
    np.testing.assert_array_equal(t[..., None].expand(2, 3, 4, 5).numpy(),
                                  np.broadcast_to(a[..., None], (2, 3, 4, 5)))
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        gd.cat([t, gd.zeros(2, 2, 2, dtype=gd.float64)], 0)
    with pytest.raises(IndexError):
        t[5]


def test_inplace_ops_and_errors():
    t = gd.zeros(3)
    t.add_(gd.ones(3), alpha=2).mul_(3).sub_(1.0)
    np.testing.assert_array_equal(t.numpy(), [5, 5, 5])
    t.clamp_(max=4.0)
    np.testing.assert_array_equal(t.numpy(), [4, 4, 4])
    t.zero_()
    assert t.sum().item() == 0
    t[1] = 7.0
    np.testing.assert_array_equal(t.numpy(), [0, 7, 0])
    t.copy_(gd.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(t.numpy(), [1, 2, 3])
    with pytest.raises(RuntimeError, match="read-only"):
        gd.ones(1).expand(3).add_(1.0)
    with pytest.raises(RuntimeError):
        gd.tensor([1, 2]).div_(2.0)


def test_numpy_operand_is_rejected_clearly():
    # as in PyTorch: the named forms refuse an ndarray, the operators convert it
    # (tests/test_port_ops.py::test_ndarray_operands)
    with pytest.raises(TypeError, match="numpy.ndarray operand"):
        gd.ones(2).add(np.ones(2))
    with pytest.raises(TypeError, match="numpy.ndarray operand"):
        gd.add(gd.ones(2), np.ones(2))


def test_runtime_config():
    cfg = gd.config()
    assert set(cfg) >= {"version", "openmp", "isa", "num_threads"}
    n = gd.get_num_threads()
    gd.set_num_threads(1)
    assert gd.get_num_threads() == 1
    gd.set_num_threads(n)
    with pytest.raises(TypeError):
        gd.set_num_threads(1.5)
