"""Eager per-op overhead on tiny tensors, where Python bookkeeping dominates the arithmetic.

Workloads (float32, 1 thread): relu on 10 elements with requires_grad (forward + backward);
Linear(10, 10) forward + backward at batch 1; the lecture net's training step (Linear
600-60-40-10 with ReLU, CrossEntropyLoss, SGD, batch 1: zero_grad, forward, loss, backward,
step), whose kernels take ~10 us of it. Baselines: NumPy doing the same math by hand
(preallocated, out=) and PyTorch eager when installed.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_overhead.py

`--chain` times the long tape of issue 22: 20,000 rounds of `y = y * 1.0001 + 0.0` from a
(1000,) float32 leaf that requires grad (40,000 recorded ops), forward, then backward, for
graddesc and PyTorch in the same process (best of 3 rounds each, with Python's garbage collector
on as a user has it, and again with it off to show its share), also for shapes (1,) and (10,),
where the bookkeeping is all there is; then the per-piece table: what one recorded op costs
(the kernel call, the tensor, the tape) against the same op without recording. `--chain N`
uses N rounds (`--quick`: 5,000).

Timings on a shared machine are noisy; instruction counts are not. `--run WORKLOAD N` runs a
graddesc workload (relu10, linear10, step) N times after a warm-up and nothing else, so that
    PYTHONHASHSEED=0 valgrind --tool=callgrind python benchmarks/bench_overhead.py --run step N
for N = 0 and N = 200 gives the instructions per call as (count(200) - count(0)) / 200.

`--zoo [BATCH]` times the pieces of the polyreg step of benchmarks/zoo.py (issue 15's smallest
model: one op on a number, one recorded op, the forward, forward + backward, the optimizer
step, zero_grad, the whole step) for graddesc and PyTorch, CPU time, medians of 7 interleaved
rounds.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any, Callable

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json
from graddesc import _bench

LECTURE_NET = ([600, 60, 40, 10], 1, "ce")


def graddesc_workloads() -> dict:
    """name -> a graddesc call to time (or to count the instructions of)."""
    x = gd.randn(10, requires_grad=True)
    g = gd.ones(10)

    def relu10() -> None:
        x.relu().backward(g)

    lin = gd.nn.Linear(10, 10)
    xi = gd.randn(10)

    def linear10() -> None:
        lin.zero_grad()
        lin(xi).backward(g)

    return {"relu10": relu10, "linear10": linear10, "step": _bench.graddesc_step(*LECTURE_NET)}


def run(name: str, n: int) -> None:
    """Calls workload `name` n times (after 5 warm-up calls), for instruction counting."""
    gd.set_num_threads(1)
    fn: Callable[[], object] = graddesc_workloads()[name]
    for _ in range(5):
        fn()
    for _ in range(n):
        fn()


def main() -> None:
    gd.set_num_threads(1)
    rows, out = [], {}
    work = graddesc_workloads()

    # --- relu fwd+bwd on 10 elements ------------------------------------------------------
    gd_relu = work["relu10"]

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
    gd_lin = work["linear10"]
    rng = np.random.default_rng(1)
    W = (rng.standard_normal((10, 10)) / np.sqrt(10)).astype(np.float32)
    b = np.zeros(10, np.float32)
    xv = rng.standard_normal(10).astype(np.float32)
    y, dW, db = np.empty(10, np.float32), np.empty((10, 10), np.float32), np.empty(10, np.float32)
    gv = np.ones(10, np.float32)

    def np_lin():
        np.dot(W, xv, out=y)
        np.add(y, b, out=y)
        np.multiply.outer(gv, xv, out=dW)
        db[...] = gv

    t_gl, t_nl = median_time(gd_lin), median_time(np_lin)
    out["linear10"] = {"graddesc_us": t_gl * 1e6, "numpy_us": t_nl * 1e6}

    # --- the lecture net's training step ----------------------------------------------------
    t_gs = median_time(work["step"])
    t_ns = median_time(_bench.numpy_step(*LECTURE_NET))
    out["step"] = {"graddesc_us": t_gs * 1e6, "numpy_us": t_ns * 1e6}

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
        t_step = _bench.torch_step(*LECTURE_NET)
        if t_step is not None:
            out["step"]["torch_us"] = median_time(t_step) * 1e6
    except ImportError:
        pass

    # the step: 6 forward ops and their 6 backward nodes, 6 gradient accumulations, 1 update
    for name, label, nops in (("relu10", "relu(10) fwd+bwd", 2),
                              ("linear10", "Linear(10,10) fwd+bwd", 2),
                              ("step", "lecture net step (600-60-40-10, b1)", 19)):
        r = out[name]
        rows.append([label, f"{r['graddesc_us']:.2f}", f"{r['graddesc_us'] / nops:.2f}",
                     f"{r['numpy_us']:.2f}", f"{r['torch_us']:.2f}" if "torch_us" in r else "-",
                     f"{r['torch_us'] / r['graddesc_us']:.2f}x" if "torch_us" in r else "-"])
    print_table(["workload", "graddesc us", "us per op", "numpy us", "torch us",
                 "graddesc speedup vs torch"], rows)
    path = save_json("overhead", out)
    print(f"saved {path}", file=sys.stderr)


def _chain_once(lib: Any, n: int, shape: tuple, collect: bool) -> tuple:
    """(forward seconds, backward seconds) of n rounds of y = y * 1.0001 + 0.0 and backward:
    the process's CPU time, which a machine shared with other jobs inflates less than the
    wall clock (both libraries run one thread here)."""
    x = lib.ones(shape, requires_grad=True)
    gc.collect()
    if not collect:
        gc.disable()
    try:
        t0 = time.process_time()
        y = x
        for _ in range(n):
            y = y * 1.0001 + 0.0
        t1 = time.process_time()
        y.sum().backward()
        t2 = time.process_time()
    finally:
        gc.enable()
    return t1 - t0, t2 - t1


def chain(n: int) -> dict:
    """The long-tape benchmark (see the module docstring): best of 3 rounds per library."""
    libs = {"graddesc": gd}
    try:
        import torch

        torch.set_num_threads(1)
        libs["torch"] = torch
    except ImportError:
        pass
    out: dict = {}
    rows = []
    for shape in ((1000,), (10,), (1,)):
        for collect in (True, False):
            best: dict = {}
            for _ in range(3):  # interleaved, so that both see the same load
                for name, lib in libs.items():
                    f, b = _chain_once(lib, n, shape, collect)
                    old = best.get(name)
                    best[name] = (f, b) if old is None else (min(f, old[0]), min(b, old[1]))
            key = f"chain{shape}" + ("" if collect else " gc off")
            out[key] = {name: {"forward_ms": f * 1e3, "backward_ms": b * 1e3}
                        for name, (f, b) in best.items()}
            g = best["graddesc"]
            t = best.get("torch")
            rows.append([key, f"{g[0] * 1e3:.0f}", f"{g[1] * 1e3:.0f}",
                         f"{(g[0] + g[1]) * 1e3:.0f}",
                         f"{g[0] / (2 * n) * 1e6:.2f} / {g[1] / (2 * n) * 1e6:.2f}",
                         f"{(t[0] + t[1]) * 1e3:.0f}" if t else "-",
                         f"{t[0] / (2 * n) * 1e6:.2f} / {t[1] / (2 * n) * 1e6:.2f}" if t else "-",
                         f"{(g[0] + g[1]) / (t[0] + t[1]):.2f}x" if t else "-"])
    print(f"chain of {n} x (y * 1.0001 + 0.0), {2 * n} ops, forward then backward")
    print_table(["workload", "gd fwd ms", "gd bwd ms", "gd total ms", "gd us/op fwd / bwd",
                 "torch total ms", "torch us/op fwd / bwd", "gd / torch"], rows)
    out["pieces"] = pieces(libs.get("torch"))
    out["small_cpu"] = small_cpu(libs.get("torch"))
    return out


def small_cpu(torch: Any) -> dict:
    """The workloads of main() (relu and Linear on 10 elements, the lecture net's step) in CPU
    microseconds per call, graddesc and PyTorch interleaved, median of 7 rounds."""
    work = {f"graddesc {k}": fn for k, fn in graddesc_workloads().items()}
    if torch is not None:
        tx = torch.randn(10, requires_grad=True)
        tg = torch.ones(10)
        tl = torch.nn.Linear(10, 10)
        ti = torch.randn(10)

        def t_lin() -> None:
            tl.zero_grad()
            tl(ti).backward(tg)

        work["torch relu10"] = lambda: tx.relu().backward(tg)
        work["torch linear10"] = t_lin
        t_step = _bench.torch_step(*LECTURE_NET)
        if t_step is not None:
            work["torch step"] = t_step
    samples: dict = {k: [] for k in work}
    for _ in range(7):
        for k, fn in work.items():
            samples[k].append(_cpu_seconds(fn, 300))
    res = {k: sorted(v)[3] * 1e6 for k, v in samples.items()}
    rows = []
    for name in ("relu10", "linear10", "step"):
        g, t = res[f"graddesc {name}"], res.get(f"torch {name}")
        rows.append([name, f"{g:.2f}", f"{t:.2f}" if t else "-", f"{g / t:.2f}x" if t else "-"])
    print("small workloads, CPU us per call (step: the lecture net, 600-60-40-10, batch 1)")
    print_table(["workload", "graddesc us", "torch us", "gd / torch"], rows)
    return res


def _cpu_seconds(fn: Callable[[], object], number: int = 200) -> float:
    """CPU seconds per call of fn over `number` calls (after a warm-up), garbage collector off
    (the chain measures its share)."""
    for _ in range(3):
        fn()
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        for _ in range(number):
            fn()
        return (time.process_time() - t0) / number
    finally:
        gc.enable()


def pieces(torch: Any) -> dict:
    """Microseconds of the pieces of one recorded op, y * 1.0001 on a (1000,) float32 tensor,
    and of the same op in PyTorch."""
    from graddesc import _core
    from graddesc._tensor import Tensor

    x = gd.ones(1000, requires_grad=True)
    xd = x._data
    mul = _core.EW_OPS["mul"]
    def nograd() -> None:
        with gd.no_grad():
            for _ in range(100):
                x * 1.0001

    def recorded() -> None:
        for _ in range(100):
            x * 1.0001

    work = {"kernel call (_core.elementwise, mul by a number)":
            lambda: _core.elementwise(mul, xd, 1.0001),
            "Tensor._make (wrap the output)": lambda: Tensor._make(xd),
            "op under no_grad (operator, apply, forward, kernel, tensor), per op": nograd,
            "op recorded (+ tape node, edges, metadata), per op": recorded}
    per = {k: 100 if k.endswith("per op") else 1 for k in work}
    if torch is not None:
        tx = torch.ones(1000, requires_grad=True)
        txd = tx.detach()

        def t_nograd() -> None:
            with torch.no_grad():
                for _ in range(100):
                    tx * 1.0001

        def t_recorded() -> None:
            for _ in range(100):
                tx * 1.0001

        work["torch: torch.mul(detached tensor, number)"] = lambda: torch.mul(txd, 1.0001)
        work["torch: op under no_grad, per op"] = t_nograd
        work["torch: op recorded, per op"] = t_recorded
        per.update({k: 100 if k.endswith("per op") else 1 for k in work if k not in per})
    # CPU time, the median of 7 interleaved rounds, so that graddesc and torch see the same load
    samples: dict = {k: [] for k in work}
    for _ in range(7):
        for k, fn in work.items():
            samples[k].append(_cpu_seconds(fn, 5000 if per[k] == 1 else 50) / per[k])
    res = {k: sorted(v)[3] for k, v in samples.items()}
    rows = [[k, f"{v * 1e6:.2f}"] for k, v in res.items()]
    print("one op, y * 1.0001 on (1000,) float32")
    print_table(["piece", "us"], rows)
    return {k: v * 1e6 for k, v in res.items()}


def _polyreg_pieces(lib: Any, batch: int) -> dict:
    """The pieces of benchmarks/zoo.py's polyreg step on `lib` (graddesc or torch): the
    forward to the loss, the backward, the optimizer step, zero_grad, and a single recorded
    op and a single op on a number (x ** 2), each a function to time."""
    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.uniform(-1, 1, (batch, 1)).astype(np.float32))
    y = lib.from_numpy(rng.uniform(-1, 1, (batch, 1)).astype(np.float32))
    w = lib.nn.Parameter(lib.from_numpy((0.1 * rng.standard_normal((3, 1))).astype(np.float32)))
    b = lib.nn.Parameter(lib.from_numpy(np.zeros(1, np.float32)))
    opt = lib.optim.SGD([w, b], lr=0.01)

    def forward() -> Any:
        feats = lib.cat([x, x ** 2, x ** 3], 1)
        return ((feats @ w + b - y) ** 2).mean()

    def backward() -> None:  # (forward included: a graph is used once)
        forward().backward()

    def step() -> None:
        opt.step()

    def zero_grad() -> None:
        opt.zero_grad()

    def whole() -> None:
        opt.zero_grad()
        forward().backward()
        opt.step()

    forward().backward()  # a gradient for step() to apply
    return {"x ** 2 (a number exponent, no grad needed)": lambda: x ** 2,
            "w * 2.0 (recorded)": lambda: w * 2.0,
            "forward (cat, 3 pow, matmul, +, -, mean)": forward,
            "forward + backward": backward, "optimizer step (SGD, 2 parameters)": step,
            "zero_grad": zero_grad, "whole step": whole}


def zoo_pieces(torch: Any, batch: int = 1) -> dict:
    """CPU microseconds of the pieces of the polyreg step (benchmarks/zoo.py), graddesc and
    PyTorch, medians of 7 interleaved rounds, and their ratios (torch / graddesc)."""
    libs = {"graddesc": _polyreg_pieces(gd, batch)}
    if torch is not None:
        libs["torch"] = _polyreg_pieces(torch, batch)
    samples: dict = {(lib, k): [] for lib, work in libs.items() for k in work}
    for _ in range(7):
        for lib, work in libs.items():
            for k, fn in work.items():
                samples[(lib, k)].append(_cpu_seconds(fn, 300) * 1e6)
    us = {key: sorted(v)[3] for key, v in samples.items()}
    rows = []
    for k in libs["graddesc"]:
        g = us[("graddesc", k)]
        t = us.get(("torch", k))
        rows.append([k, f"{g:.2f}", "-" if t is None else f"{t:.2f}",
                     "-" if t is None else f"{t / g:.2f}x"])
    print(f"polyreg (benchmarks/zoo.py) pieces, batch {batch}, CPU us per call")
    print_table(["piece", "graddesc us", "torch us", "torch / graddesc"], rows)
    return {f"{lib}: {k}": v for (lib, k), v in us.items()}


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--zoo":
        gd.set_num_threads(1)
        try:
            import torch as _torch

            _torch.set_num_threads(1)
        except ImportError:
            _torch = None
        res = zoo_pieces(_torch, int(sys.argv[2]) if len(sys.argv) == 3 else 1)
        print(f"saved {save_json('overhead_zoo', res)}", file=sys.stderr)
    elif len(sys.argv) == 4 and sys.argv[1] == "--run":
        run(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) >= 2 and sys.argv[1] in ("--chain", "--quick"):
        gd.set_num_threads(1)
        rounds = 5000 if sys.argv[1] == "--quick" else 20000
        if len(sys.argv) == 3:
            rounds = int(sys.argv[2])
        result = chain(rounds)
        print(f"saved {save_json('overhead_chain', result)}", file=sys.stderr)
    else:
        main()
