"""graddesc: gradient descent and backpropagation as a fast CPU autodiff library."""

from graddesc._runtime import __version__, config, get_num_threads, set_num_threads

__all__ = ["__version__", "config", "get_num_threads", "set_num_threads"]
