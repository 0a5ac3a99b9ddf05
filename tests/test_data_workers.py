"""DataLoader(num_workers > 0): spawned worker processes give the batches of num_workers=0, in
order, seeded per worker; errors in a worker reach the main process with their traceback."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    TensorDataset,
    get_worker_info,
)


class Squares(Dataset):
    """Sample i is (i, i^2, the worker's id and a draw from graddesc's generator)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> tuple:
        info = get_worker_info()
        return (gd.tensor(float(i)), gd.tensor(float(i * i)),
                gd.tensor(-1 if info is None else info.id), gd.rand(1)[0])


class Broken(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        if i == 2:
            raise KeyError("sample 2 is missing")
        return i


class Shards(IterableDataset):
    """Worker w reads w * 100, w * 100 + 1, ... (3 * (w + 1) samples: uneven shares); the main
    process reads 0 .. 4. A sample is (its value, a draw from graddesc's generator)."""

    def __iter__(self):
        info = get_worker_info()
        values = range(5) if info is None else range(info.id * 100,
                                                     info.id * 100 + 3 * (info.id + 1))
        return ((v, gd.rand(1)[0]) for v in values)


class Faulty(IterableDataset):
    def __iter__(self):
        yield 1
        raise KeyError("stream broke")


def _run(loader):
    return [[t.numpy().copy() for t in b] for b in loader]


def test_workers_give_the_batches_of_the_main_process():
    ds = TensorDataset(gd.arange(23).float(), gd.arange(23))
    ref = _run(DataLoader(ds, batch_size=4, shuffle=True,
                          generator=gd.Generator().manual_seed(5)))
    got = _run(DataLoader(ds, batch_size=4, shuffle=True, num_workers=2,
                          generator=gd.Generator().manual_seed(5)))
    assert len(got) == len(ref) == 6
    for a, b in zip(ref, got):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_workers_run_in_order_round_robin_and_are_seeded():
    def epoch(seed):
        loader = DataLoader(Squares(), batch_size=3, num_workers=2,
                            generator=gd.Generator().manual_seed(seed))
        return _run(loader)

    a = epoch(1)
    assert [b[0].tolist() for b in a] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in a]), np.arange(10) ** 2)
    assert [b[2].tolist() for b in a] == [[0] * 3, [1] * 3, [0] * 3, [1]]  # batch i -> i % 2
    b = epoch(1)
    np.testing.assert_array_equal(np.concatenate([x[3] for x in a]),
                                  np.concatenate([x[3] for x in b]))  # seeded: repeatable
    c = epoch(2)
    assert not np.array_equal(np.concatenate([x[3] for x in a]),
                              np.concatenate([x[3] for x in c]))
    # the two workers draw different streams (base_seed + worker id)
    assert not np.array_equal(a[0][3], a[1][3])


def test_persistent_workers_serve_several_epochs():
    loader = DataLoader(Squares(), batch_size=5, num_workers=1, persistent_workers=True)
    first = _run(loader)
    pool = loader._pool
    second = _run(loader)
    assert loader._pool is pool and pool.procs  # the same processes
    assert [b[0].tolist() for b in second] == [b[0].tolist() for b in first]
    del loader


def test_worker_error_reaches_the_main_process():
    with pytest.raises(RuntimeError, match="(?s)in DataLoader worker 0.*sample 2 is missing"):
        list(DataLoader(Broken(), batch_size=1, num_workers=1))


def test_worker_arguments():
    ds = TensorDataset(gd.zeros(4))
    with pytest.raises(ValueError, match="persistent_workers"):
        DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(ds, num_workers=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="only apply to worker processes"):
        DataLoader(ds, timeout=3)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        DataLoader(ds, num_workers=-1)



def test_an_abandoned_epoch_stops_its_workers():
    import multiprocessing

    it = iter(DataLoader(Squares(), batch_size=2, num_workers=2))
    assert next(it)[0].tolist() == [0, 1]
    assert len(multiprocessing.active_children()) == 2
    it.close()  # what leaving a for loop early does once the iterator is dropped
    assert multiprocessing.active_children() == []


def _stream_oracle(num_workers, batch_size, drop_last):
    """PyTorch's order: each worker batches its own share; one batch from each worker in turn,
    a worker leaving the turn once its share is exhausted."""
    per_worker = []
    for w in range(num_workers):
        vals = list(range(w * 100, w * 100 + 3 * (w + 1)))
        batches = [vals[i:i + batch_size] for i in range(0, len(vals), batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        per_worker.append(batches)
    out = []
    while any(per_worker):
        for b in per_worker:
            if b:
                out.append(b.pop(0))
    return out


@pytest.mark.parametrize(("num_workers", "batch_size", "drop_last", "persistent"),
                         [(3, 2, False, True), (2, 4, True, False)])
def test_iterable_dataset_with_workers(num_workers, batch_size, drop_last, persistent):
    loader = DataLoader(Shards(), batch_size=batch_size, num_workers=num_workers,
                        drop_last=drop_last, persistent_workers=persistent,
                        generator=gd.Generator().manual_seed(4))
    want = _stream_oracle(num_workers, batch_size, drop_last)
    epochs = [[(b[0].tolist(), b[1].numpy().copy()) for b in loader] for _ in range(2)]
    for got in epochs:
        assert [v for v, _ in got] == want
    draws = [np.concatenate([r for _, r in got]) for got in epochs]
    assert not np.array_equal(draws[0][:batch_size], draws[0][batch_size:2 * batch_size])
    if persistent:  # one seeding, at the start: the second epoch goes on with the streams
        assert not np.array_equal(draws[0], draws[1])
    assert [b[0].tolist() for b in DataLoader(Shards(), batch_size=2)] == [[0, 1], [2, 3], [4]]


def test_iterable_dataset_with_workers_matches_torch():
    torch = pytest.importorskip("torch")
    tdata = torch.utils.data

    class TorchShards(tdata.IterableDataset):  # (torch forks its workers: a local class works)
        def __iter__(self):
            info = tdata.get_worker_info()
            return iter(range(info.id * 100, info.id * 100 + 3 * (info.id + 1)))

    with warnings.catch_warnings():  # torch warns of more workers than cores on small machines
        warnings.simplefilter("ignore", UserWarning)
        ref = [b.tolist() for b in tdata.DataLoader(TorchShards(), batch_size=2, num_workers=3)]
    got = [b[0].tolist() for b in DataLoader(Shards(), batch_size=2, num_workers=3)]
    assert got == ref


def test_iterable_dataset_worker_error_reaches_the_main_process():
    loader = DataLoader(Faulty(), batch_size=None, num_workers=1, persistent_workers=True)
    with pytest.raises(RuntimeError, match="(?s)in DataLoader worker 0.*stream broke"):
        list(loader)
    assert loader._pool is None  # the broken workers are not kept for the next epoch
