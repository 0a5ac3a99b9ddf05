"""gd.fit: the lecture's training loop (zero_grad, forward, loss, backward, step) with a history.

Each step: `optimizer.zero_grad()`, `out = model(x)`, `loss = loss_fn(out, y)`, check that the
loss is finite, `loss.backward()`, `optimizer.step()`. A non-finite loss raises
NonFiniteLossError (a FloatingPointError) before backward, so the parameters stay as they were
after the last completed step.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import numpy as np

from graddesc._tensor import Tensor


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; raised before that step's backward and update.

    Attributes: `step` (1-based number of the failing step), `epoch` (1-based), `loss` (the
    value), `history` (the History up to the last completed step, `history.steps == step - 1`).
    """

    def __init__(self, message: str, step: int, epoch: int, loss: float,
                 history: History) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.loss = loss
        self.history = history


class History:
    """What fit recorded.

    Attributes:
        loss: the loss of every step, as floats (loss[k] is evaluated at params[k]).
        epoch_loss: per epoch, the mean of its step losses (unweighted by batch size); when a
            callback stops training mid-epoch, the last entry covers the steps that ran.
        params: with record_params=True, the flattened parameters (NumPy, one vector of all
            parameters concatenated in `model.parameters()` order): params[0] before training,
            params[k] after step k, so len(params) == steps + 1. Empty otherwise.
        steps: the number of completed steps (optimizer updates).
        epochs: the number of epochs run (== len(epoch_loss)); a NaN stop doesn't count the
            epoch it happened in.
    """

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.epoch_loss: list[float] = []
        self.params: list[np.ndarray] = []
        self.steps = 0
        self.epochs = 0

    def __repr__(self) -> str:
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        return f"History(steps={self.steps}, epochs={self.epochs}{last})"


def fit(model: Callable[[Any], Any], loss_fn: Callable[[Any, Any], Tensor], data: Any,
        optimizer: Any, epochs: int = 1, *, progress: bool = True, record_params: bool = False,
        callback: Callable[[History], Any] | None = None, desc: str = "fit",
        file: TextIO | None = None, compile: bool = False) -> History:  # noqa: A002
    """Trains `model` by gradient descent and returns the History.

    Args:
        model: a callable (usually an nn.Module) mapping a batch x to predictions.
        loss_fn: `loss_fn(model(x), y)` returns a one-element Tensor.
        data: a DataLoader, any re-iterable of (x, y) batches (a list works; a generator only
            lasts one epoch), or a tuple (X, y) of Tensors meaning one full batch per epoch.
        optimizer: has `zero_grad()` and `step()` (a graddesc.optim optimizer).
        epochs: passes over `data` (>= 0).
        progress: show a progress bar on `file` (tqdm when installed, else a built-in text bar).
        record_params: keep the flattened parameter vector after every step (History.params).
        callback: called as callback(history) after every step; returning True stops training.
        desc: label of the progress bar.
        file: where the progress bar goes (default sys.stderr).
        compile: record zero_grad + forward + loss + backward once per batch shape with
            graddesc.compile and replay it in C++ afterwards (bitwise equal results; steps that
            cannot be captured run eagerly after one warning). The optimizer step stays outside
            so that a non-finite loss still stops training before any update.

    Raises:
        NonFiniteLossError (a FloatingPointError): the loss is NaN/Inf; the message names the
            step and epoch, and the parameters are those after the previous step.
        ValueError / TypeError: invalid arguments, malformed batches, a non-scalar loss, or an
            iterable that yields no batches.

    >>> model = nn.Linear(2, 1)
    >>> X, y = gd.randn(64, 2), gd.randn(64, 1)
    >>> opt = gd.optim.SGD(model.parameters(), lr=0.1)
    >>> history = gd.fit(model, nn.MSELoss(), (X, y), opt, epochs=20, progress=False)
    >>> history.steps, history.loss[-1] < history.loss[0]
    (20, True)
    """
    if not callable(model):
        raise TypeError(f"fit: model must be callable, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"fit: loss_fn must be callable, got {type(loss_fn).__name__}")
    for method in ("zero_grad", "step"):
        if not callable(getattr(optimizer, method, None)):
            raise TypeError(f"fit: optimizer must have a {method}() method, got "
                            f"{type(optimizer).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
        raise TypeError(f"fit: epochs must be an int, got {type(epochs).__name__}")
    if epochs < 0:
        raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
    if callback is not None and not callable(callback):
        raise TypeError(f"fit: callback must be callable, got {type(callback).__name__}")
    batches = _as_batches(data)
    fwd_bwd = None
    if compile:
        from graddesc._compile import compile as _compile

        def forward_backward(x: Any, y: Any) -> Any:
            optimizer.zero_grad()
            out = loss_fn(model(x), y)
            out.backward()
            return out

        fwd_bwd = _compile(forward_backward)
    # a DistributedDataParallel model: a replay runs no backward hooks, so the compiled step
    # leaves local gradients and fit averages them across ranks before the optimizer step
    ddp_step = getattr(model, "_compiled_step", None) if compile else None
    params = _parameters(model, optimizer) if record_params else []
    history = History()
    if record_params:
        history.params.append(_flatten(params))
    try:
        per_epoch: int | None = len(batches)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    total = per_epoch * int(epochs) if per_epoch is not None else None
    bar = _make_bar(total, desc, file if file is not None else sys.stderr) if progress else None
    if hasattr(model, "train") and callable(model.train):
        model.train()
    stop = False
    try:
        for epoch in range(1, int(epochs) + 1):
            epoch_losses: list[float] = []
            for batch_no, batch in enumerate(batches, start=1):
                x, y = _unpack(batch, history.steps + 1)
                if ddp_step is not None:
                    with ddp_step():
                        loss = fwd_bwd(x, y)
                elif fwd_bwd is not None:
                    loss = fwd_bwd(x, y)
                else:
                    optimizer.zero_grad()
                    loss = loss_fn(model(x), y)
                value = _loss_value(loss, history.steps + 1)
                if not math.isfinite(value):
                    step = history.steps + 1
                    where = f"batch {batch_no}" + (f"/{per_epoch}" if per_epoch else "")
                    raise NonFiniteLossError(
                        f"fit: the loss is {value} at step {step} (epoch {epoch}/{epochs}, "
                        f"{where}); stopped before its backward and update, so the parameters "
                        f"are those after step {step - 1}", step, epoch, value, history)
                if fwd_bwd is None:
                    loss.backward()
                elif ddp_step is not None:
                    model.synchronize_gradients()
                optimizer.step()
                history.steps += 1
                history.loss.append(value)
                epoch_losses.append(value)
                if record_params:
                    history.params.append(_flatten(params))
                if bar is not None:
                    bar.update(epoch, value)
                if callback is not None and callback(history) is True:
                    stop = True
                    break
            if not epoch_losses:
                hint = ("an iterator or generator is used up after one pass; pass a DataLoader or "
                        "a list of batches" if epoch > 1 else "is the dataset empty, or "
                        "drop_last=True with batch_size > len(dataset)?")
                raise ValueError(f"fit: data yielded no batches in epoch {epoch} ({hint})")
            history.epoch_loss.append(sum(epoch_losses) / len(epoch_losses))
            history.epochs += 1
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    return history


def _as_batches(data: Any) -> Iterable:
    if (isinstance(data, tuple) and len(data) == 2
            and all(isinstance(t, Tensor) for t in data)):
        return [data]  # full batch
    if isinstance(data, Tensor) or not hasattr(data, "__iter__"):
        raise TypeError(f"fit: data must be a DataLoader, an iterable of (x, y) batches or a "
                        f"tuple (X, y) of Tensors, got {type(data).__name__}")
    return data


def _unpack(batch: Any, step: int) -> tuple:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    n = len(batch) if isinstance(batch, (tuple, list)) else type(batch).__name__
    raise ValueError(f"fit: step {step}: each batch must be a pair (x, y), got {n}"
                     + (" elements" if isinstance(n, int) else ""))


def _loss_value(loss: Any, step: int) -> float:
    if not isinstance(loss, Tensor):
        raise TypeError(f"fit: step {step}: loss_fn must return a Tensor, got "
                        f"{type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"fit: step {step}: loss_fn must return a one-element Tensor, got shape "
                         f"{tuple(loss.shape)} (use reduction='mean' or 'sum')")
    return float(loss._data.reshape(()))


def _parameters(model: Any, optimizer: Any) -> list:
    if hasattr(model, "parameters") and callable(model.parameters):
        params = list(model.parameters())
    else:
        params = [p for g in getattr(optimizer, "param_groups", []) for p in g["params"]]
    if not params:
        raise ValueError("fit: record_params=True but the model has no parameters (and the "
                         "optimizer has no param_groups)")
    return params


def _flatten(params: list) -> np.ndarray:
    return np.concatenate([p._data.ravel() for p in params])


# ---- progress bars ---------------------------------------------------------------------------
def _make_bar(total: int | None, desc: str, file: TextIO) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, desc, file)
    return _TqdmBar(tqdm(total=total, desc=desc, file=file, unit="step", dynamic_ncols=True))


class _TqdmBar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, epoch: int, loss: float) -> None:
        self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class _TextBar:
    """A one-line bar redrawn with '\\r' at most every `interval` seconds, then a newline."""

    width = 30

    def __init__(self, total: int | None, desc: str, file: TextIO,
                 interval: float = 0.1) -> None:
        self.total, self.desc, self.file, self.interval = total, desc, file, interval
        self.n = 0
        self.epoch = 0
        self.loss = float("nan")
        self.start = time.perf_counter()
        self.last = -math.inf
        self.drawn = False

    def update(self, epoch: int, loss: float) -> None:
        self.n += 1
        self.epoch, self.loss = epoch, loss
        now = time.perf_counter()
        if now - self.last >= self.interval or self.n == self.total:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if self.total:
            done = int(self.width * self.n / self.total)
            bar = "#" * done + "." * (self.width - done)
            head = f"{self.desc} [{bar}] {self.n}/{self.total}"
        else:
            head = f"{self.desc} {self.n} steps"
        self.file.write(f"\r{head} epoch {self.epoch} loss {self.loss:.4g} "
                        f"{elapsed:.1f}s {rate:.0f} step/s")
        self.file.flush()
        self.drawn = True

    def close(self) -> None:
        if self.n:
            self._draw(time.perf_counter())
        if self.drawn:
            self.file.write("\n")
            self.file.flush()
