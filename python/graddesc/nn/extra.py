"""Layers and containers for PyTorch ports: Dropout, SiLU, ModuleDict, ParameterList,
ParameterDict, and the losses HuberLoss, SmoothL1Loss, KLDivLoss (PyTorch's semantics)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

from graddesc._tensor import Tensor
from graddesc.functional import nn_extra as fx
from graddesc.nn.module import Module
from graddesc.nn.parameter import Parameter


class Dropout(Module):
    """Zeros inputs with probability p and scales the rest by 1/(1-p) in training mode; the
    identity in eval mode (model.eval()).

    >>> drop = nn.Dropout(p=0.5)
    >>> _ = drop.eval()
    >>> drop(gd.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.inplace = bool(inplace)

    def forward(self, x: Tensor) -> Tensor:
        return fx.dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class SiLU(Module):
    """x * sigmoid(x) elementwise (also called swish).

    >>> [round(v, 4) for v in nn.SiLU()(gd.tensor([0.0, 1.0])).tolist()]
    [0.0, 0.7311]
    """
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return fx.silu(x)


class ModuleDict(Module):
    """Modules by name, registered as submodules (in insertion order).

    >>> layers = nn.ModuleDict({"enc": nn.Linear(4, 2), "dec": nn.Linear(2, 4)})
    >>> list(layers.keys()), len(list(layers.parameters()))
    (['enc', 'dec'], 4)
    """

    def __init__(self, modules: Optional[Any] = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def items(self) -> Iterable[tuple]:
        return self._modules.items()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def pop(self, key: str) -> Module:
        m = self._modules[key]
        del self._modules[key]
        return m

    def clear(self) -> None:
        self._modules.clear()

    def update(self, modules: Any) -> None:
        items = modules.items() if isinstance(modules, Mapping) else modules
        for i, kv in enumerate(items):
            if not isinstance(kv, (tuple, list)) or len(kv) != 2:
                raise TypeError(f"ModuleDict.update: element {i} should be a (name, module) "
                                f"pair, got {type(kv).__name__}")
            self[kv[0]] = kv[1]


def _as_parameter(value: Any, where: str) -> Any:
    if value is None or isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value)
    raise TypeError(f"{where}: expected a Parameter or Tensor, got {type(value).__name__}")


class ParameterList(Module):
    """Parameters in a list, registered under the names '0', '1', ...

    >>> params = nn.ParameterList([nn.Parameter(gd.zeros(2)), nn.Parameter(gd.ones(3))])
    >>> [tuple(p.shape) for p in params]
    [(2,), (3,)]
    """

    def __init__(self, values: Optional[Iterable[Any]] = None) -> None:
        super().__init__()
        self._size = 0
        if values is not None:
            self.extend(values)

    def _key(self, idx: int) -> str:
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise TypeError(f"ParameterList: index must be an int, got {type(idx).__name__}")
        if not -self._size <= idx < self._size:
            raise IndexError(f"ParameterList: index {idx} is out of range for length "
                             f"{self._size}")
        return str(idx % self._size)

    def __getitem__(self, idx: int) -> Any:
        return self._parameters[self._key(idx)]

    def __setitem__(self, idx: int, value: Any) -> None:
        self.register_parameter(self._key(idx), _as_parameter(value, "ParameterList"))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        return iter(self._parameters[str(i)] for i in range(self._size))

    def append(self, value: Any) -> ParameterList:
        self.register_parameter(str(self._size), _as_parameter(value, "ParameterList.append"))
        self._size += 1
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        for v in values:
            self.append(v)
        return self


class ParameterDict(Module):
    """Parameters by name, registered under those names (in insertion order).

    >>> params = nn.ParameterDict({"w": nn.Parameter(gd.zeros(2))})
    >>> tuple(params["w"].shape)
    (2,)
    """

    def __init__(self, parameters: Optional[Any] = None) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Any:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ParameterDict: keys must be str, got {type(key).__name__}")
        self.register_parameter(key, _as_parameter(value, "ParameterDict"))

    def __delitem__(self, key: str) -> None:
        del self._parameters[key]

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: str) -> bool:
        return key in self._parameters

    def keys(self) -> Iterable[str]:
        return self._parameters.keys()

    def items(self) -> Iterable[tuple]:
        return self._parameters.items()

    def values(self) -> Iterable[Any]:
        return self._parameters.values()

    def update(self, parameters: Any) -> None:
        items = parameters.items() if isinstance(parameters, Mapping) else parameters
        for k, v in OrderedDict(items).items():
            self[k] = v


class _Loss(Module):
    _reductions: tuple = ("mean", "sum", "none")

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in self._reductions:
            raise ValueError(f"{type(self).__name__}: reduction must be one of "
                             f"{self._reductions}, got {reduction!r}")
        self.reduction = reduction


class HuberLoss(_Loss):
    """0.5 (x - y)**2 where |x - y| < delta, delta (|x - y| - 0.5 delta) elsewhere, reduced as
    `reduction` says.

    >>> nn.HuberLoss(reduction="none")(gd.tensor([0.5, 3.0]), gd.tensor([0.0, 0.0])).tolist()
    [0.125, 2.5]
    """
    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return fx.huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    """0.5 (x - y)**2 / beta where |x - y| < beta, |x - y| - 0.5 beta elsewhere, reduced as
    `reduction` says.

    >>> nn.SmoothL1Loss(reduction="none")(gd.tensor([0.5, 3.0]), gd.tensor([0.0, 0.0])).tolist()
    [0.125, 2.5]
    """
    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return fx.smooth_l1_loss(input, target, self.reduction, self.beta)


class KLDivLoss(_Loss):
    """KL divergence with input as log-probabilities; reduction='batchmean' is the per-sample
    divergence ('mean', PyTorch's default, averages over every element).

    >>> p = gd.tensor([[0.5, 0.5]])
    >>> nn.KLDivLoss(reduction="batchmean")(gd.log(p), p).item()
    0.0
    """

    _reductions = ("mean", "sum", "none", "batchmean")

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return fx.kl_div(input, target, self.reduction, self.log_target)
