"""The backward engine: walks the tape iteratively in reverse topological order.

Gradients for a node's outputs are summed (the lecture's fan-out rule, dC/dz = sum over the
consumers of z) before the node runs, so each node runs once; a gradient is reduced to its
input's shape (undoing broadcasting) and dtype in one place, `_fit_to_input`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from sys import getrefcount
from typing import Any, Optional

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor, copy_c
from graddesc.autograd import grad_mode
from graddesc.autograd.function import (
    AccumulateGrad,
    _anomaly,
    _is_finite,
    _recorded,
    edge,
    node_name,
)

_SUM_TO = _core.EW_OPS["sum_to"]
_ADD = _core.EW_OPS["add"]
_FLOAT_KERNEL = (np.dtype(np.float32), np.dtype(np.float64))


class InvalidGradientError(RuntimeError):
    """A backward returned a gradient the engine cannot fit to its input (wrong shape or count);
    gradcheck reports it as a failed check."""


# Hooks run after a leaf's .grad was accumulated by backward (Tensor.
# register_post_accumulate_grad_hook): id(leaf) -> [(weakref to the leaf, hook)], kept here so
# that the usual backward pays one dict truth test for them. graddesc.distributed's
# DistributedDataParallel starts its gradient all-reduce from them.
post_accumulate_hooks: dict = {}
# Per thread: the callbacks queued (queue_callback) by the backward running in that thread, one
# list per nested call.
_local = threading.local()


def _expandable(shape: tuple, to: tuple) -> bool:
    """Whether an input of `shape` broadcasts to `to` (PyTorch's is_expandable_to): only then is
    a gradient shaped `to` reducible to `shape` by summing over the broadcast axes."""
    if len(shape) > len(to):
        return False
    lead = len(to) - len(shape)
    return all(n == m or n == 1 for n, m in zip(shape, to[lead:]))


def _sum_to_shape(g: Any, shape: tuple) -> Any:
    """Sums g (a Tensor) over the axes that broadcasting added or stretched to reach `shape`
    (the caller checks that `shape` is expandable to g's shape)."""
    if g.shape == shape:
        return g
    if not grad_mode.is_grad_enabled() and g._data.dtype in _FLOAT_KERNEL:
        # one kernel, any strides (an expanded gradient is read in place), deterministic
        # order; gd.compile records it. (With create_graph the sum below stays differentiable.)
        try:
            return Tensor._make(_core.elementwise(_SUM_TO, g._data, tuple(shape)))
        except ValueError:  # misaligned memory, or shapes that don't fit: the path below
            pass
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    if axes:
        g = g.sum(dim=axes, keepdim=True)
    if g.shape != shape:  # drop the leading axes summed above
        g = g.reshape(shape)
    return g


_CASTABLE = frozenset(np.dtype(t) for t in (np.float32, np.float64))


def _cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """a as `dtype`; a float64 gradient beyond float32's range becomes +-Inf silently. Between
    float32 and float64 by the cast kernel (NumPy's rounding, bit for bit), which gd.compile
    records: a float32 leaf whose gradient was computed in float64 stays capturable."""
    if a.dtype in _CASTABLE and dtype in _CASTABLE:
        return _core.int_unary("cast", a, dtype)
    with np.errstate(over="ignore"):
        return a.astype(dtype)


def _fit_to_input(g: Any, meta: tuple, node: Any, i: int) -> Any:
    """g as a Tensor of the shape and dtype meta = (shape, dtype) of node's input i."""
    if not isinstance(g, Tensor):
        g = Tensor._make(np.asarray(g))
    shape, dtype = meta
    if g._data.shape != shape:
        # a gradient for a broadcast input is summed down; any other shape is a bug in the
        # backward, never reshaped (a (3, 2) gradient for a (2, 3) input would scramble rows)
        if not _expandable(shape, g._data.shape):
            raise InvalidGradientError(
                f"Function {node_name(node)} returned an invalid gradient at index {i} - got "
                f"{list(g._data.shape)} but expected shape compatible with {list(shape)}")
        g = _sum_to_shape(g, shape)
    if g._data.dtype != dtype:
        g = g.to(dtype.type) if grad_mode.is_grad_enabled() else Tensor._make(
            _cast(g._data, dtype))
    return g


def _collect(roots: Sequence[Any]) -> dict:
    """Number of incoming edges of every node reachable from `roots` (iterative DFS)."""
    deps: dict = {}  # also the set of nodes seen
    stack = []
    for r in roots:
        if r not in deps:
            deps[r] = 0
            stack.append(r)
    while stack:
        edges = stack.pop()._edges
        for k in range(0, len(edges), 2):
            child = edges[k]
            if child is None:
                continue
            if child in deps:
                deps[child] += 1
            else:
                deps[child] = 1
                if type(child) is not AccumulateGrad:  # (a leaf's node has no edges)
                    stack.append(child)
    return deps


def _needed(roots: Sequence[Any], targets: set) -> set:
    """Nodes from which a target node can be reached (only they need to run)."""
    needed: set = set()
    done: set = set()
    stack = [(r, False) for r in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            if node in targets or any(c is not None and c in needed for c in node._edges[::2]):
                needed.add(node)
            done.add(node)
            continue
        if node in done:
            continue
        stack.append((node, True))
        for c in node._edges[::2]:
            if c is not None and c not in done:
                stack.append((c, False))
    return needed


def run_backward(tensors: Sequence[Any], grad_tensors: Sequence[Any], retain_graph: bool,
                 create_graph: bool, inputs: Optional[Sequence[Any]] = None,
                 allow_unused: bool = False, observer: Any = None) -> Optional[tuple]:
    """Backpropagates grad_tensors from tensors. With `inputs`, returns their gradients
    (autograd.grad) instead of accumulating into leaves' .grad. `observer(node, grads)`, if
    given, sees each node's summed output gradients ({output_nr: Tensor}) before it runs."""
    _recorded[0] = 0  # a new tape begins (function._SHARE_AFTER)
    root_edges = []
    for t, g in zip(tensors, grad_tensors):
        if t.grad_fn is None and not t.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                               "grad_fn")
        root_edges.append((edge(t), g))
    roots = []
    for e, _ in root_edges:
        roots.append(e[0])
    deps = _collect(roots)

    capture: dict = {}
    if inputs is not None:
        for k, x in enumerate(inputs):
            if not x.requires_grad:
                raise RuntimeError(f"One of the differentiated Tensors (input {k}) does not "
                                   "require grad")
            capture.setdefault(edge(x), []).append(k)
        needed = _needed(roots, {e[0] for e in capture})
    else:
        needed = None

    buffers: dict = {}
    for (node, nr), g in root_edges:
        slots = buffers.setdefault(node, {})
        slots[nr] = g if nr not in slots else slots[nr] + g

    results: list = [None] * (len(inputs) if inputs is not None else 0)
    ready = []
    for node in dict.fromkeys(roots):
        if deps[node] == 0:
            ready.append(node)
    plain = observer is None and inputs is None  # no observer, nothing captured or skipped
    mode = grad_mode._state
    prev_mode = mode.enabled
    mode.enabled = create_graph
    queued: list = []
    stack = getattr(_local, "callbacks", None)
    if stack is None:
        stack = _local.callbacks = []
    stack.append(queued)
    try:
        while ready:
            node = ready.pop()
            slots = buffers.pop(node, None)
            if slots is None:
                slots = {}
            if not plain:
                if observer is not None:
                    observer(node, slots)
                if capture:
                    for nr, g in slots.items():
                        for k in capture.get((node, nr), ()):
                            results[k] = g
                if needed is not None and node not in needed:
                    _release_children(node, deps, ready)
                    continue
            if type(node) is AccumulateGrad:
                if inputs is None:
                    g = slots.pop(0, None)
                    # g may become .grad as it is when nothing else can see it or its memory:
                    # no reference but this variable g (and getrefcount's own argument)
                    owned = g is not None and getrefcount(g) == 2 and getrefcount(g._data) == 2
                    _accumulate(node.variable, g, create_graph, owned)
                    if post_accumulate_hooks:
                        _run_post_hooks(node.variable)
                continue
            if len(node._output_meta) == 1 and 0 in slots and node._saved is not None:
                # the usual node: one output, with a gradient (_run_node without the call)
                grads_in = type(node).backward(node, slots[0])
                if not isinstance(grads_in, tuple) or 2 * len(grads_in) != len(node._edges):
                    grads_in = _check_grads(node, grads_in)
            else:
                grads_in = _run_node(node, slots)
            input_meta = node._input_meta
            edges = node._edges
            for i in range(len(grads_in)):
                child = edges[2 * i]
                if child is None:
                    continue
                nr = edges[2 * i + 1]
                g = grads_in[i]
                if g is not None:
                    meta = input_meta[i]
                    if type(g) is not Tensor:
                        g = _fit_to_input(g, meta, node, i)
                    else:
                        d = g._data
                        dt = d.dtype
                        # (NumPy's native dtypes are singletons: `is` decides the usual case)
                        if d.shape != meta[0] or (dt is not meta[1] and dt != meta[1]):
                            g = _fit_to_input(g, meta, node, i)
                    if _anomaly["enabled"] and not _is_finite(g._data):
                        raise RuntimeError(
                            f"Function '{node_name(node)}' returned nan values in its {i}th output."
                            + node._created_at())
                    cslots = buffers.get(child)
                    if cslots is None:
                        buffers[child] = {nr: g}
                    else:
                        cslots[nr] = g if nr not in cslots else cslots[nr] + g
                left = deps[child] - 1
                deps[child] = left
                if left == 0:
                    ready.append(child)
            del grads_in  # (the gradients a leaf may own)
            if not retain_graph:  # node._release(), inlined
                if not node._no_stash:
                    node.__dict__.clear()
                node._saved = None
    finally:
        mode.enabled = prev_mode
        stack.pop()
    for cb in queued:  # (only after a backward that completed)
        cb()

    if inputs is None:
        return None
    for k, r in enumerate(results):
        if r is None and not allow_unused:
            raise RuntimeError(f"One of the differentiated Tensors (input {k}) appears to not "
                               "have been used in the graph. Set allow_unused=True if this is "
                               "the desired behavior.")
    return tuple(results)


def _run_post_hooks(var: Any) -> None:
    for ref, hook in post_accumulate_hooks.get(id(var), ()):
        if ref() is var:
            hook(var)


def queue_callback(callback: Any) -> None:
    """Runs callback() once the backward now running has completed (after every .grad was
    accumulated and every post-accumulate hook ran); PyTorch's
    Variable._execution_engine.queue_callback. Raises RuntimeError outside a backward."""
    stack = getattr(_local, "callbacks", None)
    if not stack:
        raise RuntimeError("queue_callback: no backward is running in this thread")
    stack[-1].append(callback)


def _release_children(node: Any, deps: dict, ready: list) -> None:
    for c in node._edges[::2]:
        if c is not None:
            deps[c] -= 1
            if deps[c] == 0:
                ready.append(c)


def _run_node(node: Any, slots: dict) -> tuple:
    """Calls node's backward with the summed gradient of each of its outputs (zeros for an
    output that got none); returns one gradient (or None) per forward argument."""
    if node._freed:
        raise RuntimeError(
            f"Trying to backward through the graph a second time (or directly access saved "
            f"tensors after they have already been freed) in {node_name(node)}. Specify "
            "retain_graph=True if you need to backward through the graph a second time.")
    grads_out = []
    for nr, meta in enumerate(node._output_meta):
        g = slots.get(nr)
        if g is None and meta is not None:
            g = Tensor._make(np.zeros(meta[0], dtype=meta[1]))
        grads_out.append(g)
    res = type(node).backward(node, *grads_out)
    return _check_grads(node, res)


def _check_grads(node: Any, res: Any) -> tuple:
    """node's backward result as a tuple of one gradient per forward argument."""
    if not isinstance(res, tuple):
        res = (res,)
    n = len(node._edges) // 2
    if len(res) != n:
        # PyTorch allows extra trailing Nones for non-tensor args.
        if len(res) > n and all(r is None for r in res[n:]):
            res = res[:n]
        else:
            raise InvalidGradientError(f"function {node_name(node)} returned an incorrect "
                                       f"number of gradients (expected {n}, got {len(res)})")
    return res


def _accumulate(var: Any, g: Any, create_graph: bool, owned: bool = False) -> None:
    """Adds g into var.grad. owned: nothing but the caller refers to g or to its array."""
    if g is None:
        return
    vd = var._data
    gd_ = g._data
    if gd_.shape != vd.shape:
        if not _expandable(vd.shape, gd_.shape):
            raise InvalidGradientError(f"AccumulateGrad got a gradient of shape {list(gd_.shape)} "
                                       f"for a leaf of shape {list(vd.shape)}")
        g = _sum_to_shape(g, vd.shape)
        owned = False
    if g._data.dtype != vd.dtype:
        g = Tensor._make(_cast(g._data, vd.dtype))
        owned = False
    if _anomaly["enabled"] and not _is_finite(g._data):
        raise RuntimeError("AccumulateGrad received nan values for a leaf of shape "
                           f"{tuple(var.shape)}")
    grad = var.grad
    if grad is None:
        if create_graph:
            var.grad = g
            return
        rec = _compile_state.active
        gd_ = g._data
            # a gradient computed for this leaf alone (usually a kernel's output) becomes .grad
        # itself when it is in every way like a fresh copy of itself: a plain tensor at
        # version 0 on memory of its own, C-contiguous, aligned and writable
        if not (owned and rec is None and type(g) is Tensor and not g.requires_grad and
                g._base is None and g._vc[0] == 0 and gd_.base is None and gd_.flags.carray):
            # a fresh C-ordered copy: .grad never aliases another tensor's gradient and has the
            # parameter's layout even when g arrived through a transposed view (the C++ copy
            # is the one gd.compile can record)
            g = Tensor._make(_core.copy_array(gd_) if gd_.flags.c_contiguous and
                             gd_.dtype.kind == "f" else copy_c(gd_))
        var._grad = g  # (g has var's shape and dtype: the checks of the .grad setter pass)
        if rec is not None:
            rec.on_grad(var, g._data)
    elif create_graph:
        var.grad = grad + g
    elif not grad._data.flags.writeable:
        _compile_state.inplace_write("accumulating into .grad")  # NumPy: a replay would skip it
        # a user-assigned read-only .grad (e.g. an expanded tensor): replace, don't write into it
        # (np.asarray: the sum of 0-d arrays is a NumPy scalar)
        var.grad = Tensor._make(np.asarray(np.add(grad._data, g._data)))
    else:
        a, b = grad._data, g._data
        if a.dtype.kind == "f" and a.dtype == b.dtype and a.dtype.itemsize in (4, 8) and \
                a.dtype.isnative and b.dtype.isnative and a.flags.aligned and \
                b.flags.aligned and not np.may_share_memory(a, b):
            # the elementwise kernel (the sum NumPy's add makes, bit for bit), which gd.compile
            # records: micro-batches accumulated inside a step, after zero_grad(set_to_none=False)
            rec = _compile_state.active
            if rec is not None:
                rec.on_accumulate(var, grad)
            _core.elementwise(_ADD, a, b, None, a)
        else:
            _compile_state.inplace_write("accumulating into .grad")  # NumPy: a replay skips it
            np.add(a, b, out=a)
        grad._vc[0] += 1


# ---- the entry points: autograd.backward, autograd.grad, Tensor.backward ----------------
def _as_tuple(x: Any) -> tuple:
    if x is None:
        return ()
    if isinstance(x, Tensor):
        return (x,)
    return tuple(x)


def _make_grads(outputs: tuple, grads: tuple, op: str) -> list:
    out = []
    for i, (o, g) in enumerate(zip(outputs, grads)):
        if g is None:
            if o._data.size != 1:
                raise RuntimeError(f"{op}: grad can be implicitly created only for scalar "
                                   f"outputs (output {i} has shape {tuple(o.shape)})")
            out.append(Tensor._make(_compile_state.ones_seed(o._data.shape, o._data.dtype)))
        else:
            if not isinstance(g, Tensor):
                g = Tensor._make(np.asarray(g, dtype=o._data.dtype))
            if g.shape != o.shape:
                raise RuntimeError(f"{op}: Mismatch in shape: grad_output[{i}] has a shape of "
                                   f"{tuple(g.shape)} and output[{i}] has a shape of "
                                   f"{tuple(o.shape)}.")
            out.append(g)
    return out


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: Optional[bool] = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """Accumulates gradients of `tensors` into the .grad of the leaves that require grad.

    >>> x = gd.tensor([2.0], requires_grad=True)
    >>> gd.autograd.backward((x * x).sum())
    >>> x.grad.tolist()
    [4.0]
    """
    outs = _as_tuple(tensors)
    grads = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(outs)
    if len(grads) != len(outs):
        raise RuntimeError(f"backward: got {len(grads)} gradients for {len(outs)} tensors")
    if retain_graph is None:
        retain_graph = create_graph
    gs = _make_grads(outs, grads, "backward")
    if inputs is not None:
        ins = _as_tuple(inputs)
        res = run_backward(outs, gs, retain_graph, create_graph, ins, allow_unused=True)
        for x, g in zip(ins, res):
            if g is not None:
                _accumulate(x, g, create_graph)
        return
    run_backward(outs, gs, retain_graph, create_graph)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: Optional[bool] = None,
         create_graph: bool = False, allow_unused: bool = False,
         materialize_grads: bool = False) -> tuple:
    """Gradients of outputs with respect to inputs, returned (not accumulated into .grad).

    >>> x = gd.tensor([3.0], requires_grad=True)
    >>> (g,) = gd.autograd.grad((x * x).sum(), x)
    >>> g.tolist()
    [6.0]
    """
    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    grads = _as_tuple(grad_outputs) if grad_outputs is not None else (None,) * len(outs)
    if len(grads) != len(outs):
        raise RuntimeError(f"grad: got {len(grads)} grad_outputs for {len(outs)} outputs")
    if retain_graph is None:
        retain_graph = create_graph
    gs = _make_grads(outs, grads, "grad")
    res = run_backward(outs, gs, retain_graph, create_graph, ins,
                              allow_unused=allow_unused or materialize_grads)
    if materialize_grads:
            res = tuple(r if r is not None else Tensor._make(np.zeros_like(x._data))
                    for r, x in zip(res, ins))
    return res


def tensor_backward(self: Tensor, gradient: Any = None, retain_graph: Optional[bool] = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """Accumulates d(self)/d(leaf) * gradient into .grad of every leaf that requires grad."""
    # The usual calls, loss.backward() and y.backward(g), do what autograd.backward does for
    # them, without its argument handling (tuples, an import per call: a quarter of the
    # engine's own cost).
    if inputs is None and (gradient is None and self._data.size == 1 or
                           isinstance(gradient, Tensor) and
                           gradient._data.shape == self._data.shape):
        if gradient is None:
            gradient = Tensor._make(_compile_state.ones_seed(self._data.shape, self._data.dtype))
        run_backward((self,), (gradient,),
                             create_graph if retain_graph is None else retain_graph,
                             create_graph)
        return
    backward(self, gradient, retain_graph=retain_graph,
                       create_graph=create_graph, inputs=inputs)


def register_post_accumulate_grad_hook(self: Tensor, hook: Any) -> Any:
    """Calls hook(self) after backward() accumulated into this leaf's .grad (PyTorch's
    method of that name; not after autograd.grad, which leaves .grad alone). Returns a
    handle whose remove() unregisters the hook."""
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                        f"{type(hook).__name__}")
    if self.grad_fn is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf "
                           "tensors")
    if not self.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require "
                           "gradient")
    return _PostAccumulateHandle(self, hook)


class _PostAccumulateHandle:
    """What register_post_accumulate_grad_hook returns: remove() unregisters the hook; the
    leaf's death removes it too."""

    def __init__(self, leaf: Tensor, hook: Any) -> None:
        key = id(leaf)
        hooks = post_accumulate_hooks

        def forget(ref: Any, key: int = key) -> None:
            entries = hooks.get(key)
            if entries is not None:
                entries[:] = [e for e in entries if e[0] is not ref]
                if not entries:
                    del hooks[key]

        self._key = key
        self._entry = (weakref.ref(leaf, forget), hook)
        hooks.setdefault(key, []).append(self._entry)

    def remove(self) -> None:
        hooks = post_accumulate_hooks
        entries = hooks.get(self._key)
        if entries is not None:
            entries[:] = [e for e in entries if e is not self._entry]
            if not entries:
                del hooks[self._key]
