"""graddesc.backends: `backends.mps.is_available()` and `backends.cudnn.is_available()` are False
(CPU only); cudnn's reproducibility flags are accepted."""

from graddesc.backends import cudnn, mps

__all__ = ["cudnn", "mps"]
