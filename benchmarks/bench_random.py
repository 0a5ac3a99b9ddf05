"""A VAE training step with its reparameterisation draw (randn_like) inside: graddesc compiled
(the draw captured as a host-fed input of the program), graddesc eager, PyTorch eager.

VAE 784-256-(mu, logvar: 20)-256-784, ReLU, MSE reconstruction + KL, Adam. For each batch
(1, 32): same-run medians in microseconds, one thread, pinned to one CPU; "no draw" is the
compiled step with zeros_like(mu) for the noise (what the draw itself costs). Whether gd.compile
captured the step is counted from its fallback warnings. Saves benchmarks/results/random.json.

Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
         python benchmarks/bench_random.py [--batches 1,32]
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

D, H, Z = 784, 256, 20


def make_step(lib: Any, batch: int, draw: bool = True) -> tuple:
    """(step, x) for `lib` (graddesc or torch): one Adam step of the VAE (draw=False: the
    noise is zeros_like(mu) instead of randn_like(mu), to show what the draws cost)."""
    rng = np.random.default_rng(0)
    F = lib.nn.functional

    def linear(i: int, o: int) -> Any:
        lin = lib.nn.Linear(i, o)
        with lib.no_grad():
            lin.weight.copy_(lib.from_numpy(
                (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)))
            lin.bias.zero_()
        return lin

    enc, mu_l, lv_l, dec1, dec2 = linear(D, H), linear(H, Z), linear(H, Z), linear(Z, H), \
        linear(H, D)
    params = [p for m in (enc, mu_l, lv_l, dec1, dec2) for p in m.parameters()]
    opt = lib.optim.Adam(params, lr=1e-3)
    x = lib.from_numpy(rng.random((batch, D)).astype(np.float32))

    def step(x: Any) -> Any:
        opt.zero_grad()
        h = F.relu(enc(x))
        mu, logvar = mu_l(h), lv_l(h)
        eps = lib.randn_like(mu) if draw else lib.zeros_like(mu)
        z = mu + lib.exp(0.5 * logvar) * eps
        recon = dec2(F.relu(dec1(z)))
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1).mean()
        loss = F.mse_loss(recon, x) + 1e-3 * kl
        loss.backward()
        opt.step()
        return loss

    return step, x


def timed(fn: Callable[[], Any]) -> float:
    return median_time(fn) * 1e6


def measure(batch: int, torch: Any) -> dict:
    e_step, x = make_step(gd, batch)
    t_eager = timed(lambda: e_step(x))
    c_step, cx = make_step(gd, batch)
    comp = gd.compile(c_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            comp(cx)
    captured = not any("graddesc.compile" in str(w.message) for w in caught)
    t_comp = timed(lambda: comp(cx))
    n_step, nx = make_step(gd, batch, draw=False)
    comp_nodraw = gd.compile(n_step)
    t_nodraw = timed(lambda: comp_nodraw(nx))
    t_torch = None
    if torch is not None:
        ts, tx = make_step(torch, batch)
        t_torch = timed(lambda: ts(tx))
    return {"batch": batch, "captured": captured, "compiled_us": t_comp, "eager_us": t_eager,
            "torch_us": t_torch, "compiled_no_draw_us": t_nodraw, "stats": comp.stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,32")
    args = ap.parse_args()
    pinned = pin_to_one_cpu()
    gd.set_num_threads(1)
    torch = torch_one_thread()
    print(f"CPU: {cpu_name()}  ({pinned}), graddesc ISA {gd._core.isa()}")
    rows, out = [], []
    for batch in [int(b) for b in args.batches.split(",")]:
        r = measure(batch, torch)
        t = r["torch_us"]
        rows.append([batch, "yes" if r["captured"] else "NO", f"{r['compiled_us']:.1f}",
                     f"{r['compiled_no_draw_us']:.1f}",
                     f"{r['eager_us']:.1f}", f"{t:.1f}" if t else "-",
                     f"{r['eager_us'] / r['compiled_us']:.2f}x",
                     f"{t / r['compiled_us']:.2f}x" if t else "-"])
        out.append(r)
    print_table(["batch", "captured", "gd compiled us", "compiled, no draw us", "gd eager us",
                 "torch us",
                 "eager/compiled", "torch/compiled"], rows)
    path = save_json("random", {"cpu": cpu_name(), "rows": out})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
