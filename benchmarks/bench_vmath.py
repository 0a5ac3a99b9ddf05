"""Transcendental kernels (src/cpp/vmath.hpp): graddesc against NumPy and PyTorch, one thread.

exp, log (graddesc._core.elementwise with out=), tanh, sigmoid, gelu (the activation kernels,
which allocate their output) on (256, 256) and (4096, 1024) float32 / float64. NumPy writes
into a preallocated out= (sigmoid as exp, add, divide, each with out=; NumPy has no erf, so no
gelu); PyTorch calls torch.<op>(x, out=y) (torch.sigmoid, torch.nn.functional.gelu) with
torch.set_num_threads(1). Median seconds per call.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_vmath.py
"""

from __future__ import annotations

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


def main() -> None:
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    _core.set_num_threads(1)
    rows, records = [], []
    for label, ours, np_fn, torch_fn in cases(torch):
        t = median_time(ours)
        t_np = median_time(np_fn) if np_fn else None
        t_torch = median_time(torch_fn) if torch_fn else None
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
