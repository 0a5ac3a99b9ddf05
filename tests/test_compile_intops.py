"""Bool and integer arithmetic as kernels (src/cpp/bind_intops.cpp): comparisons, logical and
bitwise ops, integer add/sub/mul, dtype casts and bool/int sums, checked against NumPy and
PyTorch; and compiled training steps that report accuracy with them, which gd.compile now
captures (no eager fallback) and replays bitwise equal to the eager steps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core
from graddesc.nn import functional as F
from _compile_twins import assert_compiled_equals_eager, sgd_like_step

try:
    import torch
except ImportError:  # pragma: no cover - torch is the optional oracle
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch as the oracle")

_DTYPES = [np.bool_, np.int32, np.int64, np.float32, np.float64]
_CMP = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
        "gt": np.greater, "ge": np.greater_equal}


def _arr(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind == "i":
        return rng.integers(-3, 4, shape).astype(dtype)
    a = rng.integers(-3, 4, shape).astype(dtype)
    a.flat[::5] = np.nan
    return a


def _views(a):
    """a itself, a transposed view, a strided slice and a reversed view (non-contiguous)."""
    yield a
    yield a.T
    yield a[::2, 1:]
    yield a[::-1, ::-2]


# ---- the kernels against NumPy -----------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(_CMP))
@pytest.mark.parametrize("ta", [np.bool_, np.int32, np.int64])
@pytest.mark.parametrize("tb", [np.bool_, np.int32, np.int64])
def test_integer_comparisons_match_numpy(op, ta, tb) -> None:
    rng = np.random.default_rng(0)
    a, b = _arr(rng, ta, (6, 5)), _arr(rng, tb, (6, 5))
    for va in _views(a):
        for vb in _views(b.copy()):
            if va.shape != vb.shape:
                continue
            out = _core.int_binary(op, va, vb)
            assert out.dtype == np.bool_ and out.flags.c_contiguous
            np.testing.assert_array_equal(out, _CMP[op](va, vb))
    # broadcasting (5,) against (6, 5) and (6, 1), a Python int, an empty array
    np.testing.assert_array_equal(_core.int_binary(op, a, b[0]), _CMP[op](a, b[0]))
    np.testing.assert_array_equal(_core.int_binary(op, a[:, :1], b), _CMP[op](a[:, :1], b))
    np.testing.assert_array_equal(_core.int_binary(op, a, 1), _CMP[op](a, 1))
    np.testing.assert_array_equal(_core.int_binary(op, 1, b), _CMP[op](1, b))
    e = _core.int_binary(op, a[:0], b[:0])
    assert e.shape == (0, 5) and e.dtype == np.bool_


@pytest.mark.parametrize("op,ufunc", [("and", np.bitwise_and), ("or", np.bitwise_or),
                                      ("xor", np.bitwise_xor), ("add", np.add),
                                      ("sub", np.subtract), ("mul", np.multiply),
                                      ("max", np.maximum), ("min", np.minimum)])
def test_int64_arithmetic_wraps_around_as_numpy(op, ufunc) -> None:
    rng = np.random.default_rng(1)
    big = np.iinfo(np.int64)
    a = rng.integers(big.min, big.max, (7, 9), dtype=np.int64, endpoint=True)
    b = rng.integers(big.min, big.max, (7, 9), dtype=np.int64, endpoint=True)
    a[0, :3] = [big.max, big.min, -1]
    b[0, :3] = [1, -1, big.min]
    with np.errstate(over="ignore"):
        for va, vb in ((a, b), (a.T, b.T), (a[::-2][:3], b[1::2]), (a, b[3]), (a[:, :1], b)):
            out = _core.int_binary(op, va, vb)
            assert out.dtype == np.int64
            np.testing.assert_array_equal(out, ufunc(va, vb))
        np.testing.assert_array_equal(_core.int_binary(op, a, 7), ufunc(a, np.int64(7)))
        np.testing.assert_array_equal(_core.int_binary(op, -7, b), ufunc(np.int64(-7), b))


@pytest.mark.parametrize("op,ufunc", [("land", np.logical_and), ("lor", np.logical_or),
                                      ("lxor", np.logical_xor)])
@pytest.mark.parametrize("ta", _DTYPES)
@pytest.mark.parametrize("tb", _DTYPES)
def test_logical_ops_take_truth_values_nan_is_true(op, ufunc, ta, tb) -> None:
    rng = np.random.default_rng(2)
    a, b = _arr(rng, ta, (4, 6)), _arr(rng, tb, (4, 6))
    np.testing.assert_array_equal(_core.int_binary(op, a, b), ufunc(a, b))
    np.testing.assert_array_equal(_core.int_binary(op, a.T, b.T), ufunc(a.T, b.T))
    for s in (0, 2, 0.0, float("nan"), True):
        np.testing.assert_array_equal(_core.int_binary(op, a, s), ufunc(a, s))


@pytest.mark.parametrize("src", _DTYPES)
@pytest.mark.parametrize("dst", _DTYPES)
def test_casts_match_numpy_astype(src, dst) -> None:
    rng = np.random.default_rng(3)
    a = _arr(rng, src, (5, 8))
    if np.dtype(src).kind == "f":
        a = rng.standard_normal((5, 8)).astype(src) * 1e3
        a[0, :4] = [0.5, -0.5, -0.0, 2.75]
        if np.dtype(dst).kind != "i":
            a[1, :3] = [np.nan, np.inf, -np.inf]
    if np.dtype(src) == np.int64:
        a[0, :3] = [2**53 + 1, -(2**62) - 3, 2**31 + 5]  # rounding to float, int32 wrap
    for v in _views(a):
        out = _core.int_unary("cast", v, dst)
        assert out.dtype == np.dtype(dst) and out.flags.c_contiguous
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(out, v.astype(dst))
    assert _core.int_unary("cast", a[:0], dst).shape == (0, 8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30, -9.3e18, 9.3e18])
@pytest.mark.parametrize("src", [np.float32, np.float64])
def test_float_to_integer_cast_refuses_values_without_an_integer(bad, src) -> None:
    a = np.array([1.0, 2.0, bad, 3.0], dtype=src)
    with pytest.raises(ValueError, match="can't convert .* to int64"):
        _core.int_unary("cast", a, np.int64)
    with pytest.raises(ValueError, match="can't convert .* to int64"):
        gd.tensor(a).long()
    # the extremes that do fit
    ok = np.array([-2.0**63, np.nextafter(2.0**63, 0)], dtype=np.float64)
    np.testing.assert_array_equal(_core.int_unary("cast", ok, np.int64), ok.astype(np.int64))


@pytest.mark.parametrize("dtype", _DTYPES)
def test_not_and_invert_match_numpy(dtype) -> None:
    rng = np.random.default_rng(4)
    a = _arr(rng, dtype, (6, 5))
    for v in _views(a):
        np.testing.assert_array_equal(_core.int_unary("not", v), np.logical_not(v))
        if np.dtype(dtype).kind != "f":
            out = _core.int_unary("invert", v)
            assert out.dtype == v.dtype
            np.testing.assert_array_equal(out, np.invert(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_floor_ceil_match_numpy_signed_zeros_included(dtype) -> None:
    rng = np.random.default_rng(10)
    a = (rng.standard_normal((6, 7)) * 4).astype(dtype)
    a[0] = [0.5, 1.5, 2.5, -0.5, -1.5, -0.2, 0.0]
    a[1, :5] = [np.nan, np.inf, -np.inf, 2.0**52 + 0.5 if dtype == np.float64 else 2.0**23,
                -0.0]
    for op, f in (("round", np.round), ("floor", np.floor), ("ceil", np.ceil)):
        for v in _views(a):
            out = _core.int_unary(op, v)
            want = f(v)
            assert out.dtype == v.dtype
            np.testing.assert_array_equal(out, want)
            np.testing.assert_array_equal(np.signbit(out), np.signbit(want))
        got = getattr(gd, op)(gd.tensor(a)).numpy()
        np.testing.assert_array_equal(np.signbit(got), np.signbit(f(a)))
    x = gd.tensor(a[2:], requires_grad=True)
    gd.round(x).sum().backward()  # piecewise constant: gradient 0
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros_like(a[2:]))


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64])
def test_int_sum_matches_numpy_int64_sum(dtype) -> None:
    rng = np.random.default_rng(5)
    a = _arr(rng, dtype, (4, 5, 6))
    if np.dtype(dtype) == np.int64:
        a[0, 0, :2] = np.iinfo(np.int64).max  # wraps around as NumPy's sum does
    for v in (a, a.transpose(2, 0, 1), a[::-1, 1::2, ::3]):
        for axes in (None, (0,), (1,), (2,), (0, 2), (0, 1, 2), ()):
            for keepdim in (False, True):
                out = _core.int_sum(v, axes, keepdim)
                want = np.sum(v, axis=axes, dtype=np.int64, keepdims=keepdim)
                assert out.dtype == np.int64 and out.shape == np.shape(want)
                np.testing.assert_array_equal(out, want)
    assert _core.int_sum(a[:0], None) == 0
    np.testing.assert_array_equal(_core.int_sum(a[:, :0], (1,)), np.zeros((4, 6), np.int64))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_the_thread_count(threads) -> None:
    rng = np.random.default_rng(6)
    a = rng.integers(-5, 5, 1 << 20)
    b = rng.standard_normal(1 << 20).astype(np.float32)
    before = gd.get_num_threads()
    try:
        gd.set_num_threads(threads)
        outs = [_core.int_binary("lt", a, b), _core.int_binary("mul", a, a[::-1]),
                _core.int_unary("cast", b * 100, np.int64), _core.int_unary("cast", a, np.float32),
                _core.int_binary("max", a, a[::-1]), _core.int_binary("floordiv", a, 3),
                _core.int_binary("rem", a, -3)]
    finally:
        gd.set_num_threads(before)
    np.testing.assert_array_equal(outs[4], np.maximum(a, a[::-1]))
    np.testing.assert_array_equal(outs[5], a // 3)
    np.testing.assert_array_equal(outs[6], a % -3)
    np.testing.assert_array_equal(outs[0], a.astype(np.float32) < b)
    np.testing.assert_array_equal(outs[1], a * a[::-1])
    np.testing.assert_array_equal(outs[2], (b * 100).astype(np.int64))
    np.testing.assert_array_equal(outs[3], a.astype(np.float32))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: _core.int_binary("pow", np.arange(3), 1), ValueError, "argument 'op' must be one"),
    (lambda: _core.int_binary("add", np.ones(3), 1), TypeError, "'add' takes integer operands"),
    (lambda: _core.int_binary("add", np.ones(3, bool), True), TypeError,
     "'add' takes integer"),
    (lambda: _core.int_binary("and", np.arange(3), 1.5), TypeError, "bool or integer"),
    (lambda: _core.int_binary("eq", np.ones(3, np.uint8), 1), TypeError,
     "argument 'a' must have dtype bool, int32, int64"),
    (lambda: _core.int_binary("eq", np.arange(3), np.ones(3, np.float16)), TypeError,
     "argument 'b' must have dtype"),
    (lambda: _core.int_binary("eq", np.arange(3), np.arange(4)), ValueError,
     r"could not be broadcast together with shapes \(3,\) and \(4,\)"),
    (lambda: _core.int_binary("eq", 1, 2), TypeError, "at least one of 'a' and 'b'"),
    (lambda: _core.int_binary("eq", np.arange(3), 2**70), ValueError, "does not fit in int64"),
    (lambda: _core.int_binary("eq", np.arange(3), "x"), TypeError,
     "must be a numpy.ndarray or a Python bool, int or float"),
    (lambda: _core.int_binary("eq", np.zeros(9, np.uint8)[1:].view(np.int64), 1), ValueError,
     "not aligned"),
    (lambda: _core.int_binary("eq", np.lib.stride_tricks.as_strided(
        np.zeros(8, np.int64), shape=(3,), strides=(12,)), 1), ValueError, None),
    (lambda: _core.int_unary("cast", np.arange(3), None), TypeError, "needs argument 'dtype'"),
    (lambda: _core.int_unary("cast", np.arange(3), np.uint16), TypeError,
     "argument 'dtype' must be bool, int32"),
    (lambda: _core.int_unary("invert", np.ones(3), None), TypeError, "'invert' takes a bool"),
    (lambda: _core.int_unary("neg", np.ones(3), None), ValueError, "argument 'op'"),
    (lambda: _core.int_unary("round", np.arange(3), None), TypeError,
     "'round' takes a float32 or float64 array, got int64"),
    (lambda: _core.int_unary("not", [1, 2], None), TypeError, "argument 'x' must be a numpy"),
    (lambda: _core.int_sum(np.ones(3), None), TypeError, "must have dtype bool, int32 or int64"),
    (lambda: _core.int_sum(np.ones((2, 3), bool), (2,)), ValueError, "axis 2 is out of range"),
    (lambda: _core.int_sum(np.ones((2, 3), bool), (1, 1)), ValueError, "appears twice"),
    (lambda: _core.int_binary_args("eq", np.arange(3), 1, result=np.zeros(4, bool)), ValueError,
     "'result' expected shape"),
])
def test_bindings_reject_bad_input(call, exc, match) -> None:
    if match is None:  # a stride that is no whole number of items (int64 items, 12-byte step)
        with pytest.raises(exc, match="stride of 12 bytes"):
            call()
        return
    with pytest.raises(exc, match=match):
        call()


# ---- Tensor ops against PyTorch ----------------------------------------------------------------
def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@needs_torch
def test_mixed_int_float_comparisons_promote_as_pytorch() -> None:
    rng = np.random.default_rng(7)
    ints = rng.integers(-4, 4, (5, 6))
    ints[0, :2] = [2**24 + 1, -(2**40) - 1]  # not exact in float32: compared as float32
    for fdt in (np.float32, np.float64):
        f = rng.integers(-4, 4, (5, 6)).astype(fdt) + 0.5 * (rng.random((5, 6)) < 0.3)
        f[0, :3] = [2**24, -(2**40), np.nan]
        f[1, :2] = [np.inf, -np.inf]
        for name in _CMP:
            for x, y in ((ints, f), (f, ints), (ints.astype(bool), f), (ints, f[0]),
                         (ints, f[1:2, :1])):
                got = getattr(gd, name)(gd.tensor(x), gd.tensor(y)).numpy()
                want = getattr(torch, name)(_t(x), _t(y)).numpy()
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {x.dtype} {y.dtype}")
            for s in (2.5, 16777217.0, float("nan"), 3, True):
                got = getattr(gd, name)(gd.tensor(ints), s).numpy()
                np.testing.assert_array_equal(got, getattr(torch, name)(_t(ints), s).numpy())
            # a 0-d float64 tensor against an int64 tensor: PyTorch's rule gives float64
            z = np.array(2**24 + 1.0)
            got = getattr(gd, name)(gd.tensor(ints), gd.tensor(z)).numpy()
            np.testing.assert_array_equal(got, getattr(torch, name)(_t(ints), _t(z)).numpy())


@needs_torch
def test_tensor_methods_match_pytorch() -> None:
    rng = np.random.default_rng(8)
    lo = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    g_lo, g_y = gd.tensor(lo), gd.tensor(y)
    t_lo, t_y = _t(lo), _t(y)
    pairs = [
        (lambda L, Y: (L.argmax(1) == Y).sum(), True),
        (lambda L, Y: (L.argmax(dim=1) == Y).float().mean(), True),
        (lambda L, Y: (L.argmax(1) != Y).long().sum(), True),
        (lambda L, Y: ((L[:, 0] > 0) & (Y < 3)).sum(dim=0), True),
        (lambda L, Y: ((L[:, 0] > 0) | (Y == 3)) ^ (Y >= 2), True),
        (lambda L, Y: ~(Y == 1), True),
        (lambda L, Y: (Y * 3 - Y + 2) * Y, True),
        (lambda L, Y: (L > 0).double().sum(1), True),
        (lambda L, Y: (L * 10).long(), True),
        (lambda L, Y: (L > 0).sum(1, keepdim=True), True),
        (lambda L, Y: torch.logical_not(L > 0) if isinstance(L, torch.Tensor)
         else gd.logical_not(L > 0), True),
    ]
    for f, _ in pairs:
        got, want = f(g_lo, g_y), f(t_lo, t_y)
        assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    # .to(dtype) / .type(dtype) / .bool() casts and the sum's result dtype
    for d_gd, d_t in ((gd.float32, torch.float32), (gd.float64, torch.float64),
                      (gd.int64, torch.int64), (gd.bool, torch.bool)):
        for src in (g_y == 2, g_y, g_lo * 3):
            tsrc = torch.from_numpy(src.numpy())
            np.testing.assert_array_equal(src.to(d_gd).numpy(), tsrc.to(d_t).numpy())
            np.testing.assert_array_equal(src.type(d_gd).numpy(), tsrc.type(d_t).numpy())
    assert (g_y == 2).sum().dtype == gd.int64 and g_y.sum().dtype == gd.int64
    with pytest.raises(RuntimeError, match="mean"):
        (g_y == 2).mean()
    with pytest.raises(RuntimeError, match="mean"):
        g_y.mean()


# ---- compiled steps ----------------------------------------------------------------------------
def _model(seed, dtype=gd.float32):
    gd.manual_seed(seed)
    m = gd.nn.Linear(8, 4).to(dtype)
    return m, gd.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)


_ACCURACY = {
    "eq_sum": lambda lo, y, x: (lo.argmax(1) == y).sum(),
    "eq_float_mean": lambda lo, y, x: (lo.argmax(dim=1) == y).float().mean(),
    "to_float32_mean": lambda lo, y, x: (lo.argmax(1) == y).to(gd.float32).mean(),
    "type_mean": lambda lo, y, x: (lo.argmax(1) == y).type(gd.float64).mean(),
    "ne_long_sum": lambda lo, y, x: (lo.argmax(1) != y).long().sum(),
    "mask_and": lambda lo, y, x: ((x[:, 0] > 0) & (y < 3)).sum(),
    "or_xor_not": lambda lo, y, x: (~((y == 1) | (x[:, 1] <= 0)) ^ (y >= 2)).sum(),
    "int_arith": lambda lo, y, x: (y * 3 - lo.argmax(1) + 1).sum(),
    "mixed_cmp": lambda lo, y, x: (y < lo[:, 0] * 3).sum(dim=0),
    "bool_cast": lambda lo, y, x: (y.bool().long() + (x > 0).sum(1)).sum(),
    "round_eq": lambda lo, y, x: (lo.round() == x[:, :4].floor() + 1.0).to(gd.float32).mean(),
    "logical": lambda lo, y, x: gd.logical_and(lo[:, 0] > 0, gd.logical_not(y == 0)).sum(),
}


def _step(m, opt, acc):
    def step(x, y):
        opt.zero_grad()
        lo = m(x)
        loss = F.cross_entropy(lo, y)
        loss.backward()
        opt.step()
        return loss, acc(lo, y, x)
    return step


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("name", sorted(_ACCURACY))
def test_compiled_step_reporting_accuracy_is_captured_and_equals_eager(name, dtype) -> None:
    acc = _ACCURACY[name]
    m_e, o_e = _model(0, dtype)
    m_c, o_c = _model(0, dtype)
    eager = _step(m_e, o_e, acc)
    compiled = gd.compile(_step(m_c, o_c, acc))
    rng = np.random.default_rng(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager would warn
        for _ in range(6):  # (momentum buffers appear at the first step: a second recording)
            x = gd.tensor(rng.standard_normal((16, 8))).to(dtype)
            y = gd.tensor(rng.integers(0, 4, 16))
            le, ae = eager(x, y)
            lc, ac = compiled(x, y)
            assert lc.item() == le.item()
            assert ac.dtype == ae.dtype and ac.shape == ae.shape
            np.testing.assert_array_equal(ac.numpy(), ae.numpy())
    assert compiled.stats["replayed"] >= 4 and compiled.stats["eager"] == 0
    for a, b in zip(m_e.parameters(), m_c.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    names = {n for e in compiled._cache.values() if getattr(e, "program", None) is not None
             for n in e.program.names()}
    assert names & {"int_binary", "int_unary", "int_sum"}


def test_replayed_cast_of_a_nan_raises_not_garbage() -> None:
    def step(x):
        return (x * 2.0).long().sum()

    compiled = gd.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            x = gd.tensor(np.arange(6, dtype=np.float32))
            assert compiled(x).item() == 30
        assert compiled.stats["replayed"] >= 1
        bad = gd.tensor(np.array([1, 2, np.nan, 4, 5, 6], dtype=np.float32))
        with pytest.raises(ValueError, match="can't convert nan to int64"):
            compiled(bad)
        assert compiled(gd.tensor(np.ones(6, dtype=np.float32))).item() == 12


# ---- max/min, clamp and where on integer tensors (labels edited inside a step) ---------------
@pytest.mark.parametrize("op,ufunc", [("max", np.maximum), ("min", np.minimum)])
@pytest.mark.parametrize("ta", [np.bool_, np.int32, np.int64])
@pytest.mark.parametrize("tb", [np.bool_, np.int32, np.int64])
def test_integer_max_min_match_numpy(op, ufunc, ta, tb) -> None:
    rng = np.random.default_rng(11)
    a, b = _arr(rng, ta, (6, 5)), _arr(rng, tb, (6, 5))
    for va, vb in ((a, b), (a.T, b.T), (a[::2, 1:], b[1::2, :4]), (a, b[2]), (a[:, :1], b)):
        out = _core.int_binary(op, va, vb)
        assert out.dtype == np.result_type(va, vb)
        np.testing.assert_array_equal(out, ufunc(va, vb))
    if np.dtype(ta) != np.bool_:
        np.testing.assert_array_equal(_core.int_binary(op, a, 2), ufunc(a, np.asarray(2, ta)))
    with pytest.raises(TypeError, match="'max' takes bool or integer"):
        _core.int_binary("max", a, 1.5)


def test_int_where_clamp_maximum_match_numpy_and_stay_integer() -> None:
    rng = np.random.default_rng(12)
    big = np.iinfo(np.int64)
    y = rng.integers(-5, 6, (4, 7)).astype(np.int64)
    z = rng.integers(big.min, big.max, (4, 7), dtype=np.int64, endpoint=True)
    z[0, :2] = [big.min, big.max]
    c = rng.random((4, 7)) < 0.5
    yt, zt, ct = gd.tensor(y), gd.tensor(z), gd.tensor(c)
    for got, want in (
            (gd.where(ct, yt, zt), np.where(c, y, z)),  # extremes: wraps back exactly
            (gd.where(ct, zt, 0), np.where(c, z, 0)),
            (gd.where(ct[0], -1, yt), np.where(c[0], -1, y)),
            (gd.where(ct, yt.T.contiguous().T, zt[:, :1]), np.where(c, y, z[:, :1])),
            (yt.clamp(0, 2), np.clip(y, 0, 2)), (yt.clamp(min=1), np.maximum(y, 1)),
            (yt.clamp(max=-1), np.minimum(y, -1)), (gd.clamp(zt, -3, 3), np.clip(z, -3, 3)),
            (gd.maximum(yt, zt), np.maximum(y, z)), (gd.minimum(yt, 0), np.minimum(y, 0)),
            (gd.maximum(ct, ~ct), np.ones_like(c))):
        assert got.numpy().dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got.numpy(), want)
    # a float bound or operand still gives a float result (NumPy's promotion)
    got, want = yt.clamp(0.5, 2.0).numpy(), np.clip(y, 0.5, 2.0)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@needs_torch
def test_int_where_clamp_maximum_match_pytorch() -> None:
    rng = np.random.default_rng(13)
    y = rng.integers(-5, 6, 12).astype(np.int64)
    c = rng.random(12) < 0.5
    g, t = gd.tensor(y), torch.tensor(y)
    gc, tc = gd.tensor(c), torch.tensor(c)
    for a, b in ((gd.where(gc, g, gd.zeros_like(g)), torch.where(tc, t, torch.zeros_like(t))),
                 (g.clamp(0, 3), t.clamp(0, 3)), (gd.maximum(g, -g), torch.maximum(t, -t)),
                 (gd.minimum(g, gd.tensor(2)), torch.minimum(t, torch.tensor(2)))):
        assert str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1]
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_mixed_float_int_arithmetic_matches_numpy_bitwise() -> None:
    rng = np.random.default_rng(14)
    f32 = (rng.standard_normal((3, 5)) * 1e3).astype(np.float32)
    f64 = rng.standard_normal(5)
    i64 = rng.integers(-(2 ** 60), 2 ** 60, (3, 5))
    b = rng.random((3, 5)) < 0.5
    ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide}
    import operator
    pyop = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
    with np.errstate(divide="ignore", invalid="ignore"):
        for x, y in ((f32, i64), (i64, f32), (f32, f64), (f64, f32), (f32, b), (b, f64),
                     (i64, i64[0] + 3), (f32, i64.sum()), (f32.sum(), i64)):
            for k, uf in ops.items():
                want = np.asarray(uf(x, y))
                got = pyop[k](gd.tensor(x) if np.ndim(x) else gd.tensor(np.asarray(x)),
                              gd.tensor(y) if np.ndim(y) else gd.tensor(np.asarray(y))).numpy()
                assert got.dtype == want.dtype, (k, x.dtype, np.asarray(y).dtype)
                np.testing.assert_array_equal(got, want)


_LABEL_EDITS = {
    "where": lambda o, y: F.cross_entropy(o, gd.where(y > 2, y, gd.zeros_like(y))),
    "where_number": lambda o, y: F.cross_entropy(o, gd.where(y == 3, 0, y)),
    "clamp": lambda o, y: F.cross_entropy(o, y.clamp(0, 2)),
    "mod_floordiv": lambda o, y: F.cross_entropy(o, (y + 1) % 4) + F.cross_entropy(o, y // 2),
    "maximum": lambda o, y: F.cross_entropy(o, gd.maximum(y - 1, gd.zeros_like(y))),
    # a masked mean: the float loss divided by an integer count (cast by a kernel)
    "masked_mean": lambda o, y: (F.cross_entropy(o, y, reduction="none") * (y > 0)).sum() /
    (y > 0).sum().clamp(min=1),
}


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("name", sorted(_LABEL_EDITS))
def test_compiled_step_editing_integer_labels_is_captured_and_equals_eager(name, dtype) -> None:
    edit = _LABEL_EDITS[name]

    def run(compiled):
        m, opt = _model(4, dtype)

        step = sgd_like_step(opt, lambda x, y: edit(m(x), y))

        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(15)
        npdt = np.float32 if dtype == gd.float32 else np.float64
        losses = [f(gd.tensor((s * rng.standard_normal((9, 8))).astype(npdt)),
                    gd.tensor(rng.integers(0, 4, 9))).item() for s in (1.0, 8.0, 0.2, 3.0)]
        return losses, [p.detach().numpy().copy() for p in m.parameters()], f

    assert_compiled_equals_eager(run)


def _wrap64(v):
    return (v + 2 ** 63) % 2 ** 64 - 2 ** 63


@pytest.mark.parametrize("tb", [np.int32, np.int64])
def test_floor_division_and_remainder_are_pythons(tb) -> None:
    """// and % of integer tensors by the kernel: Python's floor division and remainder (the
    divisor's sign), int64 extremes wrapping as NumPy's int64 does (INT64_MIN // -1)."""
    rng = np.random.default_rng(16)
    big = np.iinfo(np.int64)
    a = rng.integers(-50, 51, (5, 6)).astype(np.int64)
    a[0, :4] = [big.min, big.max, big.min, -1]
    b = rng.integers(1, 9, (5, 6)).astype(tb) * rng.choice([-1, 1], (5, 6)).astype(tb)
    b[0, :4] = [-1, -1, 1, -1]
    for x, y in ((a, b), (a.T, b.T), (a[:, ::2], b[:, 1::2]), (a, b[2]), (a[:, :1], b)):
        q = _core.int_binary("floordiv", x, y)
        r = _core.int_binary("rem", x, y)
        bx, by = np.broadcast_arrays(x, y)
        want_q = np.array([_wrap64(int(u) // int(v)) for u, v in zip(bx.flat, by.flat)])
        want_r = np.array([int(u) % int(v) for u, v in zip(bx.flat, by.flat)])
        assert q.dtype == np.int64 and r.dtype == np.int64
        np.testing.assert_array_equal(q.ravel(), want_q)
        np.testing.assert_array_equal(r.ravel(), want_r)
    t = gd.tensor(a)
    np.testing.assert_array_equal((t // 3).numpy(), a // 3)
    np.testing.assert_array_equal((t % -4).numpy(), np.remainder(a, -4))
    np.testing.assert_array_equal(gd.remainder(7, gd.tensor(b)).numpy(), np.remainder(7, b))


def test_integer_division_by_zero_raises_eagerly_and_in_a_replay() -> None:
    for op, name in (("floordiv", "floor_divide"), ("rem", "remainder")):
        with pytest.raises(RuntimeError, match=f"integer {name} by zero"):
            _core.int_binary(op, np.arange(3), np.array([1, 0, 2]))
        with pytest.raises(RuntimeError, match=f"integer {name} by zero"):
            _core.int_binary(op, np.arange(3), 0)
    lin, opt = _model(17)

    step = sgd_like_step(opt, lambda x, y, k: F.cross_entropy(lin(x), (y + 1) % k))

    f = gd.compile(step)
    x = gd.tensor(np.ones((4, 8), np.float32))
    y = gd.tensor(np.arange(4))
    k = gd.tensor(np.full(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            f(x, y, k)
    assert f.stats["replayed"] >= 2 and f.stats["eager"] == 0, f.stats
    k.numpy()[1] = 0
    with pytest.raises(RuntimeError, match="integer remainder by zero"):
        f(x, y, k)
