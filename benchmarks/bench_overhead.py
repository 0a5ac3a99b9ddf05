"""Eager per-op overhead on tiny tensors, where Python bookkeeping dominates the arithmetic.

Workloads (float32, 1 thread): relu on 10 elements with requires_grad (forward + backward);
Linear(10, 10) forward + backward at batch 1. Baselines: NumPy doing the same math by hand
(preallocated, out=) and PyTorch eager when installed.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_overhead.py
"""

from __future__ import annotations

import sys

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json


def main() -> None:
    gd.set_num_threads(1)
    rows, out = [], {}

    # --- relu fwd+bwd on 10 elements ------------------------------------------------------
    x = gd.randn(10, requires_grad=True)
    g = gd.ones(10)

    def gd_relu():
        y = x.relu()
        y.backward(g)

    xn = np.random.default_rng(0).standard_normal(10).astype(np.float32)
    yn, dxn = np.empty(10, np.float32), np.empty(10, np.float32)
    gn, mask = np.ones(10, np.float32), np.empty(10, bool)

    def np_relu():
        np.maximum(xn, 0, out=yn)
        np.greater(xn, 0, out=mask)
        np.multiply(gn, mask, out=dxn)

    # one op each way = forward op + backward op
    t_gd, t_np = median_time(gd_relu), median_time(np_relu)
    out["relu10"] = {"graddesc_us": t_gd * 1e6, "numpy_us": t_np * 1e6}

    # --- Linear(10, 10) fwd+bwd at batch 1 ------------------------------------------------
    lin = gd.nn.Linear(10, 10)
    xi = gd.randn(10)
    gy = gd.ones(10)

    def gd_lin():
        lin.zero_grad()
        lin(xi).backward(gy)

    W = lin.weight.detach().numpy().copy()
    b = lin.bias.detach().numpy().copy()
    xv = xi.numpy().copy()
    y, dW, db = np.empty(10, np.float32), np.empty((10, 10), np.float32), np.empty(10, np.float32)
    gv = np.ones(10, np.float32)

    def np_lin():
        np.dot(W, xv, out=y)
        np.add(y, b, out=y)
        np.multiply.outer(gv, xv, out=dW)
        db[...] = gv

    t_gl, t_nl = median_time(gd_lin), median_time(np_lin)
    out["linear10"] = {"graddesc_us": t_gl * 1e6, "numpy_us": t_nl * 1e6}

    try:
        import torch

        torch.set_num_threads(1)
        tx = torch.randn(10, requires_grad=True)
        tg = torch.ones(10)

        def t_relu():
            tx.relu().backward(tg)

        tl = torch.nn.Linear(10, 10)
        ti = torch.randn(10)

        def t_lin():
            tl.zero_grad()
            tl(ti).backward(tg)

        out["relu10"]["torch_us"] = median_time(t_relu) * 1e6
        out["linear10"]["torch_us"] = median_time(t_lin) * 1e6
    except ImportError:
        pass

    for name, label, nops in (("relu10", "relu(10) fwd+bwd", 2),
                              ("linear10", "Linear(10,10) fwd+bwd", 2)):
        r = out[name]
        rows.append([label, f"{r['graddesc_us']:.2f}", f"{r['graddesc_us'] / nops:.2f}",
                     f"{r['numpy_us']:.2f}", f"{r['torch_us']:.2f}" if "torch_us" in r else "-",
                     f"{r['torch_us'] / r['graddesc_us']:.2f}x" if "torch_us" in r else "-"])
    print_table(["workload", "graddesc us", "us per op", "numpy us", "torch us",
                 "graddesc speedup vs torch"], rows)
    path = save_json("overhead", out)
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
