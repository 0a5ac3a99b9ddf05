"""Adagrad, PyTorch's rule (with learning-rate decay)."""

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


class Adagrad(Optimizer):
    """Adagrad: with g the gradient (negated if maximize) and t the step count,
    g += weight_decay * w; s += g^2; w -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps).
    Each group is updated in one C++ call.

    >>> w = gd.zeros(1, requires_grad=True)
    >>> opt = gd.optim.Adagrad([w], lr=1.0)
    >>> for _ in range(300):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> abs(w.item() - 3) < 0.01
    True
    """

    _param_shaped_state = ("sum",)

    def __init__(self, params: Any, lr: Any = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, *, maximize: bool = False) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "maximize": maximize}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p: Any, group: dict) -> None:
        state = self.state[p]
        state["step"] = _step_tensor()
        state["sum"] = _zeros_like(p, float(group["initial_accumulator_value"]))

    def _check_group(self, group: dict) -> None:
        for key, what in (("lr", "learning rate"), ("lr_decay", "lr_decay value"),
                          ("weight_decay", "weight_decay value"),
                          ("initial_accumulator_value", "initial_accumulator_value value"),
                          ("eps", "epsilon value")):
            value = _check_number(group[key], key)
            if not 0.0 <= value:
                raise ValueError(f"Invalid {what}: {value}")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adagrad step for every group; returns closure() if given (evaluated first)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for batch in _batches(group["params"]):
                sums, steps = [], []
                for p in batch.params:
                    state = self.state[p]
                    if "sum" not in state:  # a parameter added after construction
                        self._init_state(p, group)
                    sums.append(state["sum"]._data)
                    steps.append(float(state["step"]._data) + 1.0)
                _core.adagrad_step(batch.arrays, batch.grads, sums, steps,
                                   _check_number(group["lr"], "lr"), float(group["lr_decay"]),
                                   float(group["eps"]), float(group["weight_decay"]),
                                   bool(group["maximize"]))
                batch.finish()
                for p in batch.params:
                    _increment(self.state[p]["step"])
        return loss


__all__ = ["Adagrad"]
