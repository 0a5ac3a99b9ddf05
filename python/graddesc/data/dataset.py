"""Datasets: the map-style Dataset protocol and TensorDataset (samples are rows of tensors)."""

from __future__ import annotations

from typing import Any

from graddesc._tensor import Tensor


class Dataset:
    """A map-style dataset: `dataset[i]` is sample i for 0 <= i < len(dataset).

    Subclasses implement `__getitem__` and `__len__` (DataLoader needs both).
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


class TensorDataset(Dataset):
    """Samples are the rows of tensors with the same first dimension: `ds[i] = (t0[i], t1[i], ...)`.

    Args:
        *tensors: Tensors of shape (N, ...), all with the same N (N samples).
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: tensors[{i}] must be a graddesc Tensor, got "
                                f"{type(t).__name__}")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: tensors[{i}] is 0-d; every tensor needs a "
                                 "first dimension indexing the samples")
        n = tensors[0].shape[0]
        for i, t in enumerate(tensors):
            if t.shape[0] != n:
                sizes = [tuple(u.shape) for u in tensors]
                raise ValueError(f"TensorDataset: size mismatch between tensors: tensors[0] has "
                                 f"{n} samples, tensors[{i}] has {t.shape[0]} (shapes {sizes})")
        self.tensors = tuple(tensors)

    def __getitem__(self, index: Any) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return f"TensorDataset({shapes})"
