"""Row reductions and row members in fused chains (src/cpp/fuse.cpp): a sum_to or a reduce sum /
mean over the innermost dim, and the (N, 1) ops that follow it (a normalisation's statistics),
join an elementwise chain; the fused replay must be bitwise equal to the eager step, to the
program recorded unfused (GRADDESC_FUSE=0) and to the one recorded without these members
(GRADDESC_FUSE_ROWS=0), on every ISA and thread count, and close to a NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd


def _program(fn):
    progs = [e.program for e in fn._cache.values() if getattr(e, "program", None) is not None]
    assert len(progs) == 1
    return progs[0]


def _norm(h):
    """zoo.py's hand-written normalisation over the last dim."""
    h = h - h.mean(-1, keepdim=True)
    return h / ((h * h).mean(-1, keepdim=True) + 1e-5) ** 0.5


def _norm_np(h):
    h = h.astype(np.float64)
    c = h - h.mean(-1, keepdims=True)
    return c / np.sqrt((c * c).mean(-1, keepdims=True) + 1e-5)


def _model(shape, dtype, seed):
    """A parameter w of `shape` and an SGD step on sum(tanh(norm(w * x)) * t) + sum_(last)."""
    rng = np.random.default_rng(seed)
    w = gd.nn.Parameter(gd.tensor((1.0 + 0.3 * rng.standard_normal(shape)).astype(dtype)))
    opt = gd.optim.SGD([w], lr=0.1, momentum=0.5)

    def step(x, t):
        opt.zero_grad()
        n = _norm(w * x)
        y = gd.tanh(n) * t + n.sum(-1, keepdim=True) * 0.25
        y.sum().backward()
        opt.step()
        return n.detach()

    return w, step


def _record(step, monkeypatch, **env):
    compiled = gd.compile(step)

    def call(*args):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        out = compiled(*args)
        for k in env:
            monkeypatch.delenv(k)
        return out

    call.compiled = compiled
    return call


def _data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (gd.tensor((2.0 * rng.standard_normal(shape) + 0.5).astype(dtype)),
            gd.tensor(rng.standard_normal(shape).astype(dtype)))


VARIANTS = [{}, {"GRADDESC_FUSE": "0"}, {"GRADDESC_FUSE_ROWS": "0"}, {"GRADDESC_FUSE_ROWS": "1"}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (64, 300), (3, 4, 50), (6, 1024), (4, 1500), (9, 31)])
def test_norm_steps_fused_equal_eager_unfused_and_numpy(shape, dtype, monkeypatch):
    seed = 7
    models = [_model(shape, dtype, seed) for _ in range(len(VARIANTS) + 1)]
    w_e, eager = models[0]
    runs = [(w, _record(s, monkeypatch, **env)) for (w, s), env in zip(models[1:], VARIANTS)]
    for k in range(3):
        x, t = _data(shape, dtype, 100 + k)
        xw = (w_e.detach().numpy() * x.numpy()).astype(dtype)
        ref = eager(x, t).numpy()
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(ref, _norm_np(xw), rtol=tol, atol=tol)
        for w, run in runs:
            np.testing.assert_array_equal(run(x, t).numpy(), ref)
            np.testing.assert_array_equal(w.detach().numpy(), w_e.detach().numpy())
    names = [_program(run.compiled).names() for _, run in runs]
    assert all(run.compiled.stats["eager"] == 0 for _, run in runs)
    # reduces: the norm's two means, n.sum(-1) and the loss's sum over everything
    assert names[1].count("reduce") == names[2].count("reduce") == 4
    if shape[-1] <= 1024:
        # every row reduction joined a chain (the loss's total stays), and without row members
        # the (N, 1) ops stay apart
        assert names[0].count("reduce") == names[3].count("reduce") == 1
        assert len(names[0]) < len(names[3]) < len(names[2]) < len(names[1])
    else:  # rows longer than a tile: the reductions run on their own
        assert names[0].count("reduce") == 4


@pytest.mark.parametrize("threads_n", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_steps_every_isa_and_thread_count(isa, threads, threads_n, dtype, monkeypatch):
    # (300, 256): above the kernels' parallel threshold, so the threads split the blocks
    threads(threads_n)
    shape = (300, 256)
    (w_e, eager), (w_f, fused) = _model(shape, dtype, 3), _model(shape, dtype, 3)
    fused = _record(fused, monkeypatch)
    for k in range(3):
        x, t = _data(shape, dtype, k)
        np.testing.assert_array_equal(fused(x, t).numpy(), eager(x, t).numpy())
        np.testing.assert_array_equal(w_f.detach().numpy(), w_e.detach().numpy())
    assert _program(fused.compiled).names().count("reduce") == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("n", [5, 31, 32, 33, 100, 1024])
def test_row_reduction_of_a_product_never_goes_to_memory(op, n, dtype, monkeypatch):
    """(x * c).sum(-1) / .mean(-1) + 1 under no_grad: one ew_fused that reads x and c once and
    writes no (R, n) array, only the (R, 1) reduction (row-level values stay in memory: the row
    member adding 1 reads it back) and the result; its values are NumPy's (float64 reference)
    and eager's bits."""
    R = 6
    e = np.dtype(dtype).itemsize

    def f(x, c):
        with gd.no_grad():
            return getattr(x * c, op)(-1, keepdim=True) + 1.0

    step = _record(f, monkeypatch)
    rng = np.random.default_rng(n)
    x = gd.tensor(rng.standard_normal((R, n)).astype(dtype))
    c = gd.tensor(rng.standard_normal((1, n)).astype(dtype))
    for _ in range(2):
        got = step(x, c).numpy()
        np.testing.assert_array_equal(got, f(x, c).numpy())
    ref = getattr(x.numpy().astype(np.float64) * c.numpy(), op)(-1, keepdims=True) + 1.0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    prog = _program(step.compiled)
    assert prog.names() == ["ew_fused"]
    assert prog.traffic() == [(e * (R * n + n + R), 2 * e * R)]


def test_a_reduction_over_other_dims_stays_apart(monkeypatch):
    """A sum over the first dim (not the innermost) is not a row reduction: it runs alone, and
    the result is still eager's."""
    def f(x):
        with gd.no_grad():
            return (x * 2.0).sum(0, keepdim=True) * 3.0

    step = _record(f, monkeypatch)
    x = gd.tensor(np.random.default_rng(0).standard_normal((40, 30)).astype(np.float32))
    for _ in range(2):
        np.testing.assert_array_equal(step(x).numpy(), f(x).numpy())
    assert "reduce" in _program(step.compiled).names()
