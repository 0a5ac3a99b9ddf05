"""Layers: Linear, containers, pointwise nonlinearities, NearestNeighbor, losses."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from graddesc import _creation, _dtype
from graddesc._device import check_device
from graddesc._tensor import Tensor
from graddesc.functional import activation as act
from graddesc.functional import linear as lin
from graddesc.functional import loss as lss
from graddesc.functional import reduce as red
from graddesc.functional import shape as shp
from graddesc.nn import init
from graddesc.nn.module import Module
from graddesc.nn.parameter import Parameter


def _positive_int(v: Any, name: str, cls: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{cls}: {name} must be a non-negative int, got {v!r}")
    return v


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features); PyTorch's default init.

    >>> layer = nn.Linear(3, 2)
    >>> tuple(layer.weight.shape), tuple(layer(gd.randn(5, 3)).shape)
    ((2, 3), (5, 2))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        check_device(device, "Linear")
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Linear")
        self.out_features = _positive_int(out_features, "out_features", "Linear")
        d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.float32
        self.weight = Parameter(_creation.empty(out_features, in_features, dtype=d))
        if bias:
            self.bias = Parameter(_creation.empty(out_features, dtype=d))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        # straight from the registry: self.weight would reach Module.__getattr__ only after a
        # failed ordinary lookup, which costs more than the rest of this method
        params = self._parameters
        return lin.linear(x, params["weight"], params["bias"])

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Module):
    """Returns its input unchanged (any constructor arguments are ignored, as in PyTorch).

    >>> nn.Identity()(gd.tensor([1.0, 2.0])).tolist()
    [1.0, 2.0]
    """
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Flattens dims `start_dim` to `end_dim` into one (by default all but the batch dim).

    >>> tuple(nn.Flatten()(gd.zeros(4, 8, 8)).shape)
    (4, 64)
    """
    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return shp.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(Module):
    """max(0, x) elementwise, the lecture's usual nonlinearity.

    >>> nn.ReLU()(gd.tensor([-1.0, 0.5])).tolist()
    [0.0, 0.5]
    """
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return x.relu_() if self.inplace else act.relu(x)


class LeakyReLU(Module):
    """x where x >= 0, `negative_slope` * x elsewhere.

    >>> nn.LeakyReLU(0.5)(gd.tensor([-2.0, 3.0])).tolist()
    [-1.0, 3.0]
    """
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return act.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    """The hyperbolic tangent, elementwise.

    >>> nn.Tanh()(gd.tensor([0.0])).tolist()
    [0.0]
    """
    def forward(self, x: Tensor) -> Tensor:
        return act.tanh(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)), elementwise.

    >>> nn.Sigmoid()(gd.tensor([0.0])).tolist()
    [0.5]
    """
    def forward(self, x: Tensor) -> Tensor:
        return act.sigmoid(x)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta elementwise (x itself where beta x > threshold).

    >>> round(nn.Softplus()(gd.tensor([0.0])).item(), 4)
    0.6931
    """
    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x: Tensor) -> Tensor:
        return act.softplus(x, self.beta, self.threshold)


class GELU(Module):
    """x times the standard normal CDF of x (`approximate="tanh"`: the tanh approximation).

    >>> [round(v, 4) for v in nn.GELU()(gd.tensor([0.0, 1.0])).tolist()]
    [0.0, 0.8413]
    """
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return act.gelu(x, self.approximate)


class Softmax(Module):
    """exp(x) normalised to sum to 1 along `dim`.

    >>> nn.Softmax(dim=1)(gd.zeros(1, 4)).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """
    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return lss.softmax(x, self.dim)


class LogSoftmax(Module):
    """log(softmax(x)) along `dim`, computed stably.

    >>> round(nn.LogSoftmax(dim=1)(gd.zeros(1, 2))[0, 0].item(), 4)
    -0.6931
    """
    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return lss.log_softmax(x, self.dim)


class Sequential(Module):
    """Modules applied in order: Sequential(m1, m2, ...) or Sequential(OrderedDict(...)).

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> tuple(net(gd.randn(3, 4)).shape)
    (3, 2)
    """

    def __init__(self, *args: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, idx: Any) -> Any:
        mods = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(mods[idx]))
        n = len(mods)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for Sequential of length {n}")
        return mods[idx][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered.

    >>> layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    >>> len(layers), len(list(layers.parameters()))
    (3, 6)
    """

    def __init__(self, modules: Optional[Iterable[Module]] = None) -> None:
        super().__init__()
        if modules is not None:
            for m in modules:
                self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, idx: Any) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]

    def __setitem__(self, idx: int, module: Module) -> None:
        key = list(self._modules.keys())[idx]
        self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class NearestNeighbor(Module):
    """The lecture's nearest-neighbour model: prototypes w_k (rows of `weight`, (K, dim)).

    forward(x) returns argmin_k ||x - w_k||^2 (int64 indices, not differentiable);
    distances(x) returns the differentiable (B, K) squared distances, so that
    distances(x).min(dim=1).values.mean() trains the prototypes by gradient descent.

    >>> model = nn.NearestNeighbor(2, 2)
    >>> with gd.no_grad():
    ...     _ = model.weight.copy_(gd.tensor([[0.0, 0.0], [5.0, 5.0]]))
    >>> model(gd.tensor([[4.0, 4.5], [0.5, 0.0]])).tolist()
    [1, 0]
    >>> tuple(model.distances(gd.randn(3, 2)).shape)
    (3, 2)
    """

    def __init__(self, num_prototypes: int, dim: int, dtype: Any = None) -> None:
        super().__init__()
        if isinstance(num_prototypes, bool) or not isinstance(num_prototypes, int) or \
                num_prototypes < 1:
            raise ValueError(f"NearestNeighbor: num_prototypes must be a positive int, got "
                             f"{num_prototypes!r}")
        self.num_prototypes = num_prototypes
        self.dim = _positive_int(dim, "dim", "NearestNeighbor")
        d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.float32
        self.weight = Parameter(_creation.randn(num_prototypes, dim, dtype=d))

    def distances(self, x: Tensor) -> Tensor:
        """Squared distances (B, K) from each row of x (B, dim) (or x (dim,) -> (K,))."""
        if not isinstance(x, Tensor):
            raise TypeError(f"NearestNeighbor: x must be a Tensor, got {type(x).__name__}")
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise ValueError(f"NearestNeighbor: x must have shape (B, {self.dim}) or "
                             f"({self.dim},), got {tuple(x.shape)}")
        diff = x.unsqueeze(-2) - self.weight  # (B, K, dim)
        return red.sum(diff * diff, -1)

    def forward(self, x: Tensor) -> Tensor:
        from graddesc.autograd.grad_mode import no_grad

        with no_grad():
            return red.argmin(self.distances(x), dim=-1)

    def extra_repr(self) -> str:
        return f"num_prototypes={self.num_prototypes}, dim={self.dim}"


# ---- losses -------------------------------------------------------------------------------
class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', "
                             f"got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class MSELoss(_Loss):
    """Squared error (x - y)**2: per sample with `reduction='none'`, averaged with `'mean'`
    (the default), summed with `'sum'`.

    >>> nn.MSELoss()(gd.tensor([1.0, 2.0]), gd.tensor([0.0, 0.0])).item()
    2.5
    >>> nn.MSELoss(reduction="none")(gd.tensor([1.0, 2.0]), gd.tensor([0.0, 0.0])).tolist()
    [1.0, 4.0]
    """
    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Absolute error |x - y|, reduced as `reduction` says ('mean', 'sum' or 'none').

    >>> nn.L1Loss()(gd.tensor([1.0, -3.0]), gd.tensor([0.0, 0.0])).item()
    2.0
    """
    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.l1_loss(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits and class indices (or class probabilities).

    >>> logits = gd.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(nn.CrossEntropyLoss()(logits, gd.tensor([0, 1])).item(), 4)
    0.1269
    """

    def __init__(self, weight: Optional[Tensor] = None, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)  # (a buffer, as PyTorch's: in state_dict, .to)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                                 self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices `y` given log-probabilities `x` (N, C): -x[n, y[n]],
    optionally weighted per class, skipping `ignore_index`.

    >>> x = gd.tensor([[-0.5, -1.0], [-2.0, -0.25]])
    >>> nn.NLLLoss()(x, gd.tensor([0, 1])).item()
    0.375
    """
    def __init__(self, weight: Optional[Tensor] = None, ignore_index: int = -100,
                 reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy -(y log p + (1 - y) log(1 - p)) of probabilities `p`.

    >>> round(nn.BCELoss()(gd.tensor([0.5]), gd.tensor([1.0])).item(), 4)
    0.6931
    """
    def __init__(self, weight: Optional[Tensor] = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(x) computed from the logits `x` (numerically stable);
    `pos_weight` weighs the positive term.

    >>> round(nn.BCEWithLogitsLoss()(gd.tensor([0.0]), gd.tensor([1.0])).item(), 4)
    0.6931
    """
    def __init__(self, weight: Optional[Tensor] = None, reduction: str = "mean",
                 pos_weight: Optional[Tensor] = None) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                    self.pos_weight)


class HingeEmbeddingLoss(_Loss):
    """x where y = 1, max(0, margin - x) where y = -1.

    >>> nn.HingeEmbeddingLoss()(gd.tensor([0.25, 0.5]), gd.tensor([1.0, -1.0])).item()
    0.375
    """
    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return lss.hinge_embedding_loss(input, target, self.margin, self.reduction)
