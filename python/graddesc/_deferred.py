"""Parameters whose last gd.compile weight update is still pending.

At batch 1 a compiled step may leave the SGD update of a first-layer weight pending and apply it
in the next replay, row block by row block as that replay's forward reads the weight, so the
weight streams from memory once per step instead of twice (src/cpp/program.hpp, plan_defer).
Until then the parameter's memory holds the old values. The replay (src/cpp/bind_replay.cpp)
defers only while nothing but graddesc holds that memory, and switches the parameter's class to
the twin below: any attribute access on it, from any code (graddesc's own included), first
applies the pending update and switches the class back. So the parameter is never seen stale;
the one visible trace is `type(p)` between two replays (isinstance(p, Parameter) holds).
"""

from __future__ import annotations

from typing import Any

from graddesc import _core
from graddesc._tensor import Tensor
from graddesc.nn.parameter import Parameter

flush = _core.flush_deferred  # (bound once: a recording wraps the _core functions it sees)
_get = object.__getattribute__
_set = object.__setattr__
_del = object.__delattr__


def _settle(obj: Any, cls: type) -> None:
    flush()
    if type(obj) is not cls:  # (normally done by the flush; also when no update is pending)
        _set(obj, "__class__", cls)


class DeferredParameter(Parameter):
    """A Parameter with a pending weight update (see the module docstring)."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        _settle(self, Parameter)
        return _get(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _settle(self, Parameter)
        _set(self, name, value)

    def __delattr__(self, name: str) -> None:
        _settle(self, Parameter)
        _del(self, name)


class DeferredTensor(Tensor):
    """A leaf Tensor (an optimizer parameter that is no nn.Parameter) with a pending update."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        _settle(self, Tensor)
        return _get(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _settle(self, Tensor)
        _set(self, name, value)

    def __delattr__(self, name: str) -> None:
        _settle(self, Tensor)
        _del(self, name)


_core.set_deferred_types(Parameter, DeferredParameter, Tensor, DeferredTensor)
