# ruff: noqa
# Written by tools/gen_stubs.py with pybind11-stubgen: don't edit it.
"""
graddesc C++ kernels (private: use the graddesc package).
"""
from __future__ import annotations
import collections.abc
import numpy
import typing
__all__: list[str] = ['ACTIVATIONS', 'ACTIVATIONS_SAVING_OUTPUT', 'EW_OPS', 'FastReplay', 'ISAS', 'Program', 'RECORD_ARGS', 'REDUCE_OPS', 'ReplayCount', 'activation_backward', 'activation_forward', 'adagrad_step', 'adam_step', 'average_ranks', 'avgpool2d_backward', 'avgpool2d_forward', 'batch_norm_backward', 'batch_norm_backward_args', 'batch_norm_forward', 'batch_norm_forward_args', 'best_isa', 'clip_norm', 'conv2d_backward', 'conv2d_forward', 'conv2d_forward_naive', 'copy_array', 'count_scale', 'count_scale_args', 'cpu_supports', 'cross_entropy_backward', 'cross_entropy_backward_args', 'cross_entropy_forward', 'cross_entropy_forward_args', 'cumprod_backward', 'cumprod_backward_args', 'deferred_pending', 'dropout_mask', 'dropout_mask_args', 'elementwise', 'elementwise_args', 'embedding_backward', 'embedding_backward_args', 'embedding_forward', 'embedding_forward_args', 'embedding_renorm', 'flush_deferred', 'gemm', 'gemm_args', 'get_num_threads', 'has_openmp', 'index_gather', 'index_gather_args', 'index_nd', 'index_nd_args', 'index_scatter', 'index_scatter_args', 'index_take', 'index_take_args', 'int_binary', 'int_binary_args', 'int_sum', 'int_sum_args', 'int_unary', 'int_unary_args', 'isa', 'layer_norm_backward', 'layer_norm_backward_args', 'layer_norm_forward', 'layer_norm_forward_args', 'linear_backward', 'linear_forward', 'log_softmax_backward', 'log_softmax_backward_args', 'log_softmax_forward', 'log_softmax_forward_args', 'maxpool2d_backward', 'maxpool2d_forward', 'mse_backward', 'mse_backward_args', 'mse_forward', 'mse_forward_args', 'reduce', 'reduce_args', 'replay', 'rmsprop_step', 'scale', 'scale_args', 'scan', 'scan_args', 'set_deferred_types', 'set_isa', 'set_num_threads', 'sgd_step', 'softmax_backward', 'softmax_backward_args', 'softmax_forward', 'softmax_forward_args', 'sort', 'sort_args', 'sum_all', 'sum_all_args', 'sum_axis', 'sum_axis_args']
class Program:
    """
    A recorded kernel sequence (private: see gd.compile).
    """
    def __init__(self) -> None:
        ...
    def __len__(self) -> int:
        ...
    def add(self, name: str, f64: bool, ptrs: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], ints: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], reals: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], lists: collections.abc.Sequence[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]] = []) -> None:
        """
        Appends an instruction. Pointers are raw addresses of buffers the caller keeps alive. `name` is a built-in instruction or a registered kind's name (as names() reports it; then `ints` are the kind's own, without its id).
        """
    def flops(self) -> list[int]:
        """
        Floating-point operations per instruction (multiply-add = 2, elementwise = 1).
        """
    def footprint(self) -> int:
        """
        Bytes of distinct memory the program touches (union of all operands).
        """
    def grad_addr(self, index: typing.SupportsInt | typing.SupportsIndex) -> int:
        """
        Address of the dW buffer of a linear_bwd_sgd.
        """
    def materialize(self, index: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Writes a lazy linear_bwd_sgd's dW from the buffers of the last replay.
        """
    def names(self) -> list[str]:
        """
        The instruction names, in order.
        """
    def optimize(self, pinned: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]]) -> int:
        """
        Removes copies whose source has one writer and no other reader (that writer writes the destination instead); `pinned` (address, bytes) ranges are never retargeted away. Returns the number of instructions removed.
        """
    def param_addr(self, index: typing.SupportsInt | typing.SupportsIndex) -> int:
        """
        Address of the first parameter an optimizer instruction updates (0 if none).
        """
    def pending(self) -> bool:
        """
        Whether a deferred update is pending.
        """
    def plan_defer(self) -> int:
        """
        Finds the batch-1 weight updates a replay may leave pending until the next one reads the weight (see program.hpp); returns their number.
        """
    def profile(self, repeat: typing.SupportsInt | typing.SupportsIndex = 100, defer: bool = False) -> list[float]:
        """
        Median seconds per instruction over `repeat` whole replays (each replay changes the parameters exactly as run() does; with defer as run(defer=True) does, pending updates applied at the end).
        """
    def rebind(self, from_addr: typing.SupportsInt | typing.SupportsIndex, to_addr: typing.SupportsInt | typing.SupportsIndex, nbytes: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Points every operand inside [from_addr, from_addr + nbytes) at the same offset of to_addr (the caller keeps the new buffer alive).
        """
    def run(self) -> None:
        """
        Replays every instruction in order (first applying any gd.compile update left pending; this run leaves none).
        """
    def set_lazy(self, index: typing.SupportsInt | typing.SupportsIndex, lazy: bool) -> bool:
        """
        linear_bwd_sgd: store dW only when materialize(index) is called. Returns whether it is lazy now: never while another instruction reads dW.
        """
    def set_real(self, index: typing.SupportsInt | typing.SupportsIndex, slot: typing.SupportsInt | typing.SupportsIndex, value: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        Sets a real option of one instruction (sgd/adam: slot 0 is the learning rate).
        """
    def traffic(self) -> list[tuple[int, int]]:
        """
        (bytes read, bytes written) per instruction, each operand counted once.
        """
    def writes(self) -> list[tuple[int, int]]:
        """
        (address, bytes) of every buffer range some instruction writes.
        """
class ReplayCount:
    """
    A compiled function's replay count (private).
    """
    def __init__(self) -> None:
        ...
    @property
    def n(self) -> int:
        ...
    @n.setter
    def n(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class FastReplay:
    """
    gd.compile's one-call replay of a recorded entry (private).
    """
    def __call__(self, args: tuple, grad_enabled: bool) -> typing.Any:
        """
        Replays for positional `args`, or returns NotImplemented (the Python path decides).
        """
    def __init__(self, program: typing.Any, tensor_type: typing.Any, grad_enabled: bool, epoch_list: list, epoch: typing.SupportsInt | typing.SupportsIndex, state: dict, inputs: list, params: list, frozen: list, optimizers: list, hypers: list, versions: list, grads: list, none_grads: list, lazy: list, pending: dict, outputs: list, out_kind: typing.Any, replays: typing.Any, persistent: list = []) -> None:
        ...
    @property
    def hits(self) -> int:
        """
        Calls this object replayed.
        """
    @property
    def in_place_reads(self) -> int:
        """
        Inputs it read where the caller's array is (no copy).
        """
    @property
    def prepare(self) -> typing.Any:
        """
        Called with no arguments once a call's checks pass, before its inputs are copied and the program runs (None: nothing).
        """
    @prepare.setter
    def prepare(self, arg0: typing.Any) -> None:
        ...
def _tables_built() -> list:
    """
    ISAs whose kernel tables were built (run) in this process; for tests.
    """
def activation_backward(name: str, dy: typing.Any, x: typing.Any = None, y: typing.Any = None, alpha: typing.Any = None) -> numpy.ndarray:
    """
    dx = dy * act'(x); tanh, sigmoid and exp read the saved output y, the others x.
    """
def activation_forward(name: str, x: typing.Any, alpha: typing.Any = None) -> numpy.ndarray:
    """
    y = act(x) elementwise; name in relu, leaky_relu (slope alpha, default 0.01), tanh, sigmoid, softplus (y = x above the threshold alpha, default 20), gelu, gelu_tanh, exp, log.
    """
def adagrad_step(params: typing.Any, grads: typing.Any, state_sums: typing.Any, steps: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, lr_decay: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool = False) -> None:
    """
    In-place Adagrad step over lists of arrays (PyTorch's rule); steps are the step counts after this step.
    """
def adam_step(params: typing.Any, grads: typing.Any, exp_avgs: typing.Any, exp_avg_sqs: typing.Any, max_exp_avg_sqs: typing.Any, steps: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, amsgrad: bool = False, maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
    """
    In-place Adam/AdamW step over lists of arrays (PyTorch's rule); steps are the step counts after this step.
    """
def average_ranks(out: typing.Any, inputs: typing.Any, out2: typing.Any = None) -> None:
    """
    out (and out2 unless None) = (((inputs[0] + inputs[1]) + inputs[2]) + ...) / len(inputs), element by element in list order (a multiplication by the reciprocal when len(inputs) is a power of two: the same bits). Every array C-contiguous, of one dtype (float32 or float64) and out's element count; out and out2 overlap no input.
    """
def avgpool2d_backward(grad_output: typing.Any, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], hs: numpy.ndarray, hn: numpy.ndarray, ws: numpy.ndarray, wn: numpy.ndarray, divisor: numpy.ndarray) -> numpy.ndarray:
    """
    dx of avgpool2d_forward.
    """
def avgpool2d_forward(input: typing.Any, hs: numpy.ndarray, hn: numpy.ndarray, ws: numpy.ndarray, wn: numpy.ndarray, divisor: numpy.ndarray) -> numpy.ndarray:
    """
    An average pool over the windows.
    """
def batch_norm_backward(dy: typing.Any, x: typing.Any, weight: typing.Any, mean: typing.Any, invstd: typing.Any, training: bool, need_dx: bool = True, need_dw: bool = True, need_db: bool = True) -> tuple:
    """
    (dx, dweight, dbias) of batch norm, None where not needed.
    """
def batch_norm_backward_args(dy: typing.Any, x: typing.Any, weight: typing.Any, mean: typing.Any, invstd: typing.Any, training: bool, need_dx: bool = True, need_dw: bool = True, need_db: bool = True, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for batch_norm_backward(...) = result.
    """
def batch_norm_forward(x: typing.Any, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, num_batches_tracked: typing.Any, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Batch norm over (N, C) or (N, C, L): (y, mean, invstd); running statistics updated in place in training (momentum < 0: cumulative average).
    """
def batch_norm_forward_args(x: typing.Any, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, num_batches_tracked: typing.Any, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for batch_norm_forward(...) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
def best_isa() -> str:
    """
    The best instruction set this CPU supports.
    """
def clip_norm(grads: typing.Any, norm_type: typing.SupportsFloat | typing.SupportsIndex, max_norm: typing.SupportsFloat | typing.SupportsIndex, error_if_nonfinite: bool = False) -> numpy.ndarray:
    """
    nn.utils.clip_grad_norm_ in place on a list of gradient arrays (one float dtype): returns their joint norm (0-d float64; the same bits on every ISA and thread count) and scales them all by max_norm / (norm + 1e-6) unless that is >= 1 (a NaN norm scales by NaN, as PyTorch). error_if_nonfinite: a non-finite norm raises RuntimeError and scales nothing.
    """
def conv2d_backward(grad_output: typing.Any, input: typing.Any, weight: typing.Any, stride: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dilation: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, need_dx: bool = True, need_dw: bool = True, need_db: bool = True) -> tuple:
    """
    (dx, dw, db) of conv2d_forward; unneeded ones are None.
    """
def conv2d_forward(input: typing.Any, weight: typing.Any, bias: typing.Any, stride: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dilation: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, out_size: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], relu: bool = False) -> numpy.ndarray:
    """
    y (N, OC, OH, OW) of a 2-d convolution (padding: zeros before row 0 / column 0).
    """
def conv2d_forward_naive(input: typing.Any, weight: typing.Any, bias: typing.Any, stride: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dilation: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, out_size: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.ndarray:
    """
    conv2d_forward as plain loops (for tests).
    """
def copy_array(x: typing.Any) -> numpy.ndarray:
    """
    A C-contiguous copy of a float array.
    """
def count_scale(target: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    """
    1 / (number of targets != ignore_index) as a 0-d float64 array (NaN if none).
    """
def count_scale_args(target: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for count_scale(target, ignore_index) = result.
    """
def cpu_supports(name: str) -> bool:
    """
    Whether this CPU can run the kernels built for `name`.
    """
def cross_entropy_backward(dloss: typing.Any, logits: typing.Any, lse: typing.Any, target: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex = -100) -> numpy.ndarray:
    """
    dlogits = dloss * (softmax(logits) - onehot(target)); dloss is 0-d or (B,).
    """
def cross_entropy_backward_args(dloss: typing.Any, logits: typing.Any, lse: typing.Any, target: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex = -100, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for cross_entropy_backward(...) = result.
    """
def cross_entropy_forward(logits: typing.Any, target: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex = -100) -> tuple:
    """
    Per-row softmax cross-entropy from logits (B, C) and int64 targets (B,): (loss, lse).
    """
def cross_entropy_forward_args(logits: typing.Any, target: typing.Any, ignore_index: typing.SupportsInt | typing.SupportsIndex = -100, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for cross_entropy_forward(...) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
def cumprod_backward(grad: typing.Any, x: typing.Any, y: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    """
    The gradient of cumprod along dim: grad, x and y = cumprod(x) of one shape and dtype (float32/float64, C-contiguous) -> dx, exact with zeros in x.
    """
def cumprod_backward_args(grad: typing.Any, x: typing.Any, y: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for cumprod_backward(...) = result.
    """
def deferred_pending() -> bool:
    """
    Whether a gd.compile replay left weight updates pending (private, for tests).
    """
def dropout_mask(shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], p: typing.SupportsFloat | typing.SupportsIndex, state: typing.Any, f64: bool = False) -> numpy.ndarray:
    """
    A float32 (float64 when f64) array of `shape`: 1/(1-p) where the generator's draw u in [0, 1) is >= p, else 0. state: the generator's uint64 [key, counter], advanced in place by the number of elements.
    """
def dropout_mask_args(shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], p: typing.SupportsFloat | typing.SupportsIndex, state: typing.Any, f64: bool = False, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for dropout_mask(...) = result.
    """
def elementwise(op: typing.SupportsInt | typing.SupportsIndex, a: typing.Any, b: typing.Any = None, c: typing.Any = None, out: typing.Any = None) -> numpy.ndarray:
    """
    y = op(a[, b[, c]]) elementwise with NumPy broadcasting; op an id of EW_OPS. Arrays of any strides (float32 or float64, one dtype; where's condition a: bool), or Python numbers; clamp(a, min b, max c) with either bound None; sum_to(a, shape b) sums a down to a shape that broadcasts to it; eq ne lt le gt ge return bool arrays. Returns a new C-contiguous array, or out.
    """
def elementwise_args(op: typing.SupportsInt | typing.SupportsIndex, a: typing.Any, b: typing.Any = None, c: typing.Any = None, out: typing.Any = None) -> tuple:
    """
    The checked operands of elementwise(op, a, b, c, out) as gd.compile records them: (pointers, ints, scalars, float64, spans).
    """
def embedding_backward(dy: typing.Any, indices: typing.Any, num_weights: typing.SupportsInt | typing.SupportsIndex, padding_idx: typing.SupportsInt | typing.SupportsIndex = -1) -> numpy.ndarray:
    """
    Scatter-add of dy rows into a zero (num_weights, D) gradient, indices in order; the row padding_idx stays zero.
    """
def embedding_backward_args(dy: typing.Any, indices: typing.Any, num_weights: typing.SupportsInt | typing.SupportsIndex, padding_idx: typing.SupportsInt | typing.SupportsIndex = -1, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for embedding_backward(...) = result.
    """
def embedding_forward(weight: typing.Any, indices: typing.Any) -> numpy.ndarray:
    """
    weight[indices]: (*indices.shape, D) rows of weight (V, D).
    """
def embedding_forward_args(weight: typing.Any, indices: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for embedding_forward(...) = result.
    """
def embedding_renorm(weight: typing.Any, indices: typing.Any, max_norm: typing.SupportsFloat | typing.SupportsIndex, norm_type: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    Scales the rows of weight named by indices whose norm exceeds max_norm, in place.
    """
def flush_deferred() -> None:
    """
    Applies gd.compile's pending weight updates, if any (private: graddesc._deferred).
    """
def gemm(a: typing.Any, b: typing.Any, trans_a: bool = False, trans_b: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, out: typing.Any = None) -> numpy.ndarray:
    """
    alpha * op(a) @ op(b) + beta * out for 2-d float32/float64 C-contiguous arrays.
    """
def gemm_args(a: typing.Any, b: typing.Any, trans_a: bool = False, trans_b: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, out: typing.Any = None, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for gemm(...) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
def get_num_threads() -> int:
    """
    Threads a parallel kernel may use.
    """
def index_gather(input: typing.Any, index: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    """
    out = input at index along dim (torch.gather): out has index's shape; input float32/float64 and index int64, both C-contiguous; negative indices count from the end.
    """
def index_gather_args(input: typing.Any, index: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for index_gather(input, index, dim) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
def index_nd(input: typing.Any, indices: list, dim: typing.SupportsInt | typing.SupportsIndex, add: bool = False, shape: typing.Any = None) -> numpy.ndarray:
    """
    Advanced indexing by a list of int64 index arrays of one shape on the adjacent dimensions dim, dim + 1, ...: input[..., i0, i1, ...] (negative indices count from the end). add=True: its adjoint, zeros of `shape` (the indexed input's) with input added at those places in order (deterministic).
    """
def index_nd_args(input: typing.Any, indices: list, dim: typing.SupportsInt | typing.SupportsIndex, add: bool = False, shape: typing.Any = None, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for index_nd(...) = result.
    """
def index_scatter(input: typing.Any, index: typing.Any, src: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, accumulate: bool = False, shape: typing.Any = None, value: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    A copy of input (or zeros of `shape` when input is None) with src (or `value` when src is None) written at index along dim, or added (accumulate=True, in index order, deterministic).
    """
def index_scatter_args(input: typing.Any, index: typing.Any, src: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, accumulate: bool = False, shape: typing.Any = None, value: typing.SupportsFloat | typing.SupportsIndex = 0.0, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for index_scatter(...) = result.
    """
def index_take(input: typing.Any, index: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, add: bool = False, size: typing.SupportsInt | typing.SupportsIndex = -1) -> numpy.ndarray:
    """
    add=False: input's slices at the 1-d int64 index along dim (torch.index_select; indices in [0, n)). add=True: its adjoint, zeros with `size` slices along dim and input's k-th slice added at index[k], in order (deterministic).
    """
def index_take_args(input: typing.Any, index: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, add: bool = False, size: typing.SupportsInt | typing.SupportsIndex = -1, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for index_take(...) = result.
    """
def int_binary(op: str, a: typing.Any, b: typing.Any) -> numpy.ndarray:
    """
    op(a, b) elementwise with broadcasting, a and b arrays (bool, int32, int64, float32, float64; any strides) or one a Python number, in PyTorch's result dtype. op: eq, ne, lt, le, gt, ge (bool; compared in the result dtype), land, lor, lxor (bool, of the truth values), and, or, xor (bitwise; bool or integer), add, sub, mul (integer, wrapping around), max, min (bool or integer), floordiv, rem (integer: Python's // and %, a zero divisor raises RuntimeError).
    """
def int_binary_args(op: str, a: typing.Any, b: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for int_binary(...) = result.
    """
def int_sum(x: typing.Any, axes: typing.Any = None, keepdim: bool = False) -> numpy.ndarray:
    """
    The int64 sum of a bool/int32/int64 array over axes (a sequence of distinct dims in [0, ndim); None: all), wrapping around as NumPy's int64 sum does.
    """
def int_sum_args(x: typing.Any, axes: typing.Any = None, keepdim: bool = False, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for int_sum(...) = result.
    """
def int_unary(op: str, x: typing.Any, dtype: typing.Any = None) -> numpy.ndarray:
    """
    op(x) elementwise into a new C-contiguous array: 'cast' to dtype (bool, int32, int64, float32, float64; a float value with no integer value raises ValueError), 'not' (logical, bool result), 'invert' (bitwise ~ of a bool or integer array), 'round' (halves to even), 'floor', 'ceil' (of a float array, in its dtype).
    """
def int_unary_args(op: str, x: typing.Any, dtype: typing.Any = None, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for int_unary(...) = result.
    """
def isa() -> str:
    """
    The instruction set in use.
    """
def layer_norm_backward(dy: typing.Any, x: typing.Any, weight: typing.Any, mean: typing.Any, rstd: typing.Any, need_dx: bool = True, need_dw: bool = True, need_db: bool = True) -> tuple:
    """
    (dx, dweight, dbias) of layer norm, None where not needed.
    """
def layer_norm_backward_args(dy: typing.Any, x: typing.Any, weight: typing.Any, mean: typing.Any, rstd: typing.Any, need_dx: bool = True, need_dw: bool = True, need_db: bool = True, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for layer_norm_backward(...) = result.
    """
def layer_norm_forward(x: typing.Any, weight: typing.Any, bias: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Layer norm of the rows of x (M, D): (y, mean, rstd).
    """
def layer_norm_forward_args(x: typing.Any, weight: typing.Any, bias: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for layer_norm_forward(...) = result.
    """
def linear_backward(dy: typing.Any, x: typing.Any, weight: typing.Any, need_dx: bool = True, need_dw: bool = True, need_db: bool = True) -> tuple:
    """
    (dx, dW, db) of y = x @ weight.T + bias; outputs not needed are None.
    """
def linear_forward(x: typing.Any, weight: typing.Any, bias: typing.Any = None) -> numpy.ndarray:
    """
    y = x @ weight.T + bias for x (IN,) or (B, IN), weight (OUT, IN), bias (OUT,) or None.
    """
def log_softmax_backward(dy: typing.Any, y: typing.Any) -> numpy.ndarray:
    """
    dx = dy - exp(y) * sum(dy) row-wise, from the saved log-softmax output y.
    """
def log_softmax_backward_args(dy: typing.Any, y: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for log_softmax_backward(dy, y) = result.
    """
def log_softmax_forward(x: typing.Any) -> numpy.ndarray:
    """
    Row-wise log-softmax of x (B, C), max-subtracted.
    """
def log_softmax_forward_args(x: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for log_softmax_forward(x) = result.
    """
def maxpool2d_backward(grad_output: typing.Any, indices: numpy.ndarray, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.ndarray:
    """
    dx of a max pool from its indices.
    """
def maxpool2d_forward(input: typing.Any, hs: numpy.ndarray, hn: numpy.ndarray, ws: numpy.ndarray, wn: numpy.ndarray, dh: typing.SupportsInt | typing.SupportsIndex, dw: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    (y, indices) of a max pool over the given windows.
    """
def mse_backward(input: typing.Any, target: typing.Any, scale: typing.SupportsFloat | typing.SupportsIndex, dloss: typing.Any = None) -> numpy.ndarray:
    """
    scale * dloss * (input - target); dloss is an optional 0-d array (default 1).
    """
def mse_backward_args(input: typing.Any, target: typing.Any, scale: typing.SupportsFloat | typing.SupportsIndex, dloss: typing.Any = None, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for mse_backward(...) = result.
    """
def mse_forward(input: typing.Any, target: typing.Any) -> numpy.ndarray:
    """
    0-d sum of (input - target)^2.
    """
def mse_forward_args(input: typing.Any, target: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for mse_forward(...) = result.
    """
def reduce(op: typing.SupportsInt | typing.SupportsIndex, x: typing.Any, axes: typing.Any = None, keepdim: bool = False, param: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> typing.Any:
    """
    Reduction `op` (an id of REDUCE_OPS) of a float array of any strides over `axes` (None: all), deterministic for any thread count. Returns y, (y, idx) for max/min, or idx (int64) for argmax/argmin. param: var/std correction, norm p.
    """
def reduce_args(op: typing.SupportsInt | typing.SupportsIndex, x: typing.Any, axes: typing.Any = None, keepdim: bool = False, param: typing.SupportsFloat | typing.SupportsIndex = 0.0, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for reduce(...) = result.
    """
def replay(*args, **kwargs):
    """
    replay(fast, args, grad_enabled): FastReplay.__call__, called directly (private).
    """
def rmsprop_step(params: typing.Any, grads: typing.Any, square_avgs: typing.Any, grad_avgs: typing.Any, momentum_buffers: typing.Any, lr: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, centered: bool = False, maximize: bool = False) -> None:
    """
    In-place RMSprop step over lists of arrays (PyTorch's rule).
    """
def scale(x: typing.Any, factor: typing.Any) -> numpy.ndarray:
    """
    x * factor (factor a 0-d float64 array, rounded to x's dtype first).
    """
def scale_args(x: typing.Any, factor: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for scale(x, factor) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
def scan(x: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, op: str, reverse: bool = False) -> numpy.ndarray:
    """
    The running sum (op='sum') or product ('prod') of x (float32/float64/int64, C-contiguous) along dim, from its start, or from its end (reverse=True), each accumulated in that order (int64 wraps around).
    """
def scan_args(x: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, op: str, reverse: bool = False, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for scan(...) = result.
    """
def set_deferred_types(parameter: type, deferred_parameter: type, tensor: type, deferred_tensor: type) -> None:
    """
    Registers graddesc._deferred's classes (private).
    """
def set_isa(name: str) -> None:
    """
    Switches the kernel table (for tests of every ISA path).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Sets the number of threads parallel kernels may use.
    """
def sgd_step(params: typing.Any, grads: typing.Any, momentum_buffers: typing.Any, lr: typing.Any, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.0, dampening: typing.SupportsFloat | typing.SupportsIndex = 0.0, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0, nesterov: bool = False, maximize: bool = False, direction: typing.Any = None) -> typing.Any:
    """
    In-place SGD step over lists of arrays (PyTorch's rule). lr is a float, a diagonal (N,) or a matrix (N, N) over the concatenated parameters; direction, for a matrix lr, an (N,) scratch array the step direction is written to. Returns the momentum buffers (new arrays where None was given) or None without momentum.
    """
def softmax_backward(dy: typing.Any, y: typing.Any) -> numpy.ndarray:
    """
    dx = y * (dy - sum(dy * y)) row-wise, from the saved softmax output y.
    """
def softmax_backward_args(dy: typing.Any, y: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for softmax_backward(dy, y) = result.
    """
def softmax_forward(x: typing.Any) -> numpy.ndarray:
    """
    Row-wise softmax of x (B, C).
    """
def softmax_forward_args(x: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for softmax_forward(x) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
def sort(x: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, descending: bool = False, k: typing.SupportsInt | typing.SupportsIndex = -1, order: str = 'sorted') -> tuple:
    """
    (values, indices int64) of x (float32/float64/int32/int64, C-contiguous) along dim in a stable order (equal values keep their positions), ascending or descending, NaN the largest value, -0.0 equal to +0.0. k (-1: all) keeps the first k of that order; order='sorted' in that order, 'index' in the order of their positions along dim, 'kth' only the k-th (1-based; size 1 along dim).
    """
def sort_args(x: typing.Any, dim: typing.SupportsInt | typing.SupportsIndex, descending: bool = False, k: typing.SupportsInt | typing.SupportsIndex = -1, order: str = 'sorted', *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for sort(...) = result.
    """
def sum_all(x: typing.Any) -> numpy.ndarray:
    """
    0-d sum of all elements, deterministic.
    """
def sum_all_args(x: typing.Any, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for sum_all(x) = result.
    """
def sum_axis(x: typing.Any, axis: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    """
    Sum of a C-contiguous float array over one axis, deterministic for any thread count.
    """
def sum_axis_args(x: typing.Any, axis: typing.SupportsInt | typing.SupportsIndex, *, result: typing.Any) -> tuple:
    """
    The instruction gd.compile records for sum_axis(x, axis) = result: (pointers, ints, reals, float64, [(address, bytes) read]).
    """
ACTIVATIONS: dict = {'relu': (0, 0.0), 'leaky_relu': (1, 0.01), 'tanh': (2, 0.0), 'sigmoid': (3, 0.0), 'softplus': (4, 20.0), 'gelu': (5, 0.0), 'gelu_tanh': (6, 0.0), 'exp': (7, 0.0), 'log': (8, 0.0)}
ACTIVATIONS_SAVING_OUTPUT: tuple = ('tanh', 'sigmoid', 'exp')
EW_OPS: dict = {'add': 0, 'sub': 1, 'mul': 2, 'div': 3, 'pow': 4, 'maximum': 5, 'minimum': 6, 'neg': 7, 'abs': 8, 'exp': 9, 'log': 10, 'log1p': 11, 'sqrt': 12, 'rsqrt': 13, 'square': 14, 'sin': 15, 'cos': 16, 'sign': 17, 'reciprocal': 18, 'clamp': 19, 'where': 20, 'sum_to': 21, 'sgn': 22, 'eq': 23, 'ne': 24, 'lt': 25, 'le': 26, 'gt': 27, 'ge': 28, 'copy': 29}
ISAS: tuple = ('avx512', 'avx2', 'baseline')
RECORD_ARGS: dict = {'gemm': 'gemm_args', 'softmax_forward': 'softmax_forward_args', 'softmax_backward': 'softmax_backward_args', 'log_softmax_forward': 'log_softmax_forward_args', 'log_softmax_backward': 'log_softmax_backward_args', 'cross_entropy_forward': 'cross_entropy_forward_args', 'cross_entropy_backward': 'cross_entropy_backward_args', 'mse_forward': 'mse_forward_args', 'mse_backward': 'mse_backward_args', 'sum_axis': 'sum_axis_args', 'sum_all': 'sum_all_args', 'reduce': 'reduce_args', 'scale': 'scale_args', 'count_scale': 'count_scale_args', 'batch_norm_forward': 'batch_norm_forward_args', 'batch_norm_backward': 'batch_norm_backward_args', 'layer_norm_forward': 'layer_norm_forward_args', 'layer_norm_backward': 'layer_norm_backward_args', 'embedding_forward': 'embedding_forward_args', 'embedding_backward': 'embedding_backward_args', 'index_gather': 'index_gather_args', 'index_scatter': 'index_scatter_args', 'index_take': 'index_take_args', 'index_nd': 'index_nd_args', 'dropout_mask': 'dropout_mask_args', 'int_binary': 'int_binary_args', 'int_unary': 'int_unary_args', 'int_sum': 'int_sum_args', 'sort': 'sort_args', 'scan': 'scan_args', 'cumprod_backward': 'cumprod_backward_args'}
REDUCE_OPS: dict = {'sum': 0, 'mean': 1, 'var': 2, 'std': 3, 'amax': 4, 'amin': 5, 'max': 6, 'min': 7, 'argmax': 8, 'argmin': 9, 'logsumexp': 10, 'norm': 11, 'prod': 12}
__version__: str = '0.1.0'
has_openmp: bool = True
