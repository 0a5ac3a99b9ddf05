"""Training-step benchmark: graddesc eager vs hand-tuned NumPy vs PyTorch eager (issue 5 table).

A step is zero_grad, forward, loss, backward, SGD update. Prints medians (microseconds) and
ratios measured in this one process, plus the 2-thread speedup at batch 256 (interleaved
1-/2-thread pairs) and the steady-state memory of a 1,000-step loop; saves
benchmarks/results/step.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
         python benchmarks/bench_step.py
"""

from __future__ import annotations

import resource
import statistics
import sys
import time

import bandwidth
import graddesc as gd
import peak
from _common import print_table, save_json
from graddesc import _bench


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def steady_memory(steps: int = 1000) -> dict:
    """Peak RSS after 50 warm-up steps and after `steps` more (growth means leaks/new buffers)."""
    step = _bench.graddesc_step([784, 256, 128, 10], 256, "ce")
    for _ in range(50):
        step()
    before = peak_rss_mb()
    for _ in range(steps):
        step()
    return {"peak_rss_after_warmup_mb": before, "peak_rss_after_mb": peak_rss_mb(),
            "steps": steps}


def floors(rows: list) -> list:
    """Per workload, the physical floor of the compiled step: its compulsory memory traffic
    (every operand of every recorded kernel touched once) at the single-core bandwidth that
    benchmarks/bandwidth.py measures for the step's footprint, and its flops at the FMA peak that
    benchmarks/peak.py measures; the floor is the larger of the two. Also the kernels' own time
    (Program.profile: the replay without the Python call around it)."""
    bw = bandwidth.table()
    isa = gd.config()["isa"]
    gflops = peak.measure_peak([isa])[isa]["float32"]
    out = []
    for (label, sizes, batch, loss), row in zip(_bench.WORKLOADS, rows):
        prog = _bench.recorded_program(_bench.graddesc_step(sizes, batch, loss, compiled=True))
        traffic = prog.traffic()
        rd = sum(r for r, _ in traffic)
        wr = sum(w for _, w in traffic)
        fp = prog.footprint()
        mem = bandwidth.floor_seconds(rd, wr, fp, bw) * 1e6
        comp = sum(prog.flops()) / (gflops * 1e9) * 1e6
        kernels = sum(prog.profile(200, True)) * 1e6  # (as a replay runs: deferring)
        out.append({"workload": label, "read_kb": rd / 1e3, "written_kb": wr / 1e3,
                    "footprint_kb": fp / 1e3, "memory_floor_us": mem, "compute_floor_us": comp,
                    "floor_us": max(mem, comp), "kernels_us": kernels, "compiled_us": row[2],
                    "numpy_us": row[3], "peak_gflops": gflops})
    return out


def two_thread_speedups(pairs: int = 9, n: int = 20) -> dict:
    """1- and 2-thread times of the batch-256 MLP step, compiled and eager (and PyTorch's, when
    installed, for scale), from `pairs` interleaved pairs: each pair times n steps on 1 thread
    then n on 2 with the same step object, so a slow spell on this shared machine hits both
    halves of a pair; the speedup is the median of the per-pair ratios."""
    steps = {"graddesc compiled": (_bench.graddesc_step([784, 256, 128, 10], 256, "ce",
                                                        compiled=True), gd.set_num_threads),
             "graddesc eager": (_bench.graddesc_step([784, 256, 128, 10], 256, "ce"),
                                gd.set_num_threads)}
    torch_step = _bench.torch_step([784, 256, 128, 10], 256, "ce")
    if torch_step is not None:
        import torch

        steps["PyTorch"] = (torch_step, torch.set_num_threads)
    out = {}
    for name, (step, set_threads) in steps.items():
        t = {1: [], 2: []}
        for _ in range(pairs):
            for nt in (1, 2):
                set_threads(nt)
                for _ in range(3):
                    step()
                t0 = time.perf_counter()
                for _ in range(n):
                    step()
                t[nt].append((time.perf_counter() - t0) / n * 1e6)
        set_threads(1)
        out[name] = {"one_us": statistics.median(t[1]), "two_us": statistics.median(t[2]),
                     "speedup": statistics.median(a / b for a, b in zip(t[1], t[2]))}
    return out


def main() -> None:
    rows = _bench.run_table(threads=1)
    table, out = [], {"threads_1": []}
    for label, g, c, n, t in rows:
        out["threads_1"].append({"workload": label, "graddesc_eager_us": g,
                                 "graddesc_compiled_us": c, "numpy_us": n, "torch_us": t})
        table.append([label, f"{g:.1f}", f"{c:.1f}", f"{n:.1f}", f"{n / g:.2f}x",
                      f"{n / c:.2f}x", f"{t:.1f}" if t else "-", f"{t / g:.2f}x" if t else "-",
                      f"{t / c:.2f}x" if t else "-"])
    print("1 thread, float32, median us per step (ratio = baseline time / graddesc time; > 1 "
          "means graddesc is faster)")
    print_table(["workload", "eager", "compiled", "numpy", "numpy/eager", "numpy/compiled",
                 "torch", "torch/eager", "torch/compiled"], table)

    fl = floors(rows)
    out["floor"] = fl
    print("\ncompiled step vs its physical floor: max(memory = bytes every recorded kernel must "
          "move / single-core bandwidth at the step's footprint, compute = flops / FMA peak)")
    print_table(["workload", "read kB", "written kB", "footprint kB", "memory floor us",
                 "compute floor us", "kernels us", "compiled us", "compiled/floor",
                 "numpy/floor"],
                [[f["workload"], f"{f['read_kb']:.0f}", f"{f['written_kb']:.0f}",
                  f"{f['footprint_kb']:.0f}", f"{f['memory_floor_us']:.1f}",
                  f"{f['compute_floor_us']:.1f}", f"{f['kernels_us']:.1f}",
                  f"{f['compiled_us']:.1f}", f"{f['compiled_us'] / f['floor_us']:.2f}x",
                  f"{f['numpy_us'] / f['floor_us']:.2f}x"] for f in fl])

    out["batch256_two_threads"] = tt = two_thread_speedups()
    print("\nMLP batch 256, 2 threads against 1 (median of per-pair ratios over interleaved "
          "1-/2-thread pairs of one step object)")
    print_table(["step", "1 thread us", "2 threads us", "speedup"],
                [[k, f"{v['one_us']:.1f}", f"{v['two_us']:.1f}", f"{v['speedup']:.2f}x"]
                 for k, v in tt.items()])
    mem = steady_memory()
    out["memory"] = mem
    print(f"peak RSS {mem['peak_rss_after_warmup_mb']:.1f} MB after warm-up, "
          f"{mem['peak_rss_after_mb']:.1f} MB after {mem['steps']} more steps")
    path = save_json("step", out)
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
