"""DataLoader worker processes (num_workers > 0).

Workers are started with the spawn method (no fork of a process that may hold OpenMP threads).
Each receives the dataset and the fetcher pickled once, seeds graddesc's global generator and
Python's `random` with base_seed + worker_id (base_seed drawn from the loader's generator after
the epoch's order, so the batches equal those of num_workers=0), and answers index lists with
batches. Batch i goes to worker i % num_workers; the main process yields them in order.

An IterableDataset (PyTorch's semantics): every worker iterates its own copy of the dataset
(which can use get_worker_info() to read only its share) and batches what it reads; the main
process takes one batch from each worker in turn (worker 0, 1, ..., 0, ...), dropping a worker
from the turn once its copy is exhausted. drop_last drops each worker's incomplete last batch.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import traceback
from collections.abc import Iterator
from typing import Any, Optional

from graddesc import _random

_POLL = 1.0  # seconds between liveness checks while waiting for a batch


class WorkerInfo:
    """What `get_worker_info()` returns inside a worker: id, num_workers, seed, dataset.

    >>> info = gd.data.WorkerInfo(id=0, num_workers=2, seed=7, dataset=None)
    >>> info.id, info.num_workers
    (0, 2)
    """

    def __init__(self, id: int, num_workers: int, seed: int, dataset: Any) -> None:  # noqa: A002
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info: Optional[WorkerInfo] = None


def get_worker_info() -> Optional[WorkerInfo]:
    """The current worker's WorkerInfo inside a DataLoader worker process, else None.

    >>> gd.data.get_worker_info() is None  # in the main process
    True
    """
    return _worker_info


class _Stream:
    """An IterableDataset read in a worker: next(stream) is its next batch (or sample)."""

    def __init__(self, dataset: Any, batch_size: Any, drop_last: bool, collate_fn: Any,
                 default_collate: Any) -> None:
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.collate_fn = collate_fn
        self.default_collate = default_collate  # (passed in: this module is below dataloader)
        self.it: Any = None

    def restart(self) -> None:
        self.it = None

    def next(self) -> Any:
        """The next batch; raises StopIteration at the end of the worker's copy."""
        if self.it is None:
            self.it = iter(self.dataset)
        if self.batch_size is None:
            sample = next(self.it)
            return sample if self.collate_fn is None else self.collate_fn(sample)
        batch = []
        for sample in self.it:
            batch.append(sample)
            if len(batch) == self.batch_size:
                break
        if not batch or (self.drop_last and len(batch) < self.batch_size):
            raise StopIteration
        return (self.collate_fn or self.default_collate)(batch)


def _loop(worker_id: int, num_workers: int, fetch: Any, init_fn: Any, tasks: Any,
          results: Any) -> None:
    global _worker_info
    seeded = False
    while True:
        task = tasks.get()
        if task is None:
            return
        kind, payload = task
        if kind == "seed":  # once per epoch (or once, for persistent workers)
            seed = payload + worker_id
            _random.manual_seed(seed)
            random.seed(seed)
            _worker_info = WorkerInfo(worker_id, num_workers, seed, fetch.dataset)
            if init_fn is not None and not seeded:
                try:
                    init_fn(worker_id)
                except Exception:  # noqa: BLE001  (reported to the main process)
                    results.put((-1, None, f"worker_init_fn in worker {worker_id}:\n"
                                           f"{traceback.format_exc()}"))
            seeded = True
            continue
        if kind == "start":  # an IterableDataset's new epoch: a new iterator
            fetch.restart()
            continue
        if kind == "next":  # an IterableDataset's next batch; None marks the end
            try:
                results.put(((worker_id, payload), fetch.next(), None))
            except StopIteration:
                results.put(((worker_id, payload), None, "end"))
            except Exception:  # noqa: BLE001  (re-raised in the main process)
                results.put(((worker_id, payload), None,
                             f"in DataLoader worker {worker_id}:\n{traceback.format_exc()}"))
            continue
        i, idx = payload
        try:
            results.put((i, fetch(idx), None))
        except Exception:  # noqa: BLE001  (the main process re-raises it with the traceback)
            results.put((i, None, f"in DataLoader worker {worker_id}:\n{traceback.format_exc()}"))


class _Pool:
    """num_workers spawned processes with one task queue each and a shared result queue."""

    def __init__(self, loader: Any, fetch: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        n = loader.num_workers
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=_loop, args=(w, n, fetch, loader.worker_init_fn,
                                                      self.tasks[w], self.results), daemon=True)
                      for w in range(n)]
        for p in self.procs:
            p.start()

    def seed(self, base_seed: int) -> None:
        for q in self.tasks:
            q.put(("seed", base_seed))

    def get(self, timeout: float) -> tuple:
        waited = 0.0
        while True:
            try:
                return self.results.get(timeout=_POLL)
            except queue.Empty:
                waited += _POLL
                dead = [p for p in self.procs if not p.is_alive()]
                if dead:
                    self.close()
                    raise RuntimeError(f"DataLoader worker (pid {dead[0].pid}) exited "
                                       f"unexpectedly with exit code {dead[0].exitcode}") from None
                if timeout and waited >= timeout:
                    self.close()
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None

    def close(self) -> None:
        for q, p in zip(self.tasks, self.procs):
            if p.is_alive():
                try:
                    q.put(None)
                except (OSError, ValueError):
                    pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
        for q in [*self.tasks, self.results]:
            q.close()
            q.join_thread()
        self.procs = []


def _drain(pool: _Pool, ready: dict, asked: list, got: list, timeout: float) -> bool:
    """Collects the answers still due after an epoch (the end markers of requests sent ahead);
    False if one of them is an error."""
    due = sum(a - g for a, g in zip(asked, got)) - len(ready)
    for _ in range(due):
        _, _, err = pool.get(timeout)
        if err not in (None, "end"):
            return False
    return True


def iterate(loader: Any, fetch: Any) -> Iterator[Any]:
    """The batches of one epoch, loaded by worker processes, in order."""
    batches = list(loader._index_batches())  # draws the order first: same batches as 0 workers
    base_seed = int(_random._rng(loader.generator).integers(0, 2 ** 62))
    pool = loader._pool if loader.persistent_workers else None
    if pool is None or not pool.procs:
        pool = _Pool(loader, fetch)
        if loader.persistent_workers:
            loader._pool = pool
            pool.seed(base_seed)
    if not loader.persistent_workers:
        pool.seed(base_seed)
    n = loader.num_workers
    ahead = loader.prefetch_factor * n
    sent, done, ready = 0, 0, {}
    try:
        while sent < min(ahead, len(batches)):
            pool.tasks[sent % n].put(("batch", (sent, batches[sent])))
            sent += 1
        while done < len(batches):
            while done not in ready:
                i, batch, err = pool.get(loader.timeout)
                if err is not None:
                    raise RuntimeError(f"DataLoader: an exception was raised {err}")
                ready[i] = batch
            yield ready.pop(done)
            done += 1
            if sent < len(batches):
                pool.tasks[sent % n].put(("batch", (sent, batches[sent])))
                sent += 1
    finally:
        if not loader.persistent_workers:
            pool.close()
        elif done < len(batches):  # an abandoned epoch leaves stale batches queued
            pool.close()
            loader._pool = None


def iterate_stream(loader: Any) -> Iterator[Any]:
    """The batches of one epoch of an IterableDataset read by worker processes."""
    base_seed = int(_random._rng(loader.generator).integers(0, 2 ** 62))
    pool = loader._pool if loader.persistent_workers else None
    if pool is None or not pool.procs:
        stream = _Stream(loader.dataset, loader.batch_size, loader.drop_last, loader.collate_fn,
                         loader._default_collate)
        pool = _Pool(loader, stream)
        if loader.persistent_workers:
            loader._pool = pool
        pool.seed(base_seed)
    n = loader.num_workers
    for q in pool.tasks:
        q.put(("start", None))
    asked = [0] * n     # requests sent to each worker
    got = [0] * n       # batches taken from each worker
    ready: dict = {}
    active = list(range(n))
    finished = False
    try:
        for w in range(n):
            for _ in range(loader.prefetch_factor):
                pool.tasks[w].put(("next", asked[w]))
                asked[w] += 1
        pos = 0  # whose turn it is: active[pos]
        while active:
            w = active[pos]
            key = (w, got[w])
            while key not in ready:
                k, batch, err = pool.get(loader.timeout)
                ready[tuple(k)] = (batch, err)
            batch, err = ready.pop(key)
            got[w] += 1
            if err == "end":
                active.pop(pos)  # the next worker in turn now sits at the same position
                if active:
                    pos %= len(active)
                continue
            if err is not None:
                raise RuntimeError(f"DataLoader: an exception was raised {err}")
            pool.tasks[w].put(("next", asked[w]))
            asked[w] += 1
            pos = (pos + 1) % len(active)
            yield batch
        finished = True
    finally:
        if not loader.persistent_workers:
            pool.close()
        elif not finished or any(asked[w] != got[w] for w in range(n)):
            # requests sent past a worker's end are still answered: drain them, or stop
            if finished and not _drain(pool, ready, asked, got, loader.timeout):
                finished = False
            if not finished:
                pool.close()
                loader._pool = None
