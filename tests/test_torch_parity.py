"""Composite expressions against PyTorch in float64: forward values, gradients by .backward() on
a scalar, and (for some) second derivatives by autograd.grad with create_graph=True.

Each expression is written once as `fn(m, F, *xs)` with `m` the library (graddesc or torch) and
`F` its nn.functional, and must agree to rtol 1e-9: fan-out, broadcasting, integer-array
indexing with repeats, setitem, softmax/log_softmax/cross-entropy with logits (64, 200), batched
and 1-d matmul, max/min with ties, var/std, clamp at its bounds, where, pow with a tensor exponent,
linear+gelu+sigmoid chains and every loss with each reduction.
"""

from __future__ import annotations

import graddesc as gd
import numpy as np
import pytest

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-9, 1e-12
LIBS = {"gd": (gd, gd.nn.functional, gd.float64), "torch": (torch, torch.nn.functional,
                                                            torch.float64)}


def _np(t):
    return t.detach().numpy()


def _leaves(lib, arrays):
    m, _, f64 = LIBS[lib]
    return [m.tensor(np.array(a, dtype=np.float64), dtype=f64, requires_grad=True)
            for a in arrays]


def _outs(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _scalar(m, f64, y, seed):
    """y itself if 0-d, else sum(y * w) with fixed random weights (so no gradient is uniform)."""
    total = None
    for k, o in enumerate(_outs(y)):
        if o.dim() == 0:
            term = o
        else:
            w = np.random.default_rng(seed + k).standard_normal(tuple(o.shape))
            term = (o * m.tensor(w, dtype=f64)).sum()
        total = term if total is None else total + term
    return total


def _run(lib, fn, arrays, second):
    m, F, f64 = LIBS[lib]
    xs = _leaves(lib, arrays)
    y = fn(m, F, *xs)
    values = [_np(o) for o in _outs(y)]
    loss = _scalar(m, f64, y, seed=1)
    h = None
    if second:
        gs = m.autograd.grad(loss, xs, create_graph=True, allow_unused=True)
        vs = [np.random.default_rng(100 + k).standard_normal(x.shape) for k, x in enumerate(xs)]
        s = None
        for g, v in zip(gs, vs):
            if g is not None and g.requires_grad:
                t = (g * m.tensor(v, dtype=f64)).sum()
                s = t if s is None else s + t
        hs = m.autograd.grad(s, xs, allow_unused=True) if s is not None else [None] * len(xs)
        h = [np.zeros(x.shape) if r is None else _np(r) for r, x in zip(hs, xs)]
        first = [np.zeros(x.shape) if g is None else _np(g) for g, x in zip(gs, xs)]
    else:
        loss.backward()
        first = [np.zeros(x.shape) if x.grad is None else _np(x.grad) for x in xs]
    return values, first, h


def _compare(fn, arrays, second=False):
    got, ref = _run("gd", fn, arrays, second), _run("torch", fn, arrays, second)
    for what, a, b in zip(("forward", "gradient", "second derivative"), got, ref):
        if b is None:
            continue
        assert len(a) == len(b)
        for k, (u, v) in enumerate(zip(a, b)):
            assert np.shape(u) == np.shape(v), f"{what} {k}: shape {np.shape(u)} != {np.shape(v)}"
            np.testing.assert_allclose(u, v, rtol=RTOL, atol=ATOL, err_msg=f"{what} {k}")


def _r(shape, seed, lo=None, hi=None):
    g = np.random.default_rng(seed)
    return g.standard_normal(shape) if lo is None else g.uniform(lo, hi, shape)


# ---- expressions: name -> (fn(m, F, *xs), input arrays, also check second derivatives) ---------
def fan_out(m, F, x):
    z = x * 2.0 + 1.0
    return (z * z + z.exp() + z.tanh() * z.sigmoid() - z / (z.abs() + 1.0)).sum()


def broadcasting(m, F, a, b, c):
    return (a * b + c) / (b * b + 1.0) - (a - c) ** 2 + 2.0 - a + 3.0 / (1.5 + b.tanh())


def indexing(m, F, x, w):
    i = m.tensor([0, 2, 0, 4, 4])
    picked = x[[0, 1, 1], [2, 2, 0]]
    return (x[i] * w).sum(1) + x[:, [1, 1, 0]].sum() + picked[0] * picked[1] * picked[2] \
        + x[x > 0.5].sum() + x[1:4:2, -1].exp().sum()


def setitem(m, F, x, v):
    y = x * 1.0
    y[1] = v * 2.0
    y[m.tensor([0, 3])] = y[m.tensor([3, 0])] * 0.5
    y[:, 1:3] = y[:, 1:3].tanh()
    y[y > 1.0] = 1.0
    return (y * y).sum(0)


def softmax_ce(m, F, z):
    t = m.tensor(np.random.default_rng(5).integers(0, 200, 64))
    return (F.cross_entropy(z, t) + 0.1 * F.log_softmax(z, 1).mean()
            + (F.softmax(z, 0) ** 2).sum() + z.softmax(-1)[:, :3].sum())


def ce_options(m, F, z):
    t = np.random.default_rng(6).integers(0, 200, 64)
    t[::7] = -100
    t = m.tensor(t)
    w = m.tensor(np.random.default_rng(7).uniform(0.5, 2.0, 200), dtype=z.dtype)
    return (F.cross_entropy(z, t, weight=w, label_smoothing=0.1)
            + F.cross_entropy(z, t, reduction="sum") / 64.0
            + F.cross_entropy(z, t, reduction="none", label_smoothing=0.3)[:5].sum())


def ce_probs_spatial(m, F, z, zs):
    p = np.random.default_rng(8).random((64, 200))
    p = m.tensor(p / p.sum(1, keepdims=True), dtype=z.dtype)
    ts = m.tensor(np.random.default_rng(9).integers(0, 3, (2, 4, 5)))
    return (F.cross_entropy(z, p, label_smoothing=0.05)
            + F.cross_entropy(zs, ts, weight=m.tensor([0.3, 1.0, 2.0], dtype=z.dtype)))


def matmuls(m, F, A, B, C, v):
    return ((A @ B).tanh().sum() + (v @ B).sum() + (A @ v).sum() + (A @ C).sum() + v @ v
            + m.matmul(A[0], C[1]).sum() + (A.transpose(-1, -2)[:, ::2] ** 2).sum())


def max_min_ties(m, F, x, a, b):
    return (x.max() + x.min() * 2.0 + x.max(dim=1).values.sum() + x.min(0)[0].sum()
            + x.amax(dim=0).sum() + x.amin(dim=(0, 1)) + m.maximum(a, b).sum()
            + m.minimum(a, b).sum())


def var_std(m, F, x):
    return (x.var() + x.std(dim=1).sum() + x.var(dim=(0, 2), keepdim=True).sum()
            + x.std(0, unbiased=False).sum() + x.var(dim=1, correction=0).sum())


def clamp_bounds(m, F, x, lo, hi):
    return (x.clamp(-0.5, 0.5) * 3.0 + m.clamp(x, min=0.0) + x.clamp(max=0.25)
            + x.clamp(min=lo, max=hi) + x.relu() + x.abs())


def where_expr(m, F, x, y):
    return m.where(x > 0, x * 2.0, y.exp()) + m.where(y < 0.3, 1.0, x)


def pow_expr(m, F, a, b):
    return a ** b + 2.0 ** b + a ** 2.5 + a.pow(3) + m.pow(a, b.tanh())


def linear_chain(m, F, x, W1, b1, W2, b2):
    h = F.gelu(F.linear(x, W1, b1))
    h2 = F.gelu(F.linear(x, W1), approximate="tanh")
    return F.linear(h + h2, W2, b2).sigmoid() + F.softplus(F.linear(h, W2)) \
        + F.leaky_relu(F.linear(x[0], W1, b1), 0.1).sum()


def reductions(m, F, x):
    return (x.sum((0, 2)) + x.mean(dim=-1, keepdim=True).sum(-1).sum(0)
            + m.logsumexp(x, 2).sum(0) + x.logsumexp((0, 2)))


def shape_ops(m, F, x, y):
    a = m.cat([x, y.t()], dim=0)
    b = m.stack([x, x * 2.0], dim=1)
    p, q = a.split([2, 3], dim=0)
    return (p.sum(0) + q.permute(1, 0)[None].expand(2, 4, 3).reshape(2, 12)[1].sum()
            + b.flatten(1).sum(1).unsqueeze(0).squeeze(0)[0] + a.chunk(2, 1)[1].mean())


def kinks(m, F, x):
    # subgradient conventions where the functions have kinks: x holds 0, 0.7 (the hinge
    # margin) and values equal to the l1 target
    y = m.tensor([[0.0, -1.0, 0.5, 2.0], [0.5, 0.3, -0.3, 0.0]], dtype=x.dtype)
    neg = m.tensor(-np.ones((2, 4)), dtype=x.dtype)
    return (x.relu() + F.leaky_relu(x, 0.2) + x.abs() + x.sign() * x + F.relu(x - 0.7)
            + F.l1_loss(x, y, reduction="none")
            + F.hinge_embedding_loss(x, neg, margin=0.7, reduction="none"))


P = np.random.default_rng(11).uniform(0.05, 0.95, (4, 3))
Y01 = np.random.default_rng(12).uniform(0.0, 1.0, (4, 3))
TIES = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 3.0, -1.0, -1.0], [0.0, -1.0, 3.0, 2.0]])
BOUNDS = np.array([[-0.5, 0.5, 0.25, 0.0], [-1.0, 1.0, 0.1, -0.2], [0.3, -0.7, 0.5, -0.5]])
EXPRESSIONS = {
    "fan_out": (fan_out, [_r((3, 4), 0)], True),
    "broadcasting": (broadcasting, [_r((3, 1, 4), 1), _r((5, 4), 2), _r((), 3)], True),
    "indexing_repeats": (indexing, [_r((5, 3), 4), _r((5, 3), 5)], True),
    "setitem": (setitem, [_r((4, 3), 6), _r((3,), 7)], False),
    "softmax_ce_64x200": (softmax_ce, [3.0 * _r((64, 200), 8)], True),
    "ce_weight_ignore_smoothing": (ce_options, [3.0 * _r((64, 200), 9)], False),
    "ce_probs_and_spatial": (ce_probs_spatial, [_r((64, 200), 10), _r((2, 3, 4, 5), 11)],
                             False),
    "matmul_batched_1d": (matmuls, [_r((2, 3, 4), 12), _r((4, 5), 13), _r((2, 4, 5), 14),
                                    _r((4,), 15)], True),
    "max_min_ties": (max_min_ties, [TIES, np.array([1.0, 2.0, 3.0]),
                                    np.array([1.0, 0.0, 3.0])], False),
    "var_std": (var_std, [_r((3, 4, 2), 16)], True),
    "clamp_at_bounds": (clamp_bounds, [BOUNDS, np.full(4, -0.4), np.full((3, 1), 0.45)], False),
    "where": (where_expr, [_r((3, 1), 17), _r((4,), 18)], True),
    "pow_tensor_exponent": (pow_expr, [_r((3, 4), 19, 0.2, 2.0), _r((4,), 20)], True),
    "pow_zero_base": (pow_expr, [np.array([0.0, 0.5, 1.5]), np.array([2.0, 3.0, 1.5])], False),
    "linear_gelu_sigmoid": (linear_chain, [_r((5, 4), 21), _r((6, 4), 22), _r((6,), 23),
                                           _r((2, 6), 24), _r((2,), 25)], True),
    "reductions": (reductions, [_r((2, 3, 4), 26)], True),
    "kinks": (kinks, [np.array([[0.0, -1.0, 0.7, 2.0], [0.5, 0.0, -0.3, 0.7]])], False),
    "shape_ops": (shape_ops, [_r((2, 4), 27), _r((4, 3), 28)], True),
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_expression_matches_torch(name):
    fn, arrays, _ = EXPRESSIONS[name]
    _compare(fn, arrays)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPRESSIONS.items() if e[2]))
def test_expression_second_derivative_matches_torch(name):
    fn, arrays, _ = EXPRESSIONS[name]
    _compare(fn, arrays, second=True)


# ---- every loss with each reduction ---------------------------------------------------------
def _nll(m, F, z, reduction):
    t = np.array([0, 2, 1, -100])
    return F.nll_loss(F.log_softmax(z, 1), m.tensor(t), reduction=reduction,
                      weight=m.tensor([0.5, 2.0, 1.5], dtype=z.dtype))


LOSSES = {
    "mse": (lambda m, F, x, y, r: F.mse_loss(x, y, reduction=r), [_r((4, 3), 30), Y01]),
    "l1": (lambda m, F, x, y, r: F.l1_loss(x, y, reduction=r), [_r((4, 3), 31), Y01]),
    "bce": (lambda m, F, x, y, r: F.binary_cross_entropy(
        x, y, reduction=r, weight=m.tensor([1.0, 0.5, 2.0], dtype=x.dtype)), [P, Y01]),
    "bce_with_logits": (lambda m, F, x, y, r: F.binary_cross_entropy_with_logits(
        x, y, reduction=r, weight=m.tensor([1.0, 0.5, 2.0], dtype=x.dtype),
        pos_weight=m.tensor([3.0, 1.0, 0.25], dtype=x.dtype)), [3.0 * _r((4, 3), 32), Y01]),
    "nll": (lambda m, F, z, r: _nll(m, F, z, r), [_r((4, 3), 33)]),
    "cross_entropy": (lambda m, F, z, r: F.cross_entropy(
        z, m.tensor([0, 2, -100, 1]), reduction=r, label_smoothing=0.2,
        weight=m.tensor([0.5, 2.0, 1.5], dtype=z.dtype)), [_r((4, 3), 34)]),
    "cross_entropy_1d": (lambda m, F, z, r: F.cross_entropy(z, m.tensor(3), reduction=r),
                         [_r((5,), 35)]),
    "hinge": (lambda m, F, x, r: F.hinge_embedding_loss(
        x, m.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]], dtype=x.dtype), margin=0.7,
        reduction=r), [np.array([[0.3, 0.2, 1.5], [-0.4, 2.0, 0.69]])]),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_matches_torch(name, reduction):
    fn, arrays = LOSSES[name]
    _compare(lambda m, F, *xs: fn(m, F, *xs, reduction), arrays, second=name != "l1")


# ---- stability ----------------------------------------------------------------------------------
def test_cross_entropy_with_huge_logits_matches_torch():
    z = 1e4 * _r((64, 200), 40)
    _compare(lambda m, F, x: F.cross_entropy(x, m.tensor(np.arange(64) * 3)), [z], second=True)


def test_bce_with_logits_extreme_matches_torch():
    x = np.array([-1e4, -60.0, -5.0, 0.0, 5.0, 60.0, 1e4])
    y = np.array([1.0, 0.0, 0.3, 1.0, 0.0, 1.0, 0.0])
    _compare(lambda m, F, a: F.binary_cross_entropy_with_logits(a, m.tensor(y, dtype=a.dtype)),
             [x], second=True)
