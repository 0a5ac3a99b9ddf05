"""Tensor: an n-d array (a NumPy array underneath) that records operations for backward.

This module is the Tensor's data and metadata only (shape, dtype, autograd fields, views,
conversions); it imports nothing of the tape or the ops, which import it. The methods that are
ops (arithmetic, reductions, `to`, `clone`, `backward`, the in-place ops, ...) are defined in
the layers above and bound to the class by `graddesc._tensor_ops`; `_tensor.pyi` declares them
all for type checkers (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import builtins
import numbers
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np

from graddesc import _compile_state as _cs
from graddesc import _core, _dtype
from graddesc._device import check_device
from graddesc._device import device as _device
from graddesc._dtype import dtype as _DType

_SUPPORTED_KINDS = {"f", "i", "u", "b"}


def _convert_array(a: np.ndarray, dtype: Optional[_DType], arg: str = "data") -> np.ndarray:
    """A new C-contiguous, native-order array of a supported dtype with a's values."""
    if a.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"{arg}: can't convert an array of dtype {a.dtype} to a tensor; "
                        "supported are float32, float64, int64 and bool")
    if dtype is None:
        k = a.dtype.kind
        if k == "f":
            target = np.dtype(np.float64) if a.dtype.itemsize == 8 else np.dtype(np.float32)
        elif k == "b":
            target = np.dtype(np.bool_)
        else:
            if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
                raise ValueError(f"{arg}: uint64 values above 2**63-1 do not fit in int64")
            target = np.dtype(np.int64)
    else:
        target = dtype.np
    check_int_cast(a, target, arg)
    with np.errstate(over="ignore"):  # float64 -> float32 beyond the range is +-Inf, silently
        return np.array(a, dtype=target, order="C", copy=True)


def check_int_cast(a: np.ndarray, target: np.dtype, op: str) -> None:
    """Raises ValueError when float values of `a` have no integer value of dtype `target`
    (NaN, Inf, out of range): NumPy would return an arbitrary number with a RuntimeWarning."""
    if a.dtype.kind != "f" or target.kind not in "iu" or a.size == 0:
        return
    info = np.iinfo(target)
    # float64 bounds (exact powers of two): a float16 array must not round them to Inf
    ok = (a >= np.float64(info.min)) & (a < np.float64(info.max) + 1.0)  # False for NaN
    if not ok.all():
        bad = float(a[~ok].flat[0])
        raise ValueError(f"{op}: can't convert {bad!r} to {target} (NaN, Inf and values "
                         f"outside [{info.min}, {info.max}] have no integer value)")


def _infer_python(data: Any) -> np.dtype:
    """The default dtype for nested Python data: bool, int64, else float32 (PyTorch's rule)."""
    flat = np.asarray(data, dtype=object).ravel() if not isinstance(data, (numbers.Number,)) \
        else [data]
    kind = "b"
    for v in flat:
        if isinstance(v, (bool, np.bool_)):
            continue
        if isinstance(v, (numbers.Integral,)):
            kind = "i" if kind == "b" else kind
        elif isinstance(v, numbers.Real):
            kind = "f"
        elif isinstance(v, Tensor):
            return v._data.dtype
        elif isinstance(v, (list, tuple)):  # NumPy left a sequence as an element: ragged
            raise TypeError("data: nested sequences must be rectangular (all rows of equal "
                            "length), got a ragged list")
        else:
            raise TypeError(f"data: can't build a tensor from an element of type "
                            f"{type(v).__name__}")
    if kind == "b" and len(flat) == 0:
        return np.dtype(np.float32)
    return {"b": np.dtype(np.bool_), "i": np.dtype(np.int64), "f": np.dtype(np.float32)}[kind]


def _as_array(data: Any, dtype: Optional[_DType]) -> np.ndarray:
    if isinstance(data, Tensor):
        return _convert_array(data._data, dtype if dtype is not None else data.dtype)
    if isinstance(data, np.ndarray):
        return _convert_array(data, dtype)
    if isinstance(data, np.generic):
        return _convert_array(np.asarray(data), dtype)
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"data: can't build a tensor from {type(data).__name__}")
    if isinstance(data, (list, tuple)) and any(isinstance(v, Tensor) for v in _flat_iter(data)):
        data = _nested_to_arrays(data)
    target = dtype.np if dtype is not None else _infer_python(data)
    try:
        with np.errstate(over="ignore"):  # a float beyond float32's range becomes +-Inf
            arr = np.array(data, dtype=target)
    except OverflowError as e:  # an int beyond int64, or Inf/1e30 with an integer dtype
        raise ValueError(f"data: can't build a tensor of dtype {target}: {e}") from None
    except (ValueError, TypeError) as e:
        raise TypeError(f"data: can't build a tensor from {type(data).__name__}: {e}") from None
    if arr.dtype == object:
        raise TypeError("data: nested sequences must be rectangular numbers")
    return contiguous(arr)


def _flat_iter(data: Any):
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        else:
            yield v


def _nested_to_arrays(data: Any) -> Any:
    if isinstance(data, Tensor):
        return data._data
    if isinstance(data, (list, tuple)):
        return [_nested_to_arrays(v) for v in data]
    return data


def contiguous(a: np.ndarray) -> np.ndarray:
    """a itself when C-contiguous and aligned (what the kernels need), else a C-contiguous
    copy; keeps 0-d arrays 0-d (unlike np.ascontiguousarray, which returns at least 1-d)."""
    flags = a.flags
    if flags.c_contiguous and flags.aligned:
        return a
    return copy_c(a)


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def copy_c(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a: float32/float64 through the elementwise copy kernel (so a
    step compiled by gd.compile records it; strided and broadcast views are read in place),
    anything else through NumPy."""
    if (a.dtype is _F32 or a.dtype is _F64) and a.flags.aligned:
        try:
            return _core.elementwise(_core.EW_OPS["copy"], a)
        except ValueError:  # a byte stride that is not a multiple of the element size
            pass
    return np.array(a, order="C")


def call_kernel(kernel: Any, *args: Any) -> Any:
    """kernel(*args) for a graddesc._core function, repeated on C-contiguous copies of the array
    arguments if it raises ValueError: the bindings check every array's layout anyway, and
    almost every array here is already a kernel's C-contiguous output, so checking each one in
    Python first (contiguous()) would cost more than the call."""
    try:
        return kernel(*args)
    except ValueError:  # not C-contiguous or not aligned (or an error the retry raises again)
        pass
    return kernel(*[contiguous(a) if isinstance(a, np.ndarray) else a for a in args])


def _shape_args(size: Sequence[Any], fn: str) -> tuple:
    """Accepts f(2, 3) and f((2, 3)); validates non-negative integers."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    shape = []
    for s in size:
        if isinstance(s, Tensor):
            s = s.item()
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{fn}: size must be a sequence of ints, got {type(s).__name__}")
        if s < 0:
            raise ValueError(f"{fn}: negative dimension {s} in size {tuple(size)}")
        shape.append(int(s))
    return tuple(shape)


def _compose(first: Any, second: Any) -> Any:
    """x -> second(first(x)): the view function of a view of a view."""
    return lambda a: second(first(a))


class Size(tuple):
    """A tensor's shape: a tuple, printed like torch.Size.

    >>> s = gd.zeros(2, 3).shape
    >>> s
    graddesc.Size([2, 3])
    >>> s.numel(), s[1], s == (2, 3)
    (6, 3, True)
    """

    def __repr__(self) -> str:
        return f"graddesc.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class Tensor:
    """An n-d array of float32 (default), float64, int64 or bool that can record gradients."""

    # _base: the tensor whose memory this one views (shares its version counter), or None.
    # _vinfo: for a differentiable view (made by a view op), (root, fn): `root` is the first
    #   tensor of the chain of view ops that made it, `fn` maps an array shaped like root to this
    #   view of it. An in-place op on the root or on any of its views rewrites the history of the
    #   root and of every live view (_views, weak references kept on the root), as PyTorch does.
    __slots__ = ("_data", "requires_grad", "_grad", "grad_fn", "_output_nr", "_vc", "_base",
                 "_leaf_edge", "_vinfo", "_views", "__weakref__")
    __array_priority__ = 1000  # NumPy defers to our reflected operators

    def __init__(self, data: Any = (), *, dtype: Any = None, requires_grad: bool = False) -> None:
        d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.float32
        if isinstance(data, Tensor):
            arr = _convert_array(data._data, d if dtype is not None else data.dtype)
        else:
            arr = _as_array(data, d)
        self._init(arr, False)
        if requires_grad:
            self.requires_grad_(True)

    def _init(self, data: np.ndarray, requires_grad: bool) -> None:
        # (Tensor._make sets these fields too: it makes every op's output, so it skips the call)
        self._data = data
        self.requires_grad = requires_grad
        self._grad = None
        self.grad_fn = None
        self._output_nr = 0
        self._vc = [0]
        self._base = None
        self._leaf_edge = None
        self._vinfo = None
        self._views = None

    @staticmethod
    def _make(data: np.ndarray, requires_grad: bool = False) -> Tensor:
        """Wraps an array without copying or checking (for arrays graddesc itself produced)."""
        t = object.__new__(Tensor)
        t._data = data  # the fields of _init
        t.requires_grad = requires_grad
        t._grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._vc = [0]
        t._base = None
        t._leaf_edge = None
        t._vinfo = None
        t._views = None
        return t

    def _view_of(self, data: np.ndarray, fn: Any = None) -> Tensor:
        """A tensor on `data`, a view of self's memory: shares the version counter. `fn`, given
        by view ops, maps an array shaped like self to `data`'s view of it (`fn(self._data)` is
        `data`); it makes the result a differentiable view (see _vinfo). detach() gives none."""
        t = Tensor._make(data)
        t._vc = self._vc
        t._base = self._base if self._base is not None else self
        if fn is not None:
            info = self._vinfo
            if info is None:
                root = self
            else:
                root, parent = info
                fn = _compose(parent, fn)
            t._vinfo = (root, fn)
            views = root._views
            if views is None:
                root._views = [weakref.ref(t)]
            else:
                n = len(views)
                if n >= 64 and n & (n - 1) == 0:  # drop the dead ones at 64, 128, 256, ...
                    views[:] = [r for r in views if r() is not None]
                views.append(weakref.ref(t))
        return t

    def _shallow(self) -> Tensor:
        return self._view_of(self._data)

    # ---- basic attributes ---------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: Optional[int] = None) -> Any:
        """The shape, or the length of dimension `dim`."""
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_norm_dim(dim, self.ndim, "size")]

    @property
    def dtype(self) -> _DType:
        return _dtype.from_numpy_dtype(self._data.dtype)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def device(self) -> Any:
        return _device("cpu")

    @property
    def is_cuda(self) -> bool:
        return False

    @property
    def data(self) -> Tensor:
        """A detached tensor sharing memory (PyTorch's .data)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"data: expected a Tensor, got {type(value).__name__}")
        if value._data is self._data:
            return  # `p.data -= u` stores back the very array it updated: nothing rebinds
        self._data = value._data
        self._vc[0] += 1
        _cs.bump_storage()

    @property
    def grad(self) -> Optional[Tensor]:
        if _cs.pending:  # a gd.compile replay deferred storing this gradient until now
            _cs.materialize(self)
        return self._grad

    @grad.setter
    def grad(self, value: Optional[Tensor]) -> None:
        if value is None and _cs.active is not None:
            _cs.active.on_grad_cleared(self)
        if value is not None:
            if _cs.active is not None:  # (a recorded program writes the .grad it saw)
                _cs.active.on_side_effect("assigning a tensor to .grad")
            if not isinstance(value, Tensor):
                raise TypeError(f"grad: expected a Tensor or None, got {type(value).__name__}")
            if value._data.shape != self._data.shape:
                raise ValueError(f"grad: assigned grad has shape {tuple(value.shape)}, but the "
                                 f"tensor has shape {tuple(self.shape)}")
            if value._data.dtype != self._data.dtype:
                raise TypeError(f"grad: assigned grad has dtype {value.dtype}, but the tensor "
                                f"has dtype {self.dtype}")
        self._grad = value

    @property
    def _version(self) -> int:
        return self._vc[0]

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Sets requires_grad in place (leaves only); returns self."""
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError(f"only Tensors of floating point dtype can require gradients, "
                               f"got {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables; use "
                               "detach() for a non-leaf")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keeps .grad of a non-leaf after backward (unsupported: raises to avoid silence)."""
        if self.grad_fn is None:
            return
        raise RuntimeError("retain_grad() on non-leaf tensors is not supported by graddesc; "
                           "use graddesc.autograd.grad(loss, tensor) instead")

    # ---- conversion ---------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The underlying array (shares memory). Raises if the tensor requires grad."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        _cs.value_read("numpy()")
        return self._data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        _cs.value_read("numpy.asarray()")
        if self.requires_grad:
            raise RuntimeError("Can't convert a Tensor that requires grad to a NumPy array. Use "
                               "tensor.detach().numpy() instead.")
        a = self._data
        if dtype is not None:
            a = a.astype(dtype, copy=False)
        if copy:
            a = a.copy()
        return a

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        _cs.value_read("item()")
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               "to a Python scalar")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        _cs.value_read("tolist()")
        return self._data.tolist()

    def __float__(self) -> float:
        return builtins.float(self.item())

    def __int__(self) -> int:
        return builtins.int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return builtins.int(self.item())

    def __bool__(self) -> bool:
        _cs.value_read("bool() (Python control flow on a tensor's value)")
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} elements is "
                               "ambiguous")
        return builtins.bool(self._data.reshape(()).item())

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self._data.shape[0]):
            yield self[i]

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        body = _format_array(self._data)
        extra = []
        if self._data.dtype not in (np.float32, np.int64, np.bool_) or self._data.size == 0:
            extra.append(f"dtype={self.dtype!r}")
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0 or self._data.size == 1 and spec:
            return format(self.item(), spec)
        return repr(self)

    # ---- copies, dtype (clone, contiguous and to are ops: see the module's docstring) ----------
    def detach(self) -> Tensor:
        """A tensor sharing memory and version counter, cut from the graph."""
        return self._view_of(self._data)

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def is_contiguous(self) -> bool:
        return builtins.bool(self._data.flags.c_contiguous)

    def float(self) -> Tensor:
        return self.to(_dtype.float32)

    def double(self) -> Tensor:
        return self.to(_dtype.float64)

    def long(self) -> Tensor:
        return self.to(_dtype.int64)

    def bool(self) -> Tensor:
        return self.to(_dtype.bool_)

    def type(self, dtype: Any = None) -> Any:
        if dtype is None:
            return {"float32": "graddesc.FloatTensor", "float64": "graddesc.DoubleTensor",
                    "int64": "graddesc.LongTensor", "bool": "graddesc.BoolTensor"}[self.dtype.name]
        return self.to(dtype)

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        check_device("cuda", "Tensor.cuda")
        return self

    # ---- autograd (backward and register_post_accumulate_grad_hook: autograd/engine.py) --------
    def register_hook(self, hook: Any) -> None:
        raise RuntimeError("register_hook is not supported by graddesc")


def _format_array(a: np.ndarray) -> str:
    """PyTorch's look: 'tensor([1., 2.])' for integral floats, 4 decimals otherwise, scientific
    notation for very large or small magnitudes."""
    opts: dict = {"separator": ", ", "prefix": "tensor("}
    if a.dtype.kind == "f" and a.size:
        finite = a[np.isfinite(a)]
        mx = float(np.abs(finite).max()) if finite.size else 0.0
        nz = np.abs(finite[finite != 0])
        mn = float(nz.min()) if nz.size else 0.0
        sign = " " if bool((a < 0).any()) else ""  # PyTorch aligns positives with negatives
        if finite.size and np.all(finite == np.round(finite)) and mx < 1e8:
            fmt = "{:" + sign + ".0f}."
        elif mx >= 1e8 or (mn and mn < 1e-4) or (mn and mx / mn > 1e3 and mx > 1e3):
            fmt = "{:" + sign + ".4e}"
        else:
            fmt = "{:" + sign + ".4f}"
        opts["formatter"] = {"float_kind": lambda v: fmt.format(v) if np.isfinite(v) else
                             (sign + str(v) if v > 0 else str(v))}
    return np.array2string(a, **opts)


def _value(x: Any) -> Any:
    """The NumPy value of a Tensor or a Python/NumPy scalar or array."""
    if isinstance(x, Tensor):
        return x._data
    if isinstance(x, np.generic):
        return x.item()
    return x


def _any_requires_grad(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


def _norm_dim(dim: int, ndim: int, op: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if dim < lo or dim > hi:
        raise IndexError(f"{op}: Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {dim})")
    return int(dim) % ndim if ndim else 0


