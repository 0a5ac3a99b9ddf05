"""Convnet benchmarks: training steps of a LeNet-like net and of the digits convnet, graddesc
(eager and gd.compile) against PyTorch eager and a hand-written NumPy im2col step; the 2-thread
speedup at batch 256 (eager and compiled, interleaved 1-/2-thread pairs); and the share of the
GEMM's speed a Conv2d forward reaches on the same shapes. Prints medians (microseconds) and
same-run ratios; saves benchmarks/results/conv.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
         python benchmarks/bench_conv.py [--cpu-time]

--cpu-time times the 1-thread sections by the calling thread's CPU time (time.thread_time)
instead of wall time: on a machine loaded by other processes, wall time mostly measures how long
the process waited for a core. Every library here runs on the calling thread at 1 thread, so its
CPU time is its work (still slowed by other processes sharing the caches). The 2-thread section
needs wall time and is skipped with this option.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

import _common
import graddesc as gd
from _common import print_table, save_json
from graddesc import _bench, _core

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

CPU_TIME = False  # set by --cpu-time (see the module docstring)


def median_time(fn: Callable[[], Any]) -> float:
    """Median seconds per call: wall time (_common.median_time), or with --cpu-time the calling
    thread's CPU time over 7 samples of enough calls to last 30 ms of CPU each."""
    if not CPU_TIME:
        return _common.median_time(fn)
    for _ in range(3):
        fn()
    number = 1
    while True:
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        if time.thread_time() - t0 >= 0.03:
            break
        number *= 2
    samples = []
    for _ in range(7):
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        samples.append((time.thread_time() - t0) / number)
    return statistics.median(samples)


# (label, input (C, H, W), layers, classes); layers: ("conv", out, k, pad) | ("pool", k) |
# ("flat",) | ("fc", out) | ("relu",)
LENET = ("LeNet 28x28x1", (1, 28, 28),
         [("conv", 6, 5, 0), ("relu",), ("pool", 2), ("conv", 16, 5, 0), ("relu",), ("pool", 2),
          ("flat",), ("fc", 120), ("relu",), ("fc", 84), ("relu",), ("fc", 10)], 10)
DIGITS = ("digits convnet 8x8x1", (1, 8, 8),
          [("conv", 16, 3, 1), ("relu",), ("conv", 32, 3, 1), ("relu",), ("pool", 2),
           ("flat",), ("fc", 10)], 10)


def _build(mod: Any, shape: tuple, layers: list) -> list:
    """The layer objects of graddesc.nn or torch.nn (same API) for the spec."""
    c, h, w = shape
    out = []
    for spec in layers:
        if spec[0] == "conv":
            out.append(mod.Conv2d(c, spec[1], spec[2], padding=spec[3]))
            c, h, w = spec[1], h + 2 * spec[3] - spec[2] + 1, w + 2 * spec[3] - spec[2] + 1
        elif spec[0] == "pool":
            out.append(mod.MaxPool2d(spec[1]))
            h, w = h // spec[1], w // spec[1]
        elif spec[0] == "relu":
            out.append(mod.ReLU())
        elif spec[0] == "flat":
            out.append(mod.Flatten())
            c, h, w = c * h * w, 1, 1
        else:
            out.append(mod.Linear(c, spec[1]))
            c = spec[1]
    return out


def graddesc_step(net: tuple, batch: int, compiled: bool = False) -> Callable[[], Any]:
    _, shape, layers, classes = net
    gd.manual_seed(0)
    model = gd.nn.Sequential(*_build(gd.nn, shape, layers))
    opt = gd.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = gd.tensor(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = gd.tensor(rng.integers(0, classes, batch))
    loss_fn = gd.nn.CrossEntropyLoss()

    return _bench.training_step(model, opt, loss_fn, x, y, compiled)


def torch_step(net: tuple, batch: int) -> Optional[Callable[[], Any]]:
    if torch is None:
        return None
    _, shape, layers, classes = net
    torch.manual_seed(0)
    model = torch.nn.Sequential(*_build(torch.nn, shape, layers))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn((batch,) + shape)
    y = torch.randint(0, classes, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


class NumpyConvNet:
    """The same nets by hand in NumPy: im2col by sliding_window_view, one matmul per layer
    over the whole batch, non-overlapping max pools by reshape, preallocated where it helps."""

    def __init__(self, net: tuple, batch: int, rng: np.random.Generator) -> None:
        _, shape, layers, classes = net
        self.layers, self.params = [], []
        c, h, w = shape
        for spec in layers:
            if spec[0] == "conv":
                oc, k, p = spec[1], spec[2], spec[3]
                W = (rng.standard_normal((oc, c * k * k)) / np.sqrt(c * k * k)).astype(np.float32)
                b = np.zeros(oc, np.float32)
                self.layers.append(("conv", W, b, k, p, c))
                self.params += [W, b]
                c, h, w = oc, h + 2 * p - k + 1, w + 2 * p - k + 1
            elif spec[0] == "pool":
                self.layers.append(("pool", spec[1]))
                h, w = h // spec[1], w // spec[1]
            elif spec[0] == "relu":
                self.layers.append(("relu",))
            elif spec[0] == "flat":
                self.layers.append(("flat",))
                c, h, w = c * h * w, 1, 1
            else:
                W = (rng.standard_normal((spec[1], c)) / np.sqrt(c)).astype(np.float32)
                b = np.zeros(spec[1], np.float32)
                self.layers.append(("fc", W, b))
                self.params += [W, b]
                c = spec[1]
        self.batch = batch
        self.x = rng.standard_normal((batch,) + shape).astype(np.float32)
        self.y = rng.integers(0, classes, batch)
        self.lr = np.float32(0.01)

    def step(self) -> None:
        a, saved = self.x, []
        for L in self.layers:
            if L[0] == "conv":
                _, W, b, k, p, c = L
                xp = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p))) if p else a
                n, _, hp, wp = xp.shape
                oh, ow = hp - k + 1, wp - k + 1
                # cols (N, OH, OW, C, k, k) -> (N*OH*OW, C*k*k)
                cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
                cols = np.ascontiguousarray(cols.transpose(0, 2, 3, 1, 4, 5)).reshape(
                    n * oh * ow, c * k * k)
                out = cols @ W.T + b  # (N*OH*OW, OC)
                saved.append((cols, xp.shape, oh, ow))
                a = np.ascontiguousarray(out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2))
            elif L[0] == "pool":
                k = L[1]
                n, c, h, w = a.shape
                r = a[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k)
                m = r.max(axis=(3, 5))
                saved.append((r == m[:, :, :, None, :, None], a.shape))
                a = m
            elif L[0] == "relu":
                saved.append(a > 0)
                a = np.maximum(a, 0)
            elif L[0] == "flat":
                saved.append(a.shape)
                a = a.reshape(a.shape[0], -1)
            else:
                saved.append(a)
                a = a @ L[1].T + L[2]
        z = a - a.max(axis=1, keepdims=True)
        e = np.exp(z)
        g = e / e.sum(axis=1, keepdims=True)
        g[np.arange(self.batch), self.y] -= 1.0
        g *= np.float32(1.0 / self.batch)
        for L, s in zip(reversed(self.layers), reversed(saved)):
            if L[0] == "fc":
                W, b = L[1], L[2]
                dW, db = g.T @ s, g.sum(axis=0)
                g = g @ W
                W -= self.lr * dW
                b -= self.lr * db
            elif L[0] == "flat":
                g = g.reshape(s)
            elif L[0] == "relu":
                g = g * s
            elif L[0] == "pool":
                mask, shape = s
                k = L[1]
                n, c, h, w = shape
                full = np.zeros(shape, np.float32)
                full[:, :, :h // k * k, :w // k * k] = (mask * g[:, :, :, None, :, None]).reshape(
                    n, c, h // k * k, w // k * k)
                g = full
            else:
                _, W, b, k, p, c = L
                cols, xshape, oh, ow = s
                n = xshape[0]
                g2 = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).reshape(n * oh * ow, -1)
                dW, db = g2.T @ cols, g2.sum(axis=0)
                dcols = (g2 @ W).reshape(n, oh, ow, c, k, k)
                dx = np.zeros(xshape, np.float32)
                for i in range(k):
                    for j in range(k):
                        dx[:, :, i:i + oh, j:j + ow] += \
                            dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
                g = dx[:, :, p:xshape[2] - p, p:xshape[3] - p] if p else dx
                W -= self.lr * dW
                b -= self.lr * db


def numpy_step(net: tuple, batch: int) -> Callable[[], None]:
    return NumpyConvNet(net, batch, np.random.default_rng(0)).step


def thread_pairs(step: Callable[[], Any], pairs: int = 9) -> tuple:
    """(1-thread seconds, 2-thread seconds, speedup) of a step: `pairs` rounds, each timing the
    step at 1 then at 2 threads (median of 5 calls each) back to back, so that a disturbance
    hits both halves of a pair alike; the speedup is the median of the rounds' ratios."""
    def med(n: int) -> float:
        gd.set_num_threads(n)
        for _ in range(2):
            step()
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)
    t1s, t2s, ratios = [], [], []
    for _ in range(pairs):
        a, b = med(1), med(2)
        t1s.append(a)
        t2s.append(b)
        ratios.append(a / b)
    gd.set_num_threads(1)
    return statistics.median(t1s), statistics.median(t2s), statistics.median(ratios)


def gemm_share(batch: int = 256) -> list:
    """GF/s of _core.conv2d_forward against _core.gemm of the same product, W (OC, CK) times the
    unrolled input (CK, N * L): in one call, and in the column blocks the kernel multiplies (the
    samples of one group side by side, conv.cpp's group_size), on LeNet's two convolutions and
    the digits net's second. The one-call GEMM streams the whole unrolled input (up to 15 MB)
    from memory; the blocked one is the conv kernel's own products without the unrolling."""
    rng = np.random.default_rng(0)
    rows = []
    for c, oc, k, h, p in ((1, 6, 5, 28, 0), (6, 16, 5, 12, 0), (16, 32, 3, 8, 1)):
        x = rng.standard_normal((batch, c, h, h)).astype(np.float32)
        w = rng.standard_normal((oc, c, k, k)).astype(np.float32)
        o = h + 2 * p - k + 1
        flops = 2 * batch * oc * c * k * k * o * o
        tc = median_time(lambda x=x, w=w, o=o, p=p: _core.conv2d_forward(
            x, w, None, (1, 1), (p, p), (1, 1), 1, (o, o)))
        A = w.reshape(oc, -1)
        B = rng.standard_normal((c * k * k, batch * o * o)).astype(np.float32)
        tg = median_time(lambda A=A, B=B: _core.gemm(A, B))
        per = max(1, min(batch, 512 // (o * o)))  # samples per block, as group_size
        Bb = np.ascontiguousarray(B[:, :per * o * o])
        tb = median_time(lambda A=A, Bb=Bb: _core.gemm(A, Bb)) * batch / per
        rows.append((f"conv {c}->{oc} {k}x{k} pad {p} on {h}x{h}, batch {batch}",
                     flops / tc / 1e9, flops / tg / 1e9, tg / tc, flops / tb / 1e9, tb / tc))
    return rows


def main() -> int:
    global CPU_TIME
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        return 0
    CPU_TIME = "--cpu-time" in sys.argv[1:]
    gd.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    results: dict = {"isa": gd.config()["isa"], "timer": "thread CPU" if CPU_TIME else "wall",
                     "steps": [], "threads": [], "gemm_share": []}
    rows = []
    for net in (LENET, DIGITS):
        for batch in (1, 32, 256):
            g = median_time(graddesc_step(net, batch))
            try:
                c = median_time(graddesc_step(net, batch, compiled=True))
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                print(f"compiled step failed: {e}", file=sys.stderr)
                c = float("nan")
            n = median_time(numpy_step(net, batch))
            ts = torch_step(net, batch)
            t = median_time(ts) if ts is not None else float("nan")
            rows.append((f"{net[0]}, batch {batch}", f"{g * 1e6:.0f}", f"{c * 1e6:.0f}",
                         f"{n * 1e6:.0f}", f"{t * 1e6:.0f}", f"{t / g:.2f}", f"{n / g:.2f}",
                         f"{t / c:.2f}"))
            results["steps"].append({"net": net[0], "batch": batch, "graddesc_us": g * 1e6,
                                     "compiled_us": c * 1e6, "numpy_us": n * 1e6,
                                     "torch_us": t * 1e6})
    print("training step (1 thread), microseconds; ratios: others' time / graddesc's")
    print_table(["workload", "graddesc", "compiled", "numpy im2col", "torch", "torch/gd",
                 "numpy/gd", "torch/compiled"], rows)

    trows = []
    for net in () if CPU_TIME else (LENET, DIGITS):
        for compiled in (False, True):
            t1, t2, ratio = thread_pairs(graddesc_step(net, 256, compiled=compiled))
            kind = "compiled" if compiled else "eager"
            trows.append((f"{net[0]}, batch 256, {kind}", f"{t1 * 1e6:.0f}", f"{t2 * 1e6:.0f}",
                          f"{ratio:.2f}"))
            results["threads"].append({"net": net[0], "step": kind, "t1_us": t1 * 1e6,
                                       "t2_us": t2 * 1e6, "speedup": ratio})
    if trows:
        print("\nstep at 1 vs 2 threads: medians of 9 interleaved pairs, speedup = median of the"
              " pairs' ratios")
        print_table(["workload", "1 thread", "2 threads", "speedup"], trows)

    srows = gemm_share()
    print("\nConv2d forward vs the GEMM of the same product (1 thread), GF/s: one call, and in"
          " the kernel's column blocks")
    print_table(["shape", "conv2d", "gemm", "share", "gemm blocks", "share"],
                [(r[0], f"{r[1]:.1f}", f"{r[2]:.1f}", f"{r[3]:.2f}", f"{r[4]:.1f}", f"{r[5]:.2f}")
                 for r in srows])
    results["gemm_share"] = [{"shape": r[0], "conv_gflops": r[1], "gemm_gflops": r[2],
                              "gemm_blocks_gflops": r[4]} for r in srows]
    print(f"\nsaved {save_json('conv', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
