"""Gradient mode: no_grad, enable_grad, is_grad_enabled (context managers and decorators)."""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

class _State(threading.local):
    def __init__(self) -> None:
        self.enabled = True  # every thread starts with recording on


_state = _State()


def is_grad_enabled() -> bool:
    """True when operations record the graph for backward (per thread, like PyTorch).

    >>> with gd.no_grad():
    ...     gd.is_grad_enabled()
    False
    """
    return _state.enabled


def _set_grad_enabled(mode: bool) -> None:
    _state.enabled = mode


class _GradMode:
    _mode = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # `@no_grad` without parentheses (PyTorch accepts it too): decorate the function
        if cls is not set_grad_enabled and len(args) == 1 and not kwargs and callable(args[0]):
            return cls()(args[0])
        return super().__new__(cls)

    def __init__(self) -> None:
        self._prev: list[bool] = []

    def __enter__(self) -> None:
        self._prev.append(is_grad_enabled())
        _set_grad_enabled(self._mode)

    def __exit__(self, *exc: object) -> None:
        _set_grad_enabled(self._prev.pop())

    def __call__(self, fn: F) -> F:
        mode_cls = type(self)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mode_cls():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_GradMode):  # noqa: N801
    """Disables graph recording inside a `with` block or a decorated function.

    >>> x = gd.ones(2, requires_grad=True)
    >>> with gd.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    _mode = False


class inference_mode(_GradMode):  # noqa: N801
    """PyTorch's no-graph mode for inference: graddesc's no_grad is already that cheap, so
    `inference_mode()` is no_grad; `inference_mode(False)` leaves the grad mode as it is.

    >>> with gd.inference_mode():
    ...     y = gd.ones(2, requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        if not isinstance(mode, bool):
            raise TypeError(f"inference_mode: mode must be a bool, got {type(mode).__name__}")
        self._inference = mode

    def __enter__(self) -> None:
        self._prev.append(is_grad_enabled())
        if self._inference:
            _set_grad_enabled(False)

    def __call__(self, fn: F) -> F:
        mode = self._inference

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with inference_mode(mode):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class enable_grad(_GradMode):  # noqa: N801
    """Enables graph recording inside a `with` block or a decorated function.

    >>> x = gd.ones(2, requires_grad=True)
    >>> with gd.no_grad():
    ...     with gd.enable_grad():
    ...         y = x * 2
    >>> y.requires_grad
    True
    """

    _mode = True


class set_grad_enabled(_GradMode):  # noqa: N801
    """Sets graph recording on or off for a `with` block (or immediately, as a call).

    >>> x = gd.ones(2, requires_grad=True)
    >>> with gd.set_grad_enabled(False):
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self._mode = bool(mode)
        self._prev.append(is_grad_enabled())
        _set_grad_enabled(self._mode)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        _set_grad_enabled(self._prev.pop())
