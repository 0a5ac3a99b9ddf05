"""RMSprop, PyTorch's rule (optionally centered, with momentum)."""

from __future__ import annotations

from typing import Any, Callable

from graddesc import _core
from graddesc.autograd.grad_mode import enable_grad
from graddesc.optim.optimizer import (
    Optimizer,
    _batches,
    _check_number,
    _increment,
    _step_tensor,
    _zeros_like,
)


class RMSprop(Optimizer):
    """RMSprop: with g the gradient (negated if maximize), g += weight_decay * w;
    s = alpha s + (1 - alpha) g^2; centered: a = alpha a + (1 - alpha) g, r = sqrt(s - a^2) + eps,
    else r = sqrt(s) + eps; momentum: b = momentum b + g / r, w -= lr b; else w -= lr g / r.
    Each group is updated in one C++ call.

    >>> w = gd.zeros(1, requires_grad=True)
    >>> opt = gd.optim.RMSprop([w], lr=0.01)
    >>> for _ in range(500):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> abs(w.item() - 3) < 0.01
    True
    """

    _param_shaped_state = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params: Any, lr: Any = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                    "centered": centered, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        for key, what in (("lr", "learning rate"), ("eps", "epsilon"), ("momentum", "momentum"),
                          ("weight_decay", "weight_decay"), ("alpha", "alpha")):
            value = _check_number(group[key], key)
            if not 0.0 <= value:
                raise ValueError(f"Invalid {what} value: {value}" if key != "lr"
                                 else f"Invalid learning rate: {value}")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RMSprop step for every group; returns closure() if given (evaluated first)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = float(group["momentum"])
            centered = bool(group["centered"])
            for batch in _batches(group["params"]):
                sq, ga, buf = [], [], []
                for p in batch.params:
                    state = self.state[p]
                    if len(state) == 0:
                        state["step"] = _step_tensor()
                        state["square_avg"] = _zeros_like(p)
                    if momentum > 0 and "momentum_buffer" not in state:
                        state["momentum_buffer"] = _zeros_like(p)
                    if centered and "grad_avg" not in state:
                        state["grad_avg"] = _zeros_like(p)
                    sq.append(state["square_avg"]._data)
                    if momentum > 0:
                        buf.append(state["momentum_buffer"]._data)
                    if centered:
                        ga.append(state["grad_avg"]._data)
                _core.rmsprop_step(batch.arrays, batch.grads, sq, ga, buf,
                                   _check_number(group["lr"], "lr"), float(group["alpha"]),
                                   float(group["eps"]), float(group["weight_decay"]), momentum,
                                   centered, bool(group["maximize"]))
                batch.finish()
                for p in batch.params:
                    _increment(self.state[p]["step"])
        return loss


__all__ = ["RMSprop"]
