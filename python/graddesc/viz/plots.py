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
              label: Optional[str] = None, *, epoch_loss: Any = None, epoch_steps: Any = None,
              train_accuracy: Any = None, test_accuracy: Any = None) -> Any:
    """Plots the raw per-step loss, with its epoch means and per-epoch accuracy when given.

    Args:
        history: a fit History or a sequence of per-step losses.
        path: save the figure there (PNG, SVG, PDF by extension) when given.
        ax: draw into this matplotlib Axes (default: a new figure).
        log: logarithmic loss axis when every loss is positive.
        label: legend label of the per-step curve.
        epoch_loss: mean loss of each epoch, drawn at the step that ends the epoch (default: a
            History's ``epoch_loss``).
        epoch_steps: the step count at the end of each epoch (default: the steps split evenly
            over the epochs).
        train_accuracy, test_accuracy: accuracy after each epoch, on a second axis (0 to 1).

    Returns the loss Axes (the accuracy axis, when drawn, is its twin).

    >>> ax = gd.viz.plot_loss([2.0, 1.0, 0.8, 0.5], epoch_loss=[1.5, 0.65],
    ...                       test_accuracy=[0.6, 0.8])
    >>> [line.get_label() for line in ax.lines]
    ['loss per step', 'epoch mean']
    """
    plt = _pyplot()
    losses = np.asarray(getattr(history, "loss", history), dtype=float)
    if losses.ndim != 1:
        raise ValueError(f"plot_loss: expected a 1-d sequence of losses, got shape {losses.shape}")
    if epoch_loss is None and getattr(history, "epoch_loss", None):
        epoch_loss = history.epoch_loss
    n_epochs = max((len(v) for v in (epoch_loss, train_accuracy, test_accuracy) if v is not None),
                   default=0)
    for name, v in (("epoch_loss", epoch_loss), ("train_accuracy", train_accuracy),
                    ("test_accuracy", test_accuracy), ("epoch_steps", epoch_steps)):
        if v is not None and len(v) != n_epochs:
            raise ValueError(f"plot_loss: {name} has {len(v)} values, expected one per epoch "
                             f"({n_epochs})")
    if epoch_steps is None:
        ends = np.round(len(losses) * np.arange(1, n_epochs + 1) / max(n_epochs, 1))
    else:
        ends = np.asarray(epoch_steps, dtype=float)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.8, alpha=0.6,
            label=label or "loss per step")
    if epoch_loss is not None:
        ax.plot(ends, np.asarray(epoch_loss, dtype=float), "o-", ms=3, lw=1.5, color="C1",
                label="epoch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log and losses.size and np.all(losses > 0):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if train_accuracy is not None or test_accuracy is not None:
        acc = ax.twinx()
        for v, name, color in ((train_accuracy, "train accuracy", "C2"),
                               (test_accuracy, "test accuracy", "C3")):
            if v is not None:
                acc.plot(ends, np.asarray(v, dtype=float), "s-", ms=3, lw=1.2, color=color,
                         label=name)
        acc.set_ylim(0.0, 1.0)
        acc.set_ylabel("accuracy")
        h2, l2 = acc.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if label or len(handles) > 1:
        ax.legend(handles, labels, loc="center right")
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

    >>> ax = gd.viz.plot_landscape(lambda a, b: a ** 2 + 3 * b ** 2, (-1, 1, -1, 1),
    ...                             {"GD": np.array([[0.8, 0.8], [0.4, 0.1], [0.0, 0.0]])})
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('w1', 'w2')
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
