"""Fused elementwise chains in gd.compile against their memory floor and against the same program
recorded unfused (GRADDESC_FUSE=0).

Each case is a compiled forward step (no gradient) whose body is one elementwise chain over a
(batch, width) float32 array; its program (only the chain's instructions) is timed by
Program.run in thread CPU time, the best of many ~2 ms batches of replays (as bandwidth.py
measures the floor), minus the cost of running an empty program. The floor is the compulsory
traffic of the fused instruction (every input read once, every output written once;
intermediates that live in a scratch block do not count) at the single-core bandwidth
benchmarks/bandwidth.py measures for that footprint.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 taskset -c 0 \\
        python benchmarks/bench_fusion.py [--batch 256] [--widths 256,4096]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import bandwidth
import graddesc as gd
from _common import print_table, save_json
from bench_elementwise import cpu_name
from graddesc import _core

_EW = ("ew", "act_fwd", "act_bwd", "ew_fused")


def chains() -> dict:
    """name -> (f(x, r, c) under no_grad, description); x (B, W), r (B, 1), c (1, W)."""
    return {
        "scale-shift-residual": (lambda x, r, c: x * c + r + x, "x * c + r + x  (3 ops)"),
        "affine-relu-residual": (lambda x, r, c: gd.relu((x - r) * c + 0.5) + x,
                                 "relu((x - r) * c + 0.5) + x  (5 ops)"),
        "clamp-mix": (lambda x, r, c: gd.clamp(x * c, -1.0, 1.0) * 0.25 + gd.maximum(x, r) - c,
                      "clamp(x * c, -1, 1) / 4 + maximum(x, r) - c  (6 ops)"),
        "residual tanh": (lambda x, r, c: x + gd.tanh(x * c),
                          "x + tanh(x * c)  (3 ops; the tanh is compute-bound)"),
    }


def best_seconds(run, target: float = 0.002, reps: int = 40) -> float:
    """Best per-call thread CPU time of `run` over `reps` batches of ~target seconds each (as
    bandwidth.py measures the floor: a shared machine's noise only ever makes a batch slower)."""
    n, t = 1, 0.0
    while t < target:  # calls per batch
        t0 = time.thread_time()
        for _ in range(n):
            run()
        t = time.thread_time() - t0
        n *= 2
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        for _ in range(n):
            run()
        best = min(best, (time.thread_time() - t0) / n)
    return best


def timed(fn, args, fuse: bool, overhead: float) -> tuple:
    """(seconds of one replay of the compiled chain, instruction count, the program)."""
    os.environ["GRADDESC_FUSE"] = "1" if fuse else "0"
    step = gd.compile(fn)
    for _ in range(3):
        step(*args)
    prog = [e.program for e in step._cache.values() if getattr(e, "program", None)][0]
    assert all(n in _EW for n in prog.names()), prog.names()
    return best_seconds(prog.run) - overhead, len(prog.names()), prog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--widths", default="256,4096")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    gd.set_num_threads(args.threads)
    table = bandwidth.table()
    overhead = best_seconds(_core.Program().run)  # the call of an empty program
    rng = np.random.default_rng(0)
    rows, records = [], []
    for width in [int(w) for w in args.widths.split(",")]:
        B = args.batch
        x = gd.tensor(rng.standard_normal((B, width)).astype(np.float32))
        r = gd.tensor(rng.standard_normal((B, 1)).astype(np.float32))
        c = gd.tensor(rng.standard_normal((1, width)).astype(np.float32))
        for name, (f, desc) in chains().items():
            def fn(x, r, c, f=f):
                with gd.no_grad():
                    return f(x, r, c)

            t_u, n_u, _ = timed(fn, (x, r, c), False, overhead)
            t_f, n_f, prog = timed(fn, (x, r, c), True, overhead)
            names = prog.names()
            traffic = [t for t, n in zip(prog.traffic(), names) if n in _EW]
            rd, wr = sum(t[0] for t in traffic), sum(t[1] for t in traffic)
            floor = bandwidth.floor_seconds(rd, wr, rd + wr, table)
            rows.append([f"{name} ({B}, {width})", f"{n_u} -> {n_f}", f"{t_u * 1e6:.1f}",
                         f"{t_f * 1e6:.1f}", f"{t_u / t_f:.2f}x", f"{floor * 1e6:.1f}",
                         f"{t_f / floor:.2f}x"])
            records.append({"case": name, "desc": desc, "batch": B, "width": width,
                            "unfused_s": t_u, "fused_s": t_f, "floor_s": floor,
                            "bytes": rd + wr, "instructions": [n_u, n_f]})
    os.environ.pop("GRADDESC_FUSE", None)
    print(f"CPU: {cpu_name()}  ISA: {_core.isa()}  threads: {_core.get_num_threads()}")
    print_table(["chain (float32)", "instrs", "unfused us", "fused us", "speedup", "floor us",
                 "fused / floor"], rows)
    path = save_json("fusion", {"cpu": cpu_name(), "isa": _core.isa(),
                                "threads": _core.get_num_threads(), "results": records})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
