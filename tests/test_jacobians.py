"""Jacobian tools: jacobian, vjp, jvp, hessian, hvp, and the lecture's module_jacobians, checked
against closed forms and against backprop itself (chaining per-module Jacobians stage by stage
from the cost down gives exactly the gradients backward() gives)."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
from graddesc import nn
from graddesc.autograd.functional import (
    hessian,
    hvp,
    jacobian,
    jvp,
    module_jacobians,
    vhp,
    vjp,
)


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


def test_module_jacobians_leaves_frozen_parameters_out():
    gd.manual_seed(1)
    lin = nn.Linear(4, 3).double()
    lin.bias.requires_grad_(False)
    x = r(4, seed=5)
    Jx, Jw = module_jacobians(lin, x)
    assert list(Jw) == ["weight"]
    np.testing.assert_allclose(Jx.numpy(), lin.weight.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(Jw["weight"].numpy(), np.einsum("ij,k->ijk", np.eye(3), x.numpy()),
                               rtol=1e-14)
    lin.weight.requires_grad_(False)
    Jx, Jw = module_jacobians(lin, x)
    assert Jw == {}
    np.testing.assert_allclose(Jx.numpy(), lin.weight.detach().numpy(), rtol=1e-14)


# ---- v, strict and create_graph: torch.autograd.functional's contract ------------------------

def _cube_sum(z):
    return (z ** 3).sum()


def _cube(z):
    return z ** 3


# each function and an f for it: v pairs with the inputs, except vjp's with the outputs
_V_FUNCS = {"hvp": (hvp, _cube_sum), "vhp": (vhp, _cube_sum), "jvp": (jvp, _cube),
            "vjp": (vjp, _cube)}


@pytest.mark.parametrize("name", list(_V_FUNCS))
def test_v_of_the_wrong_shape_raises(name):
    # f = sum z^3 at [1, 2]: v = [[1], [0]], [1.0] or 1.0 were broadcast, giving H [1, 1]
    fn, f = _V_FUNCS[name]
    x = gd.tensor([1.0, 2.0], dtype=gd.float64)
    for bad, got in ((gd.tensor([[1.0], [0.0]]), r"\[2, 1\]"), (gd.tensor([1.0]), r"\[1\]"),
                     (gd.tensor([1.0, 0.0, 0.0]), r"\[3\]")):
        with pytest.raises(RuntimeError, match=r"v has invalid size: should be .*\[2\]\) but "
                                               rf"got .*{got}\)"):
            fn(f, x, bad)
    for bad in (1.0, [gd.tensor([1.0, 0.0])], np.ones(2)):
        with pytest.raises(TypeError, match=f"The v given to {name} must be either a Tensor or a "
                                            "tuple of Tensors"):
            fn(f, x, bad)
    with pytest.raises(RuntimeError, match="v can only be None"):
        fn(f, x)
    # the correct v gives the closed form: H = diag(6 z), J = diag(3 z^2)
    v = gd.tensor([1.0, 0.5], dtype=gd.float64)
    _, res = fn(f, x, v)
    diag = 6 * x.numpy() if name in ("hvp", "vhp") else 3 * x.numpy() ** 2
    np.testing.assert_allclose(res.numpy(), diag * v.numpy(), rtol=1e-14)
    # v=None is allowed for one single-element input (v = 1): 6 z = 3 z^2 = 12 at z = 2
    _, res = fn(f, gd.tensor([2.0], dtype=gd.float64))
    np.testing.assert_allclose(res.numpy(), [12.0], rtol=1e-14)


@pytest.mark.parametrize("name", ["hvp", "vhp", "jvp"])
def test_fewer_vs_than_inputs_raises(name):
    fn, _ = _V_FUNCS[name]
    a, b = r(2), r(2, seed=1)

    def f(p, q):
        out = p * q * p
        return out.sum() if name != "jvp" else out

    with pytest.raises(RuntimeError, match="v is a tuple of invalid length: should be 2 but "
                                           "got 1"):
        fn(f, (a, b), (gd.ones(2, dtype=gd.float64),))
    with pytest.raises(RuntimeError, match="v is a tuple of invalid length"):
        fn(f, (a, b), gd.ones(2, dtype=gd.float64))
    with pytest.raises(RuntimeError, match=r"Entry 1 in v has invalid size"):
        fn(f, (a, b), (gd.ones(2, dtype=gd.float64), gd.ones(3, dtype=gd.float64)))


def test_vjp_v_must_match_the_outputs():
    x = r(3)
    with pytest.raises(RuntimeError, match="The given v should contain a single Tensor"):
        vjp(_cube, x, (gd.ones(3, dtype=gd.float64), gd.ones(3, dtype=gd.float64)))
    with pytest.raises(RuntimeError, match="v can only be None if the user-provided function "
                                           "returns a single Tensor with a single element"):
        vjp(_cube, x)
    _, g = vjp(_cube_sum, x)
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2, rtol=1e-14)


@pytest.mark.parametrize("name", list(_V_FUNCS))
def test_strict_raises_where_an_output_is_independent_of_an_input(name):
    fn, _ = _V_FUNCS[name]
    a, b = r(2), r(2, seed=1)
    scalar = name != "jvp"
    v_out = gd.tensor(1.0, dtype=gd.float64) if name == "vjp" else None

    def indep(p, q):  # independent of q
        return (p ** 3).sum() if scalar else p ** 3

    vs = v_out if name == "vjp" else (gd.ones(2, dtype=gd.float64),) * 2
    _, res = fn(indep, (a, b), vs)  # not strict: zeros for q
    if name == "jvp":  # one output: J_p v_p + J_q v_q with J_q = 0
        np.testing.assert_allclose(res.numpy(), 3 * a.numpy() ** 2, rtol=1e-14)
    else:
        np.testing.assert_array_equal(res[1].numpy(), 0.0)
    with pytest.raises(RuntimeError, match="independent of input 1. This is not allowed in "
                                           "strict mode"):
        fn(indep, (a, b), vs, strict=True)

    def constant(p):
        return p.sum() * 0.0 + 1.0 if scalar else p * 0.0 + 1.0

    vs1 = v_out if name == "vjp" else gd.ones(2, dtype=gd.float64)
    with gd.no_grad():
        detached_out = gd.ones(()) if scalar else gd.ones(2)
    with pytest.raises(RuntimeError, match="Output 0 of the user-provided function does not "
                                           "require gradients"):
        fn(lambda p: detached_out, a, vs1, strict=True)
    _, res = fn(lambda p: detached_out, a, vs1)  # not strict: zeros
    np.testing.assert_array_equal(res.numpy(), 0.0)
    if name in ("hvp", "vhp"):
        # a linear f has a constant gradient: its Hessian is "independent of the input"
        with pytest.raises(RuntimeError, match="the jacobian of the user-provided function with "
                                               "respect to input 0 is independent"):
            fn(lambda p: (2.0 * p).sum(), a, vs1, strict=True)
        _, res = fn(lambda p: (2.0 * p).sum(), a, vs1)
        np.testing.assert_array_equal(res.numpy(), 0.0)
    _, res = fn(constant, a, vs1)
    np.testing.assert_array_equal(res.numpy(), 0.0)


@pytest.mark.parametrize("name", list(_V_FUNCS))
def test_create_graph_gives_differentiable_results(name):
    fn, f = _V_FUNCS[name]
    x = gd.tensor([1.0, 2.0], dtype=gd.float64, requires_grad=True)
    v = gd.tensor([1.0, 0.5], dtype=gd.float64)
    out, res = fn(f, x, v, create_graph=True)
    assert out.requires_grad and res.requires_grad
    # d/dx sum(res): hvp/vhp res = 6 x v -> 6 v; jvp/vjp res = 3 x^2 v -> 6 x v
    (g,) = gd.autograd.grad(res.sum(), x)
    want = 6 * v.numpy() if name in ("hvp", "vhp") else 6 * x.detach().numpy() * v.numpy()
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-14)
    out, res = fn(f, x, v)
    assert not out.requires_grad and not res.requires_grad


def test_jacobian_and_hessian_strict():
    a, b = r(2), r(3, seed=1)
    with pytest.raises(RuntimeError, match="Output 0 of the user-provided function is "
                                           "independent of input 1"):
        jacobian(lambda p, q: p ** 2, (a, b), strict=True)
    _, Jb = jacobian(lambda p, q: p ** 2, (a, b))
    np.testing.assert_array_equal(Jb.numpy(), 0.0)
    with pytest.raises(RuntimeError, match="jacobian of the user-provided function is "
                                           "independent of input 0. This is not allowed in "
                                           "strict mode when create_graph=True"):
        jacobian(lambda p: 2.0 * p, a, strict=True, create_graph=True)
    with pytest.raises(RuntimeError, match="the jacobian of the user-provided function with "
                                           "respect to input 0 is independent"):
        hessian(lambda p: (2.0 * p).sum(), a, strict=True)
    H = hessian(lambda p: (p ** 3).sum(), a, strict=True, create_graph=True)
    np.testing.assert_allclose(H.detach().numpy(), np.diag(6 * a.numpy()), rtol=1e-14)
    assert H.requires_grad


def test_v_and_strict_match_torch():
    torch = pytest.importorskip("torch")
    import torch.autograd.functional as TA

    import graddesc.autograd.functional as GA

    def outcome(lib, A, name, case):
        T = lib.tensor
        x = T([1.0, 2.0], dtype=lib.float64)
        scalar = name != "jvp"
        cube = (lambda z: (z ** 3).sum()) if scalar else (lambda z: z ** 3)
        lin = (lambda z: (2.0 * z).sum()) if scalar else (lambda z: 2.0 * z)
        two = (lambda p, q: (p * q * p).sum()) if scalar else (lambda p, q: p * q * p)
        vx = T(1.5, dtype=lib.float64) if name == "vjp" else T([1.0, 0.5], dtype=lib.float64)
        calls = {
            "v21": lambda: A.__dict__[name](cube, x, T([[1.0], [0.0]], dtype=lib.float64)),
            "v1": lambda: A.__dict__[name](cube, x, T([1.0], dtype=lib.float64)),
            "float": lambda: A.__dict__[name](cube, x, 1.0),
            "none": lambda: A.__dict__[name](cube, x),
            "short": lambda: A.__dict__[name](two, (x, x), (T([1.0, 0.5], dtype=lib.float64),)),
            "strict_lin": lambda: A.__dict__[name](lin, x, vx, strict=True),
            "strict_lin_cg": lambda: A.__dict__[name](lin, x, vx, strict=True, create_graph=True),
            "ok": lambda: A.__dict__[name](cube, x, vx),
        }
        try:
            out, res = calls[case]()
        except (RuntimeError, TypeError) as e:
            return type(e).__name__, str(e).replace("torch.Size", "graddesc.Size")
        return "ok", np.round(res.detach().numpy(), 12).tolist(), bool(res.requires_grad)

    for name in ("hvp", "vhp", "jvp", "vjp"):
        for case in ("v21", "v1", "float", "none", "short", "strict_lin", "strict_lin_cg", "ok"):
            assert outcome(gd, GA, name, case) == outcome(torch, TA, name, case), (name, case)
