"""Property-based tests (hypothesis) of the public ops against NumPy.

Every example builds its inputs the way a user would: `gd.tensor` (a copy, from any dtype, byte
order and layout) or `gd.from_numpy` (shares memory: keeps the strides, transposition and
read-only flag of the array, so non-contiguous and read-only tensors reach the ops). Inputs are:
- dtypes float32, float64, int64, bool, float16, uint8, int32 and the non-native byte orders
  >f4, >f8, >i8 (gd.tensor converts them; from_numpy refuses them with TypeError);
- shapes with 0 to 4 dims, sides 0 to 4 (so empty tensors are common);
- layouts C, Fortran, transposed, strided (every other element, or reversed), read-only and
  unaligned (float data at an odd address);
- values from a seeded NumPy generator: moderate numbers mixed with NaN, +-Inf, +-1e30, +-0 and
  +-1 (for integers: the int64 extremes).

Each example must either equal the NumPy-equivalent result (NaN exactly where NumPy gives NaN,
the same +-Inf, finite values within a rounding bound) or raise TypeError / ValueError (or
RuntimeError / IndexError where PyTorch's contract says so) with a message. Where graddesc's
contract promises a result (float inputs of matching shapes), an error fails the test too.

Examples per test: GRADDESC_PROPERTY_EXAMPLES (default 200, what CI runs), derandomized (the
same examples every run) and with no example database, so a run never depends on the last one.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graddesc as gd
import graddesc.nn.functional as F

EXAMPLES = int(os.environ.get("GRADDESC_PROPERTY_EXAMPLES", "200"))

PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

# Errors an op may raise for inputs outside its contract; every one must carry a message.
CONTRACT_ERRORS = (TypeError, ValueError, RuntimeError, IndexError)

NATIVE = ["float32", "float64", "int64", "bool"]
FOREIGN = ["float16", "uint8", "int32", ">f4", ">f8", ">i8"]
ALL_DTYPES = NATIVE + FOREIGN
FLOAT_DTYPES = ["float32", "float64", "float16", ">f4", ">f8"]
LAYOUTS = ["C", "C", "F", "transposed", "strided", "reversed", "readonly", "unaligned"]

FLOAT_SPECIALS = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 1.0, -1.0])
INT_SPECIALS = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, 1, -1],
                        dtype=np.int64)


# ---- inputs -------------------------------------------------------------------------------
def _values(rng: np.random.Generator, shape: tuple, dtype: np.dtype, special: float) -> np.ndarray:
    """Values of `dtype` (native order) with about a `special` fraction of edge values."""
    n = math.prod(shape)
    pick = rng.random(n) < special
    if dtype.kind == "f":
        v = rng.uniform(-3.0, 3.0, n) * 10.0 ** rng.integers(-2, 3, n)
        v[pick] = rng.choice(FLOAT_SPECIALS, int(pick.sum()))
        with np.errstate(over="ignore"):
            return v.astype(dtype.newbyteorder("=")).reshape(shape)
    if dtype.kind == "b":
        return (rng.random(n) < 0.5).reshape(shape)
    info = np.iinfo(dtype)
    v = rng.integers(max(info.min, -100), min(info.max, 100), n, endpoint=True)
    if dtype == np.int64:
        v[pick] = rng.choice(INT_SPECIALS, int(pick.sum()))
    return v.astype(dtype.newbyteorder("=")).reshape(shape)


def _layout(base: Callable[[tuple], np.ndarray], shape: tuple, layout: str) -> np.ndarray:
    """An array of `shape` in `layout`; base(shape) makes C-ordered values of any shape."""
    if not shape and layout in ("strided", "reversed"):
        layout = "C"  # a 0-d array has no strides to change (and a[()] would be a scalar)
    if layout == "F":
        return np.array(base(shape), order="F")  # (asfortranarray makes 0-d arrays 1-d)
    if layout == "transposed":
        return base(shape[::-1]).T
    if layout == "strided":
        a = base(tuple(2 * s for s in shape))
        return a[tuple(slice(None, None, 2) for _ in shape)]
    if layout == "reversed":
        return base(shape)[tuple(slice(None, None, -1) for _ in shape)]
    if layout == "readonly":
        a = base(shape)
        a.setflags(write=False)
        return a
    if layout == "unaligned":
        a = base(shape)
        if a.dtype.itemsize == 1:
            return a
        raw = np.empty(a.nbytes + 1, np.uint8)
        u = raw[1:].view(a.dtype).reshape(shape)
        u[...] = a
        return u
    return base(shape)


@st.composite
def arrays(draw: Any, dtypes: list = ALL_DTYPES, shape: Any = None, min_dims: int = 0,
           max_dims: int = 4, min_side: int = 0, max_side: int = 4,
           layouts: list = LAYOUTS) -> np.ndarray:
    """A NumPy array of one of `dtypes` (byte order included) in one of `layouts`."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                      max_side=max_side))
    layout = draw(st.sampled_from(layouts))
    special = draw(st.sampled_from([0.0, 0.15, 0.6, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))

    def base(s: tuple) -> np.ndarray:
        v = _values(np.random.default_rng(seed), s, dtype, special)
        return v.astype(dtype) if not dtype.isnative else v

    return _layout(base, tuple(shape), layout)


def _gd_dtype(a: np.ndarray) -> np.dtype:
    """The dtype gd.tensor gives an array (float64 stays, other floats become float32,
    integers int64, bool bool)."""
    k = a.dtype.kind
    if k == "f":
        return np.dtype(np.float64 if a.dtype.itemsize == 8 else np.float32)
    return np.dtype(np.bool_ if k == "b" else np.int64)


@st.composite
def tensors(draw: Any, **kw: Any) -> tuple:
    """(Tensor, the NumPy array its values equal): via gd.tensor or, for native supported
    dtypes, gd.from_numpy (memory shared: the layout and read-only flag reach the op)."""
    a = draw(arrays(**kw))
    via = draw(st.sampled_from(["tensor", "from_numpy"]))
    if via == "from_numpy" and a.dtype.isnative and a.dtype.name in NATIVE:
        return gd.from_numpy(a), a
    return gd.tensor(a), a.astype(_gd_dtype(a))


def _float_tensors(**kw: Any) -> Any:
    return tensors(dtypes=FLOAT_DTYPES + ["int64", "bool"], **kw)


# ---- comparison ---------------------------------------------------------------------------
def _same_nonfinite(got: np.ndarray, want: np.ndarray, what: str) -> None:
    for test in (np.isnan, np.isposinf, np.isneginf):
        g, w = test(got), test(want)
        if not np.array_equal(g, w):
            at = tuple(np.argwhere(g != w)[0])
            raise AssertionError(f"{what}: {test.__name__} differs at {at}: got {got[at]!r}, "
                                 f"NumPy gives {want[at]!r}")


def assert_matches(got: Any, want: np.ndarray, what: str, rtol: float = 0.0,
                   atol: Any = 0.0, dtype: Any = None) -> None:
    """got (a Tensor) equals want: dtype, shape, NaN/Inf positions, finite values within
    atol + rtol |want| (atol may be an array, a per-element bound)."""
    assert isinstance(got, gd.Tensor), f"{what}: returned {type(got).__name__}, not a Tensor"
    g = got._data
    assert isinstance(g, np.ndarray), f"{what}: data is {type(g).__name__}"
    want = np.asarray(want)
    want_dtype = np.dtype(dtype) if dtype is not None else want.dtype
    assert g.dtype == want_dtype, f"{what}: dtype {g.dtype}, NumPy gives {want_dtype}"
    assert g.shape == want.shape, f"{what}: shape {g.shape}, NumPy gives {want.shape}"
    if g.dtype.kind != "f":
        np.testing.assert_array_equal(g, want, err_msg=what)
        return
    _same_nonfinite(g, want, what)
    fin = np.isfinite(want)
    if not fin.any():
        return
    gf, wf = g[fin].astype(np.float64), want[fin].astype(np.float64)
    bound = np.broadcast_to(atol, want.shape)[fin] + rtol * np.abs(wf)
    bad = np.abs(gf - wf) > bound
    if bad.any():
        k = int(np.argmax(bad))
        raise AssertionError(f"{what}: got {gf[k]!r}, NumPy gives {wf[k]!r} (allowed error "
                             f"{bound[k]:.3g}; {int(bad.sum())} of {bad.size} elements off)")


def run(fn: Callable[[], Any], must_work: bool, what: str) -> Any:
    """fn()'s result, or None when it raised a contract error with a message (allowed only
    when must_work is False). Anything else (another exception, a warning under
    filterwarnings=error, a crash) fails the test."""
    try:
        return fn()
    except CONTRACT_ERRORS as e:
        assert str(e).strip(), f"{what}: {type(e).__name__} without a message"
        if must_work:
            raise AssertionError(f"{what}: raised {type(e).__name__}: {e}") from e
        return None


def _ref(fn: Callable[[], Any]) -> Any:
    """NumPy's result (warnings about NaN/overflow silenced: they are the expected values)."""
    with np.errstate(all="ignore"):
        return fn()


def _eps(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0


def _sum_bound(absterms: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    """Error bound of a float sum of n terms whose absolute values sum to `absterms`
    (any summation order, FMA or not): 2 (n + 1) eps sum |terms| plus the smallest normal."""
    return 2.0 * (n + 1) * _eps(dtype) * absterms + float(np.finfo(dtype).tiny)


def _is_float(*arrays: np.ndarray) -> bool:
    return all(a.dtype.kind == "f" for a in arrays)


# ---- construction ---------------------------------------------------------------------------
@PROPERTY
@given(a=arrays(), dtype=st.sampled_from([None, None, "float32", "float64", "bool", "int64"]))
def test_tensor_copies_any_array(a: np.ndarray, dtype: Any) -> None:
    """gd.tensor(a) copies any dtype/byte order/layout into a fresh, writable, C-ordered,
    aligned array with NumPy's values (float16 -> float32, integers -> int64)."""
    nan_to_int = dtype == "int64" and a.dtype.kind == "f" and not np.isfinite(a).all()
    want_dtype = _gd_dtype(a) if dtype is None else np.dtype(dtype)
    t = run(lambda: gd.tensor(a, dtype=dtype), must_work=not nan_to_int, what="tensor")
    if t is None:
        return
    want = _ref(lambda: a.astype(want_dtype))
    assert_matches(t, want, "tensor")
    d = t._data
    assert d.flags.c_contiguous and d.flags.writeable and d.flags.aligned and d.dtype.isnative
    assert not np.shares_memory(d, a)
    assert t.dtype == want_dtype and not t.requires_grad and t.is_leaf


@PROPERTY
@given(a=arrays(dtypes=NATIVE))
def test_tensor_from_nested_lists(a: np.ndarray) -> None:
    """Nested Python lists (NaN, Inf, 1e30, int64 extremes) build the tensor NumPy builds,
    with PyTorch's default dtypes (bool, int64, else float32)."""
    data = a.tolist()
    if a.dtype.kind == "f":
        want_dtype = np.float32
    elif a.size == 0:
        want_dtype = np.float32  # an empty list has no elements to infer from
    else:
        want_dtype = a.dtype
    t = gd.tensor(data)
    assert_matches(t, _ref(lambda: np.array(data, dtype=want_dtype)), "tensor(list)")


@PROPERTY
@given(a=arrays())
def test_from_numpy_shares_or_refuses(a: np.ndarray) -> None:
    """from_numpy shares memory for native float32/float64/int64/bool arrays of any layout,
    and refuses anything else with a TypeError naming the dtype."""
    if a.dtype.isnative and a.dtype.name in NATIVE:
        t = gd.from_numpy(a)
        assert t._data is a or np.shares_memory(t._data, a) or a.size == 0
        np.testing.assert_array_equal(t.numpy(), a)
        return
    with pytest.raises(TypeError, match="from_numpy"):
        gd.from_numpy(a)


@PROPERTY
@given(data=st.recursive(
    st.one_of(st.floats(), st.integers(-2**70, 2**70), st.booleans(), st.complex_numbers(),
              st.none(), st.text(max_size=2)),
    lambda inner: st.lists(inner, max_size=3), max_leaves=8))
def test_tensor_from_arbitrary_python_data(data: Any) -> None:
    """Any nested Python data either becomes a tensor whose values equal NumPy's array of it,
    or raises TypeError/ValueError (ragged lists, strings, complex, None, ints beyond int64)."""
    t = run(lambda: gd.tensor(data), must_work=False, what="tensor(python data)")
    if t is None:
        return
    assert_matches(t, _ref(lambda: np.array(data, dtype=t._data.dtype)), "tensor(python data)")


@st.composite
def leaves(draw: Any, **kw: Any) -> gd.Tensor:
    """A float leaf that requires grad; via from_numpy it keeps a strided, transposed, read-only
    or unaligned layout."""
    x, _ = draw(tensors(dtypes=["float32", "float64", "float16", ">f8"], **kw))
    return x.requires_grad_()


def _check_grads(*leaves: gd.Tensor) -> None:
    for t in leaves:
        assert t.grad is not None, "no gradient reached the leaf"
        assert t.grad.shape == t.shape and t.grad.dtype == t.dtype, (
            f"gradient {t.grad.dtype} {tuple(t.grad.shape)} for a leaf {t.dtype} "
            f"{tuple(t.shape)}")
        assert t.grad._data.flags.c_contiguous and t.grad._data.flags.writeable


# ---- unary ops ------------------------------------------------------------------------------
def _np_gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (x * 0.5 * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0)))).astype(x.dtype)


def _np_gelu_tanh(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    u = math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3)
    return (0.5 * x64 * (1.0 + np.tanh(u))).astype(x.dtype)


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return np.where(x64 >= 0, 1.0 / (1.0 + np.exp(-x64)), np.exp(x64) / (1.0 + np.exp(x64))
                    ).astype(x.dtype)


# name -> (graddesc function, NumPy oracle, float-only?, C++ kernel (rounding tolerance)?)
UNARY = {
    "neg": (lambda x: -x, np.negative, False, False),
    "abs": (gd.abs, np.abs, False, False),
    "sign": (gd.sign, np.sign, False, False),
    "sqrt": (gd.sqrt, np.sqrt, False, False),
    "relu": (gd.relu, lambda x: np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(x.dtype),
             True, True),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2),
                   lambda x: np.where(x > 0, x, x * x.dtype.type(0.2)), True, True),
    "tanh": (gd.tanh, np.tanh, True, True),
    "sigmoid": (gd.sigmoid, _np_sigmoid, True, True),
    # PyTorch's definition: x itself above the threshold 20
    "softplus": (gd.softplus, lambda x: np.where(x > 20, x, np.logaddexp(x.dtype.type(0), x)),
                 True, True),
    "gelu": (gd.gelu, _np_gelu, True, True),
    "gelu_tanh": (lambda x: gd.gelu(x, approximate="tanh"), _np_gelu_tanh, True, True),
    "exp": (gd.exp, np.exp, True, True),
    "log": (gd.log, np.log, True, True),
    "isnan": (gd.isnan, np.isnan, False, False),
    "isfinite": (gd.isfinite, np.isfinite, False, False),
    "logical_not": (gd.logical_not, np.logical_not, False, False),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@PROPERTY
@given(data=st.data())
def test_unary(name: str, data: st.DataObject) -> None:
    fn, oracle, float_only, kernel = UNARY[name]
    x, a = data.draw(tensors())
    must_work = a.dtype.kind == "f" or not float_only
    if name == "neg" and a.dtype == np.bool_:
        must_work = False  # PyTorch: negation of a bool tensor is an error
    try:
        want = _ref(lambda: oracle(a))
    except TypeError:  # NumPy has no such loop (sign of bool): an error is the equivalent
        want, must_work = None, False
    y = run(lambda: fn(x), must_work, name)
    if y is None:
        return
    assert want is not None, f"{name}: NumPy refuses dtype {a.dtype}, graddesc returned {y!r}"
    if want.dtype == np.float16:  # NumPy's float16 result of a bool input: graddesc widens
        want = want.astype(np.float32)
    # the kernels are accurate to a few ulp of the result; f(x) near 0 gets an absolute floor
    tol = 8 * _eps(a.dtype) if kernel else 0.0
    assert_matches(y, want, name, rtol=tol, atol=tol)
    np.testing.assert_array_equal(x.numpy(), a)  # the input is untouched


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "exp", "log", "sqrt", "abs",
                                  "gelu", "softplus"])
@PROPERTY
@given(data=st.data())
def test_unary_backward_never_crashes(name: str, data: st.DataObject) -> None:
    """backward through the op on any float input gives a gradient of the input's shape and
    dtype (NaN/Inf inputs give NaN/Inf gradients, never an error)."""
    fn = UNARY[name][0]
    leaf = data.draw(leaves())
    fn(leaf).sum().backward()
    _check_grads(leaf)


# ---- binary ops with broadcasting -----------------------------------------------------------
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.true_divide),
    "pow": (lambda a, b: a ** b, np.power),
    "maximum": (gd.maximum, np.maximum),
    "minimum": (gd.minimum, np.minimum),
    "eq": (lambda a, b: a == b, np.equal),
    "ne": (lambda a, b: a != b, np.not_equal),
    "lt": (lambda a, b: a < b, np.less),
    "le": (lambda a, b: a <= b, np.less_equal),
    "gt": (lambda a, b: a > b, np.greater),
    "ge": (lambda a, b: a >= b, np.greater_equal),
    "logical_and": (gd.logical_and, np.logical_and),
}

SCALARS = [0, 1, -3, 2, True, 0.5, -2.5, 1e30, float("nan"), float("inf"), float("-inf")]


@st.composite
def broadcast_pair(draw: Any) -> tuple:
    """Two shapes that broadcast (mostly) or, sometimes, that don't."""
    if draw(st.integers(0, 9)) == 0:
        return (draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
                draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)))
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                    min_side=0, max_side=4))
    return shapes.input_shapes


def _promoted(a: Any, b: Any) -> np.dtype:
    """NumPy's result dtype with float16 results widened to float32 (graddesc has no float16)."""
    r = np.result_type(a, b)
    return np.dtype(np.float32) if r == np.float16 else r


@pytest.mark.parametrize("name", sorted(BINARY))
@PROPERTY
@given(data=st.data())
def test_binary(name: str, data: st.DataObject) -> None:
    fn, oracle = BINARY[name]
    sa, sb = data.draw(broadcast_pair())
    x, a = data.draw(tensors(shape=sa))
    if data.draw(st.booleans()):
        y, b = data.draw(tensors(shape=sb))
        bv = b
    else:
        y = data.draw(st.sampled_from(SCALARS))
        b, bv = y, y
    try:
        np.broadcast_shapes(a.shape, np.shape(b))
        broadcasts = True
    except ValueError:
        broadcasts = False
    floats = a.dtype.kind == "f" and (isinstance(bv, float) or getattr(bv, "dtype", None)
                                      is not None and bv.dtype.kind == "f")
    must_work = broadcasts and floats
    if name == "pow" and a.dtype.kind in "iub" and np.ndim(b) == 0 and not floats:
        must_work = False  # integer ** negative integer raises (as in PyTorch)
    out = run(lambda: fn(x, y), must_work, name)
    if out is None:
        return
    assert broadcasts, f"{name}: shapes {a.shape} and {np.shape(b)} don't broadcast, got a result"
    want = _ref(lambda: oracle(a, bv))
    want = np.asarray(want)
    if want.dtype == np.float16:
        want = want.astype(np.float32)
    # float pow runs the C++ library's pow (NumPy's own SIMD float32 pow is not correctly
    # rounded either): a few ulp; every other op is IEEE and must give NumPy's bits
    rtol = 4 * np.finfo(want.dtype).eps if name == "pow" and want.dtype.kind == "f" else 0.0
    assert_matches(out, want, name, rtol=rtol)


@PROPERTY
@given(data=st.data())
def test_reflected_scalar_ops(data: st.DataObject) -> None:
    """scalar - t, scalar / t, scalar ** t equal NumPy's (scalar / t as PyTorch computes it,
    reciprocal(t) * scalar, in NumPy)."""
    x, a = data.draw(tensors(dtypes=FLOAT_DTYPES))
    s = data.draw(st.sampled_from([0.0, 2.0, -1.5, 1e30, float("nan"), float("inf")]))
    for what, got, want in (("rsub", lambda: s - x, lambda: np.subtract(s, a)),
                            ("rdiv", lambda: s / x, lambda: np.multiply(np.reciprocal(a), s)),
                            ("rpow", lambda: s ** x, lambda: np.power(s, a)),
                            ("radd", lambda: s + x, lambda: np.add(s, a)),
                            ("rmul", lambda: s * x, lambda: np.multiply(s, a))):
        w = np.asarray(_ref(want))
        assert_matches(run(got, True, what), w, what,
                       rtol=4 * np.finfo(w.dtype).eps if what == "rpow" else 0.0)


@PROPERTY
@given(data=st.data())
def test_clamp(data: st.DataObject) -> None:
    x, a = data.draw(tensors())
    lo = data.draw(st.sampled_from([None, -1.0, 0, -1e30, float("nan")]))
    hi = data.draw(st.sampled_from([None, 1.0, 2, 1e30]))
    out = run(lambda: gd.clamp(x, lo, hi), lo is not None or hi is not None, "clamp")
    if out is None:
        assert lo is None and hi is None
        return
    want = a
    if lo is not None:
        want = _ref(lambda: np.maximum(want, lo))
    if hi is not None:
        want = _ref(lambda: np.minimum(want, hi))
    want = np.asarray(want)
    assert_matches(out, want, "clamp", dtype=_promoted(a, want.dtype))


@PROPERTY
@given(data=st.data())
def test_where(data: st.DataObject) -> None:
    (sc, sa, sb) = data.draw(hnp.mutually_broadcastable_shapes(
        num_shapes=3, min_dims=0, max_dims=4, min_side=0, max_side=3)).input_shapes
    c, cv = data.draw(tensors(shape=sc, dtypes=["bool", "bool", "float32"]))
    x, a = data.draw(tensors(shape=sa, dtypes=NATIVE))
    y, b = data.draw(tensors(shape=sb, dtypes=NATIVE))
    out = run(lambda: gd.where(c, x, y), cv.dtype == np.bool_, "where")
    if out is None:
        return
    assert_matches(out, np.where(cv, a, b), "where")


# ---- matmul, linear -------------------------------------------------------------------------
@st.composite
def matmul_shapes(draw: Any) -> tuple:
    """Shapes for a @ b: 1-d to 4-d with broadcast batch dims; sometimes a wrong inner size."""
    m, k, n = (draw(st.integers(0, 5)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2,
                                                   min_side=0, max_side=3)).input_shapes
    da, db = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sa = (k,) if da == 1 else tuple(batch[0][-(da - 2):] if da > 2 else ()) + (m, k)
    kb = k if draw(st.integers(0, 9)) else k + 1
    sb = (kb,) if db == 1 else tuple(batch[1][-(db - 2):] if db > 2 else ()) + (kb, n)
    return sa, sb


class _Dot:
    """What IEEE arithmetic guarantees about a @ b (batched, 1-d operands as in matmul), from
    its terms a[.., i, k] b[.., k, j] in float64 (exact enough: |terms| <= 1e60 never overflow).

    Any summation order, blocking or fused multiply-add must give: NaN where a term is NaN (a NaN
    input, or Inf * 0) or where terms are +Inf and -Inf; +-Inf where the only infinite terms are
    +-Inf; else a finite sum within 2 (k + 1) eps sum |terms| of the exact one. Where a term
    overflows `dtype` (1e30 * 1e30 in float32), the result depends on the order and on FMA
    (round(1e60) + -Inf is NaN, fma(1e30, 1e30, -Inf) is -Inf): there any non-finite value is
    accepted as well.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, extra: Any = None) -> None:
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        dtype = a.dtype
        with np.errstate(all="ignore"):
            terms = a2.astype(np.float64)[..., :, :, None] * b2.astype(np.float64)[..., None, :, :]
            rounded = a2[..., :, :, None] * b2[..., None, :, :]
        terms, rounded = np.moveaxis(terms, -2, -1), np.moveaxis(rounded, -2, -1)  # k last
        if extra is not None:  # a bias: one more term per output
            terms = np.concatenate([terms, np.broadcast_to(
                extra.astype(np.float64), terms.shape[:-1])[..., None]], axis=-1)
            rounded = np.concatenate([rounded, np.broadcast_to(
                extra, rounded.shape[:-1])[..., None]], axis=-1)
        fin = np.isfinite(terms)
        pos, neg = (terms == np.inf).any(-1), (terms == -np.inf).any(-1)
        self.nan = np.isnan(terms).any(-1) | (pos & neg)
        self.pos, self.neg = pos & ~self.nan, neg & ~self.nan
        self.overflow = (np.isinf(rounded) & fin).any(-1)
        self.exact = np.where(fin, terms, 0).sum(-1)
        self.bound = _sum_bound(np.abs(np.where(fin, terms, 0)).sum(-1), terms.shape[-1], dtype)
        self.dtype = dtype
        for name in ("nan", "pos", "neg", "overflow", "exact", "bound"):
            v = getattr(self, name)
            if a.ndim == 1:
                v = v[..., 0, :]
            if b.ndim == 1:
                v = v[..., 0]
            setattr(self, name, v)

    def check(self, out: gd.Tensor, what: str) -> None:
        g = out._data
        assert g.dtype == self.dtype and g.shape == self.exact.shape, (
            f"{what}: got {g.dtype} {g.shape}, expected {self.dtype} {self.exact.shape}")
        g = g.astype(np.float64)
        nonfinite_ok = self.overflow & ~np.isfinite(g)
        with np.errstate(invalid="ignore"):
            close = np.abs(g - self.exact) <= self.bound
        ok = np.where(self.nan, np.isnan(g),
                      np.where(self.pos, (g == np.inf) | (self.overflow & np.isnan(g)),
                               np.where(self.neg, (g == -np.inf) | (self.overflow & np.isnan(g)),
                                        (np.isfinite(g) & close) | nonfinite_ok)))
        if not ok.all():
            at = tuple(np.argwhere(~ok)[0])
            raise AssertionError(
                f"{what}: at {at} got {g[at]!r}; NaN term: {self.nan[at]}, +Inf term: "
                f"{self.pos[at]}, -Inf term: {self.neg[at]}, overflow: {self.overflow[at]}, "
                f"exact sum {self.exact[at]!r} +- {self.bound[at]:.3g}")


@PROPERTY
@given(data=st.data())
def test_matmul(data: st.DataObject) -> None:
    sa, sb = data.draw(matmul_shapes())
    x, a = data.draw(tensors(shape=sa))
    same = data.draw(st.integers(0, 4)) > 0
    y, b = data.draw(tensors(shape=sb, dtypes=[str(a.dtype)] if same else ALL_DTYPES))
    k_ok = a.shape[-1] == (b.shape[0] if b.ndim == 1 else b.shape[-2])
    must_work = k_ok and a.dtype == b.dtype and a.dtype.kind == "f"
    out = run(lambda: x @ y, must_work, "matmul")
    if out is None:
        return
    assert k_ok and a.dtype == b.dtype, f"matmul of {a.shape} {a.dtype} and {b.shape} {b.dtype}"
    if a.dtype.kind != "f":
        assert_matches(out, np.asarray(np.matmul(a, b)), "matmul")
        return
    _Dot(a, b).check(out, "matmul")


@PROPERTY
@given(data=st.data())
def test_linear(data: st.DataObject) -> None:
    """F.linear(x, W, b) = x W^T + b for x (..., IN) up to 4-d, including empty batches."""
    xin, out_f = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
    lead = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    x, a = data.draw(tensors(shape=lead + (xin,), dtypes=[dtype, dtype, "float16", "int64"]))
    win = xin if data.draw(st.integers(0, 9)) else xin + 1
    w, wa = data.draw(tensors(shape=(out_f, win), dtypes=[dtype]))
    bias = data.draw(st.booleans())
    b, ba = data.draw(tensors(shape=(out_f,), dtypes=[dtype])) if bias else (None, None)
    must_work = win == xin and a.dtype == wa.dtype
    out = run(lambda: F.linear(x, w, b), must_work, "linear")
    if out is None:
        return
    _Dot(a, wa.T, extra=ba).check(out, "linear")


# ---- softmax family ---------------------------------------------------------------------------
def _np_softmax(a: np.ndarray, dim: int, log: bool) -> np.ndarray:
    if a.size == 0:
        return a.copy()
    x = a.reshape(1) if a.ndim == 0 else a
    m = np.max(x, axis=dim, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=dim, keepdims=True)
    y = (x - m) - np.log(s) if log else e / s
    return y.reshape(a.shape)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@PROPERTY
@given(data=st.data())
def test_softmax(log: bool, data: st.DataObject) -> None:
    x, a = data.draw(_float_tensors())
    nd = max(a.ndim, 1)
    dim = data.draw(st.integers(-nd - 1, nd))
    in_range = -nd <= dim < nd
    op = gd.log_softmax if log else gd.softmax
    out = run(lambda: op(x, dim), in_range and a.dtype.kind == "f", "softmax")
    if out is None:
        return
    assert in_range and a.dtype.kind == "f"
    want = _ref(lambda: _np_softmax(a, dim % nd, log))
    tol = 16 * _eps(a.dtype) * (1 + math.log(max(a.shape[dim % nd] if a.ndim else 1, 1)))
    atol = tol * (1 + np.abs(np.nan_to_num(want, posinf=0, neginf=0))) if log else tol
    assert_matches(out, want, "log_softmax" if log else "softmax", rtol=tol, atol=atol)


# ---- reductions -------------------------------------------------------------------------------
@st.composite
def reduce_dims(draw: Any, ndim: int) -> Any:
    """None, one dim (maybe out of range) or a tuple of distinct dims."""
    kind = draw(st.sampled_from(["none", "one", "tuple"]))
    nd = max(ndim, 1)
    if kind == "none":
        return None
    if kind == "one":
        return draw(st.integers(-nd - 1, nd))
    return tuple(draw(st.lists(st.integers(-nd, nd - 1), min_size=0, max_size=nd,
                               unique_by=lambda d: d % nd)))


def _np_axes(dim: Any, ndim: int) -> Any:
    if dim is None or ndim == 0:
        return None
    if isinstance(dim, tuple):
        return tuple(d % ndim for d in dim) if dim else None
    return dim % ndim


def _dim_ok(dim: Any, ndim: int) -> bool:
    nd = max(ndim, 1)
    if dim is None:
        return True
    dims = dim if isinstance(dim, tuple) else (dim,)
    return all(-nd <= d < nd for d in dims)


@pytest.mark.parametrize("name", ["sum", "mean"])
@PROPERTY
@given(data=st.data())
def test_sum_mean(name: str, data: st.DataObject) -> None:
    x, a = data.draw(tensors())
    dim = data.draw(reduce_dims(a.ndim))
    keepdim = data.draw(st.booleans())
    must_work = _dim_ok(dim, a.ndim) and (name == "sum" or a.dtype.kind == "f")
    fn = gd.sum if name == "sum" else gd.mean
    out = run(lambda: fn(x, dim, keepdim), must_work, name)
    if out is None:
        return
    assert _dim_ok(dim, a.ndim)
    axes = _np_axes(dim, a.ndim)
    if a.dtype.kind != "f":
        assert name == "sum", "mean of an integer tensor must raise (as in PyTorch)"
        assert_matches(out, np.sum(a, axis=axes, keepdims=keepdim, dtype=np.int64), name)
        return
    n = a.size if axes is None else math.prod(
        a.shape[d] for d in (axes if isinstance(axes, tuple) else (axes,)))
    want = _ref(lambda: np.sum(a, axis=axes, keepdims=keepdim))
    exact = _ref(lambda: np.sum(a.astype(np.float64), axis=axes, keepdims=keepdim))
    absum = _ref(lambda: np.sum(np.abs(a.astype(np.float64)), axis=axes, keepdims=keepdim))
    if name == "mean":
        want = _ref(lambda: np.asarray(want / a.dtype.type(n) if n else want * np.nan))
        exact, absum = (exact / n, absum / n) if n else (exact * np.nan, absum)
    want = np.asarray(want, dtype=a.dtype)
    _same_nonfinite(out._data, want, name)
    assert out._data.dtype == a.dtype and out.shape == want.shape
    fin = np.isfinite(want)
    err = np.abs(np.where(fin, out._data.astype(np.float64) - np.where(fin, exact, 0), 0))
    bound = _sum_bound(np.where(fin, absum, 0), max(n, 1), a.dtype) + np.abs(
        np.where(fin, exact, 0)) * _eps(a.dtype)
    assert not (err > bound).any(), f"{name}: got {out._data}, exact {exact}"


@pytest.mark.parametrize("name", ["max", "min", "amax", "amin", "argmax", "argmin"])
@PROPERTY
@given(data=st.data())
def test_max_min_arg(name: str, data: st.DataObject) -> None:
    """NaN wins (as in NumPy and PyTorch); indices are the first occurrence; an empty
    reduction raises RuntimeError/IndexError (PyTorch's contract)."""
    x, a = data.draw(tensors())
    dim = data.draw(reduce_dims(a.ndim))
    if name in ("max", "min", "argmax", "argmin") and isinstance(dim, tuple):
        dim = dim[0] if dim else None
    keepdim = data.draw(st.booleans())
    axes = _np_axes(dim, a.ndim)
    ax_tuple = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
    empty = a.size == 0 if axes is None else any(a.shape[d] == 0 for d in ax_tuple)
    must_work = _dim_ok(dim, a.ndim) and not empty
    fn = getattr(gd, name)
    if name in ("max", "min") and dim is None:
        out = run(lambda: fn(x), must_work, name)
        keepdim = False
    else:
        out = run(lambda: fn(x, dim, keepdim), must_work, name)
    if out is None:
        return
    assert not empty and _dim_ok(dim, a.ndim)
    base = name.lstrip("a") if name.startswith("am") else name
    if name in ("max", "min") and dim is not None:
        vals, idx = out
        npf = np.max if name == "max" else np.min
        npi = np.argmax if name == "max" else np.argmin
        if a.ndim == 0:
            assert_matches(vals, a, name)
            assert_matches(idx, np.zeros((), np.int64), name)
            return
        assert_matches(vals, _ref(lambda: npf(a, axis=axes, keepdims=keepdim)), name)
        want_idx = npi(a, axis=axes, keepdims=keepdim).astype(np.int64)
        assert_matches(idx, want_idx, name + " indices")
        return
    if name.startswith("arg"):
        npi = np.argmax if name == "argmax" else np.argmin
        if axes is None:
            want = np.asarray(npi(a.reshape(-1)), dtype=np.int64)
            if keepdim:
                want = want.reshape((1,) * a.ndim)
        else:
            want = npi(a, axis=axes, keepdims=keepdim).astype(np.int64)
        assert_matches(out, want, name)
        return
    npf = np.max if base in ("max", "amax") else np.min
    npf = np.max if name in ("max", "amax") else np.min
    assert_matches(out, np.asarray(_ref(lambda: npf(a, axis=axes, keepdims=keepdim))), name)


# ---- shape ops --------------------------------------------------------------------------------
@PROPERTY
@given(data=st.data())
def test_reshape_view_flatten(data: st.DataObject) -> None:
    """reshape works exactly when NumPy's does (one -1 at most, sizes that match); view also
    needs a layout that allows a view, and then shares memory."""
    x, a = data.draw(tensors())
    n = a.size
    k = data.draw(st.sampled_from([d for d in range(1, 7) if n % d == 0] if n else [0, 1, 2]))
    shape = data.draw(st.sampled_from([(n,), (-1,), (k, -1), (-1, k), (1, n, 1), (n + 1,),
                                       (-1, -1), (k, 0, -1)]))
    try:
        want = a.reshape(shape)
    except ValueError:
        want = None
    out = run(lambda: x.reshape(*shape), want is not None, "reshape")
    if out is not None:
        assert want is not None, f"reshape {a.shape} -> {shape} worked, NumPy raises"
        assert_matches(out, want, "reshape")
    try:
        view = x._data.view()  # the tensor's own layout decides whether a view exists
        view.shape = want.shape if want is not None else shape
    except (AttributeError, ValueError, TypeError):
        view = None
    v = run(lambda: x.view(*shape), view is not None, "view")
    if v is not None:
        assert want is not None and view is not None
        assert_matches(v, want, "view")
        assert np.shares_memory(v._data, x._data) or a.size == 0
    assert_matches(x.flatten(), a.reshape(-1), "flatten")


@PROPERTY
@given(data=st.data())
def test_transpose_permute(data: st.DataObject) -> None:
    x, a = data.draw(tensors())
    nd = a.ndim
    d0 = data.draw(st.integers(-nd - 1, nd))
    d1 = data.draw(st.integers(-nd - 1, nd))
    ok = nd == 0 or (-nd <= d0 < nd and -nd <= d1 < nd)
    out = run(lambda: x.transpose(d0, d1), ok, "transpose")
    if out is not None:
        assert ok
        assert_matches(out, a if nd == 0 else np.swapaxes(a, d0, d1), "transpose")
    perm = data.draw(st.permutations(range(nd)))
    assert_matches(x.permute(*perm), np.transpose(a, perm), "permute")
    assert_matches(x.T, a.T, "T")
    if nd <= 2:
        assert_matches(x.t(), a.T, "t")
    else:
        with pytest.raises(RuntimeError, match="t()"):
            x.t()
    d = data.draw(st.integers(-nd - 2, nd + 1))
    out = run(lambda: x.unsqueeze(d), -nd - 1 <= d <= nd, "unsqueeze")
    if out is not None:
        assert_matches(out, np.expand_dims(a, d), "unsqueeze")
    assert_matches(x.squeeze(), np.squeeze(a), "squeeze")


@st.composite
def basic_index(draw: Any, shape: tuple) -> Any:
    items: list = []
    dims = list(shape)
    n = draw(st.integers(0, len(dims) + 1))
    for i in range(n):
        size = dims[i] if i < len(dims) else 1
        kind = draw(st.sampled_from(["int", "slice", "none", "ellipsis"]))
        if kind == "int":
            items.append(draw(st.integers(-size - 1, size)))
        elif kind == "slice":
            items.append(slice(draw(st.one_of(st.none(), st.integers(-size - 1, size + 1))),
                               draw(st.one_of(st.none(), st.integers(-size - 1, size + 1))),
                               draw(st.sampled_from([None, 1, 2, 3, -1, -2]))))
        elif kind == "none":
            items.append(None)
        else:
            items.append(Ellipsis)
    if items.count(Ellipsis) > 1:
        items = [i for i in items if i is not Ellipsis]
    return items[0] if len(items) == 1 and draw(st.booleans()) else tuple(items)


@PROPERTY
@given(data=st.data())
def test_indexing(data: st.DataObject) -> None:
    """Basic (ints, slices incl. negative steps, None, ...), integer-array and bool-mask
    indexing equal NumPy's; out-of-range indices raise IndexError."""
    x, a = data.draw(tensors())
    kind = data.draw(st.sampled_from(["basic", "basic", "int_tensor", "list", "mask"]))
    if kind == "basic":
        idx = data.draw(basic_index(a.shape))
        np_idx = idx
    elif kind in ("int_tensor", "list"):
        size = a.shape[0] if a.ndim else 0
        vals = data.draw(st.lists(st.integers(-size - 1, size), max_size=4))
        np_idx = np.array(vals, dtype=np.int64)
        idx = gd.tensor(np_idx) if kind == "int_tensor" else vals
    else:
        m, np_idx = data.draw(tensors(shape=a.shape, dtypes=["bool"]))
        idx = m
    try:
        want = a[np_idx]
    except IndexError:
        want = None
    out = run(lambda: x[idx], False, "getitem")
    if out is None:
        assert want is None, f"indexing {a.shape} with {idx!r} raised, NumPy gives {want!r}"
        return
    assert want is not None, f"indexing {a.shape} with {idx!r} gave a result, NumPy raises"
    assert_matches(out, np.asarray(want), "getitem")


@PROPERTY
@given(data=st.data())
def test_cat_stack(data: st.DataObject) -> None:
    x, a = data.draw(tensors(dtypes=NATIVE))
    same = data.draw(st.booleans())
    y, b = data.draw(tensors(shape=a.shape if same else None, dtypes=NATIVE))
    nd = max(a.ndim, 1)
    dim = data.draw(st.integers(-nd, nd - 1))
    out = run(lambda: gd.cat([x, y], dim), False, "cat")
    if out is not None:
        assert_matches(out, np.concatenate([a, b], axis=dim), "cat")
    out = run(lambda: gd.stack([x, y], dim), same, "stack")
    if out is not None:
        assert_matches(out, np.stack([a, b], axis=dim), "stack")


# ---- losses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
@PROPERTY
@given(data=st.data())
def test_regression_losses(name: str, data: st.DataObject) -> None:
    x, a = data.draw(_float_tensors())
    same = data.draw(st.integers(0, 4)) > 0
    y, b = data.draw(tensors(shape=a.shape if same else None,
                             dtypes=[str(a.dtype)] if same else FLOAT_DTYPES))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none", "avg"]))
    try:
        np.broadcast_shapes(a.shape, b.shape)
        broadcasts = True
    except ValueError:
        broadcasts = False
    must_work = a.dtype.kind == "f" and broadcasts and reduction != "avg"
    fn = getattr(F, name)
    out = run(lambda: fn(x, y, reduction=reduction), must_work, name)
    if out is None:
        return
    assert broadcasts and reduction != "avg" and a.dtype.kind == "f"
    with np.errstate(all="ignore"):
        d = a - b
        per = d * d if name == "mse_loss" else np.abs(d)
        d64 = a.astype(np.float64) - b.astype(np.float64)
        per64 = d64 * d64 if name == "mse_loss" else np.abs(d64)
    if reduction == "none":
        assert_matches(out, per, name, rtol=4 * _eps(per.dtype), atol=0)
        return
    n = per.size
    want = _ref(lambda: per.sum() if reduction == "sum" else (per.sum() / n if n else np.nan))
    want = np.asarray(want, dtype=per.dtype)
    _same_nonfinite(out._data, want, name)
    if np.isfinite(want):
        exact = per64.sum() if reduction == "sum" else per64.sum() / n
        scale = per64.sum() if reduction == "sum" else per64.sum() / n
        assert abs(float(out._data) - exact) <= _sum_bound(abs(scale), n + 2, per.dtype) * 2


@PROPERTY
@given(data=st.data())
def test_cross_entropy(data: st.DataObject) -> None:
    n, c = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
    x, a = data.draw(_float_tensors(shape=(n, c)))
    t = data.draw(st.lists(st.integers(-1, c) | st.just(-100), min_size=n, max_size=n))
    target_np = np.array(t, dtype=np.int64).reshape(n)
    target = gd.tensor(target_np)
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    valid = (target_np == -100) | ((target_np >= 0) & (target_np < c))
    must_work = a.dtype.kind == "f" and bool(valid.all()) and (c > 0 or n == 0)
    out = run(lambda: F.cross_entropy(x, target, reduction=reduction), must_work,
              "cross_entropy")
    if out is None:
        return
    assert valid.all()
    keep = target_np != -100
    with np.errstate(all="ignore"):
        if c:
            lse = _np_softmax(a, 1, True)  # log-probabilities
            per = np.where(keep, -lse[np.arange(n), np.where(keep, target_np, 0)], 0)
        else:
            per = np.zeros(n, a.dtype)
        per = per.astype(a.dtype)
        if reduction == "none":
            want = per
        elif reduction == "sum":
            want = per.sum(dtype=a.dtype)
        else:
            want = per.sum(dtype=a.dtype) / a.dtype.type(keep.sum()) if keep.any() else np.nan
    want = np.asarray(want, dtype=a.dtype)
    tol = 64 * _eps(a.dtype) * max(c, 1) * max(n, 1)
    scale = np.abs(np.nan_to_num(a, nan=0, posinf=0, neginf=0)).max(initial=1.0)
    assert_matches(out, want, "cross_entropy", rtol=tol, atol=tol * scale)


@PROPERTY
@given(data=st.data())
def test_bce_with_logits(data: st.DataObject) -> None:
    """The documented formula (1 - y) x + softplus(-x), elementwise."""
    x, a = data.draw(tensors(dtypes=["float32", "float64"]))
    y, b = data.draw(tensors(shape=a.shape, dtypes=[str(a.dtype)]))
    out = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    with np.errstate(all="ignore"):
        want = ((1 - b) * a + np.logaddexp(a.dtype.type(0), -a)).astype(a.dtype)
    tol = 8 * _eps(a.dtype)
    a64 = np.abs(np.nan_to_num(a.astype(np.float64), posinf=0, neginf=0))
    b64 = np.abs(np.nan_to_num(b.astype(np.float64), posinf=0, neginf=0))
    assert_matches(out, want, "binary_cross_entropy_with_logits", rtol=tol,
                   atol=tol * (1 + a64 * (1 + b64)))


@PROPERTY
@given(data=st.data())
def test_nll_and_bce_contracts(data: st.DataObject) -> None:
    """nll_loss picks -input[n, t[n]]; binary_cross_entropy refuses an input or target outside
    [0, 1] (or NaN) with ValueError and otherwise equals the clamped-log formula."""
    n, c = data.draw(st.integers(0, 4)), data.draw(st.integers(1, 4))
    x, a = data.draw(tensors(shape=(n, c), dtypes=["float32", "float64"]))
    t = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)),
                 dtype=np.int64).reshape(n)
    out = F.nll_loss(x, gd.tensor(t), reduction="none")
    assert_matches(out, -a[np.arange(n), t], "nll_loss")
    p, pa = data.draw(tensors(dtypes=["float32", "float64"]))
    if data.draw(st.booleans()):  # mostly probabilities (0 and 1 included); Inf stays out of range
        with np.errstate(all="ignore"):
            pa = np.where(np.isfinite(pa), np.abs(np.tanh(pa)), pa).astype(pa.dtype)
        p = gd.tensor(pa)
    q, qa = data.draw(tensors(shape=pa.shape, dtypes=[str(pa.dtype)]))
    if data.draw(st.booleans()):  # mostly targets in [0, 1], else the check alone is tested
        with np.errstate(all="ignore"):
            qa = np.where(np.isfinite(qa), np.abs(np.tanh(qa)), qa).astype(qa.dtype)
        q = gd.tensor(qa)
    # PyTorch's test (v >= 0) & (v <= 1), on input and target, refuses NaN as well
    in_range = bool(((pa >= 0) & (pa <= 1)).all() and ((qa >= 0) & (qa <= 1)).all())
    out = run(lambda: F.binary_cross_entropy(p, q, reduction="none"), bool(in_range),
              "binary_cross_entropy")
    if out is None:
        return
    with np.errstate(all="ignore"):
        want = -(qa * np.maximum(np.log(pa), -100) + (1 - qa) * np.maximum(np.log(1 - pa), -100))
    tol = 8 * _eps(pa.dtype)
    assert_matches(out, want.astype(pa.dtype), "binary_cross_entropy", rtol=tol,
                   atol=tol * 100 * (1 + np.abs(np.nan_to_num(qa, posinf=0, neginf=0))))


# ---- backward through everything ---------------------------------------------------------------
def _bw_binary(data: st.DataObject, fn: Callable) -> tuple:
    sa, sb = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                         min_side=0, max_side=4)).input_shapes
    x = data.draw(leaves(shape=sa))
    y = data.draw(leaves(shape=sb, dtypes=[x.dtype.name]) if False else leaves(shape=sb))
    return fn(x, y), (x, y)


def _bw_matmul(data: st.DataObject) -> tuple:
    sa, sb = data.draw(matmul_shapes())
    x = data.draw(leaves(shape=sa))
    y = data.draw(tensors(shape=sb, dtypes=[x.dtype.name]))[0].requires_grad_()
    return x @ y, (x, y)


def _bw_linear(data: st.DataObject) -> tuple:
    xin, out_f = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    lead = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    x = data.draw(leaves(shape=lead + (xin,)))
    w = data.draw(tensors(shape=(out_f, xin), dtypes=[x.dtype.name]))[0].requires_grad_()
    b = data.draw(tensors(shape=(out_f,), dtypes=[x.dtype.name]))[0].requires_grad_()
    return F.linear(x, w, b), (x, w, b)


def _bw_reduce(data: st.DataObject, name: str) -> tuple:
    x = data.draw(leaves())
    dim = data.draw(reduce_dims(x.ndim))
    if name in ("max", "softmax", "log_softmax", "cumulative") and isinstance(dim, tuple):
        dim = dim[0] if dim else None
    keepdim = data.draw(st.booleans())
    if name == "max":
        out = x.max() if dim is None else x.max(dim, keepdim).values
    elif name in ("softmax", "log_softmax"):
        out = getattr(gd, name)(x, dim if dim is not None else -1)
    else:
        out = getattr(gd, name)(x, dim, keepdim)
    return out, (x,)


def _bw_index(data: st.DataObject) -> tuple:
    x = data.draw(leaves())
    idx = data.draw(basic_index(tuple(x.shape)))
    return x[idx], (x,)


def _bw_loss(data: st.DataObject, name: str) -> tuple:
    if name == "cross_entropy":
        n, c = data.draw(st.integers(0, 4)), data.draw(st.integers(1, 4))
        x = data.draw(leaves(shape=(n, c)))
        t = gd.tensor(np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n,
                                                  max_size=n)), dtype=np.int64).reshape(n))
        return F.cross_entropy(x, t, reduction=data.draw(st.sampled_from(["mean", "sum",
                                                                          "none"]))), (x,)
    x = data.draw(leaves())
    y = data.draw(tensors(shape=tuple(x.shape), dtypes=[x.dtype.name]))[0].requires_grad_()
    return getattr(F, name)(x, y, reduction=data.draw(st.sampled_from(["mean", "sum", "none"]))), \
        (x, y)


BACKWARD = {
    "add": lambda d: _bw_binary(d, lambda a, b: a + b),
    "mul": lambda d: _bw_binary(d, lambda a, b: a * b),
    "div": lambda d: _bw_binary(d, lambda a, b: a / b),
    "pow": lambda d: _bw_binary(d, lambda a, b: a ** b),
    "maximum": lambda d: _bw_binary(d, gd.maximum),
    "where": lambda d: _bw_binary(d, lambda a, b: gd.where(a > b, a, b)),
    "matmul": _bw_matmul,
    "linear": _bw_linear,
    "sum": lambda d: _bw_reduce(d, "sum"),
    "mean": lambda d: _bw_reduce(d, "mean"),
    "amax": lambda d: _bw_reduce(d, "amax"),
    "max": lambda d: _bw_reduce(d, "max"),
    "softmax": lambda d: _bw_reduce(d, "softmax"),
    "log_softmax": lambda d: _bw_reduce(d, "log_softmax"),
    "getitem": _bw_index,
    "mse_loss": lambda d: _bw_loss(d, "mse_loss"),
    "l1_loss": lambda d: _bw_loss(d, "l1_loss"),
    "cross_entropy": lambda d: _bw_loss(d, "cross_entropy"),
}


@pytest.mark.parametrize("name", sorted(BACKWARD))
@PROPERTY
@given(data=st.data())
def test_backward_never_crashes(name: str, data: st.DataObject) -> None:
    """For float leaves of any layout, shape (0-size included) and values (NaN, Inf, 1e30),
    forward either raises a contract error or backward gives every leaf a gradient of its
    shape and dtype; broadcasting is undone (the engine's unbroadcast), nothing warns."""
    try:
        out, inputs = BACKWARD[name](data)
    except CONTRACT_ERRORS as e:
        assert str(e).strip()
        return
    out.sum().backward()
    _check_grads(*inputs)


# ---- in-place ops ---------------------------------------------------------------------------
INPLACE = {
    "add_": (lambda t, v: t.add_(v), np.add),
    "sub_": (lambda t, v: t.sub_(v), np.subtract),
    "mul_": (lambda t, v: t.mul_(v), np.multiply),
    "div_": (lambda t, v: t.div_(v), np.true_divide),
    "clamp_": (lambda t, v: t.clamp_(min=v), np.maximum),
    "copy_": (lambda t, v: t.copy_(v), None),
    "iadd": (lambda t, v: t.__iadd__(v), np.add),
    "setitem": (lambda t, v: (t.__setitem__(Ellipsis, v), t)[1], None),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
@PROPERTY
@given(data=st.data())
def test_inplace(name: str, data: st.DataObject) -> None:
    """In-place ops write NumPy's result (cast to the tensor's dtype as PyTorch's same-kind
    rule allows) into the tensor's own memory, and bump its version; a read-only tensor, a
    value that does not broadcast to its shape or an unsafe cast raises with a message and
    leaves the tensor untouched."""
    fn, oracle = INPLACE[name]
    sa, sb = data.draw(broadcast_pair())
    x, a = data.draw(tensors(shape=sa, dtypes=NATIVE))
    if data.draw(st.booleans()):
        y, b = data.draw(tensors(shape=sb, dtypes=NATIVE))
    else:
        y = b = data.draw(st.sampled_from(SCALARS))
    before, version, mem = x.numpy().copy(), x._version, x._data
    out = run(lambda: fn(x, y), False, name)
    if out is None:
        np.testing.assert_array_equal(x.numpy(), before)  # a failed op changes nothing
        return
    assert out is x and x._data is mem and x._version > version
    assert x._data.flags.writeable, "wrote into a read-only array"
    if name in ("copy_", "setitem"):  # NumPy's assignment: leading 1-dims of b may be dropped
        want = before.copy()
        with np.errstate(all="ignore"):
            want[...] = b
    else:  # NumPy's in-place ufunc: the result must have the tensor's shape
        want = _ref(lambda: np.asarray(oracle(before, b)))
        assert want.shape == a.shape, f"{name}: result {want.shape} written into {a.shape}"
        with np.errstate(all="ignore"):
            want = want.astype(a.dtype)
    assert_matches(x, want, name)
