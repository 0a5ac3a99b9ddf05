"""BatchNorm1d, LayerNorm, Embedding: forward + backward against PyTorch eager.

Each case builds the layer in both libraries with the same weights, then times one
forward + backward (y = layer(x); y.backward(dy)) at batch 32 and 256, float32, eager mode (the
Python tape on both sides). Each library is timed in --rounds alternating rounds (the machine's
load changes between them) and the median round is reported, in microseconds; ratio = torch /
graddesc (> 1: graddesc is faster). Thread counts are set equal in both libraries.

    python benchmarks/bench_layers.py [--threads N] [--rounds R]

Prints a table with the CPU name and saves benchmarks/results/bench_layers.json.
"""

from __future__ import annotations

import argparse

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json
from graddesc import _core
from peak import cpu_name


def cases(batch: int) -> list:
    """(label, graddesc module, torch module factory, input array, output grad shape)"""
    rng = np.random.default_rng(0)
    out = []
    x = rng.normal(size=(batch, 512)).astype(np.float32)
    out.append(("BatchNorm1d(512) (B,512)", lambda m: m.BatchNorm1d(512), x, False))
    x3 = rng.normal(size=(batch, 64, 32)).astype(np.float32)
    out.append(("BatchNorm1d(64) (B,64,32)", lambda m: m.BatchNorm1d(64), x3, False))
    out.append(("LayerNorm(512) (B,512)", lambda m: m.LayerNorm(512), x, False))
    idx = rng.integers(0, 10000, size=(batch, 16)).astype(np.int64)
    out.append(("Embedding(10000,128) (B,16)", lambda m: m.Embedding(10000, 128), idx, True))
    return out


def step_fn(lib, make, x, is_index):
    """One forward + backward of the layer made with lib (graddesc or torch)."""
    layer = make(lib.nn)
    xt = lib.tensor(x, requires_grad=not is_index)
    dy = lib.ones(tuple(layer(xt).shape))

    def step():
        y = layer(xt)
        y.backward(dy)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    gd.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows, results = [], []
    for batch in (32, 256):
        for label, make, x, is_index in cases(batch):
            gs, ts = step_fn(gd, make, x, is_index), step_fn(torch, make, x, is_index)
            g_times, t_times = [], []
            for _ in range(args.rounds):
                g_times.append(median_time(gs))
                t_times.append(median_time(ts))
            g, t = float(np.median(g_times)), float(np.median(t_times))
            rows.append([label.replace("(B", f"({batch}"), f"{g * 1e6:.1f}", f"{t * 1e6:.1f}",
                         f"{t / g:.2f}"])
            results.append({"case": rows[-1][0], "batch": batch, "graddesc_us": g * 1e6,
                            "torch_us": t * 1e6, "ratio": t / g})
    print(f"CPU: {cpu_name()}, threads: {args.threads}, graddesc ISA: {_core.isa()}")
    print_table(["layer fwd+bwd (float32)", "graddesc us", "torch us", "torch/graddesc"], rows)
    path = save_json("bench_layers", {"threads": args.threads, "cpu": cpu_name(),
                                      "results": results})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
