"""Binds Tensor's methods that are ops: each is defined in the layer that owns it (the ops in
graddesc.functional, in-place ops in functional/inplace.py, backward in autograd/engine.py) and
attached here, above both Tensor and the ops, so that no module imports one above it
(docs/architecture.md, "Layers"). `_tensor.pyi` declares them for type checkers; regenerate it
with `python tools/gen_tensor_stub.py` after adding a method here."""

from __future__ import annotations

from typing import Any

import numpy as np

from graddesc import _core, _creation
from graddesc._tensor import Tensor, _convert_array, call_kernel
from graddesc.autograd import engine
from graddesc.functional import activation as act
from graddesc.functional import combine as cmb
from graddesc.functional import elementwise as ew
from graddesc.functional import indexing as idx
from graddesc.functional import inplace as ip
from graddesc.functional import linalg_extra as lx
from graddesc.functional import linear as lin
from graddesc.functional import loss as lss
from graddesc.functional import math as gmath
from graddesc.functional import math_extra as mx
from graddesc.functional import port_ops as pops
from graddesc.functional import reduce as red
from graddesc.functional import shape as shp
from graddesc.functional import shape_extra as sx
from graddesc.functional import sorting as srt


def _rsub(self: Tensor, other: Any) -> Tensor:
    return ew.sub(other, self)


def _rdiv(self: Tensor, other: Any) -> Tensor:
    return ew.div(other, self)


def _rpow(self: Tensor, other: Any) -> Tensor:
    return ew.pow(other, self)


def _rmatmul(self: Tensor, other: Any) -> Tensor:
    return lin.matmul(other, self)


def _matmul(self: Tensor, other: Any) -> Tensor:
    return lin.matmul(self, other)


def _iop(name: str, method: str) -> Any:
    def f(self: Tensor, other: Any) -> Tensor:
        return getattr(self, method)(other)

    f.__name__ = name
    return f


def _pow(self: Tensor, e: Any) -> Tensor:
    return ew.pow(self, e)


def _sub(self: Tensor, other: Any, alpha: Any = 1) -> Tensor:
    return ew.sub(self, other, alpha=alpha)


def _add(self: Tensor, other: Any, alpha: Any = 1) -> Tensor:
    return ew.add(self, other, alpha=alpha)


def _getitem(self: Tensor, index: Any) -> Tensor:
    return shp.getitem(self, index)


def _invert(self: Tensor) -> Tensor:
    if self._data.dtype.kind not in "biu":
        raise TypeError(f"~ (bitwise not) is only defined for bool and integer tensors, got "
                        f"{self.dtype}")
    if self._data.dtype in ew._INT_KERNEL_DTYPES:  # the kernel: gd.compile records it
        return Tensor._make(call_kernel(_core.int_unary, "invert", self._data))
    return Tensor._make(np.asarray(~self._data))  # 0-d stays an array, not a scalar


def _and(self: Tensor, other: Any) -> Tensor:
    return ew._logical(np.bitwise_and, self, other, "&")


def _or(self: Tensor, other: Any) -> Tensor:
    return ew._logical(np.bitwise_or, self, other, "|")


def _xor(self: Tensor, other: Any) -> Tensor:
    return ew._logical(np.bitwise_xor, self, other, "^")


# ---- PyTorch-port methods (issue 16) ------------------------------------------------------------
def _accept_ndarray(fn: Any) -> Any:
    """fn with a NumPy array operand converted to a tensor first (t + ndarray, ndarray + t:
    PyTorch converts it, keeping its dtype, so float32 + float64-array is float64)."""
    def f(self: Tensor, other: Any, *args: Any, **kwargs: Any) -> Tensor:
        if type(other) is np.ndarray:
            other = Tensor._make(_convert_array(other, None, "operand"))
        return fn(self, other, *args, **kwargs)

    f.__name__ = getattr(fn, "__name__", "op")
    return f


_inplace = ip.inplace_method


def _new_dtype(self: Tensor, dtype: Any) -> Any:
    return self.dtype if dtype is None else dtype


def _new_zeros(self: Tensor, *size: Any, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return _creation.zeros(*size, dtype=_new_dtype(self, dtype), device=device,
                           requires_grad=requires_grad)


def _new_ones(self: Tensor, *size: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return _creation.ones(*size, dtype=_new_dtype(self, dtype), device=device,
                          requires_grad=requires_grad)


def _new_empty(self: Tensor, *size: Any, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return _creation.empty(*size, dtype=_new_dtype(self, dtype), device=device,
                           requires_grad=requires_grad)


def _new_full(self: Tensor, size: Any, fill_value: Any, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return _creation.full(size, fill_value, dtype=_new_dtype(self, dtype), device=device,
                          requires_grad=requires_grad)


def _new_tensor(self: Tensor, data: Any, dtype: Any = None, device: Any = None,
                requires_grad: bool = False) -> Tensor:
    return _creation.tensor(data, dtype=_new_dtype(self, dtype), device=device,
                            requires_grad=requires_grad)


def _type_as(self: Tensor, other: Tensor) -> Tensor:
    if not isinstance(other, Tensor):
        raise TypeError(f"type_as: other must be a Tensor, got {type(other).__name__}")
    return self.to(other.dtype)


def _dlpack(self: Tensor, stream: Any = None, **kwargs: Any) -> Any:
    """The DLPack capsule of the data (shares memory, as torch.from_dlpack expects)."""
    if self.requires_grad:
        raise RuntimeError("__dlpack__: can't export a tensor that requires grad; use "
                           "tensor.detach() first")
    if stream is not None:
        raise BufferError("__dlpack__: stream must be None for a CPU tensor")
    return self._data.__dlpack__(**kwargs)


def _dlpack_device(self: Tensor) -> tuple:
    return self._data.__dlpack_device__()


_METHODS = {
    # arithmetic
    "__add__": _add, "__radd__": _add, "add": _add,
    "__sub__": _sub, "__rsub__": _rsub, "sub": _sub,
    "__mul__": ew.mul, "__rmul__": ew.mul, "mul": ew.mul,
    "__truediv__": ew.div, "__rtruediv__": _rdiv, "div": ew.div,
    "__pow__": _pow, "__rpow__": _rpow, "pow": _pow,
    "__matmul__": _matmul, "__rmatmul__": _rmatmul, "matmul": _matmul, "mm": lin.mm,
    "__neg__": ew.neg, "neg": ew.neg, "__pos__": lambda self: self,
    "__abs__": ew.abs, "abs": ew.abs, "sign": ew.sign, "sqrt": ew.sqrt,
    "clamp": ew.clamp, "clip": ew.clamp, "maximum": ew.maximum, "minimum": ew.minimum,
    "__iadd__": _iop("__iadd__", "add_"), "__isub__": _iop("__isub__", "sub_"),
    "__imul__": _iop("__imul__", "mul_"), "__itruediv__": _iop("__itruediv__", "div_"),
    # comparisons and logic
    "__eq__": ew.eq, "__ne__": ew.ne, "__lt__": ew.lt, "__le__": ew.le, "__gt__": ew.gt,
    "__ge__": ew.ge, "eq": ew.eq, "ne": ew.ne, "lt": ew.lt, "le": ew.le, "gt": ew.gt,
    "ge": ew.ge, "__invert__": _invert, "__and__": _and, "__or__": _or, "__xor__": _xor,
    "logical_not": ew.logical_not, "isnan": ew.isnan, "isfinite": ew.isfinite,
    # nonlinearities (C++)
    "relu": act.relu, "tanh": act.tanh, "sigmoid": act.sigmoid, "exp": act.exp,
    "log": act.log, "softplus": act.softplus, "gelu": act.gelu, "leaky_relu": act.leaky_relu,
    "softmax": lss.softmax, "log_softmax": lss.log_softmax,
    # reductions
    "sum": red.sum, "mean": red.mean, "max": red.max, "min": red.min, "amax": red.amax,
    "amin": red.amin, "argmax": red.argmax, "argmin": red.argmin, "var": red.var,
    "std": red.std, "logsumexp": red.logsumexp,
    # shape
    "view": shp.view, "reshape": shp.reshape, "flatten": shp.flatten, "permute": shp.permute,
    "transpose": shp.transpose, "t": shp.t, "expand": shp.expand, "expand_as": shp.expand_as,
    "squeeze": shp.squeeze, "unsqueeze": shp.unsqueeze, "__getitem__": _getitem,
    "squeeze_": ip.squeeze_, "unsqueeze_": ip.unsqueeze_, "transpose_": ip.transpose_,
    "t_": ip.t_,
    "split": shp.split, "chunk": shp.chunk, "movedim": sx.movedim,
    "view_as": lambda self, other: shp.view(self, *other.shape),
    "reshape_as": lambda self, other: shp.reshape(self, *other.shape),
    # ---- PyTorch-port methods (issue 16): math, indexing, sorting, factories, DLPack
    "norm": gmath.norm, "square": gmath.square, "prod": gmath.prod, "all": gmath.all,
    "any": gmath.any, "sin": gmath.sin, "cos": gmath.cos, "round": gmath.round,
    "floor": gmath.floor, "ceil": gmath.ceil,
    "square_": _inplace(gmath.square, "square_"), "sin_": _inplace(gmath.sin, "sin_"),
    "cos_": _inplace(gmath.cos, "cos_"), "round_": _inplace(gmath.round, "round_"),
    "floor_": _inplace(gmath.floor, "floor_"), "ceil_": _inplace(gmath.ceil, "ceil_"),
    "gather": idx.gather, "scatter": idx.scatter, "scatter_add": idx.scatter_add,
    "index_select": idx.index_select, "masked_fill": idx.masked_fill, "repeat": idx.repeat,
    "flip": idx.flip, "unbind": idx.unbind,
    "scatter_": _inplace(idx.scatter, "scatter_"),
    "scatter_add_": _inplace(idx.scatter_add, "scatter_add_"),
    "masked_fill_": _inplace(idx.masked_fill, "masked_fill_"),
    "sort": srt.sort, "argsort": srt.argsort, "topk": srt.topk, "cumsum": srt.cumsum,
    "cumprod": srt.cumprod, "kthvalue": srt.kthvalue, "cumsum_": _inplace(srt.cumsum, "cumsum_"),
    "new_zeros": _new_zeros, "new_ones": _new_ones, "new_empty": _new_empty,
    "new_full": _new_full, "new_tensor": _new_tensor, "type_as": _type_as,
    "__dlpack__": _dlpack, "__dlpack_device__": _dlpack_device,
    # more everyday methods (functional/port_ops.py) and in-place forms
    "log1p": pops.log1p, "expm1": pops.expm1, "reciprocal": pops.reciprocal,
    "rsqrt": pops.rsqrt, "remainder": pops.remainder, "fmod": pops.fmod,
    "floor_divide": pops.floor_divide, "__mod__": pops.remainder,
    "__rmod__": lambda self, other: pops.remainder(other, self),
    "__floordiv__": pops.floor_divide,
    "__rfloordiv__": lambda self, other: pops.floor_divide(other, self),
    "tril": pops.tril, "triu": pops.triu, "outer": pops.outer, "bmm": pops.bmm,
    "masked_select": pops.masked_select, "nonzero": pops.nonzero,
    "count_nonzero": pops.count_nonzero, "isinf": pops.isinf, "isclose": pops.isclose,
    "allclose": pops.allclose, "equal": pops.equal, "clamp_min": pops.clamp_min,
    "clamp_max": pops.clamp_max,
    "where": lambda self, condition, other: ew.where(condition, self, other),
    "exp_": _inplace(act.exp, "exp_"), "log_": _inplace(act.log, "log_"),
    "sqrt_": _inplace(ew.sqrt, "sqrt_"), "abs_": _inplace(ew.abs, "abs_"),
    "neg_": _inplace(ew.neg, "neg_"), "pow_": _inplace(_pow, "pow_"),
    "sigmoid_": _inplace(act.sigmoid, "sigmoid_"), "tanh_": _inplace(act.tanh, "tanh_"),
    "clamp_min_": _inplace(pops.clamp_min, "clamp_min_"),
    "clamp_max_": _inplace(pops.clamp_max, "clamp_max_"),
    "log1p_": _inplace(pops.log1p, "log1p_"), "reciprocal_": _inplace(pops.reciprocal,
                                                                     "reciprocal_"),
    "tril_": _inplace(pops.tril, "tril_"), "triu_": _inplace(pops.triu, "triu_"),
    # linear algebra for ports (functional/linalg_extra.py)
    "addmm": lx.addmm, "addmv": lx.addmv, "addbmm": lx.addbmm, "baddbmm": lx.baddbmm,
    "mv": lx.mv, "dot": lx.dot, "vdot": lx.vdot, "diag": lx.diag, "diagonal": lx.diagonal,
    "trace": lx.trace, "kron": lx.kron, "cross": lx.cross,
    # shape utilities for ports (functional/shape_extra.py)
    "moveaxis": sx.moveaxis, "swapaxes": sx.swapaxes, "swapdims": sx.swapdims,
    "narrow": sx.narrow, "roll": sx.roll, "tile": sx.tile,
    "repeat_interleave": sx.repeat_interleave, "take_along_dim": sx.take_along_dim,
    "index_add": sx.index_add, "index_copy": sx.index_copy, "index_fill": sx.index_fill,
    "index_add_": _inplace(sx.index_add, "index_add_"),
    "index_copy_": _inplace(sx.index_copy, "index_copy_"),
    "index_fill_": _inplace(sx.index_fill, "index_fill_"),
    "diff": sx.diff, "rot90": sx.rot90,
    # pointwise math and reductions for ports (functional/math_extra.py)
    "acos": mx.acos, "acosh": mx.acosh, "asin": mx.asin, "asinh": mx.asinh, "atan": mx.atan,
    "atan2": mx.atan2, "atanh": mx.atanh, "cosh": mx.cosh, "cummax": mx.cummax,
    "cummin": mx.cummin, "erf": mx.erf, "erfc": mx.erfc, "erfinv": mx.erfinv, "exp2": mx.exp2,
    "frac": mx.frac, "heaviside": mx.heaviside, "hypot": mx.hypot, "log10": mx.log10,
    "log2": mx.log2, "logaddexp": mx.logaddexp, "logcumsumexp": mx.logcumsumexp,
    "logit": mx.logit, "median": mx.median,
    "nan_to_num": mx.nan_to_num, "nanmean": mx.nanmean, "nansum": mx.nansum, "sinh": mx.sinh,
    "tan": mx.tan, "trunc": mx.trunc, "acos_": _inplace(mx.acos, "acos_"),
    "acosh_": _inplace(mx.acosh, "acosh_"), "asin_": _inplace(mx.asin, "asin_"),
    "asinh_": _inplace(mx.asinh, "asinh_"), "atan_": _inplace(mx.atan, "atan_"),
    "atan2_": _inplace(mx.atan2, "atan2_"), "atanh_": _inplace(mx.atanh, "atanh_"),
    "cosh_": _inplace(mx.cosh, "cosh_"), "erf_": _inplace(mx.erf, "erf_"),
    "erfc_": _inplace(mx.erfc, "erfc_"), "erfinv_": _inplace(mx.erfinv, "erfinv_"),
    "exp2_": _inplace(mx.exp2, "exp2_"), "frac_": _inplace(mx.frac, "frac_"),
    "hypot_": _inplace(mx.hypot, "hypot_"), "log10_": _inplace(mx.log10, "log10_"),
    "log2_": _inplace(mx.log2, "log2_"), "logit_": _inplace(mx.logit, "logit_"),
    "nan_to_num_": _inplace(mx.nan_to_num, "nan_to_num_"), "sinh_": _inplace(mx.sinh, "sinh_"),
    "tan_": _inplace(mx.tan, "tan_"), "trunc_": _inplace(mx.trunc, "trunc_"),
    # fused pointwise updates (functional/combine.py)
    "addcmul": cmb.addcmul, "addcdiv": cmb.addcdiv, "lerp": cmb.lerp,
    "addcmul_": _inplace(cmb.addcmul, "addcmul_"), "addcdiv_": _inplace(cmb.addcdiv, "addcdiv_"),
    "lerp_": _inplace(cmb.lerp, "lerp_"),
    # conversions and copies (functional/shape.py)
    "to": shp.to, "clone": shp.clone, "contiguous": shp.contiguous,
    # autograd (autograd/engine.py)
    "backward": engine.tensor_backward,
    "register_post_accumulate_grad_hook": engine.register_post_accumulate_grad_hook,
    # in-place (functional/inplace.py); the machinery is bound too, for ops defined elsewhere
    "add_": ip.add_, "sub_": ip.sub_, "mul_": ip.mul_, "div_": ip.div_, "zero_": ip.zero_,
    "fill_": ip.fill_, "copy_": ip.copy_, "clamp_": ip.clamp_, "relu_": ip.relu_,
    "uniform_": ip.uniform_, "normal_": ip.normal_, "__setitem__": ip.setitem,
    "_check_inplace": ip.check_inplace, "_inplace_result": ip.inplace_result,
    "_fast_inplace": ip.fast_inplace,
}

# binary operators also take a NumPy array operand (converted like graddesc.tensor does); the
# named methods (t.add(a)) refuse it, as PyTorch's do
for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__eq__", "__ne__", "__lt__",
              "__le__", "__gt__", "__ge__", "__mod__", "__rmod__", "__floordiv__",
              "__rfloordiv__"):
    _METHODS[_name] = _accept_ndarray(_METHODS[_name])


def _operator(name: str, apply: Any, swap: bool, *extra: Any) -> Any:
    """The operator `name`: with a tensor or Python number operand (the usual case) straight to
    apply (what the general method does after its checks, which such an operand passes), else
    the general method (NumPy scalars and arrays, errors for other types)."""
    general = _METHODS[name]
    if swap:
        def f(self: Tensor, other: Any) -> Tensor:
            if type(other) in _PLAIN or isinstance(other, Tensor):
                return apply(other, self, *extra)
            return general(self, other)
    else:
        def f(self: Tensor, other: Any) -> Tensor:
            if type(other) in _PLAIN or isinstance(other, Tensor):
                return apply(self, other, *extra)
            return general(self, other)

    f.__name__ = name
    return f


_PLAIN = (float, int, bool)
for _name, _apply, _swap, _extra in (
        ("__add__", ew.Add.apply, False, (1,)), ("__radd__", ew.Add.apply, False, (1,)),
        ("__sub__", ew.Sub.apply, False, ()), ("__rsub__", ew.Sub.apply, True, ()),
        ("__mul__", ew.Mul.apply, False, ()), ("__rmul__", ew.Mul.apply, False, ()),
        ("__truediv__", ew.Div.apply, False, ()), ("__rtruediv__", ew.rdiv, True, ()),
        ("__pow__", ew.Pow.apply, False, ()), ("__rpow__", ew.Pow.apply, True, ())):
    _METHODS[_name] = _operator(_name, _apply, _swap, *_extra)


def _matmul_operator(general: Any) -> Any:
    """t @ other: with a tensor operand straight to the op (matmul's check is that both are
    tensors), else the general method (NumPy arrays; errors for other types)."""
    def f(self: Tensor, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return lin.MatMul.apply(self, other)
        return general(self, other)

    f.__name__ = "__matmul__"
    return f


_METHODS["__matmul__"] = _matmul_operator(_METHODS["__matmul__"])

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: shp.permute(self, *reversed(range(self.ndim))),
                    doc="The tensor with its dims reversed.")
Tensor.mT = property(lambda self: shp.transpose(self, -2, -1),
                     doc="The last two dims swapped.")
