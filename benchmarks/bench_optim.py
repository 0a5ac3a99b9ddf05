"""Training-step time per optimizer: graddesc eager vs graddesc compiled (gd.compile) vs PyTorch
eager, for the lecture net 784-256-128-10 (ReLU), batch 32, float32, cross-entropy.

A step is zero_grad, forward, loss, backward, (clipping), optimizer step. One thread for both
libraries by default (--threads): on a shared machine, two threads that spin-wait for each other
measure the other jobs more than the step. The three steps of a case are timed in interleaved
rounds (eager, compiled, torch, eager, ...) and each time is the median over the rounds of the
per-round medians, so a slow spell hits all three. The compiled step is checked to replay (no
fallback). Prints microseconds and ratios; saves benchmarks/results/optim.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_optim.py
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import numpy as np

import graddesc as gd
from _common import median_time, print_table, save_json

SIZES = [784, 256, 128, 10]
BATCH = 32

# (label, optimizer class name, its arguments, what else the step does)
CASES = [
    ("SGD", "SGD", {"lr": 0.01}, None),
    ("SGD momentum", "SGD", {"lr": 0.01, "momentum": 0.9}, None),
    ("SGD nesterov + wd", "SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True,
                                  "weight_decay": 1e-4}, None),
    ("Adam", "Adam", {"lr": 1e-3}, None),
    ("AdamW amsgrad", "AdamW", {"lr": 1e-3, "amsgrad": True}, None),
    ("RMSprop", "RMSprop", {"lr": 1e-3}, None),
    ("RMSprop centered + momentum", "RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.9},
     None),
    ("Adagrad", "Adagrad", {"lr": 1e-2}, None),
    ("SGD + clip_grad_norm_", "SGD", {"lr": 0.01, "momentum": 0.9}, "norm"),
    ("SGD + clip_grad_value_", "SGD", {"lr": 0.01, "momentum": 0.9}, "value"),
    ("SGD, zero_grad(set_to_none=False)", "SGD", {"lr": 0.01, "momentum": 0.9}, "zeros"),
]


def _data(seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return x, y


def graddesc_step(opt_name: str, kw: dict, extra: str | None, compiled: bool):
    gd.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(gd.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(gd.nn.ReLU())
    model = gd.nn.Sequential(*layers)
    opt = getattr(gd.optim, opt_name)(model.parameters(), **kw)
    lf = gd.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=extra != "zeros")
        loss = lf(model(x), y)
        loss.backward()
        if extra == "norm":
            gd.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        elif extra == "value":
            gd.nn.utils.clip_grad_value_(model.parameters(), 0.1)
        opt.step()
        return loss

    fn = gd.compile(step) if compiled else step
    xa, ya = _data()
    x, y = gd.tensor(xa), gd.tensor(ya)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would be an error here
        for _ in range(3):
            fn(x, y)
    if compiled:
        assert fn.stats["eager"] == 0 and fn.stats["replayed"] >= 1, fn.stats
    return lambda: fn(x, y)


def torch_step(opt_name: str, kw: dict, extra: str | None):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = getattr(torch.optim, opt_name)(model.parameters(), **kw)
    lf = torch.nn.CrossEntropyLoss()
    xa, ya = _data()
    x, y = torch.tensor(xa), torch.tensor(ya)

    def step():
        opt.zero_grad(set_to_none=extra != "zeros")
        loss = lf(model(x), y)
        loss.backward()
        if extra == "norm":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        elif extra == "value":
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.1)
        opt.step()
        return loss

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case")
    parser.add_argument("--threads", type=int, default=1, help="threads of both libraries")
    args = parser.parse_args()
    gd.set_num_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    rows, out = [], []
    for label, name, kw, extra in CASES:
        steps = [graddesc_step(name, kw, extra, False), graddesc_step(name, kw, extra, True),
                 torch_step(name, kw, extra)]
        times: list = [[], [], []]
        for _ in range(args.rounds):
            for k, fn in enumerate(steps):
                if fn is not None:
                    times[k].append(median_time(fn, args.min_time, repeat=3))
        eager, compiled, torch_t = (statistics.median(t) if t else float("nan") for t in times)
        rows.append([label, f"{eager * 1e6:.0f}", f"{compiled * 1e6:.0f}",
                     f"{torch_t * 1e6:.0f}", f"{eager / compiled:.2f}",
                     f"{torch_t / compiled:.2f}"])
        out.append({"case": label, "eager_us": eager * 1e6, "compiled_us": compiled * 1e6,
                    "torch_us": torch_t * 1e6})
    print(f"784-256-128-10 ReLU MLP, batch {BATCH}, float32, cross-entropy; ISA "
          f"{gd.config()['isa']}, {args.threads} thread(s) each")
    print_table(["step", "eager us", "compiled us", "torch us", "eager/compiled",
                 "torch/compiled"], rows)
    path = save_json("optim", {"sizes": SIZES, "batch": BATCH, "rows": out})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
