"""Adam and AdamW (decoupled weight decay), PyTorch's rule with bias correction and amsgrad."""

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


class Adam(Optimizer):
    """Adam: with g the gradient (negated if maximize) and t the step count,
    g += weight_decay * w (or, decoupled: w *= 1 - lr * weight_decay);
    m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2 (amsgrad: v_max = max(v_max, v));
    w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
    Each group is updated in one C++ call.

    >>> w = gd.zeros(1, requires_grad=True)
    >>> opt = gd.optim.Adam([w], lr=0.1)
    >>> for _ in range(300):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> abs(w.item() - 3) < 0.01
    True
    """

    _param_shaped_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        lr = _check_number(group["lr"], "lr")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        eps = _check_number(group["eps"], "eps")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        b1, b2 = _check_number(betas[0], "betas[0]"), _check_number(betas[1], "betas[1]")
        if not 0.0 <= b1 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {b1}")
        if not 0.0 <= b2 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {b2}")
        group["betas"] = (b1, b2)
        wd = _check_number(group["weight_decay"], "weight_decay")
        if not 0.0 <= wd:
            raise ValueError(f"Invalid weight_decay value: {wd}")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step for every group; returns closure() if given (evaluated first)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            amsgrad = bool(group["amsgrad"])
            for batch in _batches(group["params"]):
                m, v, vmax, steps = [], [], [], []
                for p in batch.params:
                    state = self.state[p]
                    if len(state) == 0:
                        state["step"] = _step_tensor()
                        state["exp_avg"] = _zeros_like(p)
                        state["exp_avg_sq"] = _zeros_like(p)
                        if amsgrad:
                            state["max_exp_avg_sq"] = _zeros_like(p)
                    if amsgrad and "max_exp_avg_sq" not in state:
                        state["max_exp_avg_sq"] = _zeros_like(p)
                    steps.append(float(state["step"]._data) + 1.0)
                    m.append(state["exp_avg"]._data)
                    v.append(state["exp_avg_sq"]._data)
                    if amsgrad:
                        vmax.append(state["max_exp_avg_sq"]._data)
                _core.adam_step(batch.arrays, batch.grads, m, v, vmax, steps,
                                _check_number(group["lr"], "lr"), float(beta1), float(beta2),
                                float(group["eps"]), float(group["weight_decay"]), amsgrad,
                                bool(group["maximize"]), bool(group["decoupled_weight_decay"]))
                batch.finish()
                for p in batch.params:
                    _increment(self.state[p]["step"])
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (w *= 1 - lr * weight_decay before the Adam step).

    >>> w = gd.zeros(1, requires_grad=True)
    >>> opt = gd.optim.AdamW([w], lr=0.1, weight_decay=0.0)
    >>> for _ in range(300):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> abs(w.item() - 3) < 0.01
    True
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


__all__ = ["Adam", "AdamW"]
