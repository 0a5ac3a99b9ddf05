"""Convolution and pooling: against a NumPy direct-loop oracle, PyTorch when installed, finite
differences (gradcheck), across ISAs and thread counts; and the errors bad arguments raise."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn.functional as F
from graddesc import _core, nn
from graddesc.autograd.gradcheck import gradcheck, gradgradcheck

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


# ---------------------------------------------------------------------------- oracles


def np_conv2d(x, w, b, stride, pad, dil, groups, pad_after=None):
    """Direct loops over every output element (float64 accumulation)."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    pa = pad if pad_after is None else pad_after
    xp = np.zeros((n, c, h + pad[0] + pa[0], wd + pad[1] + pa[1]))
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + wd] = x
    oh = (xp.shape[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, oc, oh, ow))
    ocg = oc // groups
    for o in range(oc):
        g = o // ocg
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride[0]:i * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                           j * stride[1]:j * stride[1] + dil[1] * (kw - 1) + 1:dil[1]]
                y[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3)) + (0 if b is None else b[o])
    return y


def np_pool(x, k, s, p, d, ceil_mode, kind, count_include_pad=True, divisor=None):
    n, c, h, w = x.shape

    def out_len(size, kk, ss, pp, dd):
        num = size + 2 * pp - dd * (kk - 1) - 1 + (ss - 1 if ceil_mode else 0)
        o = num // ss + 1
        if ceil_mode and (o - 1) * ss >= size + pp:
            o -= 1
        return o

    oh, ow = out_len(h, k[0], s[0], p[0], d[0]), out_len(w, k[1], s[1], p[1], d[1])
    y = np.zeros((n, c, oh, ow))
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            rows = [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
            cols = [j * s[1] - p[1] + b * d[1] for b in range(k[1])]
            vr = [r for r in rows if 0 <= r < h]
            vc = [q for q in cols if 0 <= q < w]
            win = x[:, :, vr][:, :, :, vc].reshape(n, c, -1)
            if kind == "max":
                am = win.argmax(-1)
                y[:, :, i, j] = win.max(-1)
                idx[:, :, i, j] = np.array(vr)[am // len(vc)] * w + np.array(vc)[am % len(vc)]
            else:
                if divisor is not None:
                    div = divisor
                elif count_include_pad:
                    h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
                    div = (min(h0 + k[0], h + p[0]) - h0) * (min(w0 + k[1], w + p[1]) - w0)
                else:
                    div = len(vr) * len(vc)
                y[:, :, i, j] = win.sum(-1) / div
    return y, idx


def _t(a, requires_grad=False):
    return gd.tensor(a, requires_grad=requires_grad)


# ---------------------------------------------------------------------------- conv2d forward

CONV_CASES = [
    # (N, C, H, W, OC, KH, KW, stride, padding, dilation, groups)
    (2, 3, 7, 9, 4, 3, 3, (1, 1), (0, 0), (1, 1), 1),
    (1, 1, 5, 5, 1, 5, 5, (1, 1), (0, 0), (1, 1), 1),      # kernel as large as the input
    (3, 4, 8, 6, 6, 3, 2, (2, 1), (1, 2), (1, 1), 2),
    (2, 6, 9, 11, 6, 3, 3, (2, 3), (2, 1), (2, 1), 3),
    (1, 4, 6, 7, 8, 1, 1, (1, 1), (0, 0), (1, 1), 1),      # pointwise
    (2, 4, 6, 7, 4, 1, 1, (2, 2), (1, 0), (1, 1), 4),      # depthwise 1x1, strided, padded
    (5, 2, 13, 4, 3, 4, 3, (3, 2), (3, 1), (1, 2), 1),
    (1, 3, 1, 17, 2, 1, 5, (1, 2), (0, 2), (1, 3), 1),     # a 1-d shape
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_matches_direct_loops(case, bias, rng, isa):
    n, c, h, w, oc, kh, kw, s, p, d, g = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((oc, c // g, kh, kw))
    b = rng.standard_normal(oc) if bias else None
    want = np_conv2d(x, wt, b, s, p, d, g)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        y = F.conv2d(_t(x.astype(dtype)), _t(wt.astype(dtype)),
                     None if b is None else _t(b.astype(dtype)), s, p, d, g)
        assert y.dtype == (gd.float64 if dtype == np.float64 else gd.float32)
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(y.detach().numpy(), want, rtol=0, atol=tol * scale * c * kh * kw)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradients_match_direct_loop_adjoint(case, rng):
    """dx, dw, db against the same loops differentiated by hand: y = sum over taps, so dx and
    dw are the loops with the roles swapped; checked through <dy, y(x, w)> being bilinear."""
    n, c, h, w, oc, kh, kw, s, p, d, g = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((oc, c // g, kh, kw))
    b = rng.standard_normal(oc)
    xt, wtt, bt = _t(x, True), _t(wt, True), _t(b, True)
    y = F.conv2d(xt, wtt, bt, s, p, d, g)
    dy = rng.standard_normal(tuple(y.shape))
    y.backward(_t(dy))
    # the forward is linear in x (and in w): d<dy, y>/dx[i] = <dy, y(e_i, w) - b>
    for which, arr, grad in (("x", x, xt.grad.numpy()), ("w", wt, wtt.grad.numpy())):
        flat = arr.reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            e = np.zeros_like(flat)
            e[i] = 1.0
            e = e.reshape(arr.shape)
            yy = np_conv2d(e, wt, None, s, p, d, g) if which == "x" else \
                np_conv2d(x, e, None, s, p, d, g)
            np.testing.assert_allclose(grad.reshape(-1)[i], (dy * yy).sum(), rtol=1e-10,
                                       atol=1e-10)
    np.testing.assert_allclose(bt.grad.numpy(), dy.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("case", [CONV_CASES[2], CONV_CASES[3], CONV_CASES[5]])
def test_conv2d_gradcheck_float64(case, rng):
    n, c, h, w, oc, kh, kw, s, p, d, g = case
    x = _t(rng.standard_normal((min(n, 2), c, h, w)), True)
    wt = _t(rng.standard_normal((oc, c // g, kh, kw)), True)
    b = _t(rng.standard_normal(oc), True)
    assert gradcheck(lambda a, bb, cc: F.conv2d(a, bb, cc, s, p, d, g), (x, wt, b))


def test_conv2d_second_derivatives(rng):
    x = _t(rng.standard_normal((2, 2, 5, 4)), True)
    wt = _t(rng.standard_normal((4, 1, 2, 3)), True)
    assert gradgradcheck(lambda a, bb: F.conv2d(a, bb, None, (2, 1), (1, 1), (1, 1), 2),
                         (x, wt))


@pytest.mark.parametrize("kind", ["same", "valid"])
def test_conv2d_string_padding(kind, rng):
    x = rng.standard_normal((2, 3, 6, 7))
    wt = rng.standard_normal((2, 3, 4, 3))
    y = F.conv2d(_t(x), _t(wt), padding=kind, dilation=(1, 2))
    if kind == "valid":
        want = np_conv2d(x, wt, None, (1, 1), (0, 0), (1, 2), 1)
    else:  # total padding dilation * (k - 1), the odd one after (PyTorch's rule)
        want = np_conv2d(x, wt, None, (1, 1), (1, 2), (1, 2), 1, pad_after=(2, 2))
        assert tuple(y.shape) == (2, 2, 6, 7)
    np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-12)
    xt, wtt = _t(x, True), _t(wt, True)
    assert gradcheck(lambda a, bb: F.conv2d(a, bb, padding=kind, dilation=(1, 2)), (xt, wtt))


def test_conv1d_matches_direct_loops_and_gradcheck(rng):
    x = rng.standard_normal((3, 4, 11))
    wt = rng.standard_normal((6, 2, 3))
    b = rng.standard_normal(6)
    y = F.conv1d(_t(x), _t(wt), _t(b), stride=2, padding=2, dilation=2, groups=2)
    want = np_conv2d(x[:, :, None], wt[:, :, None], b, (1, 2), (0, 2), (1, 2), 2)[:, :, 0]
    np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-12)
    xt, wtt, bt = _t(x, True), _t(wt, True), _t(b, True)
    assert gradcheck(lambda a, bb, cc: F.conv1d(a, bb, cc, 2, 2, 2, 2), (xt, wtt, bt))
    # unbatched (C, L)
    y1 = F.conv1d(_t(x[0]), _t(wt), _t(b), stride=2, padding=2, dilation=2, groups=2)
    np.testing.assert_allclose(y1.detach().numpy(), want[0], atol=1e-12)


def test_conv2d_unbatched_input(rng):
    x = rng.standard_normal((3, 5, 5))
    wt = rng.standard_normal((2, 3, 3, 3))
    y = F.conv2d(_t(x), _t(wt), padding=1)
    want = np_conv2d(x[None], wt, None, (1, 1), (1, 1), (1, 1), 1)[0]
    np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-12)


def test_naive_kernel_agrees_with_fast_path(rng):
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    wt = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    args = ((2, 1), (1, 2), (1, 2), 2, (5, 6))
    fast = _core.conv2d_forward(x, wt, b, *args)
    naive = _core.conv2d_forward_naive(x, wt, b, *args)
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-5)
    fused = _core.conv2d_forward(x, wt, b, *args, True)
    np.testing.assert_array_equal(fused, np.maximum(fast, 0))


# ---------------------------------------------------------------------------- pooling

POOL_CASES = [
    # (H, W, kernel, stride, padding, dilation, ceil_mode)
    (8, 8, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (7, 9, (3, 2), (2, 1), (1, 1), (1, 1), False),
    (7, 9, (3, 3), (2, 2), (1, 0), (1, 1), True),
    (10, 11, (3, 2), (3, 2), (1, 1), (2, 3), True),
    (5, 6, (5, 6), (1, 1), (0, 0), (1, 1), False),
    (6, 5, (2, 3), (3, 2), (1, 1), (1, 1), True),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_values_indices_and_grad(case, rng, isa):
    h, w, k, s, p, d, cm = case
    x = rng.standard_normal((2, 3, h, w))
    want, want_idx = np_pool(x, k, s, p, d, cm, "max")
    xt = _t(x, True)
    y, idx = F.max_pool2d(xt, k, s, p, d, cm, return_indices=True)
    np.testing.assert_array_equal(y.detach().numpy(), want)
    np.testing.assert_array_equal(idx.detach().numpy(), want_idx)
    dy = rng.standard_normal(want.shape)
    y.backward(_t(dy))
    dx = np.zeros_like(x).reshape(2, 3, -1)
    for a, b_ in itertools.product(range(2), range(3)):
        np.add.at(dx[a, b_], want_idx[a, b_].reshape(-1), dy[a, b_].reshape(-1))
    np.testing.assert_allclose(xt.grad.numpy(), dx.reshape(x.shape), rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", [c for c in POOL_CASES if c[5] == (1, 1)])
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool2d_values_and_gradcheck(case, include_pad, rng):
    h, w, k, s, p, _, cm = case
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        pytest.skip("padding larger than half the kernel is refused (as in PyTorch)")
    x = rng.standard_normal((2, 2, h, w))
    want, _ = np_pool(x, k, s, p, (1, 1), cm, "avg", include_pad)
    y = F.avg_pool2d(_t(x), k, s, p, cm, include_pad)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda a: F.avg_pool2d(a, k, s, p, cm, include_pad), (_t(x, True),))
    y2 = F.avg_pool2d(_t(x), k, s, p, cm, include_pad, divisor_override=3)
    want2, _ = np_pool(x, k, s, p, (1, 1), cm, "avg", include_pad, divisor=3)
    np.testing.assert_allclose(y2.detach().numpy(), want2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("out", [(1, 1), (3, 2), (4, 5), (7, 3)])
def test_adaptive_avg_pool2d(out, rng):
    x = rng.standard_normal((2, 3, 7, 5))
    y = F.adaptive_avg_pool2d(_t(x), out)
    want = np.zeros((2, 3) + out)
    for i, j in itertools.product(range(out[0]), range(out[1])):
        h0, h1 = (i * 7) // out[0], math.ceil((i + 1) * 7 / out[0])
        w0, w1 = (j * 5) // out[1], math.ceil((j + 1) * 5 / out[1])
        want[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12)
    assert gradcheck(lambda a: F.adaptive_avg_pool2d(a, out), (_t(x[:1, :2], True),))
    assert tuple(nn.AdaptiveAvgPool2d((None, 2))(_t(x)).shape) == (2, 3, 7, 2)


def test_pool_second_derivatives(rng):
    x = _t(rng.standard_normal((1, 2, 5, 5)), True)
    assert gradgradcheck(lambda a: F.avg_pool2d(a, 3, 2, 1) ** 2, (x,))
    assert gradgradcheck(lambda a: F.max_pool2d(a, 2, 1) ** 2, (x,))


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_ties_nan_and_inf_match_plain_loops(case, rng, isa):
    """The vectorized max pool (tap by tap over whole planes) against the direct-loop oracle on
    data full of ties, NaNs and infinities: the first maximum in window order wins, a NaN wins
    over everything after it, an all -inf window points at its first element."""
    h, w, k, s, p, d, cm = case
    for dtype in (np.float32, np.float64):
        x = rng.integers(-2, 3, (3, 4, h, w)).astype(dtype)
        x[rng.random(x.shape) < 0.1] = np.nan
        x[rng.random(x.shape) < 0.1] = -np.inf
        x[rng.random(x.shape) < 0.05] = np.inf
        x[2, 3] = -np.inf  # a whole plane of -inf
        want, want_idx = np_pool(x.astype(np.float64), k, s, p, d, cm, "max")
        y, idx = F.max_pool2d(_t(x), k, s, p, d, cm, return_indices=True)
        np.testing.assert_array_equal(y.detach().numpy(), want.astype(dtype))
        np.testing.assert_array_equal(idx.detach().numpy(), want_idx)


def test_max_pool2d_plain_loops_for_planes_too_large_for_the_table(rng):
    """A plane whose tap table would be too large (4 taps x 2047^2 outputs) runs the plain
    loops: the same values and first-maximum indices as four shifted NumPy views."""
    n = 2048
    x = rng.integers(-3, 4, (1, 1, n, n)).astype(np.float32)
    x[0, 0, rng.integers(0, n, 50), rng.integers(0, n, 50)] = np.nan
    y, idx = F.max_pool2d(_t(x), 2, 1, return_indices=True)
    taps = [(0, 0), (0, 1), (1, 0), (1, 1)]
    views = np.stack([x[0, 0, i:i + n - 1, j:j + n - 1] for i, j in taps])
    first = np.argmax(np.where(np.isnan(views), np.inf, views) ==
                      np.where(np.isnan(views).any(0), np.inf, np.nanmax(views, 0))[None], 0)
    np.testing.assert_array_equal(y.detach().numpy()[0, 0], np.take_along_axis(
        views, first[None], 0)[0])
    oh, ow = np.indices((n - 1, n - 1))
    di = np.array([t[0] for t in taps])[first]
    dj = np.array([t[1] for t in taps])[first]
    np.testing.assert_array_equal(idx.detach().numpy()[0, 0], (oh + di) * n + ow + dj)


def test_max_pool_propagates_nan():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 0] = np.nan
    y = F.max_pool2d(_t(x), 2)
    assert np.isnan(y.detach().numpy()[0, 0, 0, 0]) and y.detach().numpy()[0, 0, 0, 1] == 0


def test_flatten_unflatten_roundtrip(rng):
    x = _t(rng.standard_normal((2, 3, 4, 5)), True)
    f = nn.Flatten()(x)
    assert tuple(f.shape) == (2, 60)
    u = nn.Unflatten(1, (3, -1, 5))(f)
    assert tuple(u.shape) == (2, 3, 4, 5)
    np.testing.assert_array_equal(u.detach().numpy(), x.detach().numpy())
    u.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="unflatten"):
        F.unflatten(f, 1, (7, 9))


# ---------------------------------------------------------------------------- threads, ISAs


@pytest.mark.parametrize("n", [1, 3, 7, 64])
def test_conv_bitwise_identical_for_1_and_2_threads(n, threads, rng):
    x = rng.standard_normal((n, 6, 20, 20)).astype(np.float32)
    wt = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    dy = rng.standard_normal((n, 16, 16, 16)).astype(np.float32)
    results = []
    for t in (1, 2):
        threads(t)
        y = _core.conv2d_forward(x, wt, b, (1, 1), (0, 0), (1, 1), 1, (16, 16))
        grads = _core.conv2d_backward(dy, x, wt, (1, 1), (0, 0), (1, 1), 1)
        yp, ip = _core.maxpool2d_forward(y, *(np.arange(8, dtype=np.int64) * 2,
                                              np.full(8, 2, dtype=np.int64)) * 2, 1, 1)
        results.append((y, *grads, yp, ip))
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_grouped_conv_buffers_bitwise_for_threads_and_against_loops(threads, rng, isa):
    """The digits convnet's shapes (8x8 planes: 8 samples per product, whose buffers' rows are
    padded): against the direct loops, and bitwise the same on 1 and 2 threads."""
    x = rng.standard_normal((21, 16, 8, 8))
    wt = rng.standard_normal((32, 16, 3, 3))
    b = rng.standard_normal(32)
    dy = rng.standard_normal((21, 32, 8, 8))
    want = np_conv2d(x, wt, b, (1, 1), (1, 1), (1, 1), 1)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-4)):
        xs, ws, bs, dys = (a.astype(dtype) for a in (x, wt, b, dy))
        results = []
        for t in (1, 2):
            threads(t)
            y = _core.conv2d_forward(xs, ws, bs, (1, 1), (1, 1), (1, 1), 1, (8, 8))
            yr = _core.conv2d_forward(xs, ws, bs, (1, 1), (1, 1), (1, 1), 1, (8, 8), True)
            results.append((y, yr, *_core.conv2d_backward(dys, xs, ws, (1, 1), (1, 1), (1, 1), 1)))
        for a, b_ in zip(*results):
            np.testing.assert_array_equal(a, b_)
        y, yr = results[0][:2]
        np.testing.assert_allclose(y, want, rtol=0, atol=tol * np.abs(want).max())
        np.testing.assert_array_equal(yr, np.maximum(y, 0))
        # <dy, conv(x, w)> is bilinear: its gradients are the adjoint products
        dx, dw, db = results[0][2:]
        e = rng.standard_normal(x.shape)
        np.testing.assert_allclose(np.sum(dx * e), np.sum(dy * np_conv2d(e, wt, None, (1, 1),
                                   (1, 1), (1, 1), 1)), rtol=tol * 100)
        np.testing.assert_allclose(db, dy.sum((0, 2, 3)), rtol=tol * 10)
        ew = rng.standard_normal(wt.shape)
        np.testing.assert_allclose(np.sum(dw * ew), np.sum(dy * np_conv2d(x, ew, None, (1, 1),
                                   (1, 1), (1, 1), 1)), rtol=tol * 100)


# ---------------------------------------------------------------------------- PyTorch


@needs_torch
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch_forward_and_backward(case, rng):
    n, c, h, w, oc, kh, kw, s, p, d, g = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c // g, kh, kw)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    xt, wtt, bt = _t(x, True), _t(wt, True), _t(b, True)
    y = F.conv2d(xt, wtt, bt, s, p, d, g)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, g)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    y.backward(_t(dy))
    ty.backward(torch.tensor(dy))
    for mine, theirs in ((xt, tx), (wtt, tw), (bt, tb)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-3)


@needs_torch
def test_modules_match_torch_with_same_weights(rng):
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=1, groups=2, bias=False),
        torch.nn.AvgPool2d(2, ceil_mode=True),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Unflatten(1, (6, 4)),
        torch.nn.Conv1d(6, 3, 2, dilation=2, padding=1))
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=1, groups=2, bias=False), nn.AvgPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Unflatten(1, (6, 4)),
        nn.Conv1d(6, 3, 2, dilation=2, padding=1))
    sd = {k: v.detach().numpy() for k, v in tnet.state_dict().items()}
    net.load_state_dict(sd)
    assert [tuple(p.shape) for p in net.parameters()] == \
        [tuple(p.shape) for p in tnet.parameters()]
    x = rng.standard_normal((3, 1, 11, 11)).astype(np.float32)
    want = tnet(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(net(_t(x)).detach().numpy(), want, rtol=1e-4, atol=1e-5)


@needs_torch
def test_default_init_statistics_like_torch():
    conv = nn.Conv2d(8, 16, (3, 5))
    bound = 1 / math.sqrt(8 * 15)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), ...)
    wv = conv.weight.detach().numpy()
    assert wv.shape == (16, 8, 3, 5)
    assert 0.8 * bound < np.abs(wv).max() <= bound
    assert np.abs(conv.bias.detach().numpy()).max() <= bound
    assert conv.weight.dtype == gd.float32


# ---------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    x = gd.zeros(2, 3, 5, 5)
    with pytest.raises(ValueError, match="expected input .* to have 4 channels.*got 3"):
        F.conv2d(x, gd.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(x, gd.zeros(2, 3, 6, 3))
    assert tuple(F.conv2d(x, gd.zeros(2, 3, 6, 3), padding=1).shape) == (2, 2, 2, 5)
    with pytest.raises(ValueError, match="expected a 4-d input"):
        F.conv2d(gd.zeros(5, 5), gd.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match="expected a 4-d input"):
        F.conv2d(gd.zeros(1, 1, 3, 5, 5), gd.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match="4-d weight"):
        F.conv2d(x, gd.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="divisible by groups"):
        F.conv2d(x, gd.zeros(5, 1, 3, 3), groups=3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, gd.zeros(2, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        F.conv2d(x, gd.zeros(2, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(TypeError, match="share one dtype"):
        F.conv2d(x, gd.zeros(2, 3, 3, 3, dtype=gd.float64))
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv2d(x, gd.zeros(2, 3, 3, 3), gd.zeros(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.conv2d(gd.zeros(2, 3, 5, 5, dtype=gd.int64), gd.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match="padding .* at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="3-d .* or 4-d"):
        F.max_pool2d(gd.zeros(5, 5), 2)
    with pytest.raises(ValueError, match="spans"):
        F.avg_pool2d(x, 6)
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="out of range"):
        _core.maxpool2d_backward(np.ones((1, 1, 2, 2)), np.full((1, 1, 2, 2), 99, np.int64),
                                 [1, 1, 3, 3])
    with pytest.raises(ValueError, match="outside the input"):
        _core.avgpool2d_forward(np.ones((1, 1, 3, 3)), np.array([2], np.int64),
                                np.array([2], np.int64), np.array([0], np.int64),
                                np.array([1], np.int64), np.array([1], np.int64))


# ---------------------------------------------------------------------------- lecture tools


def test_module_jacobians_of_a_conv_layer(rng):
    from graddesc.autograd.functional import module_jacobians

    conv = nn.Conv2d(2, 3, 2, stride=1, dtype=gd.float64)
    x = _t(rng.standard_normal((1, 2, 3, 4)))
    Jx, Jw = module_jacobians(conv, x)
    assert tuple(Jx.shape) == (1, 3, 2, 3, 1, 2, 3, 4)
    assert tuple(Jw["weight"].shape) == (1, 3, 2, 3, 3, 2, 2, 2)
    # the layer is linear in x: J_x applied to x plus the bias is the output
    y = conv(x).detach().numpy()
    lin = np.tensordot(Jx.detach().numpy(), x.detach().numpy(), axes=4)
    np.testing.assert_allclose(lin + conv.bias.detach().numpy()[None, :, None, None], y, atol=1e-12)
    # and in w
    linw = np.tensordot(Jw["weight"].detach().numpy(), conv.weight.detach().numpy(), axes=4)
    bias = conv.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(linw + bias, y, atol=1e-12)


def test_viz_draws_conv_blocks():
    from graddesc import viz

    gd.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(2, 3))
    loss = nn.CrossEntropyLoss()(model(gd.randn(4, 1, 4, 4)), gd.tensor([0, 1, 2, 1]))
    dot = viz.draw_graph(loss, model=model).dot
    for label in ("0: Conv2d", "2: MaxPool2d", "0.weight (2, 1, 3, 3)", "x (4, 1, 4, 4)"):
        assert label in dot


# ---------------------------------------------------------------------------- gd.compile, CLI


def _convnet_step(dtype):
    gd.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(4, 6, (2, 3), stride=(1, 2), dilation=(2, 1), groups=2), nn.Tanh(),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Unflatten(1, (6, 4)), nn.Conv1d(6, 3, 2, bias=False), nn.Flatten(),
        nn.Linear(9, 5)).to(dtype)
    opt = gd.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_compiled_step_equals_eager_bitwise(dtype, rng):
    batches = [(gd.tensor(rng.standard_normal((5, 2, 9, 10))).to(dtype),
                gd.tensor(rng.integers(0, 5, 5))) for _ in range(5)]
    m_eager, eager = _convnet_step(dtype)
    m_comp, step = _convnet_step(dtype)
    compiled = gd.compile(step)
    for x, y in batches:
        le, lc = eager(x, y), compiled(x, y)
        assert le.item() == lc.item()
    assert compiled.stats["replayed"] >= 3 and compiled.stats["eager"] == 0
    for (name, a), (_, b) in zip(m_eager.named_parameters(), m_comp.named_parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(), err_msg=name)
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy(), err_msg=name)


def _program_names(compiled):
    entries = [e for e in compiled._cache.values() if getattr(e, "program", None) is not None]
    assert len(entries) == 1
    return entries[0].program.names()


def _relu_net_step(dtype, share_output):
    """conv -> ReLU -> pool -> conv -> ReLU -> head; with share_output the second conv's output
    is also read by something else (then its ReLU must not be fused into it)."""
    gd.manual_seed(1)
    c1, c2 = nn.Conv2d(2, 5, 3, padding=1), nn.Conv2d(5, 4, 3, bias=False)
    head = nn.Linear(4 * 2 * 2, 3)
    params = [*c1.parameters(), *c2.parameters(), *head.parameters()]
    for m in (c1, c2, head):
        m.to(dtype)
    opt = gd.optim.SGD(params, lr=0.05, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        h = F.max_pool2d(gd.relu(c1(x)), 2)
        z = c2(h)
        a = gd.relu(z)
        if share_output:
            a = a + 0.5 * z
        loss = F.cross_entropy(head(a.flatten(1)), y)
        loss.backward()
        opt.step()
        return loss

    return params, step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("share_output", [False, True])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_compiled_conv_relu_fused_equals_eager(dtype, share_output, nthreads, threads, rng, isa,
                                              monkeypatch):
    """gd.compile runs a ReLU that follows a conv as the conv GEMM's epilogue (no act_fwd left
    for it) unless the conv's output is read elsewhere; losses, weights and gradients stay
    bitwise those of eager mode, whose ReLU backward reads the ReLU's output. (Elementwise-chain
    fusion is off here, so that an unfused ReLU stays a visible act_fwd.)"""
    monkeypatch.setenv("GRADDESC_FUSE", "0")
    threads(nthreads)
    batches = [(gd.tensor(rng.standard_normal((6, 2, 8, 8))).to(dtype),
                gd.tensor(rng.integers(0, 3, 6))) for _ in range(4)]
    p_eager, eager = _relu_net_step(dtype, share_output)
    p_comp, step = _relu_net_step(dtype, share_output)
    compiled = gd.compile(step)
    for x, y in batches:
        assert eager(x, y).item() == compiled(x, y).item()
    assert compiled.stats["replayed"] >= 2 and compiled.stats["eager"] == 0
    for a, b in zip(p_eager, p_comp):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    assert _program_names(compiled).count("act_fwd") == (1 if share_output else 0)


def test_cli_trains_the_digits_convnet(tmp_path, capsys):
    from graddesc import cli

    assert cli.main(["train", "--model", "cnn", "--epochs", "1", "--quiet", "--out",
                     str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    acc = float(out.strip().splitlines()[-1].split(":")[1])
    assert acc > 0.5  # one epoch; chance is 0.1
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "cnn", "--data", "spirals", "--out", str(tmp_path / "s")])
    assert "cnn needs the 8x8 images" in capsys.readouterr().err
