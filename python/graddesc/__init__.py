"""graddesc: gradient descent and backpropagation as a fast CPU autodiff library.

`import graddesc as gd` gives a PyTorch-shaped API (Tensor, autograd, nn, optim, data) on top of
C++ kernels; see API.md for the contract.
"""

import math as _math

from graddesc import (
    _tensor_ops,  # noqa: F401  (installs Tensor's operators)
    autograd,
    backends,
    cuda,
    data,
    distributed,
    nn,
    optim,
    safetensors,
    utils,
    viz,
)
from graddesc._compile import compile  # noqa: A004
from graddesc._creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from graddesc._device import device
from graddesc._dtype import bool_ as bool  # noqa: A001
from graddesc._dtype import (
    double,
    dtype,
    float,  # noqa: A001
    float32,
    float64,
    int64,
    long,
)
from graddesc._random import Generator, default_generator, initial_seed, manual_seed
from graddesc._runtime import (
    __version__,
    are_deterministic_algorithms_enabled,
    config,
    get_num_threads,
    set_num_threads,
    use_deterministic_algorithms,
)
from graddesc._tensor import Size, Tensor
from graddesc.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from graddesc.autograd import functional as _autograd_functional  # noqa: F401  (built on the ops)
from graddesc.autograd.grad_mode import inference_mode
from graddesc.functional.activation import exp, gelu, leaky_relu, log, relu, sigmoid, softplus, tanh
from graddesc.functional.combine import addcdiv, addcmul, lerp
from graddesc.functional.elementwise import (  # noqa: A004
    abs,
    add,
    clamp,
    div,
    eq,
    ge,
    gt,
    isfinite,
    isnan,
    le,
    logical_and,
    logical_not,
    logical_or,
    lt,
    maximum,
    minimum,
    mul,
    ne,
    neg,
    pow,
    sign,
    sqrt,
    sub,
    where,
)
from graddesc.functional.indexing import (
    flip,
    gather,
    index_select,
    masked_fill,
    repeat,
    scatter,
    scatter_add,
    unbind,
)
from graddesc.functional.linalg_extra import (
    addbmm,
    addmm,
    addmv,
    baddbmm,
    cdist,
    cross,
    diag,
    diagonal,
    dot,
    einsum,
    kron,
    mv,
    tensordot,
    trace,
    vdot,
)
from graddesc.functional.linear import matmul, mm
from graddesc.functional.loss import log_softmax, softmax
from graddesc.functional.math import (  # noqa: A004
    all,
    any,
    ceil,
    cos,
    floor,
    norm,
    prod,
    round,
    sin,
    square,
)
from graddesc.functional.math_extra import (
    acos,
    acosh,
    asin,
    asinh,
    atan,
    atan2,
    atanh,
    cosh,
    cummax,
    cummin,
    erf,
    erfc,
    erfinv,
    exp2,
    frac,
    heaviside,
    hypot,
    log2,
    log10,
    logaddexp,
    logcumsumexp,
    logit,
    median,
    nan_to_num,
    nanmean,
    nansum,
    sinh,
    std_mean,
    tan,
    trunc,
    var_mean,
)
from graddesc.functional.port_ops import (
    allclose,
    bmm,
    clamp_max,
    clamp_min,
    count_nonzero,
    equal,
    expm1,
    floor_divide,
    fmod,
    isclose,
    isinf,
    log1p,
    masked_select,
    nonzero,
    outer,
    reciprocal,
    remainder,
    rsqrt,
    tril,
    triu,
)
from graddesc.functional.reduce import (  # noqa: A004
    amax,
    amin,
    argmax,
    argmin,
    logsumexp,
    max,
    mean,
    min,
    std,
    sum,
    var,
)
from graddesc.functional.shape import (
    cat,
    chunk,
    flatten,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)
from graddesc.functional.shape_extra import (
    cartesian_prod,
    diff,
    index_add,
    index_copy,
    index_fill,
    meshgrid,
    moveaxis,
    movedim,
    narrow,
    repeat_interleave,
    roll,
    rot90,
    swapaxes,
    swapdims,
    take_along_dim,
    tile,
)
from graddesc.functional.sorting import argsort, cumprod, cumsum, kthvalue, sort, topk
from graddesc.serialization import load, save
from graddesc.training import fit

clip = clamp
concat = cat
concatenate = cat
# torch.pi, torch.e, torch.inf, torch.nan
pi, e, inf, nan = _math.pi, _math.e, _math.inf, _math.nan


def numel(t: Tensor) -> int:
    """The number of elements of t.

    >>> gd.numel(gd.zeros(2, 3))
    6
    """
    return t.numel()


def is_tensor(obj: object):  # noqa: ANN201
    """Whether obj is a graddesc Tensor.

    >>> gd.is_tensor(gd.zeros(1)), gd.is_tensor([0.0])
    (True, False)
    """
    return isinstance(obj, Tensor)


__all__ = [name for name in dir() if not name.startswith("_")]
