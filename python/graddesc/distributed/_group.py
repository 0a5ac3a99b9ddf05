"""The process group (MPI's COMM_WORLD) and the collectives on Tensors.

mpi4py is imported on first use only: `import graddesc` and `import graddesc.distributed` work
without it. Every collective runs as a non-blocking MPI call on a duplicate of COMM_WORLD and is
waited for with a deadline (init_process_group's timeout), so a peer that stops answering ends
in an error (and, through the installed excepthook, MPI_Abort of the whole job) instead of a
hang. Tensors are handed to MPI through the buffer protocol of their NumPy arrays: no copies,
except where a signature takes a list of separate tensors (all_gather, reduce_scatter).
"""

from __future__ import annotations

import enum
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Optional

import numpy as np

from graddesc._tensor import Tensor

DEFAULT_TIMEOUT = 600.0  # seconds a collective may wait for its peers


class DistributedError(RuntimeError):
    """A collective failed: a peer did not answer in time, or the ranks passed tensors that do
    not match (the message names what differs)."""


class ReduceOp(enum.Enum):
    """How all_reduce / reduce_scatter combine the ranks' tensors. AVG is SUM divided by the
    world size (in the tensor's dtype; integer tensors are floor-divided)."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"


_OP_NAMES = {"sum": ReduceOp.SUM, "avg": ReduceOp.AVG, "mean": ReduceOp.AVG,
             "max": ReduceOp.MAX, "min": ReduceOp.MIN}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


class _State:
    comm: Any = None  # the duplicate of COMM_WORLD all collectives use
    rank = 0
    size = 1
    timeout = DEFAULT_TIMEOUT
    prev_excepthook: Any = None
    # shared memory (every rank on one node): two communicators over the same ranks, for the
    # "inputs ready" and "results ready" barriers of DistributedDataParallel, or False when the
    # ranks span several nodes; None until first asked
    node: Any = None
    windows: list = []  # MPI shared-memory windows, freed by destroy_process_group
    generation = 0  # how many process groups were destroyed


_state = _State()


def is_available() -> bool:
    """Whether mpi4py can be imported (pip install 'graddesc[distributed]')."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def _mpi() -> Any:
    # Open MPI's UCX one-sided component prints an error for every window it is asked about on
    # a machine without UCX devices; graddesc's windows are shared-memory ones (osc/sm). A
    # choice the user made (OMPI_MCA_osc) is kept. Must be set before MPI_Init.
    os.environ.setdefault("OMPI_MCA_osc", "^ucx")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("graddesc.distributed needs mpi4py and an MPI library: pip install "
                          "'graddesc[distributed]' (mpi4py and Open MPI wheels)") from e
    return MPI


def _check_init(where: str) -> Any:
    if _state.comm is None:
        raise RuntimeError(f"{where}: the default process group has not been initialized; call "
                           "graddesc.distributed.init_process_group(backend='mpi') first")
    return _state.comm


def init_process_group(backend: str = "mpi", *, timeout: Any = None,
                       abort_on_exception: bool = True, **kwargs: Any) -> None:
    """Joins the job's process group: rank and world size come from MPI (start the job with
    `mpiexec -n N python ...`; a plain `python ...` is a world of one).

    Args:
        backend: "mpi" (the only backend).
        timeout: how long a collective waits for the other ranks (seconds or a timedelta,
            default 600 s) before raising DistributedError.
        abort_on_exception: install a sys.excepthook that prints the traceback, then calls
            MPI_Abort, so an uncaught exception on one rank ends every rank at once instead of
            leaving them waiting in a collective.
        kwargs: PyTorch's init_method, world_size, rank, store: the MPI launcher decides
            these; a world_size or rank that differs from MPI's raises ValueError.
    """
    if backend != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi', got {backend!r}")
    if _state.comm is not None:
        raise RuntimeError("init_process_group: trying to initialize the default process group "
                           "twice!")
    unknown = set(kwargs) - {"init_method", "world_size", "rank", "store", "group_name"}
    if unknown:
        raise TypeError(f"init_process_group: unexpected keyword argument {sorted(unknown)[0]!r}")
    if timeout is None:
        seconds = DEFAULT_TIMEOUT
    elif isinstance(timeout, timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise TypeError(f"init_process_group: timeout must be seconds or a timedelta, got "
                        f"{type(timeout).__name__}")
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"init_process_group: timeout must be positive and finite, got "
                         f"{seconds}")
    MPI = _mpi()
    if not MPI.Is_initialized():
        MPI.Init_thread()
    world = MPI.COMM_WORLD
    for name, actual in (("world_size", world.Get_size()), ("rank", world.Get_rank())):
        want = kwargs.get(name)
        if want is not None and want != -1 and want != actual:
            raise ValueError(f"init_process_group: {name}={want} but MPI says {actual} (the "
                             f"launcher, mpiexec -n N, decides the ranks)")
    comm = world.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    _state.comm = comm
    _state.rank = comm.Get_rank()
    _state.size = comm.Get_size()
    _state.timeout = seconds
    if abort_on_exception and _state.prev_excepthook is None:
        _state.prev_excepthook = sys.excepthook
        sys.excepthook = _abort_hook


def _abort_hook(tp: Any, value: Any, tb: Any) -> None:
    prev = _state.prev_excepthook or sys.__excepthook__
    prev(tp, value, tb)
    comm = _state.comm
    if comm is None or _state.size == 1:
        return
    sys.stderr.write(f"graddesc.distributed: rank {_state.rank} of {_state.size} failed with "
                     f"{tp.__name__}; aborting every rank of the job (MPI_Abort)\n")
    sys.stderr.flush()
    comm.Abort(1)


def is_initialized() -> bool:
    return _state.comm is not None


def get_rank(group: Any = None) -> int:
    """This process's rank (0 .. world size - 1)."""
    _check_init("get_rank")
    return _state.rank


def get_world_size(group: Any = None) -> int:
    """The number of ranks in the job."""
    _check_init("get_world_size")
    return _state.size


def destroy_process_group(group: Any = None) -> None:
    """Leaves the process group: frees the communicators and the shared-memory windows of
    every DistributedDataParallel built in it (collective: every rank calls it; a rank that
    does not come within the group's timeout is a DistributedError), restores sys.excepthook.
    MPI itself is finalized when the process exits."""
    comm = _state.comm
    if comm is None:
        return
    if _state.windows:
        # MPI_Win_free waits for every rank of the node: first a barrier with the group's
        # timeout, so that a rank that never comes here is an error, not a hang
        _wait(_state.node[0].Ibarrier(), "destroy_process_group")
        for w in _state.windows:
            w.Unlock_all()
            w.Free()
    _state.windows = []
    if _state.node:
        for c in _state.node:
            c.Free()
    _state.node = None
    _state.generation += 1  # (a DistributedDataParallel of this group refuses to run)
    _state.comm = None
    _state.rank, _state.size = 0, 1
    if _state.prev_excepthook is not None:
        if sys.excepthook is _abort_hook:
            sys.excepthook = _state.prev_excepthook
        _state.prev_excepthook = None
    comm.Free()


def _shared_node() -> Any:
    """(ready, done): two communicators over all ranks when every rank runs on this node (MPI
    shared memory can join them), else None. Collective on first call."""
    if _state.node is None:
        comm = _state.comm
        MPI = _mpi()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=_state.rank)
        n = local.Get_size()
        whole = comm.allreduce(int(n == _state.size), op=MPI.MIN) == 1
        if whole:
            _state.node = (local, local.Dup())
        else:
            local.Free()
            _state.node = False
    return _state.node or None


def _shared_window(nbytes: int) -> tuple:
    """A shared-memory window over the node's ranks with nbytes on each: (window, [every
    rank's memory as a uint8 array, in rank order]). Collective. Freed by
    destroy_process_group; a passive-target epoch (Lock_all) is open for its whole life."""
    node = _shared_node()
    assert node is not None
    MPI = _mpi()
    win = MPI.Win.Allocate_shared(max(int(nbytes), 1), 1, comm=node[0])
    win.Lock_all()
    _state.windows.append(win)
    segs = []
    for q in range(_state.size):
        mem, _ = win.Shared_query(q)
        segs.append(np.frombuffer(mem, dtype=np.uint8, count=max(int(nbytes), 1)))
    return win, segs


def _wait(req: Any, what: str) -> None:
    """Waits for a request, at most the group's timeout. Polls with MPI_Test, which is also
    what drives a non-blocking collective forward in Open MPI (one step of its schedule per
    call): for 2 ms it polls without pause, as MPI_Wait would (a many-step reduction of a
    large buffer is not slowed by naps), then up to 1 s it yields the CPU between polls
    (sleep(0): a peer rank that shares the core can run), later it naps 1 ms."""
    test = req.Test
    for _ in range(64):
        if test():
            return
    start = time.perf_counter()
    deadline = start + _state.timeout
    while not test():
        now = time.perf_counter()
        if now - start < 2e-3:
            continue
        if now > deadline:
            raise DistributedError(
                f"{what}: rank {_state.rank} waited {_state.timeout:g} s for the other ranks "
                "(a rank died, hangs, or called a different collective)")
        time.sleep(0 if now - start < 1.0 else 1e-3)


def wait_all(reqs: Sequence[Any], what: str) -> None:
    for r in reqs:
        _wait(r, what)


def _op(op: Any, where: str) -> ReduceOp:
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str) and op.lower() in _OP_NAMES:
        return _OP_NAMES[op.lower()]
    raise ValueError(f"{where}: op must be a ReduceOp (SUM, AVG, MAX, MIN), got {op!r}")


def _mpi_op(op: ReduceOp) -> Any:
    MPI = _mpi()
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.MAX: MPI.MAX,
            ReduceOp.MIN: MPI.MIN}[op]


def _array(t: Any, name: str, where: str, writable: bool = True) -> np.ndarray:
    """t's array as MPI may read and write it in place: a C-contiguous float32/float64/int64
    tensor that does not require grad (or is used under no_grad)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{where}: {name} must be a graddesc Tensor, got {type(t).__name__}")
    a = t._data
    if a.dtype not in _DTYPES:
        raise TypeError(f"{where}: {name} must be float32, float64 or int64, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{where}: {name} must be contiguous (shape {tuple(a.shape)}, strides "
                         f"{a.strides}); call .contiguous() first")
    if writable and not a.flags.writeable:
        raise ValueError(f"{where}: {name} is read-only (an expanded or broadcast tensor); "
                         "clone() it first")
    return a


_DTYPE_CODE = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int64): 3}


def _check_same(where: str, *arrays: np.ndarray, extra: int = 0) -> None:
    """Raises DistributedError on every rank when the ranks' arrays differ in element count or
    dtype (or in `extra`, e.g. a src rank): one 8-number all-reduce, so that a mismatch is a
    clear error instead of a truncation error or a hang inside MPI."""
    comm = _state.comm
    if _state.size == 1:
        return
    sig = [extra]
    for a in arrays[:3]:
        sig += [a.size, _DTYPE_CODE[a.dtype]]
    mine = np.array(sig + [-v for v in sig], dtype=np.int64)
    both = np.empty_like(mine)
    req = comm.Iallreduce(mine, both, op=_mpi().MAX)
    _wait(req, where)
    n = len(sig)
    if not np.array_equal(both[:n], -both[n:]):
        hi, lo = both[:n], -both[n:]
        what = []
        names = ["argument"] + [f"tensor {i} element count" if j % 2 == 0 else f"tensor {i} "
                                "dtype" for i in range(len(arrays[:3])) for j in range(2)]
        for k in range(n):
            if hi[k] != lo[k]:
                what.append(f"{names[k]} ranges from {lo[k]} to {hi[k]}")
        raise DistributedError(f"{where}: the ranks passed tensors that do not match ("
                               + "; ".join(what) + f"); rank {_state.rank} passed "
                               + ", ".join(f"{a.size} elements of {a.dtype}" for a in arrays))


def _finish_avg(a: np.ndarray, size: int) -> None:
    if a.dtype.kind == "f":
        np.divide(a, a.dtype.type(size), out=a)
    else:
        np.floor_divide(a, size, out=a)


class Work:
    """What a collective called with async_op=True returns: wait() completes it (in place)."""

    def __init__(self, reqs: list, what: str, after: Any = None) -> None:
        self._reqs, self._what, self._after = reqs, what, after
        self._done = False

    def is_completed(self) -> bool:
        if not self._done and all(r.Test() for r in self._reqs):
            self._finish()
        return self._done

    def wait(self, timeout: Any = None) -> bool:
        if not self._done:
            wait_all(self._reqs, self._what)
            self._finish()
        return True

    def _finish(self) -> None:
        self._done = True
        if self._after is not None:
            self._after()
            self._after = None


def _bump(t: Tensor) -> None:
    t._vc[0] += 1


def all_reduce(tensor: Tensor, op: Any = ReduceOp.SUM, group: Any = None,
               async_op: bool = False) -> Optional[Work]:
    """Combines `tensor` across all ranks, in place on every rank (MPI_Iallreduce on its
    memory). The order in which MPI adds the ranks' values is MPI's: with 2 ranks it is one
    addition, so the same bits everywhere; for a fixed order with any number of ranks use
    all_reduce_ordered."""
    where = "all_reduce"
    comm = _check_init(where)
    o = _op(op, where)
    a = _array(tensor, "tensor", where)
    _check_same(where, a)
    req = comm.Iallreduce(_mpi().IN_PLACE, a, op=_mpi_op(o))

    def after() -> None:
        if o is ReduceOp.AVG:
            _finish_avg(a, _state.size)
        _bump(tensor)

    work = Work([req], where, after)
    if async_op:
        return work
    work.wait()
    return None


def _chunks(n: int, p: int) -> tuple:
    base, extra = divmod(n, p)
    counts = np.array([base + (r < extra) for r in range(p)], dtype=np.int64)
    displs = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    return counts, displs


class _Ordered:
    """all_reduce_ordered in two parts: an Ialltoallv hands rank r the r-th chunk of every
    rank's array; finish() combines those copies in rank order 0, 1, 2, ... and all-gathers the
    chunks. The result is the same bits on every rank and for every MPI algorithm."""

    def __init__(self, a: np.ndarray, op: ReduceOp, where: str) -> None:
        comm, p, r = _state.comm, _state.size, _state.rank
        self.a, self.op, self.where = a, op, where
        self.counts, self.displs = _chunks(a.size, p)
        mine = int(self.counts[r])
        self.recv = np.empty((p, mine), dtype=a.dtype)
        MPI = _mpi()
        t = MPI._typedict[a.dtype.char]
        flat = a.reshape(-1)
        self.req = comm.Ialltoallv(
            [flat, (self.counts, self.displs), t],
            [self.recv, ([mine] * p, [mine * k for k in range(p)]), t])

    def finish(self) -> None:
        _wait(self.req, self.where)
        recv = self.recv
        acc = recv[0]
        f = {ReduceOp.SUM: np.add, ReduceOp.AVG: np.add, ReduceOp.MAX: np.maximum,
             ReduceOp.MIN: np.minimum}[self.op]
        for k in range(1, recv.shape[0]):
            f(acc, recv[k], out=acc)
        if self.op is ReduceOp.AVG:
            _finish_avg(acc, recv.shape[0])
        MPI = _mpi()
        t = MPI._typedict[self.a.dtype.char]
        req = _state.comm.Iallgatherv([acc, t],
                                      [self.a.reshape(-1), (self.counts, self.displs), t])
        _wait(req, self.where)


def all_reduce_ordered(tensor: Tensor, op: Any = ReduceOp.SUM, group: Any = None) -> None:
    """all_reduce whose result is fixed by the ranks' values alone: element by element
    ((x0 + x1) + x2) + ... in rank order (then / world size for AVG), on every rank, whatever
    MPI's algorithms. Costs an all-to-all plus an all-gather: the bytes of a ring all-reduce,
    two latencies."""
    where = "all_reduce_ordered"
    _check_init(where)
    o = _op(op, where)
    a = _array(tensor, "tensor", where)
    _check_same(where, a)
    if _state.size == 1:
        if o is ReduceOp.AVG:
            _finish_avg(a, 1)
        return
    _Ordered(a, o, where).finish()
    _bump(tensor)


def broadcast(tensor: Tensor, src: int = 0, group: Any = None,
              async_op: bool = False) -> Optional[Work]:
    """Copies rank src's tensor into `tensor` on every other rank (in place)."""
    where = "broadcast"
    comm = _check_init(where)
    _check_rank(src, "src", where)
    a = _array(tensor, "tensor", where)
    _check_same(where, a, extra=src)
    req = comm.Ibcast(a, root=src)
    work = Work([req], where, lambda: _bump(tensor))
    if async_op:
        return work
    work.wait()
    return None


def _check_rank(r: Any, name: str, where: str) -> None:
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or \
            not 0 <= r < _state.size:
        raise ValueError(f"{where}: {name} must be a rank from 0 to {_state.size - 1}, got {r!r}")


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group: Any = None,
                           async_op: bool = False) -> Optional[Work]:
    """output_tensor (world size times input's elements) receives every rank's input_tensor
    in rank order, without copies."""
    where = "all_gather_into_tensor"
    comm = _check_init(where)
    out = _array(output_tensor, "output_tensor", where)
    inp = _array(input_tensor, "input_tensor", where, writable=False)
    if out.dtype != inp.dtype or out.size != inp.size * _state.size:
        raise ValueError(f"{where}: output_tensor must have world size ({_state.size}) x "
                         f"{inp.size} elements of {inp.dtype}, got {out.size} of {out.dtype}")
    _check_same(where, inp)
    req = comm.Iallgather(inp, out)
    work = Work([req], where, lambda: _bump(output_tensor))
    if async_op:
        return work
    work.wait()
    return None


def all_gather(tensor_list: list, tensor: Tensor, group: Any = None,
               async_op: bool = False) -> Optional[Work]:
    """tensor_list[r] receives rank r's `tensor` (tensor_list: world-size tensors shaped like
    it). MPI gathers into one buffer, which is then copied into the list; all_gather_into_tensor
    avoids that copy."""
    where = "all_gather"
    _check_init(where)
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != _state.size:
        raise ValueError(f"{where}: tensor_list must be a list of world size ({_state.size}) "
                         f"tensors, got {_len_or_type(tensor_list)}")
    inp = _array(tensor, "tensor", where, writable=False)
    outs = []
    for i, t in enumerate(tensor_list):
        a = _array(t, f"tensor_list[{i}]", where)
        if a.shape != inp.shape or a.dtype != inp.dtype:
            raise ValueError(f"{where}: tensor_list[{i}] must have tensor's shape "
                             f"{tuple(inp.shape)} and dtype {inp.dtype}, got {tuple(a.shape)} "
                             f"{a.dtype}")
        outs.append(a)
    buf = np.empty((_state.size,) + inp.shape, dtype=inp.dtype)
    work = all_gather_into_tensor(Tensor._make(buf), tensor, async_op=True)

    def after() -> None:
        for t, a, b in zip(tensor_list, outs, buf):
            np.copyto(a, b)
            _bump(t)

    assert work is not None
    work._after = after
    if async_op:
        return work
    work.wait()
    return None


def _len_or_type(x: Any) -> str:
    return f"{len(x)}" if isinstance(x, (list, tuple)) else type(x).__name__


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: Any = ReduceOp.SUM,  # noqa: A002
                          group: Any = None, async_op: bool = False) -> Optional[Work]:
    """Combines the ranks' `input` (world size times output's elements) and leaves chunk r of
    the result in rank r's `output`, without copies (MPI_Ireduce_scatter_block)."""
    where = "reduce_scatter_tensor"
    comm = _check_init(where)
    o = _op(op, where)
    out = _array(output, "output", where)
    inp = _array(input, "input", where, writable=False)
    if out.dtype != inp.dtype or inp.size != out.size * _state.size:
        raise ValueError(f"{where}: input must have world size ({_state.size}) x {out.size} "
                         f"elements of {out.dtype}, got {inp.size} of {inp.dtype}")
    _check_same(where, inp)
    req = comm.Ireduce_scatter_block(inp, out, op=_mpi_op(o))

    def after() -> None:
        if o is ReduceOp.AVG:
            _finish_avg(out, _state.size)
        _bump(output)

    work = Work([req], where, after)
    if async_op:
        return work
    work.wait()
    return None


def reduce_scatter(output: Tensor, input_list: list, op: Any = ReduceOp.SUM,
                   group: Any = None, async_op: bool = False) -> Optional[Work]:
    """Rank r's `output` receives the combination over ranks of their input_list[r]
    (input_list: world-size tensors shaped like output). The list is copied into one buffer
    for MPI; reduce_scatter_tensor avoids that copy."""
    where = "reduce_scatter"
    _check_init(where)
    if not isinstance(input_list, (list, tuple)) or len(input_list) != _state.size:
        raise ValueError(f"{where}: input_list must be a list of world size ({_state.size}) "
                         f"tensors, got {_len_or_type(input_list)}")
    out = _array(output, "output", where)
    arrs = []
    for i, t in enumerate(input_list):
        a = _array(t, f"input_list[{i}]", where, writable=False)
        if a.shape != out.shape or a.dtype != out.dtype:
            raise ValueError(f"{where}: input_list[{i}] must have output's shape "
                             f"{tuple(out.shape)} and dtype {out.dtype}, got {tuple(a.shape)} "
                             f"{a.dtype}")
        arrs.append(a)
    buf = np.stack(arrs) if arrs else np.empty((0,), dtype=out.dtype)
    return reduce_scatter_tensor(output, Tensor._make(buf), op, async_op=async_op)


def barrier(group: Any = None) -> None:
    """Returns once every rank has called barrier (with the group's timeout)."""
    comm = _check_init("barrier")
    _wait(comm.Ibarrier(), "barrier")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank src's picklable object on every rank (small objects: settings, a seed)."""
    comm = _check_init("broadcast_object")
    _check_rank(src, "src", "broadcast_object")
    return comm.bcast(obj, root=src)


def all_gather_object(obj: Any) -> list:
    """Every rank's picklable object, in rank order, on every rank."""
    comm = _check_init("all_gather_object")
    return comm.allgather(obj)


def save_checkpoint(obj: Any, path: Any, src: int = 0) -> None:
    """Rank src (default 0) writes obj with graddesc.save (a temporary file in the same folder,
    then os.replace: a reader never sees half a file); every rank returns once it is written.
    A world of one (no process group) just saves."""
    from graddesc.serialization import save

    if _state.comm is None or _state.size == 1:
        save(obj, path)
        return
    err = None
    if _state.rank == src:
        try:
            save(obj, os.fspath(path))
        except Exception as e:  # tell the others, then raise here too
            err = f"{type(e).__name__}: {e}"
    err = broadcast_object(err, src)
    if err is not None:
        raise DistributedError(f"save_checkpoint: rank {src} could not write {path}: {err}")
