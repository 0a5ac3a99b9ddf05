"""Small-batch paths (issue 22, item 3): the short-K weight-gradient product (gemm.cpp,
gemm/smallk.hpp) and gd.compile's fused backward + SGD update at batches 2..32 (linear_bwd_sgd,
optim.cpp's sgd_gemm_step).

Oracles: float64 NumPy for the kernels, with the dot-product error bound |fl(a . b) - a . b| <=
K eps |a| . |b| (any summation order); the eager step for the compiled one, bitwise, since the
fused update is defined to give the bits of the GEMM followed by the SGD step; and a float64 NumPy
SGD step for the updated weights.
"""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

BATCHES = list(range(1, 18))


def _close(got: np.ndarray, ref: np.ndarray, scale: np.ndarray, K: int, dtype: type) -> None:
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == ref.shape
    limit = 2.0 * (K + 4) * np.finfo(dtype).eps * scale + np.finfo(dtype).tiny
    err = np.abs(got64 - ref)
    i = np.unravel_index(np.argmax(err - limit), err.shape)
    assert np.all(err <= limit), f"error {err[i]:g} > bound {limit[i]:g} at {i}"


# ---- the short-K product: C = alpha a^T b + beta C ---------------------------------------------
@pytest.mark.parametrize("K", [2, 3, 5, 8, 16, 17, 31, 32, 33])
@pytest.mark.parametrize(("M", "N"), [(1, 7), (7, 1), (9, 33), (17, 95), (130, 47), (256, 784)])
def test_short_k_weight_gradient_product(isa, float_dtype, rng, M, N, K):
    a = rng.standard_normal((K, M)).astype(float_dtype)  # dy (B, OUT)
    b = rng.standard_normal((K, N)).astype(float_dtype)  # x (B, IN)
    got = _core.gemm(a, b, trans_a=True)
    A, B = a.T.astype(np.float64), b.astype(np.float64)
    _close(got, A @ B, np.abs(A) @ np.abs(B), K, float_dtype)


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_short_k_alpha_beta(isa, float_dtype, rng, beta):
    M, N, K = 19, 41, 6
    a = rng.standard_normal((K, M)).astype(float_dtype)
    b = rng.standard_normal((K, N)).astype(float_dtype)
    c = rng.standard_normal((M, N)).astype(float_dtype)
    if beta == 0.0:
        c[:] = np.nan  # beta = 0 never reads C
    c0 = c.astype(np.float64)
    got = _core.gemm(a, b, trans_a=True, alpha=-1.5, beta=beta, out=c)
    A, B = a.T.astype(np.float64), b.astype(np.float64)
    ref = -1.5 * (A @ B) + (beta * c0 if beta != 0.0 else 0.0)
    scale = 1.5 * (np.abs(A) @ np.abs(B)) + (abs(beta) * np.abs(c0) if beta != 0.0 else 0.0)
    _close(got, ref, scale, K, float_dtype)


def test_short_k_bits_do_not_depend_on_threads(threads, float_dtype, rng):
    # 2 x 600 x 1000 x 16 flops: above the threshold where the product runs on 2 threads
    a = rng.standard_normal((16, 600)).astype(float_dtype)
    b = rng.standard_normal((16, 1000)).astype(float_dtype)
    threads(1)
    one = _core.gemm(a, b, trans_a=True)
    threads(2)
    two = _core.gemm(a, b, trans_a=True)
    assert np.array_equal(one, two)



def test_short_k_rows_do_not_depend_on_the_tile(isa, float_dtype, rng):
    """Rows left over after the full row tiles (every count below the 6 or 8 of a tile) go
    through one narrower tile: each element is still the same FMA chain, so the first M rows of a
    product equal the product of those rows alone, bitwise, and all stay within the bound."""
    K, N = 32, 50
    a = rng.standard_normal((K, 17)).astype(float_dtype)
    b = rng.standard_normal((K, N)).astype(float_dtype)
    full = _core.gemm(a, b, trans_a=True)
    A, B = a.T.astype(np.float64), b.astype(np.float64)
    _close(full, A @ B, np.abs(A) @ np.abs(B), K, float_dtype)
    for M in range(2, 17):
        part = _core.gemm(np.ascontiguousarray(a[:, :M]), b, trans_a=True)
        assert np.array_equal(part, full[:M]), M

@pytest.mark.parametrize("B", BATCHES)
def test_linear_backward_small_batch(isa, float_dtype, rng, B):
    IN, OUT = 37, 19
    dy = rng.standard_normal((B, OUT)).astype(float_dtype)
    x = rng.standard_normal((B, IN)).astype(float_dtype)
    W = rng.standard_normal((OUT, IN)).astype(float_dtype)
    dx, dW, db = _core.linear_backward(dy, x, W)
    d, X, w = dy.astype(np.float64), x.astype(np.float64), W.astype(np.float64)
    _close(dx, d @ w, np.abs(d) @ np.abs(w), OUT, float_dtype)
    _close(dW, d.T @ X, np.abs(d.T) @ np.abs(X), B, float_dtype)
    _close(db, d.sum(0), np.abs(d).sum(0), B, float_dtype)


# ---- compiled steps at small batches -----------------------------------------------------------
SGD = {
    "plain": {"lr": 0.05},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov_wd": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    "maximize": {"lr": 0.05, "maximize": True, "weight_decay": 1e-3},
}


def _net(sizes, dtype, seed=0, bias=True):
    gd.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(gd.nn.Linear(a, b, bias=bias, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(gd.nn.ReLU())
    return gd.nn.Sequential(*layers)


def _twins(sizes, dtype, opt, seed=0, bias=True):
    out = []
    for _ in range(2):
        model = _net(sizes, dtype, seed, bias)
        o = gd.optim.SGD(model.parameters(), **SGD[opt])
        loss_fn = gd.nn.CrossEntropyLoss()

        def step(x, y, model=model, o=o, loss_fn=loss_fn):
            o.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            o.step()
            return loss

        out.append((model, step))
    return out


def _data(k, B, sizes, dtype):
    r = np.random.default_rng(100 + k)
    x = gd.tensor(r.standard_normal((B, sizes[0])).astype(dtype))
    y = gd.tensor(r.integers(0, sizes[-1], B))
    return x, y


def _program(fn):
    entries = [e for e in fn._cache.values() if getattr(e, "program", None) is not None]
    assert entries, "the compiled step fell back to eager"
    return entries[0].program


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", list(SGD))
@pytest.mark.parametrize("B", BATCHES)
def test_compiled_small_batch_equals_eager(dtype, opt, B):
    sizes = (37, 23, 11, 5)
    gdt = gd.float64 if dtype == np.float64 else gd.float32
    (m1, eager), (m2, step) = _twins(sizes, gdt, opt)
    fn = gd.compile(step)
    for k in range(6):
        x, y = _data(k, B, sizes, dtype)
        l1 = eager(x, y)
        l2 = fn(x, y)
        assert np.array_equal(l1.detach().numpy(), l2.detach().numpy()), f"loss of call {k}"
        for (name, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
            same = np.array_equal(p1.detach().numpy(), p2.detach().numpy())
            assert same, f"{name} after call {k}"
    # every layer's backward took its SGD update in one instruction at this batch
    names = _program(fn).names()
    assert names.count("linear_bwd_sgd") == 3 and "sgd" not in names
    # the (lazily stored) weight gradients read back as eager's
    for (name, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert np.array_equal(p1.grad.numpy(), p2.grad.numpy()), f"{name}.grad"


def test_batch_past_the_fusion_limit_is_not_fused():
    sizes = (37, 23, 5)
    (m1, eager), (m2, step) = _twins(sizes, gd.float32, "plain")
    fn = gd.compile(step)
    for k in range(3):
        x, y = _data(k, 33, sizes, np.float32)
        eager(x, y)
        fn(x, y)
    assert "linear_bwd_sgd" not in _program(fn).names()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert np.array_equal(p1.detach().numpy(), p2.detach().numpy())


def _linear_mse_sgd_against_numpy(IN: int, B: int, new_data_each_call: bool):
    """Three compiled SGD steps (lr 0.1) of a single Linear(IN, 13) + MSE against a float64 NumPy
    run of the same steps: each call's loss, then (read after the calls, which applies a pending
    deferred update) the weight and bias within float32 rounding. Returns the compiled step."""
    OUT = 13
    gd.manual_seed(3)
    layer = gd.nn.Linear(IN, OUT)
    W = layer.weight.detach().numpy().astype(np.float64)
    b = layer.bias.detach().numpy().astype(np.float64)
    o = gd.optim.SGD(layer.parameters(), lr=0.1)

    def step(x, t):
        o.zero_grad()
        loss = gd.nn.functional.mse_loss(layer(x), t)
        loss.backward()
        o.step()
        return loss

    fn = gd.compile(step)
    r = np.random.default_rng(B)
    for k in range(3):
        if k == 0 or new_data_each_call:
            x = r.standard_normal((B, IN)).astype(np.float32)
            t = r.standard_normal((B, OUT)).astype(np.float32)
        loss = fn(gd.tensor(x), gd.tensor(t)).item()
        X, T = x.astype(np.float64), t.astype(np.float64)
        e = X @ W.T + b - T
        assert loss == pytest.approx(np.mean(e * e), rel=1e-4)
        dy = 2.0 * e / (B * OUT)
        W, b = W - 0.1 * (dy.T @ X), b - 0.1 * dy.sum(0)
    np.testing.assert_allclose(layer.weight.detach().numpy(), W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bias.detach().numpy(), b, rtol=1e-5, atol=1e-6)
    return fn


@pytest.mark.parametrize("B", [2, 5, 16])
def test_fused_update_matches_a_numpy_sgd_step(B):
    """One compiled step of a single Linear + MSE (its backward fused with the update) against
    the float64 NumPy step."""
    fn = _linear_mse_sgd_against_numpy(29, B, new_data_each_call=False)
    assert "linear_bwd_sgd" in _program(fn).names()


@pytest.mark.parametrize("B", [4, 16])
def test_compiled_small_batch_bits_do_not_depend_on_threads(threads, B):
    # the first layer's gradient product is large enough (2 B 600 700 >= 2^23 at B = 16) to split
    sizes = (700, 600, 10)
    results = []
    for nt in (1, 2):
        threads(nt)
        (model, step), _ = _twins(sizes, gd.float32, "momentum")
        fn = gd.compile(step)
        for k in range(3):
            fn(*_data(k, B, sizes, np.float32))
        results.append([p.detach().numpy().copy() for p in model.parameters()])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", ["plain", "maximize"])
@pytest.mark.parametrize("B", BATCHES)
def test_deferred_small_batch_updates_equal_eager(isa, dtype, opt, B):
    """The first layer's update waits for the next call's forward (nothing reads the weights in
    between), which applies it as it reads W (linear_forward_sgd_batch, with the ReLU fused in at
    batch > 1); K = 300 >= 16 B keeps that forward on the row-dot path up to B = 17."""
    sizes = (300, 29, 7)
    gdt = gd.float64 if dtype == np.float64 else gd.float32
    (m1, eager), (m2, step) = _twins(sizes, gdt, opt)
    fn = gd.compile(step)
    losses = []
    for k in range(6):
        x, y = _data(k, B, sizes, dtype)
        losses.append((eager(x, y).item(), fn(x, y).item()))
    assert _core.deferred_pending()
    assert all(a == b for a, b in losses), losses
    for (name, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert np.array_equal(p1.detach().numpy(), p2.detach().numpy()), name
    assert not _core.deferred_pending()  # (reading the weight applied the pending update)


@pytest.mark.parametrize("K", [300, 1000, 2049])
@pytest.mark.parametrize("M", [2, 3, 5, 7, 8, 9])
def test_short_m_long_k_forward_product(isa, float_dtype, rng, M, K):
    """x (M, K) W^T with W (N, K): the row-dot path takes longer rows when fewer than a tile's
    rows of x are there (float64 at batch 2: the MLP's 784-wide first layer)."""
    N = 37
    a = rng.standard_normal((M, K)).astype(float_dtype)
    b = rng.standard_normal((N, K)).astype(float_dtype)
    got = _core.gemm(a, b, trans_b=True)
    A, B = a.astype(np.float64), b.T.astype(np.float64)
    _close(got, A @ B, np.abs(A) @ np.abs(B), K, float_dtype)


@pytest.mark.parametrize("N", [8, 37, 256])
@pytest.mark.parametrize("M", [2, 3])
def test_short_m_forward_row_bits_do_not_depend_on_the_batch(isa, float_dtype, rng, M, N):
    """A batch of 1 or 2 rows takes wider row-dot tiles (2 x 8, or 2 x 4 on 16-register ISAs)
    than a larger batch (8 x 3 or 4 x 2), each pair with its own accumulator and reduction: rows
    of x give the same bits inside a batch of 2 (or a last tile of 1 row) as inside a batch of 5
    to 9, and the product stays within the dot-product bound of the float64 result."""
    K = 300
    x = rng.standard_normal((9, K)).astype(float_dtype)
    w = rng.standard_normal((N, K)).astype(float_dtype)
    big = _core.gemm(x, w, trans_b=True)
    for rows in (slice(0, M), slice(9 - M, 9)):
        got = _core.gemm(np.ascontiguousarray(x[rows]), w, trans_b=True)
        assert np.array_equal(got, big[rows])
    A, B = x.astype(np.float64), w.T.astype(np.float64)
    _close(big, A @ B, np.abs(A) @ np.abs(B), K, float_dtype)


def _deferred_twins(sizes, dtype, bias):
    return _twins(sizes, dtype, "plain", seed=1, bias=bias)


def _deferred_run(sizes, dtype, bias, B, steps=5):
    """The eager and the compiled step over `steps` calls: the losses of each, both models."""
    gdt = gd.float64 if dtype == np.float64 else gd.float32
    (m1, eager), (m2, step) = _deferred_twins(sizes, gdt, bias)
    fn = gd.compile(step)
    losses = []
    for k in range(steps):
        x, y = _data(k, B, sizes, dtype)
        losses.append((eager(x, y).item(), fn(x, y).item()))
    assert _core.deferred_pending()
    assert "linear_bwd_sgd" in _program(fn).names()
    return losses, m1, m2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("sizes", "bias"),
    [((301, 37, 5), True), ((301, 37, 5), False), ((333, 9), True), ((300, 64, 3), True)],
)
@pytest.mark.parametrize("B", [2, 3, 4, 5, 6, 7, 8])
def test_one_pass_deferred_update_and_forward_equal_eager(isa, dtype, sizes, bias, B):
    """Plain SGD's deferred update applied in the next forward's pass over W (one pass per vector
    of W at small batches, optim.cpp's sgd_dots_rows; two passes above), against the eager step
    (the update, then the forward), bit for bit: rows of odd length (masked tails in both dtypes),
    odd row counts (the tiles' last rows one by one), with and without bias, with the ReLU fused
    in (a hidden layer) and without (a single Linear)."""
    losses, m1, m2 = _deferred_run(sizes, dtype, bias, B)
    assert all(a == b for a, b in losses), losses
    for (name, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert np.array_equal(p1.detach().numpy(), p2.detach().numpy()), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [2, 3, 5, 8])
def test_one_pass_deferred_update_bits_do_not_depend_on_threads(threads, dtype, B):
    sizes = (301, 37, 5)
    results = []
    for nt in (1, 2):
        threads(nt)
        losses, _, m2 = _deferred_run(sizes, dtype, True, B)
        assert all(a == b for a, b in losses), losses
        params = [p.detach().numpy().copy() for p in m2.parameters()]
        results.append(([b for _, b in losses], params))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("B", [2, 4, 6])
def test_one_pass_deferred_update_matches_a_numpy_sgd_step(B):
    """A single Linear + MSE: its weight's update waits for the next call's forward (the one-pass
    update-and-forward tile at these batches), with new data on every call."""
    _linear_mse_sgd_against_numpy(301, B, new_data_each_call=True)


# ---- long rows at a batch of one tile (rows of x up to 64 KiB on 32-register ISAs) ----------------
@pytest.mark.parametrize(("dtype", "K"), [(np.float64, 783), (np.float64, 1024), (np.float64, 1025),
                                          (np.float32, 2047), (np.float32, 2048), (np.float32, 2049)])
@pytest.mark.parametrize("M", [6, 7, 8, 9])
def test_short_m_forward_rows_past_l1(isa, rng, dtype, M, K):
    """x (M, K) W^T where M rows of x no longer fit L1 (the row-dot path up to 64 KiB of x at
    M <= 8 on AVX-512, the blocked path past it and on the other ISAs): within the dot-product
    bound of the float64 product, and each row's bits the same as in a batch of 2 rows."""
    N = 19
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((N, K)).astype(dtype)
    got = _core.gemm(a, b, trans_b=True)
    A, B = a.astype(np.float64), b.T.astype(np.float64)
    _close(got, A @ B, np.abs(A) @ np.abs(B), K, dtype)
    if M <= 8 and _core.isa() == "avx512" and M * K * np.dtype(dtype).itemsize <= 64 << 10:
        pair = _core.gemm(np.ascontiguousarray(a[M - 2:]), b, trans_b=True)
        assert np.array_equal(pair, got[M - 2:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("sizes", "bias"), [((784, 37, 5), True), ((1023, 13, 3), False),
                                             ((1025, 11, 3), True)])
@pytest.mark.parametrize("B", [6, 7, 8, 9])
def test_one_pass_deferred_update_long_rows_equal_eager(isa, dtype, sizes, bias, B):
    """The MLP's 784-wide first layer at batches 6..8 (float64: 37-50 KiB of x, the one-pass
    update-and-forward tile with x and x_old from L2), odd widths around float64's 64 KiB limit at
    batch 8 (1023: one pass; 1025: the update, then the blocked forward), and batch 9 (two
    passes): the compiled step equals the eager one bit for bit."""
    losses, m1, m2 = _deferred_run(sizes, dtype, bias, B, steps=4)
    assert all(a == b for a, b in losses), losses
    for (name, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert np.array_equal(p1.detach().numpy(), p2.detach().numpy()), name


@pytest.mark.parametrize("B", [7, 8])
def test_one_pass_long_rows_bits_do_not_depend_on_threads(threads, B):
    sizes = (784, 37, 5)
    results = []
    for nt in (1, 2, 3):
        threads(nt)
        losses, _, m2 = _deferred_run(sizes, np.float64, True, B, steps=3)
        assert all(a == b for a, b in losses), losses
        results.append(([b for _, b in losses], [p.detach().numpy().copy() for p in m2.parameters()]))
    for other in results[1:]:
        assert other[0] == results[0][0]
        for a, b in zip(results[0][1], other[1]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("B", [7, 8])
def test_one_pass_long_rows_match_a_numpy_sgd_step(B):
    """A single Linear(784, 13) + MSE at batches 7 and 8 (the one-pass tile on 32-register ISAs)
    against float64 NumPy SGD steps, new data on every call."""
    _linear_mse_sgd_against_numpy(784, B, new_data_each_call=True)
