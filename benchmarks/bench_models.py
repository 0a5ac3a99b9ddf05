"""Model zoo benchmark (issue 15): one training step of each model in benchmarks/zoo.py, written
once for a library module and run on graddesc (eager and gd.compile) and PyTorch (eager, and
torch.compile with --torch-compile), plus a JAX jit of the same step when jax and optax are
installed (JAX needs its own functional definitions, below). Batch 1, 32, 256, float32, one
thread for every library. Same-run medians (microseconds) and ratios: torch eager / graddesc
compiled and torch eager / graddesc eager (above 1: graddesc is faster), each the median of
the ratios of several interleaved rounds (every library timed once per round, back to back).
Whether gd.compile captured the step is counted from its fallback warnings. Saves
benchmarks/results/models.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
         python benchmarks/bench_models.py [--torch-compile] [--no-jax] [--models a,b] [--no-pin]
         [--rounds 5] [--min-time 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import warnings
from typing import Any, Callable

import numpy as np

import graddesc as gd
import zoo
from _common import median_time, print_table, save_json

# (key, numerator, denominator): ratios above 1 mean graddesc is faster
RATIOS = [("torch_eager_over_compiled", "torch_eager", "graddesc_compiled"),
          ("torch_eager_over_eager", "torch_eager", "graddesc_eager"),
          ("jax_over_compiled", "jax_jit", "graddesc_compiled")]

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")


def pin_to_one_cpu() -> str:
    """Pins the whole process to one CPU. The XLA flags above do not keep jax 0.10's CPU
    runtime on one thread (pinned, its resmlp step at batch 256 took 1.4x longer than unpinned),
    so the only fair "one thread for every library" is one CPU for the process."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def graddesc_steps(name: str, batch: int) -> tuple:
    """(eager step, compiled step, fallback warnings) as zero-argument callables on fixed data."""
    rng = np.random.default_rng(0)
    m_e = zoo.MODELS[name](gd, batch)
    m_c = zoo.MODELS[name](gd, batch)
    x, y = m_e.data(rng, 1.0)
    xe, ye = gd.from_numpy(x), gd.from_numpy(y)
    comp = gd.compile(m_c.step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            comp(xe, ye)
    fallbacks = [str(w.message) for w in caught if "graddesc.compile" in str(w.message)]
    return (lambda: m_e.step(xe, ye)), (lambda: comp(xe, ye)), fallbacks


def torch_steps(name: str, batch: int, with_compile: bool) -> tuple:
    """(eager step, torch.compile step or None, its error) for the same model on PyTorch."""
    import torch

    rng = np.random.default_rng(0)
    m = zoo.MODELS[name](torch, batch)
    x, y = m.data(rng, 1.0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    eager = lambda: m.step(xt, yt)  # noqa: E731
    compiled, error = None, None
    if with_compile:
        try:
            m2 = zoo.MODELS[name](torch, batch)
            fn = torch.compile(m2.step)
            for _ in range(3):
                fn(xt, yt)
            compiled = lambda: fn(xt, yt)  # noqa: E731
        except Exception as e:  # noqa: BLE001 - whatever torch.compile raises, report it
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return eager, compiled, error


# ---- JAX: the same models as pure functions, one jitted step (value_and_grad + optax) -----------
def jax_step(name: str, batch: int) -> Callable[[], Any] | None:
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return None
    rng = np.random.default_rng(0)

    def lin(n_in: int, n_out: int) -> dict:
        bound = 1.0 / np.sqrt(n_in)
        return {"w": jnp.asarray(rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)),
                "b": jnp.asarray(rng.uniform(-bound, bound, n_out).astype(np.float32))}

    def ap(p: dict, h: Any) -> Any:
        return h @ p["w"].T + p["b"]

    def ce(logits: Any, y: Any) -> Any:
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    def norm(h: Any) -> Any:
        h = h - h.mean(1, keepdims=True)
        return h / ((h * h).mean(1, keepdims=True) + 1e-5) ** 0.5

    m = zoo.MODELS[name](gd, batch)  # (only for its data)
    x, y = m.data(rng, 1.0)
    if name == "resmlp":
        params = [lin(64, 256), lin(256, 256), lin(256, 256), lin(256, 10)]
        opt = optax.adam(1e-3)

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            h = ap(p[0], x)
            for blk in p[1:3]:
                h = h + jnp.tanh(ap(blk, norm(h)))
            return ce(ap(p[3], norm(h)), y)
    elif name == "autoencoder":
        sizes = [784, 128, 32, 128, 784]
        params = [lin(i, o) for i, o in zip(sizes[:-1], sizes[1:])]
        opt = optax.sgd(0.05, momentum=0.9)

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            h = x
            for layer in p:
                h = jax.nn.sigmoid(ap(layer, h))
            return jnp.mean((h - y) ** 2)
    elif name == "logreg":
        params = [lin(784, 10)]
        opt = optax.sgd(0.1)

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            return ce(ap(p[0], x), y) + 1e-4 * (p[0]["w"] * p[0]["w"]).sum()
    elif name == "lecture":
        params = [lin(784, 256), lin(256, 128), lin(128, 10)]
        opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            h = jax.nn.relu(ap(p[0], x))
            h = jax.nn.relu(ap(p[1], h))
            return ce(ap(p[2], h), y)
    elif name == "prototypes":
        params = [lin(784, 32), jnp.asarray(rng.standard_normal((10, 32)).astype(np.float32))]
        opt = optax.sgd(0.01)

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            z = ap(p[0], x)
            d = (z * z).sum(1, keepdims=True) - 2 * (z @ p[1].T) + (p[1] * p[1]).sum(1)
            return ce(-d, y)
    elif name == "polyreg":
        params = [jnp.asarray((0.1 * rng.standard_normal((3, 1))).astype(np.float32)),
                  jnp.zeros(1, jnp.float32)]
        opt = optax.sgd(0.01)

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            feats = jnp.concatenate([x, x ** 2, x ** 3], 1)
            return (((feats @ p[0] + p[1]) - y) ** 2).mean()
    else:
        return None
    state = [params, opt.init(params)]

    @jax.jit
    def step(p: Any, s: Any, x: Any, y: Any) -> tuple:
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def run() -> Any:
        state[0], state[1], loss = step(state[0], state[1], xj, yj)
        return loss.block_until_ready()

    run()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch-compile", action="store_true", help="also time torch.compile "
                    "(slow to compile)")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--models", default=",".join(zoo.MODELS))
    ap.add_argument("--batches", default=",".join(map(str, zoo.BATCHES)))
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="seconds of timing per library and step, split over the rounds")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds; ratios are medians of per-round ratios")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args()
    print("process " + ("not pinned (--no-pin)" if args.no_pin else pin_to_one_cpu()))
    gd.set_num_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rows, table = [], []
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            eager, compiled, fallbacks = graddesc_steps(name, batch)
            row: dict = {"model": name, "batch": batch, "captured": not fallbacks,
                         "fallback_warnings": fallbacks}
            timers: dict = {"graddesc_eager": eager, "graddesc_compiled": compiled}
            if torch is not None:
                t_eager, t_comp, err = torch_steps(name, batch, args.torch_compile)
                timers["torch_eager"] = t_eager
                if t_comp is not None:
                    timers["torch_compile"] = t_comp
                if err:
                    row["torch_compile_error"] = err
            if not args.no_jax:
                j = jax_step(name, batch)
                if j is not None:
                    timers["jax_jit"] = j
            # interleaved rounds: in each round every library is timed once, back to back, so a
            # round's ratios compare times taken under the same machine load; the ratios printed
            # are the medians of the per-round ratios (robust to load drifting between rounds),
            # the times the medians of the per-round times
            samples: dict = {k: [] for k in timers}
            for _ in range(args.rounds):
                for k, fn in timers.items():
                    samples[k].append(median_time(fn, min_time=args.min_time / args.rounds)
                                      * 1e6)
            us = {k: statistics.median(v) for k, v in samples.items()}
            row.update({f"{k}_us": v for k, v in us.items()})
            row["rounds"] = {k: [round(t, 2) for t in v] for k, v in samples.items()}
            for key, num, den in RATIOS:
                if num in samples and den in samples:
                    per_round = [a / b for a, b in zip(samples[num], samples[den])]
                    row[key] = statistics.median(per_round)
                    row[key + "_range"] = [min(per_round), max(per_round)]
            rows.append(row)
            cells = [f"{us[k]:.1f}" if k in us else "-" for k in
                     ("graddesc_eager", "graddesc_compiled", "torch_eager", "torch_compile",
                      "jax_jit")]
            cells += [f"{row[k]:.2f}x" if k in row else "-" for k in
                      ("torch_eager_over_compiled", "torch_eager_over_eager",
                       "jax_over_compiled")]
            table.append([name, batch, "yes" if row["captured"] else f"NO ({len(fallbacks)})",
                          *cells])
            print(*table[-1], sep=" | ", flush=True)
    print()
    print_table(["model", "batch", "captured", "gd eager us", "gd compiled us", "torch us",
                 "torch.compile us", "jax.jit us", "torch/compiled", "torch/eager", "jax/compiled"],
                table)
    captured = sum(r["captured"] for r in rows)
    print(f"\ncaptured: {captured} of {len(rows)} steps")
    path = save_json("models", {"rows": rows, "captured": captured, "steps": len(rows),
                                "isa": gd.config()["isa"], "threads": 1})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
