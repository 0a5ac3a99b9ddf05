"""Transcendental kernels (src/cpp/vmath.hpp): graddesc against NumPy and PyTorch, one thread.

exp, log (graddesc._core.elementwise with out=), tanh, sigmoid, gelu (the activation kernels,
which allocate their output) on (256, 256) and (4096, 1024) float32 / float64. NumPy writes
into a preallocated out= (sigmoid as exp, add, divide, each with out=; NumPy has no erf, so no
gelu); PyTorch calls torch.<op>(x, out=y) (torch.sigmoid, torch.nn.functional.gelu) with
torch.set_num_threads(1). Median seconds per call, or with --best the fastest of 15 repeats (on a
machine loaded by other jobs the fastest is the stabler figure).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_vmath.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import median_time, print_table, save_json
from bench_elementwise import cpu_name
from graddesc import _core

EW = _core.EW_OPS


def _numpy_sigmoid(x: np.ndarray, y: np.ndarray) -> None:
    np.negative(x, out=y)
    np.exp(y, out=y)
    np.add(y, 1, out=y)
    np.divide(1, y, out=y)


def cases(torch) -> list:
    """(label, graddesc call, NumPy call or None, PyTorch call or None)."""
    rng = np.random.default_rng(0)
    e, act = _core.elementwise, _core.activation_forward
    out = []
    for shape in ((256, 256), (4096, 1024)):
        for dt in (np.float32, np.float64):
            x = (rng.standard_normal(shape) * 3).astype(dt)
            xp = np.abs(x) + dt(0.01)  # log's argument
            y = np.empty_like(x)
            tx = torch.from_numpy(x) if torch else None
            txp = torch.from_numpy(xp) if torch else None
            ty = torch.empty_like(tx) if torch else None
            tag = f"{shape[0]}x{shape[1]} {np.dtype(dt).name}"
            out += [
                (f"exp {tag}", lambda x=x, y=y: e(EW["exp"], x, None, None, y),
                 lambda x=x, y=y: np.exp(x, out=y),
                 torch and (lambda tx=tx, ty=ty: torch.exp(tx, out=ty))),
                (f"log {tag}", lambda x=xp, y=y: e(EW["log"], x, None, None, y),
                 lambda x=xp, y=y: np.log(x, out=y),
                 torch and (lambda tx=txp, ty=ty: torch.log(tx, out=ty))),
                (f"tanh {tag}", lambda x=x: act("tanh", x),
                 lambda x=x, y=y: np.tanh(x, out=y),
                 torch and (lambda tx=tx, ty=ty: torch.tanh(tx, out=ty))),
                (f"sigmoid {tag}", lambda x=x: act("sigmoid", x),
                 lambda x=x, y=y: _numpy_sigmoid(x, y),
                 torch and (lambda tx=tx, ty=ty: torch.sigmoid(tx, out=ty))),
                (f"gelu {tag}", lambda x=x: act("gelu", x), None,
                 torch and (lambda tx=tx: torch.nn.functional.gelu(tx))),
            ]
    return out


def best_time(fn, repeat: int = 15, min_time: float = 0.02) -> float:
    """The fastest of `repeat` timings, each the mean over calls filling min_time seconds."""
    fn()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time:
            break
        n *= 2
    best = t / n
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--best", action="store_true", help="fastest of 15 repeats, not the median")
    args = ap.parse_args()
    timer = best_time if args.best else median_time
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    _core.set_num_threads(1)
    rows, records = [], []
    for label, ours, np_fn, torch_fn in cases(torch):
        t = timer(ours)
        t_np = timer(np_fn) if np_fn else None
        t_torch = timer(torch_fn) if torch_fn else None
        rows.append([label, f"{t * 1e6:.1f}",
                     f"{t_np * 1e6:.1f}" if t_np else "-", f"{t_np / t:.2f}x" if t_np else "-",
                     f"{t_torch * 1e6:.1f}" if t_torch else "-",
                     f"{t_torch / t:.2f}x" if t_torch else "-"])
        records.append({"case": label, "graddesc_s": t, "numpy_s": t_np, "torch_s": t_torch})
    print(f"CPU: {cpu_name()}  ISA: {_core.isa()}  threads: 1  NumPy {np.__version__}"
          + (f"  PyTorch {torch.__version__}" if torch else ""))
    print_table(["case", "graddesc us", "numpy us", "numpy/graddesc", "torch us",
                 "torch/graddesc"], rows)
    path = save_json("vmath", {"cpu": cpu_name(), "isa": _core.isa(), "threads": 1,
                               "results": records})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
