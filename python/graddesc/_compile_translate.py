"""gd.compile's translation: a recording (_compile_record.py) into `_core.Program` instructions.

`_translate` walks the recorded kernel calls in order and adds one instruction per call (or
none: a view, a shape-only constant), with raw pointers into the recorded arrays. `_Buffers`
knows which memory the program may read (the inputs' copies, parameters, optimizer state, and
whatever a recorded kernel wrote); an operand anywhere else makes the step uncapturable
(`_UncapturableError`, and the step runs eagerly). The built-in instructions' layouts are listed
at the top of src/cpp/program.cpp; a registered kind's at the top of the binding file that
registers it (its `_args` twin lays out the instruction and lists the memory it reads).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc import _core
from graddesc._compile_record import (
    _ACTS,
    _OPTIM_KERNELS,
    _RECORD_ARGS,
    _SIGS,
    _addr,
    _Recording,
)
from graddesc.functional import conv as _conv


class _UncapturableError(Exception):
    pass

class _Buffers:
    """Memory the program may read: [start, end) ranges of arrays kept alive by the entry."""

    def __init__(self) -> None:
        self.ranges: list = []
        self.keep: dict = {}  # id -> array, each array once (FastReplay counts references)
        self.cover: dict = {}  # id(array) -> (array, which elements recorded kernels wrote)

    def add(self, a: Any) -> None:
        if isinstance(a, np.ndarray) and a.size:
            self.ranges.append((_addr(a), _addr(a) + a.nbytes))
            self.keep[id(a)] = a

    def written(self, view: Any) -> None:
        """A recorded kernel wrote every element of `view`. Once recorded kernels have written
        every element of the C-contiguous array it is a view of (cat's result, written slice by
        slice), that whole array is known memory."""
        root = view
        while isinstance(root.base, np.ndarray):
            root = root.base
        item = view.itemsize
        if root is view or not root.flags.c_contiguous or root.dtype != view.dtype or \
                any(st % item for st in view.strides):
            return
        mask = self.cover.get(id(root))
        if mask is None or mask[0] is not root:
            mask = self.cover[id(root)] = (root, np.zeros(root.size, dtype=bool))
        flat = mask[1][(_addr(view) - _addr(root)) // item:]
        np.lib.stride_tricks.as_strided(
            flat, view.shape, [st // item for st in view.strides], writeable=True)[...] = True
        if mask[1].all():
            self.add(root)
            del self.cover[id(root)]

    def forget(self, a: np.ndarray) -> None:
        """Drops every kept array inside a's memory (the program no longer points there)."""
        lo, hi = _addr(a), _addr(a) + a.nbytes
        self.keep = {i: k for i, k in self.keep.items() if not (lo <= _addr(k) < hi)}
        self.ranges = [(s, e) for s, e in self.ranges if not (lo <= s < hi)]

    def check_span(self, lo: int, nbytes: int, what: str) -> None:
        """[lo, lo + nbytes) (a strided operand's memory) must lie inside known memory."""
        if not any(s <= lo and lo + nbytes <= e for s, e in self.ranges):
            raise _UncapturableError(f"{what} comes from a computation outside the recorded "
                                     "kernels (a NumPy op or a tensor that is not an argument "
                                     "of the step)")

    def ptr(self, a: Any, what: str) -> int:
        """The address of a C-contiguous array lying inside known memory (else uncapturable)."""
        if a is None:
            return 0
        if not isinstance(a, np.ndarray):
            raise _UncapturableError(f"{what} is not an array")
        if a.size == 0:
            return _addr(a)
        if not a.flags.c_contiguous:
            raise _UncapturableError(f"{what} is not contiguous")
        lo, hi = _addr(a), _addr(a) + a.nbytes
        for s, e in self.ranges:
            if s <= lo and hi <= e:
                self.keep[id(a)] = a
                return lo
        raise _UncapturableError(f"{what} comes from a computation outside the recorded kernels "
                            "(a NumPy op or a tensor that is not an argument of the step)")


def _bind(name: str, args: tuple, kwargs: dict) -> dict:
    names, defaults = _SIGS[name]
    out = dict(defaults)
    out.update(zip(names, args))
    out.update(kwargs)
    return out


def _act(a: dict) -> tuple:
    """(kernel id, alpha) of a recorded activation call: alpha None means its default."""
    act, default = _ACTS[a["name"]]
    return act, float(default if a["alpha"] is None else a["alpha"])


_EW_MUL, _EW_ADD, _EW_SUB = (_core.EW_OPS[k] for k in ("mul", "add", "sub"))


def _arrays_in(x: Any) -> list:
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _arrays_in(v)]
    if isinstance(x, dict):
        return [a for v in x.values() for a in _arrays_in(v)]
    return []


def _plain_updates(rec: _Recording, returned: list) -> dict:
    """Hand-written plain SGD updates among the recorded calls: `t = g * c` (or c * g) right
    before `p -= t` or `p += t` in place (`p -= lr * p.grad`, `p.add_(g, alpha=-lr)`), with p a
    parameter no optimizer updates, g of p's shape and dtype, t read by nothing else. Each
    becomes one sgd instruction with lr = c (-c for +=): the kernel computes p - T(lr) g with the
    product rounded first, the very operations of the pair, and the passes may fuse it with the
    layer's backward like an optimizer's update. Returns {index of the write: (index of the
    product, p, g, lr)}."""
    owned = {_addr(p._data) for group, _ in rec.hypers for p in group["params"]}
    params = {id(t._data) for t in rec.params.values()}
    found: dict = {}
    calls = rec.calls
    for i in range(len(calls) - 1):
        name, args, kwargs, tmp = calls[i]
        nxt = calls[i + 1]
        if name != "elementwise" or nxt[0] != "elementwise":
            continue
        a, b = _bind(name, args, kwargs), _bind("elementwise", nxt[1], nxt[2])
        if a["op"] != _EW_MUL or a["c"] is not None or a["out"] is not None:
            continue
        g, c = (a["a"], a["b"]) if isinstance(a["a"], np.ndarray) else (a["b"], a["a"])
        p = b["a"]
        if type(c) not in (float, int) or not isinstance(g, np.ndarray) or \
                b["op"] not in (_EW_SUB, _EW_ADD) or b["b"] is not tmp or \
                b["c"] is not None or b["out"] is not p or id(p) not in params or \
                _addr(p) in owned or g.shape != p.shape or g.dtype != p.dtype or \
                not (p.flags.c_contiguous and g.flags.c_contiguous) or p.size == 0:
            continue
        later = [x for call in calls[i + 2:] for x in _arrays_in((call[1], call[2], call[3]))]
        if any(np.may_share_memory(x, tmp) for x in later + list(returned)):
            continue
        found[i + 1] = (i, p, g, float(c) if b["op"] == _EW_SUB else -float(c))
    return found


def _translate(rec: _Recording, inputs: list, prog: Any, bufs: _Buffers,
               returned: tuple = ()) -> set:
    """Turns the recorded calls into program instructions on the recorded buffers. Returns the
    addresses of the parameters whose hand-written updates became sgd instructions (no param
    group owns their learning rate)."""
    for a in inputs:
        bufs.add(a)
    for t in list(rec.params.values()) + list(rec.frozen.values()) + \
            list(rec.readonly.values()):
        bufs.add(t._data)
    for s in rec.states.values():  # generators' stream states, advanced by each replay
        bufs.add(s)
    for d, _, _ in rec.draws:  # draws from a generator's PCG64 stream, refilled by each replay
        bufs.add(d)
    for c in rec.constants.values():  # shape-only constants (gradient seeds, 1/n): kept as is
        bufs.add(c)
    for _, g in rec.persistent.values():  # gradients the step zeroes and accumulates into
        bufs.add(g._data)
    plain = _plain_updates(rec, [t for t in returned if isinstance(t, np.ndarray)])
    products = {i for i, _, _, _ in plain.values()}
    for index, (name, args, kwargs, out) in enumerate(rec.calls):
        if index in products:
            continue  # (its product is formed by the update's instruction)
        if index in plain:
            _, p, g, lr = plain[index]
            prog.add("sgd", p.dtype == np.float64, [], [p.size], [lr, 0.0, 0.0, 0.0, 0.0, 0.0],
                     [[bufs.ptr(p, "a parameter")], [bufs.ptr(g, "a gradient")], []])
            continue
        if name in _RECORD_ARGS:
            ptrs, ints, reals, f64, reads = getattr(_core, _RECORD_ARGS[name])(
                *args, result=out, **kwargs)
            for lo, nbytes in reads:
                bufs.check_span(lo, nbytes, f"{name}: an operand")
            for o in (out if isinstance(out, tuple) else (out,)):  # (cross_entropy: a pair)
                bufs.add(o)
                if isinstance(o, np.ndarray) and isinstance(o.base, np.ndarray):
                    bufs.written(o)  # (a slice of a batched product's result, say)
            prog.add("call", f64, ptrs, ints, reals)
            continue
        a = _bind(name, args, kwargs)
        if name == "elementwise" and a["out"] is not None:
            # an `out` the kernel also reads (an in-place op) must be known memory already:
            # checked below, before its write makes it known (gemm, a registered kind, reports
            # an out it reads with beta != 0 among its reads)
            pass
        elif name not in _OPTIM_KERNELS:  # arrays a call returns are memory it writes
            for o in (out if isinstance(out, (tuple, list)) else (out,)):
                bufs.add(o)

        def P(x: Any, what: str, name: str = name) -> int:
            return bufs.ptr(x, f"{name}: {what}")

        if name == "linear_forward":
            x, W = a["x"], a["weight"]
            B = x.shape[0] if x.ndim == 2 else 1
            ptrs = [P(out, "y"), P(x, "x"), P(W, "weight"), P(a["bias"], "bias")]
            prog.add("linear_fwd", W.dtype == np.float64, ptrs, [B, x.shape[-1], W.shape[0]], [])
        elif name == "linear_backward":
            x, W = a["x"], a["weight"]
            B = x.shape[0] if x.ndim == 2 else 1
            dx, dW, db = out
            ptrs = [P(dx, "dx"), P(dW, "dW"), P(db, "db"), P(a["dy"], "dy"), P(x, "x"),
                    P(W, "weight")]
            prog.add("linear_bwd", W.dtype == np.float64, ptrs, [B, x.shape[-1], W.shape[0]],
                     [])
        elif name == "activation_forward":
            x = a["x"]
            act, alpha = _act(a)
            prog.add("act_fwd", x.dtype == np.float64, [P(out, "y"), P(x, "x")],
                     [act, x.size], [alpha])
        elif name == "activation_backward":
            dy = a["dy"]
            act, alpha = _act(a)
            prog.add("act_bwd", dy.dtype == np.float64,
                     [P(out, "dx"), P(dy, "dy"), P(a["x"], "x"), P(a["y"], "y")],
                     [act, dy.size], [alpha])
        elif name == "copy_array":
            x = a["x"]
            prog.add("copy", False, [P(out, "copy"), P(x, "x")], [x.nbytes], [])
        elif name == "clip_norm":
            grads = list(a["grads"])
            prog.add("clip_norm", grads[0].dtype == np.float64, [P(out, "norm")],
                     [g.size for g in grads], [float(a["norm_type"]), float(a["max_norm"])],
                     [[P(g, f"grads[{k}]") for k, g in enumerate(grads)]])
        elif name in _conv.CAPTURE_SIGS:
            f64, arrays, ints = _conv.capture_instruction(name, a, out)
            prog.add("conv", f64, [P(x, what) for x, what in arrays], ints, [])
        elif name == "elementwise":
            # one generic instruction for the whole family: the binding itself lays out its
            # checked operands (pointers, shape, strides, scalars), so a new op needs nothing here
            ptrs, ints, reals, f64, spans = _core.elementwise_args(a["op"], a["a"], a["b"],
                                                                   a["c"], out)
            for k, (lo, nbytes) in enumerate(spans):
                if k == 0 and a["out"] is not None:
                    continue  # written, not read (an in-place op's out is also an input)
                bufs.check_span(lo, nbytes, f"elementwise: operand {k}")  # (kept alive there)
            prog.add("ew", f64, ptrs, ints, reals)
            if a["out"] is not None:
                bufs.add(out)
                bufs.written(out)
        elif name == "sgd_step":
            lr = a["lr"]
            params, grads = list(a["params"]), list(a["grads"])
            moms = list(out) if out is not None else []
            for m in moms:
                bufs.add(m)  # optimizer state lives as long as the optimizer
            f64 = params[0].dtype == np.float64 if params else False
            lists = [[P(p, f"params[{k}]") for k, p in enumerate(params)],
                     [P(g, f"grads[{k}]") for k, g in enumerate(grads)],
                     [P(m, f"momentum_buffers[{k}]") for k, m in enumerate(moms)]]
            ptrs: list = []
            if isinstance(lr, np.ndarray):
                # a diagonal (N,) or matrix (N, N) learning rate: the optimizer's converted copy,
                # read once per lr object (by eager too); the matrix update writes its direction
                # into the `direction` scratch the optimizer passes, then p -= lr @ direction
                bufs.add(lr)
                offsets = [int(o) for o in np.cumsum([0] + [p.size for p in params])[:-1]]

                def at(arr: np.ndarray, what: str, offsets: list = offsets) -> list:
                    return [P(arr, what) + o * arr.itemsize for o in offsets]

                if lr.ndim == 1:
                    lists.append(at(lr, "lr"))
                else:
                    d = a["direction"]
                    if d is None:
                        raise _UncapturableError("sgd_step: a matrix learning rate without a "
                                                 "direction buffer")
                    bufs.add(d)
                    lists += [[], at(d, "direction")]
                    ptrs = [P(lr, "lr"), P(d, "direction")]
                lr = 0.0  # (unused)
            prog.add("sgd", f64, ptrs, [p.size for p in params],
                     [float(lr), float(a["momentum"]), float(a["dampening"]),
                      float(a["weight_decay"]), float(bool(a["nesterov"])),
                      float(bool(a["maximize"]))], lists)
        elif name in ("rmsprop_step", "adagrad_step"):
            params, grads = list(a["params"]), list(a["grads"])
            steps = [s for pos, s in rec.increments if pos == index + 1]
            if len(steps) != len(params) or any(s.dtype != np.float32 for s in steps):
                raise _UncapturableError(f"{name}: could not match the optimizer's step "
                                         "counters")
            f64 = params[0].dtype == np.float64 if params else False
            if name == "rmsprop_step":
                centered, momentum = bool(a["centered"]), float(a["momentum"])
                state = [list(a["square_avgs"]), list(a["grad_avgs"]) if centered else [],
                         list(a["momentum_buffers"]) if momentum > 0 else []]
                reals = [float(a["lr"]), float(a["alpha"]), float(a["eps"]),
                         float(a["weight_decay"]), momentum, float(centered),
                         float(bool(a["maximize"]))]
                code = "rmsprop"
            else:
                state = [list(a["state_sums"])]
                reals = [float(a["lr"]), float(a["lr_decay"]), float(a["eps"]),
                         float(a["weight_decay"]), float(bool(a["maximize"]))]
                code = "adagrad"
            for st in [x for lst in state for x in lst] + steps:
                bufs.add(st)  # optimizer state lives as long as the optimizer
            lists = [[P(p, f"params[{k}]") for k, p in enumerate(params)],
                     [P(g, f"grads[{k}]") for k, g in enumerate(grads)]] + \
                [[P(x, "state") for x in lst] for lst in state] + \
                [[P(x, "step") for x in steps]]
            prog.add(code, f64, [], [p.size for p in params], reals, lists)
        elif name == "adam_step":
            params, grads = list(a["params"]), list(a["grads"])
            amsgrad = bool(a["amsgrad"])
            steps = [s for pos, s in rec.increments if pos == index + 1]
            if len(steps) != len(params) or any(s.dtype != np.float32 for s in steps):
                raise _UncapturableError("adam_step: could not match the optimizer's step counters")
            state = list(a["exp_avgs"]) + list(a["exp_avg_sqs"]) + \
                (list(a["max_exp_avg_sqs"]) if amsgrad else []) + steps
            for st in state:
                bufs.add(st)  # optimizer state lives as long as the optimizer
            f64 = params[0].dtype == np.float64 if params else False
            lists = [[P(p, f"params[{k}]") for k, p in enumerate(params)],
                     [P(g, f"grads[{k}]") for k, g in enumerate(grads)],
                     [P(x, "exp_avgs") for x in a["exp_avgs"]],
                     [P(x, "exp_avg_sqs") for x in a["exp_avg_sqs"]],
                     [P(x, "max_exp_avg_sqs") for x in a["max_exp_avg_sqs"]] if amsgrad else [],
                     [P(x, "step") for x in steps]]
            prog.add("adam", f64, [], [p.size for p in params],
                     [float(a["lr"]), float(a["beta1"]), float(a["beta2"]), float(a["eps"]),
                      float(a["weight_decay"]), float(amsgrad), float(bool(a["maximize"])),
                      float(bool(a["decoupled_weight_decay"]))], lists)
        else:  # pragma: no cover - _SIGS and this function list the same names
            raise _UncapturableError(f"no translation for {name}")
    return {_addr(p) for _, p, _, _ in plain.values()}


def _check_constants_unwritten(rec: _Recording, prog: Any) -> None:
    """A tensor the step makes with gd.zeros/ones/full/... is one array of the program, made
    once: an instruction writing into it would make the next replay start from what it wrote."""
    made = [(_addr(c), c.nbytes) for c in rec.created_constants.values() if c.nbytes]
    if not made:
        return
    for lo, nbytes in prog.writes():
        if any(lo < a + n and a < lo + nbytes for a, n in made):
            raise _UncapturableError(
                "the step writes in place into a tensor it creates (gd.zeros, ones, full, ...), "
                "which a replay would not create again; create it outside the step or use "
                "out-of-place ops on it")

