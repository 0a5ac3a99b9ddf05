"""gd.compile: host decisions taken during a recording never replay on new values (the step
falls back to eager instead), and the cache of recordings and fallbacks stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd


def _net(seed=0):
    gd.manual_seed(seed)
    return gd.nn.Sequential(gd.nn.Linear(20, 20), gd.nn.ReLU(), gd.nn.Linear(20, 5))


def _batches(scales, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in scales:
        x = (rng.standard_normal((8, 20)) * s).astype(np.float32)
        y = (rng.standard_normal((8, 5)) * s).astype(np.float32)
        out.append((gd.tensor(x), gd.tensor(y)))
    return out


def _clipping_step(model):
    opt = gd.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = gd.nn.MSELoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        gd.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step


def test_clipping_decided_on_small_gradients_is_not_replayed_on_large_ones():
    # recorded while the norm is below the limit (no scaling), then inputs 5000x larger: eager
    # clips every one of those steps, so must the compiled step
    m1, m2 = _net(), _net()
    eager, compiled = _clipping_step(m1), gd.compile(_clipping_step(m2))
    data = _batches([1e-3] * 3 + [5.0] * 4)
    norms = []
    with pytest.warns(RuntimeWarning, match="clip_grad_norm_"):
        for x, y in data:
            l1, l2 = eager(x, y), compiled(x, y)
            assert l1.item() == l2.item()
            for p1, p2 in zip(m1.parameters(), m2.parameters()):
                np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
                np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy())
            norms.append(np.sqrt(sum(np.sum(p.grad.numpy().astype(np.float64) ** 2)
                                     for p in m1.parameters())))
    # the decision did flip: small batches kept their gradients, large ones were scaled to 1
    assert max(norms[:3]) < 0.5
    np.testing.assert_allclose(norms[3:], 1.0, rtol=1e-4)
    assert compiled.stats["replayed"] == 0


def test_anomaly_check_recorded_on_finite_gradients_still_raises_on_nan():
    m1, m2 = _net(), _net()
    opt1, opt2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)

    def make(model, opt):
        def step(x, y):
            with gd.autograd.detect_anomaly():
                opt.zero_grad()
                loss = gd.nn.functional.mse_loss(model(x), y)
                loss.backward()
                opt.step()
            return loss
        return step

    eager, compiled = make(m1, opt1), gd.compile(make(m2, opt2))
    data = _batches([1.0] * 3)
    with pytest.warns(RuntimeWarning, match="anomaly detection"):
        for x, y in data:
            assert eager(x, y).item() == compiled(x, y).item()
    bad = data[0][0].numpy().copy()
    bad[0, 0] = np.nan
    for fn in (eager, compiled):
        with pytest.raises(RuntimeError, match="nan values"):
            fn(gd.tensor(bad), data[0][1])
