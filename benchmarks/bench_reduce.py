"""Reductions: graddesc's kernel (_core.reduce) against NumPy (with out= where it has it).

sum / mean / amax over the last axis and over the first axis of (256, 784) and (4096, 1024)
float32, and a full sum of 1e6 float32 elements; medians of repeated timings, in microseconds.
Run it with the OpenBLAS variables unset (they force a slower NumPy kernel on this machine):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_reduce.py [--threads N]

Prints a table with the CPU name and saves benchmarks/results/bench_reduce.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import median_time, print_table, save_json
from graddesc import _core
from peak import cpu_name

NUMPY = {"sum": np.sum, "mean": np.mean, "amax": np.max}




def cases() -> list:
    """(label, array, axis or None)"""
    rng = np.random.default_rng(0)
    out = []
    for shape in [(256, 784), (4096, 1024)]:
        x = rng.standard_normal(shape).astype(np.float32)
        out.append((f"{shape} last axis", x, 1))
        out.append((f"{shape} first axis", x, 0))
    out.append(("(1000000,) all", rng.standard_normal(1_000_000).astype(np.float32), None))
    return out


def time_case(name: str, x: np.ndarray, axis: int | None, min_time: float) -> tuple:
    """(graddesc seconds, NumPy seconds) of reduction `name` over axis (None: all)."""
    op = _core.REDUCE_OPS[name]
    axes = None if axis is None else (axis,)
    ours = median_time(lambda: _core.reduce(op, x, axes), min_time=min_time)
    fn = NUMPY[name]
    ref = fn(x, axis=axis)
    if np.ndim(ref):
        out = np.empty_like(ref)
        theirs = median_time(lambda: fn(x, axis=axis, out=out), min_time=min_time)
    else:
        theirs = median_time(lambda: fn(x, axis=axis), min_time=min_time)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: all)")
    parser.add_argument("--min-time", type=float, default=0.1)
    args = parser.parse_args()
    if args.threads:
        _core.set_num_threads(args.threads)
    rows, records = [], []
    for label, x, axis in cases():
        for name in ("sum", "mean", "amax"):
            if axis is None and name != "sum":
                continue
            ours, theirs = time_case(name, x, axis, args.min_time)
            gbs = x.nbytes / ours / 1e9
            rows.append([label, name, f"{ours * 1e6:.1f}", f"{theirs * 1e6:.1f}",
                         f"{theirs / ours:.2f}x", f"{gbs:.1f}"])
            records.append({"case": label, "op": name, "graddesc_s": ours, "numpy_s": theirs})
    print(f"CPU: {cpu_name()}; ISA {_core.isa()}; {_core.get_num_threads()} thread(s); "
          f"numpy {np.__version__}")
    print_table(["input (float32)", "op", "graddesc us", "numpy us", "speed-up", "GB/s"], rows)
    path = save_json("bench_reduce", {"cpu": cpu_name(), "isa": _core.isa(),
                                      "threads": _core.get_num_threads(), "results": records})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
