"""nn.Module: a parametrised model G(x, w) whose parameters w are implicit (registered by
attribute assignment), as in PyTorch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Callable, Optional

import numpy as np

from graddesc import _aligned, _compile_state, _dtype
from graddesc._tensor import Tensor
from graddesc.autograd.function import module_scope
from graddesc.autograd.grad_mode import no_grad
from graddesc.nn.parameter import Parameter


class Module:
    """Base class of models: subclasses define forward(); calling the module runs it.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(3, 1)
    ...     def forward(self, x):
    ...         return self.fc(x)
    >>> net = Net()
    >>> [name for name, _ in net.named_parameters()]
    ['fc.weight', 'fc.bias']
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the required "
                                  "\"forward\" function")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        rec = _compile_state.active
        if rec is not None:  # gd.compile: this module's tensors are state, not temporaries
            rec.on_module(self)
        scope = module_scope.stack
        scope.append(self)
        try:
            if kwargs:
                return self.forward(*args, **kwargs)
            return self.forward(*args)
        finally:
            scope.pop()

    # ---- attribute registration ---------------------------------------------------------
    def _check_init(self) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign parameters or modules before "
                                 f"{type(self).__name__}.__init__() calls super().__init__()")

    def __setattr__(self, name: str, value: Any) -> None:
        # a recorded step (gd.compile) baked in this module's attributes (its parameters'
        # storage, ignore_index, negative_slope, ...): an assignment makes it record again
        _compile_state.module_attribute_set(self, name)
        if isinstance(value, Parameter):
            self._check_init()
            self._remove(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._check_init()
            self._remove(name)
            self._modules[name] = value
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(graddesc.nn.Parameter or None expected)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (graddesc.nn.Module or None expected)")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}'")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _remove(self, name: str) -> None:
        for d in (self.__dict__, self._parameters, self._modules, self._buffers):
            d.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(store, {}):
                del self.__dict__[store][name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        self._check_init()
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"parameter name must be a non-empty string without '.', got {name!r}")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (graddesc.nn.Parameter or None required)")
        self._remove(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        self._check_init()
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}'")
        self._remove(name)
        self._buffers[name] = tensor

    def add_module(self, name: str, module: Optional[Module]) -> None:
        self._check_init()
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or not name:
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        self._remove(name)
        self._modules[name] = module

    register_module = add_module

    # ---- traversal ----------------------------------------------------------------------
    def named_modules(self, memo: Optional[set] = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple]:
        if memo is None:
            memo = set()
        if self in memo and remove_duplicate:
            return
        memo.add(self)
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name,
                                       remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and m not in seen:
                seen.add(m)
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple]:
        """(dotted name, parameter) in definition order; a shared parameter appears once."""
        seen: set = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield mprefix + ("." if mprefix else "") + name, p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple]:
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield mprefix + ("." if mprefix else "") + name, b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path ("" is the module itself), as PyTorch's.

        >>> net = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
        >>> net.get_submodule("1.1")
        Linear(in_features=3, out_features=1, bias=True)
        """
        if not isinstance(target, str):
            raise TypeError(f"get_submodule: target must be a str, got {type(target).__name__}")
        mod: Any = self
        for item in target.split(".") if target else []:
            if not isinstance(mod, Module) or item not in mod._modules or \
                    mod._modules[item] is None:
                if isinstance(mod, Module) and hasattr(mod, item):
                    raise AttributeError(f"`{item}` is not an nn.Module")
                raise AttributeError(f"{type(mod).__name__} has no attribute `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at a dotted path ("0.weight"), as PyTorch's.

        >>> net = nn.Sequential(nn.Linear(2, 3))
        >>> tuple(net.get_parameter("0.weight").shape)
        (3, 2)
        """
        return self._member(target, "get_parameter", "_parameters", "an nn.Parameter")

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at a dotted path ("0.running_mean"), as PyTorch's.

        >>> net = nn.Sequential(nn.BatchNorm1d(3))
        >>> net.get_buffer("0.running_var")
        tensor([1., 1., 1.])
        """
        return self._member(target, "get_buffer", "_buffers", "a buffer")

    def _member(self, target: str, op: str, store: str, kind: str) -> Any:
        """The entry of `store` (_parameters or _buffers) at a dotted path, with PyTorch's
        errors."""
        if not isinstance(target, str):
            raise TypeError(f"{op}: target must be a str, got {type(target).__name__}")
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        found = getattr(mod, store).get(name)
        if found is None:
            if hasattr(mod, name):
                raise AttributeError(f"`{name}` is not {kind}")
            raise AttributeError(f"{type(mod).__name__} has no attribute `{name}`")
        return found

    # ---- modes and grads ------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is None:
                if set_to_none:
                    _compile_state.grad_cleared(p)  # (a recording: the step clears it)
                continue
            if set_to_none:
                p.grad = None
            else:
                from graddesc.optim.optimizer import zero_in_place

                g = p.grad
                if g.grad_fn is not None:  # (as Optimizer.zero_grad)
                    g.detach_()
                if g._data.flags.writeable:
                    zero_in_place(p, g)
                else:  # a read-only (broadcast) gradient: replace it
                    p.grad = Tensor._make(np.zeros(p._data.shape, dtype=p._data.dtype))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- dtype ----------------------------------------------------------------------------
    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Converts every floating-point parameter and buffer to a dtype, in place."""
        from graddesc._device import check_device, is_device_arg

        target = kwargs.pop("dtype", None)
        check_device(kwargs.pop("device", None), "Module.to")
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"Module.to: unexpected arguments {sorted(kwargs)}")
        for a in args:
            if is_device_arg(a):
                check_device(a, "Module.to")
                continue
            if isinstance(a, Tensor):
                target = a.dtype
                continue
            target = a
        if target is None:
            return self
        d = _dtype.to_dtype(target, "Module.to")
        if not d.is_floating_point:
            raise TypeError(f"Module.to only accepts floating point dtypes, got {d}")
        with no_grad():
            for m in self.modules():
                for store in (m._parameters, m._buffers):
                    for t in store.values():
                        if t is not None and t._data.dtype.kind == "f" and t._data.dtype != d.np:
                            t._data = _aligned.copy(t._data, d.np)
                            _compile_state.bump_storage()
                            t._vc[0] += 1
                            if t.grad is not None:
                                t._grad = Tensor._make(t.grad._data.astype(d.np))
        return self

    def float(self) -> Module:
        return self.to(_dtype.float32)

    def double(self) -> Module:
        return self.to(_dtype.float64)

    def cpu(self) -> Module:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Module:
        from graddesc._device import check_device

        check_device("cuda", "Module.cuda")
        return self

    # ---- state --------------------------------------------------------------------------
    def state_dict(self, destination: Optional[dict] = None, prefix: str = "",
                   keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Parameters and buffers by dotted name (detached tensors sharing memory)."""
        out: OrderedDict = OrderedDict() if destination is None else destination
        for name, p in self.named_parameters(prefix=prefix.rstrip("."), remove_duplicate=False):
            out[name] = p if keep_vars else p.detach()
        for name, b in self.named_buffers(prefix=prefix.rstrip(".")):
            out[name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Copies values (Tensors or NumPy arrays) into parameters and buffers by name.

        Shape mismatches always raise; with strict=True missing or unexpected keys raise too.
        Returns (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a dict-like mapping, got "
                            f"{type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict and (missing or unexpected):
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " +
                              ", ".join(f'"{k}"' for k in unexpected))
            if missing:
                errors.append("Missing key(s) in state_dict: " +
                              ", ".join(f'"{k}"' for k in missing))
        values = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v._data if isinstance(v, Tensor) else v
            if not isinstance(arr, np.ndarray):
                try:
                    arr = np.asarray(arr)
                except Exception:  # noqa: BLE001
                    errors.append(f'value for "{k}" is a {type(v).__name__}, not an array')
                    continue
            if arr.dtype.kind not in "fiub":
                errors.append(f'value for "{k}" has unsupported dtype {arr.dtype}')
                continue
            if tuple(arr.shape) != tuple(t.shape):
                errors.append(f'size mismatch for {k}: copying a param with shape '
                              f'{tuple(arr.shape)} from checkpoint, the shape in current model '
                              f'is {tuple(t.shape)}.')
                continue
            values[k] = arr
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for k, arr in values.items():
                t = own[k]
                np.copyto(t._data, arr, casting="unsafe")
                t._vc[0] += 1
        return _IncompatibleKeys(missing, unexpected)

    # ---- printing -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        head = type(self).__name__ + "("
        if not lines:
            return head + extra + ")"
        body = ("\n  " + extra if extra else "") + "".join("\n  " + ln for ln in lines)
        return head + body + "\n)"

    def __dir__(self) -> list:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._modules)
                      | set(self._buffers))


class _IncompatibleKeys(tuple):
    def __new__(cls, missing: list, unexpected: list) -> _IncompatibleKeys:
        t = super().__new__(cls, (missing, unexpected))
        return t

    @property
    def missing_keys(self) -> list:
        return self[0]

    @property
    def unexpected_keys(self) -> list:
        return self[1]

    def __repr__(self) -> str:
        if not self[0] and not self[1]:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self[0]}, unexpected_keys={self[1]})"
