"""Tests the reductions over any set of axes (`_core.reduce`, src/cpp/reduce.cpp), the Tensor ops
that call them (functional/reduce.py) and their capture by gd.compile.

Oracles are NumPy in float64 (PyTorch's conventions written out where NumPy differs: the first
NaN wins max/argmax, logsumexp shifts by 0 when the max is infinite, var divides by
max(0, n - correction)); PyTorch itself is a second oracle when it is installed. Sums are
compared within a tolerance proportional to sum(|x|), the scale of any order's rounding error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

OPS = _core.REDUCE_OPS
SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]
INDEX_OPS = ("max", "min", "argmax", "argmin")
NO_IDENTITY = ("amax", "amin", "max", "min", "argmax", "argmin")


def _norm_axes(axes, nd):
    if axes is None:
        return tuple(range(nd))
    return tuple(sorted(a % nd for a in axes))


def _first_extreme(x, axes, is_max):
    """(values, indices) of the first extreme (or first NaN) over axes, the reduced dims
    flattened in C order (PyTorch's index for a single dim or for dim=None)."""
    nd = x.ndim
    kept = [d for d in range(nd) if d not in axes]
    moved = np.transpose(x, kept + list(axes))
    out_shape = tuple(x.shape[d] for d in kept)
    rows = moved.reshape(int(np.prod(out_shape, dtype=np.int64)), -1)
    idx = np.empty(rows.shape[0], dtype=np.int64)
    for k, row in enumerate(rows):
        nan = np.isnan(row)
        idx[k] = np.argmax(nan) if nan.any() else (np.argmax(row) if is_max else np.argmin(row))
    vals = rows[np.arange(rows.shape[0]), idx]
    return vals.reshape(out_shape), idx.reshape(out_shape)


def _oracle(name, x, axes, param=0.0):
    """float64 reference of `name` over axes (a sorted tuple); (values, indices or None)."""
    x = np.asarray(x, dtype=np.float64)
    ax = tuple(axes)
    n = int(np.prod([x.shape[d] for d in ax], dtype=np.int64))
    with np.errstate(all="ignore"):
        if name == "sum":
            return np.sum(x, axis=ax), None
        if name == "mean":
            return np.sum(x, axis=ax) / n, None
        if name in ("var", "std"):
            mu = np.sum(x, axis=ax, keepdims=True) / n
            v = np.sum((x - mu) ** 2, axis=ax) / max(0.0, n - param)
            return (np.sqrt(v) if name == "std" else v), None
        if name == "amax":
            return np.max(x, axis=ax), None
        if name == "amin":
            return np.min(x, axis=ax), None
        if name in INDEX_OPS:
            return _first_extreme(x, ax, name in ("max", "argmax"))
        if name == "logsumexp":
            m = np.max(x, axis=ax, keepdims=True) if n else np.full(
                [1 if d in ax else s for d, s in enumerate(x.shape)], -np.inf)
            m = np.where(np.isinf(m), 0.0, m)
            return np.squeeze(np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m,
                              axis=ax), None
        if name == "norm":
            a = np.abs(x)
            if param == 2:
                return np.sqrt(np.sum(a * a, axis=ax)), None
            if param == 1:
                return np.sum(a, axis=ax), None
            if param == 0:
                return np.sum(x != 0, axis=ax).astype(np.float64), None
            if np.isinf(param):
                return (np.max(a, axis=ax) if param > 0 else np.min(a, axis=ax)), None
            return np.sum(a ** param, axis=ax) ** (1.0 / param), None
        if name == "prod":
            return np.prod(x, axis=ax), None
    raise AssertionError(name)


def _scale(name, x, axes, param):
    """The magnitude a rounding error of `name` is proportional to, per output."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    ax = tuple(axes)
    n = max(1, int(np.prod([x.shape[d] for d in ax], dtype=np.int64)))
    with np.errstate(all="ignore"):
        if name in ("sum", "norm") and param != 2:
            return np.sum(a, axis=ax)
        if name == "mean":
            return np.sum(a, axis=ax) / n
        if name == "norm":
            return np.sqrt(np.sum(a * a, axis=ax))
        if name == "var":
            return np.sum(a * a, axis=ax) / n + np.abs(_oracle(name, x, axes, param)[0])
        if name == "std":  # (a constant row's std is eps |x|, not eps |x|^2)
            return np.sqrt(np.sum(a * a, axis=ax) / n) + np.abs(_oracle(name, x, axes, param)[0])
    return np.abs(_oracle(name, x, axes, param)[0]) + 1.0


def _assert_matches(name, got, x, axes, keepdim, param=0.0):
    axes = _norm_axes(axes, x.ndim)
    ref, ref_idx = _oracle(name, x, axes, param)
    keep_shape = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
    if name in ("max", "min"):
        got, got_idx = got
    elif name in ("argmax", "argmin"):
        got, got_idx = None, got
    if name in INDEX_OPS:
        assert got_idx.dtype == np.int64
        want = np.reshape(ref_idx, keep_shape) if keepdim else ref_idx
        np.testing.assert_array_equal(got_idx, want)
        if got is None:
            return
    assert got.dtype == x.dtype
    want = np.reshape(ref, keep_shape) if keepdim else np.asarray(ref)
    assert got.shape == want.shape
    got64 = got.astype(np.float64)
    if name in ("amax", "amin", "max", "min") or (name == "norm" and np.isinf(param)):
        np.testing.assert_array_equal(got64, want.astype(x.dtype).astype(np.float64))
        return
    rtol = 2e-5 if x.dtype == np.float32 else 1e-12
    scale = np.reshape(_scale(name, x, axes, param), want.shape)
    np.testing.assert_array_equal(np.isnan(got64), np.isnan(want), err_msg="NaN positions")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got64[inf], want[inf], err_msg="infinities")
    ok = ~np.isnan(want) & ~inf
    err = np.abs(got64[ok] - want[ok])
    assert np.all(err <= rtol * scale[ok] + np.finfo(x.dtype).tiny), \
        f"{name}: max error {np.max(err, initial=0):g}"


def _kernel(name, x, axes=None, keepdim=False, param=0.0):
    return _core.reduce(OPS[name], x, axes, keepdim, param)


VALUE_OPS = [("sum", 0.0), ("mean", 0.0), ("var", 1.0), ("var", 0.0), ("std", 1.0),
             ("amax", 0.0), ("amin", 0.0), ("logsumexp", 0.0), ("norm", 2.0), ("norm", 1.0),
             ("norm", np.inf), ("norm", -np.inf), ("norm", 0.0), ("norm", 3.0), ("prod", 0.0)]
ALL_OPS = VALUE_OPS + [(n, 0.0) for n in INDEX_OPS]
OP_IDS = [f"{n}-{p:g}" for n, p in ALL_OPS]

# (shape, axes): none, one, several, negative, all; long rows (several blocks), columns
SHAPE_AXES = [
    ((), None), ((7,), None), ((7,), (0,)), ((7,), (-1,)), ((3, 5, 4), (1,)),
    ((3, 5, 4), (0, 2)), ((3, 5, 4), (-1, 0)), ((3, 5, 4), None), ((3, 5, 4), ()),
    ((2, 3, 4, 5), (1, 3)), ((2, 3, 4, 5), (0, 1, 2)), ((1, 5, 1), (0,)), ((1, 5, 1), (1, 2)),
    ((300, 130), (1,)), ((300, 130), (0,)), ((9000,), (0,)), ((3, 9000), (1,)),
    ((9000, 3), (0,)), ((600, 70), (0,)), ((6, 600, 70), (0, 1)), ((5, 7, 33), (1,)),
    ((9000, 5), (0,)), ((3, 3000, 7), (0, 1)), ((1500, 2100), (0,)),
]


@pytest.mark.parametrize("name,param", ALL_OPS, ids=OP_IDS)
@pytest.mark.parametrize("shape,axes", SHAPE_AXES, ids=str)
def test_every_reduction_matches_numpy(name, param, shape, axes, float_dtype, rng):
    x = rng.standard_normal(shape).astype(float_dtype)
    if name == "prod":
        x = np.asarray(1 + 0.01 * x).astype(float_dtype)  # keeps long products finite
    for keepdim in (False, True):
        _assert_matches(name, _kernel(name, x, axes, keepdim, param), x, axes, keepdim, param)


@pytest.mark.parametrize("name,param", ALL_OPS, ids=OP_IDS)
@pytest.mark.parametrize("view", ["transposed", "strided", "reversed", "broadcast", "fortran"])
def test_non_contiguous_inputs_are_read_in_place(name, param, view, float_dtype, rng):
    base = rng.standard_normal((40, 30, 6)).astype(float_dtype)
    if name == "prod":
        base = (1 + 0.01 * base).astype(float_dtype)
    x = {"transposed": base.transpose(2, 0, 1), "strided": base[::3, 1::2, ::5],
         "reversed": base[::-1, :, ::-2],
         "broadcast": np.broadcast_to(base[:1, :, 2:3], (40, 30, 6)),
         "fortran": np.asfortranarray(base)}[view]
    for axes in [None, (0,), (1,), (2,), (0, 2), (-1, -2)]:
        if name in ("max", "min", "argmax", "argmin") and axes is not None and len(axes) > 1:
            continue
        _assert_matches(name, _kernel(name, x, axes, False, param), x, axes, False, param)


@pytest.mark.parametrize("name", ["max", "min", "argmax", "argmin", "amax", "amin"])
def test_ties_take_the_first_index_and_nan_wins_with_its_first_index(name, float_dtype):
    x = np.array([[1, 3, 3, 0, 3], [2, 2, 2, 2, 2], [0, np.nan, 5, np.nan, 9],
                  [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf], [np.inf, 1, np.inf, 2, np.nan],
                  [-1, -5, -5, 7, -5]], dtype=float_dtype)
    for axes in [(1,), (0,), None]:
        for src in (x, np.ascontiguousarray(x.T).T, np.tile(x, (1, 900))):
            _assert_matches(name, _kernel(name, src, axes), src, axes, False)
    got = _kernel("argmax" if name.endswith("max") else "argmin", x, (1,))
    np.testing.assert_array_equal(got[:3], [1, 0, 1] if name.endswith("max") else [3, 0, 1])


@pytest.mark.parametrize("name,param", VALUE_OPS, ids=OP_IDS[:len(VALUE_OPS)])
def test_nan_and_inf_propagate(name, param, float_dtype):
    rows = [[1.0, np.nan, 2.0], [np.inf, 1.0, 2.0], [-np.inf, 1.0, 2.0], [np.inf, -np.inf, 0.0],
            [-np.inf, -np.inf, -np.inf], [np.inf, np.inf, 1.0], [0.0, 0.0, 0.0]]
    x = np.array(rows, dtype=float_dtype)
    if name in ("amax", "amin") or (name == "norm" and np.isinf(param)):
        _assert_matches(name, _kernel(name, x, (1,), False, param), x, (1,), False, param)
        return
    got = _kernel(name, x, (1,), False, param).astype(np.float64)
    ref = _oracle(name, x, (1,), param)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)


def test_logsumexp_at_infinities_follows_pytorch():
    x = np.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.inf, -np.inf], [np.nan, np.inf],
                  [-np.inf, 0.0], [1000.0, 1000.0]])
    got = _kernel("logsumexp", x, (1,))
    np.testing.assert_array_equal(got, [-np.inf, np.inf, np.inf, np.nan, 0.0,
                                        1000.0 + np.log(2.0)])


def test_empty_reductions(float_dtype):
    x = np.zeros((3, 0, 2), dtype=float_dtype)
    np.testing.assert_array_equal(_kernel("sum", x, (1,)), np.zeros((3, 2)))
    np.testing.assert_array_equal(_kernel("prod", x, (1,)), np.ones((3, 2)))
    np.testing.assert_array_equal(_kernel("norm", x, (1,), param=2.0), np.zeros((3, 2)))
    assert np.isnan(_kernel("mean", x, None)) and _kernel("sum", x).shape == ()
    assert np.isnan(_kernel("var", x, (1,))).all()
    np.testing.assert_array_equal(_kernel("logsumexp", x, (1,)), np.full((3, 2), -np.inf))
    assert _kernel("amax", x, (0, 2)).shape == (0,)  # nothing reduced over the empty dim
    assert _kernel("sum", x, (0,), True).shape == (1, 0, 2)
    for name in NO_IDENTITY:
        with pytest.raises(ValueError, match=rf"reduce\({name}\): cannot reduce over axis 1 "
                                             r"of size 0"):
            _kernel(name, x, (1,))
    with pytest.raises(ValueError, match="size 0"):
        _kernel("norm", x, None, param=np.inf)


def test_tensor_ops_raise_pytorchs_errors_for_empty_dims():
    x = gd.zeros(3, 0)
    with pytest.raises(IndexError, match="amax"):
        x.amax(1)
    with pytest.raises(IndexError, match="max"):
        x.max(1)
    with pytest.raises(IndexError, match="argmax"):
        x.argmax(1)
    with pytest.raises(RuntimeError, match="numel"):
        x.max()
    assert x.sum().item() == 0.0 and x.sum(1).shape == (3,)
    assert x.amax(0).shape == (0,)


@pytest.mark.parametrize("name,param", ALL_OPS, ids=OP_IDS)
def test_bitwise_equal_for_1_2_3_threads_and_every_isa(name, param, threads, rng):
    """Above the parallel threshold (rows, columns and block paths), any thread count and any
    ISA give the same bits: the order of operations depends on the shape alone."""
    cases = [(rng.standard_normal((700, 1100)).astype(np.float32), (1,)),
             (rng.standard_normal((1100, 700)).astype(np.float32), (0,)),
             (rng.standard_normal((300_001,)), None),
             (rng.standard_normal((3, 90_000)).astype(np.float32), (1,)),
             (rng.standard_normal((70_000, 9)).astype(np.float32), (0,)),
             (rng.standard_normal((300, 2100)).astype(np.float32), (0,))]
    if name == "prod":
        cases = [(np.exp(0.001 * x).astype(x.dtype), ax) for x, ax in cases]
    results = []
    for isa in SUPPORTED_ISAS:
        _core.set_isa(isa)
        for n in (1, 2, 3):
            threads(n)
            out = []
            for x, axes in cases:
                r = _kernel(name, x, axes, False, param)
                out.extend(r if isinstance(r, tuple) else (r,))
            results.append([o.tobytes() for o in out])
    assert all(r == results[0] for r in results[1:])


def test_every_isa_matches_numpy(isa, rng):
    assert _core.isa() == isa
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((37, 129)).astype(dt)
        for name, param in ALL_OPS:
            for axes in [(1,), (0,), None]:
                _assert_matches(name, _kernel(name, x, axes, False, param), x, axes, False,
                                param)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: _core.reduce(99, np.ones(3)), ValueError, r"reduce: argument 'op' must be an id"),
    (lambda: _core.reduce(-1, np.ones(3)), ValueError, r"reduce: argument 'op'"),
    (lambda: _kernel("sum", np.ones((2, 3)), (2,)), ValueError,
     r"reduce\(sum\): argument 'axes': axis 2 is out of range for an array of shape \(2, 3\)"),
    (lambda: _kernel("sum", np.ones((2, 3)), (-3,)), ValueError, r"axis -3 is out of range"),
    (lambda: _kernel("mean", np.ones((2, 3)), (1, -1)), ValueError,
     r"reduce\(mean\): argument 'axes': axis 1 appears more than once"),
    (lambda: _kernel("sum", np.ones(3), "0"), TypeError, r"argument 'axes' must be None, an int"),
    (lambda: _kernel("sum", np.ones(3, np.int64)), TypeError,
     r"reduce\(sum\): argument 'x' must have dtype float32 or float64, got int64"),
    (lambda: _kernel("amax", np.ones(3, bool)), TypeError, r"got bool"),
    (lambda: _kernel("sum", [1.0, 2.0]), TypeError, r"argument 'x' must be a numpy.ndarray"),
    (lambda: _kernel("sum", np.ones(3, ">f8")), TypeError, r"float32 or float64, got >f8"),
    (lambda: _kernel("sum", np.zeros(17, np.uint8)[1:].view(np.float64)), ValueError,
     r"not aligned"),
])
def test_bad_input_raises_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_a_single_axis_int_and_the_ops_table():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(_kernel("sum", x, 1), x.sum(1))
    assert set(OPS) == {"sum", "mean", "var", "std", "amax", "amin", "max", "min", "argmax",
                        "argmin", "logsumexp", "norm", "prod"}
    assert sorted(OPS.values()) == list(range(len(OPS)))


# ---- the Tensor ops --------------------------------------------------------------------------

def _t(a):
    return gd.tensor(a, dtype=gd.float64 if a.dtype == np.float64 else gd.float32)


@pytest.mark.parametrize("dims,keepdim", [(None, False), (1, False), (1, True), ((0, 2), False),
                                          ((-1, 0), True), ((), False)], ids=str)
def test_tensor_reductions_match_numpy_and_keep_their_dtype(dims, keepdim, float_dtype, rng):
    a = rng.standard_normal((4, 5, 6)).astype(float_dtype)
    x = _t(a)
    axes = None if dims in (None, ()) else (dims if isinstance(dims, tuple) else (dims,))
    kw = {"keepdim": keepdim}
    for name, got in [("sum", x.sum(dims, **kw) if dims is not None else x.sum()),
                      ("mean", x.mean(dims, **kw) if dims is not None else x.mean()),
                      ("var", x.var(dims, **kw) if dims is not None else x.var()),
                      ("std", x.std(dims, **kw) if dims is not None else x.std()),
                      ("amax", x.amax(dims, **kw) if dims is not None else x.amax()),
                      ("amin", x.amin(dims, **kw) if dims is not None else x.amin())]:
        assert got.dtype == x.dtype, name
        _assert_matches(name, got.numpy(), a, axes, keepdim and axes is not None or
                        (keepdim and name in ("amax", "amin")), 1.0 if name in ("var", "std")
                        else 0.0)
    if dims is not None and dims != ():
        got = x.logsumexp(dims, keepdim=keepdim)
        _assert_matches("logsumexp", got.numpy(), a, axes, keepdim)


def test_tensor_max_min_argmax_on_views_and_nan(float_dtype, rng):
    a = rng.standard_normal((6, 8)).astype(float_dtype)
    a[2, 3] = a[2, 6] = np.nan
    a[4, :] = 1.0
    x = _t(a).t()[::2]  # a strided view: read in place by the kernel
    v = a.T[::2]
    for dim in (0, 1, -1):
        for is_max in (True, False):
            vals, idx = x.max(dim) if is_max else x.min(dim)
            ref_v, ref_i = _first_extreme(v, (dim % 2,), is_max)
            np.testing.assert_array_equal(idx.numpy(), ref_i)
            np.testing.assert_array_equal(vals.numpy(), ref_v.astype(float_dtype))
            assert idx.dtype == gd.int64 and vals.dtype == x.dtype
            arg = x.argmax(dim, keepdim=True) if is_max else x.argmin(dim, keepdim=True)
            np.testing.assert_array_equal(arg.numpy(), np.expand_dims(ref_i, dim))
    flat = x.argmax()
    assert flat.shape == () and flat.item() == _first_extreme(v, (0, 1), True)[1]
    assert x.argmin(keepdim=True).shape == (1, 1)


def test_integer_and_bool_tensors_stay_on_numpy_with_their_dtype_rules():
    i = gd.tensor([[3, 1, 3], [0, 5, 5]], dtype=gd.int64)
    assert i.sum().dtype == gd.int64 and i.sum().item() == 17
    assert i.amax(1).dtype == gd.int64 and i.amax(1).numpy().tolist() == [3, 5]
    assert i.argmax(1).numpy().tolist() == [0, 1]
    vals, idx = i.max(1)
    assert vals.numpy().tolist() == [3, 5] and idx.numpy().tolist() == [0, 1]
    b = gd.tensor([True, False, True])
    assert b.sum().item() == 2 and b.sum().dtype == gd.int64
    with pytest.raises(RuntimeError, match="mean"):
        i.mean()


def test_var_std_corrections_follow_pytorch():
    x = gd.tensor([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]], dtype=gd.float64)
    np.testing.assert_allclose(x.var(1).numpy(), [7.0 / 3.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(x.var(1, correction=0).numpy(), [14.0 / 9.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(x.std(1, unbiased=False).numpy(), np.sqrt([14.0 / 9.0, 0.0]))
    np.testing.assert_allclose(x.var(1, correction=1.5).numpy(), [14.0 / 3.0 / 1.5, 0.0])
    # no degrees of freedom left: m2 / 0, inf or NaN
    v = x.var(1, correction=3).numpy()
    assert v[0] == np.inf and np.isnan(v[1])


def test_std_gradient_is_zero_where_std_is_zero():
    x = gd.tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 4.0]], dtype=gd.float64, requires_grad=True)
    x.std(1).sum().backward()
    g = x.grad.numpy()
    np.testing.assert_array_equal(g[0], [0.0, 0.0, 0.0])
    d = np.array([1.0, 2.0, 4.0]) - 7.0 / 3.0
    np.testing.assert_allclose(g[1], d / (2 * np.sqrt(np.sum(d * d) / 2)), rtol=1e-14)


def test_against_pytorch_when_installed(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((5, 7, 4))
    a[1, 2, 3] = np.nan
    a[3, 1, :] = 2.0
    x, t = gd.tensor(a, dtype=gd.float64), torch.tensor(a)
    for dim in (0, 1, 2):
        for is_max in (True, False):
            gv, gi = x.max(dim) if is_max else x.min(dim)
            tv, ti = t.max(dim) if is_max else t.min(dim)
            np.testing.assert_array_equal(gi.numpy(), ti.numpy())
            np.testing.assert_array_equal(gv.numpy(), tv.numpy())
            ga = x.argmax(dim) if is_max else x.argmin(dim)
            np.testing.assert_array_equal(ga.numpy(), (t.argmax(dim) if is_max else
                                                       t.argmin(dim)).numpy())
    b = rng.standard_normal((6, 9))
    x, t = gd.tensor(b, dtype=gd.float64), torch.tensor(b)
    for dim in (0, 1, (0, 1)):
        for c in (0, 1, 2.5):
            np.testing.assert_allclose(x.var(dim, correction=c).numpy(),
                                       t.var(dim, correction=c).numpy(), rtol=1e-13)
            np.testing.assert_allclose(x.std(dim, correction=c).numpy(),
                                       t.std(dim, correction=c).numpy(), rtol=1e-13)
        np.testing.assert_allclose(x.logsumexp(dim).numpy(), t.logsumexp(dim).numpy(),
                                   rtol=1e-14)
    z = np.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.inf, -np.inf], [np.nan, 1.0]])
    np.testing.assert_array_equal(gd.tensor(z).logsumexp(1).numpy(),
                                  torch.tensor(z).logsumexp(1).numpy())
    assert x.argmax().item() == t.argmax().item()


# ---- capture by gd.compile ----------------------------------------------------------------

def _programs(compiled):
    return [e.program.names() for e in compiled._cache.values() if hasattr(e, "program")]


@pytest.mark.parametrize("body", ["mean_keepdim", "var", "amax", "logsumexp", "max_dim",
                                  "argmax", "std_sum"])
@pytest.mark.parametrize("dtype", [gd.float32, gd.float64], ids=["float32", "float64"])
def test_compiled_reductions_are_recorded_and_bitwise_equal(body, dtype):
    gd.manual_seed(0)
    model = gd.nn.Sequential(gd.nn.Linear(6, 9), gd.nn.ReLU(), gd.nn.Linear(9, 5)).to(dtype)

    def fn(x):
        with gd.no_grad():
            h = model(x)
            return {"mean_keepdim": lambda: h.mean(1, keepdim=True),
                    "var": lambda: h.var(),
                    "amax": lambda: h.amax(1),
                    "logsumexp": lambda: h.logsumexp(1).mean(),
                    "max_dim": lambda: h.max(0),
                    "argmax": lambda: h.argmax(1),
                    "std_sum": lambda: h.t().std(1).sum()}[body]()

    compiled = gd.compile(fn)
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback warns
        for _ in range(4):
            x = gd.tensor(rng.standard_normal((7, 6)), dtype=dtype)
            got, want = compiled(x), fn(x)
            got = got if isinstance(got, tuple) else (got,)
            want = want if isinstance(want, tuple) else (want,)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.shape == w.shape
                np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert compiled.stats == {"recorded": 1, "replayed": 3, "eager": 0}
    (names,) = _programs(compiled)
    assert "reduce" in names, names


def test_compiled_program_reports_reduce_operands_traffic_and_flops():
    x = np.zeros((4, 6), np.float32)
    prog = _core.Program()
    y = np.empty((6,), np.float32)
    idx = np.empty((6,), np.int64)
    addr = lambda a: a.__array_interface__["data"][0]  # noqa: E731
    xt = x.T  # (6, 4) with strides (1, 6) elements
    prog.add("reduce", False, [addr(y), addr(idx), addr(xt)],
             [OPS["max"], 2, 0b10, 0, 6, 4, 1, 6], [0.0])
    x[:] = np.arange(24, dtype=np.float32).reshape(4, 6)[::-1]
    prog.run()
    vals, ref_idx = _kernel("max", xt, (1,))
    np.testing.assert_array_equal(y, vals)
    np.testing.assert_array_equal(idx, ref_idx)
    assert prog.names() == ["reduce"]
    assert prog.traffic() == [(x.nbytes, y.nbytes + idx.nbytes)]
    assert prog.flops() == [24]
    assert prog.footprint() == x.nbytes + y.nbytes + idx.nbytes


def test_float32_var_std_accumulate_in_float64():
    """float32 var/std accumulate in float64 inside the kernel (as PyTorch): a sum of squares
    of values near 5e18 (beyond float32's range; the variance is within it) does not
    overflow, any layout is read in place, and a result beyond float32's range is +inf. The
    oracle is NumPy in float64 rounded to float32."""
    rng = np.random.default_rng(4)
    big = (rng.standard_normal((6, 40)) * 5e18).astype(np.float32)
    for x in (big, big.T, big[::2, ::3], np.broadcast_to(big[:1], (5, 40))):
        for dims in (None, (0,), (1,), (0, 1)):
            for corr in (0.0, 1.0):
                for op, fn in (("var", np.var), ("std", np.std)):
                    got = _core.reduce(_core.REDUCE_OPS[op], x, dims, False, corr)
                    want = fn(x.astype(np.float64), axis=dims, ddof=corr).astype(np.float32)
                    assert got.dtype == np.float32 and np.all(np.isfinite(got))
                    np.testing.assert_allclose(got, want, rtol=1e-6)
    huge = np.array([3e38, -3e38, 3e38], np.float32)
    assert np.isposinf(_core.reduce(_core.REDUCE_OPS["var"], huge, None, False, 1.0))
    assert np.isposinf(_core.reduce(_core.REDUCE_OPS["std"], huge, None, False, 1.0))
    nan = np.array([1.0, np.nan], np.float32)
    assert np.isnan(_core.reduce(_core.REDUCE_OPS["std"], nan, None, False, 1.0))
