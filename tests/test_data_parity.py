"""graddesc.utils.data against torch.utils.data: IterableDataset and ChainDataset batching,
len() of loaders, WeightedRandomSampler's distribution (with and without replacement) against
its closed form. Random streams differ between the libraries, so the sampler tests compare
frequencies with the probabilities both libraries document."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd
from graddesc.utils import data as gdata

torch = pytest.importorskip("torch")
tdata = torch.utils.data


def _streams():
    class G(gdata.IterableDataset):
        def __init__(self, n, with_len=True):
            self.n, self.with_len = n, with_len

        def __iter__(self):
            return iter([(float(i), i * i) for i in range(self.n)])

    class T(tdata.IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter([(float(i), i * i) for i in range(self.n)])

    class GL(G):
        def __len__(self):
            return self.n

    class TL(T):
        def __len__(self):
            return self.n

    return G, T, GL, TL


def _plain(batch):
    if isinstance(batch, (list, tuple)):
        return [_plain(b) for b in batch]
    return batch.tolist() if hasattr(batch, "tolist") else batch


@pytest.mark.parametrize("kwargs", [{"batch_size": 2}, {"batch_size": 3, "drop_last": True},
                                    {"batch_size": None}, {"batch_size": 4,
                                                           "collate_fn": len}])
def test_iterable_dataset_batches_like_torch(kwargs):
    G, T, GL, TL = _streams()
    ref = [_plain(b) for b in tdata.DataLoader(TL(7), **kwargs)]
    got = [_plain(b) for b in gdata.DataLoader(GL(7), **kwargs)]
    assert got == ref
    assert len(gdata.DataLoader(GL(7), **kwargs)) == len(tdata.DataLoader(TL(7), **kwargs))
    with pytest.raises(TypeError):
        len(tdata.DataLoader(T(7), **kwargs))
    with pytest.raises(TypeError, match="without __len__ has no len"):
        len(gdata.DataLoader(G(7), **kwargs))
    assert [_plain(b) for b in gdata.DataLoader(G(7), **kwargs)] == ref  # list() asks len()


def test_chain_and_concat_operators_like_torch():
    G, T, GL, TL = _streams()
    ref = [_plain(b) for b in tdata.DataLoader(TL(3) + TL(4), batch_size=3)]
    chain = GL(3) + GL(4)
    assert isinstance(chain, gdata.ChainDataset) and len(chain) == 7
    assert [_plain(b) for b in gdata.DataLoader(chain, batch_size=3)] == ref
    tcat = tdata.TensorDataset(torch.arange(3)) + tdata.TensorDataset(torch.arange(5, 7))
    gcat = gdata.TensorDataset(gd.arange(3)) + gdata.TensorDataset(gd.arange(5, 7))
    assert isinstance(gcat, gdata.ConcatDataset)
    assert [gcat[i][0].item() for i in range(len(gcat))] == \
        [tcat[i][0].item() for i in range(len(tcat))]
    # list() of a stream without __len__ works (it asks for a length and goes on)
    assert list(gdata.ChainDataset([G(2), G(1)])) == list(tdata.ChainDataset([T(2), T(1)]))
    with pytest.raises(TypeError, match=r"datasets\[1\] must be an IterableDataset"):
        gdata.ChainDataset([G(2), [1, 2]])


def test_weighted_sampler_with_replacement_follows_the_weights():
    w = [1.0, 0.0, 3.0, 6.0]
    n = 20000
    s = gdata.WeightedRandomSampler(w, n, generator=gd.Generator().manual_seed(0))
    t = tdata.WeightedRandomSampler(w, n, generator=torch.Generator().manual_seed(0))
    assert len(s) == len(t) == n
    p = np.array(w) / sum(w)
    for draws in (list(s), list(t)):
        freq = np.bincount(draws, minlength=4) / n
        # 5 standard deviations of a binomial frequency
        np.testing.assert_allclose(freq, p, atol=5 * np.sqrt(0.25 / n))
        assert freq[1] == 0


def test_weighted_sampler_without_replacement_draws_in_sequence():
    """Without replacement each draw picks among the remaining indices in proportion to their
    weights (torch.multinomial's rule): P(second = j) = sum_i p_i p_j / (1 - p_i)."""
    w = np.array([1.0, 2.0, 0.0, 5.0])
    p = w / w.sum()
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j)
                       for j in range(4)])
    trials = 6000
    g = gd.Generator().manual_seed(1)
    tg = torch.Generator().manual_seed(1)
    for draw in (lambda: list(gdata.WeightedRandomSampler(w, 2, replacement=False,
                                                          generator=g)),
                 lambda: list(tdata.WeightedRandomSampler(w, 2, replacement=False,
                                                          generator=tg))):
        pairs = np.array([draw() for _ in range(trials)])
        assert np.all(pairs[:, 0] != pairs[:, 1]) and not np.any(pairs == 2)
        tol = 5 * np.sqrt(0.25 / trials)
        np.testing.assert_allclose(np.bincount(pairs[:, 0], minlength=4) / trials, p, atol=tol)
        np.testing.assert_allclose(np.bincount(pairs[:, 1], minlength=4) / trials, second,
                                   atol=tol)
    full = list(gdata.WeightedRandomSampler(w, 3, replacement=False, generator=g))
    assert sorted(full) == [0, 1, 3]
    with pytest.raises(ValueError, match="num_samples=4 exceeds the 3 nonzero weights"):
        gdata.WeightedRandomSampler(w, 4, replacement=False)


def test_weighted_sampler_argument_errors_like_torch():
    for bad in (0, -1):
        with pytest.raises(ValueError):
            tdata.WeightedRandomSampler([1.0], bad)
        with pytest.raises(ValueError, match="num_samples must be >= 1"):
            gdata.WeightedRandomSampler([1.0], bad)
    with pytest.raises(TypeError, match="num_samples must be an int, got float"):
        gdata.WeightedRandomSampler([1.0], 2.0)
    with pytest.raises(TypeError, match="replacement must be a bool"):
        gdata.WeightedRandomSampler([1.0], 2, replacement=1)
    with pytest.raises(ValueError, match="weights must be a non-empty 1-d sequence"):
        gdata.WeightedRandomSampler([[1.0, 2.0]], 2)
    with pytest.raises(ValueError, match="finite, non-negative"):
        gdata.WeightedRandomSampler([1.0, float("nan")], 2)


def test_weighted_sampler_in_a_dataloader():
    ds = gdata.TensorDataset(gd.arange(4).float(), gd.arange(4))
    sampler = gdata.WeightedRandomSampler(gd.tensor([0.0, 1.0, 0.0, 1.0]), 9,
                                          generator=gd.Generator().manual_seed(2))
    batches = [y.tolist() for _, y in gdata.DataLoader(ds, batch_size=4, sampler=sampler)]
    assert [len(b) for b in batches] == [4, 4, 1]
    assert set(sum(batches, [])) <= {1, 3}
