"""graddesc.data: TensorDataset/DataLoader against a NumPy oracle, spirals, and the real digits."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import graddesc as gd
from graddesc.data import DataLoader, Dataset, TensorDataset, datasets, default_collate

# sha256 of the test split (X_test bytes + y_test bytes): the split must never change.
_TEST_DIGEST = "7d4573999221da615373cf48c781480847401dbbe118c8388eb1f8c20ca0e1de"


def _tensors(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = np.arange(n, dtype=np.int64)  # y[i] == i identifies the sample
    return X, y


def _oracle(order: np.ndarray, batch_size: int, drop_last: bool) -> list[np.ndarray]:
    """The index batches a DataLoader must produce for a given order."""
    n = len(order)
    stop = n - n % batch_size if drop_last else n
    return [order[s:s + batch_size] for s in range(0, stop, batch_size)]


class _ListDataset(Dataset):
    """A plain map-style dataset (goes through the per-sample collate path)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y

    def __getitem__(self, i: int) -> tuple:
        return gd.tensor(self.X[i]), int(self.y[i])

    def __len__(self) -> int:
        return len(self.y)


# ---- TensorDataset ---------------------------------------------------------------------------
def test_tensor_dataset_items_and_len(rng: np.random.Generator) -> None:
    X, y = _tensors(7, rng)
    ds = TensorDataset(gd.tensor(X), gd.tensor(y))
    assert len(ds) == 7
    x3, y3 = ds[3]
    np.testing.assert_array_equal(x3.numpy(), X[3])
    assert y3.item() == 3
    assert ds[-1][1].item() == 6
    with pytest.raises(IndexError):
        ds[7]
    assert isinstance(ds, Dataset)


def test_tensor_dataset_errors() -> None:
    with pytest.raises(ValueError, match="size mismatch"):
        TensorDataset(gd.zeros(5, 2), gd.zeros(4))
    with pytest.raises(ValueError):
        TensorDataset()
    with pytest.raises(TypeError, match="Tensor"):
        TensorDataset(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="0-d"):
        TensorDataset(gd.tensor(1.0))


# ---- DataLoader: batching --------------------------------------------------------------------
@pytest.mark.parametrize("n,batch_size", [(10, 3), (10, 5), (10, 1), (10, 10), (10, 11), (0, 4)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_match_oracle(n: int, batch_size: int, drop_last: bool,
                              rng: np.random.Generator) -> None:
    X, y = _tensors(n, rng)
    loader = DataLoader(TensorDataset(gd.tensor(X), gd.tensor(y)), batch_size=batch_size,
                        drop_last=drop_last)
    expected = _oracle(np.arange(n), batch_size, drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == len(expected)
    assert len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    for (xb, yb), idx in zip(batches, expected):
        assert xb.dtype == gd.float32 and yb.dtype == gd.int64
        np.testing.assert_array_equal(xb.numpy(), X[idx])
        np.testing.assert_array_equal(yb.numpy(), y[idx])


def test_full_batch_and_sgd(rng: np.random.Generator) -> None:
    X, y = _tensors(9, rng)
    ds = TensorDataset(gd.tensor(X), gd.tensor(y))
    (full,) = list(DataLoader(ds, batch_size=len(ds)))
    np.testing.assert_array_equal(full[0].numpy(), X)
    sgd = list(DataLoader(ds, batch_size=1))
    assert len(sgd) == 9
    assert all(xb.shape == (1, 3) and yb.shape == (1,) for xb, yb in sgd)


def test_batches_are_copies(rng: np.random.Generator) -> None:
    X, y = _tensors(6, rng)
    xt = gd.tensor(X)
    xb, _ = next(iter(DataLoader(TensorDataset(xt, gd.tensor(y)), batch_size=6)))
    xb.numpy()[:] = 0.0
    np.testing.assert_array_equal(xt.numpy(), X)


def test_generic_dataset_uses_collate(rng: np.random.Generator) -> None:
    X, y = _tensors(7, rng)
    loader = DataLoader(_ListDataset(X, y), batch_size=3)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    np.testing.assert_array_equal(batches[1][0].numpy(), X[3:6])
    assert batches[1][1].dtype == gd.int64
    np.testing.assert_array_equal(batches[2][1].numpy(), y[6:])


def test_custom_collate_fn(rng: np.random.Generator) -> None:
    X, y = _tensors(5, rng)
    seen = []
    loader = DataLoader(TensorDataset(gd.tensor(X), gd.tensor(y)), batch_size=2,
                        collate_fn=lambda samples: seen.append(len(samples)) or len(samples))
    assert list(loader) == [2, 2, 1]
    assert seen == [2, 2, 1]


def test_default_collate_kinds() -> None:
    out = default_collate([{"a": 1.5, "b": np.array([1, 2])}, {"a": 2.5, "b": np.array([3, 4])}])
    assert out["a"].dtype == gd.float64 and out["a"].tolist() == [1.5, 2.5]
    assert out["b"].dtype == gd.int64 and out["b"].shape == (2, 2)
    assert default_collate([True, False]).dtype == gd.bool
    with pytest.raises(ValueError, match="shapes"):
        default_collate([gd.zeros(2), gd.zeros(3)])
    with pytest.raises(TypeError):
        default_collate(["a", "b"])


# ---- DataLoader: shuffling -------------------------------------------------------------------
def test_shuffle_is_a_permutation_and_reproducible(rng: np.random.Generator) -> None:
    X, y = _tensors(23, rng)
    ds = TensorDataset(gd.tensor(X), gd.tensor(y))

    def epochs(seed: int, k: int = 3) -> list[np.ndarray]:
        loader = DataLoader(ds, batch_size=4, shuffle=True,
                            generator=gd.Generator().manual_seed(seed))
        out = []
        for _ in range(k):
            ys = [yb.numpy() for _, yb in loader]
            assert [len(b) for b in ys] == [4, 4, 4, 4, 4, 3]
            out.append(np.concatenate(ys))
        return out

    a, b, c = epochs(1), epochs(1), epochs(2)
    for order in a:
        np.testing.assert_array_equal(np.sort(order), np.arange(23))  # every sample once
    for ea, eb in zip(a, b):
        np.testing.assert_array_equal(ea, eb)  # same seed, same epochs
    assert not np.array_equal(a[0], a[1])  # a new order every epoch
    assert not np.array_equal(a[0], c[0])  # another seed, another order
    assert not np.array_equal(a[0], np.arange(23))


def test_shuffled_batches_keep_rows_together(rng: np.random.Generator) -> None:
    X, y = _tensors(17, rng)
    loader = DataLoader(TensorDataset(gd.tensor(X), gd.tensor(y)), batch_size=5, shuffle=True,
                        drop_last=True, generator=gd.Generator().manual_seed(3))
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    for xb, yb in batches:
        np.testing.assert_array_equal(xb.numpy(), X[yb.numpy()])
    assert len(np.unique(np.concatenate([yb.numpy() for _, yb in batches]))) == 15


def test_shuffle_without_generator_follows_manual_seed(rng: np.random.Generator) -> None:
    X, y = _tensors(12, rng)
    ds = TensorDataset(gd.tensor(X), gd.tensor(y))
    gd.manual_seed(5)
    first = [yb.numpy() for _, yb in DataLoader(ds, batch_size=12, shuffle=True)]
    gd.manual_seed(5)
    second = [yb.numpy() for _, yb in DataLoader(ds, batch_size=12, shuffle=True)]
    np.testing.assert_array_equal(first[0], second[0])


def test_requires_grad_tensors_stay_differentiable() -> None:
    w = gd.arange(6, dtype=gd.float64).reshape(3, 2).requires_grad_()
    (xb,) = next(iter(DataLoader(TensorDataset(w), batch_size=2)))
    xb.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[1, 1], [1, 1], [0, 0]])


@pytest.mark.parametrize("kwargs,exc", [
    ({"batch_size": 0}, ValueError), ({"batch_size": -2}, ValueError),
    ({"batch_size": 2.0}, TypeError), ({"batch_size": True}, TypeError),
    ({"batch_size": "2"}, TypeError), ({"shuffle": "yes"}, TypeError),
    ({"drop_last": 1}, TypeError), ({"generator": np.random.default_rng(0)}, TypeError),
    ({"collate_fn": 3}, TypeError),
])
def test_dataloader_bad_arguments(kwargs: dict, exc: type) -> None:
    ds = TensorDataset(gd.zeros(4, 2))
    with pytest.raises(exc):
        DataLoader(ds, **kwargs)


def test_dataloader_bad_dataset() -> None:
    with pytest.raises(TypeError, match="dataset"):
        DataLoader(42)


# ---- spirals ---------------------------------------------------------------------------------
def test_spirals_shape_balance_determinism() -> None:
    X, y = datasets.spirals(n=50, classes=4, seed=7)
    assert X.shape == (200, 2) and X.dtype == gd.float32
    assert y.shape == (200,) and y.dtype == gd.int64
    np.testing.assert_array_equal(np.bincount(y.numpy()), [50, 50, 50, 50])
    radius = np.linalg.norm(X.numpy(), axis=1)
    assert radius.max() <= 1.0 + 1e-6
    X2, y2 = datasets.spirals(n=50, classes=4, seed=7)
    np.testing.assert_array_equal(X.numpy(), X2.numpy())
    np.testing.assert_array_equal(y.numpy(), y2.numpy())
    X3, _ = datasets.spirals(n=50, classes=4, seed=8)
    assert not np.array_equal(X.numpy(), X3.numpy())


def test_spirals_noise_free_radius_and_defaults() -> None:
    X, y = datasets.spirals()
    assert X.shape == (300, 2) and np.bincount(y.numpy()).tolist() == [100, 100, 100]
    Xc, _ = datasets.spirals(n=11, classes=2, noise=0.0)
    r = np.linalg.norm(Xc.numpy()[:11].astype(np.float64), axis=1)
    np.testing.assert_allclose(r, np.linspace(0, 1, 11), atol=1e-6)


@pytest.mark.parametrize("kwargs,exc", [
    ({"n": 0}, ValueError), ({"classes": 0}, ValueError), ({"noise": -1.0}, ValueError),
    ({"noise": float("nan")}, ValueError), ({"n": 2.5}, TypeError), ({"seed": -1}, ValueError),
])
def test_spirals_errors(kwargs: dict, exc: type) -> None:
    with pytest.raises(exc):
        datasets.spirals(**kwargs)


# ---- digits ----------------------------------------------------------------------------------
def test_digits_shapes_dtypes_ranges() -> None:
    X_train, y_train, X_test, y_test = datasets.digits()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert X_train.dtype == X_test.dtype == gd.float32
    assert y_train.dtype == y_test.dtype == gd.int64
    X = np.concatenate([X_train.numpy(), X_test.numpy()])
    y = np.concatenate([y_train.numpy(), y_test.numpy()])
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(X * 16, np.round(X * 16))  # counts 0..16 divided by 16
    counts = np.bincount(y, minlength=10)
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert counts.sum() == 1797
    test_counts = np.bincount(y_test.numpy(), minlength=10)
    assert test_counts.tolist() == [36, 37, 35, 37, 36, 36, 36, 36, 35, 36]  # stratified


def test_digits_split_is_fixed_and_disjoint() -> None:
    a = datasets.digits()
    b = datasets.digits()
    for ta, tb in zip(a, b):
        assert ta is not tb
        np.testing.assert_array_equal(ta.numpy(), tb.numpy())
    a[0].numpy()[0, 0] = 99.0  # fresh tensors: mutating one result doesn't leak into the next
    assert datasets.digits()[0].numpy()[0, 0] != 99.0
    X_train, _, X_test, _ = datasets.digits()
    train_rows = {row.tobytes() for row in X_train.numpy()}
    assert not any(row.tobytes() in train_rows for row in X_test.numpy())  # disjoint
    with np.load(datasets.DIGITS_FILE, allow_pickle=False) as f:
        every = f["images"].reshape(1797, 64).astype(np.float32) / 16
    both = np.concatenate([X_train.numpy(), X_test.numpy()])
    np.testing.assert_array_equal(np.unique(both, axis=0), np.unique(every, axis=0))
    digest = hashlib.sha256(X_test.numpy().tobytes() + datasets.digits()[3].numpy().tobytes())
    assert digest.hexdigest() == _TEST_DIGEST  # the split never changes


def test_digits_file_is_plain_arrays() -> None:
    with np.load(datasets.DIGITS_FILE, allow_pickle=False) as f:
        assert sorted(f.files) == ["images", "labels", "split"]
        assert f["images"].dtype == np.uint8 and f["images"].shape == (1797, 8, 8)
        assert f["labels"].dtype == np.uint8 and f["split"].dtype == np.uint8


def test_digits_first_image_is_a_zero() -> None:
    X_train, y_train, _, _ = datasets.digits()
    # The first row of the UCI file, a "0" (pixel counts 0..16 divided by 16).
    first = (np.array([0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0], np.float32) / 16)
    np.testing.assert_array_equal(X_train.numpy()[0, :16], first)
    assert y_train[0].item() == 0

