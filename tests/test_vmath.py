"""The transcendental kernels of src/cpp/vmath.hpp (exp, log, log1p, tanh, sigmoid, gelu and
gelu's derivative) through the elementwise and activation kernels.

Accuracy: the largest error in ulps of the exact value, over dense sweeps of each function's
domain (its range-reduction boundaries, the overflow and underflow thresholds, denormals) and
over random bit patterns. Oracles: float32 against NumPy's float64 (exact to 2^-29 relative, far
below a float32 ulp); float64 against NumPy's long double (x86's 80-bit format, 11 more bits)
for exp, log, log1p, tanh and sigmoid, and against mpmath (50 digits) for gelu. The bounds
asserted are docs/performance-vmath.md's.
Special values against NumPy, and every ISA this CPU runs gives the same bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from graddesc import _core

EW = _core.EW_OPS
_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]
_LONG = np.finfo(np.longdouble).nmant >= 63  # 80-bit x87 long double (not aarch64/Windows)


def _ew(name: str):
    return lambda x: _core.elementwise(EW[name], x)


def _act(name: str):
    return lambda x: _core.activation_forward(name, x)


def _gelu_grad(x: np.ndarray) -> np.ndarray:
    return _core.activation_backward("gelu", np.ones_like(x), x=x)


OURS = {"exp": _ew("exp"), "log": _ew("log"), "log1p": _ew("log1p"), "tanh": _act("tanh"),
        "sigmoid": _act("sigmoid"), "gelu": _act("gelu"), "gelu'": _gelu_grad}

# measured maxima are in docs/performance-vmath.md; the bounds leave a little room
BOUND = {np.float32: {"exp": 1.0, "log": 1.0, "log1p": 1.5, "tanh": 1.5, "sigmoid": 1.5,
                      "gelu": 1.0, "gelu'": 1.0},
         np.float64: {"exp": 1.0, "log": 1.5, "log1p": 1.5, "tanh": 1.5, "sigmoid": 1.5,
                      "gelu": 7.0}}


def _reference(name: str, x: np.ndarray, wide: type) -> np.ndarray:
    """The function in the wider type `wide` (float64 or longdouble)."""
    w = x.astype(wide)
    with np.errstate(all="ignore"):
        if name in ("exp", "log", "log1p", "tanh"):
            return getattr(np, name)(w)
        if name == "sigmoid":
            return 1 / (1 + np.exp(-w))
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    cdf = 0.5 * erfc(-x.astype(np.float64) / math.sqrt(2))
    if name == "gelu":
        return x * cdf
    return cdf + x * np.exp(-0.5 * x.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)


def _ulps(ours: np.ndarray, ref: np.ndarray, dtype: type) -> np.ndarray:
    """|ours - ref| in units of the dtype's ulp at ref (denormal ulp below the normal range)."""
    info = np.finfo(dtype)
    finite = np.isfinite(ref) & (np.abs(ref) <= info.max)
    ref = np.where(finite, ref, 1)
    _, e = np.frexp(np.abs(ref))
    e = np.maximum(e.astype(np.int64) - 1, int(np.log2(info.tiny)))
    ulp = np.ldexp(np.ones_like(ref), e - info.nmant)
    err = np.abs(ours.astype(ref.dtype) - ref) / ulp
    return np.where(finite, err, 0).astype(np.float64)


def _random_bits(dtype: type, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    itype = np.uint32 if dtype == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(itype).max, size=n, dtype=itype, endpoint=True)
    x = bits.view(dtype)
    return x[np.isfinite(x)]


def _binades(dtype: type) -> np.ndarray:
    """Points spread evenly in log scale from the smallest denormal to the largest finite value."""
    info = np.finfo(dtype)
    e = np.linspace(np.log2(float(info.smallest_subnormal)), np.log2(float(info.max)), 400_001)
    return np.exp2(e[:-1]).astype(dtype)


def _domain(name: str, dtype: type) -> np.ndarray:
    f32 = dtype == np.float32
    parts = [_random_bits(dtype, 400_000, seed=len(name))]
    lin = lambda a, b, n=400_001: np.linspace(a, b, n, dtype=dtype)  # noqa: E731
    if name == "exp":
        parts += [lin(-104.5, 89.0) if f32 else lin(-746.0, 710.0), lin(-1.0, 1.0),
                  lin(87.0, 89.0) if f32 else lin(708.0, 710.0),
                  lin(-104.0, -87.0) if f32 else lin(-746.0, -707.0)]
    elif name in ("log", "log1p"):
        parts += [lin(0.0, 4.0), lin(0.6, 1.5), lin(-1.0, 1.0), lin(-1e-3, 1e-3),
                  _binades(dtype)]
    elif name == "tanh":
        parts += [lin(-10.0, 10.0), lin(0.55, 0.7), lin(-1e-3, 1e-3), lin(8.0, 20.0)]
    elif name == "sigmoid":
        parts += [lin(-110.0, 40.0) if f32 else lin(-750.0, 40.0), lin(-6.0, 6.0)]
    else:  # gelu, gelu'
        parts += [lin(-15.0, 6.0) if f32 else lin(-40.0, 10.0), lin(-3.0, 3.0)]
    x = np.concatenate(parts)
    if name in ("log", "log1p"):
        x = np.abs(x) if name == "log" else x[x >= -1]
    return x


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "tanh", "sigmoid", "gelu", "gelu'"])
def test_float32_within_bound_of_exact(name):
    x = _domain(name, np.float32)
    err = _ulps(OURS[name](x), _reference(name, x, np.float64), np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[np.float32][name], (name, float(x[worst]), float(err[worst]))


@pytest.mark.skipif(not _LONG, reason="needs an 80-bit long double as the float64 oracle")
@pytest.mark.parametrize("name", ["exp", "log", "log1p", "tanh", "sigmoid"])
def test_float64_within_bound_of_exact(name):
    x = _domain(name, np.float64)
    err = _ulps(OURS[name](x), _reference(name, x, np.longdouble), np.float64)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[np.float64][name], (name, float(x[worst]), float(err[worst]))


def test_float64_gelu_within_bound_of_exact():
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-38.5, 8.0, 1500), rng.uniform(-4.0, 4.0, 1500),
                        np.linspace(-1.07, -1.05, 101)])  # |x| / sqrt 2 = 0.75: the seam
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.mpf(v) * mpmath.ncdf(v)) for v in x])
    err = _ulps(OURS["gelu"](x), ref, np.float64)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[np.float64]["gelu"], (float(x[worst]), float(err[worst]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_as_numpy(dtype):
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, info.tiny, 1.0, -1.0,
                  info.max, -info.max, 1e-30, -1e-30], dtype=dtype)
    with np.errstate(all="ignore"):
        expected = {"exp": np.exp(x), "log": np.log(x), "log1p": np.log1p(x),
                    "tanh": np.tanh(x)}
    for name, want in expected.items():
        got = OURS[name](x)
        # NaN where NumPy has NaN, infinities and zeros with their sign, finite values close
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), name)
        np.testing.assert_array_equal(np.signbit(got[~np.isnan(got)]),
                                      np.signbit(want[~np.isnan(want)]), name)
        np.testing.assert_allclose(got, want, rtol=4 * info.eps, atol=0, err_msg=name)
    # exp's overflow and underflow: inf above log(max), 0 below log(smallest denormal / 2)
    lo = -104.0 if dtype == np.float32 else -746.0
    hi = 89.0 if dtype == np.float32 else 710.0
    np.testing.assert_array_equal(OURS["exp"](np.array([lo, hi], dtype=dtype)), [0.0, np.inf])
    # sigmoid: no overflow for a large |x|, exact 0 and 1 at the infinities
    s = OURS["sigmoid"](np.array([-np.inf, -1e30, 1e30, np.inf, np.nan], dtype=dtype))
    np.testing.assert_array_equal(s[:4], [0.0, 0.0, 1.0, 1.0])
    assert np.isnan(s[4])


@pytest.mark.skipif(len(_ISAS) < 2, reason="this CPU runs a single instruction set")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_isa_gives_the_same_bits(dtype):
    rng = np.random.default_rng(11)
    # random bit patterns (every binade, denormals, NaN payloads), then ordinary values; an odd
    # length leaves a scalar tail after the vector loop
    itype = np.uint32 if dtype == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(itype).max, size=20_001, dtype=itype, endpoint=True)
    x = np.concatenate([bits.view(dtype), (rng.standard_normal(10_001) * 5).astype(dtype)])
    results = {}
    previous = _core.isa()
    try:
        for isa in _ISAS:
            _core.set_isa(isa)
            with np.errstate(all="ignore"):
                results[isa] = [OURS[name](x).view(np.uint8) for name in OURS]
    finally:
        _core.set_isa(previous)
    for isa in _ISAS[1:]:
        for name, a, b in zip(OURS, results[_ISAS[0]], results[isa]):
            np.testing.assert_array_equal(a, b, f"{name} {isa} / {_ISAS[0]}")
