"""Elementwise kernels (graddesc._core.elementwise) against NumPy ufuncs with out= preallocated.

Both sides write into a preallocated output, so the table compares the loops, not allocation.
Cases: contiguous float32 operands of 1e3, 1e5 and 1e6 elements (add, mul, maximum, exp, where,
x ** 2), a row broadcast over a matrix, a transposed operand, and sum_to (a broadcast gradient
reduced to a bias) against np.sum(axis=0, out=). Median seconds per call over repeats.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_elementwise.py
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import median_time, print_table, save_json
from graddesc import _core
from peak import cpu_name

EW = _core.EW_OPS




def cases(rng: np.random.Generator) -> list:
    """(label, graddesc call, NumPy call) with preallocated outputs."""
    out = []
    for n in (1_000, 100_000, 1_000_000):
        a = rng.standard_normal(n).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        c = a > 0
        y1, y2 = np.empty_like(a), np.empty_like(a)
        e = _core.elementwise  # (looked up once: the figure is the kernel's, not getattr's)
        out += [
            (f"add {n}", lambda a=a, b=b, y=y1, e=e: e(EW["add"], a, b, None, y),
             lambda a=a, b=b, y=y2: np.add(a, b, out=y)),
            (f"mul scalar {n}", lambda a=a, y=y1, e=e: e(EW["mul"], a, 0.5, None, y),
             lambda a=a, y=y2: np.multiply(a, np.float32(0.5), out=y)),
            (f"maximum {n}", lambda a=a, b=b, y=y1, e=e: e(EW["maximum"], a, b, None, y),
             lambda a=a, b=b, y=y2: np.maximum(a, b, out=y)),
            (f"x ** 2 {n}", lambda a=a, y=y1, e=e: e(EW["pow"], a, 2.0, None, y),
             lambda a=a, y=y2: np.power(a, np.float32(2), out=y)),
            (f"exp {n}", lambda a=a, y=y1, e=e: e(EW["exp"], a, None, None, y),
             lambda a=a, y=y2: np.exp(a, out=y)),
            (f"where {n}", lambda a=a, b=b, c=c, y=y1, e=e: e(EW["where"], c, a, b, y),
             lambda a=a, b=b, c=c, y=y2: (np.copyto(y, b), np.copyto(y, a, where=c))),
        ]
    M = rng.standard_normal((1000, 1000)).astype(np.float32)
    row = rng.standard_normal(1000).astype(np.float32)
    T = rng.standard_normal((1000, 1000)).astype(np.float32).T
    Y1, Y2 = np.empty_like(M), np.empty_like(M)
    s1, s2 = np.empty(1000, np.float32), np.empty(1000, np.float32)
    e = _core.elementwise
    out += [
        ("matrix + row 1e3x1e3", lambda: e(EW["add"], M, row, None, Y1),
         lambda: np.add(M, row, out=Y2)),
        ("matrix * col 1e3x1e3", lambda: e(EW["mul"], M, row[:, None], None, Y1),
         lambda: np.multiply(M, row[:, None], out=Y2)),
        ("matrix + transposed 1e3x1e3", lambda: e(EW["add"], M, T, None, Y1),
         lambda: np.add(M, T, out=Y2)),
        ("sum_to (1e3,1e3)->(1e3,)", lambda: e(EW["sum_to"], M, (1000,), None, s1),
         lambda: np.sum(M, axis=0, out=s2)),
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        _core.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows, records = [], []
    for label, ours, theirs in cases(rng):
        t_ours, t_np = median_time(ours), median_time(theirs)
        rows.append([label, f"{t_ours * 1e6:.2f}", f"{t_np * 1e6:.2f}", f"{t_np / t_ours:.2f}x"])
        records.append({"case": label, "graddesc_s": t_ours, "numpy_s": t_np})
    print(f"CPU: {cpu_name()}  ISA: {_core.isa()}  threads: {_core.get_num_threads()}  "
          f"NumPy {np.__version__}")
    print_table(["case (float32)", "graddesc us", "numpy us", "speedup"], rows)
    path = save_json("elementwise", {"cpu": cpu_name(), "isa": _core.isa(),
                                     "threads": _core.get_num_threads(), "results": records})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
