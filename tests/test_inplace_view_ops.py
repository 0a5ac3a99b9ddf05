"""unsqueeze_, squeeze_, transpose_, t_: in-place view ops (a change of shape, not of memory),
against PyTorch (when installed) and against the out-of-place ops."""

import numpy as np
import pytest

import graddesc as gd

torch = pytest.importorskip("torch")


def _both(fn):
    """fn(lib) run on graddesc and torch; returns both results as NumPy arrays / lists."""
    return fn(gd), fn(torch)


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


@pytest.mark.parametrize("op,args,shape", [
    ("unsqueeze_", (0,), (2, 3)), ("unsqueeze_", (-1,), (2, 3)), ("unsqueeze_", (1,), (4,)),
    ("squeeze_", (), (1, 3, 1)), ("squeeze_", (0,), (1, 3, 1)), ("squeeze_", (1,), (2, 3)),
    ("transpose_", (0, 2), (2, 3, 4)), ("transpose_", (-1, 0), (2, 3)), ("t_", (), (2, 3)),
    ("t_", (), (5,)),
])
def test_shape_values_and_gradient_match_torch(op, args, shape):
    def run(lib):
        a = lib.tensor(np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1.0,
                       requires_grad=True)
        b = a * 2.0
        out = getattr(b, op)(*args)
        assert out is b
        w = lib.tensor(np.linspace(-1, 1, b.numel(), dtype=np.float32).reshape(tuple(b.shape)))
        (b * w).sum().backward()
        return tuple(b.shape), _np(b), _np(a.grad)

    (gs, gv, gg), (ts, tv, tg) = _both(run)
    assert gs == ts
    np.testing.assert_array_equal(gv, tv)
    np.testing.assert_array_equal(gg, tg)


def test_a_leaf_that_requires_grad_is_refused_like_torch():
    a = gd.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="unsqueeze_: a leaf Variable that requires grad"):
        a.unsqueeze_(0)
    with gd.no_grad():
        a.unsqueeze_(0)  # (allowed under no_grad, as in torch)
    assert tuple(a.shape) == (1, 3)


@pytest.mark.parametrize("op,args", [("unsqueeze_", (0,)), ("transpose_", (0, 1)),
                                     ("squeeze_", ()), ("t_", ())])
def test_views_taken_before_follow_writes_and_gradients(op, args):
    """A view of the tensor taken before the in-place view op keeps seeing its elements: through
    writes after it, and in gradients (an in-place multiply regenerates the views)."""
    def run(lib):
        a = lib.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) + 1.0, requires_grad=True)
        base = (a * 1.0).reshape(2, 1, 3) if op == "squeeze_" else a * 1.0
        v = base[1] if op != "squeeze_" else base[1, 0]
        getattr(base, op)(*args)
        base.mul_(3.0)
        loss = (v * lib.tensor([1.0, 10.0, 100.0])).sum() + (base * base).sum()
        loss.backward()
        with lib.no_grad():
            base.add_(1.0)
        return _np(v).copy(), _np(a.grad), tuple(base.shape)

    (gv, gg, gs), (tv, tg, ts) = _both(run)
    assert gs == ts
    np.testing.assert_array_equal(gv, tv)
    np.testing.assert_array_equal(gg, tg)


def test_a_view_unsqueezed_in_place_writes_through_to_its_base():
    y = gd.arange(6.0).reshape(2, 3)
    w = y[1]
    w.unsqueeze_(0)
    assert tuple(w.shape) == (1, 3)
    w[0, 0] = 7.0
    assert y.tolist() == [[0.0, 1.0, 2.0], [7.0, 4.0, 5.0]]


def test_out_of_range_dims_raise_like_the_out_of_place_ops():
    x = gd.zeros(2, 3)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.unsqueeze_(3)
    assert tuple(x.shape) == (2, 3)  # unchanged by the failed call
    with pytest.raises(IndexError):
        x.transpose_(0, 2)
    assert tuple(x.shape) == (2, 3)
