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


def _clipping_step(model, norm_type=2.0, error_if_nonfinite=False, max_norm=1.0):
    opt = gd.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    loss_fn = gd.nn.MSELoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        gd.nn.utils.clip_grad_norm_(model.parameters(), max_norm, norm_type=norm_type,
                                    error_if_nonfinite=error_if_nonfinite)
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("norm_type, max_norm, batch", [(2.0, 1.0, 8), (2.0, 1.0, 1),
                                                        (float("inf"), 1.0, 8), (1.0, 5.0, 3)])
def test_clipping_recorded_on_small_gradients_still_clips_large_ones(norm_type, max_norm, batch):
    # recorded while the norm is below the limit (no scaling), then inputs 5000x larger: eager
    # clips every one of those steps, and so must each replay (the kernel decides per call)
    m1, m2 = _net(), _net()
    eager = _clipping_step(m1, norm_type, max_norm=max_norm)
    compiled = gd.compile(_clipping_step(m2, norm_type, max_norm=max_norm))
    data = _batches([1e-3] * 3 + [5.0] * 4 + [1e-3] * 2)
    norms = []
    for x, y in data:
        x, y = x[:batch], y[:batch]
        l1, l2 = eager(x, y), compiled(x, y)
        assert l1.item() == l2.item()
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
            np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy())
        flat = np.concatenate([p.grad.numpy().ravel().astype(np.float64)
                               for p in m1.parameters()])
        norms.append(np.linalg.norm(flat, ord=norm_type))
    # the decision did flip: small batches kept their gradients, large ones were scaled
    assert max(norms[:3] + norms[7:]) < 0.5 * max_norm
    np.testing.assert_allclose(norms[3:7], max_norm, rtol=1e-4)
    assert compiled.stats["replayed"] >= len(data) - 2


def test_clipping_that_may_raise_falls_back_and_equals_eager():
    # error_if_nonfinite decides in Python whether to raise: that step runs eagerly
    m1, m2 = _net(), _net()
    eager = _clipping_step(m1, error_if_nonfinite=True)
    compiled = gd.compile(_clipping_step(m2, error_if_nonfinite=True))
    data = _batches([1e-3] * 2 + [5.0] * 2)
    with pytest.warns(RuntimeWarning, match="clip_grad_norm_"):
        for x, y in data:
            assert eager(x, y).item() == compiled(x, y).item()
    assert compiled.stats["replayed"] == 0
    bad = data[0][0].numpy().copy()
    bad[0, 0] = np.inf
    for fn in (eager, compiled):
        with pytest.raises(RuntimeError, match="non-finite"):
            fn(gd.tensor(bad), data[0][1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_norm_kernel_against_numpy(dtype, norm_type):
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(s).astype(dtype) for s in [(4, 5), (7,), (0,), (2, 3, 2)]]
    want_norm = np.linalg.norm(np.concatenate([g.ravel().astype(np.float64) for g in grads]),
                               ord=norm_type)
    for max_norm, scaled in [(want_norm * 2, False), (want_norm / 3, True)]:
        work = [g.copy() for g in grads]
        norm = gd._core.clip_norm(work, norm_type, max_norm)
        assert norm.shape == () and norm.dtype == np.float64
        np.testing.assert_allclose(norm, want_norm, rtol=1e-12)
        coef = max_norm / (float(norm) + 1e-6)
        for g, w in zip(grads, work):
            np.testing.assert_array_equal(w, g * dtype(coef) if scaled else g)


@pytest.mark.parametrize("args, exc, match", [
    (([], 2.0, 1.0), ValueError, "empty"),
    (((np.ones(3, np.float32),), 0.0, 1.0), ValueError, "norm_type must be positive"),
    (([np.ones(3, np.float32), np.ones(2)], 2.0, 1.0), TypeError, r"grads\[1\].*float32"),
    (([np.ones(3, np.int64)], 2.0, 1.0), TypeError, "float32 or float64"),
    ((np.ones(3), 2.0, 1.0), TypeError, "must be a list"),
    (([np.ones((3, 2))[:, 0]], 2.0, 1.0), ValueError, "C-contiguous"),
])
def test_clip_norm_kernel_validates(args, exc, match):
    with pytest.raises(exc, match=match):
        gd._core.clip_norm(*args)


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


def _slope_step(model):
    """A step whose float argument reaches a kernel as its scalar (the LeakyReLU slope)."""
    opt = gd.optim.SGD(model.parameters(), lr=0.05)

    def step(x, y, slope):
        opt.zero_grad()
        out = gd.nn.functional.leaky_relu(model(x), slope)
        loss = gd.nn.functional.mse_loss(out, y)
        loss.backward()
        opt.step()
        return loss

    return step


def _scaled_loss_step(model):
    """A step that falls back to eager: it reads the loss's value in Python (item()), which no
    replay may repeat; the float scales the loss."""
    opt = gd.optim.SGD(model.parameters(), lr=0.05)

    def step(x, y, scale):
        opt.zero_grad()
        loss = gd.nn.functional.mse_loss(model(x), y) * scale
        step.last = loss.item()
        loss.backward()
        opt.step()
        return loss

    return step


def _entries(fn):
    return fn.cache_info()["entries"]


def test_fallback_entries_for_many_scalar_values_stay_within_cache_size():
    m1, m2 = _net(), _net()
    eager, compiled = _scaled_loss_step(m1), gd.compile(_scaled_loss_step(m2), cache_size=4)
    (x, y), = _batches([1.0])
    with pytest.warns(RuntimeWarning, match="graddesc.compile"):
        for k in range(300):
            scale = 1.0 + k / 1000
            assert eager(x, y, scale).item() == compiled(x, y, scale).item()
            assert len(_entries(compiled)) <= 4
    entries = _entries(compiled)
    assert [kind for _, kind in entries] == ["eager"] * 4
    # the four most recent values, oldest first
    assert [sig.rsplit("float ", 1)[1] for sig, _ in entries] == \
        [repr(1.0 + k / 1000) for k in range(296, 300)]
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())


def test_the_least_recently_used_signature_is_evicted_first():
    m1, m2 = _net(), _net()
    eager, compiled = _slope_step(m1), gd.compile(_slope_step(m2), cache_size=2)
    data = _batches([1.0] * 12)

    def call(k, slope):
        x, y = data[k]
        assert eager(x, y, slope).item() == compiled(x, y, slope).item()

    call(0, 0.1)
    call(1, 0.1)
    call(2, 0.2)
    call(3, 0.1)  # 0.1 is now the most recent
    recorded = compiled.stats["recorded"]
    call(4, 0.3)  # evicts 0.2, not 0.1
    assert [sig.rsplit("float ", 1)[1] for sig, _ in _entries(compiled)] == ["0.1", "0.3"]
    assert compiled.stats["recorded"] == recorded + 1
    call(5, 0.1)
    assert compiled.stats["recorded"] == recorded + 1  # replayed
    call(6, 0.2)
    assert compiled.stats["recorded"] == recorded + 2  # evicted: recorded again
    assert [kind for _, kind in _entries(compiled)] == ["replay", "replay"]


def test_one_call_replays_count_as_use_for_eviction():
    # 0.1 replays through the one-call path only (Python never sees those calls); an eager
    # fallback signature is used in between: 0.1 is still the more recent one
    m1, m2 = _net(), _net()
    eager, compiled = _slope_step(m1), gd.compile(_slope_step(m2), cache_size=2)
    data = _batches([1.0] * 10)
    x0, y0 = data[0]
    xg = gd.tensor(x0.numpy(), requires_grad=True)  # an input requiring grad: eager
    with pytest.warns(RuntimeWarning, match="requires grad"):
        assert eager(xg, y0, 0.1).item() == compiled(xg, y0, 0.1).item()
    for k in range(4):
        x, y = data[k]
        assert eager(x, y, 0.1).item() == compiled(x, y, 0.1).item()
    assert eager(xg, y0, 0.1).item() == compiled(xg, y0, 0.1).item()  # (its cached fallback)
    assert [kind for _, kind in _entries(compiled)] == ["replay", "eager"]
    hits = compiled._fast.hits
    x, y = data[5]
    assert eager(x, y, 0.1).item() == compiled(x, y, 0.1).item()
    assert compiled._fast.hits == hits + 1  # (the one-call path: Python did not see it)
    recorded = compiled.stats["recorded"]
    x, y = data[6]
    assert eager(x, y, 0.3).item() == compiled(x, y, 0.3).item()  # evicts the fallback
    assert [kind for _, kind in _entries(compiled)] == ["replay", "replay"]
    x, y = data[7]
    assert eager(x, y, 0.1).item() == compiled(x, y, 0.1).item()
    assert compiled.stats["recorded"] == recorded + 1


def test_recording_again_and_again_warns_once_naming_the_argument():
    m1, m2 = _net(), _net()
    eager, compiled = _slope_step(m1), gd.compile(_slope_step(m2))
    (x, y), = _batches([1.0])
    limit = max(gd._compile.RECORD_WARNING_AFTER, 2 * compiled.cache_size)
    slopes = [0.01 * (k + 1) for k in range(limit + 10)]
    k = 0
    while compiled.stats["recorded"] < limit:  # no warning up to the limit
        assert eager(x, y, slopes[k]).item() == compiled(x, y, slopes[k]).item()
        k += 1
    old = slopes[k - 1]
    with pytest.warns(RuntimeWarning) as caught:
        for s in slopes[k:]:
            assert eager(x, y, s).item() == compiled(x, y, s).item()
    assert len(caught) == 1
    text = str(caught[0].message)
    assert f"recorded {limit + 1} times (more than {limit})" in text
    assert f"argument 2 (slope) changed: float {old!r} -> float {slopes[k]!r}" in text
    assert caught[0].filename == __file__


def test_a_changed_tensor_shape_is_named_in_the_warning():
    m = _net()
    compiled = gd.compile(_slope_step(m), cache_size=1)
    rng = np.random.default_rng(0)
    limit = gd._compile.RECORD_WARNING_AFTER
    with pytest.warns(RuntimeWarning, match=r"argument 0 \(x\) changed: tensor of shape \(\d+, "
                                            r"20\) float32 -> tensor of shape \(\d+, 20\)"):
        for b in range(1, limit + 3):
            x = gd.tensor(rng.standard_normal((b, 20)).astype(np.float32))
            compiled(x, gd.zeros(b, 5), 0.1)


@pytest.mark.parametrize("size, exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                        (None, TypeError)])
def test_cache_size_is_validated(size, exc):
    with pytest.raises(exc, match="cache_size"):
        gd.compile(lambda x: x, cache_size=size)


def test_a_scalar_argument_that_decides_control_flow_stays_part_of_the_key():
    # the float picks the activation in Python: a replay for another value must not repeat
    # the recorded choice, so each value has its own recording (no re-recording on a repeat)
    m1, m2 = _net(), _net()
    opt1, opt2 = gd.optim.SGD(m1.parameters(), lr=0.05), gd.optim.SGD(m2.parameters(), lr=0.05)

    def make(model, opt):
        def step(x, y, t):
            opt.zero_grad()
            h = model(x)
            out = gd.nn.functional.leaky_relu(h, 0.1) if t > 0.5 else gd.tanh(h)
            loss = gd.nn.functional.mse_loss(out, y)
            loss.backward()
            opt.step()
            return loss
        return step

    eager, compiled = make(m1, opt1), gd.compile(make(m2, opt2))
    data = _batches([1.0] * 12)
    ts = [0.2, 0.9, 0.2, 0.9, 0.7, 0.3, 0.2, 0.9, 0.7, 0.3, 0.2, 0.9]
    for (x, y), t in zip(data, ts):
        assert eager(x, y, t).item() == compiled(x, y, t).item()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
    assert compiled.stats["recorded"] == 4  # one per value
    assert compiled.stats["replayed"] == len(ts) - 4


def test_keyword_calls_do_not_take_the_one_call_entrys_place_in_the_order():
    # 0.2 is called with keywords (Python path only), then 0.1 through the one-call path:
    # 0.1 is the more recent, so a new signature evicts 0.2
    m1, m2 = _net(), _net()
    eager, compiled = _slope_step(m1), gd.compile(_slope_step(m2), cache_size=2)
    data = _batches([1.0] * 10)
    for k in range(3):
        x, y = data[k]
        assert eager(x, y, 0.1).item() == compiled(x, y, 0.1).item()
    for k, slope in [(3, 0.2), (4, 0.2), (5, 0.1), (6, 0.2)]:  # (0.1 gets the one-call path)
        x, y = data[k]
        kw = {"slope": slope} if slope == 0.2 else {}
        args = (x, y) if kw else (x, y, slope)
        assert eager(*args, **kw).item() == compiled(*args, **kw).item()
    hits = compiled._fast.hits
    x, y = data[7]
    assert eager(x, y, 0.1).item() == compiled(x, y, 0.1).item()
    assert compiled._fast.hits == hits + 1
    recorded = compiled.stats["recorded"]
    x, y = data[8]
    assert eager(x, y, 0.3).item() == compiled(x, y, 0.3).item()
    assert [sig.rsplit("float ", 1)[1] for sig, _ in _entries(compiled)] == ["0.1", "0.3"]
    x, y = data[9]
    assert eager(x, y, 0.1).item() == compiled(x, y, 0.1).item()
    assert compiled.stats["recorded"] == recorded + 1


def test_a_scalar_passed_as_a_0d_tensor_is_a_runtime_value():
    # The way to change a number on every call without recording again: a 0-d tensor argument
    # is read by the replay (its value copied in), the elementwise kernel scales the loss.
    def net():
        gd.manual_seed(0)
        return gd.nn.Sequential(gd.nn.Linear(4, 8), gd.nn.Tanh(), gd.nn.Linear(8, 2))

    def stepper(m):
        opt = gd.optim.SGD(m.parameters(), lr=0.1)

        def step(x, y, scale):
            opt.zero_grad()
            loss = gd.nn.functional.mse_loss(m(x), y) * scale
            loss.backward()
            opt.step()
            return loss

        return step

    m1, m2 = net(), net()
    eager, compiled = stepper(m1), gd.compile(stepper(m2))
    r = np.random.default_rng(0)
    for k in range(12):
        x = gd.tensor(r.standard_normal((5, 4)).astype(np.float32))
        y = gd.tensor(r.standard_normal((5, 2)).astype(np.float32))
        scale = gd.tensor(np.float32(1 + k / 10))
        assert eager(x, y, scale).item() == compiled(x, y, scale).item()
    assert compiled.stats == {"recorded": 1, "replayed": 11, "eager": 0}
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
