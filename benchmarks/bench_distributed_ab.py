"""Interleaved A/B of gradient averaging in one 2-rank job (what docs/distributed.md "Cost"
measures on a shared machine): the MLP 784-256-128-10, SGD with momentum, float32, BATCH rows
per rank; each variant's model built once, then ROUNDS rounds of STEPS steps of every variant in
turn (the order reversed every round, each round timed between barriers). Prints each variant's
time per step and its averaging cost: its time / "local"'s in the same round - 1, median over
the rounds (the quantity bench_distributed.py prints as "gradient averaging adds").

Variants: local (no averaging), localbar (local plus one barrier per step: the cost of
synchronizing the ranks alone), ddp (DistributedDataParallel, defaults), ddp:CAP (bucket_cap_mb
= CAP), old (DistributedDataParallel of another ddp.py, the file named by GD_DDP_OLD, e.g. an
older commit's: git show REV:python/graddesc/distributed/ddp.py > /tmp/ddp_old.py).

Run: mpiexec -n 2 --bind-to core python benchmarks/bench_distributed_ab.py 256 30 20 local
     localbar ddp   (with GRADDESC_NUM_THREADS=1 OMP_NUM_THREADS=1, and as root
     OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time

import numpy as np

import graddesc as gd
import graddesc.distributed as dist

SIZES = [784, 256, 128, 10]


def main() -> None:
    dist.init_process_group("mpi")
    rank = dist.get_rank()
    batch, rounds, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    variants = sys.argv[4:]
    rng = np.random.default_rng(rank)
    x = gd.tensor(rng.standard_normal((batch, SIZES[0])).astype(np.float32))
    y = gd.tensor(rng.integers(0, SIZES[-1], batch))
    loss_fn = gd.nn.CrossEntropyLoss()

    def build(v: str):
        gd.manual_seed(0)
        layers: list = []
        for a, b in zip(SIZES[:-1], SIZES[1:]):
            layers += [gd.nn.Linear(a, b), gd.nn.ReLU()]
        model = gd.nn.Sequential(*layers[:-1])
        if v.startswith("ddp"):
            kw = {"bucket_cap_mb": float(v.split(":")[1])} if ":" in v else {}
            net = dist.DistributedDataParallel(model, **kw)
        elif v == "old":
            spec = importlib.util.spec_from_file_location("ddp_old", os.environ["GD_DDP_OLD"])
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            net = mod.DistributedDataParallel(model)
        elif v in ("local", "localbar"):
            net = model
        else:
            sys.exit(f"bench_distributed_ab: unknown variant {v!r}")
        opt = gd.optim.SGD(list(model.parameters()), lr=0.01, momentum=0.9)
        bar = v == "localbar"

        def step() -> None:
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
            if bar:
                dist.barrier()
        return step

    fns = {v: build(v) for v in variants}
    for f in fns.values():
        for _ in range(10):
            f()
    times: dict = {v: [] for v in variants}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(steps):
                fns[v]()
            dist.barrier()
            times[v].append((time.perf_counter() - t0) / steps)
    if rank == 0:
        base = times.get("local")
        for v in variants:
            line = (f"{v:>10}: {statistics.median(times[v]) * 1e6:8.0f} us/step (best "
                    f"{min(times[v]) * 1e6:.0f})")
            if base and v != "local":
                cost = [t / b - 1 for t, b in zip(times[v], base)]
                line += f"  averaging cost: median {100 * statistics.median(cost):.1f}%"
            print(line)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
