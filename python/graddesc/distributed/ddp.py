"""DistributedDataParallel: one model replica per rank, gradients averaged during backward."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor
from graddesc.autograd import engine
from graddesc.distributed import _group
from graddesc.distributed._group import DistributedError
from graddesc.nn.module import Module

_ALIGN = 64  # bytes: each bucket's region starts on a cache line


def _scale(src: np.ndarray, world: int, out: np.ndarray) -> None:
    """out = src / world. For a power of two a multiplication by its reciprocal: the same
    bits (both round the same real number), and faster than a division."""
    if world & (world - 1) == 0:
        np.multiply(src, src.dtype.type(1.0 / world), out=out)
    else:
        np.divide(src, src.dtype.type(world), out=out)


# Shared memory: up to this many ranks, each rank adds every rank's whole bucket itself (one
# barrier per bucket); beyond, each rank adds one chunk and the ranks copy each other's chunks
# (two barriers, but the bytes each rank reads do not grow with the number of ranks).
_DIRECT_MAX_WORLD = 2


class _Bucket:
    """Gradients of a few parameters reduced together. `flat` (this rank's private memory)
    holds the gradients one after another, then one "had a gradient" count per parameter (1 or
    0 on each rank): a parameter no rank produced a gradient for keeps .grad None, as on one
    process. After a reduction each parameter's .grad is a view of its part of `flat` (the
    Tensor in `views`), so no copy out is needed.

    Where a rank writes its gradients before the reduction (`dest`): `flat` itself for MPI's
    all-reduce (in place). With shared memory, this rank's segment of an input region of the
    shared window (`ins[parity]`: one array per rank) that every rank reads after the barrier:
      direct (2 ranks): every rank averages all ranks' whole buckets into its own flat
        (_core.average_ranks: one pass), then nothing else; two input regions used in turns
        (parity = the round's number mod 2), so a rank writing round t + 1's gradients never
        overwrites what a slower rank may still be reading of round t (it reads them before
        it enters round t + 1's barrier, which the writer has passed);
      chunked (more ranks): rank r averages chunk r of all ranks' buckets into its flat and its
        segment of the output region (`outs`), and after a second barrier copies the other
        ranks' chunks from theirs. One input region: a rank writes the next round's inputs
        only after the second barrier, when every rank has read them."""

    def __init__(self, params: list, flat: np.ndarray) -> None:
        self.params = params
        self.sizes = [p._data.size for p in params]
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        self.total = int(sum(self.sizes))
        self.flat = flat  # total + len(params) elements
        self.views = [Tensor._make(flat[o:o + n].reshape(p._data.shape))
                      for p, o, n in zip(params, self.offsets, self.sizes)]
        self.dest = flat
        self.ins: list = []  # [parity][rank]
        self.outs: list = []  # [rank] (chunked)
        self.bounds: list = []
        self.filled = [False] * len(params)
        self.nready = 0
        self.work: Any = None  # an MPI request, or an _Ordered in flight
        self.stage = 0  # shared memory: 1 inputs-ready barrier, 2 results-ready barrier

    def put(self, k: int, p: Tensor) -> None:
        """Writes p's gradient (or zeros when it has none) and its count where the reduction
        reads them."""
        dest = self.dest
        off, n = self.offsets[k], self.sizes[k]
        g = p.grad  # (the property: a lazily stored gradient of gd.compile is stored now)
        if g is None:
            dest[off:off + n] = 0
            dest[self.total + k] = 0
        else:
            if g is not self.views[k] or dest is not self.flat:  # (else it is there already)
                np.copyto(dest[off:off + n], g._data.reshape(-1))
            dest[self.total + k] = 1
        self.filled[k] = True

    def fill_rest(self) -> None:
        for k, p in enumerate(self.params):
            if not self.filled[k]:
                self.put(k, p)

    def average(self, parity: int) -> None:
        """Direct: flat = every rank's bucket summed in rank order, / world size (one pass)."""
        _core.average_ranks(self.flat, self.ins[parity])

    def reduce_chunk(self, rank: int) -> None:
        """Chunked: this rank's chunk of the sum over ranks, added in rank order and divided by
        the world size, into its flat and its segment of the output region (one pass)."""
        lo, hi = self.bounds[rank], self.bounds[rank + 1]
        _core.average_ranks(self.outs[rank][lo:hi], [a[lo:hi] for a in self.ins[0]],
                            self.flat[lo:hi])

    def gather(self, rank: int) -> None:
        """Chunked: the other ranks' chunks of the average into flat."""
        b = self.bounds
        for q, out in enumerate(self.outs):
            if q != rank:
                np.copyto(self.flat[b[q]:b[q + 1]], out[b[q]:b[q + 1]])

    def set_grads(self) -> None:
        """flat holds the averages (and counts / world size): each .grad becomes its view."""
        flat, total = self.flat, self.total
        for k, p in enumerate(self.params):
            if flat[total + k] == 0:  # no rank had a gradient for it
                continue
            v = self.views[k]
            v._vc[0] += 1
            if p._grad is not v:
                p._grad = v

    def reset(self) -> None:
        self.filled = [False] * len(self.params)
        self.nready = 0
        self.stage = 0


class DistributedDataParallel(Module):
    """Wraps `module` for data-parallel training: every rank runs the same model on its own
    shard of the global batch and backward leaves the same averaged gradient on every rank.

    At construction the ranks check that their parameters have the same names, shapes and
    dtypes and that they pass the same settings (a clear ValueError on every rank otherwise)
    and rank 0's parameters and buffers are broadcast to all. Gradients are grouped into
    buckets of about bucket_cap_mb megabytes (default 25, PyTorch's: a model with up to 25 MB
    of gradients has one bucket, one barrier per step), in reverse parameter order (the order
    backward produces them); each gradient is copied into its bucket as soon as backward has
    accumulated it, a bucket's reduction starts (non-blocking) once all of its gradients are
    there, buckets start in the same order on every rank, and the end of backward waits for
    all of them. Then each .grad is a view of the averaged bucket (PyTorch's
    gradient_as_bucket_view): any optimizer reads averaged gradients, and a .grad kept from an
    earlier step is overwritten by the next average (as in PyTorch with that option).

    shared_memory: None (default) reduces through MPI shared-memory windows when every rank
    runs on one node (MPI_Win_allocate_shared; with 2 ranks each rank averages both ranks'
    buckets into its own in one pass after one barrier per bucket; with more, each rank
    averages one chunk of every rank's gradients in rank order 0, 1, 2, ... and the ranks copy
    each other's chunks after a second barrier), otherwise with MPI_Iallreduce; False always uses
    MPI_Iallreduce; True requires one node. The shared-memory reduction is deterministic for
    any number of ranks. deterministic=True without shared memory reduces with
    all_reduce_ordered (the sum in rank order whatever MPI does, at the cost of an all-to-all
    and an all-gather per bucket). With 2 ranks every mode gives the same bits (one addition
    is commutative).

    no_sync(): a context in which backward only accumulates locally (gradient accumulation);
    the first backward after it averages the accumulated gradients.

    gd.compile: a compiled step containing this backward cannot replay the reduction, so its
    recording falls back to eager execution with one warning (correct, not faster).
    graddesc.fit(compile=True) instead replays forward + backward locally and then calls
    synchronize_gradients() before the optimizer step.
    """

    def __init__(self, module: Module, *, bucket_cap_mb: float = 25.0,
                 deterministic: bool = False, shared_memory: Optional[bool] = None,
                 broadcast_buffers: bool = True, device_ids: Any = None,
                 output_device: Any = None, **kwargs: Any) -> None:
        super().__init__()
        where = "DistributedDataParallel"
        if not isinstance(module, Module):
            raise TypeError(f"{where}: module must be a graddesc.nn.Module, got "
                            f"{type(module).__name__}")
        if not (isinstance(bucket_cap_mb, (int, float)) and not isinstance(bucket_cap_mb, bool)
                and bucket_cap_mb > 0):
            raise ValueError(f"{where}: bucket_cap_mb must be a positive number, got "
                             f"{bucket_cap_mb!r}")
        if shared_memory not in (None, True, False):
            raise ValueError(f"{where}: shared_memory must be None (automatic), True or False, "
                             f"got {shared_memory!r}")
        _group._check_init(where)
        self.module = module
        object.__setattr__(self, "require_backward_grad_sync", True)
        object.__setattr__(self, "deterministic", bool(deterministic))
        object.__setattr__(self, "_in_compiled_step", False)
        world = _group.get_world_size()
        object.__setattr__(self, "_world", world)
        object.__setattr__(self, "_generation", _group._state.generation)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        settings = (f"bucket_cap_mb={float(bucket_cap_mb)!r}, deterministic={bool(deterministic)}"
                    f", shared_memory={shared_memory}")
        self._check_same_parameters(named, list(module.named_buffers()), settings)
        with _no_grad():
            for _, p in named:
                _group.broadcast(p, 0)
            if broadcast_buffers:
                for _, b in module.named_buffers():
                    if b._data.dtype in _group._DTYPES and b._data.flags.c_contiguous:
                        _group.broadcast(b, 0)
        cap = float(bucket_cap_mb) * 2 ** 20
        groups: list = []
        current: list = []
        size = 0
        for _, p in reversed(named):
            nbytes = p._data.nbytes
            if current and (size + nbytes > cap or p._data.dtype != current[0]._data.dtype):
                groups.append(current)
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            groups.append(current)
        # one private buffer for every bucket (each on its own cache line)
        starts, nbytes_total = [], 0
        for g in groups:
            starts.append(nbytes_total)
            n = sum(p._data.size for p in g) + len(g)
            nbytes_total += -(-n * g[0]._data.itemsize // _ALIGN) * _ALIGN
        memory = np.empty(nbytes_total, dtype=np.uint8)

        def region(mem: np.ndarray, g: list, start: int) -> np.ndarray:
            dt = g[0]._data.dtype
            n = sum(p._data.size for p in g) + len(g)
            return mem[start:start + n * dt.itemsize].view(dt)

        buckets = [_Bucket(g, region(memory, g, st)) for g, st in zip(groups, starts)]
        shared = None
        if world > 1 and shared_memory is not False:
            shared = _group._shared_node()
            if shared is None and shared_memory:
                raise ValueError(f"{where}: shared_memory=True but the ranks do not all run on "
                                 "one node (MPI cannot share memory between them)")
        if shared is not None:
            # one window, 2 x the gradient's bytes per rank: two input regions used in turns
            # (direct), or the input and the output region (chunked)
            win, segs = _group._shared_window(2 * nbytes_total)
            rank = _group.get_rank()
            direct = world <= _DIRECT_MAX_WORLD
            for bucket, g, st in zip(buckets, groups, starts):
                first = [region(m, g, st) for m in segs]
                second = [region(m, g, nbytes_total + st) for m in segs]
                if direct:
                    bucket.ins = [first, second]
                else:
                    bucket.ins = [first]
                    bucket.outs = second
                bucket.dest = first[rank]
                n = bucket.flat.size
                bucket.bounds = [n * q // world for q in range(world + 1)]
            object.__setattr__(self, "_shm", (shared, win, rank, direct))
        else:
            object.__setattr__(self, "_shm", None)
        object.__setattr__(self, "_parity", 0)  # direct: which input region this round uses
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
    def _check_same_parameters(self, named: list, buffers: list, settings: str) -> None:
        mine = [("parameter", n, tuple(p._data.shape), str(p._data.dtype)) for n, p in named]
        mine += [("buffer", n, tuple(b._data.shape), str(b._data.dtype)) for n, b in buffers]
        mine.append(("settings", settings, (), ""))
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
                "must build the same model with the same settings")

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
        self._check_group()
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
            self._check_group()
            self._abandon_check()
            object.__setattr__(self, "_round", current)
            engine.queue_callback(self._finish)
        b, k = self._where[id(p)]
        bucket = self._buckets[b]
        if not bucket.filled[k]:
            bucket.nready += 1
        bucket.put(k, p)  # (now, while the gradient is in cache)
        if bucket.nready == len(bucket.params) and b == self._next:
            buckets = self._buckets
            while self._next < len(buckets) and \
                    buckets[self._next].nready == len(buckets[self._next].params):
                self._launch(self._next)
        if self._shm is not None:
            if self._next > 0:
                self._progress(block=False)
            return
        for bk in self._buckets[:self._next]:  # drive MPI's progress of those in flight
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
        shm = self._shm
        for b in self._buckets:
            b.reset()
            if shm is not None:
                b.dest = b.ins[self._parity][shm[2]]
        object.__setattr__(self, "_next", 0)
        object.__setattr__(self, "_round", None)

    def _check_group(self) -> None:
        """(Before any write into the shared windows, which destroy_process_group frees.)"""
        if _group._state.comm is None or _group._state.generation != self._generation:
            raise RuntimeError("DistributedDataParallel: the process group was destroyed "
                               "(destroy_process_group); this model cannot average gradients")

    def _launch(self, b: int) -> None:
        self._check_group()
        bucket = self._buckets[b]
        bucket.fill_rest()
        if self._shm is not None:  # "my inputs are written": then every rank reads them
            (ready, _), win, _, _ = self._shm
            win.Sync()
            bucket.work = ready.Ibarrier()
            bucket.stage = 1
        elif self.deterministic:
            bucket.work = _group._Ordered(bucket.flat, _group.ReduceOp.SUM,
                                          "DistributedDataParallel (ordered)")
        else:
            MPI = _group._mpi()
            bucket.work = _group._state.comm.Iallreduce(MPI.IN_PLACE, bucket.flat, op=MPI.SUM)
        object.__setattr__(self, "_next", b + 1)

    def _progress(self, block: bool) -> None:
        """Shared memory: moves the started buckets on. Stage 1 (inputs-ready barrier) done:
        direct, average every rank's bucket into flat (done); chunked, average this rank's
        chunk and start stage 2 (results-ready barrier), whose end lets it copy the other
        ranks' chunks. Barriers of each kind start in bucket order on every rank (two
        communicators, so the kinds never pair up wrongly)."""
        (_, done), win, rank, direct = self._shm
        what = "DistributedDataParallel gradient reduction (shared memory)"
        started = self._buckets[:self._next]
        for bucket in started:
            if bucket.stage != 1:
                continue
            if block:
                _group._wait(bucket.work, what)
            elif not bucket.work.Test():
                break
            win.Sync()  # (the other ranks' inputs, visible after the barrier)
            if direct:
                bucket.average(self._parity)
                bucket.work = None
                bucket.stage = 3
                continue
            bucket.reduce_chunk(rank)
            win.Sync()
            bucket.work = done.Ibarrier()
            bucket.stage = 2
        if direct:
            return
        for bucket in started:
            if bucket.stage != 2:
                continue
            if block:
                _group._wait(bucket.work, what)
            elif not bucket.work.Test():
                continue
            win.Sync()
            bucket.gather(rank)
            bucket.work = None
            bucket.stage = 3

    def _finish(self) -> None:
        """The end of backward: start the buckets not started yet (a parameter that got no
        gradient counts as zero), wait for all, make each .grad the average."""
        try:
            for b in range(self._next, len(self._buckets)):
                self._launch(b)
            if self._shm is not None:
                self._progress(block=True)
                if self._shm[3]:  # (direct: the other input region next round)
                    object.__setattr__(self, "_parity", 1 - self._parity)
            else:
                world = self._world
                for bucket in self._buckets:
                    w = bucket.work
                    if isinstance(w, _group._Ordered):
                        w.finish()
                    else:
                        _group._wait(w, "DistributedDataParallel gradient all-reduce")
                    bucket.work = None
                    _scale(bucket.flat, world, bucket.flat)
            for bucket in self._buckets:
                bucket.set_grads()
        finally:
            for bucket in self._buckets:
                if bucket.work is None:
                    bucket.reset()
            if all(bucket.work is None for bucket in self._buckets):
                object.__setattr__(self, "_next", 0)
                object.__setattr__(self, "_round", None)

    def __del__(self) -> None:
        for h in self.__dict__.get("_handles", ()):
            h.remove()


def _describe(entry: Any) -> str:
    if entry is None:
        return "nothing"
    kind, name, shape, dtype = entry
    if kind == "settings":
        return f"the settings {name}"
    return f"{kind} {name!r} of shape {list(shape)} and dtype {dtype}"


@contextlib.contextmanager
def _no_grad() -> Iterator[None]:
    from graddesc.autograd import grad_mode

    with grad_mode.no_grad():
        yield
