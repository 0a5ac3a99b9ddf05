"""(gd) ZerothOrder: gradient descent with a gradient estimated from loss values alone.

The black-box setting of reinforcement learning and simulation: the loss can be evaluated but
not differentiated. With x all parameters flattened (n elements), f the loss and eps the
perturbation size, the estimators of grad f(x) are
- 'spsa' (simultaneous perturbation): delta with independent +-1 entries,
  g = (f(x + eps delta) - f(x - eps delta)) / (2 eps) * delta                 2 evaluations
- 'gaussian' (Gaussian smoothing, Nesterov & Spokoiny): u ~ N(0, I),
  g = (f(x + eps u) - f(x)) / eps * u                                          1 evaluation
- 'forward' coordinate differences: g_i = (f(x + eps e_i) - f(x)) / eps       n evaluations
- 'central' coordinate differences: g_i = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)
                                                                               2n evaluations
The random estimators are averaged over num_samples draws; the coordinate ones are
deterministic and computed once. Each step also evaluates f(x) (returned), then takes the step
w -= lr * g for every group (one C++ call per group, the SGD kernel).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graddesc import _core, _random
from graddesc._tensor import Tensor
from graddesc.autograd.grad_mode import no_grad
from graddesc.optim.optimizer import Optimizer, _c_array, _check_number

_ESTIMATORS = ("spsa", "forward", "central", "gaussian")


class NonFiniteLossError(RuntimeError):
    """A closure returned NaN or +-Inf at a point ZerothOrder evaluated (`value`, `point`); the
    parameters are as they were before step()."""

    def __init__(self, message: str, value: float, point: str) -> None:
        super().__init__(message)
        self.value, self.point = value, point


class ZerothOrder(Optimizer):
    """Gradient descent on loss values only (no backward). step(closure) calls closure() to
    evaluate the loss (a real number: an int or float but not a bool, a NumPy real scalar, or a
    one-element float Tensor; anything else is a TypeError) at perturbed parameters and returns
    the loss at the current point; a non-finite loss at any point raises RuntimeError and leaves
    the parameters unchanged. `num_evaluations` counts every closure call so far (the
    black-box cost).

    Args:
        params: parameters or parameter groups (each group may set its own lr and eps).
        lr: the step size.
        estimator: 'spsa', 'forward', 'central' or 'gaussian' (see the module docstring).
        num_samples: random perturbations averaged per step (spsa and gaussian).
        eps: the perturbation size.
        generator: a graddesc.Generator for the perturbations (default: the global one).

    >>> w = gd.zeros(2)  # no requires_grad: only loss values are used
    >>> target = gd.tensor([1.0, 2.0])
    >>> opt = gd.optim.ZerothOrder([w], lr=0.1, estimator="central")
    >>> def loss():
    ...     return ((w - target) ** 2).sum().item()
    >>> for _ in range(100):
    ...     _ = opt.step(loss)
    >>> [round(v, 2) for v in w.tolist()]
    [1.0, 2.0]
    """

    def __init__(self, params: Any, lr: Any = 1e-3, estimator: str = "spsa",
                 num_samples: int = 1, eps: float = 1e-3,
                 generator: _random.Generator | None = None) -> None:
        if estimator not in _ESTIMATORS:
            raise ValueError(f"ZerothOrder: estimator must be one of {', '.join(_ESTIMATORS)}, "
                             f"got {estimator!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
            raise TypeError(f"ZerothOrder: num_samples must be an int, got "
                            f"{type(num_samples).__name__}")
        if num_samples < 1:
            raise ValueError(f"ZerothOrder: num_samples must be >= 1, got {num_samples}")
        if generator is not None and not isinstance(generator, _random.Generator):
            raise TypeError("ZerothOrder: generator must be a graddesc.Generator, got "
                            f"{type(generator).__name__}")
        self.estimator = estimator
        self.num_samples = int(num_samples)
        self.generator = generator
        self.num_evaluations = 0
        super().__init__(params, {"lr": lr, "eps": eps})

    def _check_group(self, group: dict) -> None:
        lr = _check_number(group["lr"], "lr")
        if not 0.0 <= lr < float("inf"):
            raise ValueError(f"Invalid learning rate: {lr}")
        eps = _check_number(group["eps"], "eps")
        if not 0.0 < eps < float("inf"):
            raise ValueError(f"ZerothOrder: eps must be positive and finite, got {eps}")

    def _loss(self, closure: Callable[[], Any], point: str) -> tuple:
        """(closure's result, its value as a float) at the current parameters, named `point`
        in errors. The result must be a real number and finite: a NaN or Inf would become the
        parameters' new values through the estimate, and a str or bool (float("3.5"), True)
        would be taken as a constant loss with a zero gradient."""
        with no_grad():
            out = closure()
        self.num_evaluations += 1
        if isinstance(out, Tensor):
            if out._data.dtype.kind != "f" or out._data.size != 1:
                raise TypeError(f"ZerothOrder: the closure must return a real number, got a "
                                f"{out.dtype} Tensor of shape {tuple(out.shape)} at {point}")
            value = float(out._data.reshape(-1)[0])
        elif isinstance(out, (bool, np.bool_)) or not isinstance(
                out, (int, float, np.integer, np.floating)):
            raise TypeError(f"ZerothOrder: the closure must return a real number (an int, a "
                            f"float or a one-element float Tensor), got {type(out).__name__} "
                            f"{out!r:.40} at {point}")
        else:
            value = float(out)
        if not np.isfinite(value):
            raise NonFiniteLossError(
                f"ZerothOrder: the closure returned a non-finite loss ({value}) at {point} "
                f"(evaluation {self.num_evaluations}); the parameters are left as they were "
                "before step()", value, point)
        return out, value

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Estimates the gradient from closure() values and takes one step; returns the loss
        at the parameters before the step.

        closure() must return a real number; a non-finite value at any evaluated point raises
        RuntimeError and leaves the parameters exactly as they were."""
        if closure is None:
            raise TypeError("ZerothOrder.step needs a closure that returns the loss")
        params = [p for g in self.param_groups for p in g["params"]]
        for p in params:
            if not p._data.flags.writeable:
                raise ValueError("ZerothOrder: a parameter is read-only; it can't be updated "
                                 "in place")
        # x: the current point (exact copies, restored after each perturbation)
        x0 = [p._data.copy() for p in params]
        eps = [float(g["eps"]) for g in self.param_groups for _ in g["params"]]
        sizes = [a.size for a in x0]
        n = sum(sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        def evaluate(direction: np.ndarray | None, sign: float, point: str) -> float:
            """f(x + sign * eps * direction); the parameters are restored afterwards (also when
            the closure raises or its value is refused)."""
            if direction is not None:
                for i, p in enumerate(params):
                    u = direction[offsets[i]:offsets[i + 1]].reshape(x0[i].shape)
                    p._data[...] = x0[i] + (sign * eps[i]) * u
                    p._vc[0] += 1
            try:
                return self._loss(closure, point)[1]
            finally:
                if direction is not None:
                    for i, p in enumerate(params):
                        p._data[...] = x0[i]
                        p._vc[0] += 1

        loss, f0 = self._loss(closure, "the current point f(x)")
        # per-element perturbation sizes, for dividing by eps
        h = np.concatenate([np.full(s, e) for s, e in zip(sizes, eps)] or [np.zeros(0)])
        grad = np.zeros(n, dtype=np.float64)
        rng = _random._rng(self.generator)
        if self.estimator == "spsa":
            for s in range(self.num_samples):
                delta = rng.integers(0, 2, size=n).astype(np.float64) * 2.0 - 1.0
                diff = (evaluate(delta, 1.0, f"f(x + eps delta), sample {s + 1}")
                        - evaluate(delta, -1.0, f"f(x - eps delta), sample {s + 1}"))
                grad += diff / (2.0 * h) * delta
            grad /= self.num_samples
        elif self.estimator == "gaussian":
            for s in range(self.num_samples):
                u = rng.standard_normal(n)
                grad += (evaluate(u, 1.0, f"f(x + eps u), sample {s + 1}") - f0) / h * u
            grad /= self.num_samples
        else:
            e = np.zeros(n, dtype=np.float64)
            for k in range(n):
                e[k] = 1.0
                if self.estimator == "forward":
                    grad[k] = (evaluate(e, 1.0, f"f(x + eps e_{k})") - f0) / h[k]
                else:
                    grad[k] = (evaluate(e, 1.0, f"f(x + eps e_{k})")
                               - evaluate(e, -1.0, f"f(x - eps e_{k})")) / (2.0 * h[k])
                e[k] = 0.0

        if not np.isfinite(grad).all():  # finite losses whose differences overflow
            raise RuntimeError("ZerothOrder: the gradient estimate is not finite (the losses "
                               "differ by more than float64's range); the parameters are left "
                               "as they were before step()")
        # w -= lr * g, one SGD kernel call per group and dtype
        start = 0
        for group in self.param_groups:
            lr = _check_number(group["lr"], "lr")
            by_dtype: dict = {}
            for p in group["params"]:
                i = start
                start += 1
                g = grad[offsets[i]:offsets[i + 1]].reshape(p._data.shape).astype(p._data.dtype)
                by_dtype.setdefault(p._data.dtype, []).append((p, g))
            for items in by_dtype.values():
                arrays = [_c_array(p._data) for p, _ in items]
                _core.sgd_step(arrays, [g for _, g in items], None, lr)
                for (p, _), a in zip(items, arrays):
                    if a is not p._data:
                        p._data[...] = a
                    p._vc[0] += 1
        return loss


__all__ = ["ZerothOrder"]
