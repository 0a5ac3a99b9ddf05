"""Layers a PyTorch script uses that graddesc lacked: BatchNorm2d/3d (F.batch_norm on (N, C, *)),
F.pad with ZeroPad/ConstantPad modules, and more activations (relu6, hardtanh, elu, selu, celu,
prelu, glu, logsigmoid, softsign, hardswish, hardsigmoid, mish, tanhshrink, softshrink,
hardshrink, softmin). Each is compared with PyTorch (skipped without it), forward and gradient,
checked by float64 gradcheck, and captured by gd.compile: a training step using it replays its
kernels (no fallback warning) and equals the eager step bitwise with changing data."""

import warnings

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F

TOL = {np.float32: 1e-6, np.float64: 1e-12}

# name -> (graddesc function, kwargs, torch name)
ACTS = {
    "relu6": (F.relu6, {}, "relu6"),
    "hardtanh": (F.hardtanh, {"min_val": -1.5, "max_val": 2.0}, "hardtanh"),
    "elu": (F.elu, {"alpha": 1.3}, "elu"),
    "selu": (F.selu, {}, "selu"),
    "celu": (F.celu, {"alpha": 0.7}, "celu"),
    "logsigmoid": (F.logsigmoid, {}, "logsigmoid"),
    "softsign": (F.softsign, {}, "softsign"),
    "hardswish": (F.hardswish, {}, "hardswish"),
    "hardsigmoid": (F.hardsigmoid, {}, "hardsigmoid"),
    "mish": (F.mish, {}, "mish"),
    "tanhshrink": (F.tanhshrink, {}, "tanhshrink"),
    "softshrink": (F.softshrink, {"lambd": 0.4}, "softshrink"),
    "hardshrink": (F.hardshrink, {"lambd": 0.4}, "hardshrink"),
    "softmin": (F.softmin, {"dim": 1}, "softmin"),
    "glu": (F.glu, {"dim": 1}, "glu"),
}

SPECIAL = [0.0, -0.0, 1e-7, -1e-7, 1e-3, -1e-3, -3.0, 3.0, 6.0, -1.5, 2.0, 0.4, -0.4, 1.0,
           -1.0, -30.0, 30.0, -100.0, 100.0, -1000.0]


def _x(dtype, shape=(6, 8), seed=0):
    rng = np.random.default_rng(seed)
    a = (3 * rng.standard_normal(shape)).astype(dtype)
    flat = a.reshape(-1)
    k = min(len(SPECIAL), flat.size)
    flat[:k] = SPECIAL[:k]
    return a


def _torch():
    return pytest.importorskip("torch")


def _compare(gfn, tfn, arrays, dtype, atol_scale=0.0, rtol_factor=1.0):
    """forward and gradients of gfn(*tensors) against tfn(*torch tensors)."""
    torch = _torch()
    gx = [gd.tensor(a.copy(), requires_grad=True) for a in arrays]
    tx = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    gy, ty = gfn(*gx), tfn(*tx)
    tol = TOL[dtype] * rtol_factor
    np.testing.assert_allclose(gy.detach().numpy(), ty.detach().numpy(), rtol=tol,
                               atol=tol * atol_scale)
    g = np.random.default_rng(1).standard_normal(ty.shape).astype(dtype)
    gy.backward(gd.tensor(g))
    ty.backward(torch.tensor(g))
    for a, b in zip(gx, tx):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=tol,
                                   atol=tol * atol_scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_matches_torch(name, dtype):
    torch = _torch()
    fn, kw, tname = ACTS[name]
    tfn = getattr(torch.nn.functional, tname)
    # tanhshrink and mish cancel near 0 (x - tanh x): an absolute tolerance at the input's scale
    scale = 1.0 if name in ("tanhshrink", "softmin", "glu", "logsigmoid", "mish") else 0.0
    # glu's gradient a * s * (1 - s) cancels near s = 1: graddesc's sigmoid kernel is within an
    # ulp of PyTorch's, which 1 - s magnifies (3.6e-6 relative seen at s = 0.98)
    rtol_factor = 20.0 if name == "glu" and dtype == np.float32 else 1.0
    _compare(lambda t: fn(t, **kw), lambda t: tfn(t, **kw), [_x(dtype)], dtype, scale,
             rtol_factor)


def test_elu_is_accurate_near_zero():
    x = np.array([-1e-8, -1e-20, -3e-5], np.float32)
    y = F.elu(gd.tensor(x)).numpy()
    np.testing.assert_allclose(y, np.expm1(x.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, n", [((5, 3, 4), 3), ((5, 3), 1), ((5, 3), 3), ((4,), 1),
                                      ((2, 3, 2, 2), 3)])
def test_prelu_matches_torch(shape, n, dtype):
    torch = _torch()
    w = np.linspace(-0.5, 0.7, n).astype(dtype)
    _compare(lambda x, w_: F.prelu(x, w_), torch.nn.functional.prelu, [_x(dtype, shape), w],
             dtype, 1.0)


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_gradcheck(name):
    fn, kw, _ = ACTS[name]
    rng = np.random.default_rng(5)
    a = rng.uniform(-4, 4, (3, 4))
    lam = {"hardtanh": (-1.5, 2.0), "relu6": (0.0, 6.0), "hardswish": (-3.0, 3.0),
           "hardsigmoid": (-3.0, 3.0), "softshrink": (-0.4, 0.4), "hardshrink": (-0.4, 0.4)}
    for k in lam.get(name, ()):  # keep away from the kinks
        a = np.where(np.abs(a - k) < 1e-3, a + 0.01, a)
    x = gd.tensor(a, requires_grad=True)
    assert gd.autograd.gradcheck(lambda t: fn(t, **kw), (x,))


def test_prelu_gradcheck():
    rng = np.random.default_rng(6)
    x = gd.tensor(rng.uniform(-2, 2, (3, 4, 2)), requires_grad=True)
    w = gd.tensor(np.array([0.1, -0.3, 0.5, 2.0]), requires_grad=True)
    assert gd.autograd.gradcheck(F.prelu, (x, w))


INPLACE = {"relu6": F.relu6, "hardtanh": F.hardtanh, "elu": F.elu, "selu": F.selu,
           "celu": F.celu, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
           "mish": F.mish}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_matches_out_of_place(name):
    fn = INPLACE[name]
    a = _x(np.float64, (4, 5))
    w = gd.tensor(a, requires_grad=True)
    h = w * 1.0
    out = fn(h, inplace=True)
    assert out is h
    ref = fn(gd.tensor(a))
    np.testing.assert_array_equal(h.detach().numpy(), ref.numpy())
    out.sum().backward()
    w2 = gd.tensor(a, requires_grad=True)
    fn(w2).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), w2.grad.numpy())
    leaf = gd.tensor(a, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        fn(leaf, inplace=True)


def test_activation_bad_input():
    with pytest.raises(TypeError, match="input"):
        F.elu([1.0])
    with pytest.raises(TypeError, match="input"):
        F.relu6(gd.tensor([1, 2]))
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(gd.ones(2), 2.0, 1.0)
    with pytest.raises(ValueError, match="lambd"):
        F.softshrink(gd.ones(2), -1.0)
    with pytest.raises(TypeError, match="alpha"):
        F.elu(gd.ones(2), alpha="1")
    with pytest.raises(ValueError, match="even"):
        F.glu(gd.ones(2, 3))
    with pytest.raises(ValueError, match="weight"):
        F.prelu(gd.ones(2, 3), gd.ones(2))
    with pytest.raises(ValueError, match="channels 1"):  # a 1-d input has one channel
        F.prelu(gd.ones(4), gd.ones(4))
    with pytest.raises(TypeError, match="weight"):
        F.prelu(gd.ones(2, 3), gd.ones(3, dtype=gd.float64))
    with pytest.raises(TypeError, match="inplace"):
        F.elu(gd.ones(2), inplace=1)


def test_module_reprs_and_parameters():
    cases = [(nn.ReLU6(), "ReLU6()"), (nn.ReLU6(inplace=True), "ReLU6(inplace=True)"),
             (nn.Hardtanh(), "Hardtanh(min_val=-1.0, max_val=1.0)"),
             (nn.Hardtanh(-2.0, 2.0, inplace=True),
              "Hardtanh(min_val=-2.0, max_val=2.0, inplace=True)"),
             (nn.ELU(), "ELU(alpha=1.0)"), (nn.ELU(inplace=True), "ELU(alpha=1.0, inplace=True)"),
             (nn.CELU(), "CELU(alpha=1.0)"), (nn.SELU(), "SELU()"), (nn.GLU(), "GLU(dim=-1)"),
             (nn.PReLU(), "PReLU(num_parameters=1)"), (nn.Softshrink(), "Softshrink(0.5)"),
             (nn.Hardshrink(), "Hardshrink(0.5)"), (nn.Softmin(1), "Softmin(dim=1)"),
             (nn.Hardswish(), "Hardswish()"), (nn.Hardsigmoid(), "Hardsigmoid()"),
             (nn.Mish(), "Mish()"), (nn.LogSigmoid(), "LogSigmoid()"),
             (nn.Softsign(), "Softsign()"), (nn.Tanhshrink(), "Tanhshrink()"),
             (nn.ZeroPad2d(2), "ZeroPad2d((2, 2, 2, 2))"), (nn.ZeroPad1d(1), "ZeroPad1d((1, 1))"),
             (nn.ConstantPad1d((1, 2), 3.5), "ConstantPad1d(padding=(1, 2), value=3.5)"),
             (nn.ConstantPad2d(1, 2.0), "ConstantPad2d(padding=(1, 1, 1, 1), value=2.0)"),
             (nn.CosineSimilarity(), "CosineSimilarity()"),
             (nn.PairwiseDistance(), "PairwiseDistance()"),
             (nn.TripletMarginLoss(), "TripletMarginLoss()"),
             (nn.MarginRankingLoss(), "MarginRankingLoss()"),
             (nn.CosineEmbeddingLoss(), "CosineEmbeddingLoss()"),
             (nn.BatchNorm2d(3),
              "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)")]
    for m, want in cases:
        assert repr(m) == want
    p = nn.PReLU(3, 0.1)
    assert isinstance(p.weight, nn.Parameter) and p.weight.requires_grad
    assert list(p.state_dict()) == ["weight"]
    np.testing.assert_array_equal(p.weight.detach().numpy(), np.full(3, 0.1, np.float32))
    assert [n for n, _ in nn.BatchNorm2d(3).named_buffers()] == [
        "running_mean", "running_var", "num_batches_tracked"]


def test_module_state_dict_names_match_torch():
    torch = _torch()
    for g, t in ((nn.PReLU(4), torch.nn.PReLU(4)), (nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)),
                 (nn.BatchNorm3d(2), torch.nn.BatchNorm3d(2))):
        assert list(g.state_dict()) == list(t.state_dict())


# ---- batch norm 2d -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (3, 2, 2, 3, 2)])
def test_batchnorm_nd_matches_torch(shape, dtype):
    torch = _torch()
    rng = np.random.default_rng(2)
    C = shape[1]
    g_cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm3d
    t_cls = torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm3d
    gm, tm = g_cls(C, momentum=0.2), t_cls(C, momentum=0.2)
    if dtype == np.float64:
        gm, tm = gm.double(), tm.double()
    w = rng.standard_normal(C).astype(dtype)
    with gd.no_grad():
        gm.weight.copy_(gd.tensor(w))
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(w))
    tol = TOL[dtype]
    for k in range(3):
        a = (rng.standard_normal(shape) * (k + 1) + k).astype(dtype)
        _compare(gm, tm, [a], dtype, 1.0)
        for n in ("running_mean", "running_var"):
            np.testing.assert_allclose(getattr(gm, n).numpy(), getattr(tm, n).numpy(),
                                       rtol=tol, atol=tol)
    gm.eval()
    tm.eval()
    _compare(gm, tm, [_x(dtype, shape)], dtype, 1.0)
    for n, p in gm.named_parameters():
        assert p.grad is not None, n


def test_batch_norm_4d_gradcheck_and_errors():
    rng = np.random.default_rng(3)
    x = gd.tensor(rng.standard_normal((3, 2, 2, 3)), requires_grad=True)
    w = gd.tensor(rng.standard_normal(2), requires_grad=True)
    b = gd.tensor(rng.standard_normal(2), requires_grad=True)
    assert gd.autograd.gradcheck(lambda x_, w_, b_: F.batch_norm(x_, None, None, w_, b_, True),
                                 (x, w, b))
    with pytest.raises(ValueError, match="4D input"):
        nn.BatchNorm2d(2)(gd.ones(3, 2, 4))
    with pytest.raises(ValueError, match="2 features"):
        nn.BatchNorm2d(2)(gd.ones(3, 4, 2, 2))
    with pytest.raises(ValueError, match="at least 2"):
        F.batch_norm(gd.ones(3), None, None, training=True)


# ---- pad -----------------------------------------------------------------------------------

PADS = [(1, 2), (0, 0), (-1, 2), (2, -1, 1, 0), (1, 1, -1, -1), (0, 1, 2, 0, 1, 1),
        (-3, 0), (-1, -2, 3, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", PADS)
def test_pad_matches_torch(pad, dtype):
    torch = _torch()
    a = _x(dtype, (2, 3, 3))
    for value in (None, 0.0, -2.5):
        _compare(lambda t, v=value: F.pad(t, pad, value=v),
                 lambda t, v=value: torch.nn.functional.pad(t, pad, value=v), [a], dtype)


def test_pad_numpy_oracle_and_gradcheck():
    a = np.arange(12.0).reshape(3, 4)
    got = F.pad(gd.tensor(a), (1, -1, -1, 2), value=7.0).numpy()
    want = np.full((4, 4), 7.0)
    want[0:2, 1:4] = a[1:3, 0:3]
    np.testing.assert_array_equal(got, want)
    x = gd.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    assert gd.autograd.gradcheck(lambda t: F.pad(t, (1, -2, 0, 1), value=3.0), (x,))
    assert F.pad(gd.tensor([1, 2]), (1, 0), value=5).tolist() == [5, 1, 2]


def test_pad_modules_match_torch():
    torch = _torch()
    a = _x(np.float32, (2, 3, 4, 5))
    for g, t in ((nn.ZeroPad2d((1, 0, 2, 1)), torch.nn.ZeroPad2d((1, 0, 2, 1))),
                 (nn.ConstantPad2d(2, 1.5), torch.nn.ConstantPad2d(2, 1.5)),
                 (nn.ConstantPad1d((0, 3), -1.0), torch.nn.ConstantPad1d((0, 3), -1.0)),
                 (nn.ZeroPad1d(2), torch.nn.ZeroPad1d(2)),
                 (nn.ConstantPad3d(1, 2.0), torch.nn.ConstantPad3d(1, 2.0))):
        _compare(g, t, [a], np.float32)


def test_pad_bad_input():
    x = gd.ones(2, 3)
    with pytest.raises(ValueError, match="divisible by 2"):
        F.pad(x, (1,))
    with pytest.raises(ValueError, match="dimensions"):
        F.pad(x, (1, 1, 1, 1, 1, 1))
    with pytest.raises(NotImplementedError, match="reflect"):
        F.pad(x, (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="crop"):
        F.pad(x, (-2, -2))
    with pytest.raises(TypeError, match="pad"):
        F.pad(x, (1.5, 1))
    with pytest.raises(TypeError, match="value"):
        F.pad(x, (1, 1), value="0")
    with pytest.raises(ValueError, match="padding"):
        nn.ZeroPad2d((1, 2, 3))
    with pytest.raises(ValueError, match="dimensions"):
        nn.ZeroPad2d(1)(gd.ones(2))


# ---- gd.compile capture --------------------------------------------------------------------

def _layer(name):
    if name in ACTS:
        fn, kw, _ = ACTS[name]
        if name == "glu":
            return nn.Sequential(nn.Linear(4, 12), _Fn(fn, kw), nn.Linear(6, 3))
        return nn.Sequential(nn.Linear(4, 6), _Fn(fn, kw), nn.Linear(6, 3))
    if name == "prelu":
        return nn.Sequential(nn.Linear(4, 6), nn.PReLU(6), nn.Linear(6, 3))
    if name == "relu6_inplace":
        return nn.Sequential(nn.Linear(4, 6), nn.ReLU6(inplace=True), nn.Linear(6, 3))
    if name == "elu_inplace":
        return nn.Sequential(nn.Linear(4, 6), nn.ELU(inplace=True), nn.Linear(6, 3))
    if name == "pad":
        return nn.Sequential(nn.Linear(4, 6), _Fn(F.pad, {"pad": (1, -2), "value": 0.5}),
                             nn.Linear(5, 3))
    if name == "batchnorm2d":
        return nn.Sequential(nn.Unflatten(1, (2, 1, 2)), nn.BatchNorm2d(2), nn.Flatten(),
                             nn.Linear(4, 3))
    raise KeyError(name)


class _Fn(nn.Module):
    def __init__(self, fn, kw):
        super().__init__()
        self.fn, self.kw = fn, kw

    def forward(self, x):
        return self.fn(x, **self.kw)


CAPTURED = list(ACTS) + ["prelu", "relu6_inplace", "elu_inplace", "pad", "batchnorm2d"]


def _train(name, dtype, compiled, calls=6):
    gd.manual_seed(0)
    m = _layer(name).to(dtype)
    opt = gd.optim.SGD(m.parameters(), lr=0.05)

    def step(x, y):
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        return loss

    f = gd.compile(step) if compiled else step
    rng = np.random.default_rng(4)
    losses = []
    for k in range(calls):
        x = gd.tensor((rng.standard_normal((5, 4)) * (1 + 2 * (k % 2))).astype(dtype))
        y = gd.tensor(rng.standard_normal((5, 3)).astype(dtype))
        losses.append(f(x, y).item())
    return m, losses, f


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CAPTURED)
def test_compiled_step_replays_and_equals_eager(name, dtype):
    m1, l1, _ = _train(name, dtype, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        m2, l2, f = _train(name, dtype, True)
    assert f.stats["eager"] == 0, f.stats
    assert f.stats["replayed"] >= 4, f.stats
    assert l1 == l2
    for (n, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)


# ---- distances and their losses ------------------------------------------------------------

def _pairs(dtype, shape=(5, 4), seed=7):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape).astype(dtype)
    a[0] = 1e-10  # a norm below eps: clamped
    b[1] = 0.0
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_similarity_matches_torch(dtype):
    torch = _torch()
    a, b = _pairs(dtype)
    tf = torch.nn.functional.cosine_similarity
    _compare(F.cosine_similarity, tf, [a, b], dtype, 1.0)
    _compare(lambda x, y: F.cosine_similarity(x, y, dim=0, eps=1e-3),
             lambda x, y: tf(x, y, dim=0, eps=1e-3), [a, b], dtype, 1.0)
    _compare(lambda x, y: F.cosine_similarity(x, y, dim=-1),
             lambda x, y: tf(x, y, dim=-1), [a[:1], b], dtype, 1.0)  # broadcast
    _compare(nn.CosineSimilarity(0), torch.nn.CosineSimilarity(0), [a[2], b[3]], dtype, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5])
def test_pairwise_distance_matches_torch(p, dtype):
    torch = _torch()
    a, b = _pairs(dtype)
    b[2] = a[2] + 1e-6  # a difference that eps cancels partly
    tf = torch.nn.functional.pairwise_distance
    for keepdim in (False, True):
        _compare(lambda x, y, k=keepdim: F.pairwise_distance(x, y, p, keepdim=k),
                 lambda x, y, k=keepdim: tf(x, y, p, keepdim=k), [a, b], dtype, 1.0)
    _compare(nn.PairwiseDistance(p, eps=0.0), torch.nn.PairwiseDistance(p, eps=0.0),
             [a[2:], b[2:]], dtype, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_distance_losses_match_torch(reduction, dtype):
    torch = _torch()
    tF = torch.nn.functional
    rng = np.random.default_rng(9)
    a, p, n = (rng.standard_normal((6, 3)).astype(dtype) for _ in range(3))
    for swap in (False, True):
        _compare(lambda x, y, z, s=swap: F.triplet_margin_loss(x, y, z, margin=0.7, swap=s,
                                                                reduction=reduction),
                 lambda x, y, z, s=swap: tF.triplet_margin_loss(x, y, z, margin=0.7, swap=s,
                                                                 reduction=reduction),
                 [a, p, n], dtype, 1.0)
    _compare(nn.TripletMarginLoss(p=1.0, reduction=reduction),
             torch.nn.TripletMarginLoss(p=1.0, reduction=reduction), [a, p, n], dtype, 1.0)
    t = np.where(rng.standard_normal(6) > 0, 1.0, -1.0).astype(dtype)
    x1, x2 = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    torch_t, gd_t = torch.tensor(t), gd.tensor(t)
    _compare(lambda x, y: F.margin_ranking_loss(x, y, gd_t, 0.3, reduction=reduction),
             lambda x, y: tF.margin_ranking_loss(x, y, torch_t, 0.3, reduction=reduction),
             [x1, x2], dtype, 1.0)
    _compare(lambda x, y: nn.CosineEmbeddingLoss(0.2, reduction=reduction)(x, y, gd_t),
             lambda x, y: tF.cosine_embedding_loss(x, y, torch_t, 0.2, reduction=reduction),
             [a, p], dtype, 1.0)
    _compare(lambda x, y: F.cosine_embedding_loss(x, y, gd.tensor(t[:1].reshape(())),
                                                  reduction=reduction),
             lambda x, y: tF.cosine_embedding_loss(x, y, torch.tensor(t[:1].reshape(())),
                                                   reduction=reduction),
             [a[0], p[0]], dtype, 1.0)


def test_distance_gradcheck():
    rng = np.random.default_rng(11)
    a, b, c = (gd.tensor(rng.standard_normal((3, 4)), requires_grad=True) for _ in range(3))
    assert gd.autograd.gradcheck(F.cosine_similarity, (a, b))
    for p in (2.0, 1.0, 3.0):
        assert gd.autograd.gradcheck(lambda x, y, q=p: F.pairwise_distance(x, y, q), (a, b))
    assert gd.autograd.gradcheck(lambda x, y, z: F.triplet_margin_loss(x, y, z, margin=5.0,
                                                                       swap=True), (a, b, c))
    t = gd.tensor([1.0, -1.0, 1.0])
    assert gd.autograd.gradcheck(lambda x, y: F.cosine_embedding_loss(x, y, t, -1.0), (a, b))
    assert gd.autograd.gradcheck(lambda x, y: F.margin_ranking_loss(x, y, gd.ones(3, 4), 9.0),
                                 (a, b))


def test_distance_bad_input():
    x = gd.ones(2, 3)
    with pytest.raises(TypeError, match="x2"):
        F.cosine_similarity(x, [1.0])
    with pytest.raises(ValueError, match="broadcast"):
        F.cosine_similarity(x, gd.ones(4, 3))
    with pytest.raises(TypeError, match="must match"):
        F.pairwise_distance(x, gd.ones(2, 3, dtype=gd.float64))
    with pytest.raises(ValueError, match="finite positive"):
        F.pairwise_distance(x, x, p=0.0)
    with pytest.raises(ValueError, match="reduction"):
        F.margin_ranking_loss(gd.ones(2), gd.ones(2), gd.ones(2), reduction="avg")
    with pytest.raises(ValueError, match="target"):
        F.cosine_embedding_loss(x, x, gd.ones(2, 3))
    with pytest.raises(TypeError, match="negative"):
        F.triplet_margin_loss(x, x, None)


def _cos_step(m, x, y):
    e = m(x)
    return F.cosine_embedding_loss(e, y, gd.ones(e.shape[0], dtype=e.dtype)) + \
        (1.0 - F.cosine_similarity(e, y)).mean()


def _triplet_step(m, x, y):
    return F.triplet_margin_loss(m(x), y, m(y[:, :4] * 2.0), swap=True) + \
        F.margin_ranking_loss(m(x)[:, 0], y[:, 0], gd.ones(x.shape[0], dtype=x.dtype), 0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lossfn", [_cos_step, _triplet_step])
def test_distance_losses_are_captured(lossfn, dtype):
    def model():
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 4)).to(dtype)

    _assert_compiled_step_equals_eager(model, lossfn, 4, dtype)


def _assert_compiled_step_equals_eager(model, lossfn, ydim, dtype):
    """An SGD step of model() with loss lossfn(m, x, y), compiled: no fallback warning, >= 4
    replays of 6 calls, the losses and the whole state_dict bitwise equal to eager."""
    def run(compiled):
        gd.manual_seed(0)
        m = model()
        opt = gd.optim.SGD(m.parameters(), lr=0.1)

        def step(x, y):
            opt.zero_grad()
            loss = lossfn(m, x, y)
            loss.backward()
            opt.step()
            return loss

        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(4)
        out = [f(gd.tensor(rng.standard_normal((5, 4)).astype(dtype)),
                 gd.tensor(rng.standard_normal((5, ydim)).astype(dtype))).item()
               for _ in range(6)]
        return m, out, f

    m1, l1, _ = run(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m2, l2, f = run(True)
    assert f.stats["eager"] == 0, f.stats
    assert f.stats["replayed"] >= 4, f.stats
    assert l1 == l2
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    for (n, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)


# ---- group norm, instance norm --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, groups", [((4, 6, 3, 5), 3), ((3, 4, 7), 2), ((5, 8), 2),
                                           ((2, 6, 2, 2, 3), 1)])
def test_group_norm_matches_torch(shape, groups, dtype):
    torch = _torch()
    rng = np.random.default_rng(12)
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    # (groups of two elements are avoided: their normalized values are +-1 whatever x, so the
    # gradient of x is rounding noise, 0 in exact arithmetic)
    f = 2.0
    _compare(lambda x_, w_, b_: F.group_norm(x_, groups, w_, b_, eps=1e-4),
             lambda x_, w_, b_: torch.nn.functional.group_norm(x_, groups, w_, b_, eps=1e-4),
             [x, w, b], dtype, 1.0, f)
    _compare(nn.GroupNorm(groups, C).to(dtype), torch.nn.GroupNorm(groups, C).to(
        torch.float32 if dtype == np.float32 else torch.float64), [x], dtype, 1.0, f)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine, track", [(False, False), (True, False), (True, True),
                                           (False, True)])
def test_instance_norm_matches_torch(affine, track, dtype):
    torch = _torch()
    rng = np.random.default_rng(13)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    gm = nn.InstanceNorm2d(3, momentum=0.3, affine=affine, track_running_stats=track).to(dtype)
    tm = torch.nn.InstanceNorm2d(3, momentum=0.3, affine=affine,
                                 track_running_stats=track).to(tdt)
    tol = TOL[dtype]
    for k in range(3):
        x = (rng.standard_normal((2, 3, 4, 5)) * (k + 1) + k).astype(dtype)
        _compare(gm, tm, [x], dtype, 1.0, 2.0)
        if track:
            for n in ("running_mean", "running_var"):
                np.testing.assert_allclose(getattr(gm, n).numpy(), getattr(tm, n).numpy(),
                                           rtol=tol * 2, atol=tol * 2)
    _compare(gm, tm, [rng.standard_normal((3, 4, 5)).astype(dtype)], dtype, 1.0, 2.0)  # unbatched
    gm.eval()
    tm.eval()
    _compare(gm, tm, [rng.standard_normal((2, 3, 4, 5)).astype(dtype)], dtype, 1.0, 2.0)
    assert list(gm.state_dict()) == list(tm.state_dict())
    assert repr(gm) == repr(tm)


def test_group_instance_norm_gradcheck_and_errors():
    rng = np.random.default_rng(14)
    x = gd.tensor(rng.standard_normal((2, 4, 3)), requires_grad=True)
    w = gd.tensor(rng.standard_normal(4), requires_grad=True)
    b = gd.tensor(rng.standard_normal(4), requires_grad=True)
    assert gd.autograd.gradcheck(lambda x_, w_, b_: F.group_norm(x_, 2, w_, b_), (x, w, b))
    assert gd.autograd.gradcheck(lambda x_, w_, b_: F.instance_norm(x_, weight=w_, bias=b_),
                                 (x, w, b))
    # one element per group: x - mean is 0, the output the bias, the gradient of x 0 (closed
    # form; PyTorch's float32 kernel gives its rounding noise times 1/sqrt(eps) there)
    x1 = gd.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    y1 = F.group_norm(x1, 4, w, b)
    np.testing.assert_array_equal(y1.detach().numpy(), np.tile(b.detach().numpy(), (5, 1)))
    y1.sum().backward()
    np.testing.assert_array_equal(x1.grad.numpy(), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="divisible"):
        F.group_norm(gd.ones(2, 4, 3), 3)
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="weight"):
        F.group_norm(gd.ones(2, 4, 3), 2, gd.ones(3))
    with pytest.raises(ValueError, match="spatial"):
        F.instance_norm(gd.ones(2, 4, 1))
    with pytest.raises(ValueError, match="4D"):
        nn.InstanceNorm2d(3)(gd.ones(3, 4))
    with pytest.raises(ValueError, match="3 channels"):
        nn.InstanceNorm2d(3)(gd.ones(2, 4, 2, 2))
    assert repr(nn.GroupNorm(2, 4, affine=False)) == \
        "GroupNorm(2, 4, eps=1e-05, affine=False, bias=False)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", ["group", "instance", "instance_tracked"])
def test_group_instance_norm_captured(layer, dtype):
    def model():
        norm = {"group": nn.GroupNorm(2, 4), "instance": nn.InstanceNorm1d(4, affine=True),
                "instance_tracked": nn.InstanceNorm1d(4, affine=True,
                                                      track_running_stats=True)}[layer]
        return nn.Sequential(nn.Linear(4, 12), nn.Unflatten(1, (4, 3)), norm, nn.Flatten(),
                             nn.Linear(12, 3)).to(dtype)

    _assert_compiled_step_equals_eager(model, lambda m, x, y: F.mse_loss(m(x), y), 3, dtype)


@pytest.mark.parametrize("name", ["elu", "celu", "hardswish", "mish", "softshrink",
                                  "hardtanh", "relu6", "logsigmoid", "glu", "cosine_similarity",
                                  "pairwise_distance"])
def test_second_derivatives_match_torch(name):
    torch = _torch()
    a = np.array([[-0.7, 0.3, 1.2, -2.5], [0.9, -0.1, 2.2, 0.6]])
    x = gd.tensor(a, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    if name in ("cosine_similarity", "pairwise_distance"):
        y = getattr(F, name)(x, x * x + 1.0).sum()
        ty = getattr(torch.nn.functional, name)(tx, tx * tx + 1.0).sum()
    else:
        kw = ACTS[name][1]
        y = getattr(F, name)(x, **kw).sum()
        ty = getattr(torch.nn.functional, name)(tx, **kw).sum()
    (g,) = gd.autograd.grad(y, x, create_graph=True)
    (gg,) = gd.autograd.grad((g * g).sum(), x)
    (tg,) = torch.autograd.grad(ty, tx, create_graph=True)
    (tgg,) = torch.autograd.grad((tg * tg).sum(), tx)
    np.testing.assert_allclose(gg.numpy(), tgg.numpy(), rtol=1e-12, atol=1e-12)


def test_hardsigmoid_second_derivative_is_zero():
    # (PyTorch does not implement this one; f is piecewise linear, so f'' = 0)
    x = gd.tensor([[-4.0, -1.0, 0.5, 2.0]], dtype=gd.float64, requires_grad=True)
    (g,) = gd.autograd.grad(F.hardsigmoid(x).sum(), x, create_graph=True)
    (gg,) = gd.autograd.grad((g * g).sum(), x)
    np.testing.assert_array_equal(gg.numpy(), np.zeros((1, 4)))


# ---- a PyTorch script that runs with its imports changed (test_ports.py's machinery) --------

PORT_SCRIPT = '''
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(21)
X = torch.tensor(rng.standard_normal((32, 2, 8, 8)), dtype=torch.float32)
labels = torch.tensor(rng.integers(0, 3, size=32))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 1, 1, 1))
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4, momentum=0.3)
        self.act = nn.Hardswish()
        self.gn = nn.GroupNorm(2, 4)
        self.prelu = nn.PReLU(4)
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        h = self.act(self.bn(self.conv(self.pad(x))))
        h = self.inorm(self.prelu(self.gn(h)))
        h = F.elu(self.fc1(h.flatten(1)), alpha=0.8)
        return self.fc2(F.mish(h) + F.relu6(h) + F.hardtanh(h, -0.5, 0.5))


model = Net()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.copy_(torch.tensor(rng.uniform(-0.4, 0.4, size=tuple(p.shape)), dtype=torch.float32))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
for step in range(20):
    opt.zero_grad()
    logits = model(X)
    emb = F.pad(logits, (0, 1), value=0.5)
    loss = F.cross_entropy(logits, labels) + 0.1 * F.triplet_margin_loss(
        emb[:8], emb[8:16], emb[16:24]) + 0.1 * (1 - F.cosine_similarity(emb[:8], emb[8:16])).mean()
    loss.backward()
    opt.step()
    if step % 5 == 4:
        print(f"step {step + 1}: loss {loss.item():.5f}")
print("bn running_mean", [round(v, 4) for v in model.bn.running_mean.tolist()])
print("prelu weight", [round(v, 4) for v in model.prelu.weight.tolist()])
print("state_dict", sorted(model.state_dict())[:6])
model.eval()
with torch.no_grad():
    acc = (model(X).argmax(dim=1) == labels).float().mean().item()
print(f"train accuracy {acc:.4f}")
print(model.act, model.prelu, model.pad, model.gn)
'''


def test_script_with_the_new_layers_ports():
    _torch()
    import test_ports as tp

    torch = _torch()
    torch.manual_seed(0)
    ref = tp._run(PORT_SCRIPT)
    got = tp._run(tp._port(PORT_SCRIPT))
    tp._compare(ref, got)
