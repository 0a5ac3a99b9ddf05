"""Data loading: Dataset, TensorDataset, DataLoader, samplers, random_split, and embedded
datasets (spirals, digits). `graddesc.utils.data` (PyTorch's home for these) holds the same
objects."""

from graddesc.data import datasets
from graddesc.data.dataloader import DataLoader, default_collate
from graddesc.data.dataset import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from graddesc.data.sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "IterableDataset",
           "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
           "TensorDataset", "WeightedRandomSampler", "datasets", "default_collate",
           "random_split"]
