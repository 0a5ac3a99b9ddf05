"""functional/shape_extra.py and math_extra.py: forward against NumPy/math (and PyTorch when
installed), gradients against PyTorch and float64 gradcheck, dims/negative dims/empty tensors,
the Tensor-method and in-place forms, bad input, and a compiled step equal to eager."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import graddesc as gd
from _torch_compare import _g, _t, _tol, _vs_torch, needs_torch, torch  # noqa: F401
from graddesc.autograd import gradcheck


# ---- shape ----------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_shape_utilities_vs_torch(dt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    cases = [
        (lambda m: lambda t: m.movedim(t, (0, -1), (2, 0))),
        (lambda m: lambda t: m.moveaxis(t, 1, -1)),
        (lambda m: lambda t: t.movedim(-1, 0)),
        (lambda m: lambda t: m.swapaxes(t, 0, -1)),
        (lambda m: lambda t: t.swapdims(1, 2)),
        (lambda m: lambda t: m.narrow(t, -1, 1, 2)),
        (lambda m: lambda t: t.narrow(0, -1, 1)),
        (lambda m: lambda t: m.roll(t, 2)),
        (lambda m: lambda t: m.roll(t, (1, -5), (0, 2))),
        (lambda m: lambda t: t.roll(-1, 1)),
        (lambda m: lambda t: m.tile(t, (2,))),
        (lambda m: lambda t: m.tile(t, (2, 1, 1, 2))),
        (lambda m: lambda t: m.repeat_interleave(t, 2)),
        (lambda m: lambda t: t.repeat_interleave(3, dim=-2)),
        (lambda m: lambda t: m.diff(t)),
        (lambda m: lambda t: m.diff(t, n=2, dim=1)),
        (lambda m: lambda t: m.diff(t, dim=0, prepend=t[:1] * 2, append=t)),
        (lambda m: lambda t: m.rot90(t)),
        (lambda m: lambda t: m.rot90(t, 2, (1, 2))),
        (lambda m: lambda t: t.rot90(-1, (0, 2))),
        (lambda m: lambda t: m.rot90(t, 3, (2, 0))),
    ]
    for c in cases:
        _vs_torch(c(gd), c(torch), [x], dt)


@needs_torch
def test_index_ops_vs_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    src = rng.standard_normal((4, 2))
    ind = np.array([2, 0])
    rep = np.array([0, 2])
    _vs_torch(lambda a, s: gd.index_add(a, 1, _g(rep), s[:, :2], alpha=2.0),
              lambda a, s: torch.index_add(a, 1, _t(rep), s[:, :2], alpha=2.0), [x, src])
    _vs_torch(lambda a, s: a.index_copy(1, _g(ind), s), lambda a, s: a.index_copy(1, _t(ind), s),
              [x, src])
    _vs_torch(lambda a: a.index_fill(0, _g(np.array([-1, 1])), 7.5),
              lambda a: a.index_fill(0, _t(np.array([-1, 1])), 7.5), [x])
    _vs_torch(lambda a: a.index_add(0, _g(np.array([1, 1, 3])), a[:3]),
              lambda a: a.index_add(0, _t(np.array([1, 1, 3])), a[:3]), [x])
    order = np.argsort(x, axis=1)
    _vs_torch(lambda a: gd.take_along_dim(a, _g(order), 1),
              lambda a: torch.take_along_dim(a, _t(order), 1), [x])
    _vs_torch(lambda a: gd.take_along_dim(a, _g(np.array([[0], [2]])[None]), -1),
              lambda a: torch.take_along_dim(a, _t(np.array([[0], [2]])[None]), -1),
              [rng.standard_normal((3, 1, 4))])
    _vs_torch(lambda a: gd.take_along_dim(a, _g(np.array([5, 0]))),
              lambda a: torch.take_along_dim(a, _t(np.array([5, 0]))), [x])
    reps = np.array([1, 0, 3, 2])
    _vs_torch(lambda a: gd.repeat_interleave(a, _g(reps), dim=0),
              lambda a: torch.repeat_interleave(a, _t(reps), dim=0), [x])
    assert gd.repeat_interleave(_g(reps)).tolist() == \
        torch.repeat_interleave(_t(reps)).tolist()


def test_inplace_index_forms():
    x = gd.zeros(3)
    x.index_add_(0, gd.tensor([0, 0]), gd.tensor([1.0, 2.0]))
    x.index_copy_(0, gd.tensor([2]), gd.tensor([5.0]))
    x.index_fill_(0, gd.tensor([1]), -1.0)
    assert x.tolist() == [3.0, -1.0, 5.0]


def test_shape_gradcheck():
    rng = np.random.default_rng(2)
    x = _g(rng.standard_normal((3, 4)), True)
    s = _g(rng.standard_normal((3, 2)), True)
    for f in (lambda t: gd.roll(t, (1, 2), (0, 1)), lambda t: gd.tile(t, (2, 1)),
              lambda t: gd.diff(t, 2, 0), lambda t: gd.rot90(t, 1),
              lambda t: gd.repeat_interleave(t, gd.tensor([2, 0, 1]), dim=0),
              lambda t: gd.index_fill(t, 1, gd.tensor([3]), 0.0)):
        assert gradcheck(f, (x,))
    assert gradcheck(lambda a, b: gd.index_add(a, 1, gd.tensor([3, 3]), b), (x, s))
    assert gradcheck(lambda a, b: gd.index_copy(a, 1, gd.tensor([3, 0]), b), (x, s))


@needs_torch
@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid_cartesian_vs_torch(indexing):
    a, b, c = np.arange(3.0), np.arange(2.0) + 10, np.arange(4.0) - 5
    ga = gd.meshgrid(_g(a), _g(b), _g(c), indexing=indexing)
    ta = torch.meshgrid(_t(a), _t(b), _t(c), indexing=indexing)
    wa = np.meshgrid(a, b, c, indexing=indexing)
    for g, t, w in zip(ga, ta, wa):
        np.testing.assert_array_equal(g.numpy(), t.numpy())
        np.testing.assert_array_equal(g.numpy(), w)
    np.testing.assert_array_equal(gd.cartesian_prod(_g(a), _g(b)).numpy(),
                                  torch.cartesian_prod(_t(a), _t(b)).numpy())
    xa = _g(a, True)
    gd.meshgrid(xa, _g(b), indexing=indexing)[0].sum().backward()
    assert xa.grad.tolist() == [2.0, 2.0, 2.0]


def test_shape_errors():
    x = gd.zeros(2, 3)
    with pytest.raises(ValueError, match="exceeds dimension 1 of size 3"):
        gd.narrow(x, 1, 2, 2)
    with pytest.raises(ValueError, match="same length"):
        gd.roll(x, (1, 2), 0)
    with pytest.raises(ValueError, match=r"repeats must have 2 elements.*shape \(3,\)"):
        gd.repeat_interleave(x, gd.tensor([1, 2, 3]), dim=0)
    with pytest.raises(ValueError, match=r"source must have shape \(2, 1\).*\(2, 2\)"):
        gd.index_add(x, 1, gd.tensor([0]), gd.zeros(2, 2))
    with pytest.raises(TypeError, match="'index' must be"):
        gd.index_fill(x, 0, gd.tensor([0.0]), 1.0)
    with pytest.raises(IndexError, match="out of range"):
        gd.index_copy(x, 0, gd.tensor([2]), gd.zeros(1, 3))
    with pytest.raises(ValueError, match="dims must differ"):
        gd.rot90(x, 1, (0, -2))
    with pytest.raises(ValueError, match="indexing"):
        gd.meshgrid(gd.zeros(2), indexing="ji")
    with pytest.raises(ValueError, match="same length"):
        gd.movedim(x, (0, 1), 0)


# ---- math -----------------------------------------------------------------------------------
def test_erf_erfc_vs_math():
    xs = np.concatenate([np.linspace(-7, 7, 4001), [0.0, -0.0, 1e-300, 1e-8, 26.0, 30.0]])
    got = gd.erf(_g(xs)).numpy()
    gotc = gd.erfc(_g(xs)).numpy()
    want = np.array([math.erf(v) for v in xs])
    wantc = np.array([math.erfc(v) for v in xs])
    np.testing.assert_allclose(got, want, rtol=4e-15, atol=0)
    np.testing.assert_allclose(gotc, wantc, rtol=4e-15, atol=0)
    assert np.isnan(gd.erf(gd.tensor([float("nan")])).item())
    assert gd.erf(gd.tensor([float("inf"), -float("inf")])).tolist() == [1.0, -1.0]
    ys = np.concatenate([np.linspace(-0.999999, 0.999999, 2001), [1e-10, 1 - 1e-15]])
    inv = gd.erfinv(_g(ys)).numpy()
    np.testing.assert_allclose(np.array([math.erf(v) for v in inv]), ys, rtol=1e-15, atol=0)
    assert gd.erfinv(gd.tensor([1.0, -1.0, 2.0])).numpy().tolist()[:2] == [math.inf, -math.inf]


UNARY = [("erf", (-3, 3)), ("erfc", (-3, 3)), ("erfinv", (-0.95, 0.95)), ("sinh", (-3, 3)),
         ("cosh", (-3, 3)), ("tan", (-1.4, 1.4)), ("asin", (-0.95, 0.95)),
         ("acos", (-0.95, 0.95)), ("atan", (-5, 5)), ("asinh", (-5, 5)), ("acosh", (1.05, 5)),
         ("atanh", (-0.95, 0.95)), ("exp2", (-10, 10)), ("log2", (0.01, 10)),
         ("log10", (0.01, 10)), ("logit", (0.01, 0.99)), ("frac", (-5, 5)),
         ("trunc", (-5, 5))]


@needs_torch
@pytest.mark.parametrize("name,rng_", UNARY)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_unary_vs_torch(name, rng_, dt):
    x = np.random.default_rng(3).uniform(*rng_, size=(3, 5))
    tol = _tol(dt)
    if name == "erfinv" and dt == np.float32:
        tol = dict(rtol=2e-6, atol=2e-6)  # PyTorch's float32 erfinv is its own approximation
    _vs_torch(getattr(gd, name), getattr(torch, name), [x], dt, tol=tol)
    _vs_torch(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), [x[:1]], dt,
              grad=False, tol=tol)


@pytest.mark.parametrize("name,rng_", [u for u in UNARY if u[0] != "trunc"])
def test_unary_gradcheck(name, rng_):
    x = np.random.default_rng(4).uniform(*rng_, size=(2, 3))
    assert gradcheck(getattr(gd, name), (_g(x, True),))


@needs_torch
@pytest.mark.parametrize("name", ["atan2", "hypot", "logaddexp"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_binary_vs_torch(name, dt):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 1)) * 3, rng.standard_normal((4,)) * 3
    _vs_torch(getattr(gd, name), getattr(torch, name), [a, b], dt)
    _vs_torch(lambda x, y: getattr(x, name)(y), lambda x, y: getattr(x, name)(y), [b, b], dt)
    assert gradcheck(getattr(gd, name), (_g(a, True), _g(b, True)))


@needs_torch
def test_special_values_vs_torch():
    v = np.array([0.0, -1.5, 2.5, np.nan, np.inf, -np.inf, 1e-30, -50.0, 50.0])
    for gf, tf in ((gd.nan_to_num, torch.nan_to_num),
                   (lambda t: gd.nan_to_num(t, 1.0, 2.0, -3.0),
                    lambda t: torch.nan_to_num(t, 1.0, 2.0, -3.0)),
                   (gd.trunc, torch.trunc), (gd.frac, torch.frac),
                   (lambda t: gd.logaddexp(t, t.flip(0)), lambda t: torch.logaddexp(t, t.flip(0))),
                   (lambda t: gd.heaviside(t, gd.tensor([0.5], dtype=gd.float64)),
                    lambda t: torch.heaviside(t, torch.tensor([0.5], dtype=torch.float64)))):
        np.testing.assert_allclose(gf(_g(v)).numpy(), tf(_t(v)).numpy(), rtol=1e-12, atol=0)
    p = np.array([0.0, 0.001, 0.5, 0.999, 1.0])
    _vs_torch(lambda t: gd.logit(t, 0.01), lambda t: torch.logit(t, 0.01), [p])
    _vs_torch(lambda t: gd.nan_to_num(t), lambda t: torch.nan_to_num(t), [v])


@needs_torch
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_reductions_vs_torch(dt):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5))
    for gf, tf in ((lambda t: gd.std_mean(t, 1)[0], lambda t: torch.std_mean(t, 1)[0]),
                   (lambda t: gd.std_mean(t, 1)[1], lambda t: torch.std_mean(t, 1)[1]),
                   (lambda t: gd.var_mean(t, 0, keepdim=True, correction=0)[0],
                    lambda t: torch.var_mean(t, 0, keepdim=True, correction=0)[0]),
                   (lambda t: gd.median(t), lambda t: torch.median(t)),
                   (lambda t: gd.median(t, -1).values, lambda t: torch.median(t, -1).values),
                   (lambda t: t.median(0, keepdim=True)[0], lambda t: t.median(0, True)[0]),
                   (lambda t: gd.cummax(t, 1).values, lambda t: torch.cummax(t, 1).values),
                   (lambda t: t.cummin(0)[0], lambda t: t.cummin(0)[0])):
        _vs_torch(gf, tf, [x], dt)
    xn = x.copy()
    xn[1, 2] = xn[3, 0] = np.nan
    _vs_torch(gd.nansum, torch.nansum, [xn], dt)
    _vs_torch(lambda t: gd.nanmean(t, 1), lambda t: torch.nanmean(t, 1), [xn], dt)
    _vs_torch(lambda t: t.nansum(0, keepdim=True), lambda t: t.nansum(0, keepdim=True), [xn], dt)


@needs_torch
def test_median_cum_indices_vs_torch():
    x = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 5.0], [2.0, 2.0, 2.0, 2.0, 0.0, 9.0]])
    for d in (0, 1, -1):
        g, t = gd.median(_g(x), d), torch.median(_t(x), d)
        assert g.values.tolist() == t.values.tolist()
        for fn in ("cummax", "cummin"):
            gi, ti = getattr(gd, fn)(_g(x), d), getattr(torch, fn)(_t(x), d)
            assert gi.values.tolist() == ti.values.tolist()
            assert gi.indices.tolist() == ti.indices.tolist()
    # medians of distinct values: the index is unique
    y = np.random.default_rng(7).permutation(np.arange(12.0)).reshape(3, 4)
    assert gd.median(_g(y), 1).indices.tolist() == torch.median(_t(y), 1).indices.tolist()
    assert gd.median(_g(y)).item() == np.sort(y.ravel())[5]
    xn = np.array([1.0, np.nan, 0.0, 2.0])
    assert np.isnan(gd.median(_g(xn)).item())
    gm = gd.cummax(_g(xn), 0)
    tm = torch.cummax(_t(xn), 0)
    assert gm.indices.tolist() == tm.indices.tolist()


def test_reduction_gradcheck():
    x = _g(np.random.default_rng(8).permutation(np.arange(12.0)).reshape(3, 4) / 3, True)
    for f in (lambda t: gd.median(t, 1).values, lambda t: gd.median(t),
              lambda t: gd.cummax(t, 1).values, lambda t: gd.cummin(t, 0).values,
              lambda t: gd.std_mean(t, 0)[0], lambda t: gd.nanmean(t, 1)):
        assert gradcheck(f, (x,))


def test_math_errors():
    with pytest.raises(TypeError, match="'values' must be a Tensor"):
        gd.heaviside(gd.zeros(2), 0.5)
    with pytest.raises(TypeError, match="float32 and .*float64"):
        gd.heaviside(gd.zeros(2), gd.zeros(1, dtype=gd.float64))
    with pytest.raises(ValueError, match="eps must be in"):
        gd.logit(gd.zeros(2), 0.7)
    with pytest.raises(IndexError, match="non-empty"):
        gd.median(gd.zeros(2, 0), 1)
    with pytest.raises(TypeError, match="input must be a Tensor"):
        gd.erf([1.0])


def test_compiled_step_equals_eager():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    w0 = rng.standard_normal((4, 4)).astype(np.float32)

    def run(compiled):
        w = gd.tensor(w0.copy(), requires_grad=True)
        opt = gd.optim.SGD([w], lr=0.05)

        def step(xb):
            opt.zero_grad()
            h = gd.roll(xb @ w, 1, 0)
            h = gd.tile(gd.narrow(h, 1, 0, 2), (1, 2)) + gd.diff(h, dim=0, prepend=h[:1])
            loss = (gd.logaddexp(h, -h) + gd.log2(gd.nan_to_num(h * h) + 1.0)).mean() \
                + gd.take_along_dim(h, h.argmax(dim=1, keepdim=True), 1).sum() \
                + gd.nansum(h) + gd.nanmean(h, 0).sum() + gd.std_mean(h, 1)[0].sum() \
                + gd.repeat_interleave(w, 2, dim=0).mean()
            loss.backward()
            opt.step()
            return loss

        f = gd.compile(step) if compiled else step
        out = [f(gd.tensor(x)).item() for _ in range(3)]
        return out, w.detach().numpy()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eager = run(False)
        comp = run(True)
    assert eager[0] == comp[0]
    np.testing.assert_array_equal(eager[1], comp[1])


@needs_torch
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_logcumsumexp_vs_torch(dt):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 6))
    if dt == np.float64:  # exp over- and underflows: the result must not (in float32 the
        # gradient's exp(x - y) at |x| ~ 100 is only good to |x| * eps, in both libraries)
        x[0, :3] = [-800.0, 0.0, 700.0]
    for d in (0, 1, -1):
        _vs_torch(lambda t, d=d: gd.logcumsumexp(t, d), lambda t, d=d: torch.logcumsumexp(t, d),
                  [x], dt)
    _vs_torch(lambda t: t.logcumsumexp(0), lambda t: t.logcumsumexp(0), [np.zeros((0, 2))], dt)


def test_logcumsumexp_gradcheck_and_numpy():
    x = np.random.default_rng(12).standard_normal((2, 5))
    got = gd.logcumsumexp(_g(x), 1).numpy()
    np.testing.assert_allclose(got, np.log(np.cumsum(np.exp(x), axis=1)), rtol=1e-12)
    assert gradcheck(lambda t: gd.logcumsumexp(t, 1), (_g(x, True),))
    assert gradcheck(lambda t: gd.logcumsumexp(t, 0), (_g(x, True),))


@needs_torch
def test_empty_tensors_vs_torch():
    e = np.zeros((0, 3))
    for gf, tf in ((lambda t: gd.roll(t, 1, 1), lambda t: torch.roll(t, 1, 1)),
                   (lambda t: gd.tile(t, (2, 2)), lambda t: torch.tile(t, (2, 2))),
                   (lambda t: gd.repeat_interleave(t, 2, 1),
                    lambda t: torch.repeat_interleave(t, 2, 1)),
                   (lambda t: gd.diff(t, dim=0), lambda t: torch.diff(t, dim=0)),
                   (lambda t: gd.rot90(t), lambda t: torch.rot90(t)),
                   (lambda t: gd.movedim(t, 0, 1), lambda t: torch.movedim(t, 0, 1)),
                   (lambda t: gd.narrow(t, 1, 1, 2), lambda t: torch.narrow(t, 1, 1, 2)),
                   (gd.erf, torch.erf), (gd.sinh, torch.sinh), (gd.nansum, torch.nansum),
                   (lambda t: gd.cummax(t, 0).values, lambda t: torch.cummax(t, 0).values),
                   (lambda t: gd.logaddexp(t, t), lambda t: torch.logaddexp(t, t))):
        g, t = gf(_g(e)), tf(_t(e))
        assert tuple(g.shape) == tuple(t.shape)
        np.testing.assert_array_equal(g.numpy(), t.numpy())
