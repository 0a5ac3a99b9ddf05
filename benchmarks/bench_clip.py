"""clip_grad_norm_'s norm kernel and Adam's update kernel on the lecture net's parameters
(784-256-128-10: 235,146 float32 values, 0.94 MB per array), under each ISA the CPU supports, on
one thread: the best of many calls (on a shared machine other jobs only ever make a call slower)
and the bytes each call must move divided by that time, to set against benchmarks/bandwidth.py.

    python benchmarks/bench_clip.py [--calls 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from graddesc import _core

SHAPES = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]


def best_of(f, calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    _core.set_num_threads(1)
    rng = np.random.default_rng(0)

    def arrays() -> list:
        return [(rng.standard_normal(s) * 0.01).astype(np.float32) for s in SHAPES]

    g, p, m = arrays(), arrays(), arrays()
    v = [np.abs(a) for a in arrays()]
    n = sum(a.size for a in g)
    steps = [np.float32(5.0)] * len(SHAPES)
    isa = _core.isa()
    print(f"{n} float32 values; best of {args.calls} calls, one thread")
    print("ISA      | kernel           | us     | GB/s")
    try:
        for name in [i for i in _core.ISAS if _core.cpu_supports(i)]:
            _core.set_isa(name)
            for label, norm_type in (("norm p=2", 2.0), ("norm p=1", 1.0),
                                     ("norm p=inf", float("inf"))):
                # max_norm so large that nothing is scaled: the norm alone (reads 4 B/value)
                t = best_of(lambda nt=norm_type: _core.clip_norm(g, nt, 1e30), args.calls)
                print(f"{name:8s} | {label:16s} | {t * 1e6:6.1f} | {4 * n / t / 1e9:5.1f}")
            # Adam reads p, g, m, v and writes p, m, v: 28 B/value
            t = best_of(lambda: _core.adam_step(p, g, m, v, None, steps, 1e-3, 0.9, 0.999,
                                                1e-8, 0.0), args.calls)
            print(f"{name:8s} | {'adam':16s} | {t * 1e6:6.1f} | {28 * n / t / 1e9:5.1f}")
    finally:
        _core.set_isa(isa)


if __name__ == "__main__":
    main()
