"""Jacobian tools: jacobian, vjp, jvp, hessian, hvp, and the lecture's module_jacobians, checked
against closed forms and against backprop itself (chaining per-module Jacobians stage by stage
from the cost down gives exactly the gradients backward() gives)."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
from graddesc import nn
from graddesc.autograd.functional import hessian, hvp, jacobian, jvp, module_jacobians, vjp


def r(*shape, seed=0):
    return gd.randn(*shape, generator=gd.Generator().manual_seed(seed), dtype=gd.float64)


def test_jacobian_of_linear_map_is_the_matrix():
    A = r(3, 4)
    x = r(4, seed=1)
    J = jacobian(lambda v: A @ v, x)
    np.testing.assert_allclose(J.numpy(), A.numpy(), rtol=1e-14)


def test_jacobian_of_elementwise_tanh_is_diagonal():
    x = r(5)
    J = jacobian(gd.tanh, x)
    np.testing.assert_allclose(J.numpy(), np.diag(1 - np.tanh(x.numpy()) ** 2), rtol=1e-13)


def test_jacobian_multiple_inputs_and_outputs_shapes():
    a, b = r(2, 3), r(3, seed=1)
    (Ja, Jb), (Ka, Kb) = jacobian(lambda a, b: (a * b, (a @ b).sum()), (a, b))
    assert Ja.shape == (2, 3, 2, 3) and Jb.shape == (2, 3, 3)
    assert Ka.shape == (2, 3) and Kb.shape == (3,)
    np.testing.assert_allclose(Kb.numpy(), a.numpy().sum(0), rtol=1e-14)


def test_vjp_and_jvp_against_explicit_jacobian():
    A = r(3, 4)
    x = r(4, seed=1)

    def f(v):
        return (A @ v).tanh()

    J = jacobian(f, x).numpy()
    u, v = r(3, seed=2), r(4, seed=3)
    _, vj = vjp(f, x, u)
    _, jv = jvp(f, x, v)
    np.testing.assert_allclose(vj.numpy(), u.numpy() @ J, rtol=1e-12)
    np.testing.assert_allclose(jv.numpy(), J @ v.numpy(), rtol=1e-12)


def test_hessian_of_quadratic_form_is_symmetrised_matrix():
    A = r(4, 4)
    x = r(4, seed=1)
    H = hessian(lambda v: v @ (A @ v), x)
    np.testing.assert_allclose(H.numpy(), A.numpy() + A.numpy().T, rtol=1e-12)
    v = r(4, seed=2)
    _, hv = hvp(lambda v_: v_ @ (A @ v_), x, v)
    np.testing.assert_allclose(hv.numpy(), (A.numpy() + A.numpy().T) @ v.numpy(), rtol=1e-12)


def test_hessian_of_log_sum_exp_closed_form():
    x = r(5)
    H = hessian(lambda v: v.logsumexp(0), x).numpy()
    p = np.exp(x.numpy() - np.log(np.exp(x.numpy()).sum()))
    np.testing.assert_allclose(H, np.diag(p) - np.outer(p, p), rtol=1e-10, atol=1e-14)


def test_module_jacobians_of_linear_layer_closed_form():
    gd.manual_seed(0)
    lin = nn.Linear(4, 3).double()
    x = r(4, seed=5)
    Jx, Jw = module_jacobians(lin, x)
    W = lin.weight.detach().numpy()
    np.testing.assert_allclose(Jx.numpy(), W, rtol=1e-14)
    # d y_i / d W_jk = delta_ij x_k ; d y_i / d b_j = delta_ij
    expect_w = np.einsum("ij,k->ijk", np.eye(3), x.numpy())
    np.testing.assert_allclose(Jw["weight"].numpy(), expect_w, rtol=1e-14)
    np.testing.assert_allclose(Jw["bias"].numpy(), np.eye(3), rtol=1e-14)
    assert list(Jw) == ["weight", "bias"]


def test_module_jacobians_of_pointwise_nonlinearity():
    x = r(6)
    Jx, Jw = module_jacobians(nn.Sigmoid(), x)
    s = 1 / (1 + np.exp(-x.numpy()))
    np.testing.assert_allclose(Jx.numpy(), np.diag(s * (1 - s)), rtol=1e-13)
    assert Jw == {}


def test_chaining_module_jacobians_reproduces_backprop():
    """The lecture's backprop through a multi-stage graph: dC/dz_{k} = dC/dz_{k+1} J_x(k+1) and
    dC/dw_k = dC/dz_k J_w(k), multiplied from the cost down, equal what backward() computes."""
    gd.manual_seed(3)
    stages = [nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)]
    net = nn.Sequential(*stages).double()
    x = r(5, seed=7)
    target = r(2, seed=8)

    zs = [x]
    with gd.no_grad():
        for m in stages:
            zs.append(m(zs[-1]))
    # cost C = ||z_L - target||^2 ; dC/dz_L = 2 (z_L - target)
    dC = 2 * (zs[-1].numpy() - target.numpy())
    chained = {}
    for k in range(len(stages) - 1, -1, -1):
        Jx, Jw = module_jacobians(stages[k], zs[k])
        for name, J in Jw.items():
            out_n = int(np.prod(zs[k + 1].shape))
            chained[f"{k}.{name}"] = dC @ J.numpy().reshape(out_n, -1)
        dC = dC @ Jx.numpy().reshape(dC.size, -1)

    net.zero_grad()
    loss = ((net(x) - target) ** 2).sum()
    loss.backward()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(chained[name].reshape(p.shape), p.grad.numpy(), rtol=1e-12,
                                   atol=1e-14)
    # and the input gradient through the whole chain
    xg = x.detach().requires_grad_()
    ((net(xg) - target) ** 2).sum().backward()
    np.testing.assert_allclose(dC, xg.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_module_jacobians_validates_input():
    with pytest.raises(TypeError, match="Tensor"):
        module_jacobians(nn.Tanh(), np.zeros(3))
