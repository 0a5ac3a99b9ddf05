"""Batched matrix products (matmul of 3-d and higher tensors, bmm, einsum's contractions): on
the C++ GEMM, one product for (..., M, K) @ (K, N) or one per batch index when each is big
enough, else NumPy's matmul; against NumPy, PyTorch when installed, finite differences, and
captured by gd.compile bitwise equal to eager."""


import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F
from graddesc.functional.linear import _BATCHED_MIN_WORK
from _compile_twins import assert_compiled_equals_eager, sgd_like_step

try:
    import torch
except ImportError:  # pragma: no cover - torch is an optional oracle
    torch = None

SHAPES = [((2, 128, 64), (2, 64, 128)), ((2, 1, 128, 128), (3, 128, 64)),
          ((128, 96), (2, 96, 128)), ((3, 4, 5), (3, 5, 2)), ((2, 3, 4, 5), (5, 6)),
          ((4, 5), (2, 5, 3)),
          ((2, 1, 3, 4), (1, 3, 4, 2)), ((1, 4, 5), (3, 5, 2)), ((0, 4, 5), (0, 5, 2)),
          ((3, 4, 0), (3, 0, 2)), ((2, 1, 7), (2, 7, 1)), ((5, 2, 3), (3, 1)),
          ((0, 0, 0), (0, 1)), ((2, 3, 0), (0, 4)), ((0, 3, 4), (4, 2))]


@pytest.mark.parametrize("sa,sb", [s for s in SHAPES if 0 in s[0] + s[1]])
def test_empty_batched_products_have_empty_or_zero_gradients(sa, sb):
    a = gd.zeros(*sa, requires_grad=True)
    b = gd.zeros(*sb, requires_grad=True)
    (a @ b).sum().backward()
    assert tuple(a.grad.shape) == sa and tuple(b.grad.shape) == sb
    assert not a.grad.numpy().any() and not b.grad.numpy().any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_batched_matmul_matches_numpy(sa, sb, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    got = (gd.tensor(a) @ gd.tensor(b)).numpy()
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_matmul_reads_strided_and_transposed_operands(dtype):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((4, 96, 128)).astype(dtype)
    other = rng.standard_normal((4, 128, 96)).astype(dtype)
    views = [(base, other), (base.transpose(0, 2, 1), other.transpose(0, 2, 1)),
             (base[:, ::2, :], other[:, :, 1::2]), (base[::-1], other[::2].repeat(2, 0)),
             (base.transpose(1, 0, 2)[:, :, :96], other[:, :96].transpose(1, 0, 2))]
    for a, b in views:
        if a.shape[-1] != b.shape[-2]:
            continue
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        ta, tb = gd.from_numpy(a), gd.from_numpy(b)  # (the views themselves, read in place)
        got = (ta @ tb).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        # on the GEMM path (big enough products), each batch index's product is the 2-d
        # product of that index's views, bit for bit (smaller ones are NumPy's matmul)
        if a.shape[-2] * a.shape[-1] * b.shape[-1] >= _BATCHED_MIN_WORK:
            for i in range(got.shape[0]):
                np.testing.assert_array_equal(got[i], (ta[i] @ tb[i]).numpy())


def test_batched_matmul_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    for sa, sb in [((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 2)), ((3, 4), (2, 1, 4, 3)),
                   ((2, 1, 3, 4), (1, 2, 4, 2))]:
        a = gd.tensor(rng.standard_normal(sa), requires_grad=True)
        b = gd.tensor(rng.standard_normal(sb), requires_grad=True)
        assert gd.autograd.gradcheck(lambda x, y: (x @ y).sin().sum(), (a, b))


@pytest.mark.skipif(torch is None, reason="needs torch as the oracle")
def test_bmm_einsum_and_gradients_match_pytorch():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 3, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4, 2)).astype(np.float32)
    W = rng.standard_normal((4, 4)).astype(np.float32)
    ga, gb, gw = (gd.tensor(v, requires_grad=True) for v in (a, b, W))
    ta, tb, tw = (torch.tensor(v, requires_grad=True) for v in (a, b, W))
    lg = gd.bmm(ga, gb).pow(2).sum() + gd.einsum("bij,jk,bkl->bil", ga, gw, gb).sum()
    lt = torch.bmm(ta, tb).pow(2).sum() + torch.einsum("bij,jk,bkl->bil", ta, tw, tb).sum()
    lg.backward()
    lt.backward()
    np.testing.assert_allclose(lg.item(), lt.item(), rtol=1e-5)
    for g, t in ((ga, ta), (gb, tb), (gw, tw)):
        np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_batched_matmul_bad_shapes_raise():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        gd.randn(2, 3, 4) @ gd.randn(2, 5, 2)
    with pytest.raises(ValueError):
        gd.randn(2, 3, 4) @ gd.randn(3, 4, 2)  # batch dims 2 and 3 do not broadcast


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_attention_like_step_is_captured_and_equals_eager(dtype):
    def run(compiled):
        gd.manual_seed(0)
        # (products of 128 x 64 x 128 multiply-adds: big enough for the GEMM path)
        q, k, v = (nn.Linear(64, 64).to(dtype) for _ in range(3))
        head = nn.Linear(64, 3).to(dtype)
        params = [p for m in (q, k, v, head) for p in m.parameters()]
        opt = gd.optim.Adam(params, lr=1e-2)

        def loss_of(x, y):
            att = (q(x) @ k(x).transpose(1, 2) / 8.0).softmax(-1)
            h = (att @ v(x)).mean(1)
            return F.cross_entropy(head(h), y)

        step = sgd_like_step(opt, loss_of)

        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(4)
        npdt = np.float32 if dtype == gd.float32 else np.float64
        losses = [f(gd.tensor((s * rng.standard_normal((2, 128, 64))).astype(npdt)),
                    gd.tensor(rng.integers(0, 3, 2))).item() for s in (1.0, 6.0, 0.3, 2.0)]
        return losses, [p.detach().numpy().copy() for p in params], f

    assert_compiled_equals_eager(run)


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_small_3d_times_parameter_step_is_captured_and_equals_eager(dtype):
    """(B, T, K) @ W (K, N) at any size: one product forward, W's gradient one product over
    the rows of every batch, so a compiled step records both."""
    def run(compiled):
        gd.manual_seed(1)
        W = nn.Parameter(gd.randn(4, 3, dtype=dtype))
        opt = gd.optim.SGD([W], lr=0.05, momentum=0.9)

        step = sgd_like_step(opt, lambda x, y: F.mse_loss((x @ W).tanh(), y))

        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(5)
        npdt = np.float32 if dtype == gd.float32 else np.float64
        losses = [f(gd.tensor((s * rng.standard_normal((2, 5, 4))).astype(npdt)),
                    gd.tensor(rng.standard_normal((2, 5, 3)).astype(npdt))).item()
                  for s in (1.0, 4.0, 0.5)]
        return losses, [W.detach().numpy().copy()], f

    assert_compiled_equals_eager(run, min_replays=1)
