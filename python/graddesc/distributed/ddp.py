"""DistributedDataParallel: one model replica per rank, gradients averaged during backward."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from graddesc import _compile_state
from graddesc._tensor import Tensor
from graddesc.autograd import engine
from graddesc.distributed import _group
from graddesc.distributed._group import DistributedError
from graddesc.nn.module import Module


class _Bucket:
    """Gradients of a few parameters reduced by one collective. `flat` holds the gradients
    one after another, then one "had a gradient" count per parameter (1 or 0 on each rank): a
    parameter no rank produced a gradient for keeps .grad None, as on one process."""

    def __init__(self, params: list) -> None:
        self.params = params
        self.sizes = [p._data.size for p in params]
        self.offsets = list(np.cumsum([0] + self.sizes[:-1]))
        self.total = int(sum(self.sizes))
        self.flat = np.empty(self.total + len(params), dtype=params[0]._data.dtype)
        self.ready: set = set()
        self.work: Any = None  # an MPI request, or an _Ordered in flight

    def fill(self) -> None:
        flat = self.flat
        for k, (p, off, n) in enumerate(zip(self.params, self.offsets, self.sizes)):
            g = p.grad  # (the property: a lazily stored gradient of gd.compile is stored now)
            if g is None:
                flat[off:off + n] = 0
                flat[self.total + k] = 0
            else:
                np.copyto(flat[off:off + n], g._data.reshape(-1))
                flat[self.total + k] = 1

    def unpack(self, world: int) -> None:
        flat = self.flat
        scale = flat.dtype.type(world)
        for k, (p, off, n) in enumerate(zip(self.params, self.offsets, self.sizes)):
            part = flat[off:off + n].reshape(p._data.shape)
            g = p.grad
            if flat[self.total + k] == 0:  # no rank had a gradient for it
                continue
            if g is not None and g._data.flags.writeable and g._data.flags.c_contiguous and \
                    g._data.shape == p._data.shape:
                np.divide(part, scale, out=g._data)
                g._vc[0] += 1
            else:
                p._grad = Tensor._make(np.divide(part, scale))


class DistributedDataParallel(Module):
    """Wraps `module` for data-parallel training: every rank runs the same model on its own
    shard of the global batch and backward leaves the same averaged gradient on every rank.

    At construction the ranks check that their parameters have the same names, shapes and
    dtypes (a clear ValueError on every rank otherwise) and rank 0's parameters and buffers are
    broadcast to all. Gradients are grouped into buckets of about bucket_cap_mb megabytes, in
    reverse parameter order (the order backward produces them); a bucket's non-blocking
    all-reduce (MPI_Iallreduce) starts as soon as backward has accumulated all of its
    gradients, buckets start in the same order on every rank, and the end of backward waits for
    all of them and writes the average into each .grad: any optimizer then reads averaged
    gradients.

    deterministic=True reduces with all_reduce_ordered: the sum in rank order (0, 1, 2, ...)
    whatever MPI does, at the cost of an all-to-all and an all-gather per bucket. With 2 ranks
    both modes give the same bits (one addition is commutative).

    no_sync(): a context in which backward only accumulates locally (gradient accumulation);
    the first backward after it averages the accumulated gradients.

    gd.compile: a compiled step containing this backward cannot replay the all-reduce, so its
    recording falls back to eager execution with one warning (correct, not faster).
    graddesc.fit(compile=True) instead replays forward + backward locally and then calls
    synchronize_gradients() before the optimizer step.
    """

    def __init__(self, module: Module, *, bucket_cap_mb: float = 0.5,
                 deterministic: bool = False, broadcast_buffers: bool = True,
                 device_ids: Any = None, output_device: Any = None, **kwargs: Any) -> None:
        super().__init__()
        where = "DistributedDataParallel"
        if not isinstance(module, Module):
            raise TypeError(f"{where}: module must be a graddesc.nn.Module, got "
                            f"{type(module).__name__}")
        if not (isinstance(bucket_cap_mb, (int, float)) and not isinstance(bucket_cap_mb, bool)
                and bucket_cap_mb > 0):
            raise ValueError(f"{where}: bucket_cap_mb must be a positive number, got "
                             f"{bucket_cap_mb!r}")
        _group._check_init(where)
        self.module = module
        object.__setattr__(self, "require_backward_grad_sync", True)
        object.__setattr__(self, "deterministic", bool(deterministic))
        object.__setattr__(self, "_in_compiled_step", False)
        world = _group.get_world_size()
        object.__setattr__(self, "_world", world)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._check_same_parameters(named, list(module.named_buffers()))
        with _no_grad():
            for _, p in named:
                _group.broadcast(p, 0)
            if broadcast_buffers:
                for _, b in module.named_buffers():
                    if b._data.dtype in _group._DTYPES and b._data.flags.c_contiguous:
                        _group.broadcast(b, 0)
        cap = float(bucket_cap_mb) * 2 ** 20
        buckets: list = []
        current: list = []
        size = 0
        for _, p in reversed(named):
            nbytes = p._data.nbytes
            if current and (size + nbytes > cap or p._data.dtype != current[0]._data.dtype):
                buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            buckets.append(_Bucket(current))
        where_of = {}
        for b, bucket in enumerate(buckets):
            for k, p in enumerate(bucket.params):
                where_of[id(p)] = (b, k)
        object.__setattr__(self, "_buckets", buckets)
        object.__setattr__(self, "_where", where_of)
        object.__setattr__(self, "_round", None)  # the backward whose gradients are in flight
        object.__setattr__(self, "_next", 0)  # the next bucket to start
        handles = []
        if world > 1:
            for _, p in named:
                handles.append(p.register_post_accumulate_grad_hook(self._on_grad))
        object.__setattr__(self, "_handles", handles)

    # ---- construction checks ----------------------------------------------------------------
    def _check_same_parameters(self, named: list, buffers: list) -> None:
        mine = [("parameter", n, tuple(p._data.shape), str(p._data.dtype)) for n, p in named]
        mine += [("buffer", n, tuple(b._data.shape), str(b._data.dtype)) for n, b in buffers]
        every = _group.all_gather_object(mine)
        ref = every[0]
        for r, theirs in enumerate(every):
            if theirs == ref:
                continue
            for k in range(max(len(ref), len(theirs))):
                a = ref[k] if k < len(ref) else None
                b = theirs[k] if k < len(theirs) else None
                if a != b:
                    break
            raise ValueError(
                f"DistributedDataParallel: the ranks' models differ: entry {k} is "
                f"{_describe(a)} on rank 0 but {_describe(b)} on rank {r} ({len(ref)} "
                f"parameters and buffers on rank 0, {len(theirs)} on rank {r}); every rank "
                "must build the same model")

    # ---- the module -----------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward inside accumulates gradients locally, without communication."""
        old = self.require_backward_grad_sync
        object.__setattr__(self, "require_backward_grad_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "require_backward_grad_sync", old)

    @contextlib.contextmanager
    def _compiled_step(self) -> Iterator[None]:
        """For graddesc.fit(compile=True): backward leaves local gradients (a replay runs no
        hooks); the caller then calls synchronize_gradients()."""
        object.__setattr__(self, "_in_compiled_step", True)
        try:
            yield
        finally:
            object.__setattr__(self, "_in_compiled_step", False)

    def synchronize_gradients(self) -> None:
        """Averages the current .grad of every parameter across ranks now (blocking). Backward
        does this by itself; this is for gradients computed another way (a compiled replay)."""
        if self._world == 1:
            return
        self._abandon_check()
        for b in range(len(self._buckets)):
            self._launch(b)
        self._finish()

    # ---- gradient hooks ---------------------------------------------------------------------
    def _on_grad(self, p: Tensor) -> None:
        if not self.require_backward_grad_sync or self._in_compiled_step:
            return  # (in a compiled step, replayed or eager, the caller synchronizes after it)
        if _compile_state.active is not None:
            _compile_state.python_side_effect(
                "DistributedDataParallel's gradient all-reduce (MPI, during backward)")
        current = engine._local.callbacks[-1]  # the list of the backward now running
        if self._round is not current:
            self._abandon_check()
            object.__setattr__(self, "_round", current)
            engine.queue_callback(self._finish)
        b, k = self._where[id(p)]
        bucket = self._buckets[b]
        bucket.ready.add(k)
        buckets = self._buckets
        while self._next < len(buckets) and \
                len(buckets[self._next].ready) == len(buckets[self._next].params):
            self._launch(self._next)
        for bk in buckets[:self._next]:  # drive MPI's progress of those in flight
            w = bk.work
            if w is not None and not isinstance(w, _group._Ordered):
                w.Test()

    def _abandon_check(self) -> None:
        """A backward that raised left a round unfinished: its collectives are out of step
        with the other ranks, so no later one can be matched."""
        if any(b.work is not None for b in self._buckets):
            raise DistributedError(
                "DistributedDataParallel: an earlier backward on this rank failed after it had "
                "started averaging gradients; the ranks are out of step (restart the job)")
        for b in self._buckets:
            b.ready.clear()
        object.__setattr__(self, "_next", 0)
        object.__setattr__(self, "_round", None)

    def _launch(self, b: int) -> None:
        bucket = self._buckets[b]
        bucket.fill()
        if self.deterministic:
            bucket.work = _group._Ordered(bucket.flat, _group.ReduceOp.SUM,
                                          "DistributedDataParallel (ordered)")
        else:
            MPI = _group._mpi()
            bucket.work = _group._state.comm.Iallreduce(MPI.IN_PLACE, bucket.flat, op=MPI.SUM)
        object.__setattr__(self, "_next", b + 1)

    def _finish(self) -> None:
        """The end of backward: start the buckets not started yet (a parameter that got no
        gradient counts as zero), wait for all, write the averages into .grad."""
        try:
            for b in range(self._next, len(self._buckets)):
                self._launch(b)
            for bucket in self._buckets:
                w = bucket.work
                if isinstance(w, _group._Ordered):
                    w.finish()
                else:
                    _group._wait(w, "DistributedDataParallel gradient all-reduce")
                bucket.work = None
                bucket.unpack(self._world)
        finally:
            for bucket in self._buckets:
                bucket.ready.clear()
            object.__setattr__(self, "_next", 0)
            object.__setattr__(self, "_round", None)

    def __del__(self) -> None:
        for h in self.__dict__.get("_handles", ()):
            h.remove()


def _describe(entry: Any) -> str:
    if entry is None:
        return "nothing"
    kind, name, shape, dtype = entry
    return f"{kind} {name!r} of shape {list(shape)} and dtype {dtype}"


@contextlib.contextmanager
def _no_grad() -> Iterator[None]:
    from graddesc.autograd import grad_mode

    with grad_mode.no_grad():
        yield
