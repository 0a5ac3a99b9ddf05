"""Dropout masks drawn by a kernel from the generator's counter-based stream: their statistics,
reproducibility from a seed, generator state save/restore, and compiled steps with dropout that
are captured and draw the same masks as the eager steps (a fresh mask every call)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core
from graddesc.nn import functional as F


def test_mask_statistics_and_scale() -> None:
    gd.manual_seed(1)
    p = 0.3
    out = F.dropout(gd.ones(200_000), p=p)
    a = out.numpy()
    kept = a != 0
    np.testing.assert_array_equal(a[kept], np.float32(1 / (1 - p)))  # kept values are scaled
    # binomial: 200k draws, the kept fraction within 5 standard deviations of 1 - p
    sd = np.sqrt(p * (1 - p) / a.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sd
    # neighbours are independent: P(both kept) ~ (1 - p)^2
    both = (kept[1:] & kept[:-1]).mean()
    assert abs(both - (1 - p) ** 2) < 0.01


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_seeded_runs_repeat_and_calls_differ(dtype) -> None:
    gd.manual_seed(123)
    a = F.dropout(gd.ones(1000, dtype=dtype), 0.5).numpy()
    b = F.dropout(gd.ones(1000, dtype=dtype), 0.5).numpy()
    assert not np.array_equal(a, b)  # the stream advances
    gd.manual_seed(123)
    np.testing.assert_array_equal(F.dropout(gd.ones(1000, dtype=dtype), 0.5).numpy(), a)
    np.testing.assert_array_equal(F.dropout(gd.ones(1000, dtype=dtype), 0.5).numpy(), b)


def test_generator_argument_and_state_round_trip() -> None:
    g = gd.Generator().manual_seed(7)
    first = F.dropout(gd.ones(64), 0.5, generator=g).numpy()
    state = g.get_state()
    second = F.dropout(gd.ones(64), 0.5, generator=g).numpy()
    g.set_state(state)
    np.testing.assert_array_equal(F.dropout(gd.ones(64), 0.5, generator=g).numpy(), second)
    g2 = gd.Generator().manual_seed(7)
    np.testing.assert_array_equal(F.dropout(gd.ones(64), 0.5, generator=g2).numpy(), first)
    with pytest.raises(TypeError, match="graddesc.Generator"):
        F.dropout(gd.ones(3), 0.5, generator=np.random.default_rng(0))


def test_gradient_is_the_mask() -> None:
    gd.manual_seed(3)
    x = gd.randn(50, dtype=gd.float64, requires_grad=True)
    y = F.dropout(x, 0.4)
    y.sum().backward()
    mask = y.detach().numpy() / x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), mask, rtol=1e-12)


def test_p_edges() -> None:
    x = gd.randn(10)
    np.testing.assert_array_equal(F.dropout(x, 0.0).numpy(), x.numpy())
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros(10, np.float32))
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False).numpy(), x.numpy())


def test_binding_rejects_bad_arguments() -> None:
    st = np.zeros(2, np.uint64)
    with pytest.raises(TypeError, match="'state' must have dtype uint64"):
        _core.dropout_mask([3], 0.5, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="'state' expected shape"):
        _core.dropout_mask([3], 0.5, np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match="'p' must be in"):
        _core.dropout_mask([3], 1.0, st)
    with pytest.raises(ValueError, match="negative size"):
        _core.dropout_mask([-1], 0.5, st)
    ro = np.zeros(2, np.uint64)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        _core.dropout_mask([3], 0.5, ro)


def _model(seed: int, dtype):
    gd.manual_seed(seed)
    m = gd.nn.Sequential(gd.nn.Linear(6, 16), gd.nn.ReLU(), gd.nn.Dropout(0.3),
                         gd.nn.Linear(16, 3)).to(dtype)
    opt = gd.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    return m, step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_compiled_step_with_dropout_equals_eager(dtype) -> None:
    m_e, step_e = _model(0, dtype)
    m_c, step_c = _model(0, dtype)
    compiled = gd.compile(step_c)
    rng = np.random.default_rng(0)
    data = [(gd.tensor(rng.standard_normal((8, 6))).to(dtype), gd.tensor(rng.integers(0, 3, 8)))
            for _ in range(5)]
    gd.manual_seed(99)
    eager = [step_e(x, y).item() for x, y in data]
    gd.manual_seed(99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        comp = [compiled(x, y).item() for x, y in data]
    assert comp == eager  # the same masks, drawn anew each call
    for a, b in zip(m_e.parameters(), m_c.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    names = [n for e in compiled._cache.values() if getattr(e, "program", None) is not None
             for n in e.program.names()]
    assert "dropout_mask" in names
    # the eager stream continues where the compiled calls left it
    gd.manual_seed(99)
    for x, y in data:
        step_e(x, y)
    after_eager = F.dropout(gd.ones(32), 0.5).numpy()
    gd.manual_seed(99)
    for x, y in data:
        compiled(x, y)
    np.testing.assert_array_equal(F.dropout(gd.ones(32), 0.5).numpy(), after_eager)


def test_compiled_masks_change_between_calls() -> None:
    gd.manual_seed(5)

    def step(x):
        return F.dropout(x, 0.5) * 1.0

    compiled = gd.compile(step)
    x = gd.ones(256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [compiled(x).numpy().copy() for _ in range(4)]
    assert all(not np.array_equal(outs[i], outs[i + 1]) for i in range(3))


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_mask_is_the_same_for_any_thread_count(dtype) -> None:
    """Each element's draw depends on its position in the stream only (fixed chunks)."""
    before = gd.get_num_threads()
    masks = []
    try:
        for n in (1, 2, 3):
            gd.set_num_threads(n)
            gd.manual_seed(11)
            masks.append(F.dropout(gd.ones(1 << 20, dtype=dtype), 0.25).numpy())
    finally:
        gd.set_num_threads(before)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])
