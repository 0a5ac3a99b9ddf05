"""SGD: (stochastic) gradient descent with momentum, Nesterov momentum and weight decay, and
(graddesc) a diagonal or matrix learning rate (a preconditioner)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graddesc import _aligned, _core
from graddesc._tensor import Tensor
from graddesc.autograd.grad_mode import enable_grad
from graddesc.optim.optimizer import Optimizer, _batches, _check_number

_INF = float("inf")


class _LrArray:
    """A validated diagonal (N,) or matrix (N, N) learning rate (float64), with its conversions
    to the parameters' dtype cached."""

    __slots__ = ("_converted", "_scratch", "kind", "values")

    def __init__(self, kind: str, values: np.ndarray) -> None:
        self.kind = kind
        self.values = values
        self._converted: dict = {}
        self._scratch: dict = {}

    def direction(self, dtype: np.dtype, n: int) -> np.ndarray:
        """The (n,) buffer a matrix step writes its direction into: one per dtype and size, so
        that every step (and gd.compile's replay of it) reads it at the same address."""
        d = self._scratch.get((dtype, n))
        if d is None:
            d = self._scratch[(dtype, n)] = _aligned.empty((n,), dtype)
        return d

    def for_params(self, dtype: np.dtype, has_grad: list, sizes: list) -> np.ndarray:
        """The learning rate in `dtype`, restricted to the parameters that have a gradient
        (the principal sub-matrix: the others are neither read nor moved)."""
        a = self._converted.get(dtype)
        if a is None:
            a = np.ascontiguousarray(self.values, dtype=dtype)
            self._converted[dtype] = a
        if all(has_grad):
            return a
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        idx = np.concatenate([np.arange(offsets[i], offsets[i + 1])
                              for i, h in enumerate(has_grad) if h] or [np.zeros(0, np.int64)])
        return np.ascontiguousarray(a[idx] if self.kind == "diag" else a[np.ix_(idx, idx)])


def _validate_lr_array(arr: np.ndarray, n: int) -> _LrArray:
    """Checks a diagonal (n,) or symmetric positive semi-definite (n, n) learning rate."""
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"SGD: lr must be a real number or an array of real numbers, got dtype "
                        f"{arr.dtype}")
    a = np.array(arr, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError("SGD: lr must be a number, a 1-d array (a diagonal learning rate) or a "
                         f"2-d matrix, got an array of shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("SGD: lr contains NaN or Inf")
    if a.ndim == 1:
        if a.shape[0] != n:
            raise ValueError("SGD: a 1-d lr is a diagonal learning rate with one entry per "
                             f"parameter element: expected length {n} (the total number of "
                             f"elements of the group's parameters), got {a.shape[0]}")
        if a.size and a.min() < 0:
            i = int(np.argmin(a))
            raise ValueError("SGD: a diagonal lr must be non-negative (positive semi-definite), "
                             f"but lr[{i}] = {a[i]!r}")
        return _LrArray("diag", a)
    if a.shape != (n, n):
        raise ValueError(f"SGD: a matrix lr must have shape ({n}, {n}) (n = the total number of "
                         f"elements of the group's parameters), got {a.shape}")
    scale = float(np.abs(a).max()) if a.size else 0.0
    asym = float(np.abs(a - a.T).max()) if a.size else 0.0
    if asym > 1e-8 * scale:
        raise ValueError("SGD: a matrix lr must be symmetric, but max |lr - lr.T| = "
                         f"{asym:.3g} ({asym / scale:.3g} relative to max |lr|; tolerance 1e-8)")
    if a.size:
        eig = np.linalg.eigvalsh(0.5 * (a + a.T))
        spectral = float(np.abs(eig).max())
        if eig[0] < -1e-10 * spectral:
            raise ValueError("SGD: a matrix lr must be positive semi-definite, but its smallest "
                             f"eigenvalue is {eig[0]:.6g} (largest |eigenvalue| {spectral:.6g})")
    return _LrArray("matrix", a)


class SGD(Optimizer):
    """Gradient descent, PyTorch's rule: with g the gradient (negated if maximize),
    g += weight_decay * w; b = momentum * b + (1 - dampening) * g (b = g on the first step);
    d = g + momentum * b (nesterov) or b; w -= lr * d.

    **(gd)** lr may also be a 1-d array of length N (a diagonal learning rate) or a symmetric
    positive semi-definite (N, N) matrix eta over the concatenation of the group's parameters
    flattened in order (N elements in all): then w -= eta @ d. eta = inverse Hessian is Newton's
    method; identity * lr is plain SGD. Parameters without a gradient are skipped (for a matrix,
    the principal sub-matrix of the others is used). The whole group is updated in one C++ call.
    An array lr is checked (and converted to the parameters' dtype) once per array object: assign
    a new array to group['lr'] rather than changing one in place.

    >>> w = gd.tensor([4.0], requires_grad=True)
    >>> opt = gd.optim.SGD([w], lr=0.25)
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     (w ** 2).sum().backward()  # the gradient 2w: each step halves w
    ...     opt.step()
    >>> w
    tensor([0.5000], requires_grad=True)

    A matrix learning rate: the inverse Hessian makes one step Newton's method.

    >>> w = gd.tensor([1.0, 1.0], requires_grad=True)
    >>> H = np.array([[2.0, 0.0], [0.0, 8.0]])  # the Hessian of w0^2 + 4 w1^2
    >>> opt = gd.optim.SGD([w], lr=np.linalg.inv(H))
    >>> (w[0] ** 2 + 4 * w[1] ** 2).backward()
    >>> opt.step()
    >>> w
    tensor([0., 0.], requires_grad=True)
    """

    _param_shaped_state = ("momentum_buffer",)
    # a diagonal or matrix lr is read (validated, converted) once per array object, so
    # gd.compile may keep the converted array a recording saw (see _lr)
    _array_lr_read_once = True

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False) -> None:
        self._lr_cache: dict = {}
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        momentum = _check_number(group["momentum"], "momentum")
        dampening = _check_number(group["dampening"], "dampening")
        weight_decay = _check_number(group["weight_decay"], "weight_decay")
        self._lr(group)
        if not momentum >= 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _lr(self, group: dict) -> Any:
        """The group's learning rate: a float, or a validated _LrArray (cached per lr object)."""
        lr = group["lr"]
        if type(lr) is float and 0.0 <= lr < _INF:  # the usual case: a valid plain number
            return lr
        if isinstance(lr, (Tensor, np.ndarray, list, tuple)):
            arr = lr._data if isinstance(lr, Tensor) else np.asarray(lr)
            if arr.size != 1:
                n = sum(p._data.size for p in group["params"])
                cached = self._lr_cache.get(id(group))
                if cached is not None and cached[0] is lr and cached[1] == n:
                    return cached[2]
                spec = _validate_lr_array(arr, n)
                if len({p._data.dtype for p in group["params"]}) > 1:
                    raise ValueError("SGD: a diagonal or matrix lr needs all parameters of its "
                                     "group to have the same dtype")
                self._lr_cache[id(group)] = (lr, n, spec)
                return spec
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"SGD: lr must be a real number, got dtype {arr.dtype}")
            lr = arr.reshape(()).item()
        value = _check_number(lr, "lr")
        if not value >= 0.0 or value == float("inf"):
            raise ValueError(f"Invalid learning rate: {value}")
        return value

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SGD step for every group; returns closure() if given (evaluated first)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = self._lr(group)
            momentum = float(group["momentum"])
            for batch in _batches(group["params"], check=False):
                direction = None
                if isinstance(lr, _LrArray):
                    params = group["params"]
                    # (in the byte order of the kernel's arrays: see _Batch.check_layout)
                    dtype = batch.arrays[0].dtype.newbyteorder("=")
                    lr_arg: Any = lr.for_params(dtype, [p.grad is not None for p in params],
                                                [p._data.size for p in params])
                    if lr.kind == "matrix":
                        direction = lr.direction(dtype, lr_arg.shape[0])
                else:
                    lr_arg = lr
                bufs = None
                if momentum != 0:
                    states = [self.state[p] for p in batch.params]
                    old = [st.get("momentum_buffer") for st in states]
                    bufs = [None if b is None else b._data for b in old]
                new = batch.call(_core.sgd_step, bufs, lr_arg, momentum,
                                 float(group["dampening"]), float(group["weight_decay"]),
                                 bool(group["nesterov"]), bool(group["maximize"]), direction)
                batch.finish()
                if momentum != 0:  # the buffers the kernel started (a buffer is b_new = g)
                    for st, b_old, b_new in zip(states, old, new or []):
                        if b_old is None:
                            st["momentum_buffer"] = Tensor._make(b_new)
        return loss


__all__ = ["SGD"]
