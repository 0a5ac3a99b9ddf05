"""BatchNorm1d, LayerNorm, Embedding (src/cpp/norm.cpp, functional/norm.py, nn/norm.py).

Oracles: NumPy float64 formulas written from the definitions (batch / layer statistics, the
running-statistics update, a gather and a scatter-add in index order), finite differences
(gradcheck in float64), and PyTorch when it is installed (train and eval modes, state dicts).
"""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn.functional as F
from graddesc import _core, nn
from graddesc.autograd import gradcheck, gradgradcheck


def _np(t):
    return t.detach().numpy()


def _t(a, requires_grad=False):
    return gd.tensor(np.asarray(a), requires_grad=requires_grad)


def _tol(dtype):
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-11}


# ---- NumPy oracles --------------------------------------------------------------------------

def np_batch_norm(x, w, b, eps):
    """Training-mode batch norm in float64: (y, batch mean, biased var, unbiased var)."""
    x = x.astype(np.float64)
    axes = (0,) if x.ndim == 2 else (0, 2)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1)
    m = x.mean(axis=axes)
    v = x.var(axis=axes)
    n = x.size // x.shape[1]
    y = (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps)
    if w is not None:
        y = y * w.reshape(shape) + b.reshape(shape)
    return y, m, v, v * n / (n - 1)


def np_batch_norm_grads(x, w, dy, eps):
    """dx, dw, db of training-mode batch norm from the chain rule through mean and var."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes = (0,) if x.ndim == 2 else (0, 2)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1)
    n = x.size // x.shape[1]
    m = x.mean(axis=axes, keepdims=True)
    v = x.var(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(v + eps)
    xhat = (x - m) * inv
    g = dy * w.reshape(shape)
    dvar = (g * (x - m) * -0.5 * inv ** 3).sum(axis=axes, keepdims=True)
    dmean = (-g * inv).sum(axis=axes, keepdims=True) + dvar * (-2 * (x - m)).mean(axis=axes,
                                                                                keepdims=True)
    dx = g * inv + dvar * 2 * (x - m) / n + dmean / n
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def np_layer_norm(x, w, b, D, eps):
    x2 = x.astype(np.float64).reshape(-1, D)
    y = (x2 - x2.mean(1, keepdims=True)) / np.sqrt(x2.var(1, keepdims=True) + eps)
    if w is not None:
        y = y * w.reshape(1, D)
    if b is not None:
        y = y + b.reshape(1, D)
    return y.reshape(x.shape)


# ---- BatchNorm1d ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 5), (16, 3, 7), (2, 40), (3, 1, 1), (37, 19)])
def test_batch_norm_train_matches_numpy(shape, float_dtype, rng):
    x = rng.normal(1.5, 2.0, size=shape).astype(float_dtype)
    C = shape[1]
    w = rng.uniform(0.5, 1.5, C).astype(float_dtype)
    b = rng.normal(size=C).astype(float_dtype)
    bn = nn.BatchNorm1d(C, momentum=0.3, dtype=gd.float64 if float_dtype == np.float64 else None)
    with gd.no_grad():
        bn.weight.copy_(_t(w))
        bn.bias.copy_(_t(b))
    xt = _t(x, requires_grad=True)
    y = bn(xt)
    ref, m, _, uv = np_batch_norm(x, w, b, 1e-5)
    np.testing.assert_allclose(_np(y), ref, **_tol(float_dtype))
    np.testing.assert_allclose(_np(bn.running_mean), 0.3 * m, **_tol(float_dtype))
    np.testing.assert_allclose(_np(bn.running_var), 0.7 + 0.3 * uv, **_tol(float_dtype))
    assert int(bn.num_batches_tracked.item()) == 1
    dy = rng.normal(size=shape).astype(float_dtype)
    y.backward(_t(dy))
    dx, dw, db = np_batch_norm_grads(x, w, dy, 1e-5)
    tol = {"rtol": 1e-3, "atol": 1e-4} if float_dtype == np.float32 else _tol(float_dtype)
    np.testing.assert_allclose(_np(xt.grad), dx, **tol)
    np.testing.assert_allclose(_np(bn.weight.grad), dw, **tol)
    np.testing.assert_allclose(_np(bn.bias.grad), db, **tol)


def test_batch_norm_eval_uses_running_stats(rng):
    bn = nn.BatchNorm1d(4).double()
    rm, rv = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    with gd.no_grad():
        bn.running_mean.copy_(_t(rm))
        bn.running_var.copy_(_t(rv))
        bn.weight.copy_(_t(rng.normal(size=4)))
    bn.eval()
    x = rng.normal(size=(6, 4, 3))
    xt = _t(x, requires_grad=True)
    y = bn(xt)
    k = (_np(bn.weight) / np.sqrt(rv + 1e-5)).reshape(1, 4, 1)
    np.testing.assert_allclose(_np(y), (x - rm.reshape(1, 4, 1)) * k, rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(_np(xt.grad), np.broadcast_to(k, x.shape), rtol=1e-12)
    np.testing.assert_allclose(_np(bn.running_mean), rm)  # eval leaves them alone
    assert int(bn.num_batches_tracked.item()) == 0


def test_batch_norm_cumulative_average_momentum_none(rng):
    bn = nn.BatchNorm1d(3, momentum=None).double()
    xs = [rng.normal(size=(5, 3)) for _ in range(3)]
    for x in xs:
        bn(_t(x))
    np.testing.assert_allclose(_np(bn.running_mean), np.mean([x.mean(0) for x in xs], 0),
                               rtol=1e-12)
    np.testing.assert_allclose(_np(bn.running_var),
                               np.mean([x.var(0, ddof=1) for x in xs], 0), rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 3


def test_batch_norm_no_affine_no_tracking(rng):
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False).double()
    assert list(bn.state_dict()) == [] and bn.weight is None
    x = rng.normal(size=(7, 3))
    bn.eval()  # no running statistics: eval still uses the batch's
    np.testing.assert_allclose(_np(bn(_t(x))), np_batch_norm(x, None, None, 1e-5)[0],
                               rtol=1e-11, atol=1e-12)


def test_batch_norm_gradcheck(rng):
    for shape in [(6, 3), (4, 2, 5)]:
        x = _t(rng.normal(size=shape), requires_grad=True)
        w = _t(rng.uniform(0.5, 1.5, shape[1]), requires_grad=True)
        b = _t(rng.normal(size=shape[1]), requires_grad=True)
        assert gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         (x, w, b))
        rm, rv = _t(rng.normal(size=shape[1])), _t(rng.uniform(0.5, 2, shape[1]))
        assert gradcheck(lambda x, w, b, rm=rm, rv=rv: F.batch_norm(x, rm, rv, w, b),
                         (x, w, b))


def test_batch_norm_double_backward(rng):
    x = _t(rng.normal(size=(5, 3)), requires_grad=True)
    w = _t(rng.uniform(0.5, 1.5, 3), requires_grad=True)
    b = _t(rng.normal(size=3), requires_grad=True)
    assert gradgradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         (x, w, b))
    rm, rv = _t(rng.normal(size=3)), _t(rng.uniform(0.5, 2, 3))
    assert gradgradcheck(lambda x, w: F.batch_norm(x, rm, rv, w, None), (x, w))


def test_batch_norm_bad_input():
    bn = nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match=r"4 features.*\(8, 3\)"):
        bn(gd.zeros(8, 3))
    with pytest.raises(ValueError, match="2D or 3D"):
        bn(gd.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(gd.zeros(1, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        bn(gd.zeros(3, 4, dtype=gd.int64))
    with pytest.raises(TypeError, match="dtype"):
        bn(gd.zeros(3, 4, dtype=gd.float64))  # parameters are float32
    with pytest.raises(ValueError, match="required when training=False"):
        F.batch_norm(gd.zeros(3, 4), None, None, training=False)
    with pytest.raises(ValueError, match=r"'running_var' expected shape \(4,\)"):
        F.batch_norm(gd.zeros(3, 4), gd.zeros(4), gd.ones(5), training=True)


def test_batch_norm_state_dict_round_trip(rng):
    bn = nn.BatchNorm1d(3)
    for _ in range(2):
        bn(_t(rng.normal(size=(8, 3)).astype(np.float32)))
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == gd.int64 and sd["num_batches_tracked"].ndim == 0
    other = nn.BatchNorm1d(3)
    other.load_state_dict({k: _np(v) for k, v in sd.items()})
    for k in sd:
        np.testing.assert_array_equal(_np(other.state_dict()[k]), _np(sd[k]))


# ---- LayerNorm ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,ns", [((4, 6), (6,)), ((2, 3, 5), (3, 5)), ((7, 33), (33,)),
                                      ((0, 4), (4,)), ((3, 1), (1,))])
def test_layer_norm_matches_numpy(shape, ns, float_dtype, rng):
    D = int(np.prod(ns))
    x = rng.normal(0.5, 3.0, size=shape).astype(float_dtype)
    ln = nn.LayerNorm(ns, dtype=gd.float64 if float_dtype == np.float64 else None)
    w = rng.uniform(0.5, 1.5, ns).astype(float_dtype)
    b = rng.normal(size=ns).astype(float_dtype)
    with gd.no_grad():
        ln.weight.copy_(_t(w))
        ln.bias.copy_(_t(b))
    xt = _t(x, requires_grad=True)
    y = ln(xt)
    np.testing.assert_allclose(_np(y), np_layer_norm(x, w, b, D, 1e-5), **_tol(float_dtype))
    y.sum().backward()
    np.testing.assert_allclose(_np(ln.bias.grad), np.ones(shape).reshape(-1, *ns).sum(0))


def test_layer_norm_gradcheck(rng):
    x = _t(rng.normal(size=(3, 2, 4)), requires_grad=True)
    w = _t(rng.uniform(0.5, 1.5, (2, 4)), requires_grad=True)
    b = _t(rng.normal(size=(2, 4)), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (2, 4), w, b), (x, w, b))
    assert gradcheck(lambda x: F.layer_norm(x, [4], eps=1e-3), (x,))
    assert gradcheck(lambda x, b: F.layer_norm(x, (2, 4), None, b), (x, b))

    assert gradgradcheck(lambda x, w, b: F.layer_norm(x, (4,), w, b),
                         (x, _t(rng.uniform(0.5, 1.5, 4), requires_grad=True), b[0]))


def test_layer_norm_options_and_bad_input():
    ln = nn.LayerNorm(4, elementwise_affine=False)
    assert list(ln.state_dict()) == []
    assert list(nn.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    with pytest.raises(ValueError, match=r"normalized_shape=\[4\].*\(2, 5\)"):
        ln(gd.zeros(2, 5))
    with pytest.raises(ValueError, match=r"'weight' expected shape \(3,\)"):
        F.layer_norm(gd.zeros(2, 3), (3,), gd.ones(4))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.layer_norm(gd.zeros(2, 3, dtype=gd.int64), (3,))


# ---- Embedding ------------------------------------------------------------------------------

def test_embedding_forward_and_scatter_add_gradient(float_dtype, rng):
    V, D = 11, 5
    w = rng.normal(size=(V, D)).astype(float_dtype)
    idx = np.array([[3, 0, 3], [10, 2, 3]], dtype=np.int64)
    emb = nn.Embedding(V, D, padding_idx=2, dtype=gd.float64 if float_dtype == np.float64
                       else None)
    assert np.all(_np(emb.weight)[2] == 0)
    with gd.no_grad():
        emb.weight.copy_(_t(w))
    y = emb(gd.tensor(idx))
    np.testing.assert_array_equal(_np(y), w[idx])
    dy = rng.normal(size=(2, 3, D)).astype(float_dtype)
    y.backward(_t(dy))
    ref = np.zeros((V, D), dtype=float_dtype)
    for k, v in enumerate(idx.ravel()):  # in index order, as the kernel adds
        if v != 2:
            ref[v] += dy.reshape(-1, D)[k]
    np.testing.assert_array_equal(_np(emb.weight.grad), ref)


def test_embedding_gradcheck_and_double_backward(rng):
    w = _t(rng.normal(size=(6, 3)), requires_grad=True)
    idx = gd.tensor(np.array([1, 4, 1, 5, 0], dtype=np.int64))
    assert gradcheck(lambda w: F.embedding(idx, w), (w,))

    assert gradgradcheck(lambda w: F.embedding(idx, w, padding_idx=1) ** 3, (w,))


def test_embedding_max_norm(rng):
    w = rng.normal(size=(5, 4)) * 3
    emb = nn.Embedding(5, 4, max_norm=1.0).double()
    with gd.no_grad():
        emb.weight.copy_(_t(w))
    emb(gd.tensor(np.array([0, 2, 2], dtype=np.int64)))
    norms = np.linalg.norm(w, axis=1)
    want = w.copy()
    for r in (0, 2):
        if norms[r] > 1:
            want[r] *= 1.0 / (norms[r] + 1e-7)
    np.testing.assert_allclose(_np(emb.weight), want, rtol=1e-12)


def test_embedding_bad_input():
    emb = nn.Embedding(4, 2)
    with pytest.raises(ValueError, match=r"index 4 .* out of range for 4 embeddings"):
        emb(gd.tensor(np.array([0, 4], dtype=np.int64)))
    with pytest.raises(ValueError, match="index -1"):
        emb(gd.tensor(np.array([-1], dtype=np.int64)))
    with pytest.raises(TypeError, match="must have dtype int64, got .*float32"):
        emb(gd.zeros(3))
    with pytest.raises(ValueError, match="padding_idx must be within"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        nn.Embedding(4, 2, sparse=True)
    with pytest.raises(TypeError, match="scale_grad_by_freq must be a bool, got str"):
        F.embedding(gd.tensor([0]), gd.zeros(4, 2), scale_grad_by_freq="yes")


def test_embedding_scale_grad_by_freq(float_dtype, rng):
    """Row r's gradient is divided by the number of times r occurs in the batch (padding gets
    nothing), against a NumPy scatter-add oracle."""
    V, D = 7, 3
    w = rng.normal(size=(V, D)).astype(float_dtype)
    idx = np.array([[3, 0, 3, 3], [6, 2, 0, 5]], dtype=np.int64)
    emb = nn.Embedding(V, D, padding_idx=2, scale_grad_by_freq=True).to(
        gd.float64 if float_dtype == np.float64 else gd.float32)
    with gd.no_grad():
        emb.weight.copy_(_t(w))
    dy = rng.normal(size=(2, 4, D)).astype(float_dtype)
    emb(gd.tensor(idx)).backward(_t(dy))
    counts = np.bincount(idx.ravel(), minlength=V)
    ref = np.zeros((V, D))
    for k, v in enumerate(idx.ravel()):
        if v != 2:
            ref[v] += dy.reshape(-1, D)[k] / counts[v]
    np.testing.assert_allclose(_np(emb.weight.grad), ref, **_tol(float_dtype))


def test_embedding_scale_grad_by_freq_gradcheck(rng):
    """The scaled gradient is by design not the lookup's derivative; what is checked against
    finite differences (float64) is the backward as a function of the output gradient g
    (linear in g), whose own backward the double-backward path computes."""
    w = _t(rng.normal(size=(6, 3)), requires_grad=True)
    idx = gd.tensor(np.array([[1, 4, 1], [5, 1, 0]], dtype=np.int64))

    def backward_of(g):
        with gd.enable_grad():  # gradcheck's finite differences run under no_grad
            y = F.embedding(idx, w, padding_idx=4, scale_grad_by_freq=True)
            (dw,) = gd.autograd.grad(y, w, g, create_graph=True)
        return dw ** 2

    assert gradcheck(backward_of, (_t(rng.normal(size=(2, 3, 3)), requires_grad=True),))
    y = F.embedding(idx, w, scale_grad_by_freq=True)
    (g,) = gd.autograd.grad(y.sum(), w)  # each occurring row: its count / its count
    np.testing.assert_array_equal(_np(g), np.array([1, 1, 0, 0, 1, 1])[:, None] * np.ones(3))


def test_embedding_scale_grad_by_freq_matches_torch(rng):
    torch = pytest.importorskip("torch")
    w = rng.normal(size=(9, 4))
    idx = rng.integers(0, 9, size=(5, 6))
    dy = rng.normal(size=(5, 6, 4))
    for pad in (None, 3):
        tw = torch.tensor(w, requires_grad=True)
        torch.nn.functional.embedding(torch.tensor(idx), tw, padding_idx=pad,
                                      scale_grad_by_freq=True).backward(torch.tensor(dy))
        gw = _t(w, requires_grad=True)
        F.embedding(gd.tensor(idx), gw, padding_idx=pad,
                    scale_grad_by_freq=True).backward(_t(dy))
        np.testing.assert_allclose(_np(gw.grad), tw.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_embedding_scale_grad_by_freq_compiled_runs_eagerly_and_equals_eager(rng):
    """The scale depends on the batch's indices: gd.compile says so (one warning) and runs the
    step eagerly, so its results equal eager ones."""
    xs = [rng.integers(0, 8, size=(4, 3)).astype(np.int64) for _ in range(3)]
    results = []
    for compiled in (False, True):
        gd.manual_seed(1)
        model = nn.Sequential(nn.Embedding(8, 2, scale_grad_by_freq=True), nn.Flatten(),
                              nn.Linear(6, 1))
        opt = gd.optim.SGD(model.parameters(), lr=0.1)

        def step(x, model=model, opt=opt):
            opt.zero_grad()
            loss = model(x).square().mean()
            loss.backward()
            opt.step()
            return loss

        fn = gd.compile(step) if compiled else step
        if compiled:
            with pytest.warns(RuntimeWarning, match="running step eagerly: elementwise: operand"):
                fn(gd.tensor(xs[0]))
            losses = [_np(fn(gd.tensor(x))).copy() for x in xs[1:]]
        else:
            fn(gd.tensor(xs[0]))
            losses = [_np(fn(gd.tensor(x))).copy() for x in xs[1:]]
        results.append((losses, _np(model[0].weight).copy()))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)


def test_embedding_from_pretrained():
    w = gd.tensor(np.arange(6.0).reshape(3, 2))
    emb = nn.Embedding.from_pretrained(w)
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(_np(emb(gd.tensor(np.array([2], dtype=np.int64)))),
                                  [[4.0, 5.0]])


# ---- threads, ISAs ---------------------------------------------------------------------------

def _run_all(rng_seed, dtype):
    rng = np.random.default_rng(rng_seed)
    out = []
    # large enough for every kernel to go parallel (parallel.hpp: kParallelWork)
    x = rng.normal(size=(1100, 130)).astype(dtype)
    x3 = rng.normal(size=(64, 24, 50)).astype(dtype)
    dy, dy3 = rng.normal(size=x.shape).astype(dtype), rng.normal(size=x3.shape).astype(dtype)
    w, b = rng.normal(size=130).astype(dtype), rng.normal(size=130).astype(dtype)
    rm, rv = np.zeros(130, dtype), np.ones(130, dtype)
    y, m, inv = _core.batch_norm_forward(x, w, b, rm, rv, None, True, 0.1, 1e-5)
    out += [y, m, inv, rm, rv, *_core.batch_norm_backward(dy, x, w, m, inv, True)]
    w3 = rng.normal(size=24).astype(dtype)
    y, m, inv = _core.batch_norm_forward(x3, w3, None, None, None, None, True, 0.1, 1e-5)
    out += [y, *(a for a in _core.batch_norm_backward(dy3, x3, w3, m, inv, True)
                 if a is not None)]
    y, m, r = _core.layer_norm_forward(x, w, b, 1e-5)
    out += [y, m, r, *_core.layer_norm_backward(dy, x, w, m, r)]
    idx = rng.integers(0, 70, size=5000).astype(np.int64)
    out += [_core.embedding_forward(x[:70], idx),
            _core.embedding_backward(rng.normal(size=(5000, 130)).astype(dtype), idx, 70, 3)]
    return out


def test_one_and_two_threads_bitwise(threads, float_dtype):
    threads(1)
    one = _run_all(7, float_dtype)
    threads(2)
    two = _run_all(7, float_dtype)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_every_isa_matches_numpy(isa, rng):
    x = rng.normal(size=(33, 21))
    w, b = rng.normal(size=21), rng.normal(size=21)
    y, _, _ = _core.batch_norm_forward(x, w, b, None, None, None, True, 0.1, 1e-5)
    np.testing.assert_allclose(y, np_batch_norm(x, w, b, 1e-5)[0], rtol=1e-11, atol=1e-12)
    y, _, _ = _core.layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_allclose(y, np_layer_norm(x, w, b, 21, 1e-5), rtol=1e-11, atol=1e-12)


# ---- PyTorch oracle ------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("shape", [(16, 6), (8, 6, 5)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_matches_torch_train_and_eval(shape, momentum, rng):
    torch = _torch()
    tb = torch.nn.BatchNorm1d(6, momentum=momentum).double()
    gb = nn.BatchNorm1d(6, momentum=momentum).double()
    with torch.no_grad():
        tb.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, 6)))
        tb.bias.copy_(torch.tensor(rng.normal(size=6)))
    gb.load_state_dict({k: _np(v) for k, v in tb.state_dict().items()})
    for step in range(3):
        x = rng.normal(step, 2.0, size=shape)
        tx, gx = torch.tensor(x, requires_grad=True), _t(x, requires_grad=True)
        ty, gy = tb(tx), gb(gx)
        np.testing.assert_allclose(_np(gy), _np(ty), rtol=1e-10, atol=1e-12)
        dy = rng.normal(size=shape)
        ty.backward(torch.tensor(dy))
        gy.backward(_t(dy))
        np.testing.assert_allclose(_np(gx.grad), _np(tx.grad), rtol=1e-9, atol=1e-11)
    for k, v in tb.state_dict().items():
        np.testing.assert_allclose(_np(gb.state_dict()[k]), _np(v), rtol=1e-10)
    np.testing.assert_allclose(_np(gb.weight.grad), _np(tb.weight.grad), rtol=1e-9)
    tb.eval()
    gb.eval()
    x = rng.normal(size=shape)
    np.testing.assert_allclose(_np(gb(_t(x))), _np(tb(torch.tensor(x))),
                               rtol=1e-10, atol=1e-12)


def test_layer_norm_and_embedding_match_torch(rng):
    torch = _torch()
    tl = torch.nn.LayerNorm((3, 4)).double()
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(rng.normal(size=(3, 4))))
        tl.bias.copy_(torch.tensor(rng.normal(size=(3, 4))))
    gl = nn.LayerNorm((3, 4)).double()
    gl.load_state_dict({k: _np(v) for k, v in tl.state_dict().items()})
    x = rng.normal(size=(5, 3, 4))
    tx, gx = torch.tensor(x, requires_grad=True), _t(x, requires_grad=True)
    ty, gy = tl(tx), gl(gx)
    np.testing.assert_allclose(_np(gy), _np(ty), rtol=1e-10, atol=1e-12)
    (ty ** 2).sum().backward()
    (gy ** 2).sum().backward()
    np.testing.assert_allclose(_np(gx.grad), _np(tx.grad), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(_np(gl.weight.grad), _np(tl.weight.grad), rtol=1e-9)

    te = torch.nn.Embedding(9, 4, padding_idx=0, max_norm=1.5).double()
    ge = nn.Embedding(9, 4, padding_idx=0, max_norm=1.5).double()
    with torch.no_grad():
        te.weight.copy_(torch.tensor(rng.normal(size=(9, 4)) * 2))
    ge.load_state_dict({k: _np(v) for k, v in te.state_dict().items()})
    idx = rng.integers(0, 9, size=(4, 6))
    ty, gy = te(torch.tensor(idx)), ge(gd.tensor(idx.astype(np.int64)))
    np.testing.assert_allclose(_np(gy), _np(ty), rtol=1e-12)
    dy = rng.normal(size=(4, 6, 4))
    ty.backward(torch.tensor(dy))
    gy.backward(_t(dy))
    np.testing.assert_allclose(_np(ge.weight.grad), _np(te.weight.grad), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(_np(ge.weight), _np(te.weight), rtol=1e-12)


# ---- gd.compile ------------------------------------------------------------------------------

def _capture_model(seed, momentum):
    gd.manual_seed(seed)
    return nn.Sequential(nn.Embedding(30, 5, padding_idx=0), nn.Flatten(), nn.Linear(20, 8),
                         nn.BatchNorm1d(8, momentum=momentum), nn.ReLU(), nn.LayerNorm(8),
                         nn.Linear(8, 3))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_compiled_step_equals_eager_with_running_stats(momentum, rng):
    xs = [rng.integers(0, 30, size=(16, 4)).astype(np.int64) for _ in range(5)]
    ys = [rng.integers(0, 3, size=16).astype(np.int64) for _ in range(5)]
    results = []
    for compiled in (False, True):
        model = _capture_model(3, momentum)
        opt = gd.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step(x, y, model=model, opt=opt, loss_fn=loss_fn):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        fn = gd.compile(step) if compiled else step
        losses = [_np(fn(gd.tensor(x), gd.tensor(y))).copy() for x, y in zip(xs, ys)]
        if compiled:  # recorded (again once the momentum buffers exist), then replayed
            assert fn.stats["replayed"] >= len(xs) - 2 and fn.stats["eager"] == 0
        results.append((losses, {k: _np(v).copy() for k, v in model.state_dict().items()}))
    (l0, s0), (l1, s1) = results
    for a, b in zip(l0, l1):
        np.testing.assert_array_equal(a, b)
    for k in s0:
        np.testing.assert_array_equal(s0[k], s1[k], err_msg=k)
    assert int(s1["3.num_batches_tracked"]) == len(xs)


def test_compiled_eval_step_and_bad_index(rng):
    model = _capture_model(4, 0.1)
    model.eval()
    fn = gd.compile(lambda x: model(x))
    xs = [rng.integers(0, 30, size=(6, 4)).astype(np.int64) for _ in range(3)]
    for x in xs:
        compiled = _np(fn(gd.tensor(x)))
        with gd.no_grad():
            eager = _np(model(gd.tensor(x)))
        np.testing.assert_array_equal(compiled, eager)
    assert fn.stats["replayed"] == 2
    with pytest.raises(ValueError, match="index 30 .* out of range for 30 embeddings"):
        fn(gd.tensor(np.full((6, 4), 30, dtype=np.int64)))
