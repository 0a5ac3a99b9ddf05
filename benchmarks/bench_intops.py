"""The bool/integer kernels (src/cpp/bind_intops.cpp) against NumPy, and what capturing them
buys a training step that reports its accuracy: an MLP step (Linear-ReLU-Linear, cross-entropy,
SGD) returning (loss, (logits.argmax(1) == y).float().mean()), eager and compiled, next to the
compiled step returning the loss alone. Same-run medians.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_intops.py [--threads 1]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json
from graddesc import _core
from graddesc.nn import functional as F


def kernels(n: int) -> list:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 10, n)
    b = rng.integers(0, 10, n)
    m = a == b
    f = rng.standard_normal(n).astype(np.float32)
    cases = [
        ("int64 == int64", lambda: _core.int_binary("eq", a, b), lambda: np.equal(a, b)),
        ("int64 < float32", lambda: _core.int_binary("lt", a, f),
         lambda: np.less(a.astype(np.float32), f)),
        ("int64 + int64", lambda: _core.int_binary("add", a, b), lambda: np.add(a, b)),
        ("bool & bool", lambda: _core.int_binary("and", m, m[::-1]),
         lambda: np.bitwise_and(m, m[::-1])),
        ("bool -> float32", lambda: _core.int_unary("cast", m, np.float32),
         lambda: m.astype(np.float32)),
        ("float32 -> int64", lambda: _core.int_unary("cast", f, np.int64),
         lambda: f.astype(np.int64)),
        ("sum(bool)", lambda: _core.int_sum(m), lambda: np.sum(m, dtype=np.int64)),
    ]
    rows = []
    for name, k, ref in cases:
        np.testing.assert_array_equal(k(), ref())
        tk, tn = median_time(k), median_time(ref)
        rows.append([name, n, f"{tk * 1e6:.1f}", f"{tn * 1e6:.1f}", f"{tn / tk:.2f}"])
    return rows


def step_rows(batch: int) -> list:
    def make(with_acc: bool):
        gd.manual_seed(0)
        model = gd.nn.Sequential(gd.nn.Linear(784, 128), gd.nn.ReLU(), gd.nn.Linear(128, 10))
        opt = gd.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            if with_acc:
                return loss, (logits.argmax(1) == y).float().mean()
            return loss

        return step

    rng = np.random.default_rng(1)
    x = gd.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = gd.tensor(rng.integers(0, 10, batch))
    eager = make(True)
    loss_only = gd.compile(make(False))
    with_acc = gd.compile(make(True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager would fail the benchmark
        for f in (loss_only, with_acc):
            for _ in range(3):
                f(x, y)
        te = median_time(lambda: eager(x, y))
        tl = median_time(lambda: loss_only(x, y))
        ta = median_time(lambda: with_acc(x, y))
    assert with_acc.stats["eager"] == 0
    return [[batch, f"{te * 1e6:.1f}", f"{tl * 1e6:.1f}", f"{ta * 1e6:.1f}", f"{te / ta:.2f}"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    gd.set_num_threads(args.threads)
    krows = kernels(1 << 16) + kernels(1 << 20)
    print_table(["op", "n", "kernel us", "NumPy us", "NumPy / kernel"], krows)
    print()
    srows = step_rows(32) + step_rows(256)
    print_table(["batch", "eager us", "compiled, loss only us", "compiled, loss + acc us",
                 "eager / compiled+acc"], srows)
    save_json("intops", {"threads": args.threads, "kernels": krows, "steps": srows})


if __name__ == "__main__":
    main()
