"""nn.utils.clip_grad_norm_'s kernel (_core.clip_norm): the norm against a float64 NumPy oracle
and PyTorch, the same bits on every ISA and thread count, PyTorch's handling of non-finite norms,
and gd.compile's clip_norm + Adam fusion bitwise equal to the eager pair."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]
NORM_TYPES = [2.0, float("inf"), 1.0, 3.0, 0.5]
# sizes around the kernel's 32 lanes and 4096-element blocks, an empty one and a single element
SIZES = [(64, 129), (4097,), (0,), (1,), (31,), (3, 33)]


def _grads(dtype, sizes=SIZES, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in sizes]


def _oracle(grads, norm_type):
    flat = np.concatenate([g.ravel().astype(np.float64) for g in grads])
    if np.isinf(norm_type):
        return float(np.max(np.abs(flat)))
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30])
def test_norm_against_float64_oracle(dtype, norm_type, scale):
    # huge and tiny float32 gradients: |g|^p is formed in double, so neither overflows nor
    # underflows where the float64 oracle does not (float64 at 1e30 still fits)
    grads = _grads(dtype, scale=scale)
    want = _oracle(grads, norm_type)
    assert np.isfinite(want) and want > 0
    work = [g.copy() for g in grads]
    norm = float(_core.clip_norm(work, norm_type, want * 2 + 1.0))
    np.testing.assert_allclose(norm, want, rtol=1e-12 if norm_type in (2.0, 1.0) else 1e-10)
    for g, w in zip(grads, work):
        np.testing.assert_array_equal(w, g)  # below max_norm: untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_scaling_by_the_rounded_coefficient(dtype, norm_type):
    grads = _grads(dtype, seed=1)
    max_norm = _oracle(grads, norm_type) / 7
    work = [g.copy() for g in grads]
    norm = float(_core.clip_norm(work, norm_type, max_norm))
    coef = dtype(max_norm / (norm + 1e-6))
    for g, w in zip(grads, work):
        np.testing.assert_array_equal(w, g * coef)
    np.testing.assert_allclose(_oracle(work, norm_type), max_norm, rtol=1e-5)


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e6, 0.0])
def test_against_torch(norm_type, max_norm):
    torch = _torch()
    # (no empty gradient: torch refuses the inf norm of one; the kernel lets it add nothing)
    grads = _grads(np.float32, sizes=[s for s in SIZES if s != (0,)], seed=2)
    tp = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    gp = [gd.nn.Parameter(gd.zeros(*g.shape)) for g in grads]
    for g, t, p in zip(grads, tp, gp):
        t.grad = torch.tensor(g)
        p.grad = gd.tensor(g)
    want = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type)
    got = gd.nn.utils.clip_grad_norm_(gp, max_norm, norm_type=norm_type)
    assert got.dtype == gd.float32
    # torch sums in float32, the kernel in float64: the norms agree to float32 rounding
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-5)
    for t, p in zip(tp, gp):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=2e-5, atol=1e-30)


@pytest.mark.parametrize("norm_type", [2.0, float("inf"), 1.0, 3.0])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_nonfinite_norm_as_torch(norm_type, bad):
    torch = _torch()
    grads = _grads(np.float32, sizes=[(5,), (7,)], seed=3)
    grads[1][2] = bad
    tp = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    gp = [gd.nn.Parameter(gd.zeros(*g.shape)) for g in grads]
    for g, t, p in zip(grads, tp, gp):
        t.grad = torch.tensor(g)
        p.grad = gd.tensor(g)
    want = torch.nn.utils.clip_grad_norm_(tp, 1.0, norm_type=norm_type)
    got = gd.nn.utils.clip_grad_norm_(gp, 1.0, norm_type=norm_type)
    # an infinite norm scales by 0 (inf * 0 = NaN), a NaN norm by NaN: as torch
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    for t, p in zip(tp, gp):
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
    # error_if_nonfinite raises and leaves the gradients alone, as torch
    for g, p in zip(grads, gp):
        p.grad = gd.tensor(g)
    with pytest.raises(RuntimeError, match="non-finite, so it cannot be clipped"):
        torch.nn.utils.clip_grad_norm_(tp, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite, so it cannot be clipped"):
        gd.nn.utils.clip_grad_norm_(gp, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    for g, p in zip(grads, gp):
        np.testing.assert_array_equal(p.grad.numpy(), g)


def test_finite_norm_with_error_if_nonfinite_clips():
    grads = _grads(np.float32, seed=4)
    gp = [gd.nn.Parameter(gd.zeros(*g.shape)) for g in grads]
    for g, p in zip(grads, gp):
        p.grad = gd.tensor(g)
    norm = gd.nn.utils.clip_grad_norm_(gp, 1.0, error_if_nonfinite=True, foreach=True).item()
    np.testing.assert_allclose(norm, _oracle(grads, 2.0), rtol=1e-6)
    np.testing.assert_allclose(_oracle([p.grad.numpy() for p in gp], 2.0), 1.0, rtol=1e-5)


def test_empty_list_and_parameters_without_grad():
    assert gd.nn.utils.clip_grad_norm_([], 1.0).item() == 0.0
    no_grad = gd.nn.Parameter(gd.ones(3))
    assert gd.nn.utils.clip_grad_norm_([no_grad], 1.0).item() == 0.0
    assert no_grad.grad is None
    grads = _grads(np.float32, sizes=[(6,)], seed=5)
    a, b = gd.nn.Parameter(gd.zeros(6)), gd.nn.Parameter(gd.zeros(6))
    a.grad = gd.tensor(grads[0])
    norm = gd.nn.utils.clip_grad_norm_([b, a], 0.1).item()  # b has no grad: skipped
    np.testing.assert_allclose(norm, _oracle(grads, 2.0), rtol=1e-6)
    assert b.grad is None
    coef = np.float32(0.1 / (norm + 1e-6))
    np.testing.assert_array_equal(a.grad.numpy(), grads[0] * coef)


def _bits(norm_type, dtype, max_norm):
    # > 2^18 elements: the norm runs in parallel on 2 threads
    grads = _grads(dtype, sizes=[(300, 700), (50_001,), (3,)], seed=6)
    work = [g.copy() for g in grads]
    norm = _core.clip_norm(work, norm_type, max_norm)
    return norm.tobytes(), [w.tobytes() for w in work]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_same_bits_on_every_isa_and_thread_count(dtype, norm_type):
    isa, nt = _core.isa(), _core.get_num_threads()
    try:
        results = []
        for name in SUPPORTED_ISAS:
            _core.set_isa(name)
            for threads in (1, 2):
                _core.set_num_threads(threads)
                results.append(((name, threads), _bits(norm_type, dtype, 1.0)))
    finally:
        _core.set_isa(isa)
        _core.set_num_threads(nt)
    first = results[0][1]
    for who, r in results[1:]:
        assert r == first, f"{who} differs from {results[0][0]}"


def test_same_bits_under_graddesc_isa_in_a_fresh_interpreter():
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import hashlib
        import numpy as np
        from test_clip_norm import _bits
        from graddesc import _core
        h = hashlib.sha256()
        for nt in (2.0, float("inf"), 3.0):
            norm, grads = _bits(nt, np.float32, 1.0)
            h.update(norm)
            for g in grads:
                h.update(g)
        print(_core.isa(), h.hexdigest())
    """)
    out = {}
    for name in SUPPORTED_ISAS:
        env = dict(os.environ, GRADDESC_ISA=name)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        isa, digest = proc.stdout.split()
        assert isa == name
        out[name] = digest
    assert len(set(out.values())) == 1, out


# ------------------------------------------------------------------- gd.compile: clip + Adam


def _lecture(opt_name, dtype=np.float32, seed=0, clip_first_only=False, **opt_kw):
    gd.manual_seed(seed)
    model = gd.nn.Sequential(gd.nn.Linear(30, 40), gd.nn.ReLU(), gd.nn.Linear(40, 5))
    if dtype == np.float64:
        model.double()
    opt = getattr(gd.optim, opt_name)(model.parameters(), lr=1e-2, **opt_kw)
    loss_fn = gd.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        gd.nn.utils.clip_grad_norm_(model[0].parameters() if clip_first_only
                                    else model.parameters(), 1.0)
        opt.step()
        return loss

    return model, step


def _clip_traffic(compiled):
    (prog,) = [e.program for e in compiled._cache.values() if getattr(e, "program", None)]
    names = prog.names()
    k = names.index("clip_norm")
    return names[k + 1], prog.traffic()[k]


@pytest.mark.parametrize("opt_name, opt_kw", [
    ("Adam", {}),
    ("Adam", {"weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"weight_decay": 0.1}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"betas": (0.3, 0.999)}),  # lerp's second formula: the general path
    ("SGD", {}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_clip_then_update_equals_eager_bitwise(opt_name, opt_kw, dtype):
    m1, eager = _lecture(opt_name, dtype, **opt_kw)
    m2, step2 = _lecture(opt_name, dtype, **opt_kw)
    compiled = gd.compile(step2)
    rng = np.random.default_rng(7)
    # input scales that put the norm below max_norm, then above, then below again: the fused
    # update decides on each replay's norm
    scales = [1e-4] * 3 + [30.0] * 3 + [1e-4] * 2 + [30.0]
    clipped = []
    for s in scales:
        x = gd.tensor((rng.standard_normal((4, 30)) * s).astype(dtype))
        y = gd.tensor(rng.integers(0, 5, 4))
        l1, l2 = eager(x, y), compiled(x, y)
        assert l1.detach().numpy().tobytes() == l2.detach().numpy().tobytes()
        flat = np.concatenate([p.grad.numpy().ravel().astype(np.float64) for p in m1.parameters()])
        clipped.append(np.linalg.norm(flat) > 0.999)
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            # the parameters and the clipped gradients a later .grad read sees
            assert p1.detach().numpy().tobytes() == p2.detach().numpy().tobytes()
            assert p1.grad.numpy().tobytes() == p2.grad.numpy().tobytes()
    assert any(clipped) and not all(clipped)
    assert compiled.stats["replayed"] >= len(scales) - 2
    follower, (_, written) = _clip_traffic(compiled)
    assert follower == opt_name.lower().replace("adamw", "adam")
    assert written == 8  # fused: the clip_norm writes only its norm, the update the gradients


@pytest.mark.parametrize("opt_name", ["Adam", "SGD"])
def test_clipping_some_parameters_stays_unfused_and_equal(opt_name):
    # the update's gradient list is not the clipped one: the clip_norm scales its own
    m1, eager = _lecture(opt_name, clip_first_only=True)
    m2, step2 = _lecture(opt_name, clip_first_only=True)
    compiled = gd.compile(step2)
    rng = np.random.default_rng(8)
    for s in [1e-4, 30.0, 30.0, 1e-4, 30.0]:
        x = gd.tensor((rng.standard_normal((4, 30)) * s).astype(np.float32))
        y = gd.tensor(rng.integers(0, 5, 4))
        assert eager(x, y).item() == compiled(x, y).item()
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            assert p1.detach().numpy().tobytes() == p2.detach().numpy().tobytes()
            assert p1.grad.numpy().tobytes() == p2.grad.numpy().tobytes()
    assert compiled.stats["replayed"] >= 3
    if opt_name == "Adam":
        # (SGD's sgd instruction loses the layers fused into linear_bwd_sgd and may then update
        # exactly the clipped list: fused, equal just the same)
        _, (_, written) = _clip_traffic(compiled)
        assert written > 8
