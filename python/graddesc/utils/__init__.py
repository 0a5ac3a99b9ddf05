"""graddesc.utils: PyTorch's `torch.utils` layout (`graddesc.utils.data`)."""

from graddesc.utils import data

__all__ = ["data"]
