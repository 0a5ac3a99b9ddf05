"""Jacobians and friends built on reverse mode: jacobian, vjp, jvp, hessian, hvp, and the
lecture's module_jacobians (a module's Jacobians with respect to its input and its weights)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graddesc.autograd.grad_mode import enable_grad


def _tensor_cls() -> Any:
    from graddesc._tensor import Tensor

    return Tensor


def _prep_inputs(inputs: Any, create_graph: bool) -> tuple:
    Tensor = _tensor_cls()
    is_tuple = isinstance(inputs, (tuple, list))
    ins = tuple(inputs) if is_tuple else (inputs,)
    out = []
    for k, x in enumerate(ins):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{k}] must be a Tensor, got {type(x).__name__}")
        if x._data.dtype.kind != "f":
            raise TypeError(f"inputs[{k}] must be a float tensor, got {x.dtype}")
        y = x if create_graph and x.requires_grad else x.detach()
        out.append(y.requires_grad_(True) if not y.requires_grad else y)
    return tuple(out), is_tuple


def _outputs(out: Any) -> tuple:
    Tensor = _tensor_cls()
    is_tuple = isinstance(out, (tuple, list))
    outs = tuple(out) if is_tuple else (out,)
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"the function must return Tensors, output {k} is "
                            f"{type(o).__name__}")
    return outs, is_tuple


def _grads(o: Any, ins: tuple, seed: Any, create_graph: bool) -> tuple:
    from graddesc.autograd import grad

    if not o.requires_grad:
        return (None,) * len(ins)
    return grad(o, ins, seed, retain_graph=True, create_graph=create_graph, allow_unused=True)


def _zeros(shape: tuple, dtype: Any) -> Any:
    return _tensor_cls()._make(np.zeros(shape, dtype=dtype))


def jacobian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """J[i][j] shaped (*out_i.shape, *in_j.shape); unwrapped when func/inputs are not tuples."""
    Tensor = _tensor_cls()
    ins, in_tuple = _prep_inputs(inputs, create_graph)
    with enable_grad():
        outs, out_tuple = _outputs(func(*ins))
        result = []
        for o in outs:
            rows = [[] for _ in ins]
            for i in range(o._data.size):
                seed = np.zeros(o._data.shape, dtype=o._data.dtype)
                seed.reshape(-1)[i] = 1.0
                gs = _grads(o, ins, Tensor._make(seed), create_graph)
                for j, (g, x) in enumerate(zip(gs, ins)):
                    if g is None:
                        if strict:
                            raise RuntimeError(f"jacobian: output is independent of input {j} "
                                               "(strict=True)")
                        g = _zeros(x._data.shape, x._data.dtype)
                    rows[j].append(g.reshape(-1) if create_graph else g._data.reshape(-1))
            per_in = []
            for j, x in enumerate(ins):
                shape = tuple(o.shape) + tuple(x.shape)
                if create_graph:
                    from graddesc.functional.shape import stack

                    J = stack(rows[j]).reshape(shape) if rows[j] else _zeros(shape,
                                                                              x._data.dtype)
                else:
                    J = Tensor._make(np.stack(rows[j]).reshape(shape) if rows[j]
                                     else np.zeros(shape, dtype=x._data.dtype))
                per_in.append(J)
            result.append(tuple(per_in) if in_tuple else per_in[0])
    return tuple(result) if out_tuple else result[0]


def vjp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), v^T J): a vector-Jacobian product by one backward pass."""
    from graddesc.autograd import grad

    ins, in_tuple = _prep_inputs(inputs, create_graph)
    with enable_grad():
        outs, out_tuple = _outputs(func(*ins))
        vs = (tuple(v) if isinstance(v, (tuple, list)) else (v,)) if v is not None else \
            (None,) * len(outs)
        req = [(o, g) for o, g in zip(outs, vs) if o.requires_grad]
        if req:
            gs = grad([o for o, _ in req], ins, [g for _, g in req], create_graph=create_graph,
                      retain_graph=create_graph, allow_unused=True)
        else:
            gs = (None,) * len(ins)
    gs = tuple(g if g is not None else _zeros(x._data.shape, x._data.dtype)
               for g, x in zip(gs, ins))
    outs_d = tuple(o if create_graph else o.detach() for o in outs)
    return (outs_d if out_tuple else outs_d[0]), (gs if in_tuple else gs[0])


def jvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), J v), by the double-backward trick: J v = d/du (u^T J) . v."""
    from graddesc.autograd import grad

    Tensor = _tensor_cls()
    ins, in_tuple = _prep_inputs(inputs, create_graph)
    vs = tuple(v) if isinstance(v, (tuple, list)) else ((v,) if v is not None else (None,))
    if v is None:
        if any(x._data.size != 1 for x in ins):
            raise RuntimeError("jvp: v can only be omitted when every input has one element")
        vs = tuple(Tensor._make(np.ones(x._data.shape, dtype=x._data.dtype)) for x in ins)
    with enable_grad():
        outs, out_tuple = _outputs(func(*ins))
        us = tuple(Tensor._make(np.zeros(o._data.shape, dtype=o._data.dtype), True)
                   for o in outs)
        req = [(o, u) for o, u in zip(outs, us) if o.requires_grad]
        if not req:
            res = tuple(_zeros(o._data.shape, o._data.dtype) for o in outs)
        else:
            gs = grad([o for o, _ in req], ins, [u for _, u in req], create_graph=True,
                      allow_unused=True)
            pairs = [(g, vv) for g, vv in zip(gs, vs) if g is not None and g.requires_grad]
            if pairs:
                res = grad([g for g, _ in pairs], us, [vv for _, vv in pairs],
                           create_graph=create_graph, allow_unused=True)
                res = tuple(r if r is not None else _zeros(o._data.shape, o._data.dtype)
                            for r, o in zip(res, outs))
            else:
                res = tuple(_zeros(o._data.shape, o._data.dtype) for o in outs)
    outs_d = tuple(o if create_graph else o.detach() for o in outs)
    return (outs_d if out_tuple else outs_d[0]), (res if out_tuple else res[0])


def hessian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """Second derivatives of a scalar func: H[i][j] shaped (*in_i.shape, *in_j.shape)."""
    from graddesc.autograd import grad

    ins, in_tuple = _prep_inputs(inputs, create_graph)

    def gradient(*xs: Any) -> tuple:
        out = func(*xs)
        if out._data.size != 1:
            raise RuntimeError(f"hessian: the function must return a single-element tensor, "
                               f"got shape {tuple(out.shape)}")
        gs = grad(out.reshape(()), xs, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else (x * 0.0) for g, x in zip(gs, xs))

    H = jacobian(gradient, ins, create_graph=create_graph)
    if not in_tuple:
        return H[0][0]
    return H


def hvp(func: Callable, inputs: Any, v: Any, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), H v) for a scalar func, by differentiating (grad . v)."""
    from graddesc.autograd import grad

    ins, in_tuple = _prep_inputs(inputs, create_graph)
    vs = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    with enable_grad():
        out = func(*ins)
        gs = grad(out.reshape(()), ins, create_graph=True, allow_unused=True)
        dot = None
        for g, vv in zip(gs, vs):
            if g is not None:
                term = (g * vv).sum()
                dot = term if dot is None else dot + term
        if dot is None or not dot.requires_grad:
            res = tuple(_zeros(x._data.shape, x._data.dtype) for x in ins)
        else:
            res = grad(dot, ins, create_graph=create_graph, allow_unused=True)
            res = tuple(r if r is not None else _zeros(x._data.shape, x._data.dtype)
                        for r, x in zip(res, ins))
    o = out if create_graph else out.detach()
    return o, (res if in_tuple else res[0])


def vhp(func: Callable, inputs: Any, v: Any, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """v^T H; equal to hvp for the symmetric Hessian of a twice-differentiable func."""
    return hvp(func, inputs, v, create_graph, strict)


def module_jacobians(module: Any, x: Any) -> tuple:
    """The lecture's two Jacobians of a module G(x, w) at input x.

    Returns (J_x, {name: J_w}) with J_x shaped (*out.shape, *x.shape) and each J_w shaped
    (*out.shape, *w.shape), for every named parameter w of the module.
    """
    from graddesc.autograd import grad

    Tensor = _tensor_cls()
    if not isinstance(x, Tensor):
        raise TypeError(f"module_jacobians: x must be a Tensor, got {type(x).__name__}")
    names, params = zip(*module.named_parameters()) if list(module.parameters()) else ((), ())
    xin = x.detach().requires_grad_(True)
    with enable_grad():
        out = module(xin)
        if not isinstance(out, Tensor):
            raise TypeError("module_jacobians: the module must return one Tensor")
        targets = (xin,) + tuple(params)
        rows = [[] for _ in targets]
        for i in range(out._data.size):
            seed = np.zeros(out._data.shape, dtype=out._data.dtype)
            seed.reshape(-1)[i] = 1.0
            gs = grad(out, targets, Tensor._make(seed), retain_graph=True, allow_unused=True) \
                if out.requires_grad else (None,) * len(targets)
            for j, (g, t) in enumerate(zip(gs, targets)):
                rows[j].append(np.zeros(t._data.size, dtype=t._data.dtype) if g is None
                               else g._data.reshape(-1))
    jacs = []
    for j, t in enumerate(targets):
        shape = tuple(out.shape) + tuple(t.shape)
        data = np.stack(rows[j]).reshape(shape) if rows[j] else np.zeros(shape, t._data.dtype)
        jacs.append(Tensor._make(data))
    return jacs[0], dict(zip(names, jacs[1:]))
