"""gd.compile: record a whole training step once, then replay its kernels in C++.

The first call of `compile(fn)(*args)` for given input shapes/dtypes runs `fn` eagerly while a
recorder watches every call into graddesc._core (the C++ kernels), with the arrays they read and
write. If every array a kernel reads is accounted for -- a copy of an input, a parameter (or a
frozen module tensor), an optimizer state buffer, a shape-only constant, or the output of an
earlier recorded kernel -- the sequence becomes a `_core.Program` of raw-pointer kernel calls on
those same buffers. Program.optimize then removes copies into .grad, fuses a Linear (batch > 1)
with a ReLU of its output and a batch-1 Linear backward with its SGD update (that weight
gradient is stored only when .grad is read: _compile_state.pending), and Program.plan_defer
marks batch-1 first-layer updates that may wait for the next replay's forward (_deferred.py).
Later calls copy the new inputs into the recorded input buffers (or read large ones in place)
and run the program with one call (GIL released, no tape, no allocation), which is bitwise equal
to the eager step because it is the same arithmetic on the same data in the same order.
Random tensors the step draws from a generator's PCG64 stream (gd.randn, randint, randperm,
t.normal_(), ...) are host-fed inputs of the program: each replay makes the same draws from the
same generators in the recorded order before the run (_redraw, FastReplay.prepare), so the
generators advance as in eager.

Validity on each call: the same storage and requires_grad of every parameter, the same
optimizer objects, param_groups and settings (a new learning rate alone is patched into the
program), no storage rebinding (Module.to, Tensor.data =, an optimizer's load_state_dict or
add_param_group, a change to its state dicts, an attribute assigned on a module a recording saw:
each bumps _compile_state.storage_epoch). A .grad the caller still holds keeps its values (the
program is rebound to a fresh buffer). In the steady state one C++ call (_core.FastReplay,
src/cpp/bind_replay.cpp) makes these checks and the whole replay; it hands anything unusual
back to the Python path here, which decides.

Anything that cannot be captured falls back to eager execution with one warning: Python reading
a tensor's value (item(), bool(), numpy(), ...), ops that compute through NumPy instead of a
kernel, NumPy writes into tensors (item assignment; in-place ops on integers or mixed dtypes:
float in-place arithmetic runs the elementwise kernel, functional/inplace.py), in-place writes
into memory the recording does not know, optimizers without a recorded kernel path (LBFGS,
ZerothOrder), a tensor-valued optimizer setting (except SGD's diagonal or matrix lr, read once
per array object), optimizer settings or schedulers changed inside the step, inputs that
require grad, non-tensor return values. A .grad the step accumulates into without having made
it (zero_grad(set_to_none=False), clearing after the update, or never) is memory the program
reads and writes, as eager does; each call checks that the parameter still holds it.

Files: _compile_record.py is the recorder (which kernels are recordable and what a recording
notes), _compile_translate.py turns a recording into Program instructions, and this module holds
CompiledFunction: its cache of recorded entries, the per-call validity checks and the replay.
"""

from __future__ import annotations

import functools
import inspect
import operator
import sys
import warnings
from operator import is_
from typing import Any, Callable

import numpy as np

from graddesc import _compile_state, _core, _deferred  # noqa: F401 (registers its classes)
from graddesc._compile_record import (
    _OPTIM_CODES,
    _OPTIM_KERNELS,
    _QUERIES,
    _addr,
    _array_size,
    _group_snapshot,
    _install_lock,
    _Recording,
    _same_snapshot,
    _wrap,
)
from graddesc._compile_translate import (  # _act: tests/test_compile.py reads it from here
    _act,  # noqa: F401
    _bind,
    _Buffers,
    _check_constants_unwritten,
    _translate,
    _UncapturableError,
)
from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode

_GRAD_STATE = grad_mode._state  # per thread: .enabled
_replay = _core.replay  # FastReplay.__call__ without pybind11's dispatch
def _only_lr_changed(old: tuple, new: tuple) -> bool:
    """Snapshots that differ in a param group's learning rate alone (a scheduler's change),
    the new one a plain number: a replay can take it without recording again."""
    if old[0] != new[0] or [k for k, _ in old[1]] != [k for k, _ in new[1]]:
        return False
    lr = dict(new[1]).get("lr")
    if type(lr) not in (float, int) or type(dict(old[1]).get("lr")) not in (float, int):
        return False  # (a recorded diagonal or matrix lr is not a patchable number)
    strip = lambda snap: (snap[0], tuple((k, v) for k, v in snap[1] if k != "lr"))  # noqa: E731
    return _same_snapshot(strip(old), strip(new))


def _fast_snapshot(group: dict) -> tuple:
    """The objects a param group holds now, for an identity-only check on replay (and its
    _version, which FastReplay checks instead of the settings, for a ParamGroup)."""
    keys = tuple(k for k in group if k != "params")
    version = group._version if type(group) is _compile_state.ParamGroup else None
    return (group, group["params"], tuple(group["params"]), keys, tuple(group[k] for k in keys),
            version)


_DATA = operator.attrgetter("_data")
_REQUIRES_GRAD = operator.attrgetter("requires_grad")


def _probe_refs(a: Any) -> int:
    return sys.getrefcount(a)


# What a Python call adds to its argument's count besides the parameter: Python <= 3.10 keeps the
# caller's stack reference while the call runs, 3.11+ moves it into the callee's frame. _refs
# subtracts it so that every count here (and FastReplay's "three temporaries") is 3.11's on every
# version; otherwise a held .grad array looks unheld on 3.9 and the next step overwrites it.
_probe_object = object()
_CALL_EXTRA_REF = _probe_refs(_probe_object) - sys.getrefcount(_probe_object) - 1
del _probe_object


def _refs(a: Any) -> int:
    return sys.getrefcount(a) - _CALL_EXTRA_REF


# _refs(var._grad) in _release_held_grads when only var holds it: var, the local, _refs' own
# parameter and getrefcount's argument
_HELD_BY_NOBODY = 4

def _flatten_out(out: Any) -> list | None:
    if out is None:
        return []
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and all(isinstance(o, Tensor) for o in out):
        return list(out)
    return None


class _Entry:
    """A recorded program and what replaying it needs."""

    def __init__(self) -> None:
        self.program: Any = None
        self.inputs: list = []      # private input buffers, one per tensor argument (or None)
        self.outputs: list = []     # arrays to copy out as the returned tensors
        self.out_kind: Any = None   # Tensor, tuple, list or None
        self.grads: list = []       # (leaf tensor, grad array)
        self.persistent: list = []  # (leaf, its .grad, the array) written in place each replay
        # parameters (and frozen module tensors) with the arrays they must still hold
        self.param_tensors: tuple = ()
        self.param_arrays: tuple = ()
        self.frozen_tensors: tuple = ()
        self.frozen_arrays: tuple = ()
        self.hyper_fast: list = []  # _fast_snapshot of each entry of hypers
        self.versions: list = []    # the parameters' version counters, bumped per replay
        self.kw_order: list = []    # keyword argument names in the order of `inputs`
        self.hypers: list = []      # (param group, snapshot): a changed setting records again
        # (optimizer, param_groups list, its groups): a replaced list or group records again
        self.optimizers: tuple = ()
        self.lr_slots: dict = {}    # id(param group) -> indices of its sgd/adam instructions
        self.grad_refs: list = []   # references to each grad array right after recording
        self.none_grads: list = []  # leaves whose .grad the step leaves None (zero_grad last)
        self.lazy: list = []        # (leaf, instruction) whose .grad is stored when read
        self.pending_items: list = []  # per lazy: (key, item) for _compile_state.pending
        # (array, generator, sample) of each draw from a generator's PCG64 stream: refilled
        # in this order before each run (_random.draw)
        self.draws: list = []
        self.epoch = -1
        self.bufs: _Buffers | None = None
        # _core.FastReplay of this entry (positional inputs only), built on its first Python
        # replay; dropped (None) whenever the Python path changes what it captured
        self.fast: Any = None

    def __del__(self) -> None:
        # a lazy gradient nobody has read yet is computed from this program's buffers: store it
        # while they exist, so that .grad read after the compiled function is gone is right
        pending = getattr(_compile_state, "pending", None)
        if not pending:
            return
        for key, item in self.pending_items:
            if pending.get(key) is item:
                var = item[0]()
                if var is not None:
                    _compile_state.materialize(var)


def _redraw(draws: list) -> None:
    """Makes a replay's random draws: the eager step's, from the same generators in the same
    order (each generator's stream as it is now, e.g. after a manual_seed), into the arrays the
    program reads (graddesc/_random.py: draw)."""
    for arr, gen, sample in draws:
        np.copyto(arr, sample(gen._rng))


_FALLBACK = object()

# A compiled function that records more often than this (or than twice its cache_size, if more)
# warns once, naming the argument whose change made it record again.
RECORD_WARNING_AFTER = 16


def _describe_part(part: Any) -> str:
    """One argument's share of a cache key, as the re-recording warning shows it."""
    if isinstance(part, tuple) and len(part) == 3 and part[0] == "V":
        r = repr(part[2])
        return f"{part[1].__name__} {r if len(r) <= 60 else r[:57] + '...'}"
    shape, dtype, rg = part
    return f"tensor of shape {tuple(shape)} {dtype}" + (" requiring grad" if rg else "")


class CompiledFunction:
    """The callable gd.compile returns: records on the first call per input signature, then
    replays. `fn.stats` counts recordings, replays and eager fallbacks; `fn.cache_info()` lists
    what the cache holds. The cache keeps at most `cache_size` signatures, recorded or falling
    back to eager alike, and evicts the least recently used one."""

    def __init__(self, fn: Callable, cache_size: int = 8) -> None:
        if not callable(fn):
            raise TypeError(f"compile: expected a callable, got {type(fn).__name__}")
        if type(cache_size) is not int:
            raise TypeError(f"compile: cache_size must be an int, got {type(cache_size).__name__}")
        if cache_size < 1:
            raise ValueError(f"compile: cache_size must be at least 1, got {cache_size}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.cache_size = cache_size
        # key -> _Entry or _FALLBACK, least recently used first
        self._cache: dict = {}
        self._attempts: dict = {}  # key -> recordings that asked for one more (bounded too)
        self._warned = False
        self._warned_records = False
        self._last_key: Any = None  # the key of the last recording, for that warning
        self._stats = {"recorded": 0, "eager": 0}
        self._replays = _core.ReplayCount()  # (counted by the FastReplays too)
        self._fast: Any = None  # the FastReplay tried first (that of the last replayed entry)
        # the key of self._fast's entry, and the replay count when the Python path last ran:
        # replays since then were that entry's one-call replays (it is then the most recent)
        self._fast_key: Any = None
        self._replays_seen = 0
        try:
            self._names = [p.name for p in inspect.signature(fn).parameters.values()
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):  # (a callable without a signature)
            self._names = []

    @property
    def stats(self) -> dict:
        """{"recorded": ..., "replayed": ..., "eager": ...}: calls that recorded, replayed, or ran
        eagerly."""
        return {"recorded": self._stats["recorded"], "replayed": self._replays.n,
                "eager": self._stats["eager"]}

    def reset(self) -> None:
        """Forgets every recording (the next call records again)."""
        self._cache.clear()
        self._attempts.clear()
        self._fast = None
        self._fast_key = None

    def cache_info(self) -> dict:
        """{"cache_size": ..., "entries": [(signature, "replay" or "eager"), ...]}, the least
        recently used signature first; a signature describes grad mode and each argument."""
        self._note_fast_use()
        return {"cache_size": self.cache_size,
                "entries": [(self._describe(k), "eager" if e is _FALLBACK else "replay")
                            for k, e in self._cache.items()]}

    def _labels(self, key: tuple) -> list:
        """What each part of `key` is: grad mode, then each argument (position and name)."""
        kwnames = key[-1] if len(key) > 1 and isinstance(key[-1], tuple) and key[-1] and \
            all(isinstance(n, str) for n in key[-1]) else ()
        n_pos = len(key) - 1 - (1 if kwnames else 0) - len(kwnames)
        labels = ["grad mode"]
        for i in range(n_pos):
            name = self._names[i] if i < len(self._names) else None
            labels.append(f"argument {i}" + (f" ({name})" if name else ""))
        labels += [f"argument {n!r}" for n in kwnames]
        return labels

    def _describe(self, key: tuple) -> str:
        labels = self._labels(key)
        parts = [f"grad {'enabled' if key[0] else 'disabled'}"]
        parts += [f"{lab}: {_describe_part(p)}" for lab, p in zip(labels[1:], key[1:])]
        return ", ".join(parts)

    def _store(self, key: Any, value: Any) -> None:
        """Caches `value` (an _Entry or _FALLBACK) for key as the most recently used one,
        evicting the least recently used entries beyond cache_size."""
        self._note_fast_use()
        self._cache.pop(key, None)
        self._attempts.pop(key, None)  # a later recording of this key starts counting anew
        while len(self._cache) >= self.cache_size:
            old_key = next(iter(self._cache))
            old = self._cache.pop(old_key)
            if old is not _FALLBACK:
                self._drop_fast(old)
            if old_key == self._fast_key:
                self._fast_key = None
        self._cache[key] = value

    def _use(self, key: Any) -> None:
        """Makes key's entry the most recently used one."""
        self._cache[key] = self._cache.pop(key)

    def _note_fast_use(self) -> None:
        """One-call replays since the Python path last ran were all of self._fast's entry (only
        the Python path changes self._fast): it is the most recently used one."""
        if self._replays.n != self._replays_seen:
            self._replays_seen = self._replays.n
            if self._fast is not None and self._fast_key in self._cache:
                self._use(self._fast_key)

    def _note_recording(self, key: Any) -> None:
        """Counts a recording; past the limit, warns once, naming what changed."""
        n = self._stats["recorded"]
        limit = max(RECORD_WARNING_AFTER, 2 * self.cache_size)
        last, self._last_key = self._last_key, key
        if n <= limit or self._warned_records:
            return
        self._warned_records = True
        name = getattr(self.fn, "__name__", "fn")
        why = None
        labels = self._labels(key)
        if last is not None and self._labels(last) == labels:  # the same arguments, by name
            for lab, old, new in zip(labels, last, key):
                if old != new:
                    if lab == "grad mode":
                        why = f"grad mode changed ({old} -> {new})"
                    else:
                        why = f"{lab} changed: {_describe_part(old)} -> {_describe_part(new)}"
                    break
        elif last is not None:
            why = "the arguments changed (" + self._describe(last) + " -> " + \
                self._describe(key) + ")"
        if why is None:
            why = ("the arguments match an earlier recording, but what it captured changed "
                   "(a parameter's storage or requires_grad, an optimizer's param groups, "
                   "settings or state, a module's attribute) or the cache evicted it "
                   f"(cache_size={self.cache_size})")
        warnings.warn(f"graddesc.compile: {name} has recorded {n} times (more than {limit}); "
                      f"the last time because {why}. A non-tensor argument is part of the cache "
                      "key (each new value records again); pass a value that changes every "
                      "call outside the step (a learning rate through param_groups is taken by "
                      "a replay) or raise cache_size for many input shapes",
                      RuntimeWarning, stacklevel=4)

    def _key(self, args: tuple, kwargs: dict) -> Any:
        parts: list = [grad_mode.is_grad_enabled()]
        for a in (args if not kwargs else list(args) + [kwargs[k] for k in sorted(kwargs)]):
            if type(a) is Tensor or isinstance(a, Tensor):
                d = a._data
                parts.append((d.shape, d.dtype, a.requires_grad))
            else:
                try:
                    hash(a)
                except TypeError:
                    return None
                parts.append(("V", type(a), a))
        if kwargs:
            parts.append(tuple(sorted(kwargs)))
        return tuple(parts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fast = self._fast
        if fast is not None and not kwargs:
            # the whole replay in one C++ call; NotImplemented: anything unusual, decided below
            out = _replay(fast, args, _GRAD_STATE.enabled)
            if out is not NotImplemented:
                return out
        _deferred.flush()  # (reading a parameter would too: this path reads them directly)
        rec = _compile_state.active
        if rec is not None and rec.mine():
            # called inside another compiled step's recording: run eagerly so that recording
            # sees these kernels (a replay here would be invisible to it)
            self._stats["eager"] += 1
            return self.fn(*args, **kwargs)
        key = self._key(args, kwargs)
        if key is None:
            return self._eager("an argument is neither a tensor nor hashable", args, kwargs)
        self._note_fast_use()
        entry = self._cache.get(key)
        if entry is _FALLBACK:
            self._use(key)
            self._stats["eager"] += 1
            return self.fn(*args, **kwargs)
        if entry is not None and self._valid(entry):
            self._use(key)
            out = self._replay(entry, args, kwargs)
            if not kwargs:  # (only then is self._fast this entry's: _replay)
                self._fast_key = key
            self._replays_seen = self._replays.n
            return out
        return self._record(key, args, kwargs)

    def _eager(self, why: str, args: tuple, kwargs: dict) -> Any:
        self._warn(why)
        self._stats["eager"] += 1
        return self.fn(*args, **kwargs)

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"graddesc.compile: running {getattr(self.fn, '__name__', 'fn')} "
                          f"eagerly: {why}", RuntimeWarning, stacklevel=3)

    def _valid(self, entry: _Entry) -> bool:
        if entry.epoch != _compile_state.storage_epoch[0]:
            return False
        t, arrs = entry.param_tensors, entry.param_arrays
        if not (all(map(is_, map(_DATA, t), arrs)) and all(map(_REQUIRES_GRAD, t))):
            return False
        t, arrs = entry.frozen_tensors, entry.frozen_arrays
        if not all(map(is_, map(_DATA, t), arrs)) or any(map(_REQUIRES_GRAD, t)):
            return False
        for var, g, arr in entry.persistent:  # the very .grad the program writes into
            if var._grad is not g or g._data is not arr:
                return False
        for opt, groups, items in entry.optimizers:
            if opt.param_groups is not groups or len(groups) != len(items) or \
                    not all(map(is_, groups, items)):
                return False
        for k, (group, plist, ptuple, keys, values, version) in enumerate(entry.hyper_fast):
            # fast: the very same objects as recorded (no setting or parameter reassigned)
            if group["params"] is plist and len(plist) == len(ptuple) and \
                    all(map(is_, plist, ptuple)) and len(group) == len(keys) + 1 and \
                    all(map(is_, map(group.get, keys), values)):
                if version is not None and group._version is not version:
                    # a setting written with the object it held: the one-call path compares
                    # the version, so it is rebuilt with the new one
                    entry.hyper_fast[k] = _fast_snapshot(group)
                    self._drop_fast(entry)
                continue
            group, snap = entry.hypers[k]
            now = _group_snapshot(group)
            if not _same_snapshot(now, snap):
                slots = entry.lr_slots.get(id(group))
                if slots is None or not _only_lr_changed(snap, now) or \
                        not 0.0 <= group["lr"] < float("inf"):
                    return False  # (recording again: an invalid lr raises there, as eager)
                for index in slots:  # the kernel takes the learning rate as a double, as eager
                    entry.program.set_real(index, 0, float(group["lr"]))
                entry.hypers[k] = (group, now)
            entry.hyper_fast[k] = _fast_snapshot(group)
            self._drop_fast(entry)
        return True

    def _drop_fast(self, entry: _Entry) -> None:
        if entry.fast is not None:
            if self._fast is entry.fast:
                self._fast = None
            entry.fast = None

    def _build_fast(self, entry: _Entry, args: tuple) -> Any:
        """The FastReplay of `entry` for calls like this one (positional arguments only)."""
        inputs = []
        for a, buf in zip(args, entry.inputs):
            inputs.append((True, buf) if buf is not None else (False, type(a), a))
        grads = [(var, arr, refs) for (var, arr), refs in zip(entry.grads, entry.grad_refs)]
        fast = _core.FastReplay(
            entry.program, Tensor, _GRAD_STATE.enabled,
            _compile_state.storage_epoch, entry.epoch, vars(_compile_state), inputs,
            # (tensor, array, the references to the array when only graddesc holds it: the
            # tensor's _data, entry.param_arrays, entry.bufs if it keeps it, the FastReplay)
            [(t, a, 3 + (entry.bufs.keep.get(id(a)) is a))
             for t, a in zip(entry.param_tensors, entry.param_arrays)],
            list(zip(entry.frozen_tensors, entry.frozen_arrays)), list(entry.optimizers),
            entry.hyper_fast, entry.versions, grads, entry.none_grads,
            [(var, key, item) for (var, _), (key, item) in zip(entry.lazy, entry.pending_items)],
            _compile_state.pending, entry.outputs, entry.out_kind, self._replays,
            list(entry.persistent))
        if entry.draws:  # the step's random draws, made once the call's checks have passed
            fast.prepare = functools.partial(_redraw, entry.draws)
        return fast

    # ---- recording ------------------------------------------------------------------------
    def _record(self, key: Any, args: tuple, kwargs: dict) -> Any:
        self._fast = None
        if any(isinstance(a, Tensor) and a.requires_grad for a in list(args) +
               list(kwargs.values())):
            self._store(key, _FALLBACK)
            return self._eager("an input requires grad", args, kwargs)
        private = []
        call_args = []
        for a in args:
            if isinstance(a, Tensor):
                buf = np.array(a._data, order="C", copy=True)
                private.append(buf)
                call_args.append(Tensor._make(buf))
            else:
                private.append(None)
                call_args.append(a)
        call_kwargs = {}
        for k, v in kwargs.items():
            if isinstance(v, Tensor):
                buf = np.array(v._data, order="C", copy=True)
                private.append(buf)
                call_kwargs[k] = Tensor._make(buf)
            else:
                private.append(None)
                call_kwargs[k] = v
        versions = [t._vc[0] for t in call_args + list(call_kwargs.values())
                    if isinstance(t, Tensor)]
        rec = _Recording()
        with _install_lock:
            if _compile_state.active is not None:
                self._stats["eager"] += 1
                return self.fn(*args, **kwargs)  # a recording is running in another thread
            originals = {n: getattr(_core, n) for n in dir(_core)
                         if not n.startswith("_") and callable(getattr(_core, n))
                         and n not in _QUERIES}
            for n, f in originals.items():
                setattr(_core, n, _wrap(n, f))
            _compile_state.active = rec
        epoch = _compile_state.storage_epoch[0]
        try:
            out = self.fn(*call_args, **call_kwargs)
        finally:
            with _install_lock:
                _compile_state.active = None
                for n, f in originals.items():
                    setattr(_core, n, f)
        self._stats["recorded"] += 1
        self._note_recording(key)
        # an optimizer that reads an array learning rate once per array object (SGD's diagonal
        # or matrix lr): the replay keeps what it read, as eager does
        fixed_lr = {id(g) for o, _, groups in rec.optimizers.values()
                    if getattr(o, "_array_lr_read_once", False) for g in groups}
        for group, snap in rec.hypers:
            if not _same_snapshot(_group_snapshot(group), snap):
                rec.fail("the step changes an optimizer setting (param_groups[i][...]) after "
                         "the optimizer step, which a replay would not repeat")
            if any(isinstance(v, (Tensor, np.ndarray)) for k, v in group.items() if k != "params"
                   and not (k == "lr" and id(group) in fixed_lr and _array_size(v) != 1)):
                rec.fail("an optimizer setting is a tensor (a replay would not see it change "
                         "in place)")
        tensors = [t for t in call_args + list(call_kwargs.values()) if isinstance(t, Tensor)]
        if [t._vc[0] for t in tensors] != versions:
            # the step modified an input in place: give the caller's tensors those changes
            originals_in = [t for t in list(args) + list(kwargs.values()) if isinstance(t, Tensor)]
            for src, dst in zip(tensors, originals_in):
                np.copyto(dst._data, src._data)
                dst._vc[0] += 1
            rec.fail("the step modifies an input tensor in place")
        flat = _flatten_out(out)
        if flat is None:
            rec.fail("the step returns something other than tensors")
        for var, grad in rec.persistent.values():
            if var._grad is not grad or grad._data.dtype.kind != "f":
                rec.fail("the step replaces a gradient it writes in place")
        retry = False
        if rec.failure is None:
            uncleared = [v for v, _ in rec.grads if id(v) not in rec.cleared]
            if uncleared:
                # Either the gradients were None before this first call or the step never
                # clears them (then they would accumulate across calls): record once more to
                # tell which.
                n = self._attempts.pop(key, 0) + 1
                self._attempts[key] = n
                while len(self._attempts) > self.cache_size:
                    del self._attempts[next(iter(self._attempts))]
                if n >= 2:
                    rec.fail("the step does not clear gradients (call optimizer.zero_grad() or "
                             "model.zero_grad() inside it), so they accumulate across calls")
                else:
                    retry = True
        if rec.failure is not None:
            self._store(key, _FALLBACK)
            self._warn(rec.failure)
            return out
        if retry:
            return out
        entry = _Entry()
        bufs = _Buffers()
        prog = _core.Program()
        try:
            by_hand = _translate(rec, [p for p in private if p is not None], prog, bufs,
                                 tuple(t._data for t in flat))
            _check_constants_unwritten(rec, prog)
            for t in flat:
                bufs.ptr(t._data, "a returned tensor")  # must be memory the program writes
                entry.outputs.append(t._data)
            pinned = [a for a in private if a is not None] + entry.outputs + \
                [arr for _, arr in rec.grads] + [t._data for t in rec.params.values()] + \
                [g._data for _, g in rec.persistent.values()] + list(rec.states.values()) + \
                [d for d, _, _ in rec.draws]
            prog.optimize([(_addr(a), a.nbytes) for a in pinned if a.size])
            del pinned  # (grad_refs below counts the references that outlive this call)
        except _UncapturableError as e:
            self._store(key, _FALLBACK)
            self._warn(str(e))
            return out
        entry.program = prog
        entry.bufs = bufs
        prog.keep_alive = bufs  # the program holds raw pointers into these arrays
        entry.inputs = private
        entry.draws = list(rec.draws)
        entry.out_kind = type(out) if out is not None else None
        entry.grads = list(rec.grads)
        entry.persistent = [(var, g, g._data) for var, g in rec.persistent.values()]
        # parameters read under no_grad are checked like the others (storage, requires_grad)
        readonly = [t for k, t in rec.readonly.items() if k not in rec.params]
        entry.param_tensors = tuple(rec.params.values()) + tuple(readonly)
        entry.param_arrays = tuple(t._data for t in entry.param_tensors)
        entry.frozen_tensors = tuple(rec.frozen.values())
        entry.frozen_arrays = tuple(t._data for t in entry.frozen_tensors)
        # a replay bumps the version counters of the parameters its optimizer updates (as the
        # eager update does), not of those it only reads
        updated = {id(a) for name, args, kwargs, _ in rec.calls if name in _OPTIM_KERNELS
                   for a in _bind(name, args, kwargs)["params"]}
        entry.versions = [t._vc for t in rec.params.values() if id(t._data) in updated]
        # and of every tensor an in-place kernel wrote (a hand-written update under no_grad)
        entry.versions += [vc for vc in rec.bumped.values()
                           if not any(vc is v for v in entry.versions)]
        entry.kw_order = list(kwargs)  # the order `private` holds keyword inputs in
        entry.hypers = list(rec.hypers)
        entry.optimizers = tuple(rec.optimizers.values())
        # a fused batch-1 backward + SGD stores its weight gradient only when .grad is read
        by_addr = {_addr(arr): var for var, arr in rec.grads if var._grad is not None}
        for index, name in enumerate(prog.names()):
            if name == "linear_bwd_sgd":
                var = by_addr.get(prog.grad_addr(index))
                if var is not None and prog.set_lazy(index, True):
                    entry.lazy.append((var, index))
                    entry.pending_items.append(_compile_state.pending_item(var, prog, index))
        entry.hyper_fast = [_fast_snapshot(group) for group, _ in rec.hypers]
        # which recorded optimizer instructions belong to which group (a new lr is patched in)
        owner = {}
        for group, _ in rec.hypers:
            for p in group["params"]:
                owner[_addr(p._data)] = group
        for index, name in enumerate(prog.names()):
            if name in _OPTIM_CODES:
                group = owner.get(prog.param_addr(index))
                if group is None and prog.param_addr(index) in by_hand:
                    continue  # a hand-written update: its lr is a constant of the step
                if group is None:
                    entry.hypers = [(g, ()) for g, _ in rec.hypers]  # never valid: re-record
                    break
                entry.lr_slots.setdefault(id(group), []).append(index)
        entry.none_grads = [var for var, _ in rec.grads if var._grad is None]
        entry.epoch = epoch if epoch == _compile_state.storage_epoch[0] else -1
        # what the caller gets is a copy, as on every replay: the program owns its buffers
        result = self._results(entry)
        # the recording's call log holds references to the gradient arrays too: drop it before
        # counting what "nobody else holds them" looks like
        # a batch-1 first layer's update may wait for the next replay's forward (_deferred.py)
        prog.plan_defer()
        del rec, by_addr, owner
        entry.grad_refs = [_refs(arr) for _, arr in entry.grads]
        self._store(key, entry)  # (only now: complete)
        return result

    def _results(self, entry: _Entry) -> Any:
        kind = entry.out_kind
        if kind is None:
            return None
        if kind is Tensor:
            return Tensor._make(entry.outputs[0].copy())
        outs = [Tensor._make(a.copy()) for a in entry.outputs]
        if issubclass(kind, Tensor):
            return outs[0]
        return kind(*outs) if hasattr(kind, "_fields") else kind(outs)  # a namedtuple: fields

    def _release_held_grads(self, entry: _Entry) -> None:
        """A .grad the caller kept from the previous call (the tensor, a view or its array) must
        keep its values, as eager's fresh .grad each step would: the program writes a new
        buffer instead."""
        mine = entry.fast is not None  # the FastReplay's own reference to each grad array
        for k, (var, arr) in enumerate(entry.grads):
            g = var._grad
            held = g is not None and g._data is arr and _refs(g) > _HELD_BY_NOBODY
            if not held and _refs(arr) <= entry.grad_refs[k] + mine:
                continue
            self._drop_fast(entry)
            mine = False
            new = np.empty_like(arr)
            entry.program.rebind(_addr(arr), _addr(new), arr.nbytes)
            entry.bufs.forget(arr)  # the caller's reference is now the only one
            entry.bufs.add(new)
            entry.grads[k] = (var, new)
            if g is not None and g._data is arr:
                var._grad = None  # the caller's tensor keeps the old array
            entry.grad_refs[k] = _refs(new) + 1  # + 1: the tuple in entry.grads

    # ---- replaying ------------------------------------------------------------------------
    def _replay(self, entry: _Entry, args: tuple, kwargs: dict) -> Any:
        values = args if not kwargs else list(args) + [kwargs[n] for n in entry.kw_order]
        for k, a in enumerate(values):
            buf = entry.inputs[k]
            if buf is not None:
                np.copyto(buf, a._data)
        _redraw(entry.draws)
        self._release_held_grads(entry)
        pending = _compile_state.pending
        for key, _ in entry.pending_items:  # this run overwrites what they'd be computed from
            pending.pop(key, None)
        try:
            entry.program.run()
        except Exception:
            # (a cross-entropy target out of range: nothing was updated yet) eager would have
            # cleared the gradients before failing
            for var, _ in entry.grads:
                var._grad = None
            raise
        self._replays.n += 1
        for vc in entry.versions:
            vc[0] += 1
        for var, arr in entry.grads:
            g = var._grad
            if g is None or g._data is not arr:
                var._grad = Tensor._make(arr)
            else:
                g._vc[0] += 1
        for var in entry.none_grads:
            var._grad = None
        for (var, _), (key, item) in zip(entry.lazy, entry.pending_items):
            if var._grad is not None:
                pending[key] = item
        for _, g, _ in entry.persistent:
            g._vc[0] += 1
        if not kwargs:
            if entry.fast is None:
                entry.fast = self._build_fast(entry, args)
            self._fast = entry.fast
        return self._results(entry)


def compile(fn: Callable | None = None, *, cache_size: int = 8) -> Any:  # noqa: A001
    """Records `fn` (e.g. a whole training step) on its first call and replays its kernels in
    C++ on later calls with inputs of the same shapes and dtypes; usable as a decorator.
    Non-tensor arguments are static (a new value records again); at most `cache_size`
    signatures are kept, the least recently used evicted first. A Module (`model =
    gd.compile(model)`, the torch.compile idiom) is returned as it is: it runs eagerly, with
    autograd, because a replayed forward alone would have no graph to backpropagate through.

    >>> model = nn.Linear(3, 1)
    >>> opt = gd.optim.SGD(model.parameters(), lr=0.1)
    >>> @gd.compile
    ... def step(x, y):
    ...     opt.zero_grad()
    ...     loss = F.mse_loss(model(x), y)
    ...     loss.backward()
    ...     opt.step()
    ...     return loss
    >>> x, y = gd.randn(16, 3), gd.randn(16, 1)
    >>> losses = [step(x, y).item() for _ in range(10)]  # records once, then replays
    >>> losses[-1] < losses[0]
    True
    """
    if fn is None:
        return lambda f: compile(f, cache_size=cache_size)
    from graddesc.nn.module import Module

    if isinstance(fn, Module):
        # `model = torch.compile(model)`: a recorded forward would replay without the tape, so
        # its outputs could not be differentiated. graddesc records whole steps (forward,
        # backward, optimizer step) instead; a module passed here stays the eager module, so
        # the ported training loop keeps working. Compile the step to get the replay.
        return fn
    return CompiledFunction(fn, cache_size)
