"""Learning-rate schedulers with PyTorch's formulas: StepLR, ExponentialLR, CosineAnnealingLR,
LambdaLR. Call scheduler.step() once per epoch, after optimizer.step().

Like PyTorch, StepLR, ExponentialLR and CosineAnnealingLR update the current lr recursively
(so they compose with other changes of the lr); step(epoch) uses the closed form instead.
A diagonal or matrix SGD learning rate is scaled as a whole.
"""

from __future__ import annotations

import math
import types
import warnings
from typing import Any, Callable

import numpy as np

from graddesc import _compile_state
from graddesc._tensor import Tensor
from graddesc.optim.optimizer import Optimizer

_EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where "
    "possible. Please use `scheduler.step()` to step the scheduler. During the deprecation, if "
    "epoch is different from None, the closed form is used instead of the new chainable form, "
    "where available."
)


def _copy_lr(v: Any) -> Any:
    if isinstance(v, Tensor):
        return Tensor._make(v._data.copy())
    if isinstance(v, np.ndarray):
        return v.copy()
    return v


def _group_lrs(optimizer: Optimizer, key: str = "lr") -> list:
    return [_copy_lr(group[key]) for group in optimizer.param_groups]


def _set_group_lr(group: dict, value: Any) -> None:
    """A one-element Tensor lr is filled in place (as PyTorch does); anything else replaced."""
    current = group["lr"]
    if isinstance(current, Tensor) and current._data.size == 1:
        v = value._data if isinstance(value, Tensor) else np.asarray(value)
        if v.size == 1:
            current._data[...] = v.reshape(current._data.shape)
            current._vc[0] += 1
            return
    group["lr"] = value


class LRScheduler:
    """Base class: subclasses compute the next learning rates in get_lr().

    Args:
        optimizer: the optimizer whose param_groups' 'lr' is set.
        last_epoch: the index of the last epoch; -1 starts a new schedule (and records each
            group's 'initial_lr'), a value >= 0 resumes one.

    A new schedule subclasses LRScheduler and computes the epoch's rates in get_lr():

    >>> class Halving(gd.optim.lr_scheduler.LRScheduler):
    ...     def get_lr(self):
    ...         return [g["initial_lr"] * 0.5 ** self.last_epoch
    ...                 for g in self.optimizer.param_groups]
    >>> opt = gd.optim.SGD([gd.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = Halving(opt)
    >>> for epoch in range(2):
    ...     opt.step()  # (the epoch's training)
    ...     sched.step()
    >>> sched.get_last_lr()
    [0.25]
    """

    _get_lr_called_within_step = False
    _is_initial = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, (int, np.integer)):
            raise TypeError(f"last_epoch must be an int, got {type(last_epoch).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", _copy_lr(group["lr"]))
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   "when resuming scheduler with last_epoch >= 0")
        self.base_lrs = _group_lrs(optimizer, "initial_lr")
        self.last_epoch = int(last_epoch)
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def state_dict(self) -> dict:
        """Every attribute except the optimizer."""
        return {k: [_copy_lr(x) for x in v] if isinstance(v, list) else _copy_lr(v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        self.__dict__.update(state_dict)

    def get_last_lr(self) -> list:
        """The learning rates of the groups after the last step()."""
        return self._last_lr

    def get_lr(self) -> list:
        raise NotImplementedError

    def step(self, epoch: int | None = None) -> None:
        """Advances the schedule by one epoch (call after optimizer.step())."""
        # inside a gd.compile recording: a replay would not advance the schedule
        _compile_state.python_side_effect("an lr scheduler's step()")
        if self._step_count == 1 and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
                          "You should call them in the opposite order: `optimizer.step()` "
                          "before `lr_scheduler.step()`. Failure to do this will result in "
                          "skipping the first value of the learning rate schedule.",
                          UserWarning, stacklevel=2)
        self._step_count += 1
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                warnings.warn(_EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
                self.last_epoch = int(epoch)
                closed = getattr(self, "_get_closed_form_lr", None)
                values = closed() if closed is not None else self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values):
            _set_group_lr(group, lr)
        self._last_lr = _group_lrs(self.optimizer)


_LRScheduler = LRScheduler


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(epoch); lr_lambda is one function or one per group.

    >>> opt = gd.optim.SGD([gd.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = gd.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1 / (epoch + 1))
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 4))
    ...     opt.step()  # (the epoch's training)
    ...     sched.step()
    >>> lrs
    [1.0, 0.5, 0.3333, 0.25, 0.2]
    """

    def __init__(self, optimizer: Optimizer,
                 lr_lambda: Callable[[int], float] | list, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        if not isinstance(lr_lambda, (list, tuple)):
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        else:
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got "
                                 f"{len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        for f in self.lr_lambdas:
            if not callable(f):
                raise TypeError(f"lr_lambda must be callable, got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict:
        """As the base class; a lambda is saved only when it is a callable object (its
        __dict__), never a plain function."""
        sd = {k: v for k, v in LRScheduler.state_dict(self).items() if k != "lr_lambdas"}
        sd["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                            for fn in self.lr_lambdas]
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        lr_lambdas = state_dict.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        super().load_state_dict(state_dict)
        for fn, saved in zip(self.lr_lambdas, lr_lambdas):
            if saved is not None:
                fn.__dict__.update(saved)

    def get_lr(self) -> list:
        return [base_lr * lmbda(self.last_epoch)
                for lmbda, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """Multiplies the lr by gamma every step_size epochs:
    lr = initial_lr * gamma ** (epoch // step_size).

    >>> opt = gd.optim.SGD([gd.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = gd.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 4))
    ...     opt.step()  # (the epoch's training)
    ...     sched.step()
    >>> lrs
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) or \
                step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _group_lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiplies the lr by gamma every epoch: lr = initial_lr * gamma ** epoch.

    >>> opt = gd.optim.SGD([gd.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = gd.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 4))
    ...     opt.step()  # (the epoch's training)
    ...     sched.step()
    >>> lrs
    [1.0, 0.5, 0.25, 0.125, 0.0625]
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        if self._is_initial:
            return _group_lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list:
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from initial_lr down to eta_min over T_max epochs:
    lr = eta_min + (initial_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2, computed recursively
    as PyTorch does (and rising again after T_max: no restarts).

    >>> opt = gd.optim.SGD([gd.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = gd.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 4))
    ...     opt.step()  # (the epoch's training)
    ...     sched.step()
    >>> lrs
    [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if isinstance(T_max, bool) or not isinstance(T_max, (int, np.integer)) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max = int(T_max)
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        if self._is_initial:
            return _group_lrs(self.optimizer)
        if self._step_count == 1 and self.last_epoch > 0:
            return [self.eta_min + (base_lr - self.eta_min)
                    * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                    for base_lr in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [group["lr"] + (base_lr - self.eta_min)
                    * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups)]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
                * (group["lr"] - self.eta_min) + self.eta_min
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list:
        return [self.eta_min + (base_lr - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LambdaLR", "StepLR"]
