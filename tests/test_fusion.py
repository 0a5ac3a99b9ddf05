"""Elementwise chain fusion in gd.compile (src/cpp/fuse.cpp): a recorded program with fused chains
(`ew_fused` instructions) replays bitwise equal to the same program recorded with
GRADDESC_FUSE=0 and to the eager step, for random chains of elementwise ops with broadcasting,
scalars, strided operands and activations (forward and backward), in float32 and float64, on
1 and 2 threads and under every ISA the CPU supports, and for the model zoo."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "zoo.py"
_spec = importlib.util.spec_from_file_location("graddesc_fusion_zoo", _PATH)
zoo = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = zoo  # (dataclasses look their module up there)
_spec.loader.exec_module(zoo)


def _program(fn):
    progs = [e.program for e in fn._cache.values() if getattr(e, "program", None) is not None]
    assert len(progs) == 1
    return progs[0]


def _unary(rng):
    return rng.choice([
        lambda a: gd.exp(a * 0.25),
        gd.tanh,
        gd.sigmoid,
        gd.relu,
        lambda a: -a,
        gd.abs,
        lambda a: a ** 2,
        lambda a: gd.sqrt(gd.abs(a) + 1.0),
        lambda a: gd.log(gd.abs(a) + 0.5),
        lambda a: gd.sin(a),
        lambda a: a * 0.5 + 1.5,
        lambda a: 2.0 - a,
        lambda a: gd.clamp(a, -0.7, 0.9),
    ])


def _binary(rng):
    return rng.choice([
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a * b,
        lambda a, b: a / (gd.abs(b) + 1.0),
        gd.maximum,
        gd.minimum,
        lambda a, b: gd.where(a > b, a, b * 0.5),
    ])


def _chain(seed: int):
    """f(w, x, r, c, s) -> a tensor of w's shape: a random DAG of elementwise ops over operands of
    shape (A, B) (w, x; s strided), (A, 1) (r) and (1, B) (c)."""
    rng = np.random.default_rng(seed)
    steps = [(rng.integers(0, 2), _unary(rng), _binary(rng), rng.integers(0, 100, 2))
             for _ in range(int(rng.integers(4, 12)))]

    def f(w, x, r, c, s):
        pool = [w * 1.0, x, r, c, s]
        for kind, un, bi, (i, j) in steps:
            a = pool[int(i) % len(pool)]
            if kind == 0:
                pool.append(un(a))
            else:
                pool.append(bi(a, pool[int(j) % len(pool)]))
        out = w
        for t in pool[5:]:
            out = out + t  # every op reaches w's shape and its gradient
        return gd.tanh(out)

    return f


def _inputs(seed, A, B, dtype):
    rng = np.random.default_rng(seed)
    big = rng.standard_normal((A, 2 * B)).astype(dtype)
    return (gd.tensor(rng.standard_normal((A, B)).astype(dtype)),
            gd.tensor(rng.standard_normal((A, 1)).astype(dtype)),
            gd.tensor(rng.standard_normal((1, B)).astype(dtype)),
            gd.tensor(big)[:, ::2])  # a strided view


def _twins(seed, A, B, dtype, n):
    """n copies of a parameter w (A, B) and an SGD step on sum(f(w, ...))."""
    rng = np.random.default_rng(seed + 1000)
    w0 = (0.5 * rng.standard_normal((A, B))).astype(dtype)
    f = _chain(seed)
    out = []
    for _ in range(n):
        w = gd.nn.Parameter(gd.tensor(w0.copy()))
        opt = gd.optim.SGD([w], lr=0.05, momentum=0.5)

        def step(x, r, c, s, w=w, opt=opt):
            opt.zero_grad()
            y = f(w, x, r, c, s)
            (y * y).sum().backward()
            opt.step()
            return y.detach()

        out.append((w, step))
    return out


def _compiled(step, fuse: bool, monkeypatch):
    """gd.compile(step), recording with fusion on or off (GRADDESC_FUSE is read when a call
    records)."""
    compiled = gd.compile(step)

    def call(*args):
        monkeypatch.setenv("GRADDESC_FUSE", "1" if fuse else "0")
        return compiled(*args)

    call.compiled = compiled
    return call


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (64, 300)])
def test_random_chains_fused_equal_unfused_and_eager(seed, dtype, shape, monkeypatch):
    A, B = shape
    (we, eager), (wu, unf), (wf, fus) = _twins(seed, A, B, dtype, 3)
    unfused = _compiled(unf, False, monkeypatch)
    fused = _compiled(fus, True, monkeypatch)
    for k in range(4):
        args = _inputs(seed * 10 + k, A, B, dtype)
        ye, yu, yf = eager(*args), unfused(*args), fused(*args)
        np.testing.assert_array_equal(yu.numpy(), ye.numpy())
        np.testing.assert_array_equal(yf.numpy(), ye.numpy())
        np.testing.assert_array_equal(wf.detach().numpy(), we.detach().numpy())
        np.testing.assert_array_equal(wu.detach().numpy(), we.detach().numpy())
    assert fused.compiled.stats["eager"] == unfused.compiled.stats["eager"] == 0
    names_f, names_u = _program(fused.compiled).names(), _program(unfused.compiled).names()
    assert "ew_fused" in names_f and "ew_fused" not in names_u
    assert len(names_f) < len(names_u)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_chains_every_isa_and_thread_count(isa, threads, dtype, monkeypatch):
    # (300, 300): above the kernels' parallel threshold, so two threads split the blocks
    A, B = 300, 300
    gd.set_num_threads(threads)
    for seed in (3, 11):
        (we, eager), (wf, fus) = _twins(seed, A, B, dtype, 2)
        fused = _compiled(fus, True, monkeypatch)
        for k in range(3):
            args = _inputs(seed + k, A, B, dtype)
            np.testing.assert_array_equal(fused(*args).numpy(), eager(*args).numpy())
            np.testing.assert_array_equal(wf.detach().numpy(), we.detach().numpy())
        assert "ew_fused" in _program(fused.compiled).names()


def _zoo_run(name, fuse, monkeypatch, batch=32, steps=3):
    m = getattr(zoo, name)(gd, batch)
    step = _compiled(m.step, fuse, monkeypatch)
    rng = np.random.default_rng(0)
    outs = []
    for k in range(steps):
        x, y = m.data(rng, (1.0, 7.0, 0.1)[k % 3])
        x = x if isinstance(x, gd.Tensor) else gd.tensor(x)
        y = y if isinstance(y, gd.Tensor) else gd.tensor(y)
        outs.append(np.asarray(step(x, y).numpy()).tobytes())
    params = [p.detach().numpy().tobytes() for p in m.params] if hasattr(m, "params") else []
    return outs, params, _program(step.compiled).names()


@pytest.mark.parametrize("name", ["resmlp", "logreg", "prototypes", "polyreg"])
def test_zoo_models_fused_equal_unfused(name, monkeypatch):
    # (tests/test_zoo.py checks every compiled zoo step against eager, fusion on by default)
    outs_u, params_u, names_u = _zoo_run(name, False, monkeypatch)
    outs_f, params_f, names_f = _zoo_run(name, True, monkeypatch)
    assert outs_f == outs_u and params_f == params_u
    assert "ew_fused" not in names_u
    if name != "prototypes":  # (its elementwise ops are separated by reductions)
        assert "ew_fused" in names_f and len(names_f) < len(names_u)


def test_program_add_refuses_a_hand_made_fused_instruction():
    with pytest.raises(ValueError, match="ew_fused"):
        _core.Program().add("ew_fused", False, [], [1, 1, 1, 0, 1, 0], [])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_traffic_counts_only_memory_the_chain_must_move(dtype, monkeypatch):
    """x + tanh(x * c) under no_grad: x * c and the tanh live in scratch blocks, so the fused
    instruction reads x and c once and writes the result once."""
    B, W = 6, 9
    e = np.dtype(dtype).itemsize

    def f(x, c):
        with gd.no_grad():
            return x + gd.tanh(x * c)

    step = _compiled(f, True, monkeypatch)
    rng = np.random.default_rng(0)
    x = gd.tensor(rng.standard_normal((B, W)).astype(dtype))
    c = gd.tensor(rng.standard_normal((1, W)).astype(dtype))
    for _ in range(2):
        np.testing.assert_array_equal(step(x, c).numpy(), f(x, c).numpy())
    prog = _program(step.compiled)
    assert prog.names() == ["ew_fused"]
    assert prog.traffic() == [(e * (B * W + W), e * B * W)]
    assert prog.flops() == [3 * B * W]

