"""Sorting, selection and scans as kernels (src/cpp/sort.cpp, bind_sort.cpp): sort / argsort /
topk / kthvalue against a stable-order oracle written with Python's own (stable) sort, cumsum and
cumprod bitwise against NumPy's sequential accumulate, the cumprod gradient with zeros against
finite differences and a direct sum, PyTorch when it is installed, thread counts, bad input, and
compiled training steps using topk and cumsum, which gd.compile now captures (no eager fallback)
and replays bitwise equal to eager while the chosen indices change."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core
from graddesc.autograd import gradcheck

try:
    import torch
except ImportError:  # pragma: no cover - torch is the optional oracle
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch as the oracle")


# ---- the oracle: Python's sorted() is stable --------------------------------------------------
def _line_order(line, descending):
    def key(j):
        v = line[j]
        nan = isinstance(v, float) and math.isnan(v)
        if descending:
            return (0, 0) if nan else (1, -v)  # NaN the largest: first
        return (1, 0) if nan else (0, v)  # NaN the largest: last (-0.0 == 0.0 in Python)
    return sorted(range(len(line)), key=key)


def _oracle_idx(a, dim, descending):
    m = np.moveaxis(a, dim, -1)
    out = np.empty(m.shape, np.int64)
    for pos in np.ndindex(*m.shape[:-1]):
        out[pos] = _line_order([v.item() for v in m[pos]], descending)
    return np.moveaxis(out, -1, dim)


def _bits(a):
    return a.view(np.uint32 if a.itemsize == 4 else np.uint64) if a.dtype.kind == "f" else a


def _data(rng, dtype, shape, special=True):
    """Values with many ties (small integers), and NaN, +-inf, -0.0 / 0.0 for floats."""
    a = rng.integers(-4, 5, shape).astype(dtype)
    if np.dtype(dtype).kind == "f" and special and a.size:
        flat = a.reshape(-1)
        picks = rng.choice(a.size, size=min(a.size, 8), replace=False)
        specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.nan, -0.0, 0.5]
        flat[picks] = np.array(specials[:len(picks)], dtype=dtype)
    return a


def _views(a):
    """a, a transposed copy-free view, a strided slice, a reversed view."""
    yield a
    if a.ndim >= 2:
        yield np.swapaxes(a, 0, -1)
        yield a[::2, ...]
    yield a[::-1]


_SORT_DTYPES = [np.float32, np.float64, np.int32, np.int64]
_SHAPES = [(7,), (1,), (0,), (5, 1), (4, 9), (3, 0, 2), (2, 5, 3), (3, 300)]


@pytest.mark.parametrize("dtype", _SORT_DTYPES)
@pytest.mark.parametrize("shape", _SHAPES)
@pytest.mark.parametrize("descending", [False, True])
def test_sort_matches_the_stable_oracle(dtype, shape, descending) -> None:
    rng = np.random.default_rng(0)
    base = _data(rng, dtype, shape)
    for a in _views(base):
        for dim in range(-a.ndim, a.ndim):
            v, i = gd.sort(gd.tensor(a), dim=dim, descending=descending)
            want = _oracle_idx(a, dim, descending)
            np.testing.assert_array_equal(i.numpy(), want)
            assert i.dtype == gd.int64 and v.dtype == gd.tensor(a).dtype
            # the values are x's own (NaN payloads and the sign of -0.0 kept)
            np.testing.assert_array_equal(_bits(v.numpy()),
                                          _bits(np.take_along_axis(a, want, dim)))
            np.testing.assert_array_equal(
                gd.argsort(gd.tensor(a), dim=dim, descending=descending).numpy(), want)


def test_sort_ascending_agrees_with_numpy_stable_argsort_on_large_lines() -> None:
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        a = rng.standard_normal((3, 5000)).astype(dtype)
        a[:, ::7] = np.round(a[:, ::7])  # ties
        a[0, ::97] = np.nan
        a[1, 5::50] = -0.0
        a[1, 6::50] = 0.0
        for dim in (0, 1):
            v, i = gd.sort(gd.tensor(a), dim=dim)
            want = np.argsort(a, axis=dim, kind="stable")  # NaN last; -0.0 == 0.0
            np.testing.assert_array_equal(i.numpy(), want)
            np.testing.assert_array_equal(v.numpy(), np.take_along_axis(a, want, dim))


@pytest.mark.parametrize("dtype", _SORT_DTYPES)
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("is_sorted", [True, False])
def test_topk_and_kthvalue_are_the_first_entries_of_the_stable_order(dtype, largest,
                                                                     is_sorted) -> None:
    rng = np.random.default_rng(2)
    base = _data(rng, dtype, (6, 11))
    for a in _views(base):
        for dim in range(a.ndim):
            n = a.shape[dim]
            order = _oracle_idx(a, dim, largest)
            for k in sorted({0, 1, min(3, n), n}):
                v, i = gd.topk(gd.tensor(a), k, dim=dim, largest=largest, sorted=is_sorted)
                want = np.take(order, range(k), axis=dim)
                if not is_sorted:
                    want = np.sort(want, axis=dim)  # in the order of positions
                np.testing.assert_array_equal(i.numpy(), want)
                np.testing.assert_array_equal(_bits(v.numpy()),
                                              _bits(np.take_along_axis(a, want, dim)))
            asc = _oracle_idx(a, dim, False)
            for k in sorted({1, max(1, n // 2), n}):
                for keepdim in (False, True):
                    v, i = gd.kthvalue(gd.tensor(a), k, dim=dim, keepdim=keepdim)
                    want = np.take(asc, [k - 1], axis=dim)
                    if not keepdim:
                        want = want.squeeze(dim)
                    np.testing.assert_array_equal(i.numpy(), want)
                    got = np.take_along_axis(a, np.expand_dims(i.numpy(), dim) if not keepdim
                                             else i.numpy(), dim)
                    np.testing.assert_array_equal(_bits(v.numpy().reshape(got.shape)), _bits(got))


def test_tensor_methods_and_zero_dim_inputs() -> None:
    t = gd.tensor([[3.0, 1.0, 2.0]])
    assert t.kthvalue(2).values.tolist() == [2.0]
    assert t.topk(1).indices.tolist() == [[0]]
    s = gd.tensor(5.0)
    assert gd.sort(s).values.item() == 5.0 and gd.sort(s).indices.item() == 0
    assert gd.kthvalue(s, 1).values.item() == 5.0
    assert gd.cumsum(s, 0).item() == 5.0


def test_other_dtypes_keep_the_numpy_path_with_the_same_order() -> None:
    a = np.array([[True, False, True, False]])
    v, i = gd.sort(gd.tensor(a), descending=True)
    assert i.tolist() == [[0, 2, 1, 3]] and v.tolist() == [[True, True, False, False]]
    u = np.array([3, 1, 3, 0], np.uint8)
    assert gd.topk(gd.tensor(u), 2, sorted=False).indices.tolist() == [0, 2]


# ---- scans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9,), (1,), (0,), (4, 1), (5, 7), (3, 0, 4), (2, 6, 300)])
def test_cumsum_cumprod_bitwise_equal_numpy_accumulate(dtype, shape) -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal(shape).astype(dtype)
    if base.size > 4:
        base.reshape(-1)[:4] = np.array([np.inf, -0.0, np.nan, 0.0], dtype)
    for a in _views(base):
        for dim in range(a.ndim):
            _check_scans(a, dim)


def _same_bits(got, want):
    """Bitwise equal, except that a NaN may be any NaN (which NaN operand a product or sum
    passes on is up to the compiler's operand order, in NumPy as here)."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(_bits(got[~nan]), _bits(want[~nan]))


def _check_scans(a, dim):
    with np.errstate(all="ignore"):  # (the oracle warns about inf * 0)
        _same_bits(gd.cumsum(gd.tensor(a), dim).numpy(), np.cumsum(a, axis=dim))
        _same_bits(gd.cumprod(gd.tensor(a), dim).numpy(), np.cumprod(a, axis=dim))
        rev = _core.scan(np.ascontiguousarray(a), dim, "sum", True)
        _same_bits(rev, np.flip(np.cumsum(np.flip(a, dim), axis=dim), dim))


def test_integer_scans_give_int64_and_wrap_around() -> None:
    big = np.iinfo(np.int64).max
    a = np.array([[big, 1, 2], [3, -4, 5]], np.int64)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(gd.cumsum(gd.tensor(a), 1).numpy(), np.cumsum(a, axis=1))
        np.testing.assert_array_equal(gd.cumprod(gd.tensor(a), 0).numpy(), np.cumprod(a, axis=0))
    b = gd.tensor(np.array([1, 2, 3], np.int32))
    assert gd.cumsum(b, 0).dtype == gd.int64 and gd.cumsum(b, 0).tolist() == [1, 3, 6]
    assert gd.tensor([True, True, False]).cumprod(0).tolist() == [1, 1, 0]


def _cumprod_grad_direct(x, g, dim):
    """d/dx_j sum_i g_i prod_{m<=i} x_m, each product formed without x_j (no division)."""
    xm, gm = np.moveaxis(x, dim, -1), np.moveaxis(g, dim, -1)
    out = np.zeros_like(xm)
    n = xm.shape[-1]
    for j in range(n):
        b = xm.copy()
        b[..., j] = 1.0
        out[..., j] = np.sum(gm[..., j:] * np.cumprod(b, axis=-1)[..., j:], axis=-1)
    return np.moveaxis(out, -1, dim)


@pytest.mark.parametrize("zeros", [[], [0], [2], [1, 4], [5]])
def test_cumprod_backward_with_zeros(zeros) -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 1.5, (3, 6)) * rng.choice([-1.0, 1.0], (3, 6))
    x[:, zeros] = 0.0
    for dim in (0, 1):
        t = gd.tensor(x, requires_grad=True)
        assert gradcheck(lambda u, dim=dim: gd.cumprod(u, dim), (t,))
        g = rng.standard_normal(x.shape)
        got = _core.cumprod_backward(g, x, np.cumprod(x, axis=dim), dim)
        np.testing.assert_allclose(got, _cumprod_grad_direct(x, g, dim), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_gradcheck_sort_topk_kthvalue_cumsum(dim) -> None:
    rng = np.random.default_rng(5)
    # distinct values away from ties (sort has kinks there)
    x = (rng.permutation(60).reshape(3, 4, 5) + rng.uniform(0.1, 0.4, (3, 4, 5))) / 10.0
    t = gd.tensor(x, requires_grad=True)
    n = x.shape[dim]
    assert gradcheck(lambda u: gd.sort(u, dim=dim).values, (t,))
    assert gradcheck(lambda u: gd.sort(u, dim=dim, descending=True).values, (t,))
    assert gradcheck(lambda u: gd.topk(u, 2, dim=dim).values, (t,))
    assert gradcheck(lambda u: gd.topk(u, 2, dim=dim, largest=False, sorted=False).values, (t,))
    assert gradcheck(lambda u: gd.kthvalue(u, n // 2 + 1, dim=dim).values, (t,))
    assert gradcheck(lambda u: gd.cumsum(u, dim), (t,))
    assert gradcheck(lambda u: gd.cumprod(u, dim), (t,))
    # the backward ops are themselves differentiable (second derivatives)
    assert gd.autograd.gradgradcheck(lambda u: gd.topk(u, 2, dim=dim).values * u.sum(), (t,))
    assert gd.autograd.gradgradcheck(lambda u: gd.cumsum(u, dim) * u, (t,))


def test_sort_gradient_goes_to_the_source_positions() -> None:
    x = gd.tensor([[0.3, -1.0, 2.0, 0.5]], requires_grad=True)
    v = gd.topk(x, 2).values  # 2.0 (position 2), 0.5 (position 3)
    (v * gd.tensor([[10.0, 100.0]])).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 10.0, 100.0]]


# ---- thread counts ----------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_the_thread_count(threads) -> None:
    rng = np.random.default_rng(6)
    a = rng.standard_normal((512, 700)).astype(np.float32)
    a[:, ::9] = np.round(a[:, ::9])
    x64 = rng.uniform(-1.5, 1.5, (300, 900))
    x64[::7, 3] = 0.0
    g = rng.standard_normal(x64.shape)
    y = np.cumprod(x64, axis=1)
    runs = []
    before = gd.get_num_threads()
    for n in (1, threads):
        try:
            gd.set_num_threads(n)
            runs.append([*_core.sort(a, 1, True), *_core.sort(a, 0, False, 5, "index"),
                         _core.scan(a, 0, "sum"), _core.scan(a, 1, "sum", True),
                         _core.scan(x64, 1, "prod"), _core.cumprod_backward(g, x64, y, 1)])
        finally:
            gd.set_num_threads(before)
    for r1, rn in zip(*runs):
        np.testing.assert_array_equal(_bits(r1), _bits(rn))


# ---- PyTorch ----------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_sort_matches_pytorch_stable_sort(dtype) -> None:
    rng = np.random.default_rng(7)
    a = _data(rng, dtype, (5, 40))
    for dim in (0, 1):
        for desc in (False, True):
            v, i = gd.sort(gd.tensor(a), dim=dim, descending=desc)
            tv, ti = torch.sort(torch.from_numpy(a), dim=dim, descending=desc, stable=True)
            np.testing.assert_array_equal(i.numpy(), ti.numpy())
            np.testing.assert_array_equal(v.numpy(), tv.numpy())


@needs_torch
def test_topk_kthvalue_cumsum_cumprod_match_pytorch() -> None:
    rng = np.random.default_rng(8)
    a = rng.permutation(5 * 40).reshape(5, 40).astype(np.float64) / 7.0  # no ties
    ta = torch.from_numpy(a)
    for dim in (0, 1):
        for largest in (True, False):
            v, i = gd.topk(gd.tensor(a), 4, dim=dim, largest=largest)
            tv, ti = torch.topk(ta, 4, dim=dim, largest=largest)
            np.testing.assert_array_equal(i.numpy(), ti.numpy())
            np.testing.assert_array_equal(v.numpy(), tv.numpy())
        v, i = gd.kthvalue(gd.tensor(a), 3, dim=dim)
        tv, ti = torch.kthvalue(ta, 3, dim=dim)
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
        np.testing.assert_array_equal(v.numpy(), tv.numpy())
        np.testing.assert_allclose(gd.cumsum(gd.tensor(a), dim).numpy(),
                                   torch.cumsum(ta, dim).numpy(), rtol=1e-13)
        np.testing.assert_allclose(gd.cumprod(gd.tensor(a / 20), dim).numpy(),
                                   torch.cumprod(ta / 20, dim).numpy(), rtol=1e-12)
    # NaN the largest: first when descending, last in topk(largest=False)
    n = np.array([1.0, np.nan, -1.0, 2.0])
    tn = torch.from_numpy(n)
    assert gd.topk(gd.tensor(n), 2).indices.tolist() == torch.topk(tn, 2).indices.tolist()
    assert gd.kthvalue(gd.tensor(n), 4).indices.item() == torch.kthvalue(tn, 4).indices.item()
    # gradients of cumprod with zeros
    x = np.array([[2.0, 0.0, 3.0, 0.0, 5.0], [0.0, 1.5, -2.0, 4.0, 1.0]])
    g = rng.standard_normal(x.shape)
    t = gd.tensor(x, requires_grad=True)
    (gd.cumprod(t, 1) * gd.tensor(g)).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    (torch.cumprod(tt, 1) * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-13, atol=1e-15)


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("call,exc,match", [
    (lambda: gd.topk(gd.ones(2, 3), 4), RuntimeError, r"topk: k \(4\) is out of range"),
    (lambda: gd.topk(gd.ones(2, 3), -1), RuntimeError, r"k \(-1\)"),
    (lambda: gd.topk(gd.ones(2, 3), 1.5), TypeError, "k must be an int"),
    (lambda: gd.kthvalue(gd.ones(2, 3), 0), RuntimeError, r"kthvalue: k \(0\)"),
    (lambda: gd.kthvalue(gd.ones(2, 0), 1, dim=1), RuntimeError, "size 0"),
    (lambda: gd.sort(gd.ones(2, 3), dim=2), IndexError, "sort: Dimension out of range"),
    (lambda: gd.cumsum(gd.ones(2, 3), dim=-3), IndexError, "cumsum: Dimension out of range"),
    (lambda: gd.topk(gd.ones(2, 3), 1, dim=1.0), TypeError, "topk: dim must be an int"),
    (lambda: gd.sort(np.ones(3)), TypeError, "sort: input must be a Tensor"),
    (lambda: gd.sort(gd.ones(3), descending=1), TypeError, "descending must be a bool"),
    (lambda: _core.sort(np.ones(3, np.float16), 0), TypeError,
     "sort: argument 'x' must have dtype float32, float64, int32, int64, got float16"),
    (lambda: _core.sort(np.ones((2, 3)), 2), IndexError, "argument 'dim' = 2 is out of range"),
    (lambda: _core.sort(np.ones((2, 3)), 1, False, 4), ValueError,
     r"argument 'k' = 4 is out of range for dimension 1 of size 3"),
    (lambda: _core.sort(np.ones(3), 0, False, 1, "random"), ValueError, "argument 'order'"),
    (lambda: _core.sort(np.ones((3, 4))[:, ::2], 0), ValueError, "C-contiguous"),
    (lambda: _core.scan(np.ones(3, np.int32), 0, "sum"), TypeError,
     "scan: argument 'x' must have dtype float32, float64, int64, got int32"),
    (lambda: _core.scan(np.ones(3), 0, "max"), ValueError, "argument 'op'"),
    (lambda: _core.cumprod_backward(np.ones(3), np.ones(3), np.ones(4), 0), ValueError,
     r"argument 'y' expected shape \(3,\)"),
    (lambda: _core.cumprod_backward(np.ones(3, np.float32), np.ones(3), np.ones(3), 0),
     TypeError, "argument 'grad' must have dtype float64"),
    (lambda: _core.sort_args(np.ones(3), 0, result=(np.ones(2), np.zeros(2, np.int64))),
     ValueError, "'result\\[0\\]' expected shape"),
])
def test_bad_input_raises_naming_the_argument(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


# ---- compiled steps ---------------------------------------------------------------------------
def _model(seed, dtype):
    gd.manual_seed(seed)
    m = gd.nn.Linear(8, 6).to(dtype)
    return m, gd.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)


def _step(m, opt):
    def step(x):
        opt.zero_grad()
        out = m(x)
        top = gd.topk(out, 3, dim=1).values          # a top-k loss
        low = gd.kthvalue(out, 2, dim=1).values
        ranked = gd.sort(out, dim=0, descending=True).values
        loss = top.mean() - low.mean() + (gd.cumsum(out, 1) ** 2).mean() * 0.1 \
            + gd.cumprod(gd.tanh(out), 1).mean() + ranked[0].sum() * 0.01
        loss.backward()
        opt.step()
        return loss, gd.argsort(out, dim=1), gd.topk(out, 2, dim=1, sorted=False).indices
    return step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_compiled_step_with_topk_and_cumsum_is_captured_and_equals_eager(dtype) -> None:
    m_e, o_e = _model(0, dtype)
    m_c, o_c = _model(0, dtype)
    eager = _step(m_e, o_e)
    compiled = gd.compile(_step(m_c, o_c))
    rng = np.random.default_rng(9)
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager would warn
        for _ in range(8):
            x = gd.tensor(rng.standard_normal((16, 8))).to(dtype)
            le, ie, ke = eager(x)
            lc, ic, kc = compiled(x)
            assert lc.item() == le.item()
            np.testing.assert_array_equal(ic.numpy(), ie.numpy())
            np.testing.assert_array_equal(kc.numpy(), ke.numpy())
            seen.add(ke.numpy().tobytes())
    assert len(seen) > 1  # the chosen indices changed between calls
    assert compiled.stats["replayed"] >= 5 and compiled.stats["eager"] == 0
    for a, b in zip(m_e.parameters(), m_c.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    names = {n for e in compiled._cache.values() if getattr(e, "program", None) is not None
             for n in e.program.names()}
    assert {"sort", "scan", "cumprod_backward", "scatter"} <= names
