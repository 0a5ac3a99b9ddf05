"""Hand-written SGD (the lecture's own loop) against optim.SGD, compiled and eager (issue 15).

The lecture's MLP 784-256-128-10 with ReLU and cross-entropy; the update written by hand,

    model.zero_grad(); loss = ...; loss.backward()
    with no_grad():
        for p in model.parameters():
            p -= lr * p.grad

and the same step with `opt.step()` of optim.SGD. For each batch (1, 32, 256): graddesc eager,
graddesc under gd.compile, PyTorch eager (the same code with `torch`), same-run medians in
microseconds, one thread, pinned to one CPU. Whether gd.compile captured the step is counted
from its fallback warnings. Saves benchmarks/results/handwritten.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
         python benchmarks/bench_handwritten.py [--batches 1,32,256]
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any, Callable

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json, torch_one_thread
from bench_elementwise import cpu_name
from bench_models import pin_to_one_cpu

SIZES = (784, 256, 128, 10)
LR = 0.01


def make_step(lib: Any, batch: int, by_hand: bool) -> tuple:
    """(step, x, y) for `lib` (graddesc or torch): one SGD step of the lecture's MLP."""
    rng = np.random.default_rng(0)
    layers = []
    for i, o in zip(SIZES[:-1], SIZES[1:]):
        lin = lib.nn.Linear(i, o)
        with lib.no_grad():
            lin.weight.copy_(lib.from_numpy(
                (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)))
            lin.bias.zero_()
        layers += [lin, lib.nn.ReLU()]
    model = lib.nn.Sequential(*layers[:-1])
    F = lib.nn.functional
    opt = lib.optim.SGD(model.parameters(), lr=LR)
    x = lib.from_numpy(rng.standard_normal((batch, SIZES[0])).astype(np.float32))
    y = lib.from_numpy(rng.integers(0, SIZES[-1], batch).astype(np.int64))

    if by_hand:
        def step(x: Any, y: Any) -> Any:
            model.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            with lib.no_grad():
                for p in model.parameters():
                    p -= LR * p.grad
            return loss
    else:
        def step(x: Any, y: Any) -> Any:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
    return step, x, y


def graddesc_compiled(batch: int, by_hand: bool) -> tuple:
    step, x, y = make_step(gd, batch, by_hand)
    comp = gd.compile(step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            comp(x, y)
    captured = not any("graddesc.compile" in str(w.message) for w in caught)
    return (lambda: comp(x, y)), captured


def timed(fn: Callable[[], Any]) -> float:
    return median_time(fn) * 1e6


def measure(batch: int, by_hand: bool, torch: Any) -> dict:
    """Median microseconds of one step: graddesc eager and compiled, PyTorch eager."""
    e_step, x, y = make_step(gd, batch, by_hand)
    t_eager = timed(lambda: e_step(x, y))
    c_step, captured = graddesc_compiled(batch, by_hand)
    t_comp = timed(c_step)
    t_torch = None
    if torch is not None:
        ts, tx, ty = make_step(torch, batch, by_hand)
        t_torch = timed(lambda: ts(tx, ty))
    return {"batch": batch, "update": "p -= lr * p.grad" if by_hand else "optim.SGD",
            "captured": captured, "compiled_us": t_comp, "eager_us": t_eager,
            "torch_us": t_torch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,32,256")
    args = ap.parse_args()
    pinned = pin_to_one_cpu()
    gd.set_num_threads(1)
    torch = torch_one_thread()
    print(f"CPU: {cpu_name()}  ({pinned}), graddesc ISA {gd._core.isa()}")
    rows, out = [], []
    for batch in [int(b) for b in args.batches.split(",")]:
        for by_hand in (True, False):
            r = measure(batch, by_hand, torch)
            t = r["torch_us"]
            rows.append([batch, r["update"], "yes" if r["captured"] else "NO",
                         f"{r['compiled_us']:.1f}", f"{r['eager_us']:.1f}",
                         f"{t:.1f}" if t else "-",
                         f"{t / r['compiled_us']:.2f}x" if t else "-",
                         f"{t / r['eager_us']:.2f}x" if t else "-"])
            out.append(r)
    print_table(["batch", "update", "captured", "gd compiled us", "gd eager us", "torch us",
                 "torch/compiled", "torch/eager"], rows)
    path = save_json("handwritten", {"cpu": cpu_name(), "rows": out})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
