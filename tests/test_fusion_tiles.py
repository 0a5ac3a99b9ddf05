"""The fused runner's tile paths (run_fused_chain in src/cpp/elementwise.cpp): a member runs once
per tile, over several rows dispatched once (a (1, W) or (B, 1) operand: one row loop per row) or
as one long row when every operand's rows follow each other (scratch, contiguous rows, scalars).
Forward chains over widths that give several rows per tile, one row, or pieces of a row with a
tail that is not a multiple of any vector width, with strided inputs, NaN, +-inf and signed
zeros, replay bitwise equal (NaN: at the same places) to the unfused program, on every ISA the
CPU supports and 1 to 3 threads; their values match NumPy. The clamp formula (written for the
vectoriser) gives the bits of minimum(maximum(a, lo), hi) with NumPy-style NaN propagation on
every combination of special values."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import graddesc as gd


def _program(fn):
    progs = [e.program for e in fn._cache.values() if getattr(e, "program", None) is not None]
    assert len(progs) == 1
    return progs[0]


def _max_nan(a, b):  # the kernel's maximum: a NaN in a wins, then a NaN in b; ties give b
    return np.where(a != a, a, np.where(a > b, a, b))


def _min_nan(a, b):
    return np.where(a != a, a, np.where(a < b, a, b))


def _clamp(a, lo, hi):  # the nested form the kernel's clamp must equal bit for bit
    return _min_nan(_max_nan(a, lo), hi)


# name -> (graddesc chain, NumPy oracle with the same rounding per op); x (B, W), r (B, 1),
# c (1, W), s (B, W) strided
CHAINS = {
    "scale-shift-residual": (lambda x, r, c, s: x * c + r + x,
                             lambda x, r, c, s: x * c + r + x),
    "affine-relu-residual": (lambda x, r, c, s: gd.relu((x - r) * c + 0.5) + s,
                             lambda x, r, c, s: np.where((x - r) * c + x.dtype.type(0.5) <= 0, 0,
                                                         (x - r) * c + x.dtype.type(0.5)) + s),
    "clamp-mix": (lambda x, r, c, s: gd.clamp(x * c, -1.0, 1.0) * 0.25 + gd.maximum(s, r) - c,
                  lambda x, r, c, s: (_clamp(x * c, x.dtype.type(-1), x.dtype.type(1))
                                      * x.dtype.type(0.25) + _max_nan(s, r) - c)),
    "tensor-bounds": (lambda x, r, c, s: gd.clamp(s * 2.0, r, c) - gd.minimum(x, c) / 3.0,
                      lambda x, r, c, s: (_clamp(s * x.dtype.type(2), r, c)
                                          - _min_nan(x, c) / x.dtype.type(3))),
    "long": (lambda x, r, c, s: ((((x + 1.0) * c - r) * 0.5 + s) / (gd.abs(x) + 2.0) - x) * r,
             lambda x, r, c, s: ((((x + x.dtype.type(1)) * c - r) * x.dtype.type(0.5) + s)
                                 / (np.abs(x) + x.dtype.type(2)) - x) * r),
}

# rows per tile: many (3, 17, 255), a few (300), one (1024), pieces with a tail (1500, 2500)
SHAPES = [(37, 3), (64, 17), (16, 255), (9, 300), (4, 1024), (3, 1500), (2, 2500)]


def _inputs(seed, B, W, dtype, special):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, W)).astype(dtype)
    r = rng.standard_normal((B, 1)).astype(dtype)
    c = rng.standard_normal((1, W)).astype(dtype)
    big = rng.standard_normal((B, 2 * W)).astype(dtype)
    if special:
        vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], dtype=dtype)
        for a in (x, big):
            m = rng.random(a.shape) < 0.1
            a[m] = rng.choice(vals, int(m.sum()))
        r[rng.random(r.shape) < 0.2] = np.nan
        c[rng.random(c.shape) < 0.2] = -np.inf
    return x, r, c, big


def _same_bits(got, expect):
    """Equal bit for bit (signed zeros included) where not NaN, NaN at the same places. (A NaN's
    sign and payload are not kept: where two NaNs meet in a commutative op, the compiler's operand
    order decides which one x86 returns, and it may differ between a vector loop and its
    remainder loop, unfused as fused.)"""
    nan = np.isnan(expect)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(np.where(nan, 0, got).view(np.uint8),
                                  np.where(nan, 0, expect).astype(expect.dtype).view(np.uint8))


def _run(name, B, W, dtype, special, seed, monkeypatch):
    f, ref = CHAINS[name]
    x, r, c, big = _inputs(seed, B, W, dtype, special)
    args = (gd.tensor(x), gd.tensor(r), gd.tensor(c), gd.tensor(big)[:, ::2])

    def step(x, r, c, s):
        with gd.no_grad():
            return f(x, r, c, s)

    outs = {}
    for fuse in ("0", "1"):
        monkeypatch.setenv("GRADDESC_FUSE", fuse)
        compiled = gd.compile(step)
        for _ in range(2):
            y = compiled(*args).numpy()
        outs[fuse] = (y, _program(compiled).names())
    monkeypatch.delenv("GRADDESC_FUSE")
    with np.errstate(all="ignore"):
        expect = ref(x, r, c, big[:, ::2]).astype(dtype)
    return outs, expect


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_paths_fused_equal_unfused_and_numpy(name, shape, dtype, monkeypatch):
    B, W = shape
    for special in (False, True):
        seed = zlib.crc32(repr((name, shape, special)).encode()) % 1000
        outs, expect = _run(name, B, W, dtype, special, seed, monkeypatch)
        (yu, nu), (yf, nf) = outs["0"], outs["1"]
        assert nf == ["ew_fused"], nf
        assert "ew_fused" not in nu
        _same_bits(yf, yu)
        _same_bits(yf, expect)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tile_paths_every_isa_and_thread_count(isa, threads, monkeypatch):
    gd.set_num_threads(threads)
    try:
        for name in CHAINS:
            for shape, dtype in (((256, 256), np.float32), ((64, 2500), np.float32),
                                 ((300, 37), np.float64)):
                outs, expect = _run(name, *shape, dtype, True, 7, monkeypatch)
                _same_bits(outs["1"][0], outs["0"][0])
                _same_bits(outs["1"][0], expect)
    finally:
        gd.set_num_threads(1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clamp_equals_nested_maximum_minimum_on_special_values(isa, dtype):
    vals = [np.nan, -np.nan, np.inf, -np.inf, -2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0]
    a, lo, hi = (np.array(v, dtype=dtype) for v in zip(*itertools.product(vals, repeat=3)))
    # a length that leaves a tail after every vector width, and a NaN with a payload
    a = np.concatenate([a, a[:13]])
    lo = np.concatenate([lo, lo[:13]])
    hi = np.concatenate([hi, hi[:13]])
    payload = np.array([0x7FC12345 if dtype == np.float32 else 0x7FF8000000012345],
                       dtype=np.uint32 if dtype == np.float32 else np.uint64).view(dtype)
    a[::17] = payload[0]
    expect = _clamp(a, lo, hi)
    got = gd.clamp(gd.tensor(a), gd.tensor(lo), gd.tensor(hi)).numpy()
    np.testing.assert_array_equal(got.view(np.uint8), expect.view(np.uint8))
    # scalar bounds (the fused chains' common case), row-broadcast and strided operands
    for b0, b1 in ((-1.0, 1.0), (np.nan, 1.0), (-1.0, np.nan), (1.0, -1.0), (-np.inf, np.inf)):
        got = gd.clamp(gd.tensor(a), b0, b1).numpy()
        np.testing.assert_array_equal(
            got.view(np.uint8), _clamp(a, dtype(b0), dtype(b1)).view(np.uint8))
    a2 = np.stack([a, a[::-1]])
    got = gd.clamp(gd.tensor(a2)[:, ::3], gd.tensor(lo[: a2[:, ::3].shape[1]]),
                   gd.tensor(hi[:1])).numpy()
    np.testing.assert_array_equal(
        got.view(np.uint8), _clamp(a2[:, ::3], lo[: a2[:, ::3].shape[1]], hi[:1]).view(np.uint8))
