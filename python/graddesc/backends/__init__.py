"""graddesc.backends: `backends.mps.is_available()` is False (CPU only)."""

from graddesc.backends import mps

__all__ = ["mps"]
