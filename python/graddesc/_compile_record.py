"""gd.compile's recorder: what one eager run of a step did, seen from the kernel boundary.

While `compile(fn)` records, every public function of graddesc._core is replaced by `_wrap`'s
wrapper (CompiledFunction._record in _compile.py installs them under `_install_lock`), which
appends each call of a recordable kernel, with its arguments and result, to the active
`_Recording`; the rest of the package reports through `_compile_state.active` what a replay could
not repeat (a value read in Python, a NumPy write, an optimizer setting changed inside the step).
`_SIGS` names the arguments of each recordable binding; kernels that lay out their own
instruction (registered kinds) are in `_RECORD_ARGS` instead. _compile_translate.py turns a
recording into a Program.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable

import numpy as np

from graddesc import _compile_state, _core
from graddesc._tensor import Tensor
from graddesc.autograd import grad_mode
from graddesc.functional import conv as _conv

# activation name -> (the kernel's id, its default alpha), from the binding's own table
_ACTS = dict(_core.ACTIVATIONS)
# _core functions that only report configuration: harmless during a recording
_QUERIES = {"isa", "best_isa", "cpu_supports", "get_num_threads", "Program", "FastReplay",
            "ReplayCount", "replay", "flush_deferred", "deferred_pending", "set_deferred_types",
            "elementwise_args"}

# Argument names of the recordable bindings, in order, with defaults.
_SIGS: dict = {
    "linear_forward": (("x", "weight", "bias"), {"bias": None}),
    "linear_backward": (("dy", "x", "weight", "need_dx", "need_dw", "need_db"),
                        {"need_dx": True, "need_dw": True, "need_db": True}),
    "activation_forward": (("name", "x", "alpha"), {"alpha": None}),
    "activation_backward": (("name", "dy", "x", "y", "alpha"),
                            {"x": None, "y": None, "alpha": None}),
    "copy_array": (("x",), {}),
    "clip_norm": (("grads", "norm_type", "max_norm"), {}),
    "elementwise": (("op", "a", "b", "c", "out"), {"b": None, "c": None, "out": None}),
    "adam_step": (("params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs", "steps",
                   "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize",
                   "decoupled_weight_decay"),
                  {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}),
    "sgd_step": (("params", "grads", "momentum_buffers", "lr", "momentum", "dampening",
                  "weight_decay", "nesterov", "maximize", "direction"),
                 {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
                  "maximize": False, "direction": None}),
    "rmsprop_step": (("params", "grads", "square_avgs", "grad_avgs", "momentum_buffers", "lr",
                      "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
                     {"centered": False, "maximize": False}),
    "adagrad_step": (("params", "grads", "state_sums", "steps", "lr", "lr_decay", "eps",
                      "weight_decay", "maximize"), {"maximize": False}),
}
# the optimizer kernels (their state lives as long as the optimizer; they update parameters)
_OPTIM_KERNELS = ("sgd_step", "adam_step", "rmsprop_step", "adagrad_step")
# the recorded instructions of those (their real option 0 is the learning rate)
_OPTIM_CODES = ("sgd", "adam", "rmsprop", "adagrad", "linear_bwd_sgd")


_SIGS.update(_conv.CAPTURE_SIGS)  # convolution and pooling: one "conv" instruction

# Kernels that lay out their own instruction (a registered kind, src/cpp/instr_registry.hpp):
# binding name -> its `_args` twin. Recording one needs no entry in _SIGS and no branch in
# _translate; new kernels should take this path.
_RECORD_ARGS: dict = dict(_core.RECORD_ARGS)

def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _array_size(v: Any) -> int:
    return v._data.size if isinstance(v, Tensor) else np.asarray(v).size

class _Recording:
    """What one eager run of fn did, as seen from the kernel boundary."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.calls: list = []
        self.failure: str | None = None
        self.params: dict = {}      # id(array) -> leaf Tensor requiring grad that an op read
        self.constants: dict = {}   # id(array) -> shape-only constant made during the run
        # id(array) -> the constants of those made by gd.zeros/ones/full/... in the step
        self.created_constants: dict = {}
        self.grads: list = []       # (leaf Tensor, grad array) created by the run
        self.cleared: set = set()   # ids of tensors whose .grad the run set to None
        self.increments: list = []  # (number of kernel calls so far, optimizer step array)
        self.hypers: list = []      # (param group, its snapshot) of every optimizer step
        # id(optimizer) -> (optimizer, its param_groups list, the groups in it) at its step
        self.optimizers: dict = {}
        self.frozen: dict = {}      # id(array) -> a called module's tensor not requiring grad
        # id(array) -> a called module's parameter under no_grad (read, e.g. an evaluation step)
        self.readonly: dict = {}
        # id(leaf) -> (leaf, its .grad Tensor): a gradient from before this call that the step
        # writes in place (zero_grad(set_to_none=False), then backward accumulates into it)
        self.persistent: dict = {}
        self.created: set = set()   # ids of the grad arrays this run created
        self.states: dict = {}      # id(array) -> a generator's stream state a kernel advanced
        # (array, generator, sample) of each draw from a generator's PCG64 stream, in order:
        # host-fed inputs that every replay refills (_compile_state.random_draw)
        self.draws: list = []
        # id(counter) -> the version counter of a tensor an in-place kernel wrote (a replay
        # bumps it as the eager op did)
        self.bumped: dict = {}
        # every live optimizer's param groups as the call starts
        self.start_settings = {id(g): _group_snapshot(g) for o in list(_compile_state.optimizers)
                               for g in o.param_groups}

    def mine(self) -> bool:
        return threading.get_ident() == self.thread

    def touches(self, arr: np.ndarray) -> bool:
        """Whether a kernel recorded so far read or wrote memory shared with arr."""
        return any(isinstance(x, np.ndarray) and np.may_share_memory(x, arr)
                   for call in self.calls for x in _flat_arrays((call[1], call[2], call[3])))

    def fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why

    def on_value_read(self, what: str) -> None:
        if self.mine():
            self.fail(f"{what} reads a tensor's value in Python")

    def on_optimizer_step(self, opt: Any) -> None:
        if self.mine():
            self.optimizers[id(opt)] = (opt, opt.param_groups, tuple(opt.param_groups))
            for group in opt.param_groups:
                snap = _group_snapshot(group)
                before = self.start_settings.get(id(group))
                if before is not None and not _same_snapshot(before, snap):
                    self.fail("the step changes an optimizer setting (param_groups[i][...]) in "
                              "Python, which a replay would not repeat")
                self.hypers.append((group, snap))

    def on_module(self, module: Any) -> None:
        if self.mine():
            _compile_state.recorded_modules.add(module)
            enabled = grad_mode.is_grad_enabled()
            for t in list(module._parameters.values()) + list(module._buffers.values()):
                if t is not None and not t.requires_grad:  # frozen: read, never written
                    self.frozen[id(t._data)] = t
                elif t is not None and not enabled:  # under no_grad: read like a frozen one
                    self.readonly[id(t._data)] = t

    def on_side_effect(self, what: str) -> None:
        if self.mine():
            self.fail(f"{what} changes Python state inside the step, which a replay would not "
                      "repeat (call it outside the compiled function)")

    def on_setting_write(self) -> None:
        if self.mine():
            self.fail("the step changes an optimizer setting (param_groups[i][...] is written "
                      "inside it), which a replay would not repeat")

    def on_inplace_write(self, what: str) -> None:
        if self.mine():
            self.fail(f"{what} writes into a tensor in Python (NumPy), which a replay would skip")

    def on_inplace_kernel(self, t: Tensor) -> None:
        if self.mine():
            self.bumped[id(t._vc)] = t._vc

    def on_apply(self, cls: type, args: tuple) -> None:
        if not self.mine():
            return
        for a in args:
            if isinstance(a, Tensor) and a.grad_fn is None and a.requires_grad:
                self.params[id(a._data)] = a

    def on_grad(self, var: Tensor, arr: np.ndarray) -> None:
        if self.mine():
            self.grads.append((var, arr))
            self.created.add(id(arr))

    def on_grad_zeroed(self, var: Tensor, grad: Tensor) -> None:
        """zero_grad(set_to_none=False) fills var's .grad with zeros by a kernel: a gradient from
        an earlier call becomes memory the program writes (and the next ones read)."""
        if self.mine():
            if id(grad._data) not in self.created:
                self.persistent[id(var)] = (var, grad)

    def on_accumulate(self, var: Tensor, grad: Tensor) -> None:
        """backward adds into var's existing .grad. One this run did not create is memory the
        program reads and writes on every replay, as eager accumulates into it on every call
        (a step that zeroes .grad after its update, or never: each replay adds to what is
        there); each call checks that var still holds that very .grad."""
        if self.mine() and id(grad._data) not in self.created:
            known = self.persistent.get(id(var))
            if known is None:
                self.persistent[id(var)] = (var, grad)
            elif known[1] is not grad:
                self.fail("the step replaces a gradient it writes in place")

    def on_increment(self, step: np.ndarray) -> None:
        if self.mine():
            self.increments.append((len(self.calls), step))

    def on_grad_cleared(self, t: Tensor) -> None:
        if self.mine():
            self.cleared.add(id(t))


def _flat_arrays(x: Any) -> list:
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _flat_arrays(v)]
    if isinstance(x, dict):
        return [a for v in x.values() for a in _flat_arrays(v)]
    return []


def _group_snapshot(group: dict) -> tuple:
    """What a replay bakes in of an optimizer's param group: every setting and the params."""
    return (tuple(id(p) for p in group["params"]),
            tuple((k, v) for k, v in group.items() if k != "params"))


def _same_snapshot(a: tuple, b: tuple) -> bool:
    if a[0] != b[0] or len(a[1]) != len(b[1]):
        return False
    for (ka, va), (kb, vb) in zip(a[1], b[1]):
        if ka != kb:
            return False
        if va is vb:
            continue
        try:
            if type(va) is not type(vb) or not bool(va == vb):
                return False
        except (TypeError, ValueError):  # e.g. an array-valued setting
            return False
    return True

def _wrap(name: str, real: Callable) -> Callable:
    @functools.wraps(real)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        rec = _compile_state.active
        if rec is not None and rec.mine():
            if name in _SIGS or name in _RECORD_ARGS:
                rec.calls.append((name, args, kwargs, out))
            elif name not in _QUERIES:
                rec.fail(f"the kernel '{name}' has no replay path yet")
        return out

    return recorded


_install_lock = threading.Lock()

