"""Automatic differentiation: backward, grad, Function, gradcheck, functional Jacobians."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from graddesc import _compile_state
from graddesc.autograd import engine
from graddesc.autograd.function import Function, detect_anomaly
from graddesc.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)

__all__ = ["Function", "backward", "detect_anomaly", "enable_grad", "functional", "grad",
           "gradcheck", "gradgradcheck", "inference_mode", "is_grad_enabled", "no_grad",
           "set_grad_enabled"]


def _as_tuple(x: Any) -> tuple:
    if x is None:
        return ()
    from graddesc._tensor import Tensor

    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def _make_grads(outputs: tuple, grads: tuple, op: str) -> list:
    from graddesc._tensor import Tensor

    out = []
    for i, (o, g) in enumerate(zip(outputs, grads)):
        if g is None:
            if o._data.size != 1:
                raise RuntimeError(f"{op}: grad can be implicitly created only for scalar "
                                   f"outputs (output {i} has shape {tuple(o.shape)})")
            out.append(Tensor._make(_compile_state.ones_seed(o._data.shape, o._data.dtype)))
        else:
            if not isinstance(g, Tensor):
                g = Tensor._make(np.asarray(g, dtype=o._data.dtype))
            if g.shape != o.shape:
                raise RuntimeError(f"{op}: Mismatch in shape: grad_output[{i}] has a shape of "
                                   f"{tuple(g.shape)} and output[{i}] has a shape of "
                                   f"{tuple(o.shape)}.")
            out.append(g)
    return out


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: Optional[bool] = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """Accumulates gradients of `tensors` into the .grad of the leaves that require grad.

    >>> x = gd.tensor([2.0], requires_grad=True)
    >>> gd.autograd.backward((x * x).sum())
    >>> x.grad.tolist()
    [4.0]
    """
    outs = _as_tuple(tensors)
    grads = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(outs)
    if len(grads) != len(outs):
        raise RuntimeError(f"backward: got {len(grads)} gradients for {len(outs)} tensors")
    if retain_graph is None:
        retain_graph = create_graph
    gs = _make_grads(outs, grads, "backward")
    if inputs is not None:
        ins = _as_tuple(inputs)
        res = engine.run_backward(outs, gs, retain_graph, create_graph, ins, allow_unused=True)
        for x, g in zip(ins, res):
            if g is not None:
                engine._accumulate(x, g, create_graph)
        return
    engine.run_backward(outs, gs, retain_graph, create_graph)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: Optional[bool] = None,
         create_graph: bool = False, allow_unused: bool = False,
         materialize_grads: bool = False) -> tuple:
    """Gradients of outputs with respect to inputs, returned (not accumulated into .grad).

    >>> x = gd.tensor([3.0], requires_grad=True)
    >>> (g,) = gd.autograd.grad((x * x).sum(), x)
    >>> g.tolist()
    [6.0]
    """
    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    grads = _as_tuple(grad_outputs) if grad_outputs is not None else (None,) * len(outs)
    if len(grads) != len(outs):
        raise RuntimeError(f"grad: got {len(grads)} grad_outputs for {len(outs)} outputs")
    if retain_graph is None:
        retain_graph = create_graph
    gs = _make_grads(outs, grads, "grad")
    res = engine.run_backward(outs, gs, retain_graph, create_graph, ins,
                              allow_unused=allow_unused or materialize_grads)
    if materialize_grads:
        from graddesc._tensor import Tensor

        res = tuple(r if r is not None else Tensor._make(np.zeros_like(x._data))
                    for r, x in zip(res, ins))
    return res


from graddesc.autograd import functional  # noqa: E402
from graddesc.autograd.gradcheck import gradcheck, gradgradcheck  # noqa: E402
