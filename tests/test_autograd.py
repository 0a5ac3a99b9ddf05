"""The tape: backward engine, fan-out accumulation, broadcasting, graph freeing, version counters,
grad modes, custom Functions, autograd.grad with create_graph, gradcheck, detect_anomaly."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graddesc as gd
from graddesc.autograd import Function, gradcheck, gradgradcheck
from graddesc.autograd.gradcheck import GradcheckError


def r(*shape, seed=0):
    g = gd.Generator().manual_seed(seed)
    return gd.randn(*shape, generator=g, dtype=gd.float64, requires_grad=True)


def test_scalar_backward_matches_closed_form():
    x = gd.tensor([1.0, 2.0, 3.0], dtype=gd.float64, requires_grad=True)
    y = (x * x * 3.0 + 2.0 * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([1.0, 2.0, 3.0]) + 2)


def test_fan_out_sums_over_consumers():
    # z feeds three consumers: dC/dz = sum of the three contributions (the lecture's rule)
    x = gd.tensor(1.5, dtype=gd.float64, requires_grad=True)
    z = x * 2.0
    c = z * z + z.exp() + 3.0 * z
    c.backward()
    zv = 3.0
    np.testing.assert_allclose(x.grad.item(), 2.0 * (2 * zv + np.exp(zv) + 3.0), rtol=1e-14)


def test_grad_accumulates_until_zeroed():
    x = gd.tensor([1.0, -2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    (x * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


def test_grad_of_shared_gradient_is_not_aliased():
    a = gd.ones(3, requires_grad=True)
    b = gd.ones(3, requires_grad=True)
    (a + b).sum().backward()
    a.grad.add_(1.0)
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0, 1.0])


def test_broadcast_gradients_reduce_to_input_shape():
    a = r(4, 1, 3)
    b = r(5, 1, seed=1)
    c = r(3, seed=2)
    out = (a * b + c).sum()
    out.backward()
    av, bv = a.detach().numpy(), b.detach().numpy()
    np.testing.assert_allclose(a.grad.numpy(), np.broadcast_to(bv.sum(0), (4, 1, 3)) * 0 +
                               bv.sum() * np.ones((4, 1, 3)), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), np.full((5, 1), av.sum()), rtol=1e-12)
    np.testing.assert_allclose(c.grad.numpy(), np.full(3, 20.0))


def test_non_scalar_backward_needs_gradient():
    x = r(3)
    y = x * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        y.backward()
    y.backward(gd.tensor([1.0, 0.0, 2.0], dtype=gd.float64))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 4.0])


def test_backward_gradient_shape_checked():
    x = r(3)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(gd.ones(4, dtype=gd.float64))


def test_second_backward_through_freed_graph_raises():
    x = r(3)
    y = (x.tanh() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = r(3)
    y = (x.tanh() * 2).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1)


def test_no_grad_tensor_backward_raises():
    x = gd.ones(3)
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.sum().backward()


def test_long_chain_is_iterative():
    x = gd.tensor(1.0, dtype=gd.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_inplace_modification_of_saved_tensor_raises_naming_op():
    x = r(3)
    y = x.tanh()          # tanh saves its output
    z = y.sum()
    with gd.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*TanhBackward"):
        z.backward()


def test_inplace_on_leaf_requiring_grad_raises():
    x = r(3)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1.0)
    with gd.no_grad():
        x.add_(1.0)  # fine: this is how optimizers update parameters


def test_inplace_on_nonleaf_is_differentiable():
    x = r(4)
    y = x * 2.0
    y.mul_(3.0)
    y.add_(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, 7.0))


def test_inplace_relu_on_nonleaf_matches_out_of_place():
    x = r(6)
    y = x * 1.0
    y.relu_()
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (x.detach().numpy() > 0).astype(float))


def test_no_grad_and_enable_grad_context_and_decorator():
    x = r(2)
    with gd.no_grad():
        y = x * 2
        assert not gd.is_grad_enabled()
        with gd.enable_grad():
            z = x * 2
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None

    @gd.no_grad()
    def f(t):
        return t * 3

    assert f(x).grad_fn is None
    assert gd.is_grad_enabled()


def test_is_leaf_and_grad_fn():
    x = r(2)
    y = x * 2
    assert x.is_leaf and x.grad_fn is None
    assert not y.is_leaf and y.grad_fn is not None
    assert y.detach().is_leaf and not y.detach().requires_grad


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        gd.tensor([1, 2]).requires_grad_()


class _Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3.0 * g * x * x


def test_custom_function_and_needs_input_grad():
    x = r(5)
    y = _Cube.apply(x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.detach().numpy() ** 2, rtol=1e-14)
    assert gradcheck(_Cube.apply, (r(4),))
    assert gradgradcheck(_Cube.apply, (r(4),))

    seen = {}

    class Probe(Function):
        @staticmethod
        def forward(ctx, a, b):
            seen["needs"] = ctx.needs_input_grad
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g, None

    Probe.apply(r(2), gd.ones(2, dtype=gd.float64))
    assert seen["needs"] == (True, False)


def test_custom_function_wrong_number_of_grads():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return (g,)

    out = Bad.apply(r(2), r(2, seed=1))
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        out.sum().backward()


def _returning(make_grad):
    """A custom Function y = 2 x whose backward returns make_grad(g) instead of 2 g."""

    class XBack(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return make_grad(g)

    return XBack


@pytest.mark.parametrize("make_grad, got", [
    (lambda g: g.reshape(3, 2), "[3, 2]"),
    (lambda g: g.reshape(6), "[6]"),
    (lambda g: g[:1], "[1, 3]"),
    (lambda g: g.sum(), "[]"),
    (lambda g: g.reshape(2, 3, 1), "[2, 3, 1]"),
])
@pytest.mark.parametrize("create_graph", [False, True])
def test_custom_function_gradient_of_wrong_shape_raises(make_grad, got, create_graph):
    # PyTorch's rule: a gradient is summed down only when the input's shape broadcasts to it;
    # any other shape raises (a (3, 2) gradient for a (2, 3) input was reshaped, rows scrambled)
    x = r(2, 3)
    y = _returning(make_grad).apply(x)
    msg = ("Function XBackBackward returned an invalid gradient at index 0 - got " + got
           + " but expected shape compatible with [2, 3]")
    with pytest.raises(RuntimeError, match=re.escape(msg)):
        y.sum().backward(create_graph=create_graph)
    with pytest.raises(RuntimeError, match="invalid gradient at index 0"):
        gd.autograd.grad(y.sum(), x)
    assert x.grad is None


def test_custom_function_gradient_reduced_or_cast_like_pytorch():
    # a gradient the input's shape broadcasts to is summed over the broadcast axes; another
    # dtype is cast to the input's (PyTorch does both)
    x = r(2, 3)
    ones = np.ones((2, 3))
    cases = [
        (lambda g: g.expand(4, 2, 3), 4 * ones),
        (lambda g: g.reshape(1, 2, 3), ones),
        (lambda g: g.float() * 3.0, 3 * ones),
        (lambda g: gd.ones(2, 3, dtype=gd.int64), ones),
        (lambda g: gd.ones(2, 3, dtype=gd.bool), ones),
    ]
    for make_grad, want in cases:
        x.grad = None
        _returning(make_grad).apply(x).sum().backward()
        assert x.grad.dtype == gd.float64 and x.grad.shape == (2, 3)
        np.testing.assert_array_equal(x.grad.numpy(), want)
    x1 = r(1, 3)
    _returning(lambda g: g.expand(5, 3)).apply(x1).sum().backward()
    np.testing.assert_array_equal(x1.grad.numpy(), np.full((1, 3), 5.0))


def test_custom_function_wrong_shape_matches_torch():
    torch = pytest.importorskip("torch")

    class TBack(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return g.reshape(3, 2)

    with pytest.raises(RuntimeError) as want:
        TBack.apply(torch.ones(2, 3, requires_grad=True)).sum().backward()
    with pytest.raises(RuntimeError) as got:
        _returning(lambda g: g.reshape(3, 2)).apply(r(2, 3)).sum().backward()
    assert str(got.value) == str(want.value).replace("TBackBackward", "XBackBackward")


@pytest.mark.parametrize("make_grad", [lambda g: g.reshape(6), lambda g: g.reshape(3, 2),
                                       lambda g: (g, g)])
def test_gradcheck_fails_for_a_gradient_of_wrong_shape(make_grad):
    fn = _returning(make_grad).apply
    with pytest.raises(RuntimeError, match="invalid gradient|incorrect number of gradients"):
        gradcheck(fn, (r(2, 3),))
    assert gradcheck(fn, (r(2, 3),), raise_exception=False) is False


def test_gradgradcheck_accepts_one_tensor():
    # one Tensor is one input, as in gradcheck (it was split into its rows)
    x = r(2, 3)
    assert gradgradcheck(lambda t: (t ** 3).sum(1), x)
    assert gradgradcheck(lambda t: (t ** 3).sum(1), x, r(2, seed=3))

    class BadSecond(Function):  # d/dx x^3 = 3 x^2, but its own backward claims 0
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return t ** 3

        @staticmethod
        def backward(ctx, g):
            (t,) = ctx.saved_tensors
            return g * 3.0 * (t * t).detach()

    assert gradcheck(BadSecond.apply, x)
    assert gradgradcheck(BadSecond.apply, x, raise_exception=False) is False


def test_autograd_grad_does_not_touch_dot_grad():
    x = r(3)
    y = (x * x).sum()
    (g,) = gd.autograd.grad(y, x)
    np.testing.assert_allclose(g.numpy(), 2 * x.detach().numpy())
    assert x.grad is None


def test_autograd_grad_unused_input():
    x, z = r(3), r(3, seed=1)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        gd.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = gd.autograd.grad(y, [x, z], allow_unused=True)
    assert gz is None and gx is not None


def test_autograd_grad_wrt_intermediate():
    x = r(3)
    h = x * 3.0
    y = (h * h).sum()
    (gh,) = gd.autograd.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), 2 * h.detach().numpy())


def test_create_graph_second_derivative_closed_form():
    x = gd.tensor([0.3, -1.2, 2.0], dtype=gd.float64, requires_grad=True)
    y = (x.tanh() * x.exp()).sum()
    (g,) = gd.autograd.grad(y, x, create_graph=True)
    (h,) = gd.autograd.grad(g.sum(), x)
    xv = x.detach().numpy()
    t = np.tanh(xv)
    e = np.exp(xv)
    d1 = (1 - t * t) * e + t * e
    d2 = -2 * t * (1 - t * t) * e + 2 * (1 - t * t) * e + t * e
    np.testing.assert_allclose(g.detach().numpy(), d1, rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), d2, rtol=1e-12)


def test_double_backward_into_dot_grad():
    x = gd.tensor([1.0, 2.0], dtype=gd.float64, requires_grad=True)
    y = (x ** 3).sum()
    y.backward(create_graph=True)
    gx = x.grad
    x.grad = None
    gx.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([1.0, 2.0]))


def test_gradcheck_reports_input_and_element():
    class Wrong(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g * 0.0, g

    with pytest.raises(GradcheckError, match="input 0 .* analytic .* numeric"):
        gradcheck(Wrong.apply, (r(3), r(3, seed=1)))
    assert gradcheck(Wrong.apply, (r(3), r(3, seed=1)), raise_exception=False) is False


def test_detect_anomaly_names_op_and_origin():
    x = gd.tensor([0.0, 1.0], dtype=gd.float64, requires_grad=True)
    with gd.autograd.detect_anomaly():
        y = x.sqrt()  # d/dx sqrt at 0 is inf
        with pytest.raises(RuntimeError, match=r"SqrtBackward.*\n.*created at[\s\S]*test_autograd"):
            y.sum().backward()
    # without anomaly mode the inf gradient flows silently, like PyTorch
    x.grad = None
    x.sqrt().sum().backward()
    assert np.isinf(x.grad.numpy()[0])


def test_multi_output_function_grads_both_outputs():
    class Split(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0, x * 3.0

        @staticmethod
        def backward(ctx, g1, g2):
            return 2.0 * g1 + 3.0 * g2

    x = r(3)
    a, b = Split.apply(x)
    (a.sum() + (b * b).sum()).backward()
    xv = x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2.0 + 3.0 * 2 * 3 * xv, rtol=1e-13)
    # only one output used: the other's gradient is zeros
    x.grad = None
    a, b = Split.apply(x)
    b.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 3.0))


def test_version_counter_shared_by_views():
    x = gd.zeros(4)
    v = x[1:3]
    before = x._version
    v.add_(1.0)
    assert x._version == before + 1
    np.testing.assert_array_equal(x.numpy(), [0, 1, 1, 0])


def test_inplace_on_view_of_a_leaf_that_requires_grad_raises():
    x = r(4)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        x[1:3].add_(1.0)


def test_inplace_on_view_of_grad_tensor_rewrites_the_base_history():
    x = r(4)
    y = x * 1.0
    y[1:3].mul_(3.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 3, 3, 1])


def test_setitem_differentiable():
    x = r(4)
    v = r(2, seed=3)
    y = x * 1.0
    y[1:3] = v * 2.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 0, 0, 1])
    np.testing.assert_array_equal(v.grad.numpy(), [2, 2])


def test_numpy_on_requires_grad_raises():
    x = r(2)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    with pytest.raises(RuntimeError, match="detach"):
        np.asarray(x)
    assert x.detach().numpy().shape == (2,)


def test_float32_gradients_close_to_float64():
    x64 = r(6, 5)
    w64 = r(3, 5, seed=1)
    x32 = x64.detach().float().requires_grad_()
    w32 = w64.detach().float().requires_grad_()
    for x, w in ((x64, w64), (x32, w32)):
        y = gd.nn.functional.linear(x, w).tanh().softmax(1)
        (y * y).sum().backward()
    np.testing.assert_allclose(x32.grad.numpy(), x64.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w32.grad.numpy(), w64.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert x32.grad.dtype == gd.float32
