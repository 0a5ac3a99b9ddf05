"""Tests the packed GEMM (src/cpp/gemm.cpp, src/cpp/gemm/) through `graddesc._core.gemm`.

The shapes are chosen to reach every path of the kernel on every ISA: the K = 1 outer product,
the M = 1 and N = 1 matrix-vector products (dot products or row sweeps, per transpose), the
unpacked path for short M with op(B) = B, dot products of rows for short M with op(B) = B^T,
the packed path (several K blocks, several N blocks, partial micro-tiles at both edges; op(A) =
A read in place; op(A) = A^T and op(B) = B packed on the fly by the first kernel call that reads
them when op(A) is small, by passes ahead when it is large; op(B) = B^T packed by transposes
with partial blocks at the N and K edges), and empty dimensions. Oracles are float64 NumPy
products; the tolerance is the dot-product error bound |fl(a . b) - a . b| <= K eps |a| . |b|,
so it holds for any summation order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from graddesc import _core

TRANS = [(False, False), (True, False), (False, True), (True, True)]
TRANS_IDS = ["nn", "tn", "nt", "tt"]

# (M, N, K)
SHAPES = [
    # odd sizes around the micro-tile (rows 6/14, columns 8..32) and vector widths
    (1, 1, 1),
    (3, 7, 17),
    (7, 17, 3),
    (17, 31, 65),
    (31, 65, 129),
    (65, 129, 31),
    (129, 257, 7),
    (257, 65, 129),
    # short M with op(B) = B^T and K >= 16 M: dot products of rows, nothing packed (tiles of
    # 8 x 3 rows on AVX-512 float, 4 x 2 elsewhere; M <= 48 or 16; K <= 1024 floats on AVX-512):
    # partial tiles in M and N, a masked K tail, K just past the limit (blocked again)
    (7, 5, 150),
    (13, 8, 300),
    (47, 11, 1000),
    (9, 10, 1025),
    # short M (the unpacked path when op(B) = B), just below and above its limit
    (2, 300, 40),
    (12, 33, 64),
    (24, 129, 100),  # limits: 24 rows (AVX2, portable), 3 x MR = 42 (AVX-512)
    (25, 129, 100),
    (42, 129, 100),
    (43, 129, 100),
    (57, 129, 100),
    # tall and skinny in each direction
    (1000, 3, 17),
    (3, 1000, 17),
    (17, 5, 1000),
    (3700, 40, 33),  # taller than one slab of packed rows (3584 on AVX-512, 1536 otherwise)
    # K = 1 (outer products), M = 1 and N = 1 (matrix-vector)
    (65, 129, 1),
    (1, 257, 129),
    (1, 3, 1000),
    (257, 1, 129),
    (1, 1, 300),
    # several K blocks (float: 512 deep, double: 256) and several N blocks (256 KiB of packed B
    # when op(A) is small, 512 KiB when large), split evenly, the last panel partial
    (70, 1000, 1100),
    (30, 70, 700),
    (100, 777, 260),
    # the training-step shapes: packing on the fly with partial panels (N = 60, 600), B^T packed
    # with partial transpose blocks (N = 60, K = 600 = 37 x 16 + 8)
    (64, 60, 600),
    (60, 600, 64),
    # a large op(A) (M x kc values over 512 KiB for float and double): packed by passes ahead
    (700, 90, 600),
    # op(A) = A with rows 4 KiB apart (K = 1024 floats, 512 doubles): packed by transposes
    # (partial blocks at the M edge) rather than read in place
    (45, 70, 1024),
    (45, 70, 512),
]

# Empty products: C is (M, N); K = 0 makes it beta * C.
EMPTY_SHAPES = [(0, 3, 4), (3, 0, 4), (0, 0, 0), (3, 4, 0), (1, 1, 0)]


def _operands(
    rng: np.random.Generator, M: int, N: int, K: int, ta: bool, tb: bool, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return a, b


def _op(m: np.ndarray, trans: bool) -> np.ndarray:
    return (m.T if trans else m).astype(np.float64)


def _reference(
    a: np.ndarray, b: np.ndarray, ta: bool, tb: bool, alpha: float = 1.0, beta: float = 0.0,
    c: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """alpha op(a) op(b) + beta c and its error scale |alpha| |op(a)| |op(b)| + |beta| |c|."""
    A, B = _op(a, ta), _op(b, tb)
    ref = alpha * (A @ B)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0.0 and c is not None:
        ref = ref + beta * c.astype(np.float64)
        scale = scale + abs(beta) * np.abs(c.astype(np.float64))
    return ref, scale


def _assert_close(got: np.ndarray, ref: np.ndarray, scale: np.ndarray, K: int, dtype: type) -> None:
    """|got - ref| <= 2 (K + 4) eps scale, elementwise."""
    got64 = np.asarray(got, dtype=np.float64)
    assert got64.shape == ref.shape
    assert np.all(np.isfinite(got64))
    limit = 2.0 * (K + 4) * np.finfo(dtype).eps * scale + np.finfo(dtype).tiny
    err = np.abs(got64 - ref)
    if err.size:
        i = np.unravel_index(np.argmax(err - limit), err.shape)
        assert np.all(err <= limit), f"error {err[i]:g} > bound {limit[i]:g} at {i}"


# ------------------------------------------------------------------------------- against NumPy


@pytest.mark.parametrize(("ta", "tb"), TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize(("M", "N", "K"), SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_gemm_matches_numpy(isa, float_dtype, rng, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    got = _core.gemm(a, b, trans_a=ta, trans_b=tb)
    assert got.dtype == float_dtype and got.shape == (M, N)
    _assert_close(got, *_reference(a, b, ta, tb), K, float_dtype)


@pytest.mark.parametrize(("ta", "tb"), TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize(
    ("M", "N", "K"),
    [(1, 33, 17), (33, 1, 17), (17, 33, 1), (31, 65, 129), (65, 100, 600), (5, 20, 300)],
    ids=["m1", "n1", "k1", "direct", "packed", "rows"],
)
def test_gemm_alpha_beta(isa, float_dtype, rng, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    for alpha, beta in [(1.0, 1.0), (-0.5, 2.0), (2.5, 0.0), (1.0, -1.0)]:
        c0 = rng.standard_normal((M, N)).astype(float_dtype)
        c = c0.copy()
        got = _core.gemm(a, b, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, out=c)
        assert np.shares_memory(got, c)
        _assert_close(c, *_reference(a, b, ta, tb, alpha, beta, c0), K, float_dtype)


@pytest.mark.parametrize(("ta", "tb"), TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize(
    ("M", "N", "K"),
    [(1, 40, 30), (40, 1, 30), (40, 30, 1), (20, 70, 30), (70, 40, 600), (1, 1, 5),
     (5, 20, 300)],
    ids=["m1", "n1", "k1", "direct", "packed", "dot", "rows"],
)
def test_gemm_beta_zero_never_reads_out(isa, float_dtype, rng, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    c = np.full((M, N), np.nan, dtype=float_dtype)
    _core.gemm(a, b, trans_a=ta, trans_b=tb, alpha=1.5, beta=0.0, out=c)
    _assert_close(c, *_reference(a, b, ta, tb, 1.5), K, float_dtype)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_gemm_alpha_zero_scales_out_only(isa, float_dtype, rng, beta):
    a, b = _operands(rng, 20, 30, 40, False, False, float_dtype)
    c0 = rng.standard_normal((20, 30)).astype(float_dtype)
    c = c0.copy()
    if beta == 0.0:
        c[:] = np.nan  # alpha = 0, beta = 0: C is overwritten with zeros, its NaNs do not survive
    _core.gemm(a, b, alpha=0.0, beta=beta, out=c)
    np.testing.assert_array_equal(c, np.zeros_like(c0) if beta == 0.0 else beta * c0)


@pytest.mark.parametrize(
    ("M", "N", "K"), EMPTY_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in EMPTY_SHAPES]
)
def test_gemm_empty_dimensions(isa, float_dtype, M, N, K):
    a = np.ones((M, K), dtype=float_dtype)
    b = np.ones((K, N), dtype=float_dtype)
    got = _core.gemm(a, b)
    np.testing.assert_array_equal(got, np.zeros((M, N), dtype=float_dtype))
    c = np.full((M, N), 3.0, dtype=float_dtype)
    _core.gemm(a, b, alpha=2.0, beta=0.5, out=c)
    np.testing.assert_array_equal(c, np.full((M, N), 1.5, dtype=float_dtype))


@pytest.mark.parametrize(
    ("M", "N", "K"),
    [(1, 20, 30), (20, 1, 30), (20, 30, 1), (20, 30, 40), (70, 50, 40), (5, 20, 300)],
)
def test_gemm_nan_and_inf_propagate_like_numpy(isa, float_dtype, M, N, K):
    rng = np.random.default_rng(7)
    for ta, tb in TRANS:
        a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
        A = a.T if ta else a  # a view: writes land in a
        A[M // 2, K // 2] = np.nan
        A[M - 1, 0] = np.inf
        got = _core.gemm(a, b, trans_a=ta, trans_b=tb)
        with np.errstate(invalid="ignore"):
            ref = _op(a, ta) @ _op(b, tb)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


def test_gemm_float32_close_to_float64(isa, rng):
    """float32 products are within the K eps32 bound of the float64 ones on the same inputs."""
    for M, N, K in [(64, 300, 1100), (1, 500, 2000), (33, 1, 3000), (256, 256, 784)]:
        a64 = rng.standard_normal((M, K))
        b64 = rng.standard_normal((K, N))
        a32, b32 = a64.astype(np.float32), b64.astype(np.float32)
        g32 = _core.gemm(a32, b32).astype(np.float64)
        g64 = _core.gemm(a32.astype(np.float64), b32.astype(np.float64))
        scale = np.abs(a32.astype(np.float64)) @ np.abs(b32.astype(np.float64))
        assert np.all(np.abs(g32 - g64) <= K * np.finfo(np.float32).eps * scale)


# ------------------------------------------------------------------------------- determinism

# The task's two shapes plus one per special path: the unpacked path split over N, the packed
# path split over N (short M, op(B) = B^T), M = 1 (both kinds), N = 1 and K = 1, and the packed
# path's two ways of packing.
THREAD_SHAPES = [
    (300, 500, 400),
    (1024, 64, 2000),
    (32, 784, 256),
    (40, 500, 700),
    (16, 600, 400),  # dot products of rows on every ISA, split over N
    (1, 3000, 1000),
    (3000, 1, 1000),
    (1100, 1000, 1),
    # packing on the fly (small op(A)) and passes ahead (large op(A)), split over M or over N
    (256, 784, 256),
    (60, 600, 64),
    (300, 120, 200),
    (700, 300, 600),
]


@pytest.mark.parametrize(("ta", "tb"), TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize(
    ("M", "N", "K"), THREAD_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in THREAD_SHAPES]
)
def test_gemm_bitwise_equal_across_threads(
    isa, float_dtype, rng, threads: Callable[[int], None], M, N, K, ta, tb
):
    if not _core.has_openmp:
        pytest.skip("built without OpenMP: one thread only")
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    c0 = rng.standard_normal((M, N)).astype(float_dtype)
    results = []
    for n in (1, 2, 3):
        threads(n)
        c = c0.copy()
        _core.gemm(a, b, trans_a=ta, trans_b=tb, alpha=0.75, beta=-0.5, out=c)
        results.append(c)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    _assert_close(results[0], *_reference(a, b, ta, tb, 0.75, -0.5, c0), K, float_dtype)


def test_gemm_repeated_calls_reuse_buffers_and_agree(isa, rng):
    """Scratch buffers are reused across calls of different shapes without stale data."""
    shapes = [(300, 500, 400), (7, 9, 11), (300, 500, 400), (64, 2000, 900), (7, 9, 11)]
    first: dict[tuple[int, int, int], np.ndarray] = {}
    for M, N, K in shapes:
        r = np.random.default_rng(M * 1_000_003 + N * 1_009 + K)
        a, b = _operands(r, M, N, K, False, True, np.float32)
        got = _core.gemm(a, b, trans_b=True)
        if (M, N, K) in first:
            np.testing.assert_array_equal(got, first[(M, N, K)])
        else:
            first[(M, N, K)] = got
            _assert_close(got, *_reference(a, b, False, True), K, np.float32)


def _at_offset(m: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of m whose data starts `offset` bytes past a 64-byte boundary."""
    buf = np.empty(m.nbytes + 128, dtype=np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start:start + m.nbytes].view(m.dtype).reshape(m.shape)
    out[...] = m
    assert out.ctypes.data % 64 == offset
    return out


@pytest.mark.parametrize(("ta", "tb"), TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize(
    ("M", "N", "K"), [(13, 40, 300), (32, 70, 784), (45, 33, 200)], ids=["rows", "rows2", "packed"]
)
def test_gemm_bits_do_not_depend_on_operand_addresses(isa, float_dtype, rng, M, N, K, ta, tb):
    """The same product of operands placed on and off the 64-byte grid (NumPy aligns to 16 bytes;
    the row-dot path copies a misaligned op(A) onto the grid) gives the same bits."""
    a, b = _operands(rng, M, N, K, ta, tb, float_dtype)
    results = []
    for off_a, off_b in [(0, 0), (16, 0), (0, 48), (32, 16)]:
        got = _core.gemm(_at_offset(a, off_a), _at_offset(b, off_b), trans_a=ta, trans_b=tb)
        results.append(got)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    _assert_close(results[0], *_reference(a, b, ta, tb), K, float_dtype)
