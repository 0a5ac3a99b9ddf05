"""Every differentiable op at special values, forward and backward, against PyTorch.

Inputs sweep NaN, +-inf, +-0, +-1e30, a denormal, the dtype's near-overflow values, ordinary
values and each op's kinks (0 for relu/abs/sqrt, the clamp bounds, ties for max/min, a zero
spread for var/std, -inf/+inf rows for logsumexp and softmax); binary ops take every pair.
The oracle is PyTorch itself (these tests skip without it): NaN positions must match exactly,
infinities exactly with their sign, finite values within a tight per-dtype tolerance, for an
upstream gradient of ones and of random values, in float32 and float64, on every ISA.
docs/special-values.md lists the conventions this checks.

The last test needs no PyTorch: the C++ activation kernels give the same bits on every ISA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

_F32_DENORMAL = 1e-40
_F64_DENORMAL = 1e-310


def _specials(dtype: type) -> list:
    """The values every op sees; the dtype's denormal and its near-overflow magnitude included."""
    tiny = _F32_DENORMAL if dtype == np.float32 else _F64_DENORMAL
    huge = 3e38 if dtype == np.float32 else 1e300
    return [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, huge, -huge, tiny, -tiny,
            0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 30.0, -30.0, 100.0, -100.0]


def _unary(*kinks: float, nan: bool = True) -> Callable[[type], list]:
    """Builds the 1-d input: the specials (without NaN if not nan) and the op's kinks."""

    def make(dtype: type) -> list:
        values = [v for v in _specials(dtype) + list(kinks) if nan or not np.isnan(v)]
        return [np.array(values, dtype=dtype)]

    return make


def _pairs(dtype: type) -> list:
    """Every (a, b) from the specials, as two flat arrays."""
    v = np.array(_specials(dtype), dtype=dtype)
    a, b = np.meshgrid(v, v, indexing="ij")
    return [a.ravel(), b.ravel()]


def _triples(dtype: type) -> list:
    """(x, lo, hi) for clamp with tensor bounds: every x against bound pairs that include NaN,
    infinities, equal bounds and lo > hi."""
    x = np.array(_specials(dtype), dtype=dtype)
    bounds = [(-1.0, 1.0), (0.0, 0.0), (1.0, -1.0), (np.nan, 1.0), (-1.0, np.nan),
              (-np.inf, np.inf), (np.inf, -np.inf), (0.5, 2.0), (-0.0, 0.0)]
    xs, los, his = [], [], []
    for lo, hi in bounds:
        xs.append(x)
        los.append(np.full_like(x, lo))
        his.append(np.full_like(x, hi))
    return [np.concatenate(xs), np.concatenate(los), np.concatenate(his)]


def _rows(dtype: type) -> list:
    """A (rows, 4) matrix: each row a hard case of the reductions, each column (dim 0) a mix."""
    tiny = _F32_DENORMAL if dtype == np.float32 else _F64_DENORMAL
    nan, inf = np.nan, np.inf
    rows = [
        [1.0, 2.0, 3.0, 4.0],
        [3.0, 3.0, 1.0, 0.0],  # a tie for the max
        [0.0, 1.0, 0.0, 2.0],  # a tie for the min
        [0.0, 0.0, 0.0, 0.0],  # all tied, zero spread
        [5.0, 5.0, 5.0, 5.0],
        [-0.0, 0.0, -0.0, 0.0],
        [nan, 1.0, nan, 2.0],
        [1.0, nan, 3.0, 3.0],
        [nan, nan, nan, nan],
        [inf, 1.0, inf, -inf],
        [inf, 1.0, 2.0, 3.0],
        [-inf, 0.0, 1.0, 2.0],
        [-inf, -inf, -inf, -inf],
        [inf, inf, inf, inf],
        [-inf, -inf, 0.0, -inf],
        [1e30, 1e30, -1e30, 0.0],
        [tiny, 0.0, -tiny, tiny],
        [-30.0, 30.0, 100.0, -100.0],
    ]
    return [np.array(rows, dtype=dtype)]


@dataclass(frozen=True)
class Case:
    """fn(m, *tensors) with m either graddesc or torch (the same PyTorch-shaped code runs on
    both); inputs(dtype) gives the arrays, each a leaf that requires grad.

    f64_oracle: in float32 PyTorch's float64 result rounded to float32 is accepted as well as
    its float32 one, for the ops whose float32 PyTorch kernels lose accuracy that graddesc keeps
    (gelu is 1.3e-4 off at x = -3 and NaN at +inf, gelu'(-10) is 0; sigmoid(-100) underflows to
    0, so an infinite upstream gradient gives NaN there, not -inf).
    torch_grads(torch, tensors, g): PyTorch's gradient computed another way, where its autograd
    formula is off (see _logsumexp_grads).
    exact(x, g): the exact [output, gradient] at the finite inputs (mpmath), accepted as well as
    PyTorch's, for an op whose PyTorch formula cancels where graddesc's does not: PyTorch's
    gelu is 0.5 x (1 + erf(x / sqrt 2)), which is 0 from x = -8.3 on in float64 (gelu(-30) is
    -1.5e-196), graddesc's takes Phi of a negative x from erfc (src/cpp/vmath.hpp); sigmoid's
    gradient y (1 - y) magnifies the last bit of y where y is near 1.
    loose: the tolerance times 16, for an op whose formula (PyTorch's too) cancels: gelu_tanh's
    1 + tanh(u) at x = -3 loses 9 bits, so PyTorch and graddesc differ by a last-bit difference
    of tanh times 500 (both are as far from the exact value)."""

    id: str
    fn: Callable
    inputs: Callable[[type], list]
    f64_oracle: bool = False
    exact: Callable | None = None
    torch_grads: Callable | None = None
    loose: bool = False


def _F(m):  # noqa: N802 - the usual name of nn.functional
    return m.nn.functional


def _gelu_exact(x: np.ndarray, g: np.ndarray) -> list:
    """gelu(x) = x Phi(x) and g (Phi(x) + x phi(x)) for |x| < 1e10, to 50 digits (mpmath),
    rounded to float64; NaN elsewhere (where only PyTorch's values are the oracle)."""
    mpmath = pytest.importorskip("mpmath")
    y = np.full(x.shape, np.nan)
    d = np.full(x.shape, np.nan)
    with mpmath.workdps(50):
        for i, v in np.ndenumerate(x):
            if abs(v) < 1e10:
                xv = mpmath.mpf(float(v))
                cdf = mpmath.ncdf(xv)
                y[i] = float(xv * cdf)
                d[i] = float(cdf + xv * mpmath.npdf(xv))
    with np.errstate(all="ignore"):
        return [y, g.astype(np.float64) * d]


def _sigmoid_exact(x: np.ndarray, g: np.ndarray) -> list:
    """sigmoid(x) correctly rounded (mpmath) for |x| < 1e10 (NaN elsewhere) and the gradient
    g y (1 - y) from that y: where y
    rounds near 1, y (1 - y) is as exact as y's last bit (PyTorch's float64 sigmoid(30) is one
    ulp from the correctly rounded value, and so its gradient is 1e-3 off)."""
    mpmath = pytest.importorskip("mpmath")
    y = np.full(x.shape, np.nan, dtype=x.dtype)
    with mpmath.workdps(50):
        for i, v in np.ndenumerate(x):
            if abs(v) < 1e10:
                y[i] = float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v)))))
    with np.errstate(all="ignore"):
        return [y, g.astype(x.dtype) * y * (1 - y)]


def _logsumexp_grads(dim: int) -> Callable:
    """PyTorch's logsumexp gradient is g exp(x - logsumexp(x)); where logsumexp rounds to the
    max (a tie at 1e30: 1e30 + log 2 is 1e30) that gives each tied entry g, a gradient summing
    to 2 g. The derivative is softmax(x) g, which is what graddesc gives and PyTorch's softmax
    computes; rows whose max is not finite keep PyTorch's autograd value (NaN, or 0 beside
    +inf)."""

    def grads(torch, xs: list, g):
        (x,) = xs
        x = x.detach().requires_grad_(True)
        (auto,) = torch.autograd.grad(torch.logsumexp(x, dim), x, g)
        soft = torch.softmax(x.detach(), dim) * g.unsqueeze(dim)
        finite = torch.isfinite(torch.amax(x.detach(), dim, keepdim=True))
        return [torch.where(finite, soft, auto)]

    return grads


CASES = [
    # activations (C++ kernels)
    Case("relu", lambda m, x: m.relu(x), _unary()),
    Case("leaky_relu", lambda m, x: _F(m).leaky_relu(x), _unary()),
    Case("leaky_relu_0.2", lambda m, x: _F(m).leaky_relu(x, 0.2), _unary()),
    Case("leaky_relu_-1", lambda m, x: _F(m).leaky_relu(x, -1.0), _unary()),
    Case("tanh", lambda m, x: m.tanh(x), _unary()),
    Case("sigmoid", lambda m, x: m.sigmoid(x), _unary(-20.0, 20.0, 40.0, -40.0),
         f64_oracle=True, exact=_sigmoid_exact),
    Case("softplus", lambda m, x: _F(m).softplus(x), _unary(19.0, 20.0, 21.0, 40.0, -40.0)),
    Case("softplus_beta2", lambda m, x: _F(m).softplus(x, beta=2.0),
         _unary(9.0, 10.0, 11.0, 40.0)),
    Case("softplus_threshold1", lambda m, x: _F(m).softplus(x, threshold=1.0),
         _unary(0.9, 1.1, 1.5)),
    Case("gelu", lambda m, x: _F(m).gelu(x), _unary(-10.0, 10.0, -40.0), f64_oracle=True,
         exact=_gelu_exact),
    Case("gelu_tanh", lambda m, x: _F(m).gelu(x, approximate="tanh"), _unary(-10.0, 10.0),
         loose=True),
    Case("exp", lambda m, x: m.exp(x), _unary(88.0, 89.0, 709.0, 710.0, -104.0, -746.0)),
    Case("log", lambda m, x: m.log(x), _unary()),
    # elementwise (NumPy forward, Python backward)
    Case("neg", lambda m, x: -x, _unary()),
    Case("abs", lambda m, x: m.abs(x), _unary()),
    # sign(NaN): see test_sign_of_nan_is_nan_as_in_numpy
    Case("sign", lambda m, x: m.sign(x), _unary(nan=False)),
    Case("sqrt", lambda m, x: m.sqrt(x), _unary()),
    Case("add", lambda m, a, b: a + b, _pairs),
    Case("add_alpha", lambda m, a, b: m.add(a, b, alpha=2.0), _pairs),
    Case("sub", lambda m, a, b: a - b, _pairs),
    Case("mul", lambda m, a, b: a * b, _pairs),
    Case("div", lambda m, a, b: a / b, _pairs),
    Case("pow", lambda m, a, b: m.pow(a, b), _pairs),
    Case("pow_0", lambda m, x: x**0.0, _unary()),
    Case("pow_1", lambda m, x: x**1.0, _unary()),
    Case("pow_2", lambda m, x: x**2.0, _unary()),
    Case("pow_3", lambda m, x: x**3, _unary()),
    Case("pow_0.5", lambda m, x: x**0.5, _unary()),
    Case("pow_-1", lambda m, x: x**-1.0, _unary()),
    Case("pow_-0.5", lambda m, x: x**-0.5, _unary()),
    Case("pow_-2", lambda m, x: x**-2.0, _unary()),
    Case("pow_1.5", lambda m, x: x**1.5, _unary()),
    Case("pow_nan", lambda m, x: x ** float("nan"), _unary()),
    Case("pow_inf", lambda m, x: x ** float("inf"), _unary()),
    Case("rpow_2", lambda m, x: 2.0**x, _unary()),
    Case("rpow_0", lambda m, x: 0.0**x, _unary()),
    Case("rpow_1", lambda m, x: 1.0**x, _unary()),
    Case("rpow_-2", lambda m, x: (-2.0) ** x, _unary()),
    Case("rpow_0.5", lambda m, x: 0.5**x, _unary()),
    Case("clamp", lambda m, x: m.clamp(x, -1.0, 1.0), _unary(-1.0, 1.0)),
    Case("clamp_min", lambda m, x: m.clamp(x, min=0.0), _unary()),
    Case("clamp_max", lambda m, x: m.clamp(x, max=0.0), _unary()),
    Case("clamp_equal_bounds", lambda m, x: m.clamp(x, 0.5, 0.5), _unary()),
    Case("clamp_min_gt_max", lambda m, x: m.clamp(x, 1.0, -1.0), _unary()),
    Case("clamp_nan_min", lambda m, x: m.clamp(x, min=float("nan")), _unary()),
    Case("clamp_nan_max", lambda m, x: m.clamp(x, max=float("nan")), _unary()),
    Case("clamp_inf_bounds", lambda m, x: m.clamp(x, -float("inf"), float("inf")), _unary()),
    Case("clamp_tensor_bounds", lambda m, x, lo, hi: m.clamp(x, lo, hi), _triples),
    Case("clamp_tensor_min", lambda m, x, lo: m.clamp(x, min=lo), _pairs),
    Case("clamp_tensor_max", lambda m, x, hi: m.clamp(x, max=hi), _pairs),
    Case("where", lambda m, a, b: m.where(a > b, a, b), _pairs),
    Case("maximum", lambda m, a, b: m.maximum(a, b), _pairs),
    Case("minimum", lambda m, a, b: m.minimum(a, b), _pairs),
    # reductions
    Case("sum", lambda m, x: x.sum(1), _rows),
    Case("sum_all", lambda m, x: x.sum(), _rows),
    Case("mean", lambda m, x: x.mean(1), _rows),
    Case("mean_dim0", lambda m, x: x.mean(0), _rows),
    Case("max_all", lambda m, x: x.max(), _rows),
    Case("min_all", lambda m, x: x.min(), _rows),
    Case("max_dim", lambda m, x: x.max(1).values, _rows),
    Case("min_dim", lambda m, x: x.min(1).values, _rows),
    Case("max_dim0", lambda m, x: x.max(0).values, _rows),
    Case("amax", lambda m, x: m.amax(x, 1), _rows),
    Case("amin", lambda m, x: m.amin(x, 1), _rows),
    Case("amax_dim0", lambda m, x: m.amax(x, 0), _rows),
    Case("amax_all", lambda m, x: m.amax(x, (0, 1)), _rows),
    Case("amax_keepdim", lambda m, x: m.amax(x, 1, keepdim=True), _rows),
    Case("amin_dim0", lambda m, x: m.amin(x, 0), _rows),
    Case("max_finite", lambda m, x: x[:6].max(), _rows),
    Case("min_nan", lambda m, x: x[5:9].min(), _rows),
    Case("var", lambda m, x: x.var(1), _rows),
    Case("var_biased", lambda m, x: x.var(1, unbiased=False), _rows),
    Case("var_all", lambda m, x: x.var(), _rows),
    Case("std", lambda m, x: x.std(1), _rows),
    Case("std_biased", lambda m, x: x.std(1, unbiased=False), _rows),
    Case("std_dim0", lambda m, x: x.std(0), _rows),
    Case("std_all", lambda m, x: x[:6].std(), _rows),
    Case("std_keepdim", lambda m, x: x.std(1, keepdim=True), _rows),
    Case("logsumexp", lambda m, x: m.logsumexp(x, 1), _rows, torch_grads=_logsumexp_grads(1)),
    Case("logsumexp_dim0", lambda m, x: m.logsumexp(x, 0), _rows,
         torch_grads=_logsumexp_grads(0)),
    # softmax family (fused C++ kernels of src/cpp/loss.cpp)
    Case("softmax", lambda m, x: m.softmax(x, 1), _rows),
    Case("softmax_dim0", lambda m, x: m.softmax(x, 0), _rows),
    Case("log_softmax", lambda m, x: m.log_softmax(x, 1), _rows),
    Case("log_softmax_dim0", lambda m, x: m.log_softmax(x, 0), _rows),
]

# finite values: |actual - expected| <= atol + rtol |expected|. The C++ kernels and PyTorch's
# (SLEEF) take tanh, erf, exp and log from different libraries, a few ulp apart; atol is the
# smallest normal, so a denormal result may differ in its last bits but not by more.
_TOL = {
    np.float32: (4e-6, float(np.finfo(np.float32).tiny)),
    np.float64: (1e-14, float(np.finfo(np.float64).tiny)),
}


KINDS = ["ones", "random", "special"]


def _upstream(kind: str, shape: tuple, dtype: type, seed: int) -> np.ndarray:
    """The gradient fed to backward: ones, standard normal, or a shuffle of NaN, +-inf, +-0 and
    finite values (a backward that selects must not let a NaN through where it multiplies)."""
    rng = np.random.default_rng(seed)
    if kind == "ones":
        return np.ones(shape, dtype=dtype)
    if kind == "random":
        return rng.standard_normal(shape).astype(dtype)
    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.0], dtype=dtype)
    return rng.permutation(np.resize(values, int(np.prod(shape, dtype=np.int64)))).reshape(shape)


def _run(m, case: Case, arrays: list, g: np.ndarray, torch_grads: Callable | None = None):
    """(output, [grad of each input]) of case.fn on library m for the upstream gradient g,
    as NumPy arrays; torch_grads replaces m's autograd for the gradients."""
    leaves = [m.tensor(a.copy(), requires_grad=True) for a in arrays]
    out = case.fn(m, *leaves)
    gt = m.tensor(g.astype(arrays[0].dtype))
    if torch_grads is not None:
        grads = [np.array(d.numpy()) for d in torch_grads(m, leaves, gt)]
    else:
        out.backward(gt)
        grads = [None if t.grad is None else np.array(t.grad.numpy()) for t in leaves]
    return np.array(out.detach().numpy()), grads


def _to(a: np.ndarray, dtype: type) -> np.ndarray:
    with np.errstate(over="ignore"):  # a float64 oracle beyond the float32 range is +-inf
        return a.astype(dtype)


def _mismatch(actual: np.ndarray, expected: np.ndarray, dtype: type, loose: bool = False
              ) -> np.ndarray:
    """Where actual and expected disagree: NaN-ness, an infinity (with its sign), or a finite
    value beyond the tolerance."""
    rtol, atol = _TOL[dtype]
    rtol *= 16 if loose else 1
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    bad = np.isnan(a) != np.isnan(e)
    inf = np.isinf(a) | np.isinf(e)
    bad |= inf & (a != e) & ~(np.isnan(a) | np.isnan(e))
    fin = np.isfinite(a) & np.isfinite(e)
    with np.errstate(all="ignore"):
        bad |= fin & (np.abs(a - e) > atol + rtol * np.abs(e))
    return bad


def _report(what: str, arrays: list, g: np.ndarray, actual, expected, bad) -> str:
    lines = [f"{what}: {int(bad.sum())} of {bad.size} differ from PyTorch"]
    for idx in list(zip(*np.nonzero(bad)))[:12]:
        ins = ", ".join(repr(float(a[idx])) for a in arrays if a.shape == bad.shape)
        gi = f", g={float(g[idx])!r}" if g.shape == bad.shape else ""
        lines.append(f"  at {tuple(int(i) for i in idx)} inputs ({ins}){gi}: "
                     f"graddesc {float(actual[idx])!r}, torch {float(expected[idx])!r}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _oracle(torch, case: Case, arrays: list, g: np.ndarray, wide: bool) -> list:
    """PyTorch's [output, grad of each input] (zeros for an input it does not reach), in the
    inputs' dtype, or computed in float64 and rounded (wide)."""
    dtype = arrays[0].dtype
    if wide:
        arrays = [a.astype(np.float64) for a in arrays]
    y, grads = _run(torch, case, arrays, g, case.torch_grads)
    grads = [np.zeros_like(a) if d is None else d for a, d in zip(arrays, grads)]
    return [_to(r, dtype) for r in [y, *grads]]


def _compare(torch, case: Case, dtype: type, kind: str) -> list:
    """The failure messages of one case (empty when graddesc matches PyTorch)."""
    arrays = case.inputs(dtype)
    with gd.no_grad():
        shape = tuple(case.fn(gd, *[gd.tensor(a) for a in arrays]).shape)
    g = _upstream(kind, shape, dtype, seed=len(case.id))
    y, grads = _run(gd, case, arrays, g)
    ours = [y, *[np.zeros_like(a) if d is None else d for a, d in zip(arrays, grads)]]
    oracles = [_oracle(torch, case, arrays, g, wide=False)]
    if case.f64_oracle and dtype == np.float32:
        oracles.append(_oracle(torch, case, arrays, g, wide=True))
    if case.exact is not None:
        exact = case.exact(arrays[0], g)
        known = ~np.isnan(exact[0])  # elsewhere PyTorch's value stands in
        oracles.append([np.where(known, _to(e, dtype), o) for e, o in zip(exact, oracles[0])])
    assert y.dtype == oracles[0][0].dtype == dtype, (y.dtype, oracles[0][0].dtype)
    assert y.shape == oracles[0][0].shape, (y.shape, oracles[0][0].shape)
    problems = []
    for i, r in enumerate(ours):
        # a value passes when it matches any oracle (f64_oracle: float32 or float64 PyTorch;
        # exact: the exact value)
        bad = np.logical_and.reduce([_mismatch(r, o[i], dtype, case.loose) for o in oracles])
        if bad.any():
            what = "forward" if i == 0 else f"grad of input {i - 1} (upstream {kind})"
            problems.append(_report(f"{case.id} {what}", arrays, g, r, oracles[0][i], bad))
    return problems


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_torch(torch, isa, float_dtype, case, kind):
    problems = _compare(torch, case, float_dtype, kind)
    assert not problems, "\n".join(problems)


# Second derivatives of the one-input ops, except two PyTorch details: softplus(beta=2)'' at
# beta x = threshold exactly (PyTorch's double backward zeroes it, its forward is not linear
# there yet) and gelu_tanh'' at +-10, 6e-35 in PyTorch and -0 here.
_SECOND = [c for c in CASES if c.inputs.__qualname__.startswith("_unary")
           and c.id not in ("softplus_beta2", "gelu_tanh")]


@pytest.mark.parametrize("case", _SECOND, ids=[c.id for c in _SECOND])
def test_second_derivative_matches_torch(torch, isa, float_dtype, case):
    (a,) = case.inputs(float_dtype)
    results = []
    for m in (gd, torch):
        x = m.tensor(a.copy(), requires_grad=True)
        y = case.fn(m, x)
        (gx,) = m.autograd.grad(y, x, m.ones_like(y), create_graph=True)
        if gx.grad_fn is None:  # a constant derivative: both must agree that it is
            results.append(None)
            continue
        (gxx,) = m.autograd.grad(gx, x, m.ones_like(gx), allow_unused=True)
        results.append(None if gxx is None else np.array(
            gxx.detach().numpy(force=True) if m is torch else gxx.detach().numpy()))
    ours, theirs = results
    assert (ours is None) == (theirs is None), (ours, theirs)
    if ours is not None:
        bad = _mismatch(ours, theirs, float_dtype, case.loose)
        if case.exact is not None:
            # where the forward values differ in their last bit (checked against the exact
            # value by test_matches_torch), sigmoid'' = y (1 - y) (1 - 2 y) magnifies it
            with gd.no_grad():
                y_ours = case.fn(gd, gd.tensor(a)).numpy()
            y_theirs = case.fn(torch, torch.tensor(a)).numpy()
            bad &= (y_ours == y_theirs) | (np.isnan(y_ours) & np.isnan(y_theirs))
        assert not bad.any(), _report(f"{case.id}''", [a], np.ones_like(a), ours, theirs, bad)


def test_sign_of_nan_is_nan_as_in_numpy(torch):
    # The one forward value that departs from PyTorch on purpose: torch.sign(NaN) is 0, but
    # graddesc's NaN propagates as in NumPy (DESIGN.md's rule). The gradient is PyTorch's, 0.
    for dtype in (np.float32, np.float64):
        x = gd.tensor(np.array([np.nan, 1.0], dtype=dtype), requires_grad=True)
        y = gd.sign(x)
        np.testing.assert_array_equal(y.detach().numpy(), np.sign(x.detach().numpy()))
        y.backward(gd.ones_like(y))
        tx = torch.tensor(np.array([np.nan, 1.0], dtype=dtype), requires_grad=True)
        torch.sign(tx).backward(torch.ones(2, dtype=tx.dtype))
        np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]
_KERNEL_ACTS = [("relu", None), ("leaky_relu", 0.01), ("leaky_relu", -1.0), ("tanh", None),
                ("sigmoid", None), ("softplus", 20.0), ("softplus", 1.0),
                ("softplus", float("inf")), ("gelu", None), ("gelu_tanh", None), ("exp", None),
                ("log", None)]


@pytest.mark.skipif(len(_ISAS) < 2, reason="this CPU runs a single instruction set")
@pytest.mark.parametrize(("name", "alpha"), _KERNEL_ACTS, ids=[f"{n}-{a}" for n, a in _KERNEL_ACTS])
def test_activation_kernels_give_the_same_bits_on_every_isa(float_dtype, name, alpha):
    rng = np.random.default_rng(7)
    # the specials at every position of a vector (odd lengths leave a scalar tail), then a
    # spread of ordinary values
    special = np.array(_specials(float_dtype) + [20.0, 21.0, -10.0, 89.0, 710.0],
                       dtype=float_dtype)
    x = np.concatenate([np.roll(np.resize(special, 67), k) for k in range(17)] +
                       [(rng.standard_normal(1001) * 10).astype(float_dtype)])
    scale = rng.standard_normal(x.size).astype(float_dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # 3e38 * 2 is inf, inf * 0 NaN
        dy = rng.permutation(np.resize(special, x.size)) * scale
    saves_y = name in _core.ACTIVATIONS_SAVING_OUTPUT
    results = {}
    for isa in _ISAS:
        _core.set_isa(isa)
        y = _core.activation_forward(name, x, alpha)
        dx = _core.activation_backward(name, dy, None if saves_y else x, y if saves_y else None,
                                       alpha)
        results[isa] = (y, dx)
    first, (y0, dx0) = _ISAS[0], results[_ISAS[0]]
    for isa in _ISAS[1:]:
        y, dx = results[isa]
        # bitwise: NaN payloads and the signs of zeros included
        np.testing.assert_array_equal(y.view(np.uint8), y0.view(np.uint8), f"{name} {isa}/{first}")
        np.testing.assert_array_equal(dx.view(np.uint8), dx0.view(np.uint8),
                                      f"{name}' {isa}/{first}")


@pytest.mark.parametrize(("name", "alpha"), [("leaky_relu", 0.01), ("softplus", 20.0)])
def test_activation_kernel_default_alpha_is_pytorchs(float_dtype, name, alpha):
    # alpha is leaky_relu's slope and softplus's threshold; left out, each takes PyTorch's
    # default, so a direct _core call means what F.leaky_relu(x) / F.softplus(x) mean
    x = np.array([-3.0, -0.5, 0.5, 2.0, 19.5, 20.5, 30.0, np.nan], dtype=float_dtype)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(_core.activation_forward(name, x),
                                  _core.activation_forward(name, x, alpha))
    np.testing.assert_array_equal(_core.activation_backward(name, dy, x=x),
                                  _core.activation_backward(name, dy, x=x, alpha=alpha))
    assert not np.array_equal(_core.activation_forward(name, x),
                              _core.activation_forward(name, x, 1.0), equal_nan=True)
