"""Training-step benchmark: graddesc eager vs hand-tuned NumPy vs PyTorch eager (issue 5 table).

A step is zero_grad, forward, loss, backward, SGD update. Prints medians (microseconds) and
ratios measured in this one process, plus the 2-thread speedup at batch 256 and the steady-state
memory of a 1,000-step loop; saves benchmarks/results/step.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
         python benchmarks/bench_step.py
"""

from __future__ import annotations

import resource
import sys

import graddesc as gd
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

    gd.set_num_threads(2)
    two = _bench.median_seconds(_bench.graddesc_step([784, 256, 128, 10], 256, "ce")) * 1e6
    one = rows[0][1]
    out["batch256_two_threads_us"] = two
    print(f"\nMLP batch 256, 2 threads: {two:.1f} us ({one / two:.2f}x graddesc's 1-thread time)")
    gd.set_num_threads(1)
    mem = steady_memory()
    out["memory"] = mem
    print(f"peak RSS {mem['peak_rss_after_warmup_mb']:.1f} MB after warm-up, "
          f"{mem['peak_rss_after_mb']:.1f} MB after {mem['steps']} more steps")
    path = save_json("step", out)
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
