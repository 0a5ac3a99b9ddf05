"""gradcheck: analytic gradients (backward) against central finite differences in float64."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graddesc._tensor import Tensor
from graddesc.autograd.engine import InvalidGradientError, grad
from graddesc.autograd.grad_mode import enable_grad, no_grad


class GradcheckError(RuntimeError):
    """Raised by gradcheck when analytic and numeric Jacobians disagree."""


def _as_tuple(inputs: Any) -> tuple:
    """inputs as a tuple: a tuple or list as it is, anything else (one Tensor) as one element,
    never split along its first axis."""
    if isinstance(inputs, tuple):
        return inputs
    return tuple(inputs) if isinstance(inputs, list) else (inputs,)


def _outputs(fn: Callable, inputs: tuple) -> tuple:
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o for o in outs if isinstance(o, Tensor) and o._data.dtype.kind == "f")


def _numeric_jacobians(fn: Callable, inputs: tuple, eps: float) -> list:
    """For each differentiable input k: J_k[out_flat_index, in_flat_index]."""
    with no_grad():
        outs = _outputs(fn, inputs)
        n_out = sum(o._data.size for o in outs)
        jacs = []
        for x in inputs:
            if not _diff(x):
                jacs.append(None)
                continue
            flat = x._data.reshape(-1) if x._data.flags.c_contiguous else None
            if flat is None:
                raise ValueError("gradcheck: inputs must be C-contiguous tensors")
            J = np.zeros((n_out, flat.size))
            for j in range(flat.size):
                orig = flat[j]
                flat[j] = orig + eps
                plus = np.concatenate([o._data.ravel().astype(np.float64)
                                       for o in _outputs(fn, inputs)]) if n_out else np.zeros(0)
                flat[j] = orig - eps
                minus = np.concatenate([o._data.ravel().astype(np.float64)
                                        for o in _outputs(fn, inputs)]) if n_out else np.zeros(0)
                flat[j] = orig
                J[:, j] = (plus - minus) / (2 * eps)
            jacs.append(J)
    return jacs


def _diff(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


def _analytic_jacobians(fn: Callable, inputs: tuple) -> list:
    outs = _outputs(fn, inputs)
    diff = [x for x in inputs if _diff(x)]
    n_out = sum(o._data.size for o in outs)
    jacs = [np.zeros((n_out, x._data.size)) if _diff(x) else None for x in inputs]
    row = 0
    for o in outs:
        for i in range(o._data.size):
            if not o.requires_grad:
                row += 1
                continue
            seed = np.zeros(o._data.shape, dtype=o._data.dtype)
            seed.reshape(-1)[i] = 1.0
            gs = grad(o, diff, Tensor._make(seed), retain_graph=True, allow_unused=True)
            k = 0
            for j, x in enumerate(inputs):
                if _diff(x):
                    if gs[k] is not None:
                        jacs[j][row] = gs[k]._data.reshape(-1)
                    k += 1
            row += 1
    return jacs


def gradcheck(func: Callable, inputs: Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True, **_ignored: Any) -> bool:
    """Checks backward against central differences; inputs that require grad should be float64.

    On failure it names the input, the worst element, and the analytic and numeric values.

    >>> x = gd.randn(3, dtype=gd.float64, requires_grad=True)
    >>> gd.autograd.gradcheck(lambda t: (t * t).sum(), (x,))
    True
    """
    ins = _as_tuple(inputs)
    for k, x in enumerate(ins):
        if _diff(x) and x._data.dtype != np.float64:
            import warnings

            warnings.warn(f"gradcheck: input {k} is {x.dtype}, not float64; the check may fail "
                          "from rounding alone", UserWarning, stacklevel=2)
    if not any(_diff(x) for x in ins):
        raise ValueError("gradcheck expects at least one input tensor to require gradient")
    numeric = _numeric_jacobians(func, ins, eps)
    try:
        analytic = _analytic_jacobians(func, ins)
    except InvalidGradientError:
        # a backward that returns a gradient of the wrong shape or count fails the check
        if raise_exception:
            raise
        return False
    for k, (jn, ja) in enumerate(zip(numeric, analytic)):
        if jn is None:
            continue
        with np.errstate(invalid="ignore"):
            err = np.abs(ja - jn) - (atol + rtol * np.abs(jn))
            bad = (err > 0) | (np.isnan(ja) != np.isnan(jn))
        if bad.any():
            score = np.where(bad, np.nan_to_num(err, nan=np.inf), -np.inf)
            o, i = np.unravel_index(score.argmax(), err.shape)
            shape = ins[k].shape
            idx = np.unravel_index(i, shape) if len(shape) else ()
            msg = (f"Jacobian mismatch at output element {o} with respect to input {k} (shape "
                   f"{tuple(shape)}) at element {tuple(int(v) for v in idx)}: analytic "
                   f"{float(ja[o, i])!r}, numeric {float(jn[o, i])!r} (atol={atol}, rtol={rtol})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def gradgradcheck(func: Callable, inputs: Any, grad_outputs: Any = None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """gradcheck of the gradient: checks second derivatives (backward of backward).

    >>> x = gd.randn(3, dtype=gd.float64, requires_grad=True)
    >>> gd.autograd.gradgradcheck(lambda t: (t ** 3).sum(), (x,))
    True
    """
    ins = _as_tuple(inputs)
    outs = _outputs(func, ins)
    rng = np.random.default_rng(0)
    if grad_outputs is None:
        grad_outputs = tuple(Tensor._make(rng.standard_normal(o._data.shape)
                                          .astype(o._data.dtype), True) for o in outs)
    gos = _as_tuple(grad_outputs)
    n = len(ins)

    def first(*args: Any) -> tuple:
        xs, gs = args[:n], args[n:]
        with enable_grad():
            o = _outputs(func, xs)
            diff = [x for x in xs if _diff(x)]
            res = grad(o, diff, gs, create_graph=True, allow_unused=True)
        return tuple(r if r is not None else (d * 0.0).sum() for r, d in zip(res, diff))

    return gradcheck(first, ins + gos, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
