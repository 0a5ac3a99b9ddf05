"""functional/linalg_extra.py (einsum, tensordot, addmm family, mv, dot, vdot, cdist, diag,
diagonal, trace, kron, cross): forward against NumPy (and PyTorch when installed), gradients
against PyTorch and float64 gradcheck, broadcasting/negative dims/empty tensors, bad input, and a
compiled training step using them equal to eager."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from _torch_compare import _g, _t, _tol, _vs_torch, needs_torch, torch  # noqa: F401
from graddesc.autograd import gradcheck

EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),
    ("...ij,...jk", [(2, 1, 3, 4), (3, 4, 5)]),
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("iij->j", [(3, 3, 2)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ijk->kj", [(2, 3, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ab,cd,bd->ac", [(2, 3), (4, 5), (3, 5)]),
    ("i...->...", [(3, 2, 4)]),
    ("...,...->...", [(2, 3), (3,)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("ij,kj->", [(0, 4), (3, 4)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM_CASES)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_einsum_vs_numpy(eq, shapes, dt):
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal(s).astype(dt) for s in shapes]
    out = gd.einsum(eq, *[_g(a) for a in arrs])
    want = np.einsum(eq, *[a.astype(np.float64) for a in arrs])
    assert out.dtype == gd.float32 if dt == np.float32 else gd.float64
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5 if dt == np.float32 else 1e-12,
                               atol=1e-5 if dt == np.float32 else 1e-12)


@needs_torch
@pytest.mark.parametrize("eq,shapes", EINSUM_CASES)
def test_einsum_vs_torch_grad(eq, shapes):
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal(s) for s in shapes]
    _vs_torch(lambda *x: gd.einsum(eq, *x), lambda *x: torch.einsum(eq, *x), arrs)


@pytest.mark.parametrize("eq,shapes", [c for c in EINSUM_CASES if 0 not in sum(c[1], ())])
def test_einsum_gradcheck(eq, shapes):
    rng = np.random.default_rng(2)
    ins = tuple(_g(rng.standard_normal(s), True) for s in shapes)
    assert gradcheck(lambda *x: gd.einsum(eq, *x), ins)


def test_einsum_list_operands_and_errors():
    a = gd.ones(2, 3)
    assert gd.einsum("ij->j", [a]).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="operand"):
        gd.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError, match="shape"):
        gd.einsum("ijk->i", a)
    with pytest.raises(ValueError, match="sizes 3 and 4"):
        gd.einsum("ij,jk->ik", a, gd.ones(4, 2))
    with pytest.raises(ValueError, match="'z'"):
        gd.einsum("ij->z", a)
    with pytest.raises(TypeError, match="dtype"):
        gd.einsum("ij,jk->ik", a, gd.ones(3, 2, dtype=gd.float64))
    with pytest.raises(TypeError, match="operand 0"):
        gd.einsum("i->i", [1.0, 2.0], gd.ones(2))


@needs_torch
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_add_products_vs_torch(dt):
    rng = np.random.default_rng(3)
    r = rng.standard_normal
    _vs_torch(lambda i, a, b: gd.addmm(i, a, b, beta=0.5, alpha=-2.0),
              lambda i, a, b: torch.addmm(i, a, b, beta=0.5, alpha=-2.0),
              [r((1, 5)), r((3, 4)), r((4, 5))], dt)
    _vs_torch(lambda i, a, b: gd.addmv(i, a, b, alpha=3.0),
              lambda i, a, b: torch.addmv(i, a, b, alpha=3.0), [r(()), r((3, 4)), r((4,))], dt)
    _vs_torch(lambda i, a, b: gd.baddbmm(i, a, b, beta=2.0),
              lambda i, a, b: torch.baddbmm(i, a, b, beta=2.0),
              [r((3, 1)), r((2, 3, 4)), r((2, 4, 5))], dt)
    _vs_torch(lambda i, a, b: i.addbmm(a, b), lambda i, a, b: i.addbmm(a, b),
              [r((3, 5)), r((2, 3, 4)), r((2, 4, 5))], dt)
    _vs_torch(gd.mv, torch.mv, [r((3, 4)), r((4,))], dt)
    _vs_torch(gd.dot, torch.dot, [r((4,)), r((4,))], dt)
    _vs_torch(gd.vdot, torch.vdot, [r((4,)), r((4,))], dt)
    _vs_torch(lambda a, b: a.dot(b), lambda a, b: a.dot(b), [r((0,)), r((0,))], dt)


def test_addmm_beta_zero_ignores_nan():
    out = gd.addmm(gd.full((2, 2), float("nan")), gd.eye(2), gd.eye(2), beta=0)
    assert out.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_products_gradcheck():
    rng = np.random.default_rng(4)
    r = rng.standard_normal
    assert gradcheck(lambda i, a, b: gd.addmm(i, a, b, beta=0.5, alpha=2.0),
                     (_g(r((3, 5)), True), _g(r((3, 4)), True), _g(r((4, 5)), True)))
    assert gradcheck(gd.mv, (_g(r((3, 4)), True), _g(r(4), True)))
    assert gradcheck(lambda a, b: gd.tensordot(a, b, dims=([0, 2], [1, 0])),
                     (_g(r((2, 3, 4)), True), _g(r((4, 2, 5)), True)))
    assert gradcheck(gd.kron, (_g(r((2, 3)), True), _g(r((3, 2)), True)))
    assert gradcheck(lambda a, b: gd.cross(a, b, dim=-1),
                     (_g(r((4, 3)), True), _g(r((4, 3)), True)))


def test_product_errors():
    with pytest.raises(ValueError, match=r"argument 'vec' must be 1-d, got shape \(2, 2\)"):
        gd.mv(gd.ones(3, 2), gd.ones(2, 2))
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(3,\)"):
        gd.mv(gd.ones(3, 2), gd.ones(3))
    with pytest.raises(TypeError, match="float32 and .*float64"):
        gd.dot(gd.ones(2), gd.ones(2, dtype=gd.float64))
    with pytest.raises(ValueError, match="same length"):
        gd.dot(gd.ones(2), gd.ones(3))
    with pytest.raises(ValueError, match="'input' of shape \\(4,\\)"):
        gd.addmm(gd.ones(4), gd.ones(2, 3), gd.ones(3, 2))
    with pytest.raises(ValueError, match="must be 3-d"):
        gd.baddbmm(gd.ones(2, 2), gd.ones(2, 2), gd.ones(2, 2))
    with pytest.raises(ValueError, match="size 3.*size 4"):
        gd.tensordot(gd.ones(2, 3), gd.ones(4, 2), dims=1)
    with pytest.raises(ValueError, match="size 3"):
        gd.cross(gd.ones(2, 4), gd.ones(2, 4), dim=1)


@needs_torch
@pytest.mark.parametrize("dims", [0, 1, 2, ([1, 0], [0, 1]), ([-1], [0])])
def test_tensordot_vs_torch(dims):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 3, 5))
    if dims == 2:
        b = rng.standard_normal((3, 4, 5))
    if dims == 1:
        b = rng.standard_normal((4, 5))
    if dims == ([1, 0], [0, 1]):
        b = rng.standard_normal((3, 2, 5))
    _vs_torch(lambda x, y: gd.tensordot(x, y, dims=dims),
              lambda x, y: torch.tensordot(x, y, dims=dims), [a, b])


@needs_torch
def test_tensordot_kron_cross_vs_torch():
    rng = np.random.default_rng(6)
    r = rng.standard_normal
    _vs_torch(gd.kron, torch.kron, [r((2, 3)), r((4,))])
    _vs_torch(gd.kron, torch.kron, [r((2, 1, 3)), r((2, 2))], np.float32)
    _vs_torch(gd.kron, torch.kron, [r((0, 2)), r((2, 2))])
    _vs_torch(lambda a, b: gd.cross(a, b, dim=1), lambda a, b: torch.cross(a, b, dim=1),
              [r((2, 3, 4)), r((1, 3, 4))])
    _vs_torch(lambda a, b: a.cross(b, dim=-1), lambda a, b: torch.linalg.cross(a, b, dim=-1),
              [r((5, 3)), r((5, 3))], np.float32)


@needs_torch
def test_diag_diagonal_trace_vs_torch():
    rng = np.random.default_rng(7)
    r = rng.standard_normal
    for k in (-2, -1, 0, 1, 3):
        _vs_torch(lambda x, k=k: gd.diag(x, k), lambda x, k=k: torch.diag(x, k), [r(3)])
        _vs_torch(lambda x, k=k: gd.diag(x, k), lambda x, k=k: torch.diag(x, k), [r((3, 4))])
        _vs_torch(lambda x, k=k: x.diagonal(k, -1, 0),
                  lambda x, k=k: x.diagonal(k, -1, 0), [r((3, 2, 4))])
    _vs_torch(gd.trace, torch.trace, [r((3, 4))])
    _vs_torch(gd.trace, torch.trace, [r((0, 4))])
    _vs_torch(lambda x: gd.diag(x), lambda x: torch.diag(x), [r(0)])
    assert gd.diag(gd.tensor([1, 2])).tolist() == [[1, 0], [0, 2]]
    assert gradcheck(lambda x: gd.diag(x, -1), (_g(r(3), True),))
    assert gradcheck(lambda x: gd.diagonal(x, 1, 2, 0), (_g(r((3, 2, 4)), True),))


def test_diag_errors():
    with pytest.raises(ValueError, match=r"1-d or 2-d, got shape \(2, 2, 2\)"):
        gd.diag(gd.ones(2, 2, 2))
    with pytest.raises(ValueError, match="at least 2"):
        gd.diagonal(gd.ones(3))
    with pytest.raises(ValueError, match="must differ"):
        gd.diagonal(gd.ones(3, 3), 0, 1, -1)
    with pytest.raises(ValueError, match="2-d"):
        gd.trace(gd.ones(3))


@needs_torch
@pytest.mark.parametrize("p", [0.0, 1.0, 1.5, 2.0, float("inf")])
@pytest.mark.parametrize("rows", [(4, 5), (30, 6)])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_cdist_vs_torch(p, rows, dt):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((2, rows[0], 3))
    b = rng.standard_normal((1, rows[1], 3))
    mm = p == 2 and rows[0] > 25
    tol = None
    if mm:  # the expansion cancels, in a different order than PyTorch's: no zero distance
        # (there both are rounding noise), a looser float32 tolerance
        tol = dict(rtol=1e-4, atol=1e-5) if dt == np.float32 else dict(rtol=1e-10, atol=1e-10)
    else:
        b[0, 0] = a[0, 0]  # a zero distance: value and gradient (0) as PyTorch's
    _vs_torch(lambda x, y: gd.cdist(x, y, p), lambda x, y: torch.cdist(x, y, p), [a, b], dt,
              grad=p != 0, tol=tol)


def test_cdist_modes_and_gradcheck():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((30, 3)), rng.standard_normal((4, 3))
    want = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    for mode in ("use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist",
                 "use_mm_for_euclid_dist_if_necessary"):
        np.testing.assert_allclose(gd.cdist(_g(a), _g(b), compute_mode=mode).numpy(), want,
                                   rtol=1e-12, atol=1e-12)
    for p in (1.0, 2.0, 3.0, float("inf")):
        assert gradcheck(lambda x, y, p=p: gd.cdist(x, y, p),
                         (_g(a[:5], True), _g(b, True)))
    with pytest.raises(ValueError, match="columns"):
        gd.cdist(gd.ones(2, 3), gd.ones(2, 4))
    with pytest.raises(ValueError, match="compute_mode"):
        gd.cdist(gd.ones(2, 3), gd.ones(2, 3), compute_mode="fast")
    with pytest.raises(TypeError, match="'x1' must be floating point"):
        gd.cdist(gd.ones(2, 3, dtype=gd.int64), gd.ones(2, 3))


def test_compiled_step_equals_eager():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    centers = rng.standard_normal((3, 4)).astype(np.float32)

    def run(compiled):
        w = gd.tensor(rng_w.copy(), requires_grad=True)
        opt = gd.optim.SGD([w], lr=0.1)

        def step(xb, c):
            opt.zero_grad()
            h = gd.einsum("bi,ij->bj", xb, w)
            d = gd.cdist(h, c, compute_mode="donot_use_mm_for_euclid_dist")
            loss = gd.addmm(d, h, gd.diag(gd.ones(4)).mm(c.T), beta=0.5).sum() \
                + gd.trace(w) + gd.dot(w.diagonal(), w.diagonal())
            loss.backward()
            opt.step()
            return loss

        f = gd.compile(step) if compiled else step
        out = [f(gd.tensor(x), gd.tensor(centers)).item() for _ in range(3)]
        return out, w.detach().numpy()

    rng_w = rng.standard_normal((4, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eager = run(False)
        comp = run(True)
    assert eager[0] == comp[0]
    np.testing.assert_array_equal(eager[1], comp[1])
