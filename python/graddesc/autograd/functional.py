"""Jacobians and friends built on reverse mode: jacobian, vjp, jvp, hessian, hvp, vhp, and the
lecture's module_jacobians (a module's Jacobians with respect to its input and its weights).

The argument checks, the strict mode and create_graph follow torch.autograd.functional, with
its messages: v must be a Tensor or a tuple of Tensors with exactly the shapes of the inputs
(or outputs, for vjp), never broadcast or padded with zeros; strict=True raises where an output
is independent of an input instead of returning zeros.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode
from graddesc.autograd.engine import grad
from graddesc.autograd.grad_mode import enable_grad
from graddesc.functional.shape import stack


def _as_tuple(inp: Any, arg_name: str, fn_name: str) -> tuple:
    """(was it a tuple, inp as a tuple of Tensors); a TypeError names anything else."""
    is_tuple = isinstance(inp, tuple)
    items = inp if is_tuple else (inp,)
    for i, el in enumerate(items):
        if not isinstance(el, Tensor):
            where = f"the value at index {i}" if is_tuple else f"the given {arg_name}"
            raise TypeError(f"The {arg_name} given to {fn_name} must be either a Tensor or a "
                            f"tuple of Tensors but {where} has type {type(el)}.")
    return is_tuple, items


def _as_inputs(inputs: Any, fn_name: str) -> tuple:
    """The inputs as a tuple of float Tensors (a list is taken as a tuple)."""
    is_tuple, ins = _as_tuple(tuple(inputs) if isinstance(inputs, list) else inputs, "inputs",
                              fn_name)
    for k, x in enumerate(ins):
        if x._data.dtype.kind != "f":
            raise TypeError(f"{fn_name}: inputs[{k}] must be a float tensor, got {x.dtype}")
    return is_tuple, ins


def _grad_preprocess(inputs: tuple, create_graph: bool, need_graph: bool) -> tuple:
    """New Tensor objects for inputs (so the function's own captures of the same tensors stay
    distinct): differentiable copies that keep the caller's graph when create_graph, else
    detached ones that require grad when need_graph."""
    res = []
    for x in inputs:
        if create_graph and x.requires_grad:
            res.append(x.reshape(tuple(x.shape)) * 1.0)
        else:
            res.append(x.detach().requires_grad_(need_graph))
    return tuple(res)


def _grad_postprocess(items: tuple, create_graph: bool) -> tuple:
    if items and isinstance(items[0], Tensor):
        return items if create_graph else tuple(t.detach() for t in items)
    return tuple(_grad_postprocess(t, create_graph) for t in items)


def _validate_v(v: tuple, other: tuple, is_other_tuple: bool) -> tuple:
    """v checked against the tensors it pairs with (same count, same shapes); returns v in
    their dtypes."""
    if len(other) != len(v):
        if is_other_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(other)} but got "
                               f"{len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    out = []
    for idx, (el_v, el_other) in enumerate(zip(v, other)):
        if tuple(el_v.shape) != tuple(el_other.shape):
            prepend = f"Entry {idx} in " if is_other_tuple else ""
            raise RuntimeError(f"{prepend}v has invalid size: should be {el_other.size()} but "
                               f"got {el_v.size()}.")
        out.append(el_v if el_v._data.dtype == el_other._data.dtype else
                   el_v.to(el_other._data.dtype.type))
    return tuple(out)


def _check_requires_grad(items: tuple, input_type: str, strict: bool) -> None:
    """In strict mode, raises where a result does not depend on the inputs."""
    if not strict:
        return
    for i, t in enumerate(items):
        if t is None:
            raise RuntimeError(f"The output of the user-provided function is independent of "
                               f"input {i}. This is not allowed in strict mode.")
        if t.requires_grad:
            continue
        if input_type == "hessian":
            raise RuntimeError(
                f"The hessian of the user-provided function with respect to input {i} is "
                "independent of the input. This is not allowed in strict mode. You should "
                "ensure that your function is thrice differentiable and that the hessian "
                "depends on the inputs.")
        if input_type == "jacobian":
            raise RuntimeError(
                "While computing the hessian, found that the jacobian of the user-provided "
                f"function with respect to input {i} is independent of the input. This is not "
                "allowed in strict mode. You should ensure that your function is twice "
                "differentiable and that the jacobian depends on the inputs (this would be "
                "violated by a linear function for example).")
        if input_type == "grad_inputs":
            raise RuntimeError(
                f"The gradient with respect to input {i} is independent of the inputs of the "
                "user-provided function. This is not allowed in strict mode.")
        raise RuntimeError(
            f"Output {i} of the user-provided function does not require gradients. The outputs "
            "must be computed in a differentiable manner from the input when running in strict "
            "mode.")


def _autograd_grad(outputs: tuple, inputs: tuple, grad_outputs: Any = None,
                   create_graph: bool = False, retain_graph: Any = None) -> tuple:
    """autograd.grad over the outputs that require grad (None outputs skipped); None for an
    input that none of them reaches."""
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o is not None and o.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    return grad([o for o, _ in pairs], inputs, [g for _, g in pairs], create_graph=create_graph,
                retain_graph=retain_graph, allow_unused=True)


_STRICT_NONE = {
    "back": "The output of the user-provided function is independent of input {i}. This is not "
            "allowed in strict mode.",
    "back_trick": "The gradient with respect to the input is independent of entry {i} in the "
                  "grad_outputs when using the double backward trick to compute forward mode "
                  "gradients. This is not allowed in strict mode.",
    "double_back": "The jacobian of the user-provided function is independent of input {i}. "
                   "This is not allowed in strict mode.",
    "double_back_trick": "The hessian of the user-provided function is independent of entry "
                         "{i} in the grad_jacobian. This is not allowed in strict mode as it "
                         "prevents from using the double backward trick to replace forward "
                         "mode AD.",
}


def _fill_in_zeros(grads: tuple, refs: tuple, strict: bool, create_graph: bool,
                   stage: str) -> tuple:
    """None gradients as zeros shaped like refs, or (strict) the error of the stage."""
    res = []
    for i, g in enumerate(grads):
        if g is None:
            if strict:
                raise RuntimeError(_STRICT_NONE[stage].format(i=i))
            g = _zeros(refs[i]._data.shape, refs[i]._data.dtype)
        elif strict and create_graph and not g.requires_grad:
            what = "hessian" if "double" in stage else "jacobian"
            raise RuntimeError(f"The {what} of the user-provided function is independent of "
                               f"input {i}. This is not allowed in strict mode when "
                               "create_graph=True.")
        res.append(g)
    return tuple(res)


def _zeros(shape: tuple, dtype: Any) -> Any:
    return Tensor._make(np.zeros(shape, dtype=dtype))


def _v_tuple(v: Any, fn_name: str, create_graph: bool) -> tuple:
    _, vs = _as_tuple(v, "v", fn_name)
    return _grad_preprocess(vs, create_graph=create_graph, need_graph=False)


def _v_none_single_input(inputs: tuple) -> None:
    if len(inputs) != 1 or inputs[0]._data.size != 1:
        raise RuntimeError("The vector v can only be None if the input to the user-provided "
                           "function is a single Tensor with a single element.")


def _grad_enabled_for(create_graph: bool) -> Any:
    return grad_mode.set_grad_enabled(True if create_graph else grad_mode.is_grad_enabled())


def _unpack(res: tuple, is_tuple: bool) -> Any:
    return res if is_tuple else res[0]


def vjp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), v^T J): a vector-Jacobian product by one backward pass; v shaped like the
    outputs (None only for one single-element output).

    >>> out, v = gd.autograd.functional.vjp(lambda x: x * x, gd.tensor([1.0, 2.0]),
    ...                                      gd.tensor([1.0, 1.0]))
    >>> v.tolist()
    [2.0, 4.0]
    """
    with enable_grad():
        in_tuple, ins = _as_inputs(inputs, "vjp")
        ins = _grad_preprocess(ins, create_graph=create_graph, need_graph=True)
        out_tuple, outs = _as_tuple(func(*ins), "outputs of the user-provided function", "vjp")
        _check_requires_grad(outs, "outputs", strict)
        if v is not None:
            vs = _validate_v(_v_tuple(v, "vjp", create_graph), outs, out_tuple)
        else:
            if len(outs) != 1 or outs[0]._data.size != 1:
                raise RuntimeError("The vector v can only be None if the user-provided function "
                                   "returns a single Tensor with a single element.")
            vs = None
    with _grad_enabled_for(create_graph):
        res = _autograd_grad(outs, ins, vs, create_graph=create_graph)
        res = _fill_in_zeros(res, ins, strict, create_graph, "back")
    return (_unpack(_grad_postprocess(outs, create_graph), out_tuple),
            _unpack(_grad_postprocess(res, create_graph), in_tuple))


def jvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), J v), by the double-backward trick: J v = d/du (u^T J) . v; v shaped like
    the inputs (None only for one single-element input).

    >>> out, v = gd.autograd.functional.jvp(lambda x: x * x, gd.tensor([1.0, 2.0]),
    ...                                      gd.tensor([1.0, 0.0]))
    >>> v.tolist()
    [2.0, 0.0]
    """
    with enable_grad():
        in_tuple, ins = _as_inputs(inputs, "jvp")
        ins = _grad_preprocess(ins, create_graph=create_graph, need_graph=True)
        if v is not None:
            vs = _validate_v(_v_tuple(v, "jvp", create_graph), ins, in_tuple)
        else:
            _v_none_single_input(ins)
            vs = None
        out_tuple, outs = _as_tuple(func(*ins), "outputs of the user-provided function", "jvp")
        _check_requires_grad(outs, "outputs", strict)
        # the backward is linear in u, so u's value never reaches the result (0 is finite)
        us = tuple(Tensor._make(np.zeros(o._data.shape, dtype=o._data.dtype), True)
                   for o in outs)
        grad_inputs = _autograd_grad(outs, ins, us, create_graph=True)
        _check_requires_grad(grad_inputs, "grad_inputs", strict)
    with _grad_enabled_for(create_graph):
        res = _autograd_grad(grad_inputs, us, vs, create_graph=create_graph)
        res = _fill_in_zeros(res, outs, strict, create_graph, "back_trick")
    return (_unpack(_grad_postprocess(outs, create_graph), out_tuple),
            _unpack(_grad_postprocess(res, create_graph), out_tuple))


def jacobian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """J[i][j] shaped (*out_i.shape, *in_j.shape); unwrapped when func/inputs are not tuples.

    Always computed in reverse mode, one backward per output element; `vectorize` and
    strategy="forward-mode" give the same values.

    >>> J = gd.autograd.functional.jacobian(lambda x: x * x, gd.tensor([1.0, 2.0]))
    >>> J.tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError(f"jacobian: strategy must be 'forward-mode' or 'reverse-mode', got "
                         f"{strategy!r}")
    if strict and vectorize:
        raise RuntimeError("torch.autograd.functional.jacobian: `strict=True` and "
                           "`vectorized=True` are not supported together. Please either set "
                           "`strict=False` or `vectorize=False`.")
    with enable_grad():
        in_tuple, ins = _as_inputs(inputs, "jacobian")
        ins = _grad_preprocess(ins, create_graph=create_graph, need_graph=True)
        out_tuple, outs = _as_tuple(func(*ins), "outputs of the user-provided function",
                                    "jacobian")
        _check_requires_grad(outs, "outputs", strict)
        result = []
        for i, o in enumerate(outs):
            rows: list = [[] for _ in ins]
            for e in range(o._data.size):
                seed = np.zeros(o._data.shape, dtype=o._data.dtype)
                seed.reshape(-1)[e] = 1.0
                gs = _autograd_grad((o,), ins, (Tensor._make(seed),), retain_graph=True,
                                    create_graph=create_graph)
                for j, (g, x) in enumerate(zip(gs, ins)):
                    if g is None:
                        if strict:
                            raise RuntimeError(f"Output {i} of the user-provided function is "
                                               f"independent of input {j}. This is not "
                                               "allowed in strict mode.")
                        g = _zeros(x._data.shape, x._data.dtype)
                    elif strict and create_graph and not g.requires_grad:
                        raise RuntimeError(f"The jacobian of the user-provided function is "
                                           f"independent of input {i}. This is not allowed in "
                                           "strict mode when create_graph=True.")
                    rows[j].append(g.reshape(-1) if create_graph else g._data.reshape(-1))
            per_in = []
            for j, x in enumerate(ins):
                shape = tuple(o.shape) + tuple(x.shape)
                if not rows[j]:
                    J = _zeros(shape, x._data.dtype)
                elif create_graph:
                    J = stack(rows[j]).reshape(shape)
                else:
                    J = Tensor._make(np.stack(rows[j]).reshape(shape))
                per_in.append(J)
            result.append(tuple(per_in) if in_tuple else per_in[0])
    return tuple(result) if out_tuple else result[0]


def hessian(func: Callable, inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """Second derivatives of a scalar func: H[i][j] shaped (*in_i.shape, *in_j.shape).

    >>> H = gd.autograd.functional.hessian(lambda x: (x ** 3).sum(), gd.tensor([1.0, 2.0]))
    >>> H.tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    in_tuple, ins = _as_inputs(inputs, "hessian")

    def single_output(*xs: Any) -> Any:
        out = func(*xs)
        out_tuple, t_out = _as_tuple(out, "outputs of the user-provided function", "hessian")
        _check_requires_grad(t_out, "outputs", strict)
        if out_tuple:
            raise RuntimeError("The function given to hessian should return a single Tensor")
        if out._data.size != 1:
            raise RuntimeError("The Tensor returned by the function given to hessian should "
                               "contain a single element")
        return out.reshape(())

    def jac_func(*xs: Any) -> tuple:
        jac = jacobian(single_output, xs, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict)
        return jac

    H = jacobian(jac_func, ins, create_graph=create_graph, strict=strict, vectorize=vectorize,
                 strategy=outer_jacobian_strategy)
    return H if in_tuple else H[0][0]


def _hessian_setup(func: Callable, inputs: Any, v: Any, create_graph: bool, strict: bool,
                   fn_name: str) -> tuple:
    """Shared by vhp and hvp (under enable_grad): (in_tuple, ins, vs, outs, jac)."""
    in_tuple, ins = _as_inputs(inputs, fn_name)
    ins = _grad_preprocess(ins, create_graph=create_graph, need_graph=True)
    if v is not None:
        vs = _validate_v(_v_tuple(v, fn_name, create_graph), ins, in_tuple)
    else:
        _v_none_single_input(ins)
        vs = None
    out_tuple, outs = _as_tuple(func(*ins), "outputs of the user-provided function", fn_name)
    _check_requires_grad(outs, "outputs", strict)
    if out_tuple:
        raise RuntimeError(f"The function given to {fn_name} should return a single Tensor")
    if outs[0]._data.size != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn_name} should "
                           "contain a single element")
    jac = _autograd_grad(outs, ins, create_graph=True)
    _check_requires_grad(jac, "jacobian", strict)
    return in_tuple, ins, vs, outs, jac


def vhp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), v^T H) for a single-element func; v shaped like the inputs.

    >>> f = lambda x: (x ** 3).sum()
    >>> out, v = gd.autograd.functional.vhp(f, gd.tensor([1.0, 2.0]), gd.tensor([1.0, 1.0]))
    >>> v.tolist()
    [6.0, 12.0]
    """
    with enable_grad():
        in_tuple, ins, vs, outs, jac = _hessian_setup(func, inputs, v, create_graph, strict,
                                                      "vhp")
    with _grad_enabled_for(create_graph):
        res = _autograd_grad(jac, ins, vs, create_graph=create_graph)
        res = _fill_in_zeros(res, ins, strict, create_graph, "double_back")
    return (_grad_postprocess(outs, create_graph)[0],
            _unpack(_grad_postprocess(res, create_graph), in_tuple))


def hvp(func: Callable, inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple:
    """(func(inputs), H v) for a single-element func, by the double-backward trick; v shaped
    like the inputs.

    >>> f = lambda x: (x ** 3).sum()
    >>> out, v = gd.autograd.functional.hvp(f, gd.tensor([1.0, 2.0]), gd.tensor([1.0, 1.0]))
    >>> v.tolist()
    [6.0, 12.0]
    """
    with enable_grad():
        in_tuple, ins, vs, outs, jac = _hessian_setup(func, inputs, v, create_graph, strict,
                                                      "hvp")
        grad_jac = tuple(Tensor._make(np.zeros(x._data.shape, dtype=x._data.dtype), True)
                         for x in ins)
        double_back = _autograd_grad(jac, ins, grad_jac, create_graph=True)
        _check_requires_grad(jac, "hessian", strict)
    with _grad_enabled_for(create_graph):
        res = _autograd_grad(double_back, grad_jac, vs, create_graph=create_graph)
        res = _fill_in_zeros(res, ins, strict, create_graph, "double_back_trick")
    return (_grad_postprocess(outs, create_graph)[0],
            _unpack(_grad_postprocess(res, create_graph), in_tuple))


def module_jacobians(module: Any, x: Any) -> tuple:
    """The lecture's two Jacobians of a module G(x, w) at input x.

    Returns (J_x, {name: J_w}) with J_x shaped (*out.shape, *x.shape) and each J_w shaped
    (*out.shape, *w.shape), for every trainable named parameter w of the module. Frozen
    parameters (requires_grad=False) are left out of the dict: nothing is trained through
    them, and PyTorch's autograd refuses to differentiate with respect to them.

    >>> layer = nn.Linear(3, 2)
    >>> J_x, J_w = gd.autograd.functional.module_jacobians(layer, gd.randn(3))
    >>> tuple(J_x.shape), tuple(J_w["weight"].shape), tuple(J_w["bias"].shape)
    ((2, 3), (2, 2, 3), (2, 2))
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"module_jacobians: x must be a Tensor, got {type(x).__name__}")
    trainable = [(n, w) for n, w in module.named_parameters() if w.requires_grad]
    names, params = zip(*trainable) if trainable else ((), ())
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
