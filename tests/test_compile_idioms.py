"""Everyday lines of a user's training step, each captured by gd.compile (no fallback warning)
and bitwise equal to the eager step over calls whose data change (scaled so that maxima, norms
and masks move): F.normalize, gd.norm of several orders, logsumexp, nn.ReLU(inplace=True)."""

import warnings

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F
from _compile_twins import assert_compiled_equals_eager, sgd_like_step

LOSSES = {
    "normalize": lambda o, y: F.mse_loss(F.normalize(o, dim=1), y),
    "normalize_p1": lambda o, y: F.mse_loss(F.normalize(o, p=1.0, dim=0), y),
    "norm_orders": lambda o, y: (gd.norm(o, 2, dim=1).mean() + gd.norm(o, 3.0, dim=0).sum() +
                                 gd.norm(o - y, 1.0)),
    "logsumexp": lambda o, y: (gd.logsumexp(o, 1) - (o * y).sum(1)).mean(),
    "logsumexp_all": lambda o, y: gd.logsumexp(o * 3.0, (0, 1)) + F.mse_loss(o, y),
}


def _run(loss_name, dtype, compiled, inplace_relu=False):
    gd.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=inplace_relu), nn.Linear(16, 4))
    m = m.to(dtype)
    opt = gd.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    lf = LOSSES[loss_name]

    step = sgd_like_step(opt, lambda x, y: lf(m(x), y))

    f = gd.compile(step) if compiled else step
    rng = np.random.default_rng(5)
    npdt = np.float32 if dtype == gd.float32 else np.float64
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(6):
            scale = (1.0, 30.0, 0.01)[k % 3]
            x = gd.tensor((scale * rng.standard_normal((8, 6))).astype(npdt))
            y = gd.tensor(rng.standard_normal((8, 4)).astype(npdt))
            losses.append(f(x, y).item())
    return losses, [p.detach().numpy().copy() for p in m.parameters()], f


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_idiom_is_captured_and_equals_eager(loss_name, dtype):
    l1, p1, _ = _run(loss_name, dtype, False)
    l2, p2, f = _run(loss_name, dtype, True)
    assert f.stats["eager"] == 0 and f.stats["replayed"] >= 4, f.stats
    assert l1 == l2
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_inplace_relu_module_is_captured_and_equals_eager(dtype):
    l1, p1, _ = _run("normalize", dtype, False, inplace_relu=True)
    l2, p2, f = _run("normalize", dtype, True, inplace_relu=True)
    l3, _, _ = _run("normalize", dtype, False, inplace_relu=False)
    assert f.stats["eager"] == 0
    assert l1 == l2 == l3  # in place or not: the same values
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, float("inf"), float("-inf"), 0.0])
@pytest.mark.parametrize("dims", [None, 0, 1, (0, 1)])
def test_norm_kernel_matches_numpy(p, dims):
    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 7))
    a[0, 0] = 0.0
    got = gd.norm(gd.tensor(a), p, dim=dims).numpy()
    b = np.abs(a)
    if p == float("inf"):
        want = b.max(axis=dims)
    elif p == float("-inf"):
        want = b.min(axis=dims)
    elif p == 0:
        want = (b != 0).sum(axis=dims).astype(a.dtype)
    else:
        want = (b ** p).sum(axis=dims) ** (1 / p)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


# ---- a survey of what users write in a step: each captured (or, where it must, falling back)
# and equal to the eager step bitwise, over calls whose data change ---------------------------
IDIOMS = {
    "l2_penalty": lambda m, o, y, yf, yb: F.cross_entropy(o, y) + 1e-4 * sum(
        (p ** 2).sum() for p in m.parameters()),
    "normalize": lambda m, o, y, yf, yb: F.mse_loss(F.normalize(o, dim=1), yf),
    "bce_logits": lambda m, o, y, yf, yb: F.binary_cross_entropy_with_logits(o, yb),
    "bce": lambda m, o, y, yf, yb: F.binary_cross_entropy(o.sigmoid(), yb),
    "ce_label_smoothing": lambda m, o, y, yf, yb: F.cross_entropy(o, y, label_smoothing=0.1),
    "ce_weighted": lambda m, o, y, yf, yb: _weighted_ce(o.dtype)(o, y),
    "nll_log_softmax": lambda m, o, y, yf, yb: F.nll_loss(F.log_softmax(o, 1), y),
    "l1_smooth_huber": lambda m, o, y, yf, yb: (F.l1_loss(o, yf) + F.smooth_l1_loss(o, yf) +
                                                F.huber_loss(o, yf)),
    "kl_div": lambda m, o, y, yf, yb: F.kl_div(F.log_softmax(o, 1), yf.softmax(1),
                                               reduction="batchmean"),
    "std_var": lambda m, o, y, yf, yb: o.std(0).mean() + o.var(1).sum(),
    "cat_view": lambda m, o, y, yf, yb: gd.cat([o, o * 2], 1).view(-1).pow(2).mean(),
    "gelu_silu_elu": lambda m, o, y, yf, yb: (F.gelu(o) + F.silu(o) + F.elu(o)).mean(),
    "max_values": lambda m, o, y, yf, yb: o.max(1).values.mean(),
    "masked_fill": lambda m, o, y, yf, yb: o.masked_fill(yb > 0, 0.0).pow(2).mean(),
    "einsum": lambda m, o, y, yf, yb: gd.einsum("ij,ij->", o, yf) ** 2,
    "cosine_cdist": lambda m, o, y, yf, yb: (F.cosine_similarity(o, yf).mean() +
                                             gd.cdist(o, yf).mean()),
    "one_hot": lambda m, o, y, yf, yb: ((o.softmax(1) - F.one_hot(y, 4).to(o.dtype)) ** 2)
    .mean(),
    "accuracy": lambda m, o, y, yf, yb: F.cross_entropy(o, y) + 0 * (
        o.argmax(1) == y).to(o.dtype).mean(),
    "topk": lambda m, o, y, yf, yb: o.topk(2, 1).values.mean(),
    "cumsum": lambda m, o, y, yf, yb: o.cumsum(1).mean(),
    "sort_cumprod": lambda m, o, y, yf, yb: (o.sort(0, descending=True).values[0].sum() +
                                             o.tanh().cumprod(1).mean()),
    # a parameter used transposed: its gradient arrives through a transposed view
    "weight_transposed": lambda m, o, y, yf, yb: (
        (yf @ m[2].weight).tanh() @ m[2].weight.T - o).pow(2).mean(),
    # max()/amax()/amin(): ties and NaN handled in the backward by kernels
    "max_amax": lambda m, o, y, yf, yb: (o.abs().max() + o.amax(1).mean() + o.amin(0).sum() +
                                         o.min()),
    # a flat function's zero gradient
    "sign": lambda m, o, y, yf, yb: (gd.sign(o) * o).mean() + F.mse_loss(o, yf),
    "isfinite_isnan": lambda m, o, y, yf, yb: gd.where(
        gd.isfinite(o) & ~gd.isnan(o), o, 0.0).pow(2).mean(),
    "setitem": lambda m, o, y, yf, yb: _setitem(o, yf),
    "tril_triu": lambda m, o, y, yf, yb: (gd.tril(o.T @ o).sum() + gd.triu(o, 1).pow(2).mean() +
                                          o.tril(-1).abs().sum()),
    # integer labels reordered inside the step, indices written in the step's code
    "label_index": lambda m, o, y, yf, yb: F.cross_entropy(o, y[gd.arange(7, -1, -1)]),
    "label_index_select": lambda m, o, y, yf, yb: F.cross_entropy(
        o[:4], y.index_select(0, gd.tensor([1, 3, 5, 7]))),
    "literal_index": lambda m, o, y, yf, yb: (o[gd.tensor([1, 3, 3])].sum() +
                                              o[:, gd.tensor([0, 0, 2])].pow(2).mean() +
                                              o.index_select(0, gd.tensor([0, 2, 4])).mean()),
}
_CE = {}


def _setitem(o, yf):
    """Item assignment on a tensor that requires grad (basic indexing): a number, a constant
    tensor and a tensor that requires grad written into a clone."""
    h = o.clone()
    h[:, 0] = 0.5
    h[1:3] = yf[1:3] * 2.0
    h[..., 3] = o[:, 1] * o[:, 2]
    return h.pow(2).mean()


def _weighted_ce(dtype):
    """A class-weighted loss module made once, outside the step (its weight a buffer)."""
    if dtype not in _CE:
        _CE[dtype] = nn.CrossEntropyLoss(weight=gd.tensor([1.0, 2.0, 0.5, 1.5], dtype=dtype),
                                         ignore_index=3)
    return _CE[dtype]
# this computes through NumPy (a data-dependent shape): one warning, eager's bits
FALLS_BACK = {
    "bool_mask_index": lambda m, o, y, yf, yb: o[yb > 0].pow(2).mean(),
}


def _idiom_run(fn, compiled, dtype):
    gd.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
    opt = gd.optim.SGD(m.parameters(), lr=0.1)

    step = sgd_like_step(opt, lambda x, y, yf, yb: fn(m, m(x), y, yf, yb))

    f = gd.compile(step) if compiled else step
    rng = np.random.default_rng(8)
    npdt = np.float32 if dtype == gd.float32 else np.float64
    losses = []
    for k in range(5):
        scale = (1.0, 20.0)[k % 2]
        x = gd.tensor((scale * rng.standard_normal((8, 6))).astype(npdt))
        y = gd.tensor(rng.integers(0, 4, 8))
        yf = gd.tensor(rng.standard_normal((8, 4)).astype(npdt))
        yb = gd.tensor((rng.random((8, 4)) < 0.4).astype(npdt))
        losses.append(f(x, y, yf, yb).item())
    return losses, [p.detach().numpy().copy() for p in m.parameters()], f


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("name", list(IDIOMS))
def test_step_idiom_is_captured(name, dtype):
    l1, p1, _ = _idiom_run(IDIOMS[name], False, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        l2, p2, f = _idiom_run(IDIOMS[name], True, dtype)
    assert f.stats["eager"] == 0 and f.stats["replayed"] >= 3, f.stats
    np.testing.assert_array_equal(l1, l2)  # (NaN-safe: an all-ignored mean is NaN in both)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(FALLS_BACK))
def test_step_idiom_through_numpy_falls_back_and_stays_right(name):
    l1, p1, _ = _idiom_run(FALLS_BACK[name], False, gd.float32)
    with pytest.warns(RuntimeWarning, match="graddesc.compile"):
        l2, p2, f = _idiom_run(FALLS_BACK[name], True, gd.float32)
    assert f.stats["replayed"] == 0
    assert l1 == l2
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


def test_one_hot_out_of_range_raises_on_a_replay_too():
    gd.manual_seed(0)
    lin = nn.Linear(3, 4)
    opt = gd.optim.SGD(lin.parameters(), lr=0.1)

    step = sgd_like_step(opt, lambda x, y: ((lin(x).softmax(1) -
                                            F.one_hot(y, 4).float()) ** 2).mean())

    f = gd.compile(step)
    x = gd.ones(2, 3)
    for _ in range(3):
        f(x, gd.tensor([0, 3]))
    assert f.stats["replayed"] >= 1
    w = lin.weight.detach().numpy().copy()
    for bad in ([0, 4], [-1, 2]):
        with pytest.raises((IndexError, RuntimeError)):
            f(x, gd.tensor(bad))
        with pytest.raises(RuntimeError, match="one_hot"):
            step(x, gd.tensor(bad))
    np.testing.assert_array_equal(lin.weight.detach().numpy(), w)  # nothing was updated


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("form", ["T", "t", "transpose", "mT"])
def test_parameter_used_only_transposed_is_captured(form, dtype):
    """x @ W.T with W a bare parameter: W's first (and only) gradient arrives as a transposed
    view, which .grad must hold as a C-ordered copy made by a kernel the recording sees."""
    def run(compiled):
        gd.manual_seed(0)
        W = nn.Parameter(gd.randn(5, 3, dtype=dtype) * 0.5)
        opt = gd.optim.SGD([W], lr=0.05, momentum=0.9)
        wt = {"T": lambda: W.T, "t": lambda: W.t(), "transpose": lambda: W.transpose(0, 1),
              "mT": lambda: W.mT}[form]

        step = sgd_like_step(opt, lambda x, y: F.mse_loss(x @ wt(), y))

        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(3)
        npdt = np.float32 if dtype == gd.float32 else np.float64
        losses = [f(gd.tensor((s * rng.standard_normal((7, 3))).astype(npdt)),
                    gd.tensor(rng.standard_normal((7, 5)).astype(npdt))).item()
                  for s in (1.0, 5.0, 0.1, 2.0)]
        assert W.grad.numpy().flags.c_contiguous
        return losses, [W.detach().numpy().copy(), W.grad.numpy().copy()], f

    assert_compiled_equals_eager(run)


def test_int64_index_kernels_move_every_bit_pattern() -> None:
    """Integer tensors indexed by the float64 index kernels (their items moved as 8 bytes):
    patterns that are NaNs, signalling NaNs, infinities and subnormals as doubles survive."""
    special = np.array([0, 1, -1, 2 ** 63 - 1, -2 ** 63, 0x7FF0000000000001, 0x7FF8000000000000,
                        0x7FF0000000000000, 0x000FFFFFFFFFFFFF, -0x0010000000000000, 12345],
                       dtype=np.int64)
    y = gd.tensor(special)
    perm = np.random.default_rng(4).permutation(special.size)
    np.testing.assert_array_equal(y[gd.tensor(perm)].numpy(), special[perm])
    np.testing.assert_array_equal(y.index_select(0, gd.tensor(perm)).numpy(), special[perm])
    m = special.reshape(1, -1).repeat(3, 0)
    idx = np.array([2, 0, 0, 1])
    np.testing.assert_array_equal(gd.tensor(m)[gd.tensor(idx)].numpy(), m[idx])
    np.testing.assert_array_equal(gd.tensor(m)[:, gd.tensor(perm[:5])].numpy(), m[:, perm[:5]])
    with pytest.raises(IndexError):
        y[gd.tensor([0, special.size])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tril_triu_are_numpys_bit_for_bit(dtype):
    """tril/triu of floats by the where kernel and a constant triangle: NumPy's values (NaN and
    Inf kept inside the triangle, +0.0 outside), every diagonal, batched and empty shapes."""
    rng = np.random.default_rng(9)
    for shape in [(4, 4), (3, 5), (5, 3), (2, 3, 4, 4), (0, 3), (3, 0), (1, 1)]:
        a = rng.standard_normal(shape).astype(dtype)
        a.flat[::3] = np.nan
        a.flat[1::7] = -np.inf
        for k in (-6, -2, -1, 0, 1, 3, 6):
            for name in ("tril", "triu"):
                got = getattr(gd, name)(gd.tensor(a), k).numpy()
                want = np.ascontiguousarray(getattr(np, name)(a, k))
                assert got.shape == want.shape and got.dtype == want.dtype
                assert got.tobytes() == want.tobytes(), (shape, k, name)
