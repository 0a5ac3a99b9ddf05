"""State shared between gd.compile's recorder (graddesc/_compile.py) and the hot paths that must
tell it things: which tensors a recorded op read, and when Python reads a tensor's value."""

from __future__ import annotations

import weakref
from typing import Any

# The recording in progress in some thread (a graddesc._compile._Recording) or None.
active: Any = None
# Bumped whenever graddesc rebinds a tensor's storage (Tensor.data =, Module.to, an optimizer's
# load_state_dict): a recorded program holds raw pointers, so it must then be recorded again.
storage_epoch = [0]
# Every optimizer alive: a recording snapshots their settings when it starts, so it can tell a
# setting the step itself changes (a Python side effect no replay repeats).
optimizers: Any = weakref.WeakSet()


# Gradients a replay computed but did not store yet: id(leaf) -> (leaf, program, instruction).
# Reading the leaf's .grad stores it (materialize); the next replay of that program drops them.
pending: dict = {}


def materialize(t: Any) -> None:
    """Called by Tensor.grad while `pending` is not empty."""
    item = pending.pop(id(t), None)
    if item is not None and item[0] is t:
        item[1].materialize(item[2])


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


def python_side_effect(what: str) -> None:
    """Called by library code whose effect is Python state a replay would not update."""
    rec = active
    if rec is not None:
        rec.on_side_effect(what)


def bump_storage() -> None:
    storage_epoch[0] += 1
