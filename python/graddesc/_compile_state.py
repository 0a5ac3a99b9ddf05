"""State shared between gd.compile's recorder (graddesc/_compile_record.py) and the hot paths
that must tell it things: which tensors a recorded op read, and when Python reads a tensor's
value."""

from __future__ import annotations

import abc
import weakref
from typing import Any

import numpy as np

# The recording in progress in some thread (a graddesc._compile._Recording) or None.
active: Any = None
# Bumped whenever graddesc rebinds a tensor's storage (Tensor.data =, Module.to, an optimizer's
# load_state_dict): a recorded program holds raw pointers, so it must then be recorded again.
storage_epoch = [0]
# Every optimizer alive: a recording snapshots their settings when it starts, so it can tell a
# setting the step itself changes (a Python side effect no replay repeats).
optimizers: Any = weakref.WeakSet()


# Gradients a replay computed but did not store yet:
#   id(leaf) -> (weakref to the leaf, weakref to the program, instruction index).
# Reading the leaf's .grad stores it (materialize); the next replay of that program drops them.
# Weak references: an entry never keeps a dropped model or compiled step alive, and the leaf's
# death removes its entry (pending_item's callback).
pending: dict = {}


def pending_item(var: Any, program: Any, index: int) -> tuple:
    """(key, item) for `pending`, made once per lazy gradient of a recorded program."""
    key = id(var)

    def forget(ref: Any, key: int = key) -> None:
        item = pending.get(key)
        if item is not None and item[0] is ref:
            del pending[key]

    return key, (weakref.ref(var, forget), weakref.ref(program), index)


def materialize(t: Any) -> None:
    """Called by Tensor.grad while `pending` is not empty."""
    item = pending.pop(id(t), None)
    if item is not None and item[0]() is t:
        program = item[1]()
        if program is not None:
            program.materialize(item[2])


def ones_seed(shape: tuple, dtype: Any) -> Any:
    """The implicit gradient seed of backward() (an array of ones); a recording keeps it as a
    constant of the program."""
    seed = np.empty(shape, dtype=dtype)
    seed.fill(1)
    rec = active
    if rec is not None:
        rec.constants[id(seed)] = seed
    return seed


def constant(arr: Any) -> Any:
    """Called by the creation functions whose values depend only on their (Python) arguments
    (zeros, ones, full, eye, arange, ...): made inside a recorded step, the array is a constant
    of the program, as a Python number argument of an op is. A program that writes into one is
    refused (a replay would start from the written values)."""
    rec = active
    if rec is not None and rec.mine():
        rec.constants[id(arr)] = arr
        rec.created_constants[id(arr)] = arr
    return arr


def generator_state(arr: Any) -> Any:
    """Called before a kernel draws from a generator's stream: a recording keeps the state
    array as memory the program reads and advances in place (never a constant)."""
    rec = active
    if rec is not None and rec.mine():
        rec.states[id(arr)] = arr
    return arr


def random_draw(arr: Any, generator: Any, sample: Any) -> Any:
    """Called by every draw from a generator's PCG64 stream (_random.draw): a recording keeps
    the array as a host-fed input of the program, which each replay refills with sample() of
    the same generator, in the recorded order, before the program runs."""
    rec = active
    if rec is not None and rec.mine():
        rec.draws.append((arr, generator, sample))
    return arr


def overwritten(arr: Any) -> None:
    """Called before a kernel overwrites every element of arr with values that do not depend
    on arr (t.normal_(), t.uniform_()): a tensor the step made with gd.empty/zeros/... that no
    recorded kernel has read yet is then no constant of the program (a replay writes it anew
    before any instruction reads it)."""
    rec = active
    if rec is not None and rec.mine() and id(arr) in rec.created_constants and \
            rec.created_constants[id(arr)] is arr and not rec.touches(arr):
        del rec.created_constants[id(arr)]


def value_read(what: str) -> None:
    """Called by Tensor.item() and friends: a value read makes a step uncapturable."""
    rec = active
    if rec is not None:
        rec.on_value_read(what)


def inplace_write(what: str) -> None:
    """Called where Python (NumPy) writes into a tensor's memory in place: a replay would skip
    that write, so a recording that sees one falls back to eager."""
    rec = active
    if rec is not None:
        rec.on_inplace_write(what)


def inplace_kernel(t: Any) -> None:
    """Called after an elementwise kernel wrote into t's memory in place (t.add_(x) under
    no_grad, t.zero_(), ...): a replay repeats the write, and bumps t's version counter as the
    eager op does."""
    rec = active
    if rec is not None:
        rec.on_inplace_kernel(t)


def grad_cleared(t: Any) -> None:
    """zero_grad(set_to_none=True) found t.grad None already: still, the step clears it."""
    rec = active
    if rec is not None:
        rec.on_grad_cleared(t)


def python_side_effect(what: str) -> None:
    """Called by library code whose effect is Python state a replay would not update."""
    rec = active
    if rec is not None:
        rec.on_side_effect(what)


def bump_storage() -> None:
    storage_epoch[0] += 1


# Modules a recording saw called: assigning one of their attributes afterwards (a loss's
# ignore_index, an activation's slope, a swapped Parameter, train()/eval()) changes what a
# recorded program baked in. Modules made and configured inside a step are not in it yet.
recorded_modules: Any = weakref.WeakSet()


def module_attribute_set(module: Any, name: str) -> None:
    """Called by Module.__setattr__."""
    if module in recorded_modules:
        rec = active
        if rec is not None and rec.mine():  # inside the step: a replay would not repeat it
            rec.on_side_effect(f"setting {type(module).__name__}.{name}")
        storage_epoch[0] += 1


class _HookedDict(dict, metaclass=abc.ABCMeta):
    """A dict that calls self._changed() before every mutation (reads cost nothing extra)."""

    __slots__ = ()

    @abc.abstractmethod
    def _changed(self) -> None:
        """What a change means (each subclass says)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        self._changed()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._changed()
        dict.__delitem__(self, key)

    def clear(self) -> None:
        self._changed()
        dict.clear(self)

    def pop(self, *args: Any) -> Any:
        self._changed()
        return dict.pop(self, *args)

    def popitem(self) -> Any:
        self._changed()
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._changed()
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._changed()
        dict.update(self, *args, **kwargs)

    def __ior__(self, other: Any) -> Any:
        self.update(other)
        return self

    def __reduce__(self) -> Any:  # serialized and copied as a plain dict of its items
        return (dict, (dict(self),))


class WatchedDict(_HookedDict):
    """An optimizer's per-parameter state: every mutation bumps storage_epoch. A recorded
    program holds the addresses of the state buffers, so replacing or removing one
    (state.clear(), state[p]['momentum_buffer'] = t, load_state_dict) must record again. In-place
    changes of a buffer's values need nothing: the program reads the same memory."""

    __slots__ = ()

    def _changed(self) -> None:
        storage_epoch[0] += 1


class WatchedState(WatchedDict):
    """Optimizer.state: defaultdict(dict) behaviour, with every level a WatchedDict."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(value) is dict:
            value = WatchedDict(value)
        WatchedDict.__setitem__(self, key, value)

    def __missing__(self, key: Any) -> Any:
        value = WatchedDict()
        self[key] = value
        return value


def _setting_written() -> None:
    rec = active
    if rec is not None:
        rec.on_setting_write()


class ParamGroup(_HookedDict):
    """An optimizer's param group. A write inside a step being recorded by gd.compile is a Python
    side effect a replay would not repeat (even when it stores the value the group holds now: the
    next call may find another value there), so the recording falls back to eager. Every change
    also replaces _version (a new int), which a replay compares by identity instead of every
    setting."""

    __slots__ = ("_version",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        self._version = 0

    def _changed(self) -> None:
        _setting_written()
        self._version += 1
