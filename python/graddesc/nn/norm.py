"""Normalization and lookup layers: BatchNorm1d/2d/3d, LayerNorm, Embedding (PyTorch's semantics,
argument names, defaults and state_dict names)."""

from __future__ import annotations

from typing import Any, Optional

from graddesc import _creation, _dtype
from graddesc._device import check_device
from graddesc._tensor import Tensor
from graddesc.autograd.grad_mode import no_grad
from graddesc.functional import norm as fn
from graddesc.nn import init
from graddesc.nn.module import Module
from graddesc.nn.parameter import Parameter


def _count(v: Any, name: str, cls: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{cls}: {name} must be a non-negative int, got {v!r}")
    return v


def _float_dtype(dtype: Any) -> Any:
    return _dtype.to_dtype(dtype) if dtype is not None else _dtype.float32


class _RunningStats:
    """The running mean and variance (and batch count) that batch and instance norm keep."""

    def _register_running_stats(self, num_features: int, d: Any) -> None:
        track = self.track_running_stats
        self.register_buffer("running_mean",
                             _creation.zeros(num_features, dtype=d) if track else None)
        self.register_buffer("running_var",
                             _creation.ones(num_features, dtype=d) if track else None)
        self.register_buffer("num_batches_tracked",
                             _creation.tensor(0, dtype=_dtype.int64) if track else None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()


class _BatchNorm(_RunningStats, Module):
    """The batch-norm layers' common code; a subclass names the input dimensions it takes."""

    _dims: tuple = (2, 3)
    _shapes: str = "2D or 3D input"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        check_device(device, type(self).__name__)
        super().__init__()
        self.num_features = _count(num_features, "num_features", type(self).__name__)
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        d = _float_dtype(dtype)
        if self.affine:
            self.weight = Parameter(_creation.ones(num_features, dtype=d))
            self.bias = Parameter(_creation.zeros(num_features, dtype=d))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self._register_running_stats(num_features, d)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input(self, x: Any) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
        if x.ndim not in self._dims:
            raise ValueError(f"{name}: expected {self._shapes} (got {x.ndim}D input of shape "
                             f"{tuple(x.shape)})")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected input with {self.num_features} features "
                             f"(channels) in dimension 1, got input of shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        buffers = self._buffers
        track = self.training and self.track_running_stats
        use_batch_stats = self.training or buffers["running_mean"] is None
        return fn.batch_norm(
            x,
            buffers["running_mean"] if not self.training or self.track_running_stats else None,
            buffers["running_var"] if not self.training or self.track_running_stats else None,
            self._parameters["weight"], self._parameters["bias"], use_batch_stats,
            self.momentum if track else 0.0, self.eps,
            num_batches_tracked=buffers["num_batches_tracked"] if track else None)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization over the channels C of input (N, C) or (N, C, L).

    In training mode it normalizes with the batch's mean and (biased) variance and updates
    running_mean / running_var (unbiased variance) with `momentum` (None: a cumulative average
    over num_batches_tracked batches); in eval mode it normalizes with the running statistics.

    >>> bn = nn.BatchNorm1d(2)
    >>> x = gd.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> bn(x)  # training mode: the batch's statistics
    tensor([[-1.0000, -1.0000],
            [ 1.0000,  1.0000]], grad_fn=<...>)
    >>> bn.running_mean  # moved by momentum 0.1 towards the batch mean
    tensor([0.2000, 2.0000])
    >>> _ = bn.eval()  # eval mode: the running statistics
    """


class BatchNorm2d(_BatchNorm):
    """Batch normalization over the channels C of images (N, C, H, W) (PyTorch's BatchNorm2d):
    statistics per channel over N, H and W; the same arguments, running statistics and
    state_dict names as BatchNorm1d. The (N, C, L) kernel does the work (H*W as L).

    >>> bn = nn.BatchNorm2d(3)
    >>> y = bn(gd.randn(4, 3, 5, 5))
    >>> y.shape, bn.running_mean.shape
    (graddesc.Size([4, 3, 5, 5]), graddesc.Size([3]))
    >>> abs(y[:, 1].mean().item()) < 1e-6  # each channel normalized
    True
    """

    _dims = (4,)
    _shapes = "4D input (N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization over the channels C of volumes (N, C, D, H, W) (PyTorch's
    BatchNorm3d); see BatchNorm2d.

    >>> nn.BatchNorm3d(2)(gd.randn(3, 2, 2, 2, 2)).shape
    graddesc.Size([3, 2, 2, 2, 2])
    """

    _dims = (5,)
    _shapes = "5D input (N, C, D, H, W)"


class LayerNorm(Module):
    """Layer normalization over the trailing dimensions normalized_shape of the input.

    >>> ln = nn.LayerNorm(4)
    >>> y = ln(gd.tensor([[1.0, 2.0, 3.0, 4.0]]))
    >>> round(y.mean().item(), 4), round((y * y).mean().item(), 3)  # mean 0, variance 1
    (0.0, 1.0)
    """

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        check_device(device, "LayerNorm")
        super().__init__()
        self.normalized_shape = fn._normalized_shape(normalized_shape, "LayerNorm")
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        d = _float_dtype(dtype)
        if self.elementwise_affine:
            self.weight = Parameter(_creation.ones(*self.normalized_shape, dtype=d))
            if bias:
                self.bias = Parameter(_creation.zeros(*self.normalized_shape, dtype=d))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        p = self._parameters
        return fn.layer_norm(x, self.normalized_shape, p["weight"], p["bias"], self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class Embedding(Module):
    """A lookup table: weight (num_embeddings, embedding_dim) ~ N(0, 1), the row padding_idx
    zero and never updated by the gradient.

    >>> emb = nn.Embedding(10, 3, padding_idx=0)
    >>> emb(gd.tensor([[0, 2], [4, 0]])).shape
    graddesc.Size([2, 2, 3])
    >>> emb.weight[0].tolist()  # the padding row
    [0.0, 0.0, 0.0]
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 max_norm: Optional[float] = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False,
                 _weight: Optional[Tensor] = None, _freeze: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        check_device(device, "Embedding")
        super().__init__()
        self.num_embeddings = _count(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = _count(embedding_dim, "embedding_dim", "Embedding")
        if padding_idx is not None:
            padding_idx = fn._padding_idx(padding_idx, num_embeddings, "Embedding")
        self.padding_idx = padding_idx
        self.max_norm, self.norm_type = max_norm, float(norm_type)
        if scale_grad_by_freq or sparse:  # checked here rather than at the first forward
            fn.embedding(_creation.zeros(0, dtype=_dtype.int64),
                         _creation.zeros(1, 1), None, None, 2.0, scale_grad_by_freq, sparse)
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            self.weight = Parameter(_creation.empty(num_embeddings, embedding_dim,
                                                    dtype=_float_dtype(dtype)))
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight expected shape ({num_embeddings}, "
                                 f"{embedding_dim}), got {tuple(_weight.shape)}")
            self.weight = Parameter(_weight.detach().clone(), requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0.0)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return fn.embedding(input, self._parameters["weight"], self.padding_idx, self.max_norm,
                            self.norm_type, self.scale_grad_by_freq, self.sparse)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True,
                        padding_idx: Optional[int] = None, max_norm: Optional[float] = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> Embedding:
        """An Embedding whose weight is a copy of embeddings (V, D), frozen by default."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            raise ValueError("Embedding.from_pretrained: embeddings must be a 2-d Tensor")
        V, D = embeddings.shape
        return cls(V, D, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings, _freeze=freeze)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        return s
