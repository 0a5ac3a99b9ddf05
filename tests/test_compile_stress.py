"""Stress tests for gd.compile: a compiled training step stays BITWISE equal to the same step run
eagerly -- the returned tensors, every parameter, every .grad and the optimizer state, compared
after every call -- over a broad matrix of nets, activations, dtypes, batch sizes, losses and
optimizers; with the user touching parameters, gradients and optimizer state between calls;
plus the recorded Program's introspection (names, profile, traffic) and Program.optimize on
hand-built programs against a NumPy oracle.

Each comparison runs N_CALLS calls with new data of the same shapes: the first two calls record
(gradients are None before the first, so the recorder records once more to see them cleared),
the others replay. Steps gd.compile cannot capture must warn (pytest.warns) and still be equal;
every other test fails on a fallback warning (filterwarnings = error).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core

F = gd.nn.functional

N_CALLS = 5
DTYPES = [pytest.param(gd.float32, id="f32"), pytest.param(gd.float64, id="f64")]
ACTS = {
    "relu": gd.nn.ReLU,
    "tanh": gd.nn.Tanh,
    "sigmoid": gd.nn.Sigmoid,
    "leaky_relu": lambda: gd.nn.LeakyReLU(0.2),
    "gelu": gd.nn.GELU,
    "gelu_tanh": lambda: gd.nn.GELU(approximate="tanh"),
    "softplus": gd.nn.Softplus,
}
# (reduction, ignore_index or None) of CrossEntropyLoss, or the reduction of MSELoss
LOSSES = {
    "ce_mean": ("ce", "mean", None),
    "ce_sum": ("ce", "sum", None),
    "ce_ignore_mean": ("ce", "mean", -100),
    "ce_ignore_sum": ("ce", "sum", -1),
    "ce_ignore_class0": ("ce", "mean", 0),  # ignore_index that is also a valid class
    "mse_mean": ("mse", "mean", None),
    "mse_sum": ("mse", "sum", None),
}


# ---- building twins -----------------------------------------------------------------------------
def _np(dtype):
    return np.float64 if dtype == gd.float64 else np.float32


def _mlp(sizes, act="relu", bias=True, dtype=gd.float32, seed=0):
    """Linear layers with `act` between them; bias is a bool or one bool per layer."""
    gd.manual_seed(seed)
    layers = []
    n = len(sizes) - 1
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(gd.nn.Linear(a, b, bias=bias if isinstance(bias, bool) else bias[i],
                                   dtype=dtype))
        if i < n - 1:
            layers.append(ACTS[act]())
    return gd.nn.Sequential(*layers)


def _twin_models(sizes, **kw):
    """Two equal models: the second built from another seed, then given the first's state."""
    m1, m2 = _mlp(sizes, seed=0, **kw), _mlp(sizes, seed=1, **kw)
    m2.load_state_dict(m1.state_dict())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
    return m1, m2


def _loss_fn(kind):
    family, reduction, ignore = LOSSES[kind]
    if family == "mse":
        return gd.nn.MSELoss(reduction=reduction)
    if ignore is None:
        return gd.nn.CrossEntropyLoss(reduction=reduction)
    return gd.nn.CrossEntropyLoss(reduction=reduction, ignore_index=ignore)


def _make_opt(spec, params):
    name, kw = spec
    return getattr(gd.optim, name)(params, **kw)


def _step_fn(model, opt, loss_fn, zero="opt", ret="loss"):
    def step(x, y):
        if zero == "opt":
            opt.zero_grad()
        elif zero == "model":
            model.zero_grad()
        elif zero == "manual":
            for p in model.parameters():
                p.grad = None
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        if ret == "tuple":
            return loss, out
        if ret == "list":
            return [out, loss]
        if ret == "none":
            return None
        return loss

    return step


def _data(sizes, batch, loss_kind, n=N_CALLS, dtype=gd.float32, seed=0):
    """n batches (x, y) of the same shapes; CE targets with ignore_index get a varying number of
    ignored rows (at least one valid row for the mean; one all-ignored batch for the sum)."""
    rng = np.random.default_rng(seed)
    family, reduction, ignore = LOSSES[loss_kind]
    out = []
    for k in range(n):
        x = rng.standard_normal((batch, sizes[0])).astype(_np(dtype))
        if family == "mse":
            y = gd.tensor(rng.standard_normal((batch, sizes[-1])).astype(_np(dtype)))
        else:
            t = rng.integers(0, sizes[-1], batch)
            if ignore is not None:
                n_ign = [1, batch // 2, 0, batch - 1, batch][k % 5]
                if reduction == "mean":
                    n_ign = min(n_ign, batch - 1)
                t[rng.permutation(batch)[:n_ign]] = ignore
            y = gd.tensor(t)
        out.append((gd.tensor(x), y))
    return out


# ---- comparing ----------------------------------------------------------------------------------
def _flat(r):
    if r is None:
        return []
    return [r] if isinstance(r, gd.Tensor) else list(r)


def _opt_state(opt):
    out = {}
    for k, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            out[(k, name)] = np.array(v.numpy() if isinstance(v, gd.Tensor) else v)
    return out


def _assert_same(where, named1, opt1, r1, named2, opt2, r2):
    """Returned tensors, parameters, .grad and optimizer state bitwise equal (NaN == NaN)."""
    f1, f2 = _flat(r1), _flat(r2)
    assert type(r1) is type(r2) or isinstance(r2, gd.Tensor), where
    assert len(f1) == len(f2), where
    for i, (a, b) in enumerate(zip(f1, f2)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: returned[{i}]"
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(),
                                      err_msg=f"{where}: returned[{i}]")
    assert [n for n, _ in named1] == [n for n, _ in named2]
    for (name, p1), (_, p2) in zip(named1, named2):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy(),
                                      err_msg=f"{where}: {name}")
        assert (p1.grad is None) == (p2.grad is None), f"{where}: {name}.grad is None differs"
        if p1.grad is not None:
            np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy(),
                                          err_msg=f"{where}: {name}.grad")
    s1, s2 = _opt_state(opt1), _opt_state(opt2)
    assert s1.keys() == s2.keys(), where
    for k in s1:
        assert s1[k].dtype == s2[k].dtype, f"{where}: state {k}"
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=f"{where}: state {k}")


def _run_twins(eager, compiled, named1, opt1, named2, opt2, data, between=None, capture=True,
               rerecords=0):
    """Calls both steps on each batch, comparing everything after every call; `between(k)` runs
    after call k's comparison. With capture, no call may fall back and >= n - 2 - rerecords must
    replay."""
    for k, (x, y) in enumerate(data):
        r1, r2 = eager(x, y), compiled(x, y)
        _assert_same(f"call {k}", named1, opt1, r1, named2, opt2, r2)
        if between is not None:
            between(k)
    if capture:
        assert compiled.stats["eager"] == 0
        assert compiled.stats["replayed"] >= len(data) - 2 - rerecords, compiled.stats
    return compiled


def _assert_falls_back(make, m1, o1, m2, o2, data):
    """make(model, opt) -> step: compiled, it warns once, never replays, and equals eager."""
    compiled = gd.compile(make(m2, o2))
    with pytest.warns(RuntimeWarning, match="graddesc.compile: running step eagerly"):
        _run_twins(make(m1, o1), compiled, list(m1.named_parameters()), o1,
                   list(m2.named_parameters()), o2, data, capture=False)
    assert compiled.stats["replayed"] == 0 and compiled.stats["eager"] >= 1


def _compare_mlp(sizes, batch, act="relu", dtype=gd.float32, loss_kind="ce_mean",
                 opt=("SGD", {"lr": 0.05, "momentum": 0.9}), bias=True, zero="opt",
                 ret="loss", n=N_CALLS):
    m1, m2 = _twin_models(sizes, act=act, bias=bias, dtype=dtype)
    o1, o2 = _make_opt(opt, m1.parameters()), _make_opt(opt, m2.parameters())
    lf = _loss_fn(loss_kind)
    eager = _step_fn(m1, o1, lf, zero, ret)
    compiled = gd.compile(_step_fn(m2, o2, lf, zero, ret))
    return _run_twins(eager, compiled, list(m1.named_parameters()), o1,
                      list(m2.named_parameters()), o2,
                      _data(sizes, batch, loss_kind, n, dtype))


def _programs(compiled):
    """The recorded Programs of a CompiledFunction (its cache maps input signatures to entries;
    eager fallbacks are kept as a sentinel without a program)."""
    return [e.program for e in compiled._cache.values() if getattr(e, "program", None) is not None]


# ---- the matrix ---------------------------------------------------------------------------------
NETS = [
    pytest.param([600, 60, 40, 10], id="600-60-40-10"),
    pytest.param([7, 13, 5], id="7-13-5"),
    pytest.param([3, 2], id="3-2"),
    pytest.param([20, 16, 16, 16, 5], id="20-16x3-5"),
]
BATCHES = [1, 2, 5, 33, 64]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("sizes", NETS)
def test_mlp_activation_matrix(sizes, act, dtype, batch):
    _compare_mlp(sizes, batch, act, dtype)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_kind", list(LOSSES))
def test_loss_matrix(loss_kind, dtype, batch):
    _compare_mlp([7, 13, 5], batch, "tanh", dtype, loss_kind)


OPTIMIZERS = {
    "sgd": ("SGD", {"lr": 0.1}),
    "sgd_momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
    "sgd_nesterov": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "sgd_weight_decay": ("SGD", {"lr": 0.1, "weight_decay": 0.01}),
    "sgd_dampening": ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    "sgd_maximize": ("SGD", {"lr": 0.01, "maximize": True}),
    "sgd_momentum_maximize": ("SGD", {"lr": 0.01, "momentum": 0.5, "maximize": True}),
    "sgd_everything": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                               "weight_decay": 1e-3, "maximize": True}),
    "sgd_momentum_dampening_wd": ("SGD", {"lr": 0.05, "momentum": 0.7, "dampening": 0.2,
                                          "weight_decay": 0.05}),
    "adam": ("Adam", {"lr": 1e-2}),
    "adam_betas_eps": ("Adam", {"lr": 3e-3, "betas": (0.8, 0.95), "eps": 1e-6}),
    "adam_weight_decay": ("Adam", {"lr": 1e-2, "weight_decay": 0.1}),
    "adam_amsgrad": ("Adam", {"lr": 1e-2, "amsgrad": True}),
    "adam_maximize": ("Adam", {"lr": 1e-3, "maximize": True}),
    "adam_amsgrad_maximize_wd": ("Adam", {"lr": 1e-2, "amsgrad": True, "maximize": True,
                                          "weight_decay": 0.01}),
    "adamw": ("AdamW", {"lr": 1e-2}),
    "adamw_wd_amsgrad": ("AdamW", {"lr": 1e-2, "weight_decay": 0.3, "amsgrad": True}),
    "adamw_maximize": ("AdamW", {"lr": 1e-3, "maximize": True}),
}


@pytest.mark.parametrize("batch", [1, 5])  # batch 1: the fused linear_bwd_sgd path for SGD
@pytest.mark.parametrize("loss_kind", ["ce_mean", "mse_sum"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_optimizer_matrix(opt, dtype, loss_kind, batch):
    _compare_mlp([7, 13, 5], batch, "relu", dtype, loss_kind, OPTIMIZERS[opt], n=6)


@pytest.mark.parametrize("opt", [k for k in OPTIMIZERS if k.startswith("sgd")])
@pytest.mark.parametrize("bias", [True, False, (False, True)], ids=["bias", "none", "mixed"])
def test_fused_batch1_backward_and_sgd_on_wide_layers(opt, bias):
    """Layers wide enough that the fused update runs over several row blocks, some partial."""
    compiled = _compare_mlp([1500, 7, 3], 1, "tanh", gd.float32, "ce_mean", OPTIMIZERS[opt],
                            bias=bias)
    (prog,) = _programs(compiled)
    assert prog.names().count("linear_bwd_sgd") == 2 and "sgd" not in prog.names()


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam_amsgrad"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, (False, True, False), (True, False, True)],
                         ids=["none", "middle", "outer"])
def test_layers_without_bias(bias, dtype, opt):
    _compare_mlp([9, 11, 6, 4], 5, "tanh", dtype, "ce_mean", OPTIMIZERS[opt], bias=bias)


@pytest.mark.parametrize("zero", ["opt", "model", "manual"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_grad_variants_are_captured(zero, dtype):
    _compare_mlp([8, 6, 3], 4, "relu", dtype, "ce_mean", OPTIMIZERS["sgd_momentum"], zero=zero)


@pytest.mark.parametrize("who", ["opt", "model"])
def test_zero_grad_set_to_none_false_is_captured_and_stays_equal(who):
    """zero_grad(set_to_none=False) zeroes .grad and backward then accumulates into it, both
    through the elementwise kernels: captured, and equal to eager."""
    m1, m2 = _twin_models([8, 6, 3])
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)

    def make(model, opt):
        def step(x, y):
            (opt if who == "opt" else model).zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    _run_twins(make(m1, o1), gd.compile(make(m2, o2)), list(m1.named_parameters()), o1,
               list(m2.named_parameters()), o2, _data([8, 6, 3], 4, "ce_mean"))


def test_optimizer_step_outside_the_compiled_function():
    """gd.fit's split: zero_grad + forward + backward compiled, optimizer.step() eager."""
    sizes = [10, 12, 4]
    m1, m2 = _twin_models(sizes, act="gelu")
    o1 = gd.optim.Adam(m1.parameters(), lr=1e-2, amsgrad=True)
    o2 = gd.optim.Adam(m2.parameters(), lr=1e-2, amsgrad=True)

    def make(model, opt):
        def fwd_bwd(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        return fwd_bwd

    f1, f2 = make(m1, o1), gd.compile(make(m2, o2))
    for k, (x, y) in enumerate(_data(sizes, 6, "ce_mean")):
        r1, r2 = f1(x, y), f2(x, y)
        _assert_same(f"call {k} before step", list(m1.named_parameters()), o1, r1,
                     list(m2.named_parameters()), o2, r2)
        o1.step()
        o2.step()
        _assert_same(f"call {k} after step", list(m1.named_parameters()), o1, None,
                     list(m2.named_parameters()), o2, None)
    assert f2.stats["eager"] == 0 and f2.stats["replayed"] >= N_CALLS - 2


# ---- shared parameters: gradients accumulated within one step -----------------------------------
class _Tied(gd.nn.Module):
    """A square weight W used twice through F.linear (h = tanh(x W^T + b); h W^T), then a head."""

    def __init__(self, n_in, n_out, dtype):
        super().__init__()
        self.inp = gd.nn.Linear(n_in, 6, dtype=dtype)
        self.W = gd.nn.Parameter(gd.randn(6, 6, dtype=dtype) * 0.3)
        self.head = gd.nn.Linear(6, n_out, dtype=dtype)

    def forward(self, x):
        h = gd.tanh(self.inp(x))
        h = gd.tanh(F.linear(h, self.W))
        h = gd.tanh(F.linear(h, self.W))
        return self.head(h)


def _shared_model(kind, dtype, seed):
    gd.manual_seed(seed)
    if kind == "functional_tied":
        return _Tied(5, 3, dtype)
    inp, a, b, head = (gd.nn.Linear(5, 6, dtype=dtype), gd.nn.Linear(6, 6, dtype=dtype),
                       gd.nn.Linear(6, 6, dtype=dtype), gd.nn.Linear(6, 3, dtype=dtype))
    if kind == "module_tied":  # two layers, one weight (biases separate)
        b.weight = a.weight
        return gd.nn.Sequential(inp, gd.nn.Tanh(), a, gd.nn.Tanh(), b, gd.nn.Tanh(), head)
    # "module_twice": one layer applied twice in the forward (fan-out of weight and bias)
    return gd.nn.Sequential(inp, gd.nn.ReLU(), a, gd.nn.Tanh(), a, gd.nn.Tanh(), head)


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["functional_tied", "module_tied", "module_twice"])
def test_shared_parameters_accumulate_within_a_step(kind, dtype, opt):
    """A parameter reached twice gets the sum of two gradients: the engine adds them with the
    elementwise add kernel, so gd.compile captures the step and replays it bitwise equal to
    eager."""
    m1, m2 = _shared_model(kind, dtype, 0), _shared_model(kind, dtype, 1)
    m2.load_state_dict(m1.state_dict())
    n_params = {"functional_tied": 5, "module_tied": 7, "module_twice": 6}[kind]
    assert len(list(m1.parameters())) == n_params  # the shared parameter is listed once
    o1, o2 = _make_opt(OPTIMIZERS[opt], m1.parameters()), _make_opt(OPTIMIZERS[opt],
                                                                     m2.parameters())
    lf = gd.nn.CrossEntropyLoss()
    compiled = gd.compile(_step_fn(m2, o2, lf))
    _run_twins(_step_fn(m1, o1, lf), compiled, list(m1.named_parameters()), o1,
               list(m2.named_parameters()), o2, _data([5, 6, 3], 4, "ce_mean", dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_nll_loss(dtype):
    """log_softmax is a kernel and NLLLoss picks log-probabilities with the gather kernel (its
    row weights by the integer kernels): the step is captured and equals eager bitwise."""
    sizes = [7, 9, 4]
    m1, m2 = _twin_models(sizes, dtype=dtype)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    nll = gd.nn.NLLLoss()

    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = nll(F.log_softmax(model(x), 1), y)
            loss.backward()
            opt.step()
            return loss

        return step

    _run_twins(make(m1, o1), gd.compile(make(m2, o2)), list(m1.named_parameters()), o1,
               list(m2.named_parameters()), o2, _data(sizes, 5, "ce_mean", dtype=dtype))


# ---- the user between calls ---------------------------------------------------------------------
def _state_tensor(opt, p):
    st = opt.state[p]
    return st["momentum_buffer"] if "momentum_buffer" in st else st["exp_avg"]


@pytest.mark.parametrize("edit", ["mul_", "copy_", "state_mul_", "read_only"])
@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_user_reads_and_edits_between_calls(edit, opt, dtype):
    """Reading params/.grad/state (done by every comparison) and editing a parameter or an
    optimizer state buffer in place under no_grad between calls: the next replay sees the
    edit exactly as the eager step does."""
    sizes = [6, 8, 8, 3]
    m1, m2 = _twin_models(sizes, act="sigmoid", dtype=dtype)
    o1, o2 = _make_opt(OPTIMIZERS[opt], m1.parameters()), _make_opt(OPTIMIZERS[opt],
                                                                     m2.parameters())
    lf = gd.nn.CrossEntropyLoss()
    p1s, p2s = list(m1.parameters()), list(m2.parameters())
    rng = np.random.default_rng(7)

    def between(k):
        i = k % len(p1s)
        fresh = rng.standard_normal(p1s[i].shape).astype(_np(dtype))
        with gd.no_grad():
            for params, o in ((p1s, o1), (p2s, o2)):
                if edit == "mul_":
                    params[i].mul_(0.5)
                elif edit == "copy_":
                    params[i].copy_(gd.tensor(fresh))
                elif edit == "state_mul_":
                    _state_tensor(o, params[i]).mul_(0.5)
        _assert_same(f"after edit {k}", list(m1.named_parameters()), o1, None,
                     list(m2.named_parameters()), o2, None)

    _run_twins(_step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf)),
               list(m1.named_parameters()), o1, list(m2.named_parameters()), o2,
               _data(sizes, 5, "ce_mean", n=7, dtype=dtype), between=between)


def test_threads_and_isa_switched_between_calls(threads):
    """Each call runs under another thread count and instruction set (eager and compiled under
    the same one): the replayed program calls the active kernel table, as eager does."""
    isas = [n for n in _core.ISAS if _core.cpu_supports(n)]
    sizes = [600, 60, 40, 10]
    m1, m2 = _twin_models(sizes)
    o1 = gd.optim.SGD(m1.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    o2 = gd.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    lf = gd.nn.CrossEntropyLoss()
    eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
    settings = itertools.cycle(itertools.product(isas, [1, 2]))
    for k, (x, y) in enumerate(_data(sizes, 33, "ce_mean", n=2 * len(isas) + 2)):
        isa, n = next(settings)
        _core.set_isa(isa)
        threads(n)
        _assert_same(f"call {k} ({isa}, {n} threads)", list(m1.named_parameters()), o1,
                     eager(x, y), list(m2.named_parameters()), o2, compiled(x, y))
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= 2 * len(isas)


# ---- returned tensors ---------------------------------------------------------------------------
@pytest.mark.parametrize("ret", ["tuple", "list", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_returned_tensors_mutated_do_not_leak_into_later_calls(ret, dtype):
    """A step returning (loss, logits) / [logits, loss] / None; after each comparison the caller
    overwrites the returned tensors in place, which must not change any later result."""
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes, act="softplus", dtype=dtype)
    o1 = gd.optim.SGD(m1.parameters(), lr=0.05, momentum=0.9)
    o2 = gd.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9)
    lf = gd.nn.CrossEntropyLoss()
    eager = _step_fn(m1, o1, lf, ret=ret)
    compiled = gd.compile(_step_fn(m2, o2, lf, ret=ret))
    for k, (x, y) in enumerate(_data(sizes, 5, "ce_mean", dtype=dtype)):
        r1, r2 = eager(x, y), compiled(x, y)
        _assert_same(f"call {k}", list(m1.named_parameters()), o1, r1,
                     list(m2.named_parameters()), o2, r2)
        if ret == "none":
            assert r1 is None and r2 is None
        else:
            assert type(r2) is (tuple if ret == "tuple" else list) and len(r2) == 2
        with gd.no_grad():
            for t in _flat(r1) + _flat(r2):
                t.detach().fill_(float("nan"))
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= N_CALLS - 2


@pytest.mark.parametrize("ret", ["loss", "tuple"])
def test_returned_tensors_keep_their_values_after_later_calls(ret):
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    lf = gd.nn.CrossEntropyLoss()
    eager, compiled = _step_fn(m1, o1, lf, ret=ret), gd.compile(_step_fn(m2, o2, lf, ret=ret))
    kept1, kept2 = [], []
    for x, y in _data(sizes, 5, "ce_mean"):
        kept1.append(eager(x, y))
        kept2.append(compiled(x, y))
    for k, (r1, r2) in enumerate(zip(kept1, kept2)):
        for i, (a, b) in enumerate(zip(_flat(r1), _flat(r2))):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(),
                                          err_msg=f"value returned by call {k} [{i}]")


def test_grad_tensor_kept_from_an_earlier_call_keeps_its_values():
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    lf = gd.nn.CrossEntropyLoss()
    eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
    kept1, kept2 = [], []
    for x, y in _data(sizes, 5, "ce_mean"):
        eager(x, y)
        compiled(x, y)
        kept1.append(m1[0].weight.grad)
        kept2.append(m2[0].weight.grad)
    for k, (g1, g2) in enumerate(zip(kept1, kept2)):
        np.testing.assert_array_equal(g1.numpy(), g2.numpy(), err_msg=f".grad kept after call {k}")


# ---- what a recording bakes in ------------------------------------------------------------------
@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
def test_learning_rate_changed_between_calls(opt):
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1, o2 = _make_opt(OPTIMIZERS[opt], m1.parameters()), _make_opt(OPTIMIZERS[opt],
                                                                     m2.parameters())
    lf = gd.nn.CrossEntropyLoss()

    def between(k):
        for o in (o1, o2):
            for g in o.param_groups:
                g["lr"] = g["lr"] * 0.5

    _run_twins(_step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf)),
               list(m1.named_parameters()), o1, list(m2.named_parameters()), o2,
               _data(sizes, 5, "ce_mean"), between=between)


def test_parameter_frozen_between_calls():
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    lf = gd.nn.CrossEntropyLoss()

    def between(k):
        if k == 2:
            m1[0].weight.requires_grad_(False)
            m2[0].weight.requires_grad_(False)

    _run_twins(_step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf)),
               list(m1.named_parameters()), o1, list(m2.named_parameters()), o2,
               _data(sizes, 5, "ce_mean"), between=between,
               rerecords=1)  # the freeze invalidates the recording once


def test_parameter_frozen_from_the_start_is_captured():
    """A module's weight with requires_grad=False is state the step reads (never writes): it is
    captured, and replays read its current values."""
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    for m in (m1, m2):
        m[0].weight.requires_grad_(False)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    lf = gd.nn.CrossEntropyLoss()

    def between(k):  # edit the frozen weight between calls: the replay must see it
        with gd.no_grad():
            m1[0].weight.mul_(0.9)
            m2[0].weight.mul_(0.9)

    _run_twins(_step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf)),
               list(m1.named_parameters()), o1, list(m2.named_parameters()), o2,
               _data(sizes, 5, "ce_mean"), between=between)


def test_zero_grad_at_the_end_of_the_step():
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1 = gd.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9)
    o2 = gd.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    lf = gd.nn.CrossEntropyLoss()

    def make(model, opt):
        def step(x, y):
            loss = lf(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return step

    _run_twins(make(m1, o1), gd.compile(make(m2, o2)), list(m1.named_parameters()), o1,
               list(m2.named_parameters()), o2, _data(sizes, 5, "ce_mean"))


# ---- arguments ----------------------------------------------------------------------------------
def _arg_step(model, opt):
    """A step with a (hashable, non-tensor) argument: the loss's reduction."""
    losses = {"mean": gd.nn.CrossEntropyLoss(), "sum": gd.nn.CrossEntropyLoss(reduction="sum")}

    def step(x, y, reduction="mean"):
        opt.zero_grad()
        loss = losses[reduction](model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _call(f, how, k, x, y, arg):
    if how == "positional":
        return f(x, y, arg)
    if how == "keyword_tensors":  # the argument stays the default; the keyword order changes
        return f(y=y, x=x) if k % 4 < 2 else f(x=x, y=y)
    if how == "keyword_arg_last":
        return f(x, y=y, reduction=arg)
    return f(x, reduction=arg, y=y)


@pytest.mark.parametrize("how", ["positional", "keyword_tensors", "keyword_arg_last",
                                 "keyword_arg_first"])
def test_non_tensor_arguments(how):
    """A non-tensor argument is part of the recording's key: two alternating values give two
    recordings, each replayed equal to eager; tensors passed by keyword in either order."""
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    eager, compiled = _arg_step(m1, o1), gd.compile(_arg_step(m2, o2))
    for k, (x, y) in enumerate(_data(sizes, 5, "ce_mean", n=8)):
        arg = ("mean", "sum")[k % 2]
        r1, r2 = _call(eager, how, k, x, y, arg), _call(compiled, how, k, x, y, arg)
        _assert_same(f"call {k}", list(m1.named_parameters()), o1, r1,
                     list(m2.named_parameters()), o2, r2)
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= 4


def test_step_setting_the_learning_rate_itself_falls_back():
    """Setting param_groups[i]['lr'] inside the step is a Python side effect no replay repeats
    (the group would keep the previous call's value): eager, one warning, equal results."""
    sizes = [7, 13, 5]
    m1, m2 = _twin_models(sizes)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    lf = gd.nn.CrossEntropyLoss()

    def make(model, opt):
        def step(x, y, lr):
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad()
            loss = lf(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    eager, compiled = make(m1, o1), gd.compile(make(m2, o2))
    with pytest.warns(RuntimeWarning, match="changes an optimizer setting"):
        for k, (x, y) in enumerate(_data(sizes, 5, "ce_mean", n=6)):
            lr = (0.1, 0.05)[k % 2]
            r1, r2 = eager(x, y, lr), compiled(x, y, lr)
            _assert_same(f"call {k}", list(m1.named_parameters()), o1, r1,
                         list(m2.named_parameters()), o2, r2)
            assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"] == lr


# ---- the recorded Program -----------------------------------------------------------------------
@pytest.mark.parametrize("opt", ["sgd_momentum", "adam_amsgrad"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_program_introspection_and_profile_replays(dtype, opt):
    """names() has one entry per instruction; profile(r) gives r whole replays' median seconds
    per instruction and advances the training exactly like r more eager steps on the last batch."""
    sizes = [12, 10, 8, 4]
    m1, m2 = _twin_models(sizes, act="leaky_relu", dtype=dtype)
    o1, o2 = _make_opt(OPTIMIZERS[opt], m1.parameters()), _make_opt(OPTIMIZERS[opt],
                                                                     m2.parameters())
    lf = gd.nn.CrossEntropyLoss()
    eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
    data = _data(sizes, 6, "ce_mean", dtype=dtype)
    _run_twins(eager, compiled, list(m1.named_parameters()), o1, list(m2.named_parameters()),
               o2, data)
    (prog,) = _programs(compiled)
    names = prog.names()
    assert len(prog) == len(names) > 0
    assert all(isinstance(n, str) for n in names)
    assert names.count("act_fwd") == names.count("act_bwd") == 2
    if opt.startswith("sgd"):  # (batch 6: each backward takes its SGD update, program.hpp)
        assert names.count("linear_fwd") == names.count("linear_bwd_sgd") == 3
        assert "sgd" not in names
    else:
        assert names.count("linear_fwd") == names.count("linear_bwd") == 3
        assert names[-1] == "adam"
    assert "copy" not in names  # every leaf gradient is written straight into .grad
    traffic = prog.traffic()
    assert len(traffic) == len(prog)
    assert all(isinstance(r, int) and isinstance(w, int) and r > 0 and w > 0 for r, w in traffic)

    times = prog.profile(5)
    assert len(times) == len(prog)
    assert all(isinstance(t, float) and np.isfinite(t) and t >= 0.0 for t in times)
    x, y = data[-1]
    for _ in range(5):
        eager(x, y)
    _assert_same("after profile(5)", list(m1.named_parameters()), o1, None,
                 list(m2.named_parameters()), o2, None)
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        prog.profile(0)


@pytest.mark.parametrize("B, IN, OUT", [(4, 6, 3), (1, 7, 13), (33, 600, 10)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_traffic_of_linear_mse_sgd_step(dtype, reduction, B, IN, OUT):
    """traffic() equals the compulsory bytes derived from each instruction's operands
    (program.cpp's operands()), and the leaf-gradient copies are gone after recording; at batch
    1 the weight-gradient product and the SGD update are one instruction."""
    e = 8 if dtype == gd.float64 else 4
    gd.manual_seed(0)
    lin1 = gd.nn.Linear(IN, OUT, dtype=dtype)
    gd.manual_seed(0)
    lin2 = gd.nn.Linear(IN, OUT, dtype=dtype)
    o1, o2 = gd.optim.SGD(lin1.parameters(), lr=0.1), gd.optim.SGD(lin2.parameters(), lr=0.1)
    lf = gd.nn.MSELoss(reduction=reduction)
    compiled = _run_twins(_step_fn(lin1, o1, lf), gd.compile(_step_fn(lin2, o2, lf)),
                          list(lin1.named_parameters()), o1, list(lin2.named_parameters()), o2,
                          _data([IN, OUT], B, "mse_" + reduction, dtype=dtype))
    (prog,) = _programs(compiled)
    N, P = B * OUT, OUT * IN + OUT  # output elements; parameter elements (W and b)
    expected = [
        ("linear_fwd", e * (B * IN + OUT * IN + OUT), e * B * OUT),  # reads x, W, b; writes y
        ("mse_fwd", 2 * e * N, e),                     # reads y, target; writes the sum
    ]
    if reduction == "mean":
        expected.append(("scale", e + 8, e))           # sum * (double) 1/N
    expected.append(("mse_bwd", 2 * e * N + e, e * N))  # reads y, target, dloss; writes dy
    if B > 32:
        expected += [
            ("linear_bwd", e * (B * OUT + B * IN), e * P),  # reads dy, x (no dx: W unread)
            ("sgd", 2 * e * P, e * P),                  # reads params + grads; writes params
        ]
    else:  # batch <= 32: the backward and the update of W and b are fused (the sgd op is gone);
        # it reads dy, x, b and writes b, db, and copies of dy and x: dW is stored only when
        # .grad is read, and W's update is deferred into the next replay's linear_fwd, which
        # reads those copies and writes W as it reads it (program.hpp, plan_defer)
        W = OUT * IN
        fwd_r, fwd_w = expected[0][1:]
        expected[0] = ("linear_fwd", fwd_r + e * B * (IN + OUT), fwd_w + e * W)
        expected.append(("linear_bwd_sgd", e * (B * OUT + B * IN + OUT),
                         e * (OUT + OUT + B * (IN + OUT))))
    assert prog.names() == [n for n, _, _ in expected]
    assert prog.traffic() == [(r, w) for _, r, w in expected]
    assert len(prog) == len(prog.names())


# ---- Program.optimize on hand-built programs ----------------------------------------------------
def _addr(a):
    return a.__array_interface__["data"][0]


def _bufs(dtype, n=6):
    """Named buffers with distinct, deterministic contents (same for every call)."""
    rng = np.random.default_rng(3)
    b = {k: rng.standard_normal(n).astype(dtype) for k in ("x", "y", "tmp", "dst", "out")}
    b["f"] = np.array(0.37)      # scale factors: 0-d float64
    b["g"] = np.array(-1.7)
    return b


# Each case: buffers -> instructions ("scale", out, x, factor) / ("copy", dst, src) on views of
# the buffers; the expected number of removed copies; pinned buffer names (slices allowed).
OPT_CASES = {
    "removable": (lambda b: [("scale", b["tmp"], b["x"], b["f"]), ("copy", b["dst"], b["tmp"])],
                  1, []),
    "removable_then_used": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                       ("copy", b["dst"], b["tmp"]),
                                       ("scale", b["out"], b["dst"], b["g"])], 1, []),
    "src_read_after": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                  ("copy", b["dst"], b["tmp"]),
                                  ("scale", b["out"], b["tmp"], b["g"])], 0, []),
    "src_read_before": (lambda b: [("scale", b["out"], b["tmp"], b["g"]),
                                   ("scale", b["tmp"], b["x"], b["f"]),
                                   ("copy", b["dst"], b["tmp"])], 0, []),
    "src_partly_read": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                   ("copy", b["dst"], b["tmp"]),
                                   ("scale", b["out"][:2], b["tmp"][4:], b["g"])], 0, []),
    "src_pinned": (lambda b: [("scale", b["tmp"], b["x"], b["f"]), ("copy", b["dst"], b["tmp"])],
                   0, [lambda b: b["tmp"]]),
    "src_partly_pinned": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                     ("copy", b["dst"], b["tmp"])], 0, [lambda b: b["tmp"][-1:]]),
    "dst_pinned_only": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                   ("copy", b["dst"], b["tmp"])], 1, [lambda b: b["dst"]]),
    "writer_reads_dst": (lambda b: [("scale", b["tmp"], b["dst"], b["f"]),
                                    ("copy", b["dst"], b["tmp"])], 0, []),
    "dst_read_in_between": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                       ("scale", b["out"], b["dst"], b["g"]),
                                       ("copy", b["dst"], b["tmp"])], 0, []),
    "two_writers": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                               ("scale", b["tmp"], b["y"], b["g"]),
                               ("copy", b["dst"], b["tmp"])], 0, []),
    "writer_after_copy": (lambda b: [("scale", b["tmp"], b["x"], b["f"]),
                                     ("copy", b["dst"], b["tmp"]),
                                     ("scale", b["tmp"], b["y"], b["g"])], 0, []),
    "no_writer": (lambda b: [("copy", b["dst"], b["tmp"])], 0, []),
    "writer_writes_part": (lambda b: [("scale", b["tmp"][:3], b["x"][:3], b["f"]),
                                      ("copy", b["dst"], b["tmp"])], 0, []),
}


def _build(prog, instrs, f64):
    for ins in instrs:
        if ins[0] == "scale":
            _, out, x, fac = ins
            prog.add("scale", f64, [_addr(out), _addr(x), _addr(fac)], [x.size], [])
        else:
            _, dst, src = ins
            prog.add("copy", False, [_addr(dst), _addr(src)], [dst.nbytes], [])


def _oracle(instrs):
    for ins in instrs:
        if ins[0] == "scale":
            _, out, x, fac = ins
            out[...] = x * x.dtype.type(fac)  # the kernel rounds the factor to x's dtype
        else:
            _, dst, src = ins
            dst[...] = src


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(OPT_CASES))
def test_program_optimize_hand_built(case, dtype):
    """optimize() removes exactly the copies whose source has one earlier writer (writing all of
    it), no other reader and no pinned byte; run() twice gives the NumPy oracle either way (only
    a removed copy's dead source may differ)."""
    build, n_removed, pins = OPT_CASES[case]
    f64 = dtype == np.float64
    plain_b, opt_b, oracle_b = _bufs(dtype), _bufs(dtype), _bufs(dtype)
    plain, optimized = _core.Program(), _core.Program()
    _build(plain, build(plain_b), f64)
    _build(optimized, build(opt_b), f64)
    pinned = [(_addr(v), v.nbytes) for v in (p(opt_b) for p in pins)]
    assert optimized.optimize(pinned) == n_removed
    assert len(optimized) == len(plain) - n_removed
    names = plain.names()
    assert len(names) == len(plain)
    if n_removed:
        names.remove("copy")
    assert optimized.names() == names
    for _ in range(2):
        _oracle(build(oracle_b))
        plain.run()
        optimized.run()
    dead = {"tmp"} if n_removed else set()
    for k in oracle_b:
        np.testing.assert_array_equal(plain_b[k], oracle_b[k], err_msg=k)
        if k not in dead:
            np.testing.assert_array_equal(opt_b[k], oracle_b[k], err_msg=k)
    if n_removed:  # the writer now writes dst directly: tmp keeps its initial contents
        np.testing.assert_array_equal(opt_b["tmp"], _bufs(dtype)["tmp"])


def test_program_optimize_is_idempotent_and_keeps_empty_copies():
    b = _bufs(np.float32)
    prog = _core.Program()
    _build(prog, [("scale", b["tmp"], b["x"], b["f"]), ("copy", b["dst"], b["tmp"]),
                  ("copy", b["out"][:0], b["y"][:0])], False)
    assert prog.names() == ["scale", "copy", "copy"]
    assert prog.optimize([]) == 1
    assert prog.optimize([]) == 0
    assert prog.names() == ["scale", "copy"]  # a 0-byte copy is left alone
    prog.run()
    np.testing.assert_array_equal(b["dst"], b["x"] * np.float32(0.37))
    assert prog.traffic() == [(4 * 6 + 8, 4 * 6), (0, 0)]
