"""Data loading: Dataset, TensorDataset, DataLoader, and embedded datasets (spirals, digits)."""

from graddesc.data import datasets
from graddesc.data.dataloader import DataLoader, default_collate
from graddesc.data.dataset import Dataset, TensorDataset

__all__ = ["DataLoader", "Dataset", "TensorDataset", "datasets", "default_collate"]
