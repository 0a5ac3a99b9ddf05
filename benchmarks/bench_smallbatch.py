"""Small-batch sweep of the compiled MLP 784-256-128-10 training step (issue 22, item 3).

For batch 1, 2, 4, 8, 16, 32 (float32, and float64 with --f64): the compiled step's median time,
the kernels' own time (Program.profile), the hand-tuned NumPy step, the step's physical floor
(max of compulsory bytes / single-core bandwidth at its footprint and flops / FMA peak, as
bench_step.py computes it) and the ratios. With --threads 2 the compiled step also runs on 2
threads, interleaved against 1-thread runs of the same step object (medians of n-step runs).

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
         python benchmarks/bench_smallbatch.py [--f64] [--threads 2] [--batches 1,2,4]
         [--avx2-proxy]

--avx2-proxy: graddesc's AVX2 kernels against OpenBLAS's AVX2 (Haswell) kernels, the floor's
FMA peak measured for AVX2 (peak.avx2_proxy), as a stand-in for an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import bandwidth
import graddesc as gd
import peak
from _common import print_table, save_json
from graddesc import _bench

SIZES = [784, 256, 128, 10]


def compiled_step(batch: int, dtype: Any, seed: int = 0) -> Callable[[], Any]:
    """The CE step of _bench.graddesc_step, compiled, in `dtype`."""
    gd.manual_seed(seed)
    layers: list = []
    for i, (a, c) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(gd.nn.Linear(a, c))
        if i < len(SIZES) - 2:
            layers.append(gd.nn.ReLU())
    model = gd.nn.Sequential(*layers).to(dtype)
    opt = gd.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    npdt = np.float64 if dtype == gd.float64 else np.float32
    x = gd.tensor(rng.standard_normal((batch, SIZES[0])).astype(npdt))
    y = gd.tensor(rng.integers(0, SIZES[-1], batch))
    loss_fn = gd.nn.CrossEntropyLoss()

    step = _bench.training_step(model, opt, loss_fn, x, y, compiled=True)
    return step


def numpy_step(batch: int, dtype: Any) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    net = _bench.NumpyMLP(SIZES, batch, "ce", rng)
    npdt = np.float64 if dtype == gd.float64 else np.float32
    if npdt is np.float64:
        net.W = [w.astype(np.float64) for w in net.W]
        net.b = [b.astype(np.float64) for b in net.b]
        net.dW = [np.empty_like(w) for w in net.W]
        net.db = [np.empty_like(b) for b in net.b]
        net.h = [h.astype(np.float64) for h in net.h]
        net.dh = [h.astype(np.float64) for h in net.dh]
        net.tmp = net.tmp.astype(np.float64)
        net.lr = np.float64(0.01)
    x = rng.standard_normal((batch, SIZES[0])).astype(npdt)
    y = rng.integers(0, SIZES[-1], batch)
    return lambda: net.step(x, y)


def timing(fn: Callable[[], Any], min_time: float = 1.0, max_calls: int = 20000) -> tuple:
    """(median, 10th percentile) us of single calls, timed one by one for about min_time seconds.
    On a machine loaded by other processes most calls of a step this short still run without
    being preempted: the low percentile estimates what the step costs with the core to itself,
    and treats graddesc and NumPy alike."""
    for _ in range(5):
        fn()
    t: list = []
    clock = time.perf_counter
    end = clock() + min_time
    while len(t) < max_calls and (len(t) < 50 or clock() < end):
        t0 = clock()
        fn()
        t.append((clock() - t0) * 1e6)
    t.sort()
    return statistics.median(t), t[len(t) // 10]


def floor_us(step: Callable[[], Any], f64: bool, bw: dict, gflops: dict) -> tuple:
    prog = _bench.recorded_program(step)
    traffic = prog.traffic()
    rd = sum(r for r, _ in traffic)
    wr = sum(w for _, w in traffic)
    mem = bandwidth.floor_seconds(rd, wr, prog.footprint(), bw) * 1e6
    comp = sum(prog.flops()) / (gflops["float64" if f64 else "float32"] * 1e9) * 1e6
    kernels = sum(prog.profile(300, True)) * 1e6
    return max(mem, comp), mem, comp, kernels


def interleaved(step: Callable[[], Any], set_threads: Callable[[int], Any], threads: int,
                pairs: int = 7, n: int = 200) -> tuple:
    """Median us on 1 and on `threads` threads from interleaved runs of n steps."""
    t: dict = {1: [], threads: []}
    for _ in range(pairs):
        for nt in (1, threads):
            set_threads(nt)
            for _ in range(5):
                step()
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            t[nt].append((time.perf_counter() - t0) / n * 1e6)
    set_threads(1)
    return statistics.median(t[1]), statistics.median(t[threads])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--f64", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--avx2-proxy", action="store_true",
                    help="graddesc's AVX2 kernels against OpenBLAS's Haswell kernels")
    args = ap.parse_args()
    peak.avx2_proxy(args.avx2_proxy)
    dtype = gd.float64 if args.f64 else gd.float32
    batches = [int(b) for b in args.batches.split(",")]
    gd.set_num_threads(1)
    bw = None if args.no_floor else bandwidth.table()
    isa = gd.config()["isa"]
    gfl = None if args.no_floor else peak.measure_peak([isa])[isa]
    rows, out = [], []
    for b in batches:
        step = compiled_step(b, dtype)
        c, cmin = timing(step)
        with _bench.blas_threads(1):
            npy = numpy_step(b, dtype)
            n, nmin = timing(npy)
        fl = floor_us(step, args.f64, bw, gfl) if bw is not None else (float("nan"),) * 3 + (
            sum(_bench.recorded_program(step).profile(300, True)) * 1e6,)
        rec = {"batch": b, "compiled_us": c, "numpy_us": n, "compiled_p10_us": cmin,
               "numpy_p10_us": nmin, "floor_us": fl[0],
               "memory_floor_us": fl[1], "compute_floor_us": fl[2], "kernels_us": fl[3]}
        row = [b, f"{c:.1f}", f"{cmin:.1f}", f"{fl[3]:.1f}", f"{n:.1f}", f"{nmin:.1f}",
               f"{n / c:.2f}x", f"{nmin / cmin:.2f}x", f"{fl[1]:.1f}", f"{fl[2]:.1f}",
               f"{cmin / fl[0]:.2f}x", f"{fl[3] / fl[0]:.2f}x"]
        if args.threads > 1:
            c1, c2 = interleaved(step, gd.set_num_threads, args.threads)
            rec.update({"compiled_1t_us": c1, "compiled_2t_us": c2})
            row += [f"{c1:.1f}", f"{c2:.1f}", f"{c1 / c2:.2f}x"]
        out.append(rec)
        rows.append(row)
    print(peak.describe())
    print(f"compiled MLP 784-256-128-10 CE step, {'float64' if args.f64 else 'float32'}, "
          f"ISA {isa}, median (and 10th percentile) us of single calls (1 thread unless "
          "stated); kernels = Program.profile, the sum of the instructions' medians")
    head = ["batch", "compiled", "compiled p10", "kernels", "numpy", "numpy p10", "numpy/compiled",
            "(p10)", "mem floor", "flop floor", "compiled p10/floor", "kernels/floor"]
    if args.threads > 1:
        head += ["compiled 1t", f"compiled {args.threads}t", "speedup"]
    print_table(head, rows)
    path = save_json("smallbatch" + ("_f64" if args.f64 else "") +
                     (f"_t{args.threads}" if args.threads > 1 else "") +
                     ("_avx2proxy" if args.avx2_proxy else ""),
                     {"setup": peak.describe(), "rows": out})
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
