"""Tensors a compiled step creates from Python values (gd.zeros, ones, full, eye, arange, ...)
are constants of the recorded program: the step is captured and equals eager; random tensors
are not constants; a program that would write into such a constant is refused."""

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core


def _model(dtype, seed=0):
    gd.manual_seed(seed)
    lin = gd.nn.Linear(4, 3, dtype=dtype)
    return lin, gd.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)


def _constant_step(lin, opt, dtype):
    def step(x):
        opt.zero_grad()
        b = x.shape[0]
        h0 = gd.zeros(b, 3, dtype=dtype)
        bias = gd.ones(3, dtype=dtype) * 0.5 + gd.full((3,), 2.0, dtype=dtype)
        mix = gd.eye(3, dtype=dtype) + gd.linspace(0.0, 1.0, 3, dtype=dtype)
        ramp = gd.arange(3, dtype=dtype) + gd.ones_like(h0)[0] + gd.full_like(h0, 0.25)[1]
        h = (lin(x) + h0 + bias) @ mix + ramp + gd.zeros_like(x).sum()
        loss = (h * h).mean()
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_step_creating_constant_tensors_is_captured_and_equals_eager(dtype):
    lin1, opt1 = _model(dtype)
    lin2, opt2 = _model(dtype)
    eager = _constant_step(lin1, opt1, dtype)
    compiled = gd.compile(_constant_step(lin2, opt2, dtype))
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(5):
            x = gd.tensor(rng.standard_normal((6, 4)) * (k + 1), dtype=dtype)
            l1, l2 = eager(x), compiled(x)
            assert l1.item() == l2.item(), k
            for p1, p2 in zip(lin1.parameters(), lin2.parameters()):
                assert p1.detach().numpy().tobytes() == p2.detach().numpy().tobytes(), k
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= 3, compiled.stats


def test_random_tensors_made_in_the_step_are_drawn_anew():
    """gd.randn inside the step is not a constant: every replay draws new numbers (a host-fed
    input of the program), so it matches eager with the same seed on every call."""
    def make():
        lin, opt = _model(gd.float32, seed=1)

        def step(x):
            opt.zero_grad()
            loss = ((lin(x + gd.randn(*x.shape))) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        return step

    eager, compiled = make(), gd.compile(make())
    x = gd.ones(5, 4)
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no fallback warning: the draw is captured)
        for k in range(3):
            gd.manual_seed(10 + k)
            a = eager(x).item()
            gd.manual_seed(10 + k)
            b = compiled(x).item()
            assert a == b, k
            losses.append(b)
    assert len(set(losses)) == 3  # new noise every call
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= 1, compiled.stats


def test_a_kernel_writing_into_a_created_constant_is_refused():
    lin1, opt1 = _model(gd.float32)
    lin2, opt2 = _model(gd.float32)

    def make(lin, opt):
        def step(x):
            opt.zero_grad()
            buf = gd.zeros(3)
            y = lin(x).sum(0)
            # a kernel writing into buf's memory (what an in-place op on a kernel path does)
            _core.elementwise(_core.EW_OPS["add"], buf._data, y.detach()._data, out=buf._data)
            loss = ((y + buf) ** 2).sum()
            loss.backward()
            opt.step()
            return loss

        return step

    eager, compiled = make(lin1, opt1), gd.compile(make(lin2, opt2))
    with pytest.warns(RuntimeWarning, match=r"writes in place into a tensor it creates"):
        compiled(gd.ones(2, 4))
    eager(gd.ones(2, 4))
    for k in range(3):
        x = gd.full((2, 4), float(k))
        assert eager(x).item() == compiled(x).item(), k


def test_a_created_tensor_that_requires_grad_is_not_a_constant():
    gd.manual_seed(0)

    def step(x):
        w = gd.zeros(4, requires_grad=True)
        loss = ((x @ w + 1.0) ** 2).sum()
        loss.backward()
        return w.grad

    compiled = gd.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in range(3):
            x = gd.full((2, 4), float(k + 1))
            np.testing.assert_array_equal(compiled(x).numpy(), step(x).numpy())
