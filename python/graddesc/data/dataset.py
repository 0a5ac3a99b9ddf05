"""Datasets: the map-style Dataset protocol and TensorDataset (samples are rows of tensors)."""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from graddesc._tensor import Tensor


class Dataset:
    """A map-style dataset: `dataset[i]` is sample i for 0 <= i < len(dataset).

    Subclasses implement `__getitem__` and `__len__` (DataLoader needs both).

    >>> class Squares(gd.data.Dataset):
    ...     def __len__(self):
    ...         return 4
    ...     def __getitem__(self, i):
    ...         return gd.tensor([float(i)]), gd.tensor([float(i * i)])
    >>> [y.tolist() for _, y in gd.data.DataLoader(Squares(), batch_size=2)]
    [[[0.0], [1.0]], [[4.0], [9.0]]]
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other: Any) -> ConcatDataset:
        """`a + b` is ConcatDataset([a, b]) (PyTorch's operator)."""
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are the rows of tensors with the same first dimension: `ds[i] = (t0[i], t1[i], ...)`.

    Args:
        *tensors: Tensors of shape (N, ...), all with the same N (N samples).

    >>> ds = gd.data.TensorDataset(gd.arange(4), gd.arange(4) * 10)
    >>> len(ds), [t.item() for t in ds[2]]
    (4, [2, 20])
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


class IterableDataset(Dataset):
    """A dataset that is a stream: subclasses implement `__iter__` (DataLoader batches it in
    order; shuffle and samplers do not apply).

    >>> class Stream(gd.data.IterableDataset):
    ...     def __iter__(self):
    ...         return iter(gd.arange(5))
    >>> [b.tolist() for b in gd.data.DataLoader(Stream(), batch_size=2)]
    [[0, 1], [2, 3], [4]]
    """

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __getitem__(self, index: int) -> Any:
        raise TypeError(f"{type(self).__name__} is an IterableDataset: iterate it instead of "
                        "indexing it")

    def __len__(self) -> int:
        # TypeError (not NotImplementedError): list(dataset) asks for a length and goes on
        raise TypeError(f"{type(self).__name__} is an IterableDataset without __len__")

    def __add__(self, other: Any) -> ChainDataset:
        """`a + b` is ChainDataset([a, b]): a's samples, then b's."""
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """The samples of several IterableDatasets one stream after the other.

    >>> class Count(gd.data.IterableDataset):
    ...     def __init__(self, n):
    ...         self.n = n
    ...     def __iter__(self):
    ...         return iter(range(self.n))
    >>> list(gd.data.ChainDataset([Count(2), Count(3)]))
    [0, 1, 0, 1, 2]
    """

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = list(datasets)
        for i, d in enumerate(self.datasets):
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset: datasets[{i}] must be an IterableDataset, got "
                                f"{type(d).__name__}")

    def __iter__(self) -> Iterator[Any]:
        for d in self.datasets:
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


class Subset(Dataset):
    """The samples `dataset[indices[i]]`.

    >>> ds = gd.data.Subset(gd.data.TensorDataset(gd.arange(10)), [2, 4])
    >>> len(ds), ds[1][0].item()
    (2, 4)
    """

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, list):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """The samples of several datasets one after the other.

    >>> a = gd.data.TensorDataset(gd.arange(3))
    >>> b = gd.data.TensorDataset(gd.arange(2))
    >>> len(gd.data.ConcatDataset([a, b]))
    5
    """

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for i, d in enumerate(self.datasets):
            if isinstance(d, IterableDataset):
                raise TypeError(f"ConcatDataset: datasets[{i}] is an IterableDataset, which "
                                "has no length to concatenate")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"ConcatDataset: index must be an int, got {type(index).__name__}")
        if index < 0:
            if -index > n:
                raise IndexError(f"ConcatDataset: index {index} out of range for length {n}")
            index += n
        if index >= n:
            raise IndexError(f"ConcatDataset: index {index} out of range for length {n}")
        k = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[k - 1] if k > 0 else 0
        return self.datasets[k][index - start]


def random_split(dataset: Any, lengths: Sequence[Any], generator: Any = None) -> list:
    """Splits dataset into non-overlapping Subsets of the given lengths (ints summing to
    len(dataset), or fractions summing to 1: remainders go one each to the first subsets,
    PyTorch's rule), in a random order drawn from `generator`.

    >>> a, b = gd.data.random_split(gd.data.TensorDataset(gd.arange(10)), [7, 3])
    >>> len(a), len(b)
    (7, 3)
    """
    from graddesc import _random

    if generator is not None and not isinstance(generator, _random.Generator):
        raise TypeError(f"random_split: generator must be a graddesc.Generator or None, got "
                        f"{type(generator).__name__}")
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    for v in lengths:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"random_split: lengths must be ints or fractions, got {v!r}")
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and \
            not all(isinstance(v, numbers.Integral) for v in lengths):
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not in [0, 1]: {frac}")
        sizes = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    for v in lengths:
        if not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"random_split: lengths must be non-negative ints (or fractions "
                             f"summing to 1), got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths {sum(lengths)} does not equal "
                         f"the length of the input dataset {n}")
    perm = _random._rng(generator).permutation(n).tolist()
    out, start = [], 0
    for v in lengths:
        out.append(Subset(dataset, perm[start:start + int(v)]))
        start += int(v)
    return out
