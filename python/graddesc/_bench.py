"""Training-step benchmarks shared by `python -m graddesc bench` and benchmarks/bench_step.py.

A "step" is zero_grad, forward, loss, backward, SGD update, written the ordinary PyTorch way with
graddesc's public API; the NumPy baseline is the same math written well by hand (preallocated
buffers, out= everywhere, in-place ReLU and update); PyTorch runs eager when installed.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional

import numpy as np

import graddesc as gd


def median_seconds(fn: Callable[[], Any], min_time: float = 0.2, repeat: int = 7) -> float:
    """Median seconds per call over `repeat` samples of enough calls to last min_time / repeat."""
    for _ in range(3):
        fn()
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t0 >= min_time / repeat:
            break
        number *= 2
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


class NumpyMLP:
    """Hand-tuned NumPy training step for Linear/ReLU stacks with CE or MSE loss."""

    def __init__(self, sizes: list, batch: int, loss: str, rng: np.random.Generator) -> None:
        self.W = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(o, np.float32) for o in sizes[1:]]
        self.dW = [np.empty_like(w) for w in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        self.h = [np.empty((batch, s), np.float32) for s in sizes]
        self.dh = [np.empty((batch, s), np.float32) for s in sizes]
        self.loss, self.batch = loss, batch
        self.lr = np.float32(0.01)
        self.tmp = np.empty((batch, 1), np.float32)

    def step(self, x: np.ndarray, y: np.ndarray) -> None:
        h, W, b = self.h, self.W, self.b
        h[0][...] = x
        L = len(W)
        for k in range(L):
            np.dot(h[k], W[k].T, out=h[k + 1])
            h[k + 1] += b[k]
            if k < L - 1:
                np.maximum(h[k + 1], 0, out=h[k + 1])
        z, dz = h[L], self.dh[L]
        if self.loss == "ce":
            np.max(z, axis=1, keepdims=True, out=self.tmp)
            np.subtract(z, self.tmp, out=dz)
            np.exp(dz, out=dz)
            np.sum(dz, axis=1, keepdims=True, out=self.tmp)
            dz /= self.tmp
            dz[np.arange(self.batch), y] -= 1.0
            dz *= np.float32(1.0 / self.batch)
        else:
            np.subtract(z, y, out=dz)
            dz *= np.float32(2.0 / dz.size)
        for k in range(L - 1, -1, -1):
            np.dot(self.dh[k + 1].T, h[k], out=self.dW[k])
            np.sum(self.dh[k + 1], axis=0, out=self.db[k])
            if k > 0:
                np.dot(self.dh[k + 1], W[k], out=self.dh[k])
                self.dh[k] *= h[k] > 0
            W[k] -= self.lr * self.dW[k]
            b[k] -= self.lr * self.db[k]


def graddesc_step(sizes: list, batch: int, loss: str, seed: int = 0,
                  compiled: bool = False) -> Callable[[], None]:
    gd.manual_seed(seed)
    layers: list = []
    for i, (a, c) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(gd.nn.Linear(a, c))
        if i < len(sizes) - 2:
            layers.append(gd.nn.ReLU())
    model = gd.nn.Sequential(*layers)
    opt = gd.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    x = gd.tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32))
    if loss == "ce":
        y = gd.tensor(rng.integers(0, sizes[-1], batch))
        loss_fn: Any = gd.nn.CrossEntropyLoss()
    else:
        y = gd.tensor(rng.standard_normal((batch, sizes[-1])).astype(np.float32))
        loss_fn = gd.nn.MSELoss()

    return training_step(model, opt, loss_fn, x, y, compiled)


def training_step(model: Any, opt: Any, loss_fn: Any, x: Any, y: Any,
                  compiled: bool = False) -> Callable[[], Any]:
    """One call = zero_grad, forward, loss, backward, optimizer step on (x, y); the function
    `gd.compile` made is the result's `.compiled` (None when eager)."""
    def train_step(xb: Any, yb: Any) -> Any:
        opt.zero_grad()
        out = loss_fn(model(xb), yb)
        out.backward()
        opt.step()
        return out

    fn = gd.compile(train_step) if compiled else train_step

    def step() -> Any:
        return fn(x, y)

    step.compiled = fn if compiled else None  # type: ignore[attr-defined]
    return step


def recorded_program(step: Callable[[], Any]) -> Any:
    """The _core.Program a compiled graddesc_step replays (records it first if needed)."""
    fn = step.compiled  # type: ignore[attr-defined]
    for _ in range(3):
        step()
    entries = [e for e in fn._cache.values() if getattr(e, "program", None) is not None]
    if not entries:
        raise RuntimeError("the compiled step fell back to eager: nothing was recorded")
    return entries[0].program


def numpy_step(sizes: list, batch: int, loss: str, seed: int = 0) -> Callable[[], None]:
    rng = np.random.default_rng(seed)
    net = NumpyMLP(sizes, batch, loss, rng)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch) if loss == "ce" else \
        rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    return lambda: net.step(x, y)


def torch_step(sizes: list, batch: int, loss: str, seed: int = 0) -> Optional[Callable[[], None]]:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    layers: list = []
    for i, (a, c) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, c))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, sizes[0])
    if loss == "ce":
        y = torch.randint(0, sizes[-1], (batch,))
        loss_fn: Any = torch.nn.CrossEntropyLoss()
    else:
        y = torch.randn(batch, sizes[-1])
        loss_fn = torch.nn.MSELoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


WORKLOADS = [
    ("MLP 784-256-128-10, batch 256, CE", [784, 256, 128, 10], 256, "ce"),
    ("MLP 784-256-128-10, batch 32, CE", [784, 256, 128, 10], 32, "ce"),
    ("MLP 784-256-128-10, batch 1, CE", [784, 256, 128, 10], 1, "ce"),
    ("lecture net 600-60-40-10, batch 1, CE", [600, 60, 40, 10], 1, "ce"),
    ("lecture net 600-60-40-10, batch 64, MSE", [600, 60, 40, 10], 64, "mse"),
]


def blas_threads(n: int) -> Any:
    """A context limiting NumPy's BLAS to n threads (threadpoolctl), or doing nothing without
    threadpoolctl (then OPENBLAS_NUM_THREADS=n pins it; the callers say so)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def run_table(threads: int = 1, min_time: float = 0.2) -> list:
    """Rows of (workload, graddesc eager us, graddesc compiled us, numpy us, torch us or None)."""
    gd.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    rows = []
    for label, sizes, batch, loss in WORKLOADS:
        g = median_seconds(graddesc_step(sizes, batch, loss), min_time)
        c = median_seconds(graddesc_step(sizes, batch, loss, compiled=True), min_time)
        with blas_threads(threads):  # NumPy's BLAS on as many threads as the others
            n = median_seconds(numpy_step(sizes, batch, loss), min_time)
        ts = torch_step(sizes, batch, loss)
        t = median_seconds(ts, min_time) if ts is not None else None
        rows.append((label, g * 1e6, c * 1e6, n * 1e6, None if t is None else t * 1e6))
    return rows


def main(args: Any) -> int:
    rows = run_table(threads=getattr(args, "threads", 1))
    print(f"training step, float32, {gd.get_num_threads()} thread(s), median microseconds "
          "(lower is better); x = baseline time / graddesc time")
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        print("(threadpoolctl is not installed: NumPy's BLAS ran on its default thread count; "
              "set OPENBLAS_NUM_THREADS to match)")
    header = (f"{'workload':42s} {'eager':>8s} {'compiled':>9s} {'numpy':>8s} {'torch':>8s} "
              f"{'vs numpy':>9s} {'vs torch':>9s}")
    print(header)
    print("-" * len(header))
    for label, g, c, n, t in rows:
        best = min(g, c)
        ts = f"{t:8.1f}" if t is not None else f"{'-':>8s}"
        tr = f"{t / best:8.2f}x" if t is not None else f"{'-':>9s}"
        print(f"{label:42s} {g:8.1f} {c:9.1f} {n:8.1f} {ts} {n / best:8.2f}x {tr}")
    return 0
