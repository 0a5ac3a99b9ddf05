"""Parameters whose last gd.compile weight update is still pending.

At batch 1 a compiled step may leave the SGD update of a first-layer weight pending and apply it
in the next replay, row by row as that replay's forward reads the weight, so the
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


def _twin(base: type, doc: str) -> type:
    """A subclass of `base` of the same layout whose attribute access applies the pending update
    and gives the object `base` back as its class."""

    def getattribute(self: Any, name: str) -> Any:
        _settle(self, base)
        return _get(self, name)

    def setattr_(self: Any, name: str, value: Any) -> None:
        _settle(self, base)
        _set(self, name, value)

    def delattr_(self: Any, name: str) -> None:
        _settle(self, base)
        _del(self, name)

    name = "Deferred" + base.__name__
    return type(name, (base,), {"__slots__": (), "__doc__": doc, "__module__": __name__,
                                "__qualname__": name, "__getattribute__": getattribute,
                                "__setattr__": setattr_, "__delattr__": delattr_})


DeferredParameter = _twin(Parameter, "A Parameter with a pending weight update (see the module "
                                     "docstring).")
DeferredTensor = _twin(Tensor, "A leaf Tensor (an optimizer parameter that is no nn.Parameter) "
                               "with a pending update.")

_core.set_deferred_types(Parameter, DeferredParameter, Tensor, DeferredTensor)
