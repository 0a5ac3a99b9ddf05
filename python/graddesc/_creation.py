"""Tensor creation: tensor, from_numpy, zeros/ones/empty/full/arange/eye, random tensors."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from graddesc import _aligned, _compile_state, _dtype, _random
from graddesc._device import check_device
from graddesc._tensor import Tensor, _as_array, _shape_args


def _finish(data: np.ndarray, requires_grad: bool) -> Tensor:
    t = Tensor._make(data)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _const(data: np.ndarray, requires_grad: bool) -> Tensor:
    """_finish for the functions whose values depend only on their Python arguments: inside a
    gd.compile recording the array becomes a constant of the program (not when it requires grad:
    then it is a leaf of the graph, made anew by every eager call)."""
    if not requires_grad:
        _compile_state.constant(data)
    return _finish(data, requires_grad)


def _float_dtype(dtype: Any, fn: str) -> _dtype.dtype:
    d = _dtype.to_dtype(dtype, f"{fn}: dtype") if dtype is not None else _dtype.float32
    return d


def _foreign_array(data: Any) -> Any:
    """Another library's tensor (PyTorch, JAX, CuPy on the host) as a NumPy array, through
    DLPack or __array__: its dtype is kept (float64 stays float64) and no Python loop runs
    over the elements. Anything else is returned unchanged."""
    if isinstance(data, (Tensor, np.ndarray, np.generic, list, tuple, int, float, bool)):
        return data
    if hasattr(data, "__dlpack__"):
        if callable(getattr(data, "detach", None)):  # a PyTorch tensor that requires grad
            data = data.detach()
        try:
            return np.from_dlpack(data)
        except (BufferError, TypeError, RuntimeError):
            pass  # e.g. a dtype NumPy's DLPack import lacks: fall back to __array__
    if hasattr(data, "__array__"):
        return np.asarray(data)
    return data


def from_dlpack(ext: Any) -> Tensor:
    """A tensor sharing memory with a DLPack-capable object (a PyTorch tensor, a NumPy array,
    a graddesc tensor); dtypes other than float32/float64/int64/bool raise TypeError.

    >>> a = np.arange(3.0)
    >>> gd.from_dlpack(a).tolist()
    [0.0, 1.0, 2.0]
    """
    if not hasattr(ext, "__dlpack__"):
        raise TypeError(f"from_dlpack: expected an object with __dlpack__, got "
                        f"{type(ext).__name__}")
    try:
        a = np.from_dlpack(ext)
    except (BufferError, RuntimeError) as e:
        raise TypeError(f"from_dlpack: can't import {type(ext).__name__}: {e}") from None
    if a.dtype not in (np.float32, np.float64, np.int64, np.bool_):
        raise TypeError(f"from_dlpack: unsupported dtype {a.dtype}; supported are float32, "
                        "float64, int64 and bool (convert with graddesc.tensor() to copy)")
    return Tensor._make(a)


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of data (nested lists, numbers, NumPy arrays, Tensors).

    >>> gd.tensor([[1, 2], [3, 4]], dtype=gd.float32).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    >>> gd.tensor([1.0, 2.0], requires_grad=True).requires_grad
    True
    """
    check_device(device, "tensor")
    data = _foreign_array(data)
    d = _dtype.to_dtype(dtype, "tensor: dtype") if dtype is not None else None
    if _compile_state.active is not None and _python_literal(data):
        # values written in the step's code (gd.tensor([0, 2, 4])): a constant of a recorded
        # program, as gd.zeros is (a tensor or array argument stays a read of its values)
        return _const(_as_array(data, d), requires_grad)
    return _finish(_as_array(data, d), requires_grad)


def _python_literal(data: Any) -> bool:
    """Whether data is a Python number or bool, or lists/tuples of them (nested)."""
    if type(data) in (int, float, bool):
        return True
    if type(data) in (list, tuple):
        return all(map(_python_literal, data))
    return False


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """data itself if it is already a Tensor of that dtype; shares a compatible NumPy array.

    >>> gd.as_tensor([1.5, 2.5]).tolist()
    [1.5, 2.5]
    """
    check_device(device, "as_tensor")
    data = _foreign_array(data)
    d = _dtype.to_dtype(dtype, "as_tensor: dtype") if dtype is not None else None
    if isinstance(data, Tensor):
        return data if d is None or d == data.dtype else data.to(d)
    if isinstance(data, np.ndarray) and data.dtype.isnative and \
            data.dtype in (np.float32, np.float64, np.int64, np.bool_) and \
            (d is None or d.np == data.dtype):
        return Tensor._make(data)
    return tensor(data, dtype=d)


def from_numpy(a: np.ndarray) -> Tensor:
    """A tensor sharing memory with `a` (writes through both ways); no dtype conversion.

    >>> a = np.zeros(3, dtype=np.float32)
    >>> t = gd.from_numpy(a)
    >>> a[0] = 5.0
    >>> t.tolist()
    [5.0, 0.0, 0.0]
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64, np.int64, np.bool_) or not a.dtype.isnative:
        raise TypeError(f"from_numpy: can't share memory with an array of dtype {a.dtype}; "
                        "supported are float32, float64, int64 and bool in native byte order "
                        "(use graddesc.tensor() to copy and convert)")
    return Tensor._make(a)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of the given size (float32 unless `dtype` says otherwise).

    >>> gd.zeros(2, 3).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    >>> gd.zeros((2,), dtype=gd.float64).dtype
    graddesc.float64
    """
    check_device(device, "zeros")
    return _const(_aligned.zeros(_shape_args(size, "zeros"), _float_dtype(dtype, "zeros").np),
                  requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of the given size (float32 unless `dtype` says otherwise).

    >>> gd.ones(2, 2).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    check_device(device, "ones")
    return _const(_aligned.full(_shape_args(size, "ones"), 1, _float_dtype(dtype, "ones").np),
                  requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor of the given size: its values are whatever the memory held.

    >>> tuple(gd.empty(3, 4).shape)
    (3, 4)
    """
    check_device(device, "empty")
    return _const(_aligned.empty(_shape_args(size, "empty"), _float_dtype(dtype, "empty").np),
                  requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of `size` filled with `fill_value`; the dtype follows the value (bool, int64,
    float32) unless `dtype` is given.

    >>> gd.full((2, 2), 7.5).tolist()
    [[7.5, 7.5], [7.5, 7.5]]
    >>> gd.full((3,), 2).dtype
    graddesc.int64
    """
    check_device(device, "full")
    shape = _shape_args((size,) if isinstance(size, (tuple, list)) else (size,), "full")
    if dtype is None:
        d = _dtype.bool_ if isinstance(fill_value, bool) else (
            _dtype.int64 if isinstance(fill_value, (int, np.integer)) else _dtype.float32)
    else:
        d = _dtype.to_dtype(dtype, "full: dtype")
    return _const(np.full(shape, fill_value, d.np), requires_grad)


def _like(t: Tensor, fn: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: expected a Tensor, got {type(t).__name__}")
    return t


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    """Zeros with the shape and dtype of `t` (or `dtype`).

    >>> gd.zeros_like(gd.ones(2, 3)).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    check_device(device, "zeros_like")
    d = _dtype.to_dtype(dtype) if dtype is not None else _like(t, "zeros_like").dtype
    return _const(_aligned.zeros(t._data.shape, d.np), requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    """Ones with the shape and dtype of `t` (or `dtype`).

    >>> gd.ones_like(gd.zeros(3)).tolist()
    [1.0, 1.0, 1.0]
    """
    check_device(device, "ones_like")
    d = _dtype.to_dtype(dtype) if dtype is not None else _like(t, "ones_like").dtype
    return _const(_aligned.full(t._data.shape, 1, d.np), requires_grad)


def empty_like(t: Tensor, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor with the shape and dtype of `t` (or `dtype`).

    >>> tuple(gd.empty_like(gd.zeros(2, 5)).shape)
    (2, 5)
    """
    check_device(device, "empty_like")
    d = _dtype.to_dtype(dtype) if dtype is not None else _like(t, "empty_like").dtype
    return _const(_aligned.empty(t._data.shape, d.np), requires_grad)


def full_like(t: Tensor, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    """`fill_value` everywhere, with the shape and dtype of `t` (or `dtype`).

    >>> gd.full_like(gd.zeros(2), 3.0).tolist()
    [3.0, 3.0]
    """
    check_device(device, "full_like")
    d = _dtype.to_dtype(dtype) if dtype is not None else _like(t, "full_like").dtype
    return _const(np.full(t._data.shape, fill_value, d.np), requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Values from start (default 0) up to end (exclusive); int64 for integer arguments.

    >>> gd.arange(4).tolist()
    [0, 1, 2, 3]
    >>> gd.arange(0, 1, 0.25).tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    check_device(device, "arange")
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                   for v in (start, end, step))
        d = _dtype.int64 if ints else _dtype.float32
    else:
        d = _dtype.to_dtype(dtype, "arange: dtype")
    return _const(np.arange(start, end, step).astype(d.np), requires_grad)


def linspace(start: float, end: float, steps: int, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from `start` to `end`, both included.

    >>> gd.linspace(0, 1, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    check_device(device, "linspace")
    if steps < 0:
        raise RuntimeError("linspace: number of steps must be non-negative")
    return _const(np.linspace(start, end, steps).astype(_float_dtype(dtype, "linspace").np),
                  requires_grad)


def eye(n: int, m: Optional[int] = None, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    """The n x m (default n x n) identity matrix.

    >>> gd.eye(2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    check_device(device, "eye")
    if n < 0 or (m is not None and m < 0):
        raise RuntimeError(f"eye: n and m must be non-negative, got n={n}, m={m}")
    return _const(np.eye(n, m, dtype=_float_dtype(dtype, "eye").np), requires_grad)


def randn(*size: Any, generator: Any = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples.

    >>> tuple(gd.randn(2, 3).shape)
    (2, 3)
    """
    check_device(device, "randn")
    d = _float_dtype(dtype, "randn")
    t = _random.normal(_shape_args(size, "randn"), 0.0, 1.0, d, generator, requires_grad)
    return _finish(t._data, requires_grad)


def rand(*size: Any, generator: Any = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1).

    >>> x = gd.rand(100)
    >>> bool((x >= 0).all() and (x < 1).all())
    True
    """
    check_device(device, "rand")
    d = _float_dtype(dtype, "rand")
    t = _random.uniform(_shape_args(size, "rand"), 0.0, 1.0, d, generator, requires_grad)
    return _finish(t._data, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, generator: Any = None,
            dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Integers uniform in [low, high); randint(high, size) also works.

    >>> x = gd.randint(0, 3, (100,))
    >>> sorted(set(x.tolist()))
    [0, 1, 2]
    """
    check_device(device, "randint")
    if size is None:
        if isinstance(high, (tuple, list)):
            low, high, size = 0, low, high
        else:
            raise TypeError("randint: missing the 'size' argument")
    if high is None:
        low, high = 0, low
    if high <= low:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    shape = _shape_args((size,) if isinstance(size, (tuple, list)) else (size,), "randint")
    d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.int64
    t = _random.integers(shape, low, high, d, generator, requires_grad)
    return _finish(t._data, requires_grad)


def rand_like(t: Tensor, dtype: Any = None, device: Any = None, generator: Any = None,
              requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) shaped like t (t's floating dtype unless dtype is given).

    >>> tuple(gd.rand_like(gd.zeros(2, 2)).shape)
    (2, 2)
    """
    check_device(device, "rand_like")
    d = _dtype.to_dtype(dtype, "rand_like: dtype") if dtype is not None else \
        _like(t, "rand_like").dtype
    if not d.is_floating_point:
        raise TypeError(f"rand_like: dtype must be floating point, got {d}")
    t2 = _random.uniform(tuple(t.shape), 0.0, 1.0, d, generator, requires_grad)
    return _finish(t2._data, requires_grad)


def randn_like(t: Tensor, dtype: Any = None, device: Any = None, generator: Any = None,
               requires_grad: bool = False) -> Tensor:
    """Standard normal samples shaped like t (t's floating dtype unless dtype is given).

    >>> gd.randn_like(gd.zeros(3, dtype=gd.float64)).dtype
    graddesc.float64
    """
    check_device(device, "randn_like")
    d = _dtype.to_dtype(dtype, "randn_like: dtype") if dtype is not None else \
        _like(t, "randn_like").dtype
    if not d.is_floating_point:
        raise TypeError(f"randn_like: dtype must be floating point, got {d}")
    t2 = _random.normal(tuple(t.shape), 0.0, 1.0, d, generator, requires_grad)
    return _finish(t2._data, requires_grad)


def randperm(n: int, generator: Any = None, dtype: Any = None, device: Any = None) -> Tensor:
    """A random permutation of 0 .. n-1 (int64), drawn from `generator` or the global one.

    >>> sorted(gd.randperm(5).tolist())
    [0, 1, 2, 3, 4]
    """
    check_device(device, "randperm")
    d = _dtype.to_dtype(dtype) if dtype is not None else _dtype.int64
    return _random.permutation(n, d, generator)


def normal(mean: float, std: float, size: Any, generator: Any = None, dtype: Any = None,
           device: Any = None, requires_grad: bool = False) -> Tensor:
    """Samples of a normal distribution with the given mean and standard deviation.

    >>> x = gd.normal(2.0, 0.5, (10000,), generator=gd.Generator().manual_seed(0))
    >>> round(x.mean().item(), 1), round(x.std().item(), 1)
    (2.0, 0.5)
    """
    check_device(device, "normal")
    t = _random.normal(_shape_args(tuple(size), "normal"), mean, std,
                       _float_dtype(dtype, "normal"), generator, requires_grad)
    return _finish(t._data, requires_grad)
