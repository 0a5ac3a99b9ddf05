"""The sorting and scan kernels (src/cpp/sort.cpp) against NumPy: sort (values and indices, as
gd.sort returns them) against np.sort + np.argsort and np.argsort alone, topk against
np.argpartition, cumsum/cumprod against np.cumsum/np.cumprod, float32, along the last dim and
along dim 0. Same-run medians.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_sort.py [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json
from graddesc import _core


def rows_for(shape: tuple) -> list:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    k = 8
    cases = [
        ("sort dim=-1 (values+indices)", lambda: _core.sort(a, -1),
         lambda: np.argsort(a, axis=-1, kind="stable")),
        ("sort dim=-1 vs np.sort (values only)", lambda: _core.sort(a, -1),
         lambda: np.sort(a, axis=-1)),
        ("sort dim=0", lambda: _core.sort(a, 0), lambda: np.argsort(a, axis=0, kind="stable")),
        (f"topk k={k} dim=-1", lambda: _core.sort(a, -1, True, k),
         lambda: np.argpartition(-a, k, axis=-1)[..., :k]),
        ("cumsum dim=-1", lambda: _core.scan(a, -1, "sum"), lambda: np.cumsum(a, axis=-1)),
        ("cumsum dim=0", lambda: _core.scan(a, 0, "sum"), lambda: np.cumsum(a, axis=0)),
        ("cumprod dim=-1", lambda: _core.scan(a, -1, "prod"), lambda: np.cumprod(a, axis=-1)),
    ]
    rows = []
    for name, kern, ref in cases:
        tk, tn = median_time(kern), median_time(ref)
        rows.append([name, "x".join(map(str, shape)), f"{tk * 1e6:.1f}", f"{tn * 1e6:.1f}",
                     f"{tn / tk:.2f}"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        gd.set_num_threads(args.threads)
    rows = []
    for shape in ((256, 128), (64, 4096), (1, 1 << 20)):
        rows += rows_for(shape)
    headers = ["op", "shape", "graddesc us", "numpy us", "numpy/graddesc"]
    print(f"threads {gd.get_num_threads()}, ISA {_core.isa()}")
    print_table(headers, rows)
    save_json("sort", {"threads": gd.get_num_threads(), "headers": headers, "rows": rows})


if __name__ == "__main__":
    main()
