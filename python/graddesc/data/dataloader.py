"""DataLoader: iterates a dataset in (shuffled) mini-batches stacked into Tensors.

batch_size=len(dataset) gives full-batch gradient descent, batch_size=1 stochastic gradient
descent, anything between mini-batch SGD. For a TensorDataset the batch is gathered with one
fancy index per tensor (no per-sample Python loop); other datasets go sample by sample through
`collate_fn` (default: `default_collate`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from graddesc import _random
from graddesc._tensor import Tensor, _convert_array
from graddesc.data.dataset import TensorDataset


def default_collate(samples: Sequence[Any]) -> Any:
    """Stacks a list of samples into a batch, field by field (PyTorch's rule).

    Tensors and NumPy arrays are stacked along a new first dimension; Python ints become an
    int64 tensor, floats float64, bools bool; tuples and lists of fields give a list of batched
    fields; dicts give a dict. Anything else raises TypeError.

    >>> x, y = gd.data.default_collate([(gd.tensor([1.0]), 0), (gd.tensor([2.0]), 1)])
    >>> x.tolist(), y.tolist()
    ([[1.0], [2.0]], [0, 1])
    """
    if len(samples) == 0:
        raise ValueError("default_collate: expected at least one sample")
    first = samples[0]
    if isinstance(first, Tensor):
        arrays = [_field_array(s, Tensor, "tensor") for s in samples]
        if any(s.requires_grad for s in samples):
            from graddesc.functional.shape import stack

            return stack(list(samples))
        return Tensor._make(_stack(arrays))
    if isinstance(first, (np.ndarray, np.generic)):
        arrays = [_field_array(s, (np.ndarray, np.generic), "NumPy array") for s in samples]
        return Tensor._make(_convert_array(_stack([np.asarray(a) for a in arrays]), None,
                                           "default_collate"))
    if isinstance(first, (bool, numbers.Number)) and not isinstance(first, (str, bytes)):
        if isinstance(first, bool):
            dtype: Any = np.bool_
        elif isinstance(first, numbers.Integral):
            dtype = np.int64
        elif isinstance(first, numbers.Real):
            dtype = np.float64
        else:
            raise TypeError(f"default_collate: unsupported sample type {type(first).__name__}")
        try:
            return Tensor._make(np.array(list(samples), dtype=dtype))
        except (TypeError, ValueError, OverflowError) as e:
            raise TypeError(f"default_collate: can't batch {type(first).__name__} samples: "
                            f"{e}") from None
    if isinstance(first, Mapping):
        keys = list(first.keys())
        for s in samples:
            if not isinstance(s, Mapping) or list(s.keys()) != keys:
                raise ValueError("default_collate: dict samples must all have the same keys")
        return {k: default_collate([s[k] for s in samples]) for k in keys}
    if isinstance(first, (tuple, list)):
        n = len(first)
        for s in samples:
            if not isinstance(s, (tuple, list)) or len(s) != n:
                raise ValueError(f"default_collate: each sample must have {n} fields, got "
                                 f"{len(s) if isinstance(s, (tuple, list)) else type(s).__name__}")
        return [default_collate([s[i] for s in samples]) for i in range(n)]
    raise TypeError(f"default_collate: samples must be Tensors, NumPy arrays, numbers, or "
                    f"tuples/lists/dicts of them; got {type(first).__name__}")


def _field_array(s: Any, kind: Any, name: str) -> Any:
    if not isinstance(s, kind):
        raise TypeError(f"default_collate: expected every sample field to be a {name}, got "
                        f"{type(s).__name__}")
    return s._data if isinstance(s, Tensor) else s


def _stack(arrays: list) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"default_collate: can't stack samples of different shapes "
                         f"{sorted(shapes)}")
    return np.stack(arrays)


class DataLoader:
    """Iterates `dataset` in batches of `batch_size` samples.

    Args:
        dataset: a map-style dataset (`__len__` and `__getitem__`), e.g. a TensorDataset, or an
            IterableDataset (batched in its own order).
        batch_size: samples per batch (>= 1), or None to yield samples unbatched. The last
            batch is smaller when len(dataset) % batch_size != 0, unless `drop_last`.
        shuffle: draw a new random order every epoch (every `iter(loader)`).
        sampler: the order of indices (excludes shuffle); batch_sampler: lists of indices
            (excludes batch_size, shuffle, sampler, drop_last).
        num_workers: 0 loads batches in the main process; N > 0 starts N worker processes
            (spawn start method; the dataset, collate_fn and worker_init_fn must pickle)
            that load batches ahead, each seeded with base_seed + worker id; batches arrive
            in order and equal those of num_workers=0. An IterableDataset is read by every
            worker (each batches its own copy, which can shard itself with get_worker_info())
            and the batches are taken from the workers in turn, as PyTorch does.
        collate_fn: turns a list of samples into a batch (default: `default_collate`).
        pin_memory: accepted and ignored: pinned memory only matters for copies to a GPU.
        drop_last: drop the last, incomplete batch.
        generator: the graddesc.Generator that draws the orders; None uses the global one
            (`gd.manual_seed`). Loaders with equally seeded generators give equal batches.
        persistent_workers: keep the workers between epochs; timeout: seconds to wait for a
            batch (0: no limit); worker_init_fn(worker_id) runs in each worker after seeding;
            prefetch_factor: batches loaded ahead per worker (default 2).

    >>> ds = gd.data.TensorDataset(gd.arange(10), gd.arange(10))
    >>> [tuple(x.shape) for x, y in gd.data.DataLoader(ds, batch_size=4)]
    [(4,), (4,), (2,)]
    """

    # the collate function of a loader given collate_fn=None (also handed to its workers)
    _default_collate = staticmethod(default_collate)

    def __init__(self, dataset: Any, batch_size: Any = 1, shuffle: Any = None,
                 sampler: Any = None, batch_sampler: Any = None, num_workers: int = 0,
                 collate_fn: Callable[[list], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Any = None,
                 generator: _random.Generator | None = None, *, prefetch_factor: Any = None,
                 persistent_workers: bool = False) -> None:
        from graddesc.data.dataset import IterableDataset
        from graddesc.data.sampler import BatchSampler, RandomSampler, SequentialSampler

        iterable = isinstance(dataset, IterableDataset)
        if not iterable and not (hasattr(dataset, "__len__") and
                                 hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset must support len() and indexing, or be an "
                            f"IterableDataset, got {type(dataset).__name__}")
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
                raise TypeError(f"DataLoader: batch_size must be an int or None, got "
                                f"{type(batch_size).__name__}")
            if batch_size < 1:
                raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if shuffle is None:
            shuffle = False
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last),
                           ("pin_memory", pin_memory), ("persistent_workers", persistent_workers)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"DataLoader: {name} must be a bool, got {type(flag).__name__}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral):
            raise TypeError(f"DataLoader: num_workers must be an int, got "
                            f"{type(num_workers).__name__}")
        if num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be >= 0, got {num_workers}")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if num_workers == 0 and (timeout != 0 or worker_init_fn is not None or
                                 prefetch_factor is not None):
            raise ValueError("DataLoader: timeout, worker_init_fn and prefetch_factor only "
                             "apply to worker processes (num_workers > 0)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"DataLoader: timeout must be a non-negative number, got "
                             f"{timeout!r}")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"DataLoader: worker_init_fn must be callable, got "
                            f"{type(worker_init_fn).__name__}")
        if prefetch_factor is None:
            prefetch_factor = 2 if num_workers > 0 else None
        elif isinstance(prefetch_factor, bool) or not isinstance(prefetch_factor,
                                                                 numbers.Integral) \
                or prefetch_factor < 1:
            raise ValueError(f"DataLoader: prefetch_factor must be an int >= 1, got "
                             f"{prefetch_factor!r}")
        if generator is not None and not isinstance(generator, _random.Generator):
            raise TypeError(f"DataLoader: generator must be a graddesc.Generator or None, got "
                            f"{type(generator).__name__}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got "
                            f"{type(collate_fn).__name__}")
        if iterable:
            if shuffle:
                raise ValueError("DataLoader: shuffle=True does not apply to an "
                                 "IterableDataset (it yields samples in its own order)")
            if sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader: sampler and batch_sampler do not apply to an "
                                 "IterableDataset")
        else:
            n = len(dataset)
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
                raise TypeError(f"DataLoader: len(dataset) must be a non-negative int, got "
                                f"{n!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                                 "batch_size, shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        self.collate_fn = collate_fn
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)  # a no-op on the CPU
        self.persistent_workers = bool(persistent_workers)
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.prefetch_factor = prefetch_factor
        self._pool: Any = None  # the worker processes kept by persistent_workers
        self._iterable = iterable
        # the default orders are drawn directly in __iter__ (one permutation, one gather per
        # batch for a TensorDataset); explicit samplers are kept for the general path
        self._custom = sampler is not None or batch_sampler is not None
        if not iterable:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=generator) if self.shuffle else \
                    SequentialSampler(dataset)
            if batch_sampler is None and self.batch_size is not None:
                batch_sampler = BatchSampler(sampler, self.batch_size, self.drop_last)
        self.sampler = sampler
        self.batch_sampler = batch_sampler

    def __len__(self) -> int:
        """The number of batches per epoch (for an IterableDataset with a __len__, the count
        its length gives, as PyTorch computes it; with workers that do not split the data
        between them, the real count differs)."""
        if self._iterable:
            try:
                n = len(self.dataset)
            except (TypeError, NotImplementedError):  # (list(loader) asks, and goes on)
                raise TypeError("DataLoader: an IterableDataset without __len__ has no "
                                "len()") from None
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            return _random._rng(self.generator).permutation(n).astype(np.intp)
        return np.arange(n, dtype=np.intp)

    def _fast(self) -> bool:
        return (self.collate_fn is None and isinstance(self.dataset, TensorDataset)
                and type(self.dataset).__getitem__ is TensorDataset.__getitem__)

    def _index_batches(self) -> Iterator[Any]:
        """Per batch, the dataset indices it holds (one index when unbatched), in order."""
        if self.batch_size is None and self.batch_sampler is None:
            yield from self.sampler
            return
        if self._custom:
            for idx in self.batch_sampler:
                yield np.asarray(idx, dtype=np.intp)
            return
        order = self._order()
        n, bs = len(order), self.batch_size
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            yield order[start:start + bs]

    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            if self.num_workers > 0:
                from graddesc.data import _workers

                yield from _workers.iterate_stream(self)
                return
            collate = self.collate_fn if self.collate_fn is not None else default_collate
            yield from self._iter_stream(collate)
            return
        fetch = _Fetcher(self.dataset, self.collate_fn, self._fast(),
                         self.batch_size is None and self.batch_sampler is None)
        if self.num_workers == 0:
            for idx in self._index_batches():
                yield fetch(idx)
            return
        from graddesc.data import _workers

        yield from _workers.iterate(self, fetch)

    def _iter_stream(self, collate: Callable[[list], Any]) -> Iterator[Any]:
        if self.batch_size is None:
            convert = self.collate_fn if self.collate_fn is not None else (lambda s: s)
            for s in self.dataset:
                yield convert(s)
            return
        batch: list = []
        for s in self.dataset:
            batch.append(s)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []
        if batch and not self.drop_last:
            yield collate(batch)

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None and pool.procs:
            pool.close()

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")


class _Fetcher:
    """Turns one batch's indices into the batch (in the main process or in a worker, which
    receives it pickled with the dataset)."""

    def __init__(self, dataset: Any, collate_fn: Any, fast: bool, unbatched: bool) -> None:
        self.dataset, self.collate_fn, self.fast, self.unbatched = (dataset, collate_fn, fast,
                                                                    unbatched)

    def __call__(self, idx: Any) -> Any:
        if self.unbatched:
            sample = self.dataset[idx]
            return sample if self.collate_fn is None else self.collate_fn(sample)
        if self.fast:  # a TensorDataset: one gather per tensor, no per-sample Python loop
            return [_gather(t, idx) for t in self.dataset.tensors]
        collate = self.collate_fn if self.collate_fn is not None else default_collate
        return collate([self.dataset[int(i)] for i in idx])


def _gather(t: Tensor, idx: np.ndarray) -> Tensor:
    """Rows idx of t as a new tensor (differentiable when t requires grad)."""
    if t.requires_grad:
        return t[Tensor._make(idx.astype(np.int64))]
    return Tensor._make(np.ascontiguousarray(t._data[idx]))
