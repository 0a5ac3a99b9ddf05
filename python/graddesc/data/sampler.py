"""Samplers: the order in which a DataLoader visits a map-style dataset (PyTorch's semantics).

A sampler yields indices; a BatchSampler groups a sampler's indices into lists. Random samplers
draw from a graddesc.Generator (the global one when generator=None), so equally seeded runs
visit samples in equal orders.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Sized
from typing import Any, Optional

import numpy as np

from graddesc import _random
from graddesc._tensor import Tensor


def _check_generator(generator: Any, where: str) -> None:
    if generator is not None and not isinstance(generator, _random.Generator):
        raise TypeError(f"{where}: generator must be a graddesc.Generator or None, got "
                        f"{type(generator).__name__}")


def _check_count(v: Any, name: str, where: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {v}")
    return int(v)


class Sampler:
    """Base class: iterating a sampler yields dataset indices.

    >>> class EvenFirst(gd.data.Sampler):
    ...     def __init__(self, n):
    ...         self.n = n
    ...     def __iter__(self):
    ...         return iter(list(range(0, self.n, 2)) + list(range(1, self.n, 2)))
    ...     def __len__(self):
    ...         return self.n
    >>> list(EvenFirst(5))
    [0, 2, 4, 1, 3]
    """

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class SequentialSampler(Sampler):
    """Indices 0, 1, ..., len(data_source) - 1.

    >>> list(gd.data.SequentialSampler(range(3)))
    [0, 1, 2]
    """

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation per epoch, or num_samples draws with replacement.

    >>> sorted(gd.data.RandomSampler(range(4)))
    [0, 1, 2, 3]
    """

    def __init__(self, data_source: Sized, replacement: bool = False,
                 num_samples: Optional[int] = None, generator: Any = None) -> None:
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement must be a bool, got "
                            f"{type(replacement).__name__}")
        if num_samples is not None:
            _check_count(num_samples, "num_samples", "RandomSampler", 1)
        _check_generator(generator, "RandomSampler")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        rng = _random._rng(self.generator)
        if self.replacement:
            if n == 0:
                raise ValueError("RandomSampler: can't draw with replacement from an empty "
                                 "data_source")
            return iter(rng.integers(0, n, size=self.num_samples).tolist())
        # without replacement, num_samples > n walks several permutations (PyTorch's rule)
        out: list = []
        while len(out) < self.num_samples and n > 0:
            out.extend(rng.permutation(n).tolist())
        return iter(out[:self.num_samples])

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order per epoch.

    >>> sorted(gd.data.SubsetRandomSampler([5, 7, 9]))
    [5, 7, 9]
    """

    def __init__(self, indices: Iterable[int], generator: Any = None) -> None:
        _check_generator(generator, "SubsetRandomSampler")
        self.indices = list(indices)
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        perm = _random._rng(self.generator).permutation(len(self.indices))
        return iter([self.indices[i] for i in perm])

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """num_samples indices drawn with probabilities proportional to weights.

    >>> list(gd.data.WeightedRandomSampler([0.0, 1.0], num_samples=3))
    [1, 1, 1]
    """

    def __init__(self, weights: Any, num_samples: int, replacement: bool = True,
                 generator: Any = None) -> None:
        _check_count(num_samples, "num_samples", "WeightedRandomSampler", 1)
        if not isinstance(replacement, bool):
            raise TypeError(f"WeightedRandomSampler: replacement must be a bool, got "
                            f"{type(replacement).__name__}")
        _check_generator(generator, "WeightedRandomSampler")
        w = np.asarray(weights._data if isinstance(weights, Tensor) else weights, np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"WeightedRandomSampler: weights must be a non-empty 1-d sequence, "
                             f"got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative and "
                             "not all zero")
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(f"WeightedRandomSampler: num_samples={num_samples} exceeds the "
                             f"{np.count_nonzero(w)} nonzero weights (replacement=False)")
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rng = _random._rng(self.generator)
        p = self.weights / self.weights.sum()
        idx = rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p)
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of `sampler` into lists of batch_size (the last may be shorter).

    >>> list(gd.data.BatchSampler(range(5), batch_size=2, drop_last=False))
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool) -> None:
        self.batch_size = _check_count(batch_size, "batch_size", "BatchSampler", 1)
        if not isinstance(drop_last, bool):
            raise TypeError(f"BatchSampler: drop_last must be a bool, got "
                            f"{type(drop_last).__name__}")
        self.sampler = sampler
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list]:
        batch: list = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
