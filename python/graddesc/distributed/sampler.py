"""DistributedSampler: each rank's share of a dataset (PyTorch's semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Optional

from graddesc import _random
from graddesc.data.sampler import Sampler, _check_count


class DistributedSampler(Sampler):
    """Rank r of N visits indices[r::N] of one permutation per epoch, so the ranks' shards are
    disjoint and together cover the dataset; with a DataLoader of batch size b per rank, global
    batch k is the k-th run of b*N indices of that permutation, whatever N is (a job resumed
    with another number of ranks and the same global batch sees the same batches).

    shuffle: a permutation drawn from a generator seeded with seed + epoch (call set_epoch(e)
    at the start of every epoch; equal on every rank); else 0, 1, 2, ...
    drop_last=False pads with the first indices again until every rank has
    ceil(len / N) of them; drop_last=True drops the tail so every rank has floor(len / N).
    num_replicas / rank default to the process group's world size and rank.
    """

    def __init__(self, dataset: Sized, num_replicas: Optional[int] = None,
                 rank: Optional[int] = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        from graddesc.distributed import _group

        where = "DistributedSampler"
        if num_replicas is None:
            num_replicas = _group.get_world_size() if _group.is_initialized() else None
            if num_replicas is None:
                raise RuntimeError(f"{where}: num_replicas not given and the process group is "
                                   "not initialized (init_process_group)")
        if rank is None:
            if not _group.is_initialized():
                raise RuntimeError(f"{where}: rank not given and the process group is not "
                                   "initialized (init_process_group)")
            rank = _group.get_rank()
        num_replicas = _check_count(num_replicas, "num_replicas", where, 1)
        rank = _check_count(rank, "rank", where, 0)
        if rank >= num_replicas:
            raise ValueError(f"{where}: invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        for name, v in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(v, bool):
                raise TypeError(f"{where}: {name} must be a bool, got {type(v).__name__}")
        seed = _check_count(seed, "seed", where, 0)
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose permutation the next iteration uses (same on every rank)."""
        self.epoch = _check_count(epoch, "epoch", "DistributedSampler.set_epoch", 0)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            gen = _random.Generator().manual_seed(self.seed + self.epoch)
            indices = _random._rng(gen).permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            while pad > 0 and indices:  # (more than once when N > len)
                indices += indices[:pad]
                pad = self.total_size - len(indices)
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"DistributedSampler(num_replicas={self.num_replicas}, rank={self.rank}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})")

