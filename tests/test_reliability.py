"""Reliability: the error contract, determinism across thread counts and processes, concurrency,
processes (spawn, fork, torch in the same process), hostile and interrupted checkpoints, and
training faults (non-finite loss, detect_anomaly, bitwise checkpoint resume).

Subprocess tests run short scripts with `sys.executable` and a timeout, so that a hang fails the
test instead of hanging the suite. tests/test_properties.py holds the NumPy-equivalence
properties; tests/test_serialization.py the round trips and the main malformed-file corpus.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graddesc as gd
import graddesc.nn.functional as F
from graddesc import _core, nn, optim
from graddesc.data import DataLoader, TensorDataset
from graddesc.data.dataloader import default_collate
from graddesc.training import NonFiniteLossError

THREAD_COUNTS = (1, 2, 3)
HAVE_TORCH = importlib.util.find_spec("torch") is not None
SUBPROCESS_TIMEOUT = 300  # seconds; generous for the sanitizer build, a hang still fails


def _run_python(code: str, cwd: Path, timeout: float = SUBPROCESS_TIMEOUT,
                args: tuple = ()) -> subprocess.CompletedProcess:
    """Runs `code` as a script in a fresh interpreter; fails the test on a timeout or a
    non-zero exit (showing its output)."""
    script = cwd / f"script_{abs(hash(code)) % 10**8}.py"
    script.write_text(textwrap.dedent(code))
    try:
        proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung (no exit after {timeout} s); output so far:\n"
                    f"{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, (f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}")
    return proc


# ============================================================================================
# (a) The error contract: every documented precondition raises the documented exception type
#     with a message that says what is wrong.
# ============================================================================================
_f32 = np.ones((4, 3), np.float32)
_f64 = np.ones((4, 3), np.float64)


def _unaligned(shape: tuple, dtype: Any = np.float32) -> np.ndarray:
    raw = np.zeros(int(np.prod(shape)) * np.dtype(dtype).itemsize + 1, np.uint8)
    return raw[1:].view(dtype).reshape(shape)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


# Each case: (id, callable, exception type, regex the message must match).
CORE_CASES: list = [
    # activations
    ("act: not an array", lambda: _core.activation_forward("relu", [1.0, 2.0]), TypeError,
     r"activation_forward: argument 'x' must be a numpy.ndarray, got <class 'list'>"),
    ("act: int dtype", lambda: _core.activation_forward("relu", np.ones(3, np.int64)),
     TypeError, r"activation_forward: argument 'x' must have dtype float32 or float64, got int64"),
    ("act: float16", lambda: _core.activation_forward("tanh", np.ones(3, np.float16)),
     TypeError, r"float32 or float64, got float16"),
    ("act: big-endian", lambda: _core.activation_forward("tanh", np.ones(3, ">f4")), TypeError,
     r"activation_forward: argument 'x' must have dtype float32 or float64"),
    ("act: non-contiguous", lambda: _core.activation_forward("tanh", _f32.T), ValueError,
     r"activation_forward: argument 'x' must be C-contiguous"),
    ("act: unaligned", lambda: _core.activation_forward("tanh", _unaligned((5,))), ValueError,
     r"activation_forward: argument 'x' is not aligned to 4 bytes"),
    ("act: unknown name", lambda: _core.activation_forward("swish", _f32), ValueError,
     r"activation_forward: unknown activation 'swish'; expected one of relu, "),
    ("act bwd: missing saved", lambda: _core.activation_backward("tanh", _f32), ValueError,
     r"activation_backward: 'tanh' backward needs the saved 'y'"),
    ("act bwd: shape", lambda: _core.activation_backward("relu", _f32, x=np.ones(3, np.float32)),
     ValueError, r"activation_backward: argument 'x' expected shape \(4, 3\), got \(3,\)"),
    ("act bwd: dtype mix", lambda: _core.activation_backward("relu", _f32, x=_f64), TypeError,
     r"argument 'x' must have dtype float32"),
    # linear, gemm
    ("linear: 3-d x", lambda: _core.linear_forward(np.ones((2, 2, 3), np.float32), _f32),
     ValueError, r"linear_forward: argument 'x' must be 1 or 2-d, got shape \(2, 2, 3\)"),
    ("linear: weight shape", lambda: _core.linear_forward(_f32, np.ones((5, 4), np.float32)),
     ValueError, r"linear_forward: x has 3 features, so argument 'weight' must have shape "
                 r"\(OUT, 3\), got \(5, 4\)"),
    ("linear: bias shape", lambda: _core.linear_forward(_f32, _f32, np.ones(3, np.float32)),
     ValueError, r"linear_forward: argument 'bias' expected shape \(4,\), got \(3,\)"),
    ("linear: dtype mix", lambda: _core.linear_forward(_f32, _f64), TypeError,
     r"linear_forward: argument 'weight' must have dtype float32"),
    ("linear bwd: dy shape", lambda: _core.linear_backward(np.ones((4, 5), np.float32), _f32,
                                                           _f32), ValueError,
     r"linear_backward: argument 'dy' expected shape \(4, 4\), got \(4, 5\)"),
    ("gemm: inner", lambda: _core.gemm(_f32, _f32), ValueError,
     r"gemm: inner dimensions differ: op\(a\) is \(4, 3\), op\(b\) is \(4, 3\)"),
    ("gemm: 1-d", lambda: _core.gemm(np.ones(3, np.float32), _f32), ValueError,
     r"gemm: argument 'a' must be 2-d, got shape \(3,\)"),
    ("gemm: beta without out", lambda: _core.gemm(_f32, _f32.T.copy(), beta=1.0), ValueError,
     r"gemm: beta != 0 needs an output array 'out'"),
    ("gemm: read-only out", lambda: _core.gemm(_f32, _f32.T.copy(),
                                               out=_readonly(np.ones((4, 4), np.float32))),
     ValueError, r"gemm: argument 'out' is read-only"),
    ("gemm: out shape", lambda: _core.gemm(_f32, _f32.T.copy(), out=np.ones((4, 5), np.float32)),
     ValueError, r"gemm: argument 'out' expected shape \(4, 4\), got \(4, 5\)"),
    ("gemm: out overlaps a", lambda: (lambda a: _core.gemm(a, np.eye(4, dtype=np.float32),
                                                           out=a))(np.ones((4, 4), np.float32)),
     ValueError, r"gemm: argument 'out' overlaps argument 'a' in memory"),
    ("gemm: int", lambda: _core.gemm(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64)),
     TypeError, r"gemm: argument 'a' must have dtype float32 or float64, got int64"),
    # softmax family, losses
    ("softmax: 1-d", lambda: _core.softmax_forward(np.ones(3, np.float32)), ValueError,
     r"softmax_forward: argument 'x' must be 2-d, got shape \(3,\)"),
    ("log_softmax bwd: shape", lambda: _core.log_softmax_backward(_f32, np.ones((4, 2),
                                                                                np.float32)),
     ValueError, r"log_softmax_backward: argument 'y' expected shape \(4, 3\), got \(4, 2\)"),
    ("ce: int32 target", lambda: _core.cross_entropy_forward(_f32, np.zeros(4, np.int32)),
     TypeError, r"cross_entropy_forward: argument 'target' must have dtype int64"),
    ("ce: target shape", lambda: _core.cross_entropy_forward(_f32, np.zeros(3, np.int64)),
     ValueError, r"cross_entropy_forward: argument 'target' expected shape \(4,\), got \(3,\)"),
    ("ce: target range", lambda: _core.cross_entropy_forward(_f32, np.array([0, 1, 3, 0])),
     ValueError, r"cross_entropy_forward: target\[2\] = 3 is out of range for 3 classes"),
    ("ce bwd: lse shape", lambda: _core.cross_entropy_backward(
        np.ones(4, np.float32), _f32, np.ones(3, np.float32), np.zeros(4, np.int64)),
     ValueError, r"cross_entropy_backward: argument 'lse' expected shape \(4,\), got \(3,\)"),
    ("ce bwd: dloss shape", lambda: _core.cross_entropy_backward(
        np.ones(3, np.float32), _f32, np.ones(4, np.float32), np.zeros(4, np.int64)),
     ValueError, r"cross_entropy_backward: argument 'dloss' expected shape \(4,\), got \(3,\)"),
    ("mse: shapes", lambda: _core.mse_forward(_f32, np.ones((3, 4), np.float32)), ValueError,
     r"mse_forward: argument 'target' expected shape \(4, 3\), got \(3, 4\)"),
    ("mse: dtype mix", lambda: _core.mse_forward(_f32, _f64), TypeError,
     r"mse_forward: argument 'target' must have dtype float32"),
    ("mse bwd: shapes", lambda: _core.mse_backward(_f32, np.ones(12, np.float32), 2.0),
     ValueError, r"mse_backward: argument 'target' expected shape \(4, 3\), got \(12,\)"),
    ("softmax bwd: dtype", lambda: _core.softmax_backward(_f32, _f64), TypeError,
     r"softmax_backward: argument 'y' must have dtype float32"),
    ("log_softmax: int", lambda: _core.log_softmax_forward(np.ones((2, 2), np.int64)), TypeError,
     r"log_softmax_forward: argument 'x' must have dtype float32 or float64, got int64"),
    # reductions, runtime
    ("sum_axis: axis", lambda: _core.sum_axis(_f32, 2), ValueError,
     r"sum_axis: axis 2 is out of range for an array of shape \(4, 3\)"),
    ("sum_all: bool", lambda: _core.sum_all(np.ones(3, bool)), TypeError,
     r"sum_all: argument 'x' must have dtype float32 or float64, got bool"),
    ("set_num_threads: 0", lambda: _core.set_num_threads(0), ValueError,
     r"set_num_threads: n must be >= 1, got 0"),
    ("set_isa: unknown", lambda: _core.set_isa("sse9"), ValueError,
     rf"set_isa: name must be one of {', '.join(_core.ISAS)}, got 'sse9'"),
    # fused optimizer updates
    ("sgd_step: params not a list", lambda: _core.sgd_step(np.ones(3), [np.ones(3)], None, 0.1),
     TypeError, r"sgd_step: argument 'params' must be a list of numpy.ndarray"),
    ("sgd_step: grads count", lambda: _core.sgd_step([np.ones(3)], [], None, 0.1), ValueError,
     r"sgd_step: argument 'grads' must have 1 arrays \(one per parameter\), got 0"),
    ("sgd_step: grad shape", lambda: _core.sgd_step([np.ones(3)], [np.ones(4)], None, 0.1),
     ValueError, r"sgd_step: argument 'grads\[0\]' expected shape \(3,\), got \(4,\)"),
    ("sgd_step: read-only param", lambda: _core.sgd_step([_readonly(np.ones(3))], [np.ones(3)],
                                                         None, 0.1),
     ValueError, r"sgd_step: argument 'params\[0\]' is read-only"),
    ("rmsprop_step: square_avgs", lambda: _core.rmsprop_step(
        [np.ones(3)], [np.ones(3)], [np.zeros(4)], None, None, 1e-2, 0.99, 1e-8, 0.0, 0.0),
     ValueError, r"rmsprop_step: argument 'square_avgs\[0\]' expected shape \(3,\), got \(4,\)"),
    ("adagrad_step: dtype mix", lambda: _core.adagrad_step(
        [np.ones(3)], [np.ones(3, np.float32)], [np.zeros(3)], [1.0], 1e-2, 0.0, 1e-10, 0.0),
     TypeError, r"adagrad_step: argument 'grads\[0\]' must have dtype float64"),
    ("adam_step: steps", lambda: _core.adam_step(
        [np.ones(3)], [np.ones(3)], [np.zeros(3)], [np.zeros(3)], None, [0.0], 1e-3, 0.9, 0.999,
        1e-8, 0.0, False, False, False), ValueError,
     r"adam_step: argument 'steps' must hold step counts >= 1, got 0"),
]

_x = gd.ones(2, 3)


def _lin() -> nn.Linear:
    gd.manual_seed(0)
    return nn.Linear(3, 2)


def _sgd(**kw: Any) -> Callable[[], Any]:
    return lambda: optim.SGD(_lin().parameters(), **{"lr": 0.1, **kw})


def _in_place_then_backward() -> None:
    a = gd.ones(3, requires_grad=True)
    b = a * 2.0
    c = b * b  # saves b
    with gd.no_grad():
        b.add_(1.0)
    c.sum().backward()


def _backward_twice() -> None:
    y = (gd.ones(2, requires_grad=True) * 2.0).sum()
    y.backward()
    y.backward()


def _opt_state_mismatch() -> None:
    model = _lin()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["state"] = {0: {"momentum_buffer": np.zeros((5, 5), np.float32)}}
    opt.load_state_dict(sd)


API_CASES: list = [
    # creation and conversion
    ("tensor: str", lambda: gd.tensor("abc"), TypeError, r"can't build a tensor from str"),
    ("tensor: ragged", lambda: gd.tensor([[1.0], [1.0, 2.0]]), TypeError,
     r"data: nested sequences must be rectangular"),
    ("tensor: complex", lambda: gd.tensor([1 + 2j]), TypeError, r"element of type complex"),
    ("tensor: object array", lambda: gd.tensor(np.array([None, 1], dtype=object)), TypeError,
     r"can't convert an array of dtype object"),
    ("tensor: int beyond int64", lambda: gd.tensor([2**70]), ValueError,
     r"can't build a tensor of dtype int64"),
    ("tensor: NaN to int64", lambda: gd.tensor(np.array([1.0, np.nan]), dtype=gd.int64),
     ValueError, r"can't convert nan to int64"),
    ("tensor: 1e30 to int64", lambda: gd.tensor(np.array([1e30]), dtype=gd.int64), ValueError,
     r"can't convert 1e\+30 to int64"),
    ("tensor: uint64 overflow", lambda: gd.tensor(np.array([2**64 - 1], np.uint64)), ValueError,
     r"uint64 values above 2\*\*63-1 do not fit in int64"),
    ("tensor: dtype float16", lambda: gd.tensor([1.0], dtype="float16"), TypeError,
     r"tensor: dtype: unsupported dtype float16"),
    ("to: NaN to long", lambda: gd.tensor([np.nan]).long(), ValueError,
     r"to: can't convert nan to int64"),
    ("to: device", lambda: _x.to("cuda"), RuntimeError,
     r"Tensor.to: device 'cuda' is not available: graddesc runs on the CPU only"),
    ("from_numpy: list", lambda: gd.from_numpy([1.0]), TypeError,
     r"from_numpy: expected np.ndarray, got list"),
    ("from_numpy: big-endian", lambda: gd.from_numpy(np.ones(2, ">f8")), TypeError,
     r"from_numpy: can't share memory with an array of dtype >f8"),
    ("zeros: negative", lambda: gd.zeros(2, -1), ValueError, r"zeros: negative dimension -1"),
    ("zeros: float size", lambda: gd.zeros(2.5), TypeError,
     r"zeros: size must be a sequence of ints, got float"),
    ("arange: zero step", lambda: gd.arange(0, 3, 0), RuntimeError, r"step must be nonzero"),
    ("randint: low >= high", lambda: gd.randint(3, 3, (2,)), RuntimeError,
     r"expected low < high"),
    # tensor methods
    ("item: many", lambda: _x.item(), RuntimeError,
     r"a Tensor with 6 elements cannot be converted to a Python scalar"),
    ("bool: ambiguous", lambda: bool(_x), RuntimeError, r"Boolean value of Tensor with 6"),
    ("len: 0-d", lambda: len(gd.tensor(1.0)), TypeError, r"len\(\) of a 0-d tensor"),
    ("requires_grad int", lambda: gd.tensor([1, 2]).requires_grad_(), RuntimeError,
     r"only Tensors of floating point dtype can require gradients"),
    ("numpy with grad", lambda: gd.ones(2, requires_grad=True).numpy(), RuntimeError,
     r"Can't call numpy\(\) on Tensor that requires grad"),
    ("grad: shape", lambda: setattr(gd.ones(2, requires_grad=True), "grad", gd.ones(3)),
     ValueError, r"grad: assigned grad has shape \(3,\), but the tensor has shape \(2,\)"),
    ("add: ndarray", lambda: _x.add(np.ones(3)), TypeError,
     r"add: got a numpy.ndarray operand; convert it with graddesc.tensor\(\)"),
    ("mul: str", lambda: _x * "a", TypeError, r"mul: unsupported operand type str"),
    ("add: broadcast", lambda: _x + gd.ones(4), ValueError, r"could not be broadcast"),
    ("pow: int negative", lambda: gd.tensor([2, 3]) ** -1, ValueError,
     r"pow: integers to negative integer powers are not allowed"),
    ("neg: bool", lambda: -gd.tensor([True]), TypeError,
     r"neg: negation of a bool tensor is not supported"),
    ("invert: float", lambda: ~_x, TypeError, r"~ \(bitwise not\) is only defined for bool"),
    ("clamp: no bounds", lambda: gd.clamp(_x), ValueError,
     r"clamp: at least one of 'min' or 'max' must not be None"),
    ("where: float cond", lambda: gd.where(_x, _x, _x), TypeError,
     r"where: condition must be a bool tensor, got dtype float32"),
    ("matmul: inner", lambda: _x @ _x, RuntimeError,
     r"matmul: shapes \(2, 3\) and \(2, 3\) cannot be multiplied \(3 != 2\)"),
    ("matmul: dtypes", lambda: _x @ gd.ones(3, 2, dtype=gd.float64), RuntimeError,
     r"matmul: expected both arguments to have the same dtype"),
    ("matmul: 0-d", lambda: gd.tensor(1.0) @ _x, RuntimeError,
     r"matmul: both arguments need at least 1 dimension"),
    ("mm: 1-d", lambda: gd.mm(gd.ones(3), _x), RuntimeError, r"mm: expected 2-d tensors"),
    ("reshape: size", lambda: _x.reshape(4, 2), RuntimeError,
     r"reshape: shape '\[4, 2\]' is invalid for input of size 6"),
    ("reshape: two -1", lambda: _x.reshape(-1, -1), RuntimeError,
     r"only one dimension can be inferred"),
    ("view: strides", lambda: _x.t().view(6), RuntimeError,
     r"view size is not compatible with input tensor's size and stride"),
    ("transpose: dim", lambda: _x.transpose(0, 2), IndexError,
     r"transpose: Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"),
    ("permute: repeated", lambda: _x.permute(0, 0), RuntimeError, r"repeated dim"),
    ("t: 3-d", lambda: gd.ones(1, 2, 3).t(), RuntimeError, r"t\(\) expects a tensor with <= 2"),
    ("expand: incompatible", lambda: _x.expand(3, 3), RuntimeError,
     r"expand: the expanded size \[3, 3\] is not compatible"),
    ("getitem: out of range", lambda: _x[5], IndexError, r"index is out of bounds"),
    ("getitem: float index", lambda: _x[gd.tensor([0.5])], IndexError,
     r"tensors used as indices must be long, int or bool tensors"),
    ("cat: empty list", lambda: gd.cat([]), RuntimeError, r"expected a non-empty list"),
    ("cat: sizes", lambda: gd.cat([_x, gd.ones(2, 4)], 0), RuntimeError,
     r"Sizes of tensors must match except in dimension 0"),
    ("stack: sizes", lambda: gd.stack([_x, gd.ones(3, 2)]), RuntimeError,
     r"stack expects each tensor to be equal size"),
    ("sum: dim", lambda: _x.sum(2), IndexError, r"sum: Dimension out of range"),
    ("sum: repeated dim", lambda: _x.sum((0, 0)), RuntimeError, r"appears multiple times"),
    ("mean: int", lambda: gd.tensor([1, 2]).mean(), RuntimeError,
     r"mean\(\): could not infer output dtype"),
    ("max: empty", lambda: gd.zeros(0).max(), RuntimeError,
     r"max\(\): Expected reduction dim to be specified for input.numel\(\) == 0"),
    ("max: empty dim", lambda: gd.zeros(0, 2).max(0), IndexError,
     r"max\(\): Expected reduction dim 0 to have non-zero size"),
    ("argmax: empty dim", lambda: gd.zeros(0, 2).argmax(0), IndexError,
     r"argmax\(\): Expected reduction dim 0 to have non-zero size"),
    ("softmax: int", lambda: gd.softmax(gd.tensor([1, 2]), 0), TypeError,
     r"softmax: argument 'input' must be float32 or float64, got graddesc.int64"),
    ("softmax: dim", lambda: gd.softmax(_x, 2), IndexError, r"softmax: Dimension out of range"),
    ("relu: int", lambda: gd.relu(gd.tensor([1])), TypeError,
     r"relu: expected a float32 or float64 tensor, got graddesc.int64"),
    ("relu: not a tensor", lambda: gd.relu(np.ones(3)), TypeError,
     r"relu: expected a Tensor, got ndarray"),
    ("gelu: approximate", lambda: gd.gelu(_x, approximate="fast"), ValueError,
     r"gelu: approximate must be 'none' or 'tanh'"),
    # autograd
    ("backward: non-scalar", lambda: (gd.ones(2, requires_grad=True) * 2).backward(),
     RuntimeError, r"grad can be implicitly created only for scalar outputs"),
    ("backward: no grad", lambda: gd.ones(2).sum().backward(), RuntimeError,
     r"does not require grad and does not have a grad_fn"),
    ("backward: twice", _backward_twice, RuntimeError,
     r"Trying to backward through the graph a second time"),
    ("backward: modified in place", _in_place_then_backward, RuntimeError,
     r"modified by an inplace operation"),
    ("in-place on a leaf", lambda: gd.ones(2, requires_grad=True).add_(1.0), RuntimeError,
     r"add_: a leaf Variable that requires grad is being used in an in-place operation"),
    ("in-place on read-only", lambda: gd.ones(3).expand(2, 3).add_(1.0), RuntimeError,
     r"add_: the tensor's memory is read-only"),
    ("grad: unused input", lambda: gd.autograd.grad((gd.ones(2, requires_grad=True) * 2).sum(),
                                                    gd.ones(2, requires_grad=True)),
     RuntimeError, r"appears to not have been used in the graph"),
    # functional losses
    ("linear: features", lambda: F.linear(_x, gd.ones(2, 4)), ValueError,
     r"linear: input has 3 features \(shape \(2, 3\)\) but weight has shape \(2, 4\)"),
    ("linear: dtypes", lambda: F.linear(_x, gd.ones(2, 3, dtype=gd.float64)), TypeError,
     r"linear: input, weight and bias must share one float dtype"),
    ("linear: 1-d weight", lambda: F.linear(_x, gd.ones(3)), ValueError,
     r"linear: argument 'weight' must be 2-d"),
    ("ce: target range", lambda: F.cross_entropy(_x, gd.tensor([0, 3])), ValueError,
     r"cross_entropy: target 3 at position 1 is out of bounds for 3 classes"),
    ("ce: target shape", lambda: F.cross_entropy(_x, gd.tensor([0, 1, 2])), ValueError,
     r"cross_entropy: expected target of shape \(2,\) for input of shape \(2, 3\)"),
    ("ce: target dtype", lambda: F.cross_entropy(_x, gd.tensor([True, False])), TypeError,
     r"cross_entropy: class-index targets must be int64"),
    ("ce: reduction", lambda: F.cross_entropy(_x, gd.tensor([0, 1]), reduction="avg"),
     ValueError, r"cross_entropy: reduction must be one of 'mean', 'sum', 'none'"),
    ("ce: label_smoothing", lambda: F.cross_entropy(_x, gd.tensor([0, 1]), label_smoothing=2.0),
     ValueError, r"label_smoothing must be in \[0, 1\]"),
    ("nll: target", lambda: F.nll_loss(_x, gd.tensor([0, 7])), ValueError,
     r"nll_loss: target 7 at position 1 is out of bounds for 3 classes"),
    ("mse: broadcast", lambda: F.mse_loss(_x, gd.ones(4)), ValueError,
     r"mse_loss: input shape \(2, 3\) and target shape \(4,\) do not broadcast"),
    ("mse: int input", lambda: F.mse_loss(gd.tensor([1]), gd.tensor([1])), TypeError,
     r"mse_loss: argument 'input' must be float32 or float64"),
    ("bce: range", lambda: F.binary_cross_entropy(_x * 2.0, _x), ValueError,
     r"binary_cross_entropy: all elements of input should be between 0 and 1"),
    ("bce: shape", lambda: F.binary_cross_entropy(_x * 0.5, gd.ones(3)), ValueError,
     r"target shape \(3,\) must equal input shape \(2, 3\)"),
    # nn
    ("Linear: negative", lambda: nn.Linear(-1, 2), ValueError,
     r"Linear: in_features must be a non-negative int, got -1"),
    ("Linear: features", lambda: _lin()(gd.ones(2, 4)), ValueError,
     r"linear: input has 4 features"),
    ("Linear: 0-d input", lambda: _lin()(gd.tensor(1.0)), ValueError,
     r"linear: argument 'input' must have at least 1 dimension"),
    ("GELU: approximate", lambda: nn.GELU("fast"), ValueError, r"GELU: approximate must be"),
    ("loss module: reduction", lambda: nn.MSELoss(reduction="avg"), ValueError,
     r"MSELoss: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    ("NearestNeighbor: K", lambda: nn.NearestNeighbor(0, 2), ValueError,
     r"NearestNeighbor: num_prototypes must be a positive int"),
    ("NearestNeighbor: x", lambda: nn.NearestNeighbor(3, 2)(gd.ones(4, 3)), ValueError,
     r"NearestNeighbor: x must have shape \(B, 2\)"),
    ("Sequential: index", lambda: nn.Sequential(nn.ReLU())[3], IndexError,
     r"index 3 is out of range for Sequential of length 1"),
    ("Module.to: int", lambda: _lin().to(gd.int64), TypeError,
     r"Module.to only accepts floating point dtypes"),
    ("assign a non-parameter", lambda: setattr(_lin(), "weight", np.ones((2, 3))), TypeError,
     r"cannot assign 'ndarray' as parameter 'weight'"),
    ("load_state_dict: not a dict", lambda: _lin().load_state_dict([1]), TypeError,
     r"load_state_dict: expected a dict-like mapping, got list"),
    ("load_state_dict: keys", lambda: _lin().load_state_dict({"weight": np.ones((2, 3))}),
     RuntimeError, r'Missing key\(s\) in state_dict: "bias"'),
    ("load_state_dict: unexpected", lambda: _lin().load_state_dict(
        {**_lin().state_dict(), "extra": np.ones(1)}), RuntimeError,
     r'Unexpected key\(s\) in state_dict: "extra"'),
    ("load_state_dict: shape", lambda: _lin().load_state_dict(
        {"weight": np.ones((3, 3)), "bias": np.ones(2)}), RuntimeError,
     r"size mismatch for weight: copying a param with shape \(3, 3\) from checkpoint, the "
     r"shape in current model is \(2, 3\)"),
    ("load_state_dict: dtype", lambda: _lin().load_state_dict(
        {"weight": np.array([["a"] * 3] * 2), "bias": np.ones(2)}), RuntimeError,
     r'value for "weight" has unsupported dtype'),
    ("init: 1-d fan", lambda: nn.init.xavier_uniform_(gd.ones(3)), ValueError,
     r"Fan in and fan out can not be computed"),
    ("clip_grad_norm_: negative", lambda: nn.utils.clip_grad_norm_(_lin().parameters(), -1.0),
     ValueError, r"clip_grad_norm_: max_norm must be non-negative"),
    # optim
    ("SGD: lr", _sgd(lr=-0.1), ValueError, r"Invalid learning rate: -0.1"),
    ("SGD: momentum", _sgd(momentum=-0.5), ValueError, r"Invalid momentum value: -0.5"),
    ("SGD: nesterov", _sgd(nesterov=True), ValueError,
     r"Nesterov momentum requires a momentum and zero dampening"),
    ("SGD: lr type", _sgd(lr="fast"), TypeError, r"lr must be a real number, got str"),
    ("SGD: lr matrix size", _sgd(lr=np.eye(3)), ValueError,
     r"SGD: a matrix lr must have shape \(8, 8\)"),
    ("SGD: lr not symmetric", _sgd(lr=np.triu(np.ones((8, 8)))), ValueError,
     r"SGD: a matrix lr must be symmetric"),
    ("SGD: lr not PSD", _sgd(lr=-np.eye(8)), ValueError,
     r"SGD: a matrix lr must be positive semi-definite"),
    ("SGD: lr diagonal negative", _sgd(lr=-np.ones(8)), ValueError,
     r"SGD: a diagonal lr must be non-negative"),
    ("SGD: lr NaN", _sgd(lr=np.full(8, np.nan)), ValueError, r"SGD: lr contains NaN or Inf"),
    ("optim: a tensor", lambda: optim.SGD(gd.ones(2, requires_grad=True), lr=0.1), TypeError,
     r"params argument given to the optimizer should be an iterable"),
    ("optim: empty", lambda: optim.SGD([], lr=0.1), ValueError,
     r"optimizer got an empty parameter list"),
    ("optim: int param", lambda: optim.SGD([gd.tensor([1, 2])], lr=0.1), TypeError,
     r"optimizer can only optimize floating-point Tensors"),
    ("optim: non-leaf", lambda: optim.SGD([gd.ones(2, requires_grad=True) * 2], lr=0.1),
     ValueError, r"can't optimize a non-leaf Tensor"),
    ("optim: duplicates", lambda: (lambda p: optim.SGD([p, p], lr=0.1))(
        gd.ones(2, requires_grad=True)), ValueError, r"duplicate parameters"),
    ("optim: a set", lambda: optim.SGD({gd.ones(2, requires_grad=True)}, lr=0.1), TypeError,
     r"ordering of tensors in sets will change between runs"),
    ("Adam: betas", lambda: optim.Adam(_lin().parameters(), betas=(1.0, 0.9)), ValueError,
     r"Invalid beta parameter at index 0: 1.0"),
    ("Adam: eps", lambda: optim.Adam(_lin().parameters(), eps=-1.0), ValueError,
     r"Invalid epsilon value: -1.0"),
    ("RMSprop: alpha", lambda: optim.RMSprop(_lin().parameters(), alpha=-1.0), ValueError,
     r"Invalid alpha value: -1.0"),
    ("LBFGS: groups", lambda: optim.LBFGS([{"params": [gd.ones(1, requires_grad=True)]},
                                          {"params": [gd.ones(1, requires_grad=True)]}]),
     ValueError, r"LBFGS doesn't support per-parameter options"),
    ("ZerothOrder: estimator", lambda: optim.ZerothOrder(_lin().parameters(), lr=0.1,
                                                         estimator="magic"),
     ValueError, r"ZerothOrder: estimator must be one of"),
    ("StepLR: step_size", lambda: optim.lr_scheduler.StepLR(_sgd()(), step_size=0), ValueError,
     r"StepLR: step_size must be a positive int"),
    ("load_state_dict: groups", lambda: _sgd()().load_state_dict(
        {"state": {}, "param_groups": []}), ValueError,
     r"loaded state dict has a different number of parameter groups"),
    ("load_state_dict: keys", lambda: _sgd()().load_state_dict({"state": {}}), ValueError,
     r"expected a dict with keys 'state' and 'param_groups'"),
    ("load_state_dict: state shape", _opt_state_mismatch, ValueError,
     r"state\[0\]\['momentum_buffer'\] has shape \(5, 5\), but its parameter has shape \(2, 3\)"),
    # data
    ("TensorDataset: none", lambda: TensorDataset(), ValueError, r"expected at least one tensor"),
    ("TensorDataset: sizes", lambda: TensorDataset(gd.ones(3), gd.ones(4)), ValueError,
     r"size mismatch between tensors: tensors\[0\] has 3 samples, tensors\[1\] has 4"),
    ("TensorDataset: 0-d", lambda: TensorDataset(gd.tensor(1.0)), ValueError,
     r"tensors\[0\] is 0-d"),
    ("TensorDataset: array", lambda: TensorDataset(np.ones(3)), TypeError,
     r"tensors\[0\] must be a graddesc Tensor, got ndarray"),
    ("DataLoader: batch_size 0", lambda: DataLoader(TensorDataset(_x), batch_size=0), ValueError,
     r"DataLoader: batch_size must be >= 1, got 0"),
    ("DataLoader: batch_size float", lambda: DataLoader(TensorDataset(_x), batch_size=1.5),
     TypeError, r"DataLoader: batch_size must be an int or None, got float"),
    ("DataLoader: shuffle", lambda: DataLoader(TensorDataset(_x), shuffle="yes"), TypeError,
     r"DataLoader: shuffle must be a bool, got str"),
    ("DataLoader: dataset", lambda: DataLoader(42), TypeError,
     r"DataLoader: dataset must support len\(\) and indexing, or be an IterableDataset, "
     r"got int"),
    ("DataLoader: generator", lambda: DataLoader(TensorDataset(_x), generator=np.random), TypeError,
     r"DataLoader: generator must be a graddesc.Generator"),
    ("collate: shapes", lambda: default_collate([gd.ones(2), gd.ones(3)]), ValueError,
     r"default_collate: can't stack samples of different shapes"),
    ("collate: type", lambda: default_collate([object()]), TypeError,
     r"default_collate: samples must be Tensors, NumPy arrays, numbers"),
    ("spirals: n", lambda: gd.data.datasets.spirals(n=0), ValueError,
     r"spirals: n must be >= 1, got 0"),
    ("spirals: noise", lambda: gd.data.datasets.spirals(noise=float("nan")), ValueError,
     r"spirals: noise must be finite and >= 0"),
    # runtime
    ("set_num_threads: str", lambda: gd.set_num_threads("2"), TypeError,
     r"set_num_threads: n must be an int, got str"),
    ("set_num_threads: 0", lambda: gd.set_num_threads(0), ValueError,
     r"set_num_threads: n must be >= 1, got 0"),
    # save/load
    ("save: object", lambda: gd.save({"f": object()}, io.BytesIO()), TypeError,
     r"save: obj\['f'\] is a object; supported are Tensors, NumPy arrays"),
    ("save: float16 array", lambda: gd.save({"a": np.ones(2, np.float16)}, io.BytesIO()),
     TypeError, r"save: obj\['a'\] has unsupported dtype float16"),
    ("save: key type", lambda: gd.save({(1, 2): 1}, io.BytesIO()), TypeError,
     r"save: dict keys must be str or int; obj has a key of type tuple"),
    ("save: cycle", lambda: (lambda d: (d.__setitem__("me", d), gd.save(d, io.BytesIO())))({}),
     ValueError, r"save: obj\['me'\] contains itself \(a reference cycle\)"),
    ("load: map_location", lambda: gd.load(io.BytesIO(b""), map_location="cuda"), ValueError,
     r"load: map_location must be None or 'cpu'"),
    ("load: empty file", lambda: gd.load(io.BytesIO(b"")), ValueError,
     r"is not a valid graddesc checkpoint: the file is empty"),
    # fit
    ("fit: loss not a tensor", lambda: gd.fit(_lin(), lambda o, y: 1.0, (_x, _x[:, :2]),
                                              _sgd()(), progress=False), TypeError,
     r"fit: step 1: loss_fn must return a Tensor, got float"),
    ("fit: loss not scalar", lambda: gd.fit(_lin(), lambda o, y: o, (_x, _x), _sgd()(),
                                            progress=False), ValueError,
     r"fit: step 1: loss_fn must return a one-element Tensor, got shape \(2, 2\)"),
    ("fit: batch not a pair", lambda: gd.fit(_lin(), nn.MSELoss(), [(_x,)], _sgd()(),
                                             progress=False), ValueError,
     r"fit: step 1: each batch must be a pair \(x, y\), got 1 elements"),
    ("fit: epochs", lambda: gd.fit(_lin(), nn.MSELoss(), (_x, _x), _sgd()(), epochs=-1,
                                   progress=False), ValueError, r"fit: epochs must be >= 0"),
    ("fit: model", lambda: gd.fit(42, nn.MSELoss(), (_x, _x), _sgd()(), progress=False),
     TypeError, r"fit: model must be callable, got int"),
    ("fit: no batches", lambda: gd.fit(_lin(), nn.MSELoss(), [], _sgd()(), progress=False),
     ValueError, r"fit: data yielded no batches in epoch 1"),
]


@pytest.mark.parametrize("case", CORE_CASES + API_CASES, ids=lambda c: c[0])
def test_error_contract(case: tuple) -> None:
    """The precondition raises exactly the documented type (not a subclass picked up by
    accident: NumPy's UFuncTypeError would pass `raises(TypeError)`) with a message that
    names the op, the argument and what was expected."""
    _, fn, exc, pattern = case
    with pytest.raises(exc, match=pattern) as info:
        fn()
    assert isinstance(info.value, exc)


def test_error_contract_covers_every_kernel_binding() -> None:
    """Every kernel binding of graddesc._core has at least one error-contract case above."""
    kernels = {"activation_forward", "activation_backward", "linear_forward", "linear_backward",
               "gemm", "softmax_forward", "softmax_backward", "log_softmax_forward",
               "log_softmax_backward", "cross_entropy_forward", "cross_entropy_backward",
               "mse_forward", "mse_backward", "sum_axis", "sum_all", "sgd_step", "adam_step",
               "rmsprop_step", "adagrad_step", "set_num_threads", "set_isa"}
    assert kernels <= {n for n in dir(_core) if not n.startswith("_")}
    covered = {pattern.split(":")[0] for _, _, _, pattern in CORE_CASES}
    assert not sorted(kernels - covered), f"no error-contract case for {kernels - covered}"


def test_numpy_floating_point_warnings_never_become_errors() -> None:
    """inf - inf, 1e30 * 1e30, x / 0 give NaN/Inf whether warnings are errors (as under this
    suite's filterwarnings=error, or `python -W error`), shown, or NumPy is set to raise."""
    x = gd.tensor([np.inf, 1e30, 0.0, -1.0], dtype=gd.float32)
    z = gd.zeros(4)

    def results() -> list:
        return [t.numpy().copy() for t in (x - x, x * x, x + (-x), x / z, x ** 2.0, x @ x,
                                           (x.unsqueeze(1) * x).sum((0, 1)), gd.mean(x * x))]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strict = results()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        shown = results()
    with np.errstate(all="raise"):
        raising = results()
    for a, b, c in zip(strict, shown, raising):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(strict[0], [np.nan, 0, 0, 0])
    np.testing.assert_array_equal(strict[1], [np.inf, np.inf, 0, 1])


# ============================================================================================
# (b) Determinism: every kernel family, and 100-step training runs, are bitwise identical for
#     1, 2 and 3 threads, and from one fresh process to the next.
# ============================================================================================
def _bits(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"None")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _kernel_runs(dtype: Any) -> dict:
    """name -> a function running one kernel on inputs big enough for every parallel path,
    returning a digest of all its outputs."""
    rng = np.random.default_rng(7)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    A, B, C = r(257, 300), r(300, 129), r(257, 129)
    x, W, b, dy = r(512, 200), r(100, 200), r(100), r(512, 100)
    big, big2 = r(300_001), r(300_001)
    logits, g = r(700, 97), r(700, 97)
    target = rng.integers(0, 97, 700)
    target[::13] = -100
    cube = r(64, 90, 50)
    col, row, dloss = r(700, 1), r(1, 600), r(700)
    runs: dict[str, Callable[[], str]] = {
        "gemm": lambda: _bits(_core.gemm(A, B)),
        "gemm_trans": lambda: _bits(_core.gemm(A.T.copy(), B.T.copy(), trans_a=True,
                                               trans_b=True)),
        "gemm_beta": lambda: _bits(_core.gemm(A, B, alpha=0.5, beta=2.0, out=C.copy())),
        "gemm_outer": lambda: _bits(_core.gemm(col, row)),
        "linear_forward": lambda: _bits(_core.linear_forward(x, W, b)),
        "linear_backward": lambda: _bits(*_core.linear_backward(dy, x, W)),
        "softmax": lambda: _bits(_core.softmax_forward(logits),
                                 _core.softmax_backward(g, _core.softmax_forward(logits))),
        "log_softmax": lambda: _bits(_core.log_softmax_forward(logits), _core.log_softmax_backward(
            g, _core.log_softmax_forward(logits))),
        "cross_entropy": lambda: _bits(*_core.cross_entropy_forward(logits, target), *[
            _core.cross_entropy_backward(d, logits, _core.cross_entropy_forward(logits, target)[1],
                                         target) for d in (np.asarray(0.5, dtype), dloss)]),
        "mse": lambda: _bits(_core.mse_forward(big, big2), _core.mse_backward(big, big2, 2.0)),
        "sum_all": lambda: _bits(_core.sum_all(big), _core.sum_all(cube)),
        "sum_axis": lambda: _bits(*[_core.sum_axis(cube, a) for a in (0, 1, 2)]),
    }
    for name in _core.ACTIVATIONS_SAVING_OUTPUT + ("relu", "leaky_relu", "softplus", "gelu",
                                                   "gelu_tanh", "log"):
        xin = np.abs(big) if name == "log" else big
        kw = "y" if name in _core.ACTIVATIONS_SAVING_OUTPUT else "x"
        runs[f"activation_{name}"] = (
            lambda n=name, xin=xin, kw=kw: _bits(
                _core.activation_forward(n, xin, 0.1),
                _core.activation_backward(n, big2, alpha=0.1, **{kw: (
                    _core.activation_forward(n, xin, 0.1) if kw == "y" else xin)})))
    return runs


def _optimizer_run(name: str, dtype: Any) -> str:
    """Three fused updates of a 300k-element parameter set; digest of params and state."""
    rng = np.random.default_rng(3)
    params = [gd.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
              for s in ((300, 500), (500,), (150_000,))]
    opt = {"sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
           "adam": lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
           "adamw": lambda p: optim.AdamW(p, lr=1e-2),
           "rmsprop": lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.9, centered=True),
           "adagrad": lambda p: optim.Adagrad(p, lr=1e-2)}[name](params)
    for step in range(3):
        for p in params:
            p.grad = gd.tensor(np.random.default_rng(step).standard_normal(p.shape).astype(dtype))
        opt.step()
    state = [v._data for st in opt.state.values() for v in st.values() if isinstance(v, gd.Tensor)]
    return _bits(*[p._data for p in params], *state)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_kernel_is_bitwise_identical_for_1_2_3_threads(dtype: Any) -> None:
    runs = _kernel_runs(dtype)
    results: dict = {}
    for n in THREAD_COUNTS:
        gd.set_num_threads(n)
        assert gd.get_num_threads() == n
        for name, run in runs.items():
            results.setdefault(name, []).append(run())
        for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad"):
            results.setdefault(f"optim_{name}", []).append(_optimizer_run(name, dtype))
    differ = sorted(k for k, v in results.items() if len(set(v)) != 1)
    assert not differ, f"kernels whose bits depend on the thread count: {differ}"
    assert len(results) >= 25


def test_every_kernel_is_bitwise_identical_across_fresh_processes(tmp_path: Path) -> None:
    """The same kernel digests (float32 and float64, 1 and 3 threads) from two new
    interpreters and from this process."""
    code = f'''
    import json, sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    import numpy as np
    import graddesc as gd
    import test_reliability as tr

    out = {{}}
    for n in (1, 3):
        gd.set_num_threads(n)
        for dt in (np.float32, np.float64):
            for name, run in tr._kernel_runs(dt).items():
                out[f"{{name}}/{{np.dtype(dt).name}}/{{n}}"] = run()
    print(json.dumps(out))
    '''
    first = json.loads(_run_python(code, tmp_path).stdout)
    second = json.loads(_run_python(code, tmp_path).stdout)
    assert first == second
    gd.set_num_threads(2)
    here = {f"{name}/float64/1": run() for name, run in _kernel_runs(np.float64).items()}
    assert {k: first[k] for k in here} == here


# The 100-step training run, as source: executed in this process and in fresh interpreters.
TRAIN_SOURCE = '''
import hashlib
import numpy as np
import graddesc as gd
from graddesc import nn, optim
from graddesc.data import DataLoader, TensorDataset


def train(opt_name, threads, steps=100):
    """An MLP on the embedded digits, CrossEntropy, minibatches of 128 (shuffled): returns a
    digest of every step's loss and the final parameters, and the last loss."""
    gd.set_num_threads(threads)
    gd.manual_seed(1234)
    X, y, _, _ = gd.data.datasets.digits()
    model = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(X, y), batch_size=128, shuffle=True,
                        generator=gd.Generator().manual_seed(99))
    loss_fn = nn.CrossEntropyLoss()
    h = hashlib.sha256()
    step = 0
    while step < steps:
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            h.update(loss.detach().numpy().tobytes())
            step += 1
            if step == steps:
                break
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest(), float(loss.item())
'''


def _train_namespace() -> dict:
    ns: dict = {}
    exec(compile(TRAIN_SOURCE, "<training run>", "exec"), ns)  # noqa: S102 -- our own source
    return ns


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_run_is_bitwise_identical_for_1_2_3_threads(opt_name: str) -> None:
    train = _train_namespace()["train"]
    runs = [train(opt_name, n) for n in THREAD_COUNTS]
    assert len({digest for digest, _ in runs}) == 1, runs
    assert runs[0][1] < 1.0  # it did learn (the loss starts near log(10) = 2.3)


def test_training_run_is_bitwise_identical_across_fresh_processes(tmp_path: Path) -> None:
    code = TRAIN_SOURCE + '''
import json, sys
print(json.dumps({f"{o}/{n}": train(o, n)[0] for o in ("sgd", "adam") for n in (1, 2, 3)}))
'''
    first = json.loads(_run_python(code, tmp_path).stdout)
    second = json.loads(_run_python(code, tmp_path).stdout)
    assert first == second
    here = _train_namespace()["train"]
    assert first["sgd/2"] == here("sgd", 2)[0]
    assert first["adam/3"] == here("adam", 3)[0]
    assert len({v for k, v in first.items() if k.startswith("sgd")}) == 1
    assert len({v for k, v in first.items() if k.startswith("adam")}) == 1


# ============================================================================================
# (c) Concurrency: Python threads sharing one model; the GIL is released inside kernels.
# ============================================================================================
def _mlp(seed: int = 0) -> nn.Module:
    gd.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10), nn.LogSoftmax(dim=1))


def test_eight_threads_sharing_a_model_get_the_serial_results() -> None:
    """8 threads run inference on one shared model (under no_grad, and with grad mode on,
    taking input gradients with autograd.grad) while kernels run on 2 OpenMP threads each:
    every result equals the serial one bit for bit, and the model is untouched."""
    gd.set_num_threads(2)
    model = _mlp()
    model.eval()
    before = _bits(*[p.detach().numpy() for p in model.parameters()])
    inputs = [gd.tensor(np.random.default_rng(i).standard_normal((256, 64)), dtype=gd.float32)
              for i in range(8)]

    def infer(i: int) -> tuple:
        x = inputs[i]
        if i % 2:
            with gd.no_grad():
                out = model(x)
            return _bits(out.numpy()), None
        xg = x.detach().requires_grad_()
        out = model(xg)
        (gx,) = gd.autograd.grad(out.sum(), xg)
        return _bits(out.detach().numpy()), _bits(gx.numpy())

    serial = [infer(i) for i in range(8)]
    results: dict = {}
    errors: list = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = [infer(i) for _ in range(10)]
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SUBPROCESS_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    for i in range(8):
        assert all(r == serial[i] for r in results[i]), f"thread {i} differs from serial"
    assert _bits(*[p.detach().numpy() for p in model.parameters()]) == before
    assert all(p.grad is None for p in model.parameters())


def _progress_during(call: Callable[[], Any]) -> tuple:
    """(increments a Python counter thread made while `call` ran, seconds it took)."""
    count = [0]
    running = threading.Event()
    stop = threading.Event()

    def spin() -> None:
        running.set()
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    running.wait()
    time.sleep(0.01)
    start_count, start = count[0], time.perf_counter()
    call()
    progress, elapsed = count[0] - start_count, time.perf_counter() - start
    stop.set()
    t.join()
    return progress, elapsed


@pytest.mark.parametrize("kernel", ["gemm", "linear", "activation", "softmax"])
def test_python_thread_runs_while_a_large_kernel_runs(kernel: str) -> None:
    """The bindings release the GIL around the kernel: a counting thread keeps counting."""
    gd.set_num_threads(1)  # one core for the kernel, one for the counter
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 2000)).astype(np.float32)
    b = rng.standard_normal((2000, 2000)).astype(np.float32)
    calls = {"gemm": lambda: _core.gemm(a, b),
             "linear": lambda: _core.linear_forward(a, b, None),
             "activation": lambda: [_core.activation_forward("gelu", a) for _ in range(20)],
             "softmax": lambda: [_core.log_softmax_forward(a) for _ in range(20)]}
    progress, elapsed = _progress_during(calls[kernel])
    # With the GIL held the counter would stand still for the whole call.
    assert progress > 1000, f"{kernel}: counter advanced {progress} times in {elapsed:.3f} s"


# ============================================================================================
# (d) Processes: spawn pools, fork after the OpenMP pool started, torch in the same process.
# ============================================================================================
WORKER_SOURCE = '''
import numpy as np
import graddesc as gd
from graddesc import nn


def work(i):
    """One DataLoader-style task: build batch i of the digits, run forward and backward;
    return the loss and the gradient bytes (NumPy values pickle; graddesc never pickles)."""
    X, y, _, _ = gd.data.datasets.digits()
    loader = gd.data.DataLoader(gd.data.TensorDataset(X, y), batch_size=256)
    xb, yb = list(loader)[i]
    gd.manual_seed(5)
    model = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 10))
    loss = nn.CrossEntropyLoss()(model(xb), yb)
    loss.backward()
    return float(loss.item()), model[0].weight.grad.numpy().tobytes().hex()
'''


def test_spawn_worker_pool_runs_graddesc(tmp_path: Path) -> None:
    (tmp_path / "gdworker.py").write_text(WORKER_SOURCE)
    code = '''
    import json, multiprocessing as mp, sys
    sys.path.insert(0, ".")
    import graddesc as gd
    from gdworker import work

    if __name__ == "__main__":
        gd.set_num_threads(2)
        serial = [work(i) for i in range(5)]  # the parent has run parallel kernels
        ctx = mp.get_context("spawn")
        with ctx.Pool(2) as pool:
            pooled = pool.map(work, range(5))
        print(json.dumps({"equal": pooled == serial, "n": len(pooled)}))
    '''
    out = json.loads(_run_python(code, tmp_path).stdout)
    assert out == {"equal": True, "n": 5}


def test_fork_after_parallel_kernels_does_not_hang(tmp_path: Path) -> None:
    """GNU libgomp can't start threads in a child forked after its pool started (the child would
    wait forever for threads that only exist in the parent). graddesc's fork handler gives such
    a child a budget of 1 thread, so it never opens a parallel region, and set_num_threads(n > 1)
    there raises RuntimeError instead of hanging later; results are the same bits."""
    (tmp_path / "gdworker.py").write_text(WORKER_SOURCE)
    code = '''
    import json, multiprocessing as mp, os, sys
    sys.path.insert(0, ".")
    import numpy as np
    import graddesc as gd
    from graddesc import _core
    from gdworker import work

    def kernels():
        a = np.random.default_rng(0).standard_normal((600, 600)).astype(np.float32)
        return (_core.gemm(a, a).tobytes() + _core.activation_forward("tanh", a).tobytes()
                + _core.sum_all(a).tobytes())

    def child_report():
        msg = ""
        try:
            gd.set_num_threads(2)
        except RuntimeError as e:
            msg = str(e)
        gd.set_num_threads(1)  # always allowed
        return {"threads": gd.get_num_threads(), "refused": msg, "same": kernels() == want,
                "work": work(0) == want_work}

    if __name__ == "__main__":
        gd.set_num_threads(2)
        want, want_work = kernels(), work(0)  # OpenMP's thread pool is running now
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, json.dumps(child_report()).encode())
            os._exit(0)
        os.close(w)
        report = json.loads(os.read(r, 65536).decode())
        _, status = os.waitpid(pid, 0)
        with mp.get_context("fork").Pool(2) as pool:
            pooled = pool.map(work, [0, 1, 0])
        print(json.dumps({"child": report, "status": status,
                          "pool": pooled[0] == want_work and pooled[2] == want_work,
                          "parent_threads": gd.get_num_threads(),
                          "parent_same": kernels() == want}))
    '''
    out = json.loads(_run_python(code, tmp_path, timeout=120).stdout)
    child = out["child"]
    assert out["status"] == 0 and out["pool"] and out["parent_same"]
    assert out["parent_threads"] == 2  # the parent keeps its threads
    assert child["threads"] == 1 and child["same"] and child["work"]
    assert "forked after graddesc's OpenMP threads had started" in child["refused"]
    assert "'spawn' or 'forkserver'" in child["refused"]


def test_fork_before_any_parallel_kernel_keeps_the_thread_budget(tmp_path: Path) -> None:
    code = '''
    import os
    import numpy as np
    import graddesc as gd
    from graddesc import _core
    gd.set_num_threads(2)
    pid = os.fork()
    if pid == 0:
        a = np.ones((600, 600), np.float32)
        _core.gemm(a, a)  # OpenMP starts fresh in the child: fine
        os._exit(0 if gd.get_num_threads() == 2 else 3)
    _, status = os.waitpid(pid, 0)
    print(status)
    '''
    assert _run_python(code, tmp_path, timeout=120).stdout.strip() == "0"


TORCH_CHECK = '''
import numpy as np

def check(gd, torch):
    torch.set_num_threads(2)
    gd.set_num_threads(2)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 100))
    for _ in range(3):  # interleave both libraries' OpenMP regions
        mine = (gd.tensor(a) @ gd.tensor(b)).numpy()
        theirs = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-10)
    x = rng.standard_normal((64, 20)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    lin = gd.nn.Linear(20, 5)
    tlin = torch.nn.Linear(20, 5)
    with torch.no_grad():
        tlin.weight.copy_(torch.from_numpy(lin.weight.detach().numpy()))
        tlin.bias.copy_(torch.from_numpy(lin.bias.detach().numpy()))
    loss = gd.nn.functional.cross_entropy(gd.tanh(lin(gd.tensor(x))), gd.tensor(y))
    loss.backward()
    tloss = torch.nn.functional.cross_entropy(torch.tanh(tlin(torch.from_numpy(x))),
                                              torch.from_numpy(y))
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    np.testing.assert_allclose(lin.weight.grad.numpy(), tlin.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-6)
    print("ok")
'''


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (it is an optional oracle)")
@pytest.mark.parametrize("order", ["graddesc_first", "torch_first"])
def test_graddesc_and_torch_in_one_process(order: str, tmp_path: Path) -> None:
    imports = ("import graddesc as gd\nimport torch\n" if order == "graddesc_first"
               else "import torch\nimport graddesc as gd\n")
    code = imports + TORCH_CHECK + "\ncheck(gd, torch)\n"
    assert _run_python(code, tmp_path, timeout=180).stdout.strip() == "ok"


# ============================================================================================
# (e) Files: hostile checkpoints beyond tests/test_serialization.py's corpus, and a process
#     killed in the middle of gd.save.
# ============================================================================================
def _structure_entry(doc: Any) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(json.dumps(doc).encode(), np.uint8),
                              allow_pickle=False)
    return buf.getvalue()


def _zip_bytes(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
              st.text(max_size=6), st.sampled_from(["tensor", "dict", "list", "tuple", "float",
                                                    "int", "t0", "t1", "float32", "bool"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["type", "items", "key", "dtype",
                                                             "shape", "value", "x"]),
                                            inner, max_size=5)),
    max_leaves=20)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(root=_json_values, with_entry=st.booleans(),
       entry=st.sampled_from(["f32x2", "f64x2", "empty", "bool", "int64"]))
def test_arbitrary_structures_load_or_raise_value_error(root: Any, with_entry: bool,
                                                        entry: str) -> None:
    """Any JSON at all in __structure__ (with or without a tensor entry) either describes a valid
    checkpoint and loads, or raises ValueError: never KeyError/TypeError/RecursionError."""
    arrays = {"f32x2": np.zeros(2, np.float32), "f64x2": np.ones(2), "empty": np.zeros((0, 3)),
              "bool": np.array([True]), "int64": np.arange(3)}
    entries = {"__structure__.npy": _structure_entry(
        {"format": "graddesc", "version": 1, "root": root})}
    if with_entry:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arrays[entry], allow_pickle=False)
        entries["t0.npy"] = buf.getvalue()
    try:
        gd.load(io.BytesIO(_zip_bytes(entries)))
    except ValueError as e:
        assert "not a valid graddesc checkpoint" in str(e)


@st.composite
def _saveable_arrays(draw: Any) -> np.ndarray:
    dtype = draw(st.sampled_from(["float32", "float64", "int64", "bool", ">f4", "<f8", ">i8"]))
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.choice([np.nan, np.inf, -np.inf, -0.0, 1e30, 1.5, -7.0], size=shape)
    if dtype == "bool":
        a = np.asarray(values != 0)
    elif dtype[-2] == "f":
        a = values.astype(dtype)
    else:
        a = rng.integers(-2**63, 2**63 - 1, size=shape, dtype=np.int64).astype(dtype)
    if a.ndim >= 2 and draw(st.booleans()):
        a = a.T  # a Fortran-ordered view
    return a


_saveable = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**100, 2**100), st.floats(),
              st.text(max_size=5), _saveable_arrays(),
              _saveable_arrays().map(lambda a: gd.tensor(a))),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(st.text(max_size=3),
                                                      st.integers(-5, 5)), inner, max_size=3)),
    max_leaves=10)


def _same_value(got: Any, want: Any) -> None:
    if isinstance(want, (np.ndarray, gd.Tensor)):
        w = want._data if isinstance(want, gd.Tensor) else want
        assert isinstance(got, gd.Tensor) and got._data.dtype == w.dtype.newbyteorder("=")
        assert got.shape == w.shape and got._data.flags.c_contiguous
        np.testing.assert_array_equal(got._data, w)
        assert got._data.tobytes() == np.ascontiguousarray(w).astype(got._data.dtype).tobytes()
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for k in want:
            _same_value(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            _same_value(g, w)
    elif isinstance(want, float):
        assert isinstance(got, float)
        assert repr(got) == repr(want)  # NaN, Inf and -0.0 included
    else:
        assert type(got) is type(want) and got == want


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(obj=_saveable)
def test_save_load_round_trip_is_exact(obj: Any) -> None:
    """Anything save accepts comes back with the same structure, key order, types and bits
    (NaN/Inf/-0.0 floats, big ints, non-native and Fortran-ordered arrays as native C arrays)."""
    buf = io.BytesIO()
    gd.save(obj, buf)
    _same_value(gd.load(io.BytesIO(buf.getvalue())), obj)


def test_huge_real_npy_header_is_refused(tmp_path: Path) -> None:
    """A .npy header that really is 200 kB (padding, not just a lying length field)."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }" + " " * 200_000 + "\n"
    entry = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header.encode() + b"\0" * 8
    data = _zip_bytes({"__structure__.npy": _structure_entry(
        {"format": "graddesc", "version": 1,
         "root": {"type": "tensor", "key": "t0", "dtype": "float32", "shape": [2]}}),
        "t0.npy": entry})
    path = tmp_path / "huge_header.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"claims a .npy header of 200\d+ bytes"):
        gd.load(path)


def test_huge_structure_document_loads_or_is_refused_quickly() -> None:
    """A 20 MB structure of 1e6 nested-free nodes: parsed in bounded time, no crash."""
    doc = {"format": "graddesc", "version": 1,
           "root": {"type": "list", "items": [{"type": "int", "value": i} for i in range(10**6)]}}
    start = time.perf_counter()
    out = gd.load(io.BytesIO(_zip_bytes({"__structure__.npy": _structure_entry(doc)})))
    assert out == list(range(10**6))
    assert time.perf_counter() - start < 60


def test_directory_and_unreadable_paths_are_os_errors(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        gd.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        gd.save({"a": 1}, tmp_path / "no" / "such" / "dir" / "ckpt.npz")


def test_checkpoint_of_another_model_is_refused_by_name(tmp_path: Path) -> None:
    """Loading works (the file is valid); putting it into a different model or optimizer
    raises with the offending key and shapes (RuntimeError for modules, as in PyTorch;
    ValueError for optimizers)."""
    small, big = _mlp(), nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))
    gd.save({"model": small.state_dict(),
             "opt": optim.Adam(small.parameters()).state_dict()}, tmp_path / "c.npz")
    ckpt = gd.load(tmp_path / "c.npz")
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight: copying a param with "
                                           r"shape \(256, 64\)"):
        big.load_state_dict(ckpt["model"])
    renamed = {k.replace("0.", "first."): v for k, v in ckpt["model"].items()}
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "first.weight"'):
        small.load_state_dict(renamed)
    opt = optim.Adam(big.parameters())
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(ckpt["opt"])


KILL_SOURCE = '''
import os, sys
import numpy as np
import graddesc as gd

path, ready = sys.argv[1], sys.argv[2]
k = 0
while True:
    # 4 MB per save; every tensor holds k, so a torn file would show mixed values
    state = {"step": k, "w": gd.full((1_000_000,), float(k)), "b": gd.full((1000,), float(k)),
             "nested": [{"k": gd.tensor([k, k])}]}
    gd.save(state, path)
    if k == 0:
        open(ready, "w").close()
    k += 1
'''


def test_sigkill_during_save_leaves_the_previous_file_loadable(tmp_path: Path) -> None:
    """A writer saving in a loop is SIGKILLed at 20 different moments; every time, the
    checkpoint loads and is one whole save (all its tensors hold the same step)."""
    script = tmp_path / "writer.py"
    script.write_text(KILL_SOURCE)
    path, ready = tmp_path / "ckpt.npz", tmp_path / "ready"
    rng = np.random.default_rng(0)
    steps_seen = []
    for _ in range(20):
        if ready.exists():
            ready.unlink()
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(ready)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT
            while not ready.exists():
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the writer never finished its first save"
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0.0, 0.15)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            proc.stderr.close()
        ckpt = gd.load(path)
        k = ckpt["step"]
        assert np.all(ckpt["w"].numpy() == k) and np.all(ckpt["b"].numpy() == k)
        assert ckpt["nested"][0]["k"].tolist() == [k, k]
        steps_seen.append(k)
    # leftovers of interrupted saves are hidden temporary files beside the checkpoint, never
    # the checkpoint itself
    others = [p.name for p in tmp_path.iterdir() if p.name not in
              {"ckpt.npz", "ready", "writer.py"}]
    assert all(n.startswith(".ckpt.npz.") and n.endswith(".tmp") for n in others), others
    assert max(steps_seen) > 0  # some kills landed after later saves


# ============================================================================================
# (f) Training faults: a non-finite loss stops fit at that step; detect_anomaly names the op;
#     resuming from a checkpoint is bitwise equal to never stopping.
# ============================================================================================
def _digits_subset() -> tuple:
    X, y, _, _ = gd.data.datasets.digits()
    return X[:512], y[:512]


@pytest.mark.parametrize("fault", ["sgd_momentum_diverges", "adam_nan_sample"])
def test_non_finite_loss_stops_fit_at_the_step_with_the_previous_state(fault: str) -> None:
    """Two real faults: SGD with momentum and a learning rate 10/L (L the Lipschitz constant
    of the gradient) diverges geometrically until the loss overflows; Adam meets a sample with
    a NaN feature in the fifth batch. fit stops at that step, naming it, with the parameters
    and the optimizer state exactly as a run of step - 1 steps leaves them."""
    X, y = _digits_subset()
    target = y.float().unsqueeze(1)
    Xa = np.c_[X.numpy().astype(np.float64), np.ones(len(X))]
    lipschitz = 2 * float(np.linalg.eigvalsh(Xa.T @ Xa / len(X)).max())
    if fault == "adam_nan_sample":
        Xn = X.numpy().copy()
        Xn[4 * 64 + 3, 17] = np.nan
        X = gd.tensor(Xn)

    def setup() -> tuple:
        gd.manual_seed(3)
        model = nn.Linear(64, 1)
        opt = (optim.SGD(model.parameters(), lr=10 / lipschitz, momentum=0.9)
               if fault.startswith("sgd") else optim.Adam(model.parameters(), lr=1e-2))
        return model, opt

    def data() -> DataLoader:
        return DataLoader(TensorDataset(X, target), batch_size=64)  # a fixed order

    model, opt = setup()
    with pytest.raises(NonFiniteLossError) as info:
        gd.fit(model, nn.MSELoss(), data(), opt, epochs=100, progress=False)
    err = info.value
    if fault == "adam_nan_sample":
        assert err.step == 5 and np.isnan(err.loss)
    else:
        assert err.step > 5 and np.isinf(err.loss)
    assert f"at step {err.step} " in str(err) and f"after step {err.step - 1}" in str(err)
    model2, opt2 = setup()
    hist = gd.fit(model2, nn.MSELoss(), data(), opt2, epochs=100, progress=False,
                  callback=lambda h: h.steps == err.step - 1)
    assert hist.steps == err.step - 1 and np.isfinite(hist.loss).all()
    assert _bits(*[p.detach().numpy() for p in model.parameters()]) == \
        _bits(*[p.detach().numpy() for p in model2.parameters()])
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and len(s1) == 2
    for k in s1:
        assert _bits(*[v._data for v in s1[k].values()]) == _bits(*[v._data for v in
                                                                   s2[k].values()])


@pytest.mark.parametrize("op, fn, name", [
    ("log", lambda x: gd.log(x), "LogBackward"),
    ("sqrt", lambda x: gd.sqrt(x), "SqrtBackward"),
    ("div", lambda x: gd.ones_like(x) / x, "DivBackward"),
    ("rdiv", lambda x: 1.0 / x, "ReciprocalBackward"),  # PyTorch's x.reciprocal() * 1.0
    ("pow", lambda x: x ** 0.5, "PowBackward"),
    ("mul_inf", lambda x: (x * float("inf")), "MulBackward"),
    ("log_softmax", lambda x: gd.log_softmax(gd.log(x).unsqueeze(0), 1).sum(), "LogBackward"),
])
def test_detect_anomaly_names_the_op_that_made_a_nan(op: str, fn: Callable, name: str) -> None:
    x = gd.tensor([0.0, 1.0, 2.0], dtype=gd.float64, requires_grad=True)
    with gd.autograd.detect_anomaly():
        y = fn(x)
        with pytest.raises(RuntimeError, match=rf"Function '{name}' returned nan values in its "
                                               rf"\d+th output[\s\S]*test_reliability.py"):
            y.sum().backward()
    assert x.grad is None  # nothing was accumulated


def _resume_setup(seed: int, opt_name: str) -> tuple:
    gd.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    opt = (optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
           if opt_name == "sgd" else optim.Adam(model.parameters(), lr=1e-2, amsgrad=True))
    gen = gd.Generator().manual_seed(seed + 100)
    return model, opt, gen


def _train_steps(model: nn.Module, opt: Any, gen: gd.Generator, start: int, stop: int,
                 losses: list) -> None:
    X, y = _digits_subset()
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, generator=gen)
    per_epoch = len(loader)
    step = start
    while step < stop:
        # resume mid-epoch: replay the epoch's order, skipping the batches already done
        skip = step % per_epoch
        for i, (xb, yb) in enumerate(loader):
            if i < skip:
                continue
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.detach().numpy().tobytes())
            step += 1
            if step == stop:
                return


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_checkpoint_resume_is_bitwise_equal_to_an_uninterrupted_run(seed: int, opt_name: str,
                                                                    tmp_path: Path) -> None:
    """Model + optimizer + data-order generator state saved with gd.save at 5 cut points (at,
    and in the middle of, epoch boundaries) and loaded into freshly built objects: the resumed
    run's losses and final parameters equal the uninterrupted run's bit for bit."""
    total = 40  # 8 batches per epoch
    model, opt, gen = _resume_setup(seed, opt_name)
    # the loader draws an epoch's order when its iteration starts, so the generator state to
    # save is the one at the start of the epoch the cut falls in
    ref_losses: list = []
    _train_steps(model, opt, gen, 0, total, ref_losses)
    want = _bits(*[p.detach().numpy() for p in model.parameters()])
    for cut in (1, 8, 13, 24, 39):
        model, opt, gen = _resume_setup(seed, opt_name)
        losses: list = []
        epoch_start = cut - cut % 8
        _train_steps(model, opt, gen, 0, epoch_start, losses)
        gen_state = gen.get_state()
        _train_steps(model, opt, gen, epoch_start, cut, losses)
        gd.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "generator": gen_state, "step": cut}, tmp_path / "ckpt.npz")
        del model, opt, gen
        ckpt = gd.load(tmp_path / "ckpt.npz")
        model, opt, gen = _resume_setup(seed + 1000, opt_name)  # different weights on purpose
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        _train_steps(model, opt, gen, ckpt["step"], total, losses)
        assert losses == ref_losses, f"cut {cut}: losses differ"
        assert _bits(*[p.detach().numpy() for p in model.parameters()]) == want, f"cut {cut}"
