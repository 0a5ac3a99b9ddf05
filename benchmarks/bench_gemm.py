"""GEMM throughput: graddesc's packed GEMM against NumPy's BLAS (OpenBLAS sgemm/dgemm).

Each row is C (M, N) = op(A) op(B) with op = transpose where the row says t ("nt" = A as is,
B transposed: the Linear forward x @ W.T). Both libraries write into a preallocated output
(`out=`), inputs are C-contiguous, and the transposed operands are views for NumPy and flags for
graddesc, so neither copies. Samples of the two libraries are interleaved in the same process
(noise from other work on the machine hits both alike; with several threads in blocks, see
_interleaved_medians); the table shows medians after a warm-up.
% of peak is against benchmarks/peak.py's FMA-throughput probe for the ISA graddesc runs (times
the thread count), loaded into this process and timed in turns with the two libraries (the same
wall clock, the same medians): this machine's clock follows its load, so a peak taken in another
spell (or as a best-of) would compare different clock rates. The best-of peak that peak.py
prints on its own is shown above the table.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gemm.py
     [--threads 1 2] [--dtype float32] [--quick] [--shapes 256x256x784:nt ...] [--avx2-proxy]

--avx2-proxy stands in for an AVX2-only CPU on an AVX-512 one: graddesc's AVX2 kernels
(GRADDESC_ISA=avx2) against OpenBLAS's AVX2 kernels (OPENBLAS_CORETYPE=Haswell), the probe
built for AVX2 (peak.avx2_proxy; the header line says which ISA and core each column used).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

import graddesc as gd
from _common import print_table, save_json
from graddesc import _bench, _core
from peak import Probe, avx2_proxy, describe, measure_peak

# (M, N, K, trans) with trans = op(A) op(B) flags; what each shape is in an MLP 784-256-...
SHAPES: list[tuple[int, int, int, str, str]] = [
    (1024, 1024, 1024, "nn", "square"),
    (256, 784, 256, "nn", "dx of Linear(784, 256), batch 256"),
    (256, 256, 784, "nt", "forward of Linear(784, 256), batch 256"),
    (256, 784, 256, "tn", "dW of Linear(784, 256), batch 256"),
    (256, 256, 784, "tt", "both transposed"),
    (32, 784, 256, "nn", "dx of Linear(784, 256), batch 32"),
    (32, 256, 784, "nt", "forward of Linear(784, 256), batch 32"),
    # the other GEMMs of a training step of the MLP 784-256-128-10 at batch 256
    (256, 128, 256, "nt", "forward of Linear(256, 128), batch 256"),
    (256, 256, 128, "nn", "dx of Linear(256, 128), batch 256"),
    (128, 256, 256, "tn", "dW of Linear(256, 128), batch 256"),
    # the lecture's net 600-60-40-10 at batch 64
    (64, 60, 600, "nt", "forward of Linear(600, 60), batch 64"),
    (60, 600, 64, "tn", "dW of Linear(600, 60), batch 64"),
    (1, 784, 256, "nn", "dx, batch 1 (vector-matrix)"),
    (1, 256, 784, "nt", "forward, batch 1 (matrix-vector)"),
]


def _interleaved_medians(fns: list[Callable[[], object]], repeat: int, min_time: float,
                         threads: int) -> list[float]:
    """Median seconds per call of each fn, after a warm-up; the fns take turns.

    With one thread the turns are single samples. With several, each turn is a block of samples
    after a pause: OpenBLAS's idle workers keep spinning for a while after a call and would take
    the cores the other library's threads need (on a 2-core machine that costs a scheduler time
    slice per call), so each library gets the machine to itself for its block.
    """
    numbers = []
    for fn in fns:
        fn()
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if time.perf_counter() - t0 >= min_time:
                break
            number *= 2
        numbers.append(number)
    per_turn = 1 if threads == 1 else max(1, repeat // 3)
    samples: list[list[float]] = [[] for _ in fns]
    while len(samples[-1]) < repeat:
        for fn, number, out in zip(fns, numbers, samples):
            if threads > 1:
                time.sleep(0.3)
                fn()
            for _ in range(min(per_turn, repeat - len(out))):
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                out.append((time.perf_counter() - t0) / number)
    return [statistics.median(s) for s in samples]


def bench_shape(M: int, N: int, K: int, trans: str, dtype: type, repeat: int,
                min_time: float, threads: int, probe: Probe) -> tuple[float, float, float]:
    """Returns (graddesc, NumPy, FMA probe) seconds per call, medians of interleaved samples."""
    rng = np.random.default_rng(0)
    ta, tb = trans[0] == "t", trans[1] == "t"
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    c_gd = np.empty((M, N), dtype)
    c_np = np.empty((M, N), dtype)
    a_op, b_op = (a.T if ta else a), (b.T if tb else b)
    if M == 1 and not ta:
        # NumPy written well: a vector-matrix product is a 1-d matmul (gemv), not a 1-row gemm
        a_vec, c_vec = a_op[0], c_np[0]

        def run_np() -> object:
            return np.matmul(a_vec, b_op, out=c_vec)
    else:

        def run_np() -> object:
            return np.matmul(a_op, b_op, out=c_np)

    def run_gd() -> object:
        return _core.gemm(a, b, trans_a=ta, trans_b=tb, out=c_gd)

    t_gd, t_np, t_probe = _interleaved_medians([run_gd, run_np, probe], repeat, min_time, threads)
    run_gd()
    run_np()
    tol = 1e-4 * K if dtype == np.float32 else 1e-10 * K
    err = np.max(np.abs(c_gd - c_np)) / max(1.0, float(np.max(np.abs(c_np))))
    if not err <= tol:
        raise AssertionError(f"gemm {M}x{N}x{K} {trans}: graddesc differs from NumPy by {err}")
    return t_gd, t_np, t_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeat", type=int, default=15, help="timed samples per library")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    parser.add_argument("--shapes", nargs="+", metavar="MxNxK:op",
                        help="only these rows of the table, e.g. 256x256x784:nt")
    parser.add_argument("--avx2-proxy", action="store_true",
                        help="graddesc's AVX2 kernels against OpenBLAS's Haswell kernels")
    args = parser.parse_args()
    avx2_proxy(args.avx2_proxy)
    dtype = np.dtype(args.dtype).type
    repeat = 5 if args.quick else args.repeat
    min_time = 0.02 if args.quick else 0.1

    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        print("note: threadpoolctl not installed; set OPENBLAS_NUM_THREADS to pin NumPy's "
              "thread count", file=sys.stderr)
    isa = _core.isa()
    peak = measure_peak([isa])[isa][args.dtype]
    probe = Probe(isa, args.dtype)
    print(describe())
    print(f"graddesc isa={isa} dtype={args.dtype}; 1-core {args.dtype} peak, best of peak.py's "
          f"runs: {peak:.1f} GF/s; '% peak' is against the probe timed in turns with each row "
          "(its median GF/s in 'peak')")
    shapes = SHAPES
    if args.shapes:
        shapes = [s for s in SHAPES if f"{s[0]}x{s[1]}x{s[2]}:{s[3]}" in args.shapes]
        missing = set(args.shapes) - {f"{s[0]}x{s[1]}x{s[2]}:{s[3]}" for s in shapes}
        if missing:
            parser.error(f"--shapes: not in the table: {sorted(missing)}")
    rows, records = [], []
    for n in args.threads:
        gd.set_num_threads(n)
        with _bench.blas_threads(n):
            for M, N, K, trans, what in shapes:
                t_gd, t_np, t_probe = bench_shape(M, N, K, trans, dtype, repeat, min_time, n,
                                                  probe)
                flops = 2.0 * M * N * K
                gf_gd, gf_np = flops / t_gd * 1e-9, flops / t_np * 1e-9
                gf_peak = probe.flops() / t_probe * 1e-9
                pct = 100.0 * gf_gd / (gf_peak * n)
                pct_best = 100.0 * gf_gd / (peak * n)
                rows.append([f"{M}x{N}x{K}", trans, n, f"{gf_gd:.1f}", f"{gf_np:.1f}",
                             f"{t_np / t_gd:.2f}x", f"{gf_peak:.1f}", f"{pct:.0f}%",
                             f"{pct_best:.0f}%", f"{t_gd * 1e6:.1f}", what])
                records.append({"M": M, "N": N, "K": K, "trans": trans, "threads": n,
                                "what": what, "graddesc_s": t_gd, "numpy_s": t_np,
                                "graddesc_gflops": gf_gd, "numpy_gflops": gf_np,
                                "ratio": t_np / t_gd, "peak_gflops_same_run": gf_peak,
                                "pct_of_peak": pct, "pct_of_best_peak": pct_best})
    print_table(["MxNxK", "op", "thr", "graddesc GF/s", "numpy GF/s", "ratio", "peak",
                 "% peak", "% best peak", "gd us", "what"], rows)
    path = save_json("gemm" + ("_avx2proxy" if args.avx2_proxy else ""),
                     {"isa": isa, "dtype": args.dtype, "peak_gflops_1core": peak,
                      "numpy": np.__version__, "setup": describe(), "results": records})
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
