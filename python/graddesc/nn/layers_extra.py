"""Module forms of the activations in functional/activation_extra.py and of F.pad (ZeroPad*d,
ConstantPad*d), with PyTorch's arguments, defaults, reprs and state_dict names."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from graddesc import _creation, _dtype
from graddesc._device import check_device
from graddesc._tensor import Tensor
from graddesc.autograd.grad_mode import no_grad
from graddesc.functional import activation_extra as fa
from graddesc.functional import distance as fd
from graddesc.functional import pad as fp
from graddesc.nn.module import Module
from graddesc.nn.parameter import Parameter


def _inplace_repr(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class Hardtanh(Module):
    """input clamped to [min_val, max_val].

    >>> nn.Hardtanh(-2.0, 2.0)(gd.tensor([-3.0, 1.0, 5.0])).tolist()
    [-2.0, 1.0, 2.0]
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) cannot be greater than max_val "
                             f"({max_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return fa.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        s = f"min_val={self.min_val}, max_val={self.max_val}"
        return s + (", inplace=True" if self.inplace else "")


class ReLU6(Hardtanh):
    """min(max(input, 0), 6).

    >>> nn.ReLU6()(gd.tensor([-1.0, 7.0])).tolist()
    [0.0, 6.0]
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace)


class _Alpha(Module):
    _fn: Any = None

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return type(self)._fn(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class ELU(_Alpha):
    """input where input > 0, alpha * (exp(input) - 1) elsewhere.

    >>> nn.ELU()(gd.tensor([0.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    _fn = staticmethod(fa.elu)


class CELU(_Alpha):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)).

    >>> nn.CELU(alpha=2.0)(gd.tensor([0.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    _fn = staticmethod(fa.celu)


class _Inplace(Module):
    _fn: Any = None
    _show_inplace = True

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return type(self)._fn(input, self.inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace) if self._show_inplace else ""


class SELU(_Inplace):
    """scale * elu(input, alpha) with PyTorch's constants.

    >>> round(nn.SELU()(gd.tensor([1.0])).item(), 4)
    1.0507
    """

    _fn = staticmethod(fa.selu)


class Hardswish(_Inplace):
    """x * min(max(x + 3, 0), 6) / 6.

    >>> nn.Hardswish()(gd.tensor([4.0])).tolist()
    [4.0]
    """

    _fn = staticmethod(fa.hardswish)
    _show_inplace = False


class Hardsigmoid(_Inplace):
    """min(max(x + 3, 0), 6) / 6.

    >>> nn.Hardsigmoid()(gd.tensor([0.0])).tolist()
    [0.5]
    """

    _fn = staticmethod(fa.hardsigmoid)
    _show_inplace = False


class Mish(_Inplace):
    """x * tanh(softplus(x)).

    >>> nn.Mish()(gd.tensor([0.0])).tolist()
    [0.0]
    """

    _fn = staticmethod(fa.mish)
    _show_inplace = False


class _Plain(Module):
    _fn: Any = None

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return type(self)._fn(input)


class LogSigmoid(_Plain):
    """log(sigmoid(x)).

    >>> round(nn.LogSigmoid()(gd.tensor([0.0])).item(), 4)
    -0.6931
    """

    _fn = staticmethod(fa.logsigmoid)


class Softsign(_Plain):
    """x / (1 + |x|).

    >>> nn.Softsign()(gd.tensor([1.0])).tolist()
    [0.5]
    """

    _fn = staticmethod(fa.softsign)


class Tanhshrink(_Plain):
    """x - tanh(x).

    >>> nn.Tanhshrink()(gd.tensor([0.0])).tolist()
    [0.0]
    """

    _fn = staticmethod(fa.tanhshrink)


class _Shrink(Module):
    _fn: Any = None

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return type(self)._fn(input, self.lambd)

    def extra_repr(self) -> str:
        return str(self.lambd)


class Softshrink(_Shrink):
    """x - lambd where x > lambd, x + lambd where x < -lambd, 0 elsewhere.

    >>> nn.Softshrink(1.0)(gd.tensor([-3.0, 0.5, 2.0])).tolist()
    [-2.0, 0.0, 1.0]
    """

    _fn = staticmethod(fa.softshrink)


class Hardshrink(_Shrink):
    """x where |x| > lambd, 0 elsewhere.

    >>> nn.Hardshrink(1.0)(gd.tensor([-3.0, 0.5, 2.0])).tolist()
    [-3.0, 0.0, 2.0]
    """

    _fn = staticmethod(fa.hardshrink)


class Softmin(Module):
    """softmax(-input, dim).

    >>> nn.Softmin(dim=0)(gd.tensor([0.0, 0.0])).tolist()
    [0.5, 0.5]
    """

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return fa.softmin(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class GLU(Module):
    """a * sigmoid(b), a and b the halves of the input along dim.

    >>> nn.GLU()(gd.tensor([[1.0, 2.0, 0.0, 0.0]])).tolist()
    [[0.5, 1.0]]
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return fa.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class PReLU(Module):
    """input where input > 0, weight * input elsewhere, weight a learnable Parameter of
    num_parameters elements (1, or one per channel) set to init.

    >>> m = nn.PReLU()
    >>> m(gd.tensor([-4.0, 2.0])).tolist()
    [-1.0, 2.0]
    >>> list(m.state_dict())
    ['weight']
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = None) -> None:
        check_device(device, "PReLU")
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int) or \
                num_parameters < 1:
            raise ValueError(f"PReLU: num_parameters must be a positive int, got "
                             f"{num_parameters!r}")
        self.num_parameters, self.init = num_parameters, float(init)
        d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.float32
        self.weight = Parameter(_creation.full((num_parameters,), self.init, dtype=d))

    def reset_parameters(self) -> None:
        with no_grad():
            self.weight.fill_(self.init)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return fa.prelu(input, self._parameters["weight"])

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


# ---- padding ---------------------------------------------------------------------------------

def _padding(padding: Any, n: int, cls: str) -> tuple:
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        return (int(padding),) * (2 * n)
    try:
        p = tuple(int(v) for v in padding)
    except TypeError:
        raise TypeError(f"{cls}: padding must be an int or a tuple of {2 * n} ints, got "
                        f"{padding!r}") from None
    if len(p) != 2 * n:
        raise ValueError(f"{cls}: padding must be an int or a tuple of {2 * n} ints, got "
                         f"{padding!r}")
    return p


class _ConstantPadNd(Module):
    _n = 1

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__()
        self.padding = _padding(padding, self._n, type(self).__name__)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return fp.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dimension with `value`: padding an int or (left, right).

    >>> nn.ConstantPad1d((1, 2), 3.5)(gd.tensor([[1.0]])).tolist()
    [[3.5, 1.0, 3.5, 3.5]]
    """

    _n = 1


class ConstantPad2d(_ConstantPadNd):
    """Pads the last two dimensions with `value`: padding an int or (left, right, top, bottom).

    >>> nn.ConstantPad2d(1, 2.0)(gd.tensor([[[1.0]]])).tolist()
    [[[2.0, 2.0, 2.0], [2.0, 1.0, 2.0], [2.0, 2.0, 2.0]]]
    """

    _n = 2


class ConstantPad3d(_ConstantPadNd):
    """Pads the last three dimensions with `value`: padding an int or a tuple of 6 ints.

    >>> nn.ConstantPad3d(1, 0.0)(gd.zeros(1, 1, 1, 1)).shape
    graddesc.Size([1, 3, 3, 3])
    """

    _n = 3


class ZeroPad1d(ConstantPad1d):
    """Pads the last dimension with zeros: padding an int or (left, right).

    >>> nn.ZeroPad1d(1)(gd.tensor([[1.0]])).tolist()
    [[0.0, 1.0, 0.0]]
    """

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(ConstantPad2d):
    """Pads the last two dimensions with zeros: padding an int or (left, right, top, bottom).

    >>> nn.ZeroPad2d((1, 0, 0, 1))(gd.tensor([[[1.0]]])).tolist()
    [[[0.0, 1.0], [0.0, 0.0]]]
    """

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


# ---- distances and the losses on them ----------------------------------------------------------

class CosineSimilarity(Module):
    """F.cosine_similarity(x1, x2, dim, eps).

    >>> nn.CosineSimilarity(dim=0)(gd.tensor([1.0, 0.0]), gd.tensor([1.0, 1.0])).item()
    0.7071067690849304
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return fd.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """F.pairwise_distance(x1, x2, p, eps, keepdim).

    >>> nn.PairwiseDistance(eps=0.0)(gd.tensor([[3.0, 4.0]]), gd.zeros(1, 2)).tolist()
    [5.0]
    """

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return fd.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


class TripletMarginLoss(Module):
    """F.triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap, reduction).

    >>> a = gd.zeros(1, 2)
    >>> nn.TripletMarginLoss(eps=0.0)(a, gd.tensor([[1.0, 0.0]]), gd.tensor([[1.0, 0.0]])).item()
    1.0
    """

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                 swap: bool = False, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        fd._legacy(size_average, reduce, "TripletMarginLoss")
        self.margin, self.p, self.eps, self.swap = margin, p, eps, swap
        self.reduction = reduction

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return fd.triplet_margin_loss(anchor, positive, negative, self.margin, self.p,
                                      self.eps, self.swap, reduction=self.reduction)


class MarginRankingLoss(Module):
    """F.margin_ranking_loss(input1, input2, target, margin, reduction).

    >>> nn.MarginRankingLoss(margin=1.0)(gd.tensor([2.0]), gd.tensor([0.0]),
    ...                                  gd.tensor([1.0])).item()
    0.0
    """

    def __init__(self, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        fd._legacy(size_average, reduce, "MarginRankingLoss")
        self.margin, self.reduction = margin, reduction

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return fd.margin_ranking_loss(input1, input2, target, self.margin,
                                      reduction=self.reduction)


class CosineEmbeddingLoss(Module):
    """F.cosine_embedding_loss(input1, input2, target, margin, reduction).

    >>> nn.CosineEmbeddingLoss()(gd.tensor([[1.0, 0.0]]), gd.tensor([[1.0, 0.0]]),
    ...                          gd.tensor([-1.0])).item()
    1.0
    """

    def __init__(self, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        fd._legacy(size_average, reduce, "CosineEmbeddingLoss")
        self.margin, self.reduction = margin, reduction

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return fd.cosine_embedding_loss(input1, input2, target, self.margin,
                                        reduction=self.reduction)


__all__ = ["CELU", "ELU", "GLU", "SELU", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "CosineEmbeddingLoss", "CosineSimilarity", "Hardshrink", "Hardsigmoid", "Hardswish",
           "Hardtanh", "LogSigmoid", "MarginRankingLoss", "Mish", "PReLU", "PairwiseDistance",
           "ReLU6", "Softmin", "Softshrink", "Softsign", "Tanhshrink", "TripletMarginLoss",
           "ZeroPad1d", "ZeroPad2d"]
