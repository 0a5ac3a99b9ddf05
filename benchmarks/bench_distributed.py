"""Data-parallel training over MPI: steps/s of 1 and 2 ranks against one 2-thread process, the
cost of gradient averaging, and all-reduce latency and bandwidth on this machine (loopback).

A step: zero_grad, forward, cross-entropy, backward, SGD update of an MLP 784-256-128-10
(DistributedDataParallel on the ranks). Rows:
  1x1  one rank of 1 thread, batch 256
  2x1  two ranks of 1 thread, global batch 256 (128 per rank), gradients averaged
  1x2  one process of 2 threads, batch 256 (no MPI)
  2x1 local, 128/rank: two ranks of 128 that do not average (the most 2x1 could reach)
  2x1 local / 2x1 ddp at 256 per rank: the same 2 ranks without and with the averaging
       (the averaging's share of the step); DDP reduces through MPI shared-memory windows
       (the default on one node); "ddp, Iallreduce" forces MPI_Iallreduce instead
       (shared_memory=False, the path ranks on several nodes take)
and all-reduce of float32 buffers from 4 B to 16 MiB between 2 ranks (graddesc's all_reduce
on a tensor, in place), and the time of DDP's own passes over the gradient (one process).
Each figure is the median (and the best) of several timed runs; the
ranks start each run together (barrier). Saves benchmarks/results/distributed.json.

Run: python benchmarks/bench_distributed.py   (starts mpiexec itself; needs
     pip install 'graddesc[distributed]'; as root it sets OMPI_ALLOW_RUN_AS_ROOT*)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
SIZES = [784, 256, 128, 10]


def _env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="self,sm,tcp", OMPI_MCA_btl_tcp_if_include="lo",
               GRADDESC_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS="1")
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    return env


def _run(ranks: int, threads: int, *args: str) -> dict:
    if ranks == 0:  # no MPI at all
        cmd = [sys.executable, HERE, "--worker", *args]
    else:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                               + os.environ.get("PATH", ""))
        if mpiexec is None:
            sys.exit("bench_distributed: mpiexec not found (pip install 'graddesc[distributed]')")
        cmd = [mpiexec, "-n", str(ranks), "--bind-to", "core", sys.executable, HERE,
               "--worker", *args]
    out = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"bench_distributed: {' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.exit(f"bench_distributed: no result from {' '.join(cmd)}:\n{out.stdout}\n{out.stderr}")


# ---- inside the job ----------------------------------------------------------------------------
def _worker(kind: str, batch: int, mpi: bool) -> None:
    import numpy as np

    import graddesc as gd

    dist = None
    rank, world = 0, 1
    if mpi:
        import graddesc.distributed as dist

        dist.init_process_group("mpi")
        rank, world = dist.get_rank(), dist.get_world_size()
    if kind == "allreduce":
        _allreduce(dist, rank)
        return
    gd.manual_seed(0)
    layers: list = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [gd.nn.Linear(a, b), gd.nn.ReLU()]
    model = gd.nn.Sequential(*layers[:-1])
    if kind == "ddp":
        net = dist.DistributedDataParallel(model)
    elif kind == "ddp-iallreduce":
        net = dist.DistributedDataParallel(model, shared_memory=False)
    else:
        net = model
    opt = gd.optim.SGD(list(model.parameters()), lr=0.01, momentum=0.9)
    loss_fn = gd.nn.CrossEntropyLoss()
    rng = np.random.default_rng(rank)
    x = gd.tensor(rng.standard_normal((batch, SIZES[0])).astype(np.float32))
    y = gd.tensor(rng.integers(0, SIZES[-1], batch))

    def step() -> None:
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    for _ in range(20):
        step()
    rates = []
    for _ in range(7):
        if dist is not None:
            dist.barrier()
        t0 = time.perf_counter()
        n = 40
        for _ in range(n):
            step()
        if dist is not None:
            dist.barrier()
        rates.append(n / (time.perf_counter() - t0))
    if rank == 0:
        print("RESULT " + json.dumps({"steps_per_s": statistics.median(rates),
                                      "best_steps_per_s": max(rates),
                                      "threads": gd.get_num_threads(), "ranks": world}))


def _allreduce(dist, rank: int) -> None:
    import numpy as np

    import graddesc as gd

    out = {}
    for nbytes in [4, 64, 1024, 16384, 2 ** 18, 2 ** 20, 2 ** 22, 2 ** 24]:
        t = gd.tensor(np.ones(nbytes // 4, dtype=np.float32))
        reps = max(5, min(2000, int(2e8 // max(nbytes, 1) // 50)))
        for _ in range(5):
            dist.all_reduce(t)
        samples = []
        for _ in range(5):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                dist.all_reduce(t)
            samples.append((time.perf_counter() - t0) / reps)
        out[nbytes] = [statistics.median(samples), min(samples)]
    if rank == 0:
        print("RESULT " + json.dumps(out))


def _passes() -> list:
    """DDP's memory passes per step for this MLP's gradient, timed in this process with
    ddp.py's own bucket code (2 ranks' shared-memory segments simulated by local arrays, so
    the cross-core transfers of a real job are not included): best of 7 runs of 200."""
    import numpy as np

    import graddesc as gd
    from graddesc.distributed import ddp

    gd.manual_seed(0)
    params = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        lin = gd.nn.Linear(a, b)
        params += [lin.weight, lin.bias]
    params = params[::-1]
    for p in params:
        p.grad = gd.tensor(np.random.default_rng(0).standard_normal(p.shape).astype(np.float32))
    n = sum(p.numel() for p in params) + len(params)
    bucket = ddp._Bucket(params, np.empty(n, dtype=np.float32))
    bucket.ins = [[np.zeros(n, dtype=np.float32) for _ in range(2)]]

    def put() -> None:
        bucket.dest = bucket.ins[0][0]
        for k, p in enumerate(params):
            bucket.put(k, p)

    def timed(f) -> float:
        best = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(200):
                f()
            best = min(best, (time.perf_counter() - t0) / 200)
        return best

    return [("copy the gradients into the bucket (hooks)", timed(put)),
            ("average 2 ranks' buckets into flat (n)", timed(lambda: bucket.average(0))),
            ("point .grad at the bucket views", timed(bucket.set_grads))]


# ---- the driver ------------------------------------------------------------------------------
def main() -> None:
    sys.path.insert(0, os.path.dirname(HERE))
    from _common import print_table, save_json

    rows = []
    res = {}
    for name, ranks, threads, args in [
        ("1x1", 1, 1, ("ddp", "256", "mpi")),
        ("2x1", 2, 1, ("ddp", "128", "mpi")),
        ("1x2", 0, 2, ("local", "256", "nompi")),
        ("2x1 local, 128/rank", 2, 1, ("local", "128", "mpi")),
        ("2x1 local, 256/rank", 2, 1, ("local", "256", "mpi")),
        ("2x1 ddp, 256/rank", 2, 1, ("ddp", "256", "mpi")),
        ("2x1 ddp, Iallreduce, 256/rank", 2, 1, ("ddp-iallreduce", "256", "mpi")),
    ]:
        r = _run(ranks, threads, *args)
        res[name] = r
        rows.append([name, f"{r['steps_per_s']:.1f}", f"{r['best_steps_per_s']:.1f}",
                     r["threads"], r["ranks"]])
    print_table(["config", "steps/s (median)", "steps/s (best run)", "threads/rank", "ranks"],
                rows)
    base = res["1x1"]["steps_per_s"]
    speedup = res["2x1"]["steps_per_s"] / base
    vs_threads = res["2x1"]["steps_per_s"] / res["1x2"]["steps_per_s"]
    overhead = res["2x1 local, 256/rank"]["steps_per_s"] / res["2x1 ddp, 256/rank"]["steps_per_s"] \
        - 1
    print(f"\n2x1 / 1x1 steps/s at global batch 256: {speedup:.2f}x (target >= 1.7x)")
    ceiling = res["2x1 local, 128/rank"]["steps_per_s"] / base
    print(f"  (2 ranks of 128 without averaging / 1x1: {ceiling:.2f}x, the ceiling of that "
          "ratio)")
    print(f"2x1 / 1x2 (two ranks vs two threads): {vs_threads:.2f}x")
    print(f"gradient averaging adds {100 * overhead:.1f}% to a step at 256 per rank "
          "(target <= 10%)")
    local = res["2x1 local, 256/rank"]["steps_per_s"]
    overhead_iar = local / res["2x1 ddp, Iallreduce, 256/rank"]["steps_per_s"] - 1
    print(f"  (with MPI_Iallreduce instead of shared memory: {100 * overhead_iar:.1f}%)")
    ar = _run(2, 1, "allreduce", "0", "mpi")
    print()
    arows = []
    for nbytes, (sec, best) in ar.items():
        n = int(nbytes)
        arows.append([n, f"{sec * 1e6:.1f}", f"{best * 1e6:.1f}", f"{n / best / 1e9:.2f}"])
    print_table(["bytes", "all_reduce us (median)", "us (best run)", "GB/s (bytes / best)"],
                arows)
    print("\nDDP's work per step on one rank's gradient (one process, no MPI):")
    passes = _passes()
    print_table(["pass", "us (best run)"], [[k, f"{v * 1e6:.1f}"] for k, v in passes])
    path = save_json("distributed", {"steps": res, "speedup_2x1_vs_1x1": speedup,
                                     "ratio_2x1_vs_1x2": vs_threads,
                                     "averaging_overhead_256_per_rank": overhead,
                                     "averaging_overhead_iallreduce": overhead_iar,
                                     "ceiling_2x1_local_128_vs_1x1": ceiling,
                                     "allreduce_seconds": ar,
                                     "ddp_passes_seconds": dict(passes)})
    print(f"\nsaved {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "mpi")
    else:
        main()
