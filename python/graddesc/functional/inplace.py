"""The in-place ops (`t.add_(x)`, `t[i] = v`, ...), bound as Tensor methods by _tensor_ops.

An in-place op writes into the tensor's memory and bumps its version counter (the tape's check
that a value saved for backward was not overwritten). While grad is recorded, it runs the
out-of-place op (on a clone when that op saves its input) and the tensor takes the result's place
on the graph (`inplace_result`; a view's root and its other views get their new history through
shape.rebase_history). Otherwise it writes through NumPy directly (`fast_inplace`).
"""

from __future__ import annotations

import builtins
from typing import Any, Callable

import numpy as np

from graddesc import _compile_state as _cs
from graddesc import _core, _random
from graddesc._tensor import Tensor, _any_requires_grad, _value, check_int_cast
from graddesc.autograd import grad_mode
from graddesc.functional import activation as act
from graddesc.functional import elementwise as ew
from graddesc.functional import shape


def check_inplace(self: Tensor, op: str) -> None:
    if grad_mode.is_grad_enabled():
        if self.grad_fn is None and self.requires_grad:
            raise RuntimeError(f"{op}: a leaf Variable that requires grad is being used in an "
                               "in-place operation.")
        info = self._vinfo
        if info is not None:
            root = info[0]
            if root.grad_fn is None and root.requires_grad:
                raise RuntimeError(f"{op}: a view of a leaf Variable that requires grad is "
                                   "being used in an in-place operation.")
            if root.requires_grad and not self.requires_grad:
                raise RuntimeError(f"{op}: a view was created in no_grad mode and is being "
                                   "modified in place with grad mode enabled; this use is "
                                   "ambiguous and not allowed (clone() the view, or modify "
                                   "it under no_grad)")
        elif self._base is not None and self.requires_grad:
            raise RuntimeError(f"{op}: in-place modification of a tensor that shares memory "
                               "with another one on the graph is not supported; use the "
                               "out-of-place op")
    if not self._data.flags.writeable:
        raise RuntimeError(f"{op}: the tensor's memory is read-only (an expanded or "
                           "broadcast view); clone() it first")


def inplace_result(self: Tensor, res: Tensor, op: str) -> Tensor:
    """Writes res into self's memory; if res is on the graph, self takes its place there
    (and when self is a view, its root and every view of the root get their new history)."""
    if res._data.shape != self._data.shape:
        raise RuntimeError(f"{op}: output with shape {tuple(self.shape)} doesn't match the "
                           f"broadcast shape {tuple(res.shape)}")
    if res._data.dtype != self._data.dtype and not np.can_cast(res._data.dtype,
                                                               self._data.dtype,
                                                               "same_kind"):
        raise RuntimeError(f"{op}: result type {res.dtype} can't be cast to the desired "
                           f"output type {self.dtype}")
    if not _kernel_fill(self, res._data):  # (the kernel's copy: gd.compile records it)
        np.copyto(self._data, res._data, casting="unsafe")
        _cs.inplace_write(f"Tensor.{op}")
        self._vc[0] += 1
    if self._vinfo is None and self._views is None:
        if res.grad_fn is not None:  # the usual case, without the call
            self.grad_fn = res.grad_fn
            self._output_nr = res._output_nr
            self.requires_grad = True
        elif self.grad_fn is not None and grad_mode.is_grad_enabled():
            shape.rebase_history(self, None)
    elif grad_mode.is_grad_enabled():
        shape.rebase_history(self, res)
    return self


def add_(self: Tensor, other: Any, alpha: Any = 1) -> Tensor:
    check_inplace(self, "add_")
    if not self.requires_grad and not _any_requires_grad(other) or \
            not grad_mode.is_grad_enabled():
        o = _value(other)
        if alpha != 1:
            if type(alpha) in _NUMBERS and isinstance(o, np.ndarray) and \
                    _kernel_operand(self._data, o) is not None:
                # alpha * other by the kernel too (NumPy's float32 product, bit for bit), so
                # that gd.compile records the whole update
                o = _core.elementwise(_EW["mul"], o, float(alpha))
            else:
                o = o * alpha
        return fast_inplace(self, np.add, o, "add_")
    return inplace_result(self, ew.add(self, other, alpha=alpha), "add_")


def sub_(self: Tensor, other: Any, alpha: Any = 1) -> Tensor:
    if alpha == 1 and type(alpha) is int and (
            not grad_mode.is_grad_enabled() or
            not self.requires_grad and not _any_requires_grad(other)):
        check_inplace(self, "sub_")
        # one subtraction (the bits of adding -other), one pass: `p -= lr * p.grad`
        return fast_inplace(self, np.subtract, _value(other), "sub_")
    return add_(self, other, alpha=-alpha)


def mul_(self: Tensor, other: Any) -> Tensor:
    check_inplace(self, "mul_")
    if not self.requires_grad and not _any_requires_grad(other) or \
            not grad_mode.is_grad_enabled():
        return fast_inplace(self, np.multiply, _value(other), "mul_")
    # mul saves self for other's gradient: it must keep the value from before the write
    src = shape.clone(self) if _any_requires_grad(other) else self
    return inplace_result(self, ew.mul(src, other), "mul_")


def div_(self: Tensor, other: Any) -> Tensor:
    check_inplace(self, "div_")
    if not self.requires_grad and not _any_requires_grad(other) or \
            not grad_mode.is_grad_enabled():
        if self._data.dtype.kind != "f":
            raise RuntimeError("div_: result type float can't be cast to the integer "
                               "tensor's dtype")
        return fast_inplace(self, np.divide, _value(other), "div_")
    # div saves its numerator: a copy keeps the value from before the write
    return inplace_result(self, ew.div(shape.clone(self), other), "div_")


# Python numbers an in-place kernel takes as a scalar operand (NumPy casts them to the
# tensor's dtype too: the same bits)
_NUMBERS = (int, float, bool)
# (defined beside IndexPut, which writes with them too)
_writable_float, _kernel_operand = shape.writable_float, shape.kernel_operand
_basic_view = shape.basic_view


_EW = _core.EW_OPS
_KERNEL_UFUNCS = {np.add: _EW["add"], np.subtract: _EW["sub"], np.multiply: _EW["mul"],
                  np.divide: _EW["div"]}


def kernel_inplace(self: Tensor, op: int, b: Any = None, c: Any = None) -> bool:
    """self = op(self, b[, c]) by the elementwise kernel writing self's memory, when self and
    the operands allow it (see _kernel_operand); True if it did. gd.compile records the call,
    and a replay bumps self's version counter as this does."""
    a = self._data
    if not _writable_float(a):
        return False
    ob = None if b is None else _kernel_operand(a, b)
    oc = None if c is None else _kernel_operand(a, c)
    if (b is not None and ob is None) or (c is not None and oc is None):
        return False
    if a.size:
        _core.elementwise(op, a, ob, oc, a)
        _cs.inplace_kernel(self)
    self._vc[0] += 1
    return True


def fast_inplace(self: Tensor, ufunc: Any, other: Any, op: str) -> Tensor:
    kop = _KERNEL_UFUNCS.get(ufunc)
    if kop is not None and kernel_inplace(self, kop, other):
        return self
    try:
        with np.errstate(all="ignore"):  # x / 0 is Inf, inf - inf NaN, silently
            ufunc(self._data, other, out=self._data, casting="same_kind")
    except (TypeError, ValueError) as e:  # numpy's UFuncTypeError is a TypeError
        raise RuntimeError(f"{op}: {e}") from None
    _cs.inplace_write(f"Tensor.{op}")
    self._vc[0] += 1
    return self


def zero_(self: Tensor) -> Tensor:
    return fill_(self, 0)


def _kernel_fill(self: Tensor, value: Any, a: Any = None) -> bool:
    """a[...] = value (a = self's memory, or a view of it; value a number, or an array of a's
    dtype broadcasting to its shape) by the elementwise kernel, y = where(True, value, a),
    which gd.compile records; self's version counter is bumped."""
    a = self._data if a is None else a
    if not shape.kernel_write(a, value):
        return False
    if a.size:
        _cs.inplace_kernel(self)
    self._vc[0] += 1
    return True


def fill_(self: Tensor, value: Any) -> Tensor:
    check_inplace(self, "fill_")
    v = _value(value)
    if _kernel_fill(self, v):
        if grad_mode.is_grad_enabled():
            shape.rebase_history(self, None)
        return self
    self._data[...] = v
    _cs.inplace_write("Tensor.fill_")
    self._vc[0] += 1
    if grad_mode.is_grad_enabled():
        shape.rebase_history(self, None)
    return self


def copy_(self: Tensor, src: Any) -> Tensor:
    check_inplace(self, "copy_")
    if isinstance(src, Tensor) and src.requires_grad and grad_mode.is_grad_enabled():
        res = ew.broadcast_copy(src, self.shape, self.dtype)
        return inplace_result(self, res, "copy_")
    v = _value(src)
    if isinstance(v, np.ndarray) and _kernel_fill(self, v):  # same dtype, broadcasting
        if grad_mode.is_grad_enabled():
            shape.rebase_history(self, None)
        return self
    if self._data.dtype.kind in "iu":  # NaN/Inf have no integer value: refuse, as tensor()
        check_int_cast(np.asarray(v), self._data.dtype, "copy_")
    try:
        with np.errstate(over="ignore"):  # float64 -> float32 beyond the range is +-Inf
            np.copyto(self._data, v, casting="unsafe")
    except ValueError as e:
        raise RuntimeError(f"copy_: {e}") from None
    _cs.inplace_write("Tensor.copy_")
    self._vc[0] += 1
    if grad_mode.is_grad_enabled():  # the values no longer depend on the old history
        shape.rebase_history(self, None)
    return self


def clamp_(self: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    check_inplace(self, "clamp_")
    if self.requires_grad and grad_mode.is_grad_enabled():
        # clamp saves its input for the mask: a copy keeps the value from before the write
        return inplace_result(self, ew.clamp(shape.clone(self), min, max), "clamp_")
    if (min is not None or max is not None) and \
            kernel_inplace(self, _EW["clamp"], _value(min), _value(max)):
        return self
    res = ew.clamp(self.detach(), min, max)
    if res._data.shape != self._data.shape:  # bounds that broadcast to a larger shape
        raise RuntimeError(f"clamp_: output with shape {tuple(self.shape)} doesn't match the "
                           f"broadcast shape {tuple(res.shape)}")
    np.copyto(self._data, res._data)
    _cs.inplace_write("Tensor.clamp_")
    self._vc[0] += 1
    return self


def relu_(self: Tensor) -> Tensor:
    check_inplace(self, "relu_")
    if self.requires_grad and grad_mode.is_grad_enabled():
        return inplace_result(self, act.relu(self), "relu_")
    if _writable_float(self._data):  # the activation kernel, then its copy: captured
        return inplace_result(self, act.relu(self.detach()), "relu_")
    np.maximum(self._data, 0, out=self._data, where=~np.isnan(self._data)) \
        if self._data.dtype.kind == "f" else np.maximum(self._data, 0, out=self._data)
    _cs.inplace_write("Tensor.relu_")
    self._vc[0] += 1
    return self


def uniform_(self: Tensor, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
    with grad_mode.no_grad():
        draw = _random.uniform(self.shape, a, b, self.dtype, generator)
        _cs.overwritten(self._data)  # (gd.empty(n).uniform_() inside a compiled step)
        return copy_(self, draw)


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
    with grad_mode.no_grad():
        draw = _random.normal(self.shape, mean, std, self.dtype, generator)
        _cs.overwritten(self._data)  # (gd.empty(n).normal_() inside a compiled step)
        return copy_(self, draw)


def setitem(self: Tensor, index: Any, value: Any) -> None:
    check_inplace(self, "__setitem__")
    if grad_mode.is_grad_enabled() and (self.requires_grad or _any_requires_grad(value)):
        inplace_result(self, shape.index_put(self, index, value), "__setitem__")
        return
    v = _value(value)
    idx = shape.np_index(index)
    view = _basic_view(self._data, idx)
    if view is not None and _kernel_fill(self, v, view):
        return  # (x[0] = 0, x[:, 1:] = t: the kernel writes the view, gd.compile records it)
    if self._data.dtype.kind in "iu":  # NaN/Inf have no integer value: refuse, as tensor()
        check_int_cast(np.asarray(v), self._data.dtype, "__setitem__")
    try:
        with np.errstate(over="ignore"):  # float64 -> float32 beyond the range is +-Inf
            self._data[idx] = v
    except (IndexError, ValueError) as e:
        raise IndexError(f"__setitem__: {e}") from None
    _cs.inplace_write("Tensor.__setitem__")
    self._vc[0] += 1



def _view_inplace(self: Tensor, res: Tensor, undo: Callable, op: str) -> Tensor:
    """self becomes res, a view of self with another shape or axis order: a change of
    metadata only (no element is written, the version counter stays), as PyTorch's in-place
    view ops. `undo` maps an array shaped like the new self back to the old layout (a view), so
    that the views self already had still find their elements in it."""
    if grad_mode.is_grad_enabled() and self.grad_fn is None and self.requires_grad:
        raise RuntimeError(f"{op}: a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    own_views = [r() for r in (self._views or ())]
    self._data = res._data
    if res.grad_fn is not None:
        self.grad_fn, self._output_nr, self.requires_grad = res.grad_fn, res._output_nr, True
    if self._vinfo is not None:  # a view itself: res's mapping is the composed one from root
        self._vinfo = res._vinfo
    for v in own_views:
        if v is not None and v is not res and v._vinfo is not None and v._vinfo[0] is self:
            fn = v._vinfo[1]
            v._vinfo = (self, lambda b, fn=fn: fn(undo(b)))
    return self


def unsqueeze_(self: Tensor, dim: int) -> Tensor:
    """In-place unsqueeze: self gets a size-1 dim at `dim` (its memory is unchanged).

    >>> t = gd.zeros(3)
    >>> tuple(t.unsqueeze_(0).shape)
    (1, 3)
    """
    old = self._data.shape
    return _view_inplace(self, shape.unsqueeze(self, dim), lambda b: b.reshape(old),
                         "unsqueeze_")


def squeeze_(self: Tensor, dim: Any = None) -> Tensor:
    """In-place squeeze: self loses its size-1 dims (all, or the given ones).

    >>> t = gd.zeros(2, 1, 3)
    >>> tuple(t.squeeze_(1).shape)
    (2, 3)
    """
    old = self._data.shape
    return _view_inplace(self, shape.squeeze(self, dim), lambda b: b.reshape(old), "squeeze_")


def transpose_(self: Tensor, dim0: int, dim1: int) -> Tensor:
    """In-place transpose: self's dims dim0 and dim1 swap (its memory is unchanged).

    >>> t = gd.zeros(2, 3)
    >>> tuple(t.transpose_(0, 1).shape)
    (3, 2)
    """
    res = shape.transpose(self, dim0, dim1)
    nd = max(self.ndim, 1)
    a, b = int(dim0) % nd, int(dim1) % nd
    return _view_inplace(self, res, lambda x: x.swapaxes(a, b) if x.ndim > 1 else x,
                         "transpose_")


def t_(self: Tensor) -> Tensor:
    """In-place t(): a 2-d self is transposed, a 0-d or 1-d one is unchanged.

    >>> t = gd.zeros(2, 3)
    >>> tuple(t.t_().shape)
    (3, 2)
    """
    if self.ndim < 2:
        shape.t(self)  # (its checks)
        return self
    return transpose_(self, 0, 1)


def inplace_method(fn: Callable, name: str) -> Callable:
    """The in-place form of an out-of-place op, through the machinery above. While recording,
    the op runs on a clone so that what it saves for backward keeps the old value."""
    def f(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        check_inplace(self, name)
        recording = grad_mode.is_grad_enabled() and (
            self.requires_grad or builtins.any(_any_requires_grad(a) for a in args) or
            builtins.any(_any_requires_grad(a) for a in kwargs.values()))
        src = shape.clone(self) if recording else self.detach()
        return inplace_result(self, fn(src, *args, **kwargs), name)

    f.__name__ = name
    return f
