"""The loss kernels as registered instruction kinds (src/cpp/bind_loss.cpp): a compiled step
records cross-entropy and MSE through their `_args` twins as `call` instructions that keep the
names, operands and results of the eager kernels. Oracles: the eager step (bitwise), NumPy, and
the byte counts of each kernel's arrays."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

DTYPES = [np.float32, np.float64]


def _programs(compiled):
    return [e.program for e in compiled._cache.values() if getattr(e, "program", None) is not None]


def _ce_step(model, opt, ignore_index=-100):
    lf = gd.nn.CrossEntropyLoss(ignore_index=ignore_index)

    def step(x, y):
        opt.zero_grad()
        loss = lf(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_cross_entropy_is_eager_bitwise_and_counts_its_bytes(dtype):
    B, IN, C = 5, 4, 3
    e = np.dtype(dtype).itemsize
    models = []
    for _ in range(2):
        gd.manual_seed(0)
        m = gd.nn.Linear(IN, C, dtype=gd.float64 if dtype == np.float64 else gd.float32)
        models.append((m, gd.optim.SGD(m.parameters(), lr=0.1)))
    eager, compiled = _ce_step(*models[0]), gd.compile(_ce_step(*models[1]))
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = gd.tensor(rng.standard_normal((B, IN)).astype(dtype))
        y = gd.tensor(rng.integers(0, C, B))
        np.testing.assert_array_equal(eager(x, y).detach().numpy(), compiled(x, y).detach().numpy())
    for p1, p2 in zip(models[0][0].parameters(), models[1][0].parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
    (prog,) = _programs(compiled)
    names = prog.names()
    traffic = dict(zip(names, prog.traffic()))
    # ce_fwd reads the logits and the int64 targets and writes the per-row loss and lse
    assert traffic["ce_fwd"] == (e * B * C + 8 * B, 2 * e * B)
    # ce_bwd reads dloss (one element: the mean's 0-d seed), logits, lse, targets; writes dlogits
    assert traffic["ce_bwd"] == (e + e * B * C + e * B + 8 * B, e * B * C)


def test_replayed_cross_entropy_refuses_a_target_out_of_range():
    gd.manual_seed(0)
    m = gd.nn.Linear(4, 3)
    step = gd.compile(_ce_step(m, gd.optim.SGD(m.parameters(), lr=0.1)))
    x = gd.tensor(np.ones((2, 4), np.float32))
    for _ in range(2):
        step(x, gd.tensor(np.array([0, 2])))
    assert _programs(step)
    with pytest.raises(ValueError, match=r"target\[1\] = 7 is out of range for 3 classes"):
        step(x, gd.tensor(np.array([0, 7])))
    with pytest.raises(ValueError, match=r"target 7 at position 1 is out of bounds for 3"):
        _ce_step(m, gd.optim.SGD(m.parameters(), lr=0.1))(x, gd.tensor(np.array([0, 7])))


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_mse_with_dloss_matches_eager_and_numpy(dtype):
    """mse_bwd with an upstream gradient (the loss times w): its d[scale] times dloss[0]."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    w = rng.standard_normal(()).astype(dtype)
    grads = []
    for fn in ("eager", "compiled"):
        p = gd.tensor(np.zeros((3, 4), dtype), requires_grad=True)

        def step(x, t, w, p=p):
            p.grad = None
            loss = gd.nn.functional.mse_loss(x + p, t) * w
            loss.backward()
            return loss

        run = gd.compile(step) if fn == "compiled" else step
        for _ in range(3):
            run(gd.tensor(a), gd.tensor(b), gd.tensor(w))
        if fn == "compiled":
            assert "mse_bwd" in _programs(run)[0].names()
        grads.append(p.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    want = (2.0 / a.size) * float(w) * (a.astype(np.float64) - b)
    np.testing.assert_allclose(grads[1], want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_twins_refuse_a_result_of_the_wrong_shape_or_dtype():
    z = np.zeros((2, 3), np.float32)
    t = np.array([0, 1])
    loss, lse = _core.cross_entropy_forward(z, t)
    assert _core.cross_entropy_forward_args(z, t, result=(loss, lse))[3] is False
    with pytest.raises(TypeError, match="result"):
        _core.cross_entropy_forward_args(z, t, result=loss)
    with pytest.raises(ValueError, match=r"argument 'result\[1\]'"):
        _core.cross_entropy_forward_args(z, t, result=(loss, lse[:1]))
    with pytest.raises(TypeError, match=r"argument 'result' must have dtype float32"):
        _core.mse_forward_args(z, z, result=np.zeros((), np.float64))
    with pytest.raises(ValueError, match=r"mse_backward: argument 'dloss'"):
        _core.mse_backward_args(z, z, 1.0, np.zeros(2, np.float32), result=z)
    ptrs, ints, reals, f64, reads = _core.mse_backward_args(z, z, 0.5, result=z.copy())
    assert ptrs[3] == 0 and reals == [0.5] and len(ints) == 2 and len(reads) == 2
