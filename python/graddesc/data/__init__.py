"""Data loading: Dataset, TensorDataset, DataLoader, samplers, random_split, and embedded
datasets (spirals, digits). `graddesc.utils.data` (PyTorch's home for these) holds the same
objects."""

from graddesc.data import datasets
from graddesc.data._workers import WorkerInfo, get_worker_info
from graddesc.data.dataloader import DataLoader, default_collate
from graddesc.data.dataset import (
    ChainDataset,
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

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset",
           "IterableDataset", "RandomSampler", "Sampler", "SequentialSampler", "Subset",
           "SubsetRandomSampler", "TensorDataset", "WeightedRandomSampler", "WorkerInfo",
           "datasets", "default_collate", "get_worker_info", "random_split"]
