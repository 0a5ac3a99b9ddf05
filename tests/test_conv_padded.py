"""Convolutions with stride 1 along the width (the kernels unroll them row by row from the input
planes, or from a zero-padded copy of each sample's planes when padded): forward, input and
weight gradients against a NumPy direct-loop oracle tap by tap and PyTorch, in float32 and
float64, on every ISA, for 1 and 2 threads (bitwise equal), with the samples grouped side by side
(batches larger than a GEMM group)."""

from __future__ import annotations

import numpy as np
import pytest

from graddesc import _core

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

# (N, C, H, W, OC, KH, KW, stride, pad before, pad after, dilation, groups); all stride 1 along
# the width
CASES = [
    (19, 6, 12, 12, 16, 5, 5, (1, 1), (0, 0), (0, 0), (1, 1), 1),  # LeNet's second conv, unpadded
    (3, 2, 9, 7, 4, 2, 3, (2, 1), (0, 0), (0, 0), (1, 2), 2),      # unpadded, last row unread
    (4, 3, 6, 5, 2, 3, 2, (1, 1), (0, 0), (1, 1), (1, 1), 1),      # zeros after only
    (37, 16, 8, 8, 32, 3, 3, (1, 1), (1, 1), (1, 1), (1, 1), 1),   # the digits net's second conv
    (9, 1, 8, 8, 16, 3, 3, (1, 1), (1, 1), (1, 1), (1, 1), 1),     # its first
    (5, 4, 7, 6, 6, 2, 4, (1, 1), (0, 2), (1, 1), (1, 1), 2),      # 'same'-like, uneven sides
    (4, 3, 6, 9, 4, 3, 3, (2, 1), (2, 1), (2, 1), (2, 1), 1),      # dilated, strided rows
    (3, 2, 9, 5, 3, 2, 2, (3, 1), (1, 0), (0, 0), (1, 1), 1),      # rows past the last unread
    (2, 3, 4, 4, 2, 2, 2, (1, 1), (3, 3), (3, 3), (1, 1), 1),      # padding wider than the kernel
    (70, 2, 3, 3, 4, 3, 3, (1, 1), (1, 1), (1, 1), (1, 1), 2),     # many tiny planes per group
]


def out_len(size, k, s, before, after, d):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def oracle(x, w, b, dy, s, pb, pa, d, g):
    """y, dx, dw, db by loops over the kernel taps (each tap a NumPy product over the samples,
    channels and output positions), float64."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    ocg = oc // g
    xp = np.zeros((n, c, h + pb[0] + pa[0], wd + pb[1] + pa[1]))
    xp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + wd] = x
    oh, ow = out_len(h, kh, s[0], pb[0], pa[0], d[0]), out_len(wd, kw, s[1], pb[1], pa[1], d[1])
    y = np.zeros((n, oc, oh, ow)) + b[None, :, None, None]
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for gi in range(g):
        ci, oi = slice(gi * cg, (gi + 1) * cg), slice(gi * ocg, (gi + 1) * ocg)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * d[0], i * d[0] + (oh - 1) * s[0] + 1, s[0])
                cols = slice(j * d[1], j * d[1] + (ow - 1) * s[1] + 1, s[1])
                xs = xp[:, ci, rows, cols]
                y[:, oi] += np.einsum("ncij,oc->noij", xs, w[oi, :, i, j])
                dxp[:, ci, rows, cols] += np.einsum("noij,oc->ncij", dy[:, oi], w[oi, :, i, j])
                dw[oi, :, i, j] += np.einsum("noij,ncij->oc", dy[:, oi], xs)
    dx = dxp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + wd]
    return y, dx, dw, dy.sum(axis=(0, 2, 3))


def run(x, w, b, dy, case):
    s, pb, d, g = case[7], case[8], case[10], case[11]
    y = _core.conv2d_forward(x, w, b, s, pb, d, g, dy.shape[2:])
    dx, dw, db = _core.conv2d_backward(dy, x, w, s, pb, d, g)
    return y, dx, dw, db


def data(case, rng, dtype):
    n, c, h, wd, oc, kh, kw, s, pb, pa, d, g = case
    oh, ow = out_len(h, kh, s[0], pb[0], pa[0], d[0]), out_len(wd, kw, s[1], pb[1], pa[1], d[1])
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((oc, c // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(oc).astype(dtype)
    dy = rng.standard_normal((n, oc, oh, ow)).astype(dtype)
    return x, w, b, dy


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padded_conv_matches_tap_loops(case, dtype, rng, isa):
    x, w, b, dy = data(case, rng, dtype)
    want = oracle(*(a.astype(np.float64) for a in (x, w, b, dy)), *case[7:])
    got = run(x, w, b, dy, case)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for name, a, e in zip(("y", "dx", "dw", "db"), got, want):
        assert a.dtype == dtype and a.shape == e.shape, name
        # float32: rounding grows with the number of terms a result sums (at most N*OH*OW for dw)
        terms = max(x.shape[1] * w.shape[2] * w.shape[3], dy.shape[0] * dy.shape[2] * dy.shape[3])
        scale = max(1.0, np.abs(e).max()) * np.sqrt(terms)
        np.testing.assert_allclose(a, e, rtol=0, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_padded_conv_bitwise_for_1_and_2_threads(case, threads, rng, isa):
    x, w, b, dy = data(case, rng, np.float32)
    results = []
    for t in (1, 2):
        threads(t)
        results.append(run(x, w, b, dy, case))
    for a, e in zip(*results):
        np.testing.assert_array_equal(a, e)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("case", CASES)
def test_padded_conv_matches_torch(case, rng):
    x, w, b, dy = data(case, rng, np.float64)
    n, c, h, wd, oc, kh, kw, s, pb, pa, d, g = case
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    tb = torch.from_numpy(b).requires_grad_()
    xpad = torch.nn.functional.pad(tx, (pb[1], pa[1], pb[0], pa[0]))
    ty = torch.nn.functional.conv2d(xpad, tw, tb, s, 0, d, g)
    ty.backward(torch.from_numpy(dy))
    got = run(x, w, b, dy, case)
    for a, e in zip(got, (ty, tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(a, e.detach().numpy(), rtol=1e-10, atol=1e-10)
