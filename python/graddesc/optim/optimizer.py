"""Optimizer: the base class of graddesc.optim (PyTorch's param_groups, state and state_dict).

An optimizer holds `param_groups`, a list of dicts each with its `params` (a list of leaf
Tensors) and the hyperparameters of that group, and `state`, a dict from parameter to that
parameter's buffers (momentum, moment estimates, step count). The update of a group is one call
into the C++ kernels of src/cpp/optim.cpp (per dtype present in the group).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from graddesc import _aligned, _compile_state
from graddesc._tensor import Tensor

_GRAD = Tensor.grad  # Tensor's .grad property


class _RequiredParameter:
    """Marks a hyperparameter that has no default: every group must give it."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, of (name, Tensor) pairs, or of dicts (parameter groups,
            each with a 'params' entry and optional per-group hyperparameters).
        defaults: the hyperparameters a group gets when it does not set them.

    A new optimizer subclasses Optimizer and writes step():

    >>> class SignSGD(gd.optim.Optimizer):
    ...     def __init__(self, params, lr=0.01):
    ...         super().__init__(params, dict(lr=lr))
    ...
    ...     @gd.no_grad()
    ...     def step(self, closure=None):
    ...         for group in self.param_groups:
    ...             for p in group["params"]:
    ...                 if p.grad is not None:
    ...                     p.sub_(group["lr"] * p.grad.sign())
    >>> w = gd.tensor([1.0, -1.0], requires_grad=True)
    >>> opt = SignSGD([w], lr=0.25)
    >>> (w ** 2).sum().backward()
    >>> opt.step()
    >>> w
    tensor([ 0.7500, -0.7500], requires_grad=True)
    """

    # State entries shaped like their parameter (checked by load_state_dict).
    _param_shaped_state: tuple = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Wraps each subclass's step so a learning-rate scheduler can tell whether the optimizer
        # has stepped (PyTorch warns when scheduler.step() comes first).
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            original = cls.__dict__["step"]

            @functools.wraps(original)
            def step(self: Optimizer, *args: Any, **kw: Any) -> Any:
                self._opt_called = True
                rec = _compile_state.active
                if rec is not None:  # gd.compile bakes the settings in: it must see them
                    rec.on_optimizer_step(self)
                return original(self, *args, **kw) if kw else original(self, *args)

            cls.step = step  # type: ignore[method-assign]

    def __init__(self, params: Any, defaults: dict) -> None:
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got " + _typename(params))
        if isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        self.state: Any = _compile_state.WatchedState()  # defaultdict(dict) behaviour
        _compile_state.optimizers.add(self)
        self.param_groups: list = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ---- groups -------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Adds a group of parameters (a dict with 'params' and optional hyperparameters)."""
        _compile_state.bump_storage()  # recorded gd.compile programs must re-record
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry")
        param_group = _compile_state.ParamGroup(param_group)  # (writes inside a recorded step)
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            params = list(params)
        tensors, names = [], []
        for p in params:
            if isinstance(p, tuple) and len(p) == 2:
                names.append(p[0])
                tensors.append(p[1])
            else:
                tensors.append(p)
        if names:
            if len(names) != len(tensors):
                raise ValueError("all optimizer params should be with/without names. Some param "
                                 "names are missing")
            param_group["param_names"] = names
        for p in tensors:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(p))
            if p._data.dtype not in (np.float32, np.float64):
                raise TypeError("optimizer can only optimize floating-point Tensors (float32 or "
                                f"float64), but one of the params has dtype {p.dtype}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        param_group["params"] = tensors
        if len({id(p) for p in tensors}) != len(tensors):
            # PyTorch warns ("in future, this will cause an error"); a fused update would apply
            # the step twice to the same memory.
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for g in self.param_groups:
            if ("param_names" in g) != ("param_names" in param_group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        if any(id(p) in seen for p in tensors):
            raise ValueError("some parameters appear in more than one parameter group")
        self._check_group(param_group)
        self.param_groups.append(param_group)

    def _check_group(self, group: dict) -> None:
        """Validates a group's hyperparameters (subclasses raise ValueError/TypeError)."""

    # ---- gradients ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Resets the gradients of all optimized parameters (to None, or to zeros)."""
        if set_to_none and _compile_state.active is None and not _compile_state.pending:
            # the usual call: nothing records and no replay deferred a gradient, so what the
            # loop below does for each parameter is `p._grad = None` (the .grad getter and
            # setter check only those two)
            for group in self.param_groups:
                for p in group["params"]:
                    if type(p).grad is _GRAD:
                        p._grad = None
                    else:  # (a subclass with its own .grad)
                        p.grad = None
            return
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    if set_to_none:
                        _compile_state.grad_cleared(p)  # (a recording: the step clears it)
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if g.grad_fn is not None:
                    g.detach_()
                else:
                    g.requires_grad = False
                if g._data.flags.writeable:
                    zero_in_place(p, g)
                else:  # a read-only (broadcast) gradient: replace it
                    p.grad = Tensor._make(np.zeros(p._data.shape, dtype=p._data.dtype))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Performs one optimization step; closure re-evaluates the loss (optional)."""
        raise NotImplementedError

    # ---- state dict -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {name: value}}, 'param_groups': [{..., 'params': [index, ...]}]}:
        parameters are numbered in the order of the groups; state tensors are copies."""
        mapping: dict = {}
        start = 0

        def pack_group(group: dict) -> dict:
            nonlocal start
            packed = {k: _copy_value(v) for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        groups = [pack_group(g) for g in self.param_groups]
        state = {(mapping[id(k)] if isinstance(k, Tensor) else k): _copy_value(v)
                 for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads a state_dict() (also one of PyTorch's, converted to NumPy arrays or Tensors):
        state values are copied and cast to their parameter's dtype."""
        _compile_state.bump_storage()  # recorded gd.compile programs must re-record
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("load_state_dict: expected a dict with keys 'state' and "
                             "'param_groups'")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise TypeError("load_state_dict: 'param_groups' must be a list and 'state' a dict")
        groups = self.param_groups
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, sg in zip(groups, saved_groups):
            if not isinstance(sg, dict) or "params" not in sg:
                raise ValueError("load_state_dict: each saved parameter group must be a dict "
                                 "with a 'params' entry")
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        id_map = {}
        for sg, g in zip(saved_groups, groups):
            for i, p in zip(sg["params"], g["params"]):
                id_map[int(i)] = p

        state: Any = _compile_state.WatchedState()
        for k, v in saved_state.items():
            key = int(k) if isinstance(k, (int, np.integer)) or \
                (isinstance(k, str) and k.lstrip("-").isdigit()) else k
            if key in id_map:
                p = id_map[key]
                if not isinstance(v, dict):
                    raise ValueError(f"load_state_dict: state[{k!r}] must be a dict")
                state[p] = {name: self._load_value(p, name, val, key) for name, val in v.items()}
            else:
                state[key] = _copy_value(v)

        new_groups = []
        for g, sg in zip(groups, saved_groups):
            ng = _compile_state.ParamGroup({k: _copy_value(v) for k, v in sg.items()
                                            if k != "params"})
            ng["params"] = g["params"]
            if "param_names" in g and "param_names" not in ng:
                ng["param_names"] = g["param_names"]
            for name, default in self.defaults.items():
                if name not in ng:
                    if default is required:
                        raise ValueError(f"load_state_dict: a saved parameter group lacks the "
                                         f"required hyperparameter '{name}'")
                    ng[name] = default
            self._check_group(ng)
            new_groups.append(ng)
        self.state = state
        self.param_groups = new_groups

    def _load_value(self, p: Tensor, name: str, value: Any, index: int) -> Any:
        """A state entry of parameter p, copied into a Tensor of p's dtype (step stays as is)."""
        if isinstance(value, (Tensor, np.ndarray)) or _is_foreign_array(value):
            arr = value._data if isinstance(value, Tensor) else np.asarray(value)
            if arr.dtype.kind not in "fiub":
                raise ValueError(f"load_state_dict: state[{index}]['{name}'] has unsupported "
                                 f"dtype {arr.dtype}")
            if name == "step":
                if arr.size != 1:
                    raise ValueError(f"load_state_dict: state[{index}]['step'] must hold one "
                                     f"number, got shape {arr.shape}")
                dt = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float32)
                return Tensor._make(np.array(arr.reshape(()), dtype=dt, copy=True))
            if name in self._param_shaped_state and arr.shape != p._data.shape:
                raise ValueError(f"load_state_dict: state[{index}]['{name}'] has shape "
                                 f"{tuple(arr.shape)}, but its parameter has shape "
                                 f"{tuple(p._data.shape)}")
            dt = p._data.dtype if arr.dtype.kind == "f" else arr.dtype
            return Tensor._make(np.array(arr, dtype=dt, order="C", copy=True))
        if isinstance(value, (list, tuple)):
            return type(value)(self._load_value(p, name, v, index) for v in value)
        if name == "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return Tensor._make(np.array(float(value), dtype=np.float32))
        return copy.deepcopy(value)

    def __getstate__(self) -> dict:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # (serialized as plain dicts) the watched kinds gd.compile relies on, see __init__
        watched = _compile_state.WatchedState()
        for k, v in self.state.items():
            watched[k] = v
        self.state = watched
        self.param_groups = [_compile_state.ParamGroup(g) for g in self.param_groups]

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {_short(group[key])}")
        lines.append(")")
        return "\n".join(lines)


# ---- helpers shared by the optimizers ---------------------------------------------------------
def zero_in_place(p: Tensor, g: Tensor) -> None:
    """p's gradient g set to zeros in place (zero_grad(set_to_none=False)): by the elementwise
    kernel (Tensor.zero_'s fill), so a step recorded by gd.compile repeats it; a gradient from
    an earlier call becomes memory the program writes."""
    rec = _compile_state.active
    if rec is not None:
        rec.on_grad_zeroed(p, g)
    g.zero_()


def _typename(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return "graddesc.Tensor"
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _short(v: Any) -> str:
    if isinstance(v, (Tensor, np.ndarray)):
        a = v._data if isinstance(v, Tensor) else v
        return f"array of shape {tuple(a.shape)}" if a.size > 1 else repr(a.reshape(()).item())
    return repr(v)


def _is_foreign_array(v: Any) -> bool:
    """A non-NumPy array with __array__ (a torch tensor from a converted state dict)."""
    return hasattr(v, "__array__") and not isinstance(v, (str, bytes, dict, list, tuple))


def _copy_value(v: Any) -> Any:
    """A deep copy where Tensors and arrays are copied (never aliased)."""
    if isinstance(v, Tensor):
        return Tensor._make(np.array(v._data, copy=True))
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_copy_value(x) for x in v)
    if isinstance(v, (int, float, str, bool, type(None), complex)):
        return v
    return copy.deepcopy(v)


def _check_number(value: Any, what: str) -> float:
    """A real number (Python/NumPy scalar or one-element Tensor) as float; else TypeError."""
    if isinstance(value, Tensor):
        if value._data.size != 1:
            raise ValueError(f"Tensor {what} must be 1-element")
        value = value._data.reshape(()).item()
    elif isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    return float(value)


def _c_array(a: np.ndarray) -> np.ndarray:
    """a itself when it is C-contiguous and aligned, else a C-contiguous copy (0-d stays 0-d)."""
    if a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative:
        return a
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)


class _Batch:
    """The parameters of one group that have a gradient, of one dtype, as kernel arguments.

    `arrays` are the parameters' memory (or C-contiguous copies, written back by `finish`),
    `grads` their gradients as C-contiguous arrays (after `check_layout`). Unchecked, the
    layouts are taken as they are (a kernel's output, or a copy, almost always fits) and `call`
    makes the copies only if the kernel refuses an array."""

    __slots__ = ("_writeback", "arrays", "grads", "params")

    def __init__(self) -> None:
        self.params: list = []
        self.arrays: list = []
        self.grads: list = []
        self._writeback: list = []

    def check_layout(self) -> None:
        """Replaces the arrays a kernel can't take (not C-contiguous or aligned, or in non-native
        byte order) by C-contiguous copies."""
        for k, a in enumerate(self.arrays):
            c = _c_array(a)
            if c is not a:
                self._writeback.append((a, c))
                self.arrays[k] = c
        self.grads = [_c_array(g) for g in self.grads]

    def call(self, kernel: Callable, *args: Any) -> Any:
        """kernel(arrays, grads, *args); repeated after check_layout() if it raises ValueError
        (the bindings check every array's layout, and raise before changing anything)."""
        try:
            return kernel(self.arrays, self.grads, *args)
        except ValueError:  # (or an error the repeated call raises again)
            pass
        self.check_layout()
        return kernel(self.arrays, self.grads, *args)

    def finish(self) -> None:
        """Copies updated contiguous copies back and bumps every parameter's version."""
        for a, c in self._writeback:
            _compile_state.inplace_write("the optimizer's write-back into a non-contiguous "
                                         "parameter")
            a[...] = c
        for p in self.params:
            p._vc[0] += 1


def _batches(params: Iterable[Tensor], check: bool = True) -> list:
    """The parameters with a gradient, split by dtype (float32 first seen first): one kernel
    call per batch. check=False leaves the layouts unchecked (see _Batch)."""
    by_dtype: dict = {}
    pending = _compile_state.pending
    for p in params:
        # (Tensor's getter only materializes a pending gradient; a subclass may have its own)
        g = p._grad if not pending and type(p).grad is _GRAD else p.grad
        if g is None:
            continue
        a = p._data
        if not a.flags.writeable:
            raise ValueError(f"optimizer: a parameter of shape {tuple(a.shape)} is read-only "
                             "(an expanded or broadcast view); it can't be updated in place")
        batch = by_dtype.get(a.dtype)
        if batch is None:
            batch = by_dtype[a.dtype] = _Batch()
        batch.params.append(p)
        batch.arrays.append(a)
        batch.grads.append(g._data)
    batches = list(by_dtype.values())
    if check:
        for batch in batches:
            batch.check_layout()
    return batches


def _zeros_like(p: Tensor, fill: float = 0.0) -> Tensor:
    """A C-contiguous state buffer shaped like p."""
    return Tensor._make(_aligned.full(p._data.shape, fill, p._data.dtype))


def _step_tensor() -> Tensor:
    """PyTorch's per-parameter step count: a 0-d float32 tensor."""
    return Tensor._make(np.zeros((), dtype=np.float32))


def _increment(step: Tensor) -> float:
    """step += 1 in place; returns the new count."""
    np.add(step._data, 1, out=step._data)
    if _compile_state.active is not None:  # gd.compile replays this increment in C++
        _compile_state.active.on_increment(step._data)
    return float(step._data)


__all__ = ["Optimizer", "required"]
