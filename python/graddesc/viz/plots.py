"""Matplotlib plots: loss curves and 2-d loss landscapes with GD/SGD/minibatch trajectories.
Needs the `plot` extra (pip install "graddesc[plot]")."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("graddesc.viz plots need matplotlib: pip install 'graddesc[plot]'") \
            from None
    return plt


def plot_loss(history: Any, path: Optional[str] = None, ax: Any = None, log: bool = True,
              label: Optional[str] = None) -> Any:
    """Plots per-step loss (a fit History or a sequence of numbers); saves to path if given."""
    plt = _pyplot()
    losses = np.asarray(getattr(history, "loss", history), dtype=float)
    if losses.ndim != 1:
        raise ValueError(f"plot_loss: expected a 1-d sequence of losses, got shape {losses.shape}")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(losses) + 1), losses, label=label, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log and losses.size and np.all(losses > 0):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if label:
        ax.legend()
    if path is not None:
        (fig or ax.figure).savefig(path, dpi=120, bbox_inches="tight")
        if fig is not None:
            plt.close(fig)
    return ax


def plot_landscape(loss: Callable[[np.ndarray, np.ndarray], np.ndarray], bounds: tuple,
                   trajectories: Optional[dict] = None, path: Optional[str] = None,
                   resolution: int = 120, ax: Any = None, title: Optional[str] = None) -> Any:
    """Contours of a 2-parameter loss with trajectories drawn over them.

    Args:
        loss: vectorised loss(W1, W2) over meshgrid arrays.
        bounds: (w1_min, w1_max, w2_min, w2_max).
        trajectories: {label: array (T, 2)} of parameter values visited.
    """
    plt = _pyplot()
    if len(bounds) != 4:
        raise ValueError("plot_landscape: bounds must be (w1_min, w1_max, w2_min, w2_max)")
    a = np.linspace(bounds[0], bounds[1], resolution)
    b = np.linspace(bounds[2], bounds[3], resolution)
    W1, W2 = np.meshgrid(a, b)
    Z = np.asarray(loss(W1, W2), dtype=float)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    levels = np.quantile(Z, np.linspace(0.0, 0.95, 25))
    ax.contour(W1, W2, Z, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    for label, traj in (trajectories or {}).items():
        t = np.asarray(traj, dtype=float)
        if t.ndim != 2 or t.shape[1] != 2:
            raise ValueError(f"plot_landscape: trajectory {label!r} must have shape (T, 2), got "
                             f"{t.shape}")
        ax.plot(t[:, 0], t[:, 1], "-o", ms=2, lw=1, label=label)
    ax.set_xlabel("w1")
    ax.set_ylabel("w2")
    if title:
        ax.set_title(title)
    if trajectories:
        ax.legend()
    if path is not None:
        (fig or ax.figure).savefig(path, dpi=120, bbox_inches="tight")
        if fig is not None:
            plt.close(fig)
    return ax
