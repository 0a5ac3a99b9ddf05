"""Tests the elementwise kernel family (`graddesc._core.elementwise`, src/cpp/elementwise.cpp).

The oracle is NumPy: + - * / maximum minimum neg abs square reciprocal sign sqrt rsqrt clamp
where must give its bits exactly (NaN and signed zeros included), exp log log1p sin cos pow
within a few ulp. Operands are broadcast (0-d, size 0, size 1, odd sizes, several broadcast
dims), non-contiguous (transposed, stepped, reversed) and mixed with Python numbers; results must
not depend on the ISA or the thread count. The Tensor-level tests at the end check that the
ops keep NumPy's result dtypes and that gd.compile captures steps made of them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from _arrays import misaligned_f32
from graddesc import _core

EW = _core.EW_OPS

BINARY_EXACT = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                "maximum": np.maximum, "minimum": np.minimum}
UNARY_EXACT = {"neg": np.negative, "abs": np.abs, "square": np.square,
               "reciprocal": np.reciprocal, "sign": np.sign, "sqrt": np.sqrt,
               "rsqrt": lambda x: np.divide(x.dtype.type(1), np.sqrt(x)),
               # PyTorch's sign, abs's derivative: 0 at NaN and at either zero
               "sgn": lambda x: np.where(np.isnan(x), x.dtype.type(0), np.sign(x)) + 0.0,
               "copy": lambda x: np.array(x, order="C")}
# comparisons: NumPy's bool results (false with a NaN, except ne)
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}
UNARY_ULP = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "sin": np.sin, "cos": np.cos}

SHAPE_PAIRS = [
    ((), ()), ((5,), ()), ((), (7,)), ((1,), (9,)), ((3, 1), (1, 4)), ((2, 3, 5), (5,)),
    ((2, 1, 5), (3, 1)), ((0, 3), (3,)), ((1,), (0,)), ((1, 1, 1), (1,)), ((17, 33), (17, 33)),
    ((5, 1, 7, 1), (1, 6, 1, 3)), ((4, 1, 3), (4, 2, 1)),
]
LAYOUTS = ["contiguous", "transposed", "stepped", "reversed"]


def _ew(name, a, b=None, c=None, out=None):
    return _core.elementwise(EW[name], a, b, c, out)


def _values(rng, shape, dtype, specials=True, positive=False):
    x = np.array(rng.standard_normal(shape) * 3, ndmin=len(shape))
    if positive:
        x = np.abs(x) + 0.01
    if specials and x.size:
        flat = x.reshape(-1)
        pick = rng.random(flat.size) < 0.15
        flat[pick] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], pick.sum())
    return np.asarray(x, dtype=dtype)


def _layout(x, kind):
    """x's values as an array of the given memory layout (a view into a larger buffer)."""
    if kind == "contiguous" or x.ndim == 0:
        return np.array(x, order="C")
    if kind == "transposed":
        return np.ascontiguousarray(x.T).T
    if kind == "stepped":
        big = np.zeros(tuple(2 * n + 1 for n in x.shape), dtype=x.dtype)
        view = big[tuple(slice(1, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    rev = np.ascontiguousarray(x[tuple(slice(None, None, -1) for _ in x.shape)])
    return rev[tuple(slice(None, None, -1) for _ in x.shape)]


def _bits(x):
    x = np.ascontiguousarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


def assert_same_bits(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(_bits(got), _bits(want))


def assert_close_ulp(got, want, maxulp=4):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(np.isinf(got[ok]), np.isinf(want[ok]))
    fin = ok & np.isfinite(want)
    np.testing.assert_array_equal(got[ok & ~fin], want[ok & ~fin])
    if fin.any():
        np.testing.assert_array_max_ulp(got[fin], want[fin], maxulp=maxulp)


def _numpy(fn, *args):
    with np.errstate(all="ignore"):
        return fn(*args)


def test_op_table_is_exported_and_dense():
    assert sorted(EW.values()) == list(range(len(EW)))
    assert set(BINARY_EXACT) | set(UNARY_EXACT) | set(UNARY_ULP) | set(COMPARE) | \
        {"pow", "clamp", "where", "sum_to"} == set(EW)


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_comparisons_give_numpys_bools_under_broadcasting(rng, float_dtype, shapes, layout):
    a = _layout(_values(rng, shapes[0], float_dtype), layout)
    b = _layout(_values(rng, shapes[1], float_dtype), LAYOUTS[::-1][LAYOUTS.index(layout)])
    # (the specials of _values give ties: 0 and -0, 1, infinities, NaNs)
    for name, fn in COMPARE.items():
        got = _ew(name, a, b)
        want = _numpy(fn, a, b)
        assert got.dtype == np.bool_ and got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(_ew(name, a, 0.0), _numpy(fn, a, float_dtype(0.0)))
        np.testing.assert_array_equal(_ew(name, 1.5, b), _numpy(fn, float_dtype(1.5), b))


def test_comparison_out_must_be_bool(float_dtype):
    a = np.array([1.0, np.nan, -0.0], float_dtype)
    out = np.zeros((2, 3), bool)
    assert _ew("ge", a, 0.0, out=out[1]) is not None
    np.testing.assert_array_equal(out, [[False] * 3, [True, False, True]])
    with pytest.raises(TypeError, match="'out' must have dtype bool"):
        _ew("lt", a, 0.0, out=np.zeros(3, float_dtype))
    with pytest.raises(TypeError, match="'out' must have dtype"):
        _ew("neg", a, out=np.zeros(3, bool))


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_binary_ops_give_numpys_bits_under_broadcasting(rng, float_dtype, shapes, layout):
    a = _layout(_values(rng, shapes[0], float_dtype), layout)
    b = _layout(_values(rng, shapes[1], float_dtype), LAYOUTS[::-1][LAYOUTS.index(layout)])
    for name, fn in BINARY_EXACT.items():
        got = _ew(name, a, b)
        assert got.flags.c_contiguous
        assert_same_bits(got, _numpy(fn, a, b))


@pytest.mark.parametrize("shape", [(), (1,), (0,), (7,), (3, 5), (2, 1, 9), (4, 3, 2, 3)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_unary_ops_against_numpy(rng, float_dtype, shape, layout):
    x = _layout(_values(rng, shape, float_dtype), layout)
    for name, fn in UNARY_EXACT.items():
        assert_same_bits(_ew(name, x), _numpy(fn, x))
    for name, fn in UNARY_ULP.items():
        assert_close_ulp(_ew(name, x), _numpy(fn, x))


def test_transcendentals_far_from_specials(rng, float_dtype):
    x = rng.uniform(-20, 20, 4099).astype(float_dtype)
    p = np.abs(x) + float_dtype(1e-3)
    for name, fn in UNARY_ULP.items():
        v = p if name in ("log", "log1p") else x
        assert_close_ulp(_ew(name, v), _numpy(fn, v), maxulp=2)
    e = rng.uniform(-3, 3, 4099).astype(float_dtype)
    assert_close_ulp(_ew("pow", p, e), _numpy(np.power, p, e), maxulp=2)


@pytest.mark.parametrize("shapes", SHAPE_PAIRS[:8], ids=str)
def test_pow_against_numpy_incl_scalar_exponents(rng, float_dtype, shapes):
    a = _values(rng, shapes[0], float_dtype)
    b = _values(rng, shapes[1], float_dtype)
    assert_close_ulp(_ew("pow", a, b), _numpy(np.power, a, b))
    for s in (2, 2.0, 0.5, 3, -1.0, 0.0):
        assert_close_ulp(_ew("pow", a, s), _numpy(np.power, a, s))
        assert_close_ulp(_ew("pow", s, a), _numpy(np.power, s, a))
    # x ** 2 is x * x exactly
    assert_same_bits(_ew("pow", a, 2.0), a * a)


@pytest.mark.parametrize("scalar", [0.1, -3, 7, True, 1e300, -0.0, float("nan"), float("inf")])
def test_python_number_operands_follow_numpys_weak_scalars(rng, float_dtype, scalar):
    x = _values(rng, (6, 5), float_dtype)
    for name, fn in BINARY_EXACT.items():
        assert_same_bits(_ew(name, x, scalar), _numpy(fn, x, scalar))
        assert_same_bits(_ew(name, scalar, x), _numpy(fn, scalar, x))
        assert_same_bits(_ew(name, x[1:, ::2].T, scalar), _numpy(fn, x[1:, ::2].T, scalar))


def test_maximum_minimum_nan_and_signed_zero_rules_are_numpys(float_dtype):
    a = np.array([-0.0, 0.0, np.nan, 1, -np.nan, np.nan, 2, -np.inf], dtype=float_dtype)
    b = np.array([0.0, -0.0, 1, np.nan, np.nan, -np.nan, 2, np.nan], dtype=float_dtype)
    for name in ("maximum", "minimum"):
        assert_same_bits(_ew(name, a, b), BINARY_EXACT[name](a, b))
        assert_same_bits(_ew(name, a[::-1], b[::-1]), BINARY_EXACT[name](a[::-1], b[::-1]))
    s = np.array([-0.0, 0.0, np.nan, -np.nan, -3, np.inf], dtype=float_dtype)
    assert_same_bits(_ew("sign", s), np.sign(s))
    assert_same_bits(_ew("abs", s), np.abs(s))


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (None, 0.25), (-1.0, None), (1.0, -1.0),
                                    ("array", None), (None, "array"), ("array", "array"),
                                    (float("nan"), None)])
def test_clamp_is_minimum_of_maximum(rng, float_dtype, lo, hi):
    x = _layout(_values(rng, (7, 6), float_dtype), "transposed")
    lv = _values(rng, (6,), float_dtype, specials=False) - 1 if lo == "array" else lo
    hv = _values(rng, (7, 1), float_dtype, specials=False) + 1 if hi == "array" else hi
    want = x
    if lv is not None:
        want = np.maximum(want, lv)
    if hv is not None:
        want = np.minimum(want, hv)
    assert_same_bits(_ew("clamp", x, lv, hv), want)


@pytest.mark.parametrize("shapes", [((), (), ()), ((4, 5), (5,), ()), ((3, 1), (1, 4), (3, 4)),
                                    ((0, 2), (2,), (1,)), ((2, 1, 3), (4, 1), (1, 3))], ids=str)
def test_where_broadcasts_like_numpy(rng, float_dtype, shapes):
    c = np.asarray(rng.random(shapes[0]) < 0.5)
    a = _layout(_values(rng, shapes[1], float_dtype), "reversed")
    b = _values(rng, shapes[2], float_dtype)
    assert_same_bits(_ew("where", c, a, b), np.where(c, a, b))
    assert_same_bits(_ew("where", c, a, 0.5), np.where(c, a, float_dtype(0.5)))
    assert_same_bits(_ew("where", np.asarray(c).T, 1.0, b.T), np.where(np.asarray(c).T, 1.0, b.T)
                     .astype(float_dtype))


@pytest.mark.parametrize("shape, to", [((5, 3), (3,)), ((5, 3), (5, 1)), ((5, 3), ()),
                                       ((2, 3, 4), (1, 3, 1)), ((2, 3, 4), (3, 4)),
                                       ((0, 3), (3,)), ((3, 0), (3, 1)), ((4, 1), (1,)),
                                       ((7,), (7,)), ((), ()), ((6, 1, 5, 40), (1, 1, 5, 1))],
                         ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "stepped"])
def test_sum_to_reduces_a_broadcast_gradient(rng, float_dtype, shape, to, layout):
    x = _layout(_values(rng, shape, float_dtype, specials=False), layout)
    lead = len(shape) - len(to)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(to)
                                      if n == 1 and shape[lead + i] != 1)
    want = np.sum(x.astype(np.float64), axis=axes, keepdims=True).reshape(to)
    got = _ew("sum_to", x, to)
    assert got.shape == to and got.dtype == float_dtype
    tol = 1e-5 if float_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


def test_sum_to_adds_rows_in_order_like_numpy_axis0(rng, float_dtype):
    x = rng.standard_normal((37, 11)).astype(float_dtype)
    assert_same_bits(_ew("sum_to", x, (11,)), np.sum(x, axis=0))
    assert_same_bits(_ew("sum_to", x, (1, 11)), np.sum(x, axis=0, keepdims=True))


def test_sum_to_propagates_nan_and_inf(float_dtype):
    x = np.ones((4, 3), dtype=float_dtype)
    x[1, 0], x[2, 1], x[3, 1], x[0, 2] = np.nan, np.inf, -np.inf, np.inf
    got = _ew("sum_to", x, (3,))
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == np.inf
    got = _ew("sum_to", x, (4, 1))
    assert np.isnan(got[1, 0]) and got[0, 0] == np.inf
    assert got[2, 0] == np.inf and got[3, 0] == -np.inf


def _big_cases(rng, dtype):
    a = _values(rng, (301, 700), dtype)
    return [
        ("add", (a, a[::-1])), ("mul", (a, a[5])), ("div", (a.T, 3.0)), ("exp", (a[:, ::2],)),
        ("maximum", (a[:, :1], a)), ("where", (a > 0, a, a.T[:301, :1])), ("sin", (a,)),
        ("clamp", (a.T, -0.5, None)), ("sum_to", (a, (700,))), ("sum_to", (a, (301, 1))),
        ("sum_to", (a, ())), ("sum_to", (a.T, (1, 301))),
    ]


def test_results_are_bitwise_equal_for_1_2_3_threads(rng, threads, float_dtype):
    cases = _big_cases(rng, float_dtype)
    results = []
    for n in (1, 2, 3):
        threads(n)
        results.append([_ew(name, *args) for name, args in cases])
    for r in results[1:]:
        for x, y in zip(results[0], r):
            assert_same_bits(y, x)


def test_every_isa_gives_the_same_bits(rng, isa, float_dtype):
    cases = _big_cases(rng, float_dtype)[:4] + [
        ("square", (rng.standard_normal(1001).astype(float_dtype),)),
        ("sum_to", (rng.standard_normal((9, 33)).astype(float_dtype), (9, 1)))]
    for name, args in cases:
        got = _ew(name, *args)
        if name in BINARY_EXACT or name in UNARY_EXACT:
            assert_same_bits(got, _numpy(BINARY_EXACT.get(name) or UNARY_EXACT[name], *args))
        _core.set_isa("baseline")
        assert_same_bits(got, _ew(name, *args))
        _core.set_isa(isa)


def test_out_argument_and_exactly_aliased_in_place(rng, float_dtype):
    a = _values(rng, (4, 6), float_dtype)
    b = _values(rng, (6,), float_dtype)
    out = np.empty((4, 6), dtype=float_dtype)
    assert _ew("add", a, b, out=out) is out
    assert_same_bits(out, a + b)
    want = a * b
    assert _ew("mul", a, b, out=a) is a  # a *= b
    assert_same_bits(a, want)
    t = np.empty((6, 4), dtype=float_dtype).T  # a strided out
    _ew("sub", a, 1.0, out=t)
    assert_same_bits(t, a - float_dtype(1))


@pytest.mark.parametrize("call, exc, match", [
    (lambda f: _ew("add", f((2, 3)), f((4,))), ValueError,
     r"broadcast together: 'a' \(2, 3\), 'b' \(4,\)"),
    (lambda f: _ew("add", f((2, 3)), f((3,)).astype(np.float64)), TypeError, "share one dtype"),
    (lambda f: _ew("mul", f((2,)).astype(np.int64), 2.0), TypeError, "'a' must have dtype float"),
    (lambda f: _ew("neg", f((2,)), f((2,))), TypeError, "takes 1 input"),
    (lambda f: _ew("add", [1.0, 2.0], f((2,))), TypeError, "'a' must be a numpy.ndarray"),
    (lambda f: _ew("add", 1.0, 2.0), TypeError, "at least one float32 or float64 array"),
    (lambda f: _ew("where", f((2,)), f((2,)), 0.0), TypeError, "condition.*bool"),
    (lambda f: _core.elementwise(len(EW), f((2,))), ValueError, "not an id of EW_OPS"),
    (lambda f: _ew("add", f((2, 3)), 1.0, out=np.empty((3, 2), np.float32)), ValueError,
     r"'out' expected shape \(2, 3\), got \(3, 2\)"),
    (lambda f: _ew("add", f((2, 3)), 1.0, out=np.empty((2, 3))), TypeError,
     "'out' must have dtype float32"),
    (lambda f: _ew("add", f((2, 3)), 1.0, out=np.broadcast_to(f((3,)), (2, 3))), ValueError,
     "read-only"),
    (lambda f: _ew("sum_to", f((2, 3)), (2,)), ValueError, r"can't sum .* \(2, 3\) to shape"),
    (lambda f: _ew("sum_to", f((2, 3)), 5), TypeError, "output shape"),
    (lambda f: _ew("clamp", f((2, 3))), ValueError, "at least one of 'b' \\(min\\)"),
    (lambda f: _ew("add", misaligned_f32(5), f((5,))), ValueError, "not aligned"),
])
def test_bad_input_raises_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call(lambda s: np.zeros(s, dtype=np.float32))


def test_partial_overlap_with_out_is_refused():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(ValueError, match="'out' overlaps argument 'a'"):
        _ew("add", a.T[:3, :3], 1.0, out=a[:, :3])
    with pytest.raises(ValueError, match="'out' overlaps argument 'b'"):
        _ew("add", 1.0, a[:, 1:], out=a[:, :3])


# ---- Tensor level: the ops use the kernels and keep NumPy's result dtypes ---------------------
def _operands():
    r = np.random.default_rng(5)
    return {
        "f32": gd.tensor(r.standard_normal((3, 4)).astype(np.float32)),
        "f64": gd.tensor(r.standard_normal((4,))),
        "i64": gd.tensor(r.integers(1, 5, (3, 1))),
        "int": 3, "float": 0.5,
    }


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_binary_tensor_ops_keep_numpys_dtype_and_values(op):
    v = _operands()
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
          "pow": np.power, "maximum": np.maximum, "minimum": np.minimum}[op]
    for ka, a in v.items():
        for kb, b in v.items():
            if not (isinstance(a, gd.Tensor) or isinstance(b, gd.Tensor)):
                continue
            av = a.numpy() if isinstance(a, gd.Tensor) else a
            bv = b.numpy() if isinstance(b, gd.Tensor) else b
            with np.errstate(all="ignore"):
                want = np.asarray(fn(av, bv))
            got = getattr(gd, op)(a, b) if op != "div" else gd.div(a, b)
            assert got.numpy().dtype == want.dtype, (op, ka, kb)
            if op == "pow" and want.dtype.kind == "f":  # NumPy's own SIMD pow: a few ulp
                assert_close_ulp(got.numpy(), want)
            else:
                np.testing.assert_array_equal(got.numpy(), want, err_msg=f"{op} {ka} {kb}")


def test_unary_clamp_where_tensor_ops_keep_numpys_dtype_and_values():
    v = _operands()
    v["bool"] = gd.tensor(np.random.default_rng(6).random((4,)) < 0.5)
    for k in ("f32", "f64", "i64"):
        t = v[k]
        x = t.numpy()
        with np.errstate(all="ignore"):
            for got, want in [(-t, np.negative(x)), (t.abs(), np.abs(x)),
                              (gd.sqrt(t) if k != "i64" else t.abs(), np.sqrt(x)
                               if k != "i64" else np.abs(x)),
                              (t.clamp(-0.5, 0.5), np.minimum(np.maximum(x, -0.5), 0.5)),
                              (t.clamp(max=1), np.minimum(x, 1)),
                              (gd.where(v["bool"], t, 0.25), np.where(v["bool"].numpy(), x, 0.25)),
                              (gd.where(v["bool"], t, v["f64"]),
                               np.where(v["bool"].numpy(), x, v["f64"].numpy()))]:
                assert got.numpy().dtype == want.dtype, k
                np.testing.assert_array_equal(got.numpy(), want, err_msg=k)


def test_tensor_ops_on_strided_views_and_their_gradients():
    r = np.random.default_rng(2)
    a = gd.tensor(r.standard_normal((5, 6)), dtype=gd.float64, requires_grad=True)
    b = gd.tensor(r.standard_normal((6,)), dtype=gd.float64, requires_grad=True)
    assert gd.autograd.gradcheck(lambda a, b: (a.t() * 2.0 - b.unsqueeze(1)) /
                                 (b.unsqueeze(1) ** 2 + 1.0), (a, b))
    assert gd.autograd.gradcheck(lambda a, b: gd.maximum(a, b).abs().sqrt(), (a, b))


# ---- gd.compile: one generic instruction records the whole family ----------------------------
def _compiled_pair(penalty):
    def make():
        gd.manual_seed(3)
        model = gd.nn.Sequential(gd.nn.Linear(6, 8), gd.nn.ReLU(), gd.nn.Linear(8, 3))
        # a per-output scale and a (1, 1, 3) offset: their gradients are sums over broadcast dims
        model.scale = gd.nn.Parameter(gd.ones(3) * 1.5)
        model.offset = gd.nn.Parameter(gd.zeros(1, 1, 3))
        return model, gd.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step_fn(model, opt):
        def step(x, y, w):
            opt.zero_grad()
            out = model(x) * model.scale if penalty else model(x)
            if penalty:
                out = (out + model.offset).reshape(7, 3)
            if penalty:
                y = y.t()  # given as (3, 7): a transposed operand, read in place
            loss = ((out - y) ** 2 * w).sum() / 7.0
            if penalty:
                W = model[0].weight
                loss = loss + 1e-4 * (W * W).sum() + (model[2].weight.abs() * 0.01).sum()
            loss.backward()
            opt.step()
            return loss

        return step

    (m1, o1), (m2, o2) = make(), make()
    return m1, step_fn(m1, o1), m2, gd.compile(step_fn(m2, o2))


@pytest.mark.parametrize("penalty", [False, True])
def test_a_step_of_elementwise_arithmetic_is_captured_and_bitwise_equal(penalty):
    m1, eager, m2, compiled = _compiled_pair(penalty)
    r = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback warns: it must not happen
        for _ in range(5):
            x = gd.tensor(r.standard_normal((7, 6)).astype(np.float32))
            y = gd.tensor(r.standard_normal((3, 7) if penalty else (7, 3)).astype(np.float32))
            w = gd.tensor(r.random((7, 1)).astype(np.float32))  # broadcast over columns
            assert eager(x, y, w).item() == compiled(x, y, w).item()
    assert compiled.stats["replayed"] >= 3
    for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy(), err_msg=n)
        if penalty or n not in ("scale", "offset"):  # (unused without the penalty)
            np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy(), err_msg=n)


def test_the_ew_instruction_reports_operands_traffic_and_flops(monkeypatch):
    monkeypatch.setenv("GRADDESC_FUSE", "0")  # the unfused instructions (test_fusion.py: fused)
    _, _, _, compiled = _compiled_pair(True)
    r = np.random.default_rng(1)
    x = gd.tensor(r.standard_normal((7, 6)).astype(np.float32))
    y = gd.tensor(r.standard_normal((3, 7)).astype(np.float32))
    w = gd.tensor(r.random((7, 1)).astype(np.float32))
    compiled(x, y, w)
    compiled(x, y, w)
    prog = next(e for e in compiled._cache.values() if hasattr(e, "program")).program
    names = prog.names()
    assert "ew" in names
    traffic, flops = prog.traffic(), prog.flops()
    for k, name in enumerate(names):
        if name == "ew":
            assert traffic[k][1] > 0 and flops[k] > 0
    # the loss's (7, 3) * (7, 1) product: writes 21 floats, reads 21 + 7
    assert (4 * 28, 4 * 21) in [traffic[k] for k, n in enumerate(names) if n == "ew"]


def test_program_add_checks_an_ew_instruction_layout():
    with pytest.raises(ValueError, match="'ew' instruction"):
        _core.Program().add("ew", False, [0, 0, 0, 0], [0, 2, 3], [0.0, 0.0, 0.0])


def test_clamp_with_tensor_bounds_propagates_nan_like_torch():
    torch = pytest.importorskip("torch")
    x = np.array([-2.0, 0.5, np.nan, 3.0, 0.2], dtype=np.float32)
    lo = np.array([np.nan, 0.0, 0.0, 5.0, -1.0], dtype=np.float32)
    hi = np.array([1.0, np.nan, 1.0, 4.0, 0.1], dtype=np.float32)
    got = gd.clamp(gd.tensor(x), gd.tensor(lo), gd.tensor(hi)).numpy()
    want = torch.clamp(torch.from_numpy(x), torch.from_numpy(lo), torch.from_numpy(hi)).numpy()
    np.testing.assert_array_equal(got, want)
