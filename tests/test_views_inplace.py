"""In-place ops and views: an in-place op on a tensor rewrites the history of the tensors that
view its memory, and an in-place op on a view rewrites the history of its base (PyTorch's
semantics). Each program below is checked against central differences of its own forward
values (which read memory, so they are right whatever the tape does) and, when PyTorch is
installed, against PyTorch's gradients on the same inputs.
"""

from __future__ import annotations

import graddesc as gd
import numpy as np
import pytest

X0 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]) / 4.0
W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])


def _f(lib):
    return lib.nn.functional


# Each program takes (lib, x, w) with x (2, 3) and w (2, 3) leaves and returns a scalar.
def p_row_view_then_base_mul(lib, x, w):
    a = x * 1
    v = a[1]
    a.mul_(2)
    return (v * v).sum()


def p_transpose_view_then_base_mul(lib, x, w):
    a = x * 1
    v = a.t()
    a.mul_(3)
    return (v * v * w.t()).sum()


def p_row_view_then_base_sub(lib, x, w):
    a = x * 1
    v = a[1]
    a.sub_(x * x)
    return (v * v).sum()


def p_row_view_then_setitem_on_base(lib, x, w):
    a = x * 1
    v = a[1]
    a[1] = x[0] * 5
    return (v * v).sum()


def p_column_view_then_base_mul(lib, x, w):
    a = x * 1
    v = a[:, 0]
    a.mul_(w)
    return (v * v).sum()


def p_view_sum(lib, x, w):
    a = x * 1
    v = a[1]
    a.mul_(x)
    return v.sum()


def p_view_into_linear(lib, x, w):
    a = x * 1
    v = a[1:]
    a.mul_(2)
    return _f(lib).linear(v, w).pow(2).sum()


def p_skip_connection_masked(lib, x, w):
    h = _f(lib).linear(x, w)  # (2, 2)
    skip = h[:, :1]
    mask = lib.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=h.dtype)
    h.mul_(mask)
    return (skip * h[:, 1:]).sum() + (h * h).sum()


def p_inplace_on_row_view(lib, x, w):
    a = x * 1
    a[1].mul_(w[0])
    return (a * a).sum()


def p_inplace_on_column_view(lib, x, w):
    a = x * 1
    a[:, 2].add_(x[:, 0] * w[:, 1])
    return (a * a * a).sum()


def p_view_of_view(lib, x, w):
    a = x * 1
    v = a[:, 1:]
    u = v[1]
    a.mul_(w)
    return (u * u).sum() + (v * 2).sum()


def p_overlapping_views(lib, x, w):
    a = x * 1
    v1 = a[:, 1:]
    v2 = a[1]
    v1.mul_(x[:, :2])
    return (v2 * v2).sum() + (a * a).sum()


def p_expanded_view(lib, x, w):
    a = x * 1
    e = a[0].unsqueeze(0).expand(4, 3)
    a.mul_(w)
    return (e * e).sum()


def p_reshaped_view(lib, x, w):
    a = x * 1
    v = a.view(3, 2)
    a.add_(x * w)
    return (v ** 3).sum()


def p_copy_constant_into_view(lib, x, w):
    a = x * 1
    a[0].copy_(lib.ones(3, dtype=x.dtype))
    return (a * a * w).sum()


def p_zero_a_column_view(lib, x, w):
    a = x * 1
    a[:, 1].zero_()
    return (a * a).sum()


def p_fill_a_view(lib, x, w):
    a = x * 1
    v = a[1]
    v.fill_(2.0)
    return (a * w).sum() + (v * v).sum()


def p_setitem_on_view(lib, x, w):
    a = x * 1
    v = a[1]
    v[0] = x[0, 0] * 3
    return (a * a).sum()


def p_copy_constant_into_base(lib, x, w):
    a = x * 1
    v = a[0]
    a.copy_(lib.ones(2, 3, dtype=x.dtype))
    return (a * w).sum() + (v * x[1]).sum()


def p_view_reads_inplace_of_view(lib, x, w):
    a = x * 1
    v = a[0]
    u = a[:, 0]
    v.mul_(w[1])
    return (u * u).sum()


def p_chain_of_inplace(lib, x, w):
    a = x * 1
    a.mul_(2)
    a[0].add_(a[1])
    a.t()[1].mul_(w[0, :2])
    return (a * a).sum()


def p_base_not_requiring_grad(lib, x, w):
    a = lib.zeros(2, 3, dtype=x.dtype)
    v = a[1]
    a.copy_(x * w)
    return (v * v).sum()


def p_view_of_constant_gets_grad_values(lib, x, w):
    a = lib.zeros(2, 3, dtype=x.dtype)
    v = a[:, 1]
    v.copy_(x[:, 2])
    return (a * w).sum() + (v * v).sum()


def p_div_inplace_keeps_the_numerator(lib, x, w):
    a = x * 1
    a.div_(w + 3)
    return (a * a).sum()


def p_clamp_inplace_keeps_its_input(lib, x, w):
    a = x * w
    a.clamp_(-0.3, 0.7)  # no element sits on a bound
    return (a * a * a).sum()


def p_mul_inplace_by_a_tensor_keeps_self(lib, x, w):
    a = x * 1
    a.mul_(w)
    a[0].div_(x[1] + 1)
    return (a * a).sum()


PROGRAMS = [
    p_div_inplace_keeps_the_numerator, p_clamp_inplace_keeps_its_input,
    p_mul_inplace_by_a_tensor_keeps_self,
    p_row_view_then_base_mul, p_transpose_view_then_base_mul, p_row_view_then_base_sub,
    p_row_view_then_setitem_on_base, p_column_view_then_base_mul, p_view_sum,
    p_view_into_linear, p_skip_connection_masked, p_inplace_on_row_view,
    p_inplace_on_column_view, p_view_of_view, p_overlapping_views, p_expanded_view,
    p_reshaped_view, p_copy_constant_into_view, p_zero_a_column_view, p_fill_a_view,
    p_setitem_on_view, p_copy_constant_into_base, p_view_reads_inplace_of_view,
    p_chain_of_inplace, p_base_not_requiring_grad, p_view_of_constant_gets_grad_values,
]


def _gd_grads(prog, x0=X0, w0=W0):
    x = gd.tensor(x0, dtype=gd.float64, requires_grad=True)
    w = gd.tensor(w0, dtype=gd.float64, requires_grad=True)
    loss = prog(gd, x, w)
    loss.backward()
    return float(loss.item()), _grad(x), _grad(w)


def _grad(t):
    """t.grad as a NumPy array (zeros when t took no part: graddesc and PyTorch leave None)."""
    return np.zeros(tuple(t.shape)) if t.grad is None else np.array(t.grad.detach().numpy())


def _value(prog, x0, w0):
    with gd.no_grad():
        return float(prog(gd, gd.tensor(x0, dtype=gd.float64),
                          gd.tensor(w0, dtype=gd.float64)).item())


def _central(prog, which, eps=1e-6):
    base = [X0.copy(), W0.copy()]
    out = np.zeros_like(base[which])
    for i in np.ndindex(out.shape):
        up = [b.copy() for b in base]
        dn = [b.copy() for b in base]
        up[which][i] += eps
        dn[which][i] -= eps
        out[i] = (_value(prog, *up) - _value(prog, *dn)) / (2 * eps)
    return out


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: p.__name__[2:])
def test_views_inplace_gradients_match_finite_differences(prog):
    loss, gx, gw = _gd_grads(prog)
    assert loss == pytest.approx(_value(prog, X0, W0), rel=1e-12)
    np.testing.assert_allclose(gx, _central(prog, 0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, _central(prog, 1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: p.__name__[2:])
def test_views_inplace_gradients_match_torch(prog):
    torch = pytest.importorskip("torch")
    x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    loss = prog(torch, x, w)
    loss.backward()
    got = _gd_grads(prog)
    assert got[0] == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(got[1], _grad(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[2], _grad(w), rtol=1e-12, atol=1e-12)


def test_issue_example_row_view_after_base_mul():
    # The report's first case: backward ignored the in-place op made after the view.
    x = gd.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    a = x * 1
    v = a[1]
    a.mul_(2)
    (v * v).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 0], [32, 40, 48]])


@pytest.mark.parametrize("prog", [p_row_view_then_base_mul, p_inplace_on_row_view,
                                  p_view_of_view, p_expanded_view, p_chain_of_inplace],
                         ids=lambda p: p.__name__[2:])
def test_views_inplace_second_order(prog):
    def f(x, w):
        return prog(gd, x, w)

    x = gd.tensor(X0, dtype=gd.float64, requires_grad=True)
    w = gd.tensor(W0, dtype=gd.float64, requires_grad=True)
    assert gd.autograd.gradgradcheck(f, (x, w))


def test_views_inplace_float32_matches_float64():
    for prog in PROGRAMS:
        x = gd.tensor(X0, dtype=gd.float32, requires_grad=True)
        w = gd.tensor(W0, dtype=gd.float32, requires_grad=True)
        prog(gd, x, w).backward()
        _, gx, gw = _gd_grads(prog)
        np.testing.assert_allclose(_grad(x), gx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_grad(w), gw, rtol=1e-5, atol=1e-5)
        assert x.grad is None or x.grad.dtype == gd.float32


def test_inplace_on_a_view_of_a_leaf_that_requires_grad_raises():
    x = gd.tensor(X0, requires_grad=True)
    for op in (lambda v: v.mul_(2), lambda v: v.zero_(), lambda v: v.copy_(gd.ones(3)),
               lambda v: v.__setitem__(0, 1.0)):
        with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
            op(x[1])
    np.testing.assert_array_equal(x.detach().numpy(), X0.astype(np.float32))


def test_inplace_in_grad_mode_on_a_view_made_under_no_grad_raises():
    x = gd.tensor(X0, requires_grad=True)
    a = x * 1
    with gd.no_grad():
        v = a[1]
    with pytest.raises(RuntimeError, match="created in no_grad mode"):
        v.mul_(2)
    with gd.no_grad():
        v.mul_(2)  # allowed without grad mode, as in PyTorch
    np.testing.assert_allclose(a.detach().numpy()[1], 2 * X0[1], rtol=1e-6)


def test_inplace_on_detached_view_is_allowed_and_caught_by_saved_version():
    x = gd.tensor(X0, dtype=gd.float64, requires_grad=True)
    y = x.exp()  # saves its output
    y.detach().mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_views_of_a_base_without_history_keep_none():
    a = gd.zeros(2, 3)
    v = a[0]
    a.add_(1.0)
    assert v.grad_fn is None and not v.requires_grad
    np.testing.assert_array_equal(v.numpy(), [1, 1, 1])


def test_view_history_names_the_view_node():
    x = gd.tensor(X0, requires_grad=True)
    a = x * 1
    v = a[1]
    a.mul_(2)
    assert v.requires_grad and v.grad_fn is not None
    assert v.grad_fn.name() == "ViewGatherBackward"
    assert a.grad_fn.name() == "MulBackward"
    a[0].zero_()
    assert a.grad_fn.name() == "CopySlicesBackward"


def test_many_short_lived_views_do_not_accumulate():
    x = gd.tensor(X0, requires_grad=True)
    a = x * 1
    for i in range(1000):
        (a[i % 2] * 2).sum()
    assert len(a._views) <= 64 + 1
    a.mul_(2)
    assert len(a._views) == 0
