"""Lecture demos (`python -m graddesc demo NAME`):

- sgd-vs-gd: the lecture's Figure 3: full-batch GD, SGD and minibatch SGD trajectories over the
  contours of a 2-parameter linear-regression loss.
- zeroth-order: loss versus number of cost evaluations, SPSA against backprop, as the dimension
  grows (gradient-free methods pay per dimension; backprop does not).
- preconditioned: a scalar learning rate against a matrix one (eta = inverse Hessian) on an
  ill-conditioned quadratic.
- actor-critic: a black-box, non-differentiable cost is approximated by a small differentiable
  critic trained on sampled costs, and the model improves by backpropagating through the critic;
  compared with zeroth-order optimisation on cost evaluations used.
Each writes its figures (when matplotlib is installed) and a summary into an output folder.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable

import numpy as np

import graddesc as gd


def _out_dir(args: argparse.Namespace) -> str:
    d = args.out or os.path.join("runs", f"demo-{args.name}")
    os.makedirs(d, exist_ok=True)
    return d


def _try_plot(fn: Callable[[], Any]) -> bool:
    try:
        fn()
        return True
    except ImportError:
        print("(matplotlib not installed: no figure; pip install 'graddesc[plot]')")
        return False


# ---- sgd-vs-gd ------------------------------------------------------------------------------
def linear_regression_data(n: int = 100, seed: int = 0) -> tuple:
    """y = 2 x - 1 + noise, x ~ U(-1, 1): two parameters (slope w1, intercept w2)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = 2.0 * x - 1.0 + 0.3 * rng.standard_normal(n)
    return x, y


def sgd_vs_gd(args: argparse.Namespace) -> dict:
    x, y = linear_regression_data(seed=args.seed)
    X = gd.tensor(x[:, None])
    Y = gd.tensor(y[:, None])
    w0 = np.array([-1.5, 1.5])
    runs = {"full-batch GD": len(x), "minibatch SGD (10)": 10, "SGD (1)": 1}
    trajectories, finals = {}, {}
    for label, bs in runs.items():
        gd.manual_seed(args.seed)
        model = gd.nn.Linear(1, 1).double()
        with gd.no_grad():
            model.weight.fill_(w0[0])
            model.bias.fill_(w0[1])
        opt = gd.optim.SGD(model.parameters(), lr=0.1 if bs > 1 else 0.02)
        loader = gd.data.DataLoader(gd.data.TensorDataset(X, Y), batch_size=bs, shuffle=True,
                                    generator=gd.Generator().manual_seed(args.seed))
        epochs = 60 if bs > 1 else 3
        h = gd.fit(model, gd.nn.MSELoss(), loader, opt, epochs=epochs, progress=False,
                   record_params=True)
        traj = np.array(h.params)[:, :2]
        trajectories[label] = traj
        finals[label] = {"w1": float(traj[-1, 0]), "w2": float(traj[-1, 1]),
                         "steps": h.steps,
                         "loss": float(np.mean((traj[-1, 0] * x + traj[-1, 1] - y) ** 2))}

    def loss(W1: np.ndarray, W2: np.ndarray) -> np.ndarray:
        r = W1[..., None] * x + W2[..., None] - y
        return (r * r).mean(-1)

    d = _out_dir(args)
    _try_plot(lambda: gd.viz.plot_landscape(
        loss, (-2.0, 3.5, -2.5, 2.0), trajectories, path=os.path.join(d, "sgd_vs_gd.png"),
        title="average loss L(S, w) and trajectories"))
    ls = np.linalg.lstsq(np.c_[x, np.ones_like(x)], y, rcond=None)[0]
    return {"least_squares": {"w1": float(ls[0]), "w2": float(ls[1])}, "runs": finals}


# ---- zeroth-order ---------------------------------------------------------------------------
def _quadratic(dim: int, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    eig = np.linspace(1.0, 4.0, dim)
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    A = (Q * eig) @ Q.T
    target = rng.standard_normal(dim)
    return A, target


def zeroth_order(args: argparse.Namespace) -> dict:
    results = {}
    curves = {}
    for dim in (2, 8, 32, 128):
        A, t = _quadratic(dim, args.seed)
        At, tt = gd.tensor(A), gd.tensor(t)

        def f(w: Any, At: Any = At, tt: Any = tt) -> Any:
            d = w - tt
            return 0.5 * (d @ (At @ d))

        budget = 4000
        f0 = float(f(gd.zeros(dim, dtype=gd.float64)))
        goal = 1e-3 * f0
        # backprop: one cost evaluation (forward) + one backward per step
        w = gd.zeros(dim, dtype=gd.float64, requires_grad=True)
        opt = gd.optim.SGD([w], lr=0.2)
        evals_bp, curve_bp = None, []
        for k in range(1, budget + 1):
            opt.zero_grad()
            v = f(w)
            v.backward()
            opt.step()
            curve_bp.append((k, float(v)))
            if evals_bp is None and float(v) < goal:
                evals_bp = k
                break
        # SPSA: two evaluations per step, no gradient
        w2 = gd.zeros(dim, dtype=gd.float64, requires_grad=True)
        # SPSA's estimate has variance ~ dim |grad|^2: a stable step shrinks like 1 / (L dim)
        zo = gd.optim.ZerothOrder([w2], lr=0.25 / (dim + 2), estimator="spsa", eps=1e-3,
                                  generator=gd.Generator().manual_seed(args.seed))
        evals_zo, curve_zo = None, []
        while zo.num_evaluations < budget * 10:
            with gd.no_grad():
                v = zo.step(lambda w2=w2: f(w2))
            curve_zo.append((zo.num_evaluations, float(v)))
            if float(v) < goal:
                evals_zo = zo.num_evaluations
                break
        results[dim] = {"backprop_evaluations": evals_bp, "spsa_evaluations": evals_zo}
        curves[dim] = (curve_bp, curve_zo)

    d = _out_dir(args)

    def plot() -> None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for dim, (bp, zo) in curves.items():
            ax.plot(*zip(*bp), "-", label=f"backprop d={dim}")
            ax.plot(*zip(*zo), "--", label=f"SPSA d={dim}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cost evaluations")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
        fig.savefig(os.path.join(d, "zeroth_order.png"), dpi=120, bbox_inches="tight")
        plt.close(fig)

    _try_plot(plot)
    return {"evaluations_to_reach_1e-3_of_initial_loss": results}


# ---- preconditioned -------------------------------------------------------------------------
def preconditioned(args: argparse.Namespace) -> dict:
    H = np.array([[100.0, 0.0], [0.0, 1.0]])
    R = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    H = R @ H @ R.T  # ill-conditioned (condition number 100) and rotated
    Ht = gd.tensor(H)
    w_star = np.array([1.0, -1.0])
    ws = gd.tensor(w_star)

    def f(w: Any) -> Any:
        d = w - ws
        return 0.5 * (d @ (Ht @ d))

    out, traj = {}, {}
    for label, lr in (("scalar eta = 0.019", 0.019), ("matrix eta = H^-1", np.linalg.inv(H))):
        w = gd.tensor([-1.0, 1.5], dtype=gd.float64, requires_grad=True)
        opt = gd.optim.SGD([w], lr=gd.tensor(lr) if isinstance(lr, np.ndarray) else lr)
        path = [w.detach().numpy().copy()]
        steps = None
        for k in range(1, 3001):
            opt.zero_grad()
            v = f(w)
            v.backward()
            opt.step()
            path.append(w.detach().numpy().copy())
            if steps is None and float(f(w)) < 1e-8:
                steps = k
                break
        traj[label] = np.array(path)
        out[label] = {"steps_to_1e-8": steps, "final": path[-1].tolist()}

    def loss(W1: np.ndarray, W2: np.ndarray) -> np.ndarray:
        D = np.stack([W1 - w_star[0], W2 - w_star[1]], -1)
        return 0.5 * np.einsum("...i,ij,...j->...", D, H, D)

    d = _out_dir(args)
    _try_plot(lambda: gd.viz.plot_landscape(loss, (-1.5, 2.0, -2.0, 2.0), traj,
                                            path=os.path.join(d, "preconditioned.png"),
                                            title="scalar vs matrix learning rate"))
    return out


# ---- actor-critic ---------------------------------------------------------------------------
def actor_critic(args: argparse.Namespace) -> dict:
    """Black-box cost c(a) = floor(10 ||a - a*||^2) / 10 (piecewise constant: its gradient is 0
    almost everywhere, so backprop through c itself cannot work)."""
    dim = 4
    rng = np.random.default_rng(args.seed)
    a_star = rng.uniform(-1, 1, dim)

    def cost(a: np.ndarray) -> float:
        return float(np.floor(10.0 * np.sum((a - a_star) ** 2)) / 10.0)

    goal = 0.0  # cost 0 means ||a - a*||^2 < 0.1
    # critic: Q(a) ~ c(a), a small MLP trained on sampled costs around the current action
    gd.manual_seed(args.seed)
    critic = gd.nn.Sequential(gd.nn.Linear(dim, 32), gd.nn.Tanh(), gd.nn.Linear(32, 1)).double()
    copt = gd.optim.Adam(critic.parameters(), lr=1e-2)
    action = gd.zeros(dim, dtype=gd.float64, requires_grad=True)
    aopt = gd.optim.SGD([action], lr=0.05)
    evals_ac, samples_a, samples_c = 0, [], []
    for _ in range(300):
        base = action.detach().numpy()
        for _ in range(8):  # sample costs near the current action
            a = base + 0.3 * rng.standard_normal(dim)
            samples_a.append(a)
            samples_c.append(cost(a))
            evals_ac += 1
        A = gd.tensor(np.array(samples_a[-256:]))
        C = gd.tensor(np.array(samples_c[-256:])[:, None])
        for _ in range(20):
            copt.zero_grad()
            gd.nn.functional.mse_loss(critic(A), C).backward()
            copt.step()
        for _ in range(5):  # improve the action by backprop through the critic
            aopt.zero_grad()
            critic(action.unsqueeze(0)).sum().backward()
            aopt.step()
        if cost(action.detach().numpy()) <= goal:
            break
    final_ac = cost(action.detach().numpy())

    w = gd.zeros(dim, dtype=gd.float64, requires_grad=True)
    zo = gd.optim.ZerothOrder([w], lr=0.05, estimator="gaussian", num_samples=8, eps=0.3,
                              generator=gd.Generator().manual_seed(args.seed))
    while zo.num_evaluations < 20000:
        with gd.no_grad():
            zo.step(lambda: gd.tensor(cost(w.detach().numpy())))
        if cost(w.detach().numpy()) <= goal:
            break
    return {"goal_cost": goal,
            "actor_critic": {"cost_evaluations": evals_ac, "final_cost": final_ac},
            "zeroth_order_gaussian": {"cost_evaluations": zo.num_evaluations,
                                      "final_cost": cost(w.detach().numpy())}}


DEMOS = {"sgd-vs-gd": sgd_vs_gd, "zeroth-order": zeroth_order,
         "preconditioned": preconditioned, "actor-critic": actor_critic}


def run(args: argparse.Namespace) -> int:
    """Runs one demo, prints its summary as JSON and saves it with its figures."""
    summary = DEMOS[args.name](args)
    d = _out_dir(args)
    text = json.dumps(summary, indent=2, default=str)
    with open(os.path.join(d, "summary.json"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote {d}")
    return 0
