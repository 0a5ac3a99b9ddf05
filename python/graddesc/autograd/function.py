"""Function: one node of the tape. Every differentiable op is a Function subclass.

`Op.apply(*args)` runs `Op.forward(ctx, *args)` with recording off; when grad mode is on and an
input requires grad, the ctx (an instance of `Op`) becomes the outputs' `grad_fn`: it keeps the
edges to its inputs' nodes and whatever forward saved. The engine (engine.py) later calls
`Op.backward(ctx, *grads)`, which returns one gradient per forward argument (None for
non-tensors and for inputs that need none).
"""

from __future__ import annotations

import threading
import traceback
import weakref
from typing import Any

import numpy as np

from graddesc import _compile_state
from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode

_anomaly = {"enabled": False}

# Equal immutable bookkeeping tuples of the tape (needs_input_grad, the input and output
# (shape, dtype) metadata, saved versions), one object each: every tuple a node keeps counts
# towards Python's cyclic garbage collector, whose full passes over a long tape cost more than
# the ops themselves (docs/performance-eager.md). Cleared when it grows large (odd shapes).
_SHARED: dict = {}
_NONES = {n: (None,) * n for n in range(8)}
# Ops recorded since the last backward began (the engine resets it). Sharing pays only on a long
# tape, where the collector would run; on a short one (a training step of a few dozen ops) the
# lookups, which hash shapes and NumPy dtypes (a dtype's hash is not cached), cost more than
# the tuples they save. So the first _SHARE_AFTER ops of a tape keep their own tuples.
_recorded = [0]
_SHARE_AFTER = 256


def _share(t: tuple) -> tuple:
    """The one shared tuple equal to t (t itself the first time)."""
    v = _SHARED.get(t)
    if v is None:
        if len(_SHARED) >= 4096:
            _SHARED.clear()
        _SHARED[t] = v = t
    return v



class _ModuleScope(threading.local):
    """The chain of nn.Modules whose forward is running in this thread (outermost first; pushed
    and popped by Module.__call__); each recorded node keeps it as a tuple, so graddesc.viz can
    draw or collapse module boundaries."""

    def __init__(self) -> None:
        self.stack: list = []


module_scope = _ModuleScope()


class _SavedOutput:
    """An output saved by its own node: held weakly (no reference cycle), rebuilt if collected."""

    __slots__ = ("ref", "data", "vc", "output_nr")

    def __init__(self, t: Any) -> None:
        self.ref = weakref.ref(t)
        self.data = t._data
        self.vc = t._vc
        self.output_nr = t._output_nr

    def unpack(self, node: Function) -> Any:
        t = self.ref()
        if t is None:
            t = Tensor._make(self.data, True)
            t.grad_fn = node
            t._output_nr = self.output_nr
            t._vc = self.vc
        return t


class Function:
    """Base class of differentiable operations (also for user-defined ones, as in PyTorch).

    >>> class Cube(gd.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x * x
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x * x * g
    >>> x = gd.tensor([2.0], requires_grad=True)
    >>> Cube.apply(x).sum().backward()
    >>> x.grad.tolist()
    [12.0]
    """

    # Instances are graph nodes. __dict__ stays so that custom ops can stash values on ctx.
    # _edges: flat (node, output_nr, node, output_nr, ...), one pair per forward argument (None,
    # 0 for an argument without a gradient): one object per node, not one per edge and another
    # for their tuple (next_edges gives the pairs).
    __slots__ = ("_edges", "needs_input_grad", "_saved", "_input_meta", "_output_meta",
                 "_non_diff", "__dict__", "__weakref__")
    # rarely set: class-level defaults, overridden in the instance __dict__ when set
    _saved_versions: tuple = ()
    # True on ops whose forward stores nothing in the instance dict (only slots): releasing
    # their node after backward then leaves the dict alone (reading it would make one)
    _no_stash = False
    _trace = None
    _label = None
    _scope: tuple = ()

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:
        raise NotImplementedError("a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotImplementedError("a Function subclass must define backward(ctx, *grads)")

    # ---- ctx API used inside forward/backward -------------------------------------------
    def save_for_backward(self, *tensors: Any) -> None:
        """Saves tensors (or None) for backward; an in-place change to one makes backward raise."""
        versions = tuple([None if t is None else t._vc[0] for t in tensors])
        if _recorded[0] > _SHARE_AFTER:
            # interned: a tape of n ops otherwise keeps n equal tuples alive (see _SHARED)
            v = _SHARED.get(versions)
            self._saved_versions = v if v is not None else _share(versions)
            if versions == _NONES.get(len(tensors)):  # nothing saved (a scalar operand)
                tensors = _share(tensors)
        else:
            self._saved_versions = versions
        self._saved = tensors

    def mark_non_differentiable(self, *tensors: Any) -> None:
        """Declares outputs that never carry a gradient (indices, masks)."""
        self._non_diff = {id(t) for t in tensors}

    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to save_for_backward, checked against in-place modification."""
        if self._saved is None:  # (freed)
            raise RuntimeError(
                f"Trying to backward through the graph a second time (or to read saved tensors "
                f"of {node_name(self)} after they were freed). Specify retain_graph=True on the "
                "first "
                "backward if you need to backward twice.")
        versions = self._saved_versions
        out = []
        for s in self._saved:
            if s is not None:
                if type(s) is _SavedOutput:
                    s = s.unpack(self)
                if s._vc[0] != versions[len(out)]:  # (len(out): the index of s)
                    raise self._modified_error(len(out), s)
            out.append(s)
        return tuple(out)

    def _modified_error(self, i: int, t: Any) -> RuntimeError:
        v = self._saved_versions[i]
        return RuntimeError(
            f"one of the variables needed for gradient computation has been modified by "
            f"an inplace operation: saved tensor {i} of {node_name(self)} (shape "
            f"{tuple(t.shape)}) is at version {t._vc[0]}; expected version {v} instead."
            + self._created_at())

    @property
    def next_edges(self) -> tuple:
        """(node, output_nr) or None per forward argument."""
        e = self._edges
        return tuple([(e[i], e[i + 1]) if e[i] is not None else None
                      for i in range(0, len(e), 2)])

    @property
    def next_functions(self) -> tuple:
        """((node, output_nr) or (None, 0)) per forward argument, as in PyTorch."""
        e = self._edges
        return tuple([(e[i], e[i + 1]) for i in range(0, len(e), 2)])

    def name(self) -> str:
        return node_name(self)

    def _created_at(self) -> str:
        if self._trace:
            return "\n  The op was created at:\n" + "".join(traceback.format_list(self._trace))
        return ""

    @property
    def _freed(self) -> bool:
        """Whether backward released what this node saved (without retain_graph)."""
        return self._saved is None

    def _release(self) -> None:  # (run_backward inlines it)
        if not self._no_stash:
            self.__dict__.clear()
        self._saved = None

    # ---- applying ---------------------------------------------------------------------
    @classmethod
    def apply(cls, *args: Any) -> Any:
        """Runs forward and, when needed, records this op on the tape."""
        ctx = _new(cls)
        ctx._saved = ()
        ctx._non_diff = None
        state = grad_mode._state
        if not state.enabled:
            ctx.needs_input_grad = (False,) * len(args)
            return cls.forward(ctx, *args)
        # One pass over the inputs: which need a gradient, the edges to their nodes, and the
        # shapes of all tensor inputs, including those that need no gradient (observed
        # variables), for fitting gradients to their inputs (the engine) and drawing the graph
        # (graddesc.viz).
        needs = []
        edges = []
        input_meta = []
        for a in args:
            if isinstance(a, Tensor):
                need = a.requires_grad
                if need:  # edge(a), without the call in the usual cases
                    fn = a.grad_fn
                    if fn is not None:
                        edges.append(fn)
                        edges.append(a._output_nr)
                    else:
                        edges.extend(a._leaf_edge or edge(a))
                else:
                    edges.append(None)
                    edges.append(0)
                d = a._data
                input_meta.append((d.shape, d.dtype))
            else:
                need = False
                edges.append(None)
                edges.append(0)
                input_meta.append(None)
            needs.append(need)
        needs = tuple(needs)
        if True not in needs:
            ctx.needs_input_grad = needs
            return cls.forward(ctx, *args)
        n = _recorded[0] + 1
        _recorded[0] = n
        shared = _SHARED if n > _SHARE_AFTER else None
        if shared is not None:
            v = shared.get(needs)
            ctx.needs_input_grad = v if v is not None else _share(needs)
        else:
            ctx.needs_input_grad = needs
        state.enabled = False
        try:
            out = cls.forward(ctx, *args)
        finally:
            state.enabled = True

        ctx._edges = tuple(edges)
        input_meta = tuple(input_meta)
        if shared is not None:
            v = shared.get(input_meta)
            ctx._input_meta = v if v is not None else _share(input_meta)
        else:
            ctx._input_meta = input_meta
        if _compile_state.active is not None:
            _compile_state.active.on_apply(cls, args)
        if module_scope.stack:
            ctx._scope = tuple(module_scope.stack)
        if _anomaly["enabled"]:
            ctx._trace = traceback.extract_stack()[:-2]

        if type(out) is Tensor and out.grad_fn is None and not out.requires_grad and \
                ctx._non_diff is None:
            # the usual case: one new tensor
            d = out._data
            dtype = d.dtype
            meta = ((d.shape, dtype),)
            if shared is not None:
                v = shared.get(meta)
                ctx._output_meta = v if v is not None else _share(meta)
            else:
                ctx._output_meta = meta
            if dtype.kind == "f":
                out.requires_grad = True
                out.grad_fn = ctx
                out._output_nr = 0
        elif isinstance(out, tuple):
            out = _take_outputs(ctx, out)
        else:
            out = _take_outputs(ctx, (out,))[0]
        for s in ctx._saved:
            if s is not None and s.grad_fn is ctx:  # an output of ctx itself: held weakly
                ctx._saved = tuple([_SavedOutput(s) if s is not None and s.grad_fn is ctx else s
                                    for s in ctx._saved])
                break
        return out


_new = object.__new__


def _take_outputs(ctx: Function, outs: tuple) -> tuple:
    """Makes ctx the grad_fn of the differentiable tensors in outs and records every output's
    shape and dtype (ctx._output_meta); returns outs, with views where an output was already
    on a graph."""
    non_diff = ctx._non_diff
    out_meta = []
    for i, t in enumerate(outs):
        if not isinstance(t, Tensor):
            out_meta.append(None)
            continue
        d = t._data
        out_meta.append((d.shape, d.dtype))
        if d.dtype.kind == "f" and (non_diff is None or id(t) not in non_diff):
            if t.grad_fn is not None or t.requires_grad:
                # forward returned an input or a tensor already on a graph: wrap in a view
                # so that this node's edge is the one that counts.
                t = t._shallow()
                outs = outs[:i] + (t,) + outs[i + 1:]
            t.requires_grad = True
            t.grad_fn = ctx
            t._output_nr = i
    out_meta = tuple(out_meta)
    ctx._output_meta = _share(out_meta) if _recorded[0] > _SHARE_AFTER else out_meta
    return outs


def node_name(node: Any) -> str:
    """The display name of a graph node (not overridable by attributes stored on ctx)."""
    if type(node) is AccumulateGrad:
        return "AccumulateGrad"
    return node._label or type(node).__name__ + "Backward"


class AccumulateGrad:
    """The node at a leaf that requires grad: backward adds the gradient into `.grad`."""

    __slots__ = ("variable", "__weakref__")
    next_edges: tuple = ()
    _edges: tuple = ()

    def __init__(self, variable: Any) -> None:
        self.variable = variable

    def name(self) -> str:
        return "AccumulateGrad"

    @property
    def next_functions(self) -> tuple:
        return ()


def edge(t: Tensor) -> tuple:
    """(node, output_nr) where t's gradient goes: its grad_fn, or for a leaf its AccumulateGrad
    node (made once and kept, with the edge, in t._leaf_edge)."""
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr)
    if t._leaf_edge is None:
        t._leaf_edge = (AccumulateGrad(t), 0)
    return t._leaf_edge


class detect_anomaly:  # noqa: N801
    """Within this block, a backward that produces NaN/Inf raises, naming the op and its origin.

    >>> x = gd.tensor([0.0], requires_grad=True)
    >>> try:
    ...     with gd.autograd.detect_anomaly():
    ...         gd.sqrt(x).sum().backward()
    ... except RuntimeError:
    ...     print("the NaN/Inf was caught")
    the NaN/Inf was caught
    """

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan
        self._prev = False

    def __enter__(self) -> None:
        self._prev = _anomaly["enabled"]
        _anomaly["enabled"] = self.check_nan

    def __exit__(self, *exc: object) -> None:
        _anomaly["enabled"] = self._prev


def _is_finite(a: np.ndarray) -> bool:
    # anomaly mode decides (raise or not) on gradient values in Python: a recorded step could
    # not repeat that check on a replay's values, so gd.compile runs such a step eagerly
    _compile_state.value_read("anomaly detection (a NaN check on a gradient)")
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())
