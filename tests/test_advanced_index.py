"""Advanced indexing by integer tensors (x[idx], x[i, j], x[:, idx], x[..., idx]) through the
index_nd kernel: values and gradients against NumPy's indexing and np.add.at, float64 gradcheck,
compiled steps equal to eager ones when the indices change between calls, and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

try:
    import torch as _torch
except ImportError:  # pragma: no cover - torch is a test extra
    _torch = None

T = gd.tensor

# (x shape, index builder(rng) -> tuple of int arrays / slices / Ellipsis)
CASES = [
    ((7,), lambda r: (r.integers(-7, 7, 5),)),
    ((6, 4), lambda r: (r.integers(-6, 6, (2, 3)),)),
    ((6, 4), lambda r: (np.arange(4) % 6, r.integers(0, 4, 4))),  # logp[arange(n), y]
    ((5, 6, 3), lambda r: (slice(None), r.integers(-6, 6, 4))),
    ((5, 6, 3), lambda r: (Ellipsis, r.integers(0, 3, (2, 2)))),
    ((5, 6, 3), lambda r: (r.integers(0, 5, 3), Ellipsis)),
    ((5, 6, 3), lambda r: (slice(None), r.integers(0, 6, 4), r.integers(-3, 3, 4))),
    ((4, 3, 2, 5), lambda r: (slice(None), slice(None), r.integers(0, 2, 6))),
    ((4, 3), lambda r: (np.zeros(5, dtype=np.int64),)),  # one row gathered 5 times: sums in bwd
    ((4, 3), lambda r: (np.zeros(0, dtype=np.int64),)),  # empty index
    ((0, 3), lambda r: (slice(None), np.array([2, 0]))),  # empty input
]


def _np_index(idx: tuple) -> tuple:
    return tuple(np.asarray(i, dtype=np.int64) if isinstance(i, np.ndarray) else i for i in idx)


def _gd_index(idx: tuple) -> tuple:
    return tuple(T(i) if isinstance(i, np.ndarray) else i for i in idx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_values_and_gradient_match_numpy(case: int, dtype: type) -> None:
    shape, make = CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal(shape).astype(dtype)
    idx = _np_index(make(rng))
    X = T(x, requires_grad=True)
    out = X[_gd_index(idx)]
    ref = x[idx]
    assert out.shape == ref.shape and out.dtype == X.dtype
    np.testing.assert_array_equal(out.detach().numpy(), ref)
    g = rng.standard_normal(ref.shape).astype(dtype)
    out.backward(T(g))
    want = np.zeros_like(x)
    np.add.at(want, idx, g)  # NumPy adds repeated places in index order, as the kernel does
    np.testing.assert_array_equal(X.grad.numpy(), want)


def test_uses_the_kernel_and_is_a_copy() -> None:
    Y = T(np.arange(12.0).reshape(3, 4), requires_grad=True)
    assert Y[T([2, 0])].grad_fn.name() == "TakeNdBackward"
    assert Y[T([2, 1, 0, 1])[::2]].grad_fn.name() == "IndexBackward"  # strided: NumPy's path
    X = T(np.arange(12.0).reshape(3, 4))
    out = X[T([2, 0])]
    out.add_(100.0)  # a copy: the source is untouched
    np.testing.assert_array_equal(X.numpy(), np.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize("idx", [
    lambda: (T([0, 1]), slice(0, 2)),            # a partial slice beside the array
    lambda: (T([0, 1]), 1),                      # an integer beside the array
    lambda: (T([0, 1]), slice(None), T([1, 0])),  # arrays not adjacent
    lambda: (T([True, False, True]),),           # a mask
    lambda: (np.array([0, 2], dtype=np.int32),),  # not int64 (a NumPy index)
    lambda: (T([[0, 1], [2, 0]]).t(),),          # not C-contiguous (a view)
    lambda: (T([0, 1]), T([[1], [0]])),         # shapes that broadcast but differ
])
def test_other_indices_keep_numpy_semantics(idx) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 3, 2))
    X = T(x, requires_grad=True)
    i = idx()
    npi = tuple(t.numpy() if isinstance(t, gd.Tensor) else t for t in i)
    out = X[i]
    assert out.grad_fn.name() == "IndexBackward"
    np.testing.assert_array_equal(out.detach().numpy(), x[npi])
    g = rng.standard_normal(out.shape)
    out.backward(T(g))
    want = np.zeros_like(x)
    np.add.at(want, npi, g)
    np.testing.assert_allclose(X.grad.numpy(), want, rtol=1e-12, atol=1e-12)


def test_gradcheck_float64() -> None:
    rng = np.random.default_rng(1)
    i, j = T(rng.integers(0, 4, 6)), T(rng.integers(-3, 3, 6))
    X = T(rng.standard_normal((4, 3, 2)), requires_grad=True)
    assert gd.autograd.gradcheck(lambda x: (x[i, j] ** 2).sum(), (X,))
    # twice differentiable: the backward is a Function too
    assert gd.autograd.gradgradcheck(lambda x: x[:, T([2, 2, 0])] ** 3, (X,))


def test_out_of_range_is_an_index_error() -> None:
    X = T(np.zeros((3, 4)))
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        X[T([0, 3])]
    with pytest.raises(IndexError, match="index -5 is out of bounds for dimension 1 with size 4"):
        X[:, T([-5])]
    with pytest.raises(IndexError, match="out of bounds"):
        T(np.zeros((0, 2)))[T([0])]


def test_binding_rejects_bad_arguments() -> None:
    x = np.zeros((3, 4), np.float32)
    i = np.array([0, 1], np.int64)
    with pytest.raises(TypeError, match="index 0 must have dtype int64, got int32"):
        _core.index_nd(x, [i.astype(np.int32)], 0)
    with pytest.raises(ValueError, match="same shape"):
        _core.index_nd(x, [i, np.array([0], np.int64)], 0)
    with pytest.raises(ValueError, match="do not fit an input of shape"):
        _core.index_nd(x, [i, i], 1)
    with pytest.raises(ValueError, match="1 to 16 index arrays"):
        _core.index_nd(x, [], 0)
    with pytest.raises(TypeError):
        _core.index_nd(x.astype(np.int32), [i], 0)
    with pytest.raises(ValueError, match="'shape'"):
        _core.index_nd(x, [i], 0, True)
    with pytest.raises(ValueError, match="argument 'source' expected shape"):
        _core.index_nd(np.zeros((3, 4), np.float32), [i], 0, True, (5, 4))


@pytest.mark.skipif(_torch is None, reason="PyTorch not installed")
def test_matches_torch() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4, 3))
    i, j = rng.integers(-5, 5, (2, 3)), rng.integers(-4, 4, (2, 3))
    X, tx = T(x, requires_grad=True), _torch.tensor(x, requires_grad=True)
    g = rng.standard_normal((2, 3, 3))
    X[T(i), T(j)].backward(T(g))
    tx[_torch.tensor(i), _torch.tensor(j)].backward(_torch.tensor(g))
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def _nll_model(dtype: type):
    rng = np.random.default_rng(0)
    emb = T(rng.standard_normal((10, 4)).astype(dtype), requires_grad=True)
    W = T(rng.standard_normal((4, 3)).astype(dtype), requires_grad=True)
    opt = gd.optim.SGD([emb, W], lr=0.1, momentum=0.9)

    def step(tok, y):
        opt.zero_grad()
        h = emb[tok]                                   # an embedding lookup
        logp = gd.nn.functional.log_softmax(h @ W, 1)
        loss = -logp[gd.arange(tok.shape[0]), y].mean()  # NLL written by hand
        loss.backward()
        opt.step()
        return loss

    return step, [emb, W]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_step_is_captured_and_equals_eager(dtype: type) -> None:
    step_e, params_e = _nll_model(dtype)
    step_c, params_c = _nll_model(dtype)
    compiled = gd.compile(step_c)
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        for _ in range(6):
            tok = T(rng.integers(-10, 10, 6))  # repeated and negative tokens, new each call
            y = T(rng.integers(0, 3, 6))
            le, lc = step_e(tok, y), compiled(tok, y)
            np.testing.assert_array_equal(le.detach().numpy(), lc.detach().numpy())
            for a, b in zip(params_e, params_c):
                np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
                np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    assert any("index_nd" in n for e in compiled._cache.values()
               if getattr(e, "program", None) is not None for n in e.program.names())


def test_compiled_replay_refuses_an_index_out_of_range() -> None:
    step, params = _nll_model(np.float32)
    compiled = gd.compile(step)
    tok, y = T([1, 2, 3]), T([0, 1, 2])
    compiled(tok, y)
    compiled(tok, y)
    before = [p.detach().numpy().copy() for p in params]
    with pytest.raises(IndexError, match="out of bounds"):
        compiled(T([1, 2, 30]), y)
    with pytest.raises(IndexError, match="out of bounds"):
        compiled(tok, T([0, 1, 3]))
    # nothing was updated by the refused calls
    for b, p in zip(before, params):
        np.testing.assert_array_equal(b, p.detach().numpy())
