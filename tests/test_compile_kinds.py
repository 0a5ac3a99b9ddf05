"""Kernels that gd.compile records as registered instruction kinds (instr_registry.hpp) through
their `<binding>_args` twins: each recorded instruction replays the eager binding bitwise, reports
the byte ranges its kernel touches (Program.traffic, from the kind's operands()), and its twin
refuses exactly what the binding refuses (one shared parse). Oracles: the eager binding's result,
NumPy, and the byte sizes of the kernel's arrays."""

from __future__ import annotations

import numpy as np
import pytest

from graddesc import _core

DTYPES = [np.float32, np.float64]


def _rng():
    return np.random.default_rng(7)


def _outputs(out):
    """The arrays a binding returned (a gradient not asked for is None)."""
    return [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]


def _program_of(name, args, kwargs, out):
    twin = getattr(_core, _core.RECORD_ARGS[name])
    ptrs, ints, reals, f64, _reads = twin(*args, result=out, **kwargs)
    prog = _core.Program()
    prog.add("call", f64, ptrs, ints, reals)
    return prog


def _softmax_cases(dt):
    r = _rng()
    x = r.standard_normal((5, 7)).astype(dt)
    dy = r.standard_normal((5, 7)).astype(dt)
    e, n = np.dtype(dt).itemsize, 35
    cases = []
    for log in (False, True):
        fwd = "log_softmax_forward" if log else "softmax_forward"
        bwd = "log_softmax_backward" if log else "softmax_backward"
        y = getattr(_core, fwd)(x)
        prefix = "log_softmax" if log else "softmax"
        cases.append((fwd, (x,), {}, prefix + "_fwd", (e * n, e * n), n))
        cases.append((bwd, (dy, y), {}, prefix + "_bwd", (2 * e * n, e * n), n))
    return cases


def _reduce_cases(dt):
    r = _rng()
    e = np.dtype(dt).itemsize
    x = r.standard_normal((3, 4, 5)).astype(dt)
    ops = _core.REDUCE_OPS
    xt = x[::-1].transpose(2, 0, 1)  # (5, 3, 4): negative and permuted strides, read in place
    return [
        ("sum_all", (x,), {}, "sum_all", (e * 60, e), 60),
        ("sum_axis", (x, 1), {}, "sum_axis", (e * 60, e * 15), 60),
        ("sum_axis", (x, -1), {}, "sum_axis", (e * 60, e * 12), 60),
        # max over dims 0 and 2 of xt: (y, idx) of 3 elements each; x's whole span is read
        ("reduce", (ops["max"], xt, (0, 2)), {}, "reduce", (e * 60, e * 3 + 8 * 3), 60),
        ("reduce", (ops["argmin"], xt, 1), {"keepdim": True}, "reduce", (e * 60, 8 * 20), 60),
        ("reduce", (ops["sum"], x[:, 1]), {"axes": None}, "reduce", (e * 45, e), 15),
    ]


def _matrix_cases(dt):
    r = _rng()
    e = np.dtype(dt).itemsize
    a, b = r.standard_normal((3, 4)).astype(dt), r.standard_normal((5, 4)).astype(dt)
    x, f = r.standard_normal((2, 6)).astype(dt), np.array(0.37)
    t = np.array([1, -100, 2, 0, -100], np.int64)
    return [
        # a @ b.T: reads a and b, writes the (3, 5) product; 2 M N K flops
        ("gemm", (a, b), {"trans_b": True}, "gemm", (e * 12 + e * 20, e * 15), 2 * 3 * 5 * 4),
        ("gemm", (b.T.copy(), a.T.copy()), {"trans_a": True, "alpha": -2.0}, "gemm",
         (e * 20 + e * 12, e * 15), 2 * 5 * 3 * 4),
        ("scale", (x, f), {}, "scale", (e * 12 + 8, e * 12), 12),
        ("count_scale", (t, -100), {}, "count_scale", (8 * 5, 8), 5),
    ]


def _norm_cases(dt):
    r = _rng()
    e = np.dtype(dt).itemsize
    N, C, L = 4, 3, 5
    x = r.standard_normal((N, C, L)).astype(dt)
    w, b = r.standard_normal(C).astype(dt), r.standard_normal(C).astype(dt)
    rm, rv = np.zeros(C, dt), np.ones(C, dt)
    nbt = np.zeros((), np.int64)
    n = N * C * L
    y, mean, inv = _core.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), nbt.copy(), True, 0.1,
                                            1e-5)
    dy = r.standard_normal(x.shape).astype(dt)
    M, D = 6, 4
    h = r.standard_normal((M, D)).astype(dt)
    g, bb = r.standard_normal(D).astype(dt), r.standard_normal(D).astype(dt)
    _, hm, hr = _core.layer_norm_forward(h, g, bb, 1e-5)
    dh = r.standard_normal((M, D)).astype(dt)
    W = r.standard_normal((7, D)).astype(dt)
    idx = np.array([[1, 6, 1], [0, 2, 6]], np.int64)
    demb = r.standard_normal((2, 3, D)).astype(dt)
    return [
        # evaluation: reads x, w, b and the running statistics; writes y, mean, invstd
        ("batch_norm_forward", (x, w, b, rm, rv, None, False, 0.1, 1e-5), {},
         "batch_norm_fwd", (e * (n + 4 * C), e * (n + 2 * C)), n),
        # backward: reads dy, x, w, mean, invstd; writes dx, dw, db
        ("batch_norm_backward", (dy, x, w, mean, inv, True), {}, "batch_norm_bwd",
         (e * (2 * n + 3 * C), e * (n + 2 * C)), n),
        ("batch_norm_backward", (dy, x, None, mean, inv, True), {"need_dx": False},
         "batch_norm_bwd", (e * (2 * n + 2 * C), e * 2 * C), n),
        ("layer_norm_forward", (h, g, bb, 1e-5), {}, "layer_norm_fwd",
         (e * (M * D + 2 * D), e * (M * D + 2 * M)), M * D),
        ("layer_norm_backward", (dh, h, g, hm, hr), {}, "layer_norm_bwd",
         (e * (2 * M * D + D + 2 * M), e * (M * D + 2 * D)), M * D),
        ("embedding_forward", (W, idx), {}, "embedding_fwd", (e * 7 * D + 8 * 6, e * 6 * D),
         7 * D),
        ("embedding_backward", (demb, idx, 7), {"padding_idx": 2}, "embedding_bwd",
         (e * 6 * D + 8 * 6, e * 7 * D), 7 * D),
    ]


def _sort_cases(dt):
    r = _rng()
    e = np.dtype(dt).itemsize
    x = r.standard_normal((4, 6)).astype(dt)
    g = r.standard_normal((4, 6)).astype(dt)
    x[1, 2] = 0.0
    y = np.cumprod(x, axis=1)
    return [
        # (values, indices) of 4 lines of 6: 4 * 6 * ceil(log2 6) comparisons counted
        ("sort", (x, 1), {}, "sort", (e * 24, e * 24 + 8 * 24), 4 * 6 * 3),
        ("sort", (x, 0, True, 2), {}, "sort", (e * 24, e * 12 + 8 * 12), 6 * 4 * 2),
        ("sort", (x, 1, False, 3, "kth"), {}, "sort", (e * 24, e * 4 + 8 * 4), 4 * 6 * 3),
        ("scan", (x, 0, "sum"), {}, "scan", (e * 24, e * 24), 24),
        ("scan", (x, 1, "prod", True), {}, "scan", (e * 24, e * 24), 24),
        ("cumprod_backward", (g, x, y, 1), {}, "cumprod_backward", (3 * e * 24, e * 24), 4 * 24),
    ]


def _cases(dt):
    return _softmax_cases(dt) + _reduce_cases(dt) + _matrix_cases(dt) + _norm_cases(dt) + \
        _sort_cases(dt)


CASE_IDS = [f"{c[0]}-{k}" for k, c in enumerate(_cases(np.float32))]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("k", range(len(CASE_IDS)), ids=CASE_IDS)
def test_recorded_kind_replays_bitwise_and_reports_its_bytes(dt, k):
    name, args, kwargs, kind, traffic, flops = _cases(dt)[k]
    assert name in _core.RECORD_ARGS
    out = getattr(_core, name)(*args, **kwargs)
    want = [o.copy() for o in _outputs(out)]
    prog = _program_of(name, args, kwargs, out)
    for o in _outputs(out):
        o[...] = np.nan if o.dtype.kind == "f" else -1
    prog.run()
    for o, w in zip(_outputs(out), want):
        assert o.dtype == w.dtype and o.shape == w.shape
        np.testing.assert_array_equal(o, w)
    assert prog.names() == [kind]
    assert prog.traffic() == [traffic]
    assert prog.flops() == [flops]
    # the kind's own name adds the same instruction (ints without the kind id)
    ptrs, ints, reals, f64, _ = getattr(_core, _core.RECORD_ARGS[name])(*args, result=out,
                                                                      **kwargs)
    again = _core.Program()
    again.add(kind, f64, ptrs, ints[1:], reals)
    assert again.names() == [kind] and again.traffic() == [traffic]


def _raises(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the type and message are what is compared
        return type(exc), str(exc)
    return None


BAD = {
    "softmax_forward": [((np.ones(3, np.float32),), {}), ((np.ones((2, 2), np.int64),), {}),
                        ((np.ones((2, 4), np.float32)[:, ::2],), {})],
    "log_softmax_backward": [((np.ones((2, 3)), np.ones((2, 3), np.float32)), {}),
                             ((np.ones((2, 3)), np.ones((3, 2))), {})],
    "sum_axis": [((np.ones((2, 3)), 2), {}), ((np.ones((2, 3), np.int32), 0), {})],
    "sum_all": [((np.ones(4, np.float16),), {}), ((np.ones((4, 4))[:, ::2],), {})],
    "reduce": [((99, np.ones(3)), {}), ((0, np.ones((2, 3))), {"axes": (1, 1)}),
               ((0, np.ones((2, 3))), {"axes": 2}), ((0, np.ones(3)), {"axes": "0"}),
               ((4, np.ones((0, 3))), {"axes": 0}), ((0, np.ones(3, np.int64)), {})],
    "gemm": [((np.ones((2, 3)), np.ones((2, 3))), {}),
             ((np.ones((2, 3)), np.ones((3, 2), np.float32)), {}),
             ((np.ones((2, 3)), np.ones((3, 2))), {"beta": 1.0}),
             ((np.ones((2, 3)), np.ones((3, 2))), {"out": np.ones((2, 3))}),
             ((np.ones(3), np.ones((3, 2))), {})],
    "scale": [((np.ones(3), np.array(1.0, np.float32)), {}), ((np.ones(3), np.ones(1)), {}),
              ((np.ones(3, np.int32), np.array(1.0)), {})],
    "count_scale": [((np.ones(3), -100), {}), ((np.ones((2, 2), np.int64), -100), {})],
    "batch_norm_forward": [
        ((np.ones((2, 3)), None, None, None, None, None, False, 0.1, 1e-5), {}),
        ((np.ones((2, 3)), np.ones(2), None, None, None, None, True, 0.1, 1e-5), {}),
        ((np.ones((1, 3)), None, None, None, None, None, True, 0.1, 1e-5), {}),
        ((np.ones((2, 3)), None, None, np.zeros(3), None, None, True, 0.1, 1e-5), {}),
        ((np.ones((2, 3)), None, None, None, None, None, True, -1.0, 1e-5), {})],
    "batch_norm_backward": [((np.ones((2, 3)), np.ones((2, 3)), None, None, np.ones(3), True),
                             {}),
                            ((np.ones((2, 4)), np.ones((2, 3)), None, np.ones(3), np.ones(3),
                              True), {})],
    "layer_norm_forward": [((np.ones((2, 3)), np.ones(2), None, 1e-5), {}),
                           ((np.ones((2, 3)), None, None, -1.0), {})],
    "layer_norm_backward": [((np.ones((2, 3)), np.ones((2, 3), np.float32), None, np.ones(2),
                              np.ones(2)), {})],
    "embedding_forward": [((np.ones((4, 2)), np.array([4])), {}),
                          ((np.ones((4, 2)), np.array([1.0])), {})],
    "sort": [((np.ones(3, np.float16), 0), {}), ((np.ones((3, 4))[:, ::2], 0), {}),
             ((np.ones((2, 3)), 1, False, 4), {}), ((np.ones(3), 0, False, 0, "kth"), {})],
    "scan": [((np.ones(3, np.int32), 0, "sum"), {}), ((np.ones(3), 0, "max"), {})],
    "cumprod_backward": [((np.ones(3), np.ones(3), np.ones(4), 0), {}),
                         ((np.ones(3, np.float32), np.ones(3), np.ones(3), 0), {})],
    "embedding_backward": [((np.ones((2, 3)), np.array([0, 1]), -1), {}),
                           ((np.ones((2, 3)), np.array([0, 5]), 3), {}),
                           ((np.ones((3, 3)), np.array([0, 1]), 3), {})],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_twin_refuses_what_the_binding_refuses(name):
    twin = getattr(_core, _core.RECORD_ARGS[name])
    for args, kwargs in BAD[name]:
        eager = _raises(getattr(_core, name), *args, **kwargs)
        assert eager is not None, (name, args)
        assert eager[0] in (TypeError, ValueError), eager
        assert _raises(twin, *args, result=None, **kwargs) == eager


@pytest.mark.parametrize("dt", DTYPES)
def test_gemm_into_out_with_beta_reads_and_writes_out(dt):
    """beta != 0: C is read as well as written (operands() marks it so), the replay accumulates
    into it as the eager call did, and gd.compile checks C is known memory (it is a read)."""
    r = _rng()
    a, b = r.standard_normal((4, 3)).astype(dt), r.standard_normal((3, 2)).astype(dt)
    c0 = r.standard_normal((4, 2)).astype(dt)
    e = np.dtype(dt).itemsize
    c = c0.copy()
    out = _core.gemm(a, b, alpha=0.5, beta=2.0, out=c)
    assert out is c or np.shares_memory(out, c)
    want = c.copy()
    ptrs, ints, reals, f64, reads = _core.gemm_args(a, b, alpha=0.5, beta=2.0, out=c, result=out)
    assert (c.__array_interface__["data"][0], c.nbytes) in [tuple(x) for x in reads]
    prog = _core.Program()
    prog.add("call", f64, ptrs, ints, reals)
    c[...] = c0
    prog.run()
    np.testing.assert_array_equal(c, want)
    np.testing.assert_allclose(c, 0.5 * a @ b + 2.0 * c0, rtol=1e-5)
    assert prog.traffic() == [(e * (12 + 6 + 8), e * 8)]
    with pytest.raises(ValueError, match="'result' must be argument 'out'"):
        _core.gemm_args(a, b, beta=2.0, out=c, result=c.copy())


@pytest.mark.parametrize("dt", DTYPES)
def test_training_batch_norm_replays_its_running_statistics_update(dt):
    """In training the kind writes the running statistics and the batch count as well (read and
    written: operands() marks them so) and a replay updates them as the eager call did."""
    r = _rng()
    x = r.standard_normal((5, 3)).astype(dt)
    rm, rv, nbt = r.standard_normal(3).astype(dt), np.abs(r.standard_normal(3)).astype(dt), \
        np.array(4, np.int64)
    state0 = [rm.copy(), rv.copy(), nbt.copy()]
    out = _core.batch_norm_forward(x, None, None, rm, rv, nbt, True, -1.0, 1e-5)
    want = [a.copy() for a in (*out, rm, rv, nbt)]
    ptrs, ints, reals, f64, _ = _core.batch_norm_forward_args(x, None, None, rm, rv, nbt, True,
                                                              -1.0, 1e-5, result=out)
    prog = _core.Program()
    prog.add("call", f64, ptrs, ints, reals)
    for a, a0 in zip((rm, rv, nbt), state0):
        a[...] = a0
    prog.run()
    for got, w in zip((*out, rm, rv, nbt), want):
        np.testing.assert_array_equal(got, w)
    assert int(nbt) == 5
    e = np.dtype(dt).itemsize
    # reads x, the running statistics and the count; writes y, mean, invstd, the statistics, count
    assert prog.traffic() == [(e * (15 + 6) + 8, e * (15 + 6 + 6) + 8)]


def test_twin_refuses_a_result_of_the_wrong_shape():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="result"):
        _core.softmax_forward_args(x, result=np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="result"):
        _core.softmax_forward_args(x, result=np.ones((2, 3), np.float64))
