"""gd.compile's deferred batch-1 SGD update of a first layer, tried hard.

At batch 1 a compiled step may leave the SGD update of a Linear weight whose backward computes no
input gradient pending until the next replay (src/cpp/program.cpp plan_defer, bind_replay.cpp,
graddesc/_deferred.py). Whatever a user (or graddesc itself) does with the parameters between two
compiled calls must see exactly what eager training shows: every test below runs an eager twin
(same seed, same data, same sequence of user actions) next to the compiled one and compares
losses, parameters and gradients bitwise.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import threading
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

import graddesc as gd
from graddesc import _core, nn, optim
from graddesc._deferred import DeferredParameter, DeferredTensor
from graddesc.nn import functional as F

SUPPORTED_ISAS = [name for name in _core.ISAS if _core.cpu_supports(name)]
LECTURE = (600, 60, 40, 10)


# ---- helpers ---------------------------------------------------------------------------------
def as_np(v: Any) -> np.ndarray:
    """A copy of a tensor's (or array's) values."""
    if isinstance(v, gd.Tensor):
        return np.array(v.detach().numpy(), copy=True)
    return np.array(v, copy=True)


def assert_bitwise(a: Any, b: Any, what: str = "") -> None:
    a, b = as_np(a), as_np(b)
    assert a.dtype == b.dtype and a.shape == b.shape, \
        f"{what}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    if a.tobytes() != b.tobytes():
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        pytest.fail(f"{what}: not bitwise equal ({int((a != b).sum())} elements differ, "
                    f"max |diff| {np.nanmax(diff):.3g})")


def assert_same_params(me: Any, mc: Any, what: str = "", grads: bool = False) -> None:
    pe, pc = dict(me.named_parameters()), dict(mc.named_parameters())
    assert list(pe) == list(pc)
    for name in pe:
        assert_bitwise(pe[name], pc[name], f"{what} param {name}")
        assert isinstance(pc[name], nn.Parameter) or type(pe[name]) is type(pc[name])
        if grads:
            ge, gc_ = pe[name].grad, pc[name].grad
            assert (ge is None) == (gc_ is None), f"{what} grad {name}: {ge} vs {gc_}"
            if ge is not None:
                assert_bitwise(ge, gc_, f"{what} grad {name}")


def mlp(sizes: tuple, dtype: Any = None, bias: bool = True) -> nn.Module:
    layers: list = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if k:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b, bias=bias))
    m = nn.Sequential(*layers)
    if dtype is gd.float64:
        m.double()
    return m


def np_dtype(dtype: Any) -> type:
    return np.float64 if dtype is gd.float64 else np.float32


def make_data(i: int, n_in: int, n_out: int, loss: str, dtype: Any, batch: int = 1) -> tuple:
    rng = np.random.default_rng(1000 + i)
    x = rng.standard_normal((batch, n_in)).astype(np_dtype(dtype))
    if loss == "ce":
        y = rng.integers(0, n_out, size=batch).astype(np.int64)
    else:
        y = rng.standard_normal((batch, n_out)).astype(np_dtype(dtype))
    return x, y


def standard_step(m: Any, opt: Any, lf: Any) -> Callable:
    def step(x: gd.Tensor, y: gd.Tensor) -> gd.Tensor:
        opt.zero_grad()
        loss = lf(m(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


class Twin:
    """An eager model and a compiled one, built alike; `call(i)` runs data item i on both."""

    def __init__(self, sizes: tuple = LECTURE, dtype: Any = None, loss: str = "ce",
                 lr: float = 0.05, seed: int = 0, bias: bool = True,
                 make_opt: Callable | None = None, make_step: Callable = standard_step,
                 make_model: Callable | None = None, cache_size: int = 8) -> None:
        self.sizes, self.dtype, self.loss = sizes, dtype, loss
        self.n_in, self.n_out = sizes[0], sizes[-1]

        def build() -> SimpleNamespace:
            gd.manual_seed(seed)
            m = make_model() if make_model is not None else mlp(sizes, dtype, bias)
            opt = (make_opt or (lambda ps: optim.SGD(ps, lr=lr)))(m.parameters())
            lf = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
            return SimpleNamespace(model=m, opt=opt, loss_fn=lf, step=make_step(m, opt, lf))

        self.e = build()
        self.c = build()
        self.fn = gd.compile(self.c.step, cache_size=cache_size)

    def data(self, i: int, batch: int = 1) -> tuple:
        x, y = make_data(i, self.n_in, self.n_out, self.loss, self.dtype, batch)
        return (gd.tensor(x), gd.tensor(y)), (gd.tensor(x), gd.tensor(y))

    def call(self, i: int, batch: int = 1) -> tuple:
        (xe, ye), (xc, yc) = self.data(i, batch)
        le = self.e.step(xe, ye)
        lc = self.fn(xc, yc)
        if isinstance(le, (tuple, list)):
            assert type(le) is type(lc) and len(le) == len(lc)
            for j, (a, b) in enumerate(zip(le, lc)):
                assert_bitwise(a, b, f"result {j} of call {i}")
        else:
            assert_bitwise(le, lc, f"loss of call {i}")
        return le, lc

    def run(self, start: int, n: int, batch: int = 1, check: bool = False) -> int:
        for i in range(start, start + n):
            self.call(i, batch)
            if check:
                self.check(f"after call {i}")
        return start + n

    def check(self, what: str = "", grads: bool = False) -> None:
        assert_same_params(self.e.model, self.c.model, what, grads)

    def first(self, which: str) -> Any:
        """The first layer's weight of the eager ('e') or compiled ('c') model."""
        return getattr(self, which).model[0].weight


@pytest.fixture(autouse=True)
def _no_pending_leak():
    """Each test starts and ends with no update pending (a leak would mix tests)."""
    _core.flush_deferred()
    yield
    gc.collect()
    _core.flush_deferred()


def deferring(tw: Twin, start: int = 0, n: int = 4) -> int:
    """Runs n calls and asserts the compiled model was left with an update pending."""
    k = tw.run(start, n)
    assert _core.deferred_pending(), "the compiled step did not defer (this test is moot)"
    assert type(tw.first("c")) is DeferredParameter
    return k


# ---- the baseline: deferral really happens, and reading ends it -----------------------------
CONFIGS = [
    pytest.param(LECTURE, None, "ce", True, id="lecture-f32-ce"),
    pytest.param(LECTURE, gd.float64, "ce", True, id="lecture-f64-ce"),
    pytest.param((20, 7, 3), None, "mse", True, id="small-f32-mse"),
    pytest.param((2, 5, 1), gd.float64, "mse", True, id="in2-f64-mse"),
    pytest.param((33, 66, 5), None, "ce", True, id="out66-f32-ce"),
    pytest.param((65, 9), gd.float64, "ce", True, id="single-layer-f64"),
    pytest.param((64, 13, 4), None, "mse", True, id="nobias-f32-mse"),
    pytest.param((1, 8, 2), None, "ce", False, id="in1-not-deferred"),
]


@pytest.mark.parametrize("sizes,dtype,loss,defers", CONFIGS)
def test_baseline_defers_and_read_flushes(sizes, dtype, loss, defers):
    tw = Twin(sizes, dtype, loss, bias="nobias" not in str(sizes))
    tw.run(0, 5)
    assert _core.deferred_pending() is defers
    w = tw.first("c")
    assert isinstance(w, nn.Parameter)
    if defers:
        assert type(w) is DeferredParameter
        assert w.shape == (sizes[1], sizes[0])  # any attribute access applies the update
        assert not _core.deferred_pending()
        assert type(w) is nn.Parameter
    tw.check("after 5 calls", grads=True)
    # replays applying the pending update in their forward, nothing read in between
    tw.run(5, 12)
    assert _core.deferred_pending() is defers
    tw.check("after 17 calls", grads=True)
    assert tw.fn.stats["recorded"] == 1 and tw.fn.stats["replayed"] == 16


@pytest.mark.parametrize("sizes,dtype,loss,defers", CONFIGS[:4])
def test_check_after_every_call(sizes, dtype, loss, defers):
    tw = Twin(sizes, dtype, loss)
    tw.run(0, 10, check=True)
    tw.check(grads=True)


def test_bias_free_model():
    tw = Twin((50, 12, 3), bias=False)
    deferring(tw)
    tw.run(4, 6)
    tw.check(grads=True)


@pytest.mark.parametrize("isa", SUPPORTED_ISAS)
def test_each_isa(isa):
    previous = _core.isa()
    _core.set_isa(isa)
    try:
        tw = Twin()
        deferring(tw)
        tw.run(4, 5)
        tw.check(grads=True)
    finally:
        _core.set_isa(previous)


def test_isa_switched_while_pending():
    if len(SUPPORTED_ISAS) < 2:
        pytest.skip("one ISA only")
    previous = _core.isa()
    try:
        tw = Twin()
        k = deferring(tw)
        for isa in SUPPORTED_ISAS[::-1] + SUPPORTED_ISAS:
            _core.set_isa(isa)
            k = tw.run(k, 2)
        tw.check(grads=True)
    finally:
        _core.set_isa(previous)


@pytest.mark.parametrize("order", [(2, 1), (1, 2)])
def test_thread_count_switched(order):
    tw = Twin()
    gd.set_num_threads(order[0])
    k = deferring(tw)
    gd.set_num_threads(order[1])
    k = tw.run(k, 4)
    gd.set_num_threads(order[0])
    tw.run(k, 3)
    tw.check(grads=True)


# ---- reading a parameter between calls --------------------------------------------------------
def _printed(p: Any) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print(p)
    return buf.getvalue()


READS: dict = {
    "data": lambda p: as_np(p.data),
    "detach_numpy": lambda p: p.detach().numpy().copy(),
    "np_asarray_detach": lambda p: np.asarray(p.detach()).copy(),
    "np_array_detach": lambda p: np.array(p.detach()),
    "tolist": lambda p: np.array(p.tolist(), dtype=p.detach().numpy().dtype),
    "repr": repr,
    "str": str,
    "print": _printed,
    "format": lambda p: format(p.detach().sum(), ""),
    "shape": lambda p: tuple(p.shape),
    "size": lambda p: p.size(),
    "dtype": lambda p: str(p.dtype),
    "requires_grad": lambda p: p.requires_grad,
    "is_leaf": lambda p: p.is_leaf,
    "numel": lambda p: p.numel(),
    "len": len,
    "sum_item": lambda p: p.sum().item(),
    "float_sum": lambda p: float(p.sum()),
    "index0": lambda p: as_np(p[0]),
    "index_neg": lambda p: as_np(p[-1, 1:5]),
    "iter_rows": lambda p: [as_np(r) for r in p][:3],
    "detach": lambda p: as_np(p.detach()),
    "clone": lambda p: as_np(p.clone()),
    "t": lambda p: as_np(p.t()),
    "T": lambda p: as_np(p.T),
    "reshape": lambda p: as_np(p.reshape(-1)),
    "add_scalar": lambda p: as_np(p + 0.25),
    "radd_scalar": lambda p: as_np(0.25 + p),
    "mul": lambda p: as_np(p * p),
    "neg": lambda p: as_np(-p),
    "matmul": lambda p: as_np(p @ gd.ones(p.shape[1], dtype=p.dtype)),
    "max": lambda p: as_np(p.max()),
    "abs_sum": lambda p: as_np(p.abs().sum()),
    "to_double": lambda p: as_np(p.double()),
    "eq_self": lambda p: as_np(p == p.detach()),
    "grad": lambda p: None if p.grad is None else as_np(p.grad),
    "version": lambda p: p._version,
    "class": lambda p: p.__class__.__name__,
    "copy_copy": lambda p: as_np(copy.copy(p)),
    "copy_deepcopy": lambda p: as_np(copy.deepcopy(p)),
    "state_dict": None,  # (the module's: below)
    "named_parameters": None,
}


def _compare_read(a: Any, b: Any, what: str) -> None:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert_bitwise(a, b, what)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for k, (u, v) in enumerate(zip(a, b)):
            _compare_read(u, v, f"{what}[{k}]")
    else:
        assert a == b, what


@pytest.mark.parametrize("name", sorted(READS))
def test_read_between_calls(name):
    tw = Twin()
    k = deferring(tw)
    for round_ in range(3):
        if name == "state_dict":
            re = {n: as_np(v) for n, v in tw.e.model.state_dict().items()}
            rc = {n: as_np(v) for n, v in tw.c.model.state_dict().items()}
            for n in re:
                assert_bitwise(re[n], rc[n], f"state_dict {n}")
        elif name == "named_parameters":
            for (n, pe), (_, pc) in zip(tw.e.model.named_parameters(),
                                        tw.c.model.named_parameters()):
                assert_bitwise(pe, pc, f"named_parameters {n}")
        else:
            read = READS[name]
            _compare_read(read(tw.first("e")), read(tw.first("c")), f"{name} (round {round_})")
        assert not _core.deferred_pending()
        assert type(tw.first("c")) is nn.Parameter
        assert isinstance(tw.first("c"), nn.Parameter)
        k = tw.run(k, 3)
        assert _core.deferred_pending()  # (the read left nothing behind that blocks deferral)
    tw.check(grads=True)


def test_type_and_isinstance_while_pending():
    tw = Twin()
    deferring(tw)
    w = tw.first("c")
    assert isinstance(w, nn.Parameter) and isinstance(w, gd.Tensor)
    assert issubclass(type(w), nn.Parameter)
    assert _core.deferred_pending()  # (isinstance does not need the values)
    assert hash(w) == hash(w)
    assert w in list(tw.c.model.parameters())  # (identity)
    tw.check(grads=True)


def test_bias_and_other_layers_read_while_pending():
    tw = Twin()
    deferring(tw)
    # the other parameters are up to date: reading them is right (and need not flush)
    for idx in (0, 2, 4):
        assert_bitwise(tw.e.model[idx].bias, tw.c.model[idx].bias, f"bias {idx}")
    for idx in (2, 4):
        assert_bitwise(tw.e.model[idx].weight, tw.c.model[idx].weight, f"weight {idx}")
    tw.check(grads=True)


# ---- holding memory across calls --------------------------------------------------------------
HOLDS: dict = {
    "numpy": lambda p: p.detach().numpy(),
    "numpy_row": lambda p: p.detach().numpy()[0],
    "numpy_col_view": lambda p: p.detach().numpy()[:, 3],
    "numpy_T": lambda p: p.detach().numpy().T,
    "numpy_reshape": lambda p: p.detach().numpy().reshape(-1),
    "np_asarray": lambda p: np.asarray(p.detach()),
    "data_tensor": lambda p: p.data,
    "detach_tensor": lambda p: p.detach(),
    "tensor_view": lambda p: p.detach().view(-1),
    "tensor_t": lambda p: p.detach().t(),
    "tensor_row": lambda p: p.detach()[1],
    "memoryview": lambda p: memoryview(p.detach().numpy()),
    "frombuffer": lambda p: np.frombuffer(p.detach().numpy(), dtype=p.detach().numpy().dtype),
    "state_dict": lambda p: None,  # (replaced below: the whole state dict)
    "no_grad_index": None,
}


def _view_values(h: Any) -> np.ndarray:
    if isinstance(h, memoryview):
        return np.array(np.asarray(h), copy=True)
    if isinstance(h, dict):
        return np.concatenate([as_np(v).reshape(-1) for v in h.values()])
    return as_np(h)


@pytest.mark.parametrize("name", sorted(HOLDS))
def test_held_view_tracks_then_released(name):
    tw = Twin()
    k = deferring(tw)

    def hold(which: str) -> Any:
        if name == "state_dict":
            return getattr(tw, which).model.state_dict()
        if name == "no_grad_index":
            with gd.no_grad():
                return tw.first(which)[2:5]
        return HOLDS[name](tw.first(which))

    he, hc = hold("e"), hold("c")
    for _ in range(5):
        k = tw.run(k, 1)
        assert_bitwise(_view_values(he), _view_values(hc), f"held {name} after call {k}")
    k = tw.run(k, 3)
    assert_bitwise(_view_values(he), _view_values(hc), f"held {name} after 3 more calls")
    del he, hc
    gc.collect()
    k = tw.run(k, 3)
    assert _core.deferred_pending(), "deferral did not resume after the view was released"
    tw.check(grads=True)


def test_view_taken_while_pending_then_written():
    tw = Twin()
    k = deferring(tw)
    ve, vc = tw.first("e").detach().numpy(), tw.first("c").detach().numpy()
    ve[0, :4] = 0.5
    vc[0, :4] = 0.5
    k = tw.run(k, 2)
    assert_bitwise(ve, vc, "written view")
    ve *= 0.5
    vc *= 0.5
    del ve, vc
    k = tw.run(k, 4)
    assert _core.deferred_pending()
    tw.check(grads=True)


def test_view_of_bias_and_other_weights_held():
    tw = Twin()
    k = deferring(tw)
    held = [(tw.e.model[i].bias.detach().numpy(), tw.c.model[i].bias.detach().numpy())
            for i in (0, 2)]
    held.append((tw.e.model[2].weight.detach().numpy(), tw.c.model[2].weight.detach().numpy()))
    for _ in range(4):
        k = tw.run(k, 1)
        for a, b in held:
            assert_bitwise(a, b, "held bias/weight view")
    tw.check(grads=True)


# ---- state dicts, files, copies ---------------------------------------------------------------
def test_state_dict_roundtrip_between_calls():
    tw = Twin()
    k = deferring(tw)
    snap_e = {n: as_np(v) for n, v in tw.e.model.state_dict().items()}
    snap_c = {n: as_np(v) for n, v in tw.c.model.state_dict().items()}
    for n in snap_e:
        assert_bitwise(snap_e[n], snap_c[n], f"snapshot {n}")
    k = deferring(tw, k)
    tw.e.model.load_state_dict(snap_e)
    tw.c.model.load_state_dict(snap_c)
    tw.check("after load_state_dict")
    k = tw.run(k, 4)
    tw.check(grads=True)
    # loading while pending, from tensors, without reading first
    k = deferring(tw, k)
    sd_e = {n: gd.tensor(v) for n, v in snap_e.items()}
    sd_c = {n: gd.tensor(v) for n, v in snap_c.items()}
    tw.e.model.load_state_dict(sd_e)
    tw.c.model.load_state_dict(sd_c)
    tw.run(k, 4)
    tw.check(grads=True)


def test_optimizer_state_dict_between_calls():
    tw = Twin()
    k = deferring(tw)
    se, sc = tw.e.opt.state_dict(), tw.c.opt.state_dict()
    k = tw.run(k, 3)
    tw.e.opt.load_state_dict(se)
    tw.c.opt.load_state_dict(sc)
    k = tw.run(k, 3)
    tw.check(grads=True)


def test_save_load_between_calls(tmp_path):
    tw = Twin()
    k = deferring(tw)
    gd.save(tw.e.model.state_dict(), tmp_path / "e.npz")
    gd.save(tw.c.model.state_dict(), tmp_path / "c.npz")
    gd.save(tw.c.opt.state_dict(), tmp_path / "c_opt.npz")
    le, lc = gd.load(tmp_path / "e.npz"), gd.load(tmp_path / "c.npz")
    for n in le:
        assert_bitwise(le[n], lc[n], f"saved {n}")
    k = deferring(tw, k)
    tw.e.model.load_state_dict(le)
    tw.c.model.load_state_dict(lc)
    k = tw.run(k, 3)
    tw.check(grads=True)


def test_save_file_matches_without_reading_first(tmp_path):
    tw = Twin()
    deferring(tw)
    # nothing of the compiled model read before saving
    gd.save(tw.c.model.state_dict(), tmp_path / "c.npz")
    gd.save(tw.e.model.state_dict(), tmp_path / "e.npz")
    le, lc = gd.load(tmp_path / "e.npz"), gd.load(tmp_path / "c.npz")
    for n in le:
        assert_bitwise(le[n], lc[n], f"saved {n}")


def test_deepcopy_model_between_calls():
    tw = Twin()
    k = deferring(tw)
    ce, cc = copy.deepcopy(tw.e.model), copy.deepcopy(tw.c.model)
    assert_same_params(ce, cc, "deep copies")
    k = tw.run(k, 3)
    assert_same_params(ce, cc, "deep copies after the originals trained")
    # the copies train too (eagerly) and must agree
    lf = nn.CrossEntropyLoss()
    oe, oc = optim.SGD(ce.parameters(), lr=0.1), optim.SGD(cc.parameters(), lr=0.1)
    for i in range(3):
        for m, o in ((ce, oe), (cc, oc)):
            x, y = make_data(100 + i, 600, 10, "ce", None)
            o.zero_grad()
            lf(m(gd.tensor(x)), gd.tensor(y)).backward()
            o.step()
        assert_same_params(ce, cc, f"trained copies {i}")
    for p in cc.parameters():
        assert type(p) is nn.Parameter
    tw.run(k, 3)
    tw.check(grads=True)


def test_deepcopy_then_compile_the_copy():
    tw = Twin()
    k = deferring(tw)
    cc = copy.deepcopy(tw.c.model)
    ce = copy.deepcopy(tw.e.model)
    oc, oe = optim.SGD(cc.parameters(), lr=0.02), optim.SGD(ce.parameters(), lr=0.02)
    lf = nn.CrossEntropyLoss()
    fc = gd.compile(standard_step(cc, oc, lf))
    fe = standard_step(ce, oe, lf)
    for i in range(8):  # interleaved with the original pair
        x, y = make_data(200 + i, 600, 10, "ce", None)
        assert_bitwise(fe(gd.tensor(x), gd.tensor(y)), fc(gd.tensor(x), gd.tensor(y)), "copy loss")
        k = tw.run(k, 1)
    assert_same_params(ce, cc, "compiled copy", grads=True)
    tw.check(grads=True)


# ---- in-place changes between calls -----------------------------------------------------------
def _fill_like(p: Any, seed: int) -> gd.Tensor:
    rng = np.random.default_rng(seed)
    return gd.tensor(rng.standard_normal(tuple(p.shape)).astype(p.detach().numpy().dtype))


def _seeded(fn: Callable) -> Callable:
    def run(p: Any) -> None:
        gd.manual_seed(7)
        fn(p)

    return run


INPLACE: dict = {
    "mul_": lambda p: p.mul_(0.5),
    "isub": lambda p: p.__isub__(1.0),
    "iadd_tensor": lambda p: p.__iadd__(_fill_like(p, 3)),
    "add_alpha": lambda p: p.add_(_fill_like(p, 4), alpha=0.1),
    "sub_": lambda p: p.sub_(0.01),
    "div_": lambda p: p.div_(3.0),
    "copy_": lambda p: p.copy_(_fill_like(p, 5)),
    "fill_": lambda p: p.fill_(0.125),
    "zero_": lambda p: p.zero_(),
    "clamp_": lambda p: p.clamp_(-0.01, 0.01),
    "setitem_row": lambda p: p.__setitem__(0, 1.5),
    "setitem_slice": lambda p: p.__setitem__((slice(None), slice(0, 10)), 0.0),
    "uniform_": _seeded(lambda p: p.uniform_(-0.1, 0.1)),
    "normal_": _seeded(lambda p: p.normal_(0.0, 0.01)),
    "init_zeros": lambda p: nn.init.zeros_(p),
    "init_constant": lambda p: nn.init.constant_(p, 0.3),
    "init_kaiming": _seeded(lambda p: nn.init.kaiming_uniform_(p)),
    "data_mul_": lambda p: p.data.mul_(2.0),
    "numpy_write": lambda p: p.detach().numpy().__imul__(0.75),
    "data_assign": lambda p: setattr(p, "data", _fill_like(p, 6)),
}


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_under_no_grad_between_calls(name):
    tw = Twin()
    k = deferring(tw)
    for _round in range(2):
        with gd.no_grad():
            INPLACE[name](tw.first("e"))
            INPLACE[name](tw.first("c"))
        k = tw.run(k, 1, check=True)
        k = tw.run(k, 4)
    tw.check(grads=True)


def test_inplace_on_other_parameters_while_pending():
    tw = Twin()
    k = deferring(tw)
    with gd.no_grad():
        for m in (tw.e.model, tw.c.model):
            m[0].bias.mul_(0.5)  # the deferred layer's bias: updated, not deferred
            m[2].weight.add_(0.01)
    k = tw.run(k, 4)
    tw.check(grads=True)


def test_requires_grad_off_then_on():
    tw = Twin()
    k = deferring(tw)
    tw.first("e").requires_grad_(False)
    tw.first("c").requires_grad_(False)
    k = tw.run(k, 4, check=True)
    tw.first("e").requires_grad_(True)
    tw.first("c").requires_grad_(True)
    k = tw.run(k, 5)
    tw.check(grads=True)
    k = deferring(tw, k)
    tw.c.model.requires_grad_(False)
    tw.e.model.requires_grad_(False)
    tw.c.model.requires_grad_(True)
    tw.e.model.requires_grad_(True)
    tw.run(k, 4)
    tw.check(grads=True)


def test_requires_grad_attribute_set_while_pending():
    tw = Twin()
    k = deferring(tw)
    tw.first("e").requires_grad = False
    tw.first("c").requires_grad = False
    k = tw.run(k, 3)
    tw.first("e").requires_grad = True
    tw.first("c").requires_grad = True
    tw.run(k, 4)
    tw.check(grads=True)


def test_frozen_first_layer_defers_second_layer():
    """With the first layer frozen, the second one's backward computes no input gradient either:
    its forward reads a hidden activation the next forward overwrites."""
    tw = Twin()
    for m in (tw.e.model, tw.c.model):
        m[0].requires_grad_(False)
    tw.run(0, 5)
    assert _core.deferred_pending()
    assert type(tw.c.model[2].weight) is DeferredParameter
    tw.run(5, 8)
    tw.check(grads=True)


# ---- optimizer settings -----------------------------------------------------------------------
@pytest.mark.parametrize("new_lr", [0.01, 0.0, 0.5, 1])
def test_lr_changed_between_calls(new_lr):
    tw = Twin()
    k = deferring(tw)
    for o in (tw.e.opt, tw.c.opt):
        o.param_groups[0]["lr"] = new_lr
    k = tw.run(k, 3)
    tw.check("after the lr change", grads=True)
    k = deferring(tw, k)
    for o in (tw.e.opt, tw.c.opt):
        o.param_groups[0]["lr"] = 0.05
    tw.run(k, 3)
    tw.check(grads=True)


def test_lr_changed_every_call_without_reading():
    tw = Twin()
    k = deferring(tw)
    for j in range(8):
        for o in (tw.e.opt, tw.c.opt):
            o.param_groups[0]["lr"] = 0.05 / (j + 2)
        k = tw.run(k, 1)
    tw.check(grads=True)


def test_lr_scheduler():
    tw = Twin(lr=0.2)
    se = optim.lr_scheduler.StepLR(tw.e.opt, step_size=2, gamma=0.5)
    sc = optim.lr_scheduler.StepLR(tw.c.opt, step_size=2, gamma=0.5)
    for i in range(10):
        tw.call(i)
        se.step()
        sc.step()
    tw.check(grads=True)


@pytest.mark.parametrize("key,value", [("momentum", 0.9), ("weight_decay", 0.01),
                                       ("maximize", True), ("dampening", 0.1)])
def test_setting_changed_while_pending(key, value):
    tw = Twin()
    k = deferring(tw)
    for o in (tw.e.opt, tw.c.opt):
        o.param_groups[0][key] = value
    k = tw.run(k, 4)
    tw.check(f"after {key} = {value}", grads=True)
    for o in (tw.e.opt, tw.c.opt):
        o.param_groups[0][key] = type(value)(0)
    tw.run(k, 4)
    tw.check(grads=True)


@pytest.mark.parametrize("kwargs", [{"weight_decay": 0.01}, {"momentum": 0.9},
                                    {"momentum": 0.9, "nesterov": True}, {"maximize": True},
                                    {"weight_decay": 0.1, "maximize": True}])
def test_sgd_variants(kwargs):
    tw = Twin(make_opt=lambda ps: optim.SGD(ps, lr=0.03, **kwargs))
    tw.run(0, 6)
    tw.run(6, 6, check=True)
    tw.check(grads=True)


def test_two_param_groups():
    def make_opt(ps: Any) -> Any:
        ps = list(ps)
        return optim.SGD([{"params": ps[:2], "lr": 0.1}, {"params": ps[2:]}], lr=0.02)

    tw = Twin(make_opt=make_opt)
    k = deferring(tw)
    for o in (tw.e.opt, tw.c.opt):
        o.param_groups[0]["lr"] = 0.07
    k = tw.run(k, 4)
    tw.check(grads=True)


def test_first_layer_sgd_rest_adam():
    def make_opt(ps: Any) -> Any:
        ps = list(ps)
        return SimpleNamespace(a=optim.SGD(ps[:2], lr=0.1), b=optim.Adam(ps[2:], lr=0.01))

    def make_step(m: Any, opt: Any, lf: Any) -> Callable:
        def step(x: gd.Tensor, y: gd.Tensor) -> gd.Tensor:
            opt.a.zero_grad()
            opt.b.zero_grad()
            loss = lf(m(x), y)
            loss.backward()
            opt.a.step()
            opt.b.step()
            return loss

        return step

    tw = Twin(make_opt=make_opt, make_step=make_step)
    tw.run(0, 6)
    tw.run(6, 4, check=True)
    tw.check(grads=True)


@pytest.mark.filterwarnings("ignore:graddesc.compile")
@pytest.mark.parametrize("kind", ["diag", "matrix"])
def test_preconditioned_lr(kind):
    sizes = (8, 4, 3)
    n = 8 * 4 + 4 + 4 * 3 + 3
    rng = np.random.default_rng(3)
    if kind == "diag":
        lr: Any = rng.uniform(0.01, 0.1, n)
    else:
        a = rng.standard_normal((n, n)) * 0.01
        lr = a @ a.T + 0.01 * np.eye(n)
    tw = Twin(sizes, make_opt=lambda ps: optim.SGD(ps, lr=lr))
    tw.run(0, 6)
    tw.run(6, 4, check=True)
    tw.check(grads=True)


# ---- eager work between compiled calls --------------------------------------------------------
def test_eager_step_between_calls():
    tw = Twin()
    k = deferring(tw)
    for j in range(3):
        (xe, ye), (xc, yc) = tw.data(500 + j)
        assert_bitwise(tw.e.step(xe, ye), tw.c.step(xc, yc), "eager step on both")
        k = tw.run(k, 3)
    tw.check(grads=True)


def test_eager_forward_backward_and_opt_step_between_calls():
    tw = Twin()
    k = deferring(tw)
    for j in range(3):
        (xe, ye), (xc, yc) = tw.data(600 + j)
        for s, x, _y in ((tw.e, xe, ye), (tw.c, xc, yc)):
            with gd.no_grad():
                s.model(x)
        oute, outc = tw.e.model(xe), tw.c.model(xc)
        assert_bitwise(oute, outc, "eager forward")
        tw.e.loss_fn(oute, ye).backward()
        tw.c.loss_fn(outc, yc).backward()
        tw.check("after eager backward", grads=True)
        k = tw.run(k, 2)
        # an extra optimizer step with the gradients the compiled step left (lazy ones too)
        k = deferring(tw, k, 2)
        tw.e.opt.step()
        tw.c.opt.step()
        k = tw.run(k, 2)
    tw.check(grads=True)


def test_opt_step_right_after_compiled_call():
    tw = Twin()
    k = deferring(tw)
    for _ in range(3):
        tw.e.opt.step()  # applies the last gradients once more
        tw.c.opt.step()
        k = deferring(tw, k, 2)
    tw.check(grads=True)


def test_eager_forward_graph_across_compiled_call():
    """A graph built before a compiled call that changes the weight: both raise or both agree."""
    tw = Twin()
    k = deferring(tw)
    (xe, ye), (xc, yc) = tw.data(700)
    le = tw.e.loss_fn(tw.e.model(xe), ye)
    lc = tw.c.loss_fn(tw.c.model(xc), yc)
    k = tw.run(k, 2)
    outcomes = []
    for loss in (le, lc):
        try:
            loss.backward()
            outcomes.append("ok")
        except RuntimeError as e:
            outcomes.append(type(e).__name__)
    assert outcomes[0] == outcomes[1]
    tw.check(grads=True)
    tw.run(k, 2)
    tw.check(grads=True)


def test_model_zero_grad_and_grad_reads():
    tw = Twin()
    k = deferring(tw)
    for set_to_none in (True, False, True):
        tw.check("grads", grads=True)
        tw.e.model.zero_grad(set_to_none=set_to_none)
        tw.c.model.zero_grad(set_to_none=set_to_none)
        tw.check("zeroed grads", grads=True)
        k = deferring(tw, k, 3)
        tw.e.opt.zero_grad(set_to_none=set_to_none)
        tw.c.opt.zero_grad(set_to_none=set_to_none)
        k = deferring(tw, k, 2)
    tw.check(grads=True)


def test_grad_read_every_call():
    tw = Twin()
    for i in range(10):
        tw.call(i)
        ge, gc_ = tw.first("e").grad, tw.first("c").grad
        assert_bitwise(ge, gc_, f"first-layer grad {i}")
    tw.check(grads=True)


def test_held_grad_across_calls():
    tw = Twin()
    k = deferring(tw)
    ge, gc_ = tw.first("e").grad, tw.first("c").grad
    for _ in range(4):
        k = tw.run(k, 1)
        assert_bitwise(ge, gc_, "held grad")
        tw.check(grads=True)
    del ge, gc_
    k = tw.run(k, 4)
    tw.check(grads=True)


@pytest.mark.filterwarnings("ignore:graddesc.compile")  # (set_to_none=False: eager)
@pytest.mark.parametrize("set_to_none", [True, False])
def test_step_zero_grad_variants(set_to_none):
    def make_step(m: Any, opt: Any, lf: Any) -> Callable:
        def step(x: gd.Tensor, y: gd.Tensor) -> gd.Tensor:
            m.zero_grad(set_to_none=set_to_none)
            loss = lf(m(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    tw = Twin(make_step=make_step)
    tw.run(0, 6)
    tw.run(6, 4, check=True)
    tw.check(grads=True)


def test_train_eval_toggles():
    tw = Twin()
    k = deferring(tw)
    for mode in (False, True, False, True):
        tw.e.model.train(mode)
        tw.c.model.train(mode)
        k = tw.run(k, 2)
    tw.e.model.eval()
    tw.c.model.eval()
    k = tw.run(k, 2)
    tw.check(grads=True)


# ---- other compiled functions, other entries ---------------------------------------------------
def test_compiled_eval_interleaved():
    tw = Twin()

    def evaluate_fn(m: Any) -> Callable:
        def evaluate(x: gd.Tensor) -> gd.Tensor:
            with gd.no_grad():
                return m(x)

        return evaluate

    ev_e, ev_c = evaluate_fn(tw.e.model), gd.compile(evaluate_fn(tw.c.model))
    k = 0
    for j in range(8):
        k = tw.run(k, 2)
        (xe, _), (xc, _) = tw.data(800 + j)
        assert_bitwise(ev_e(xe), ev_c(xc), f"eval output {j}")
        with gd.no_grad():
            assert_bitwise(tw.e.model(xe), ev_c(xc), f"eval output under no_grad {j}")
    tw.check(grads=True)


def test_compiled_no_grad_call_of_train_step_interleaved():
    tw = Twin()

    def fwd(m: Any, lf: Any) -> Callable:
        def f(x: gd.Tensor, y: gd.Tensor) -> gd.Tensor:
            return lf(m(x), y)

        return f

    fe, fc = fwd(tw.e.model, tw.e.loss_fn), gd.compile(fwd(tw.c.model, tw.c.loss_fn))
    k = 0
    for j in range(6):
        k = tw.run(k, 2)
        (xe, ye), (xc, yc) = tw.data(900 + j)
        with gd.no_grad():
            assert_bitwise(fe(xe, ye), fc(xc, yc), f"no-grad loss {j}")
        assert_bitwise(fe(xe, ye), fc(xc, yc), f"loss with grad {j}")  # (a backward-less graph)
    tw.check(grads=True)


@pytest.mark.parametrize("pattern", ["alternate", "burst"])
def test_batch_sizes_interleaved(pattern):
    tw = Twin()
    k = deferring(tw)
    batches = [1, 2, 1, 1, 3, 1, 2, 2, 1, 1, 1] if pattern == "alternate" else [2] * 3 + [1] * 5
    for b in batches:
        tw.call(k, batch=b)
        k += 1
    tw.check(grads=True)
    k = tw.run(k, 3)
    tw.check(grads=True)


def test_cache_eviction_while_pending():
    tw = Twin(cache_size=1)
    k = deferring(tw)
    for b in (2, 1, 1, 1, 3, 1, 1):
        tw.call(k, batch=b)
        k += 1
    tw.check(grads=True)


def test_second_training_step_on_same_model():
    tw = Twin()

    def mse_step(m: Any, opt: Any) -> Callable:
        lf = nn.MSELoss()

        def step(x: gd.Tensor, t: gd.Tensor) -> gd.Tensor:
            opt.zero_grad()
            loss = lf(m(x), t)
            loss.backward()
            opt.step()
            return loss

        return step

    se, sc = mse_step(tw.e.model, tw.e.opt), gd.compile(mse_step(tw.c.model, tw.c.opt))
    k = 0
    for j in range(6):
        k = tw.run(k, 2)
        x, t = make_data(950 + j, 600, 10, "mse", None)
        assert_bitwise(se(gd.tensor(x), gd.tensor(t)), sc(gd.tensor(x), gd.tensor(t)),
                       f"second step {j}")
    tw.check(grads=True)


def test_two_models_interleaved():
    a = Twin(seed=1)
    b = Twin((30, 12, 4), loss="mse", seed=2)
    ka, kb = a.run(0, 3), b.run(0, 3)
    for _ in range(6):
        ka = a.run(ka, 2)
        assert _core.deferred_pending()
        kb = b.run(kb, 1)
        assert _core.deferred_pending()
    assert type(b.first("c")) is DeferredParameter
    a.check(grads=True)
    b.check(grads=True)


def test_two_models_interleaved_without_reading():
    a = Twin(seed=1)
    b = Twin(seed=2, dtype=gd.float64)
    ka = kb = 0
    for _ in range(8):
        ka = a.run(ka, 1)
        kb = b.run(kb, 1)
    a.check(grads=True)
    b.check(grads=True)


def test_keyword_call_between_positional_calls():
    tw = Twin()
    k = deferring(tw)
    for _j in range(3):
        (xe, ye), (xc, yc) = tw.data(k)
        assert_bitwise(tw.e.step(xe, ye), tw.fn(x=xc, y=yc), "keyword call")
        k = tw.run(k + 1, 2)
    tw.check(grads=True)


def test_nested_compiled_call():
    tw = Twin()
    outer_e = tw.e.step

    def outer(x: gd.Tensor, y: gd.Tensor) -> gd.Tensor:
        return tw.fn(x, y)

    fo = gd.compile(outer)
    k = deferring(tw)
    for _j in range(4):
        (xe, ye), (xc, yc) = tw.data(k)
        assert_bitwise(outer_e(xe, ye), fo(xc, yc), "nested")
        k = tw.run(k + 1, 2)
    tw.check(grads=True)


# ---- the compiled function going away -----------------------------------------------------------
@pytest.mark.parametrize("how", ["del", "reset", "del_model_refs"])
def test_compiled_function_dropped_while_pending(how):
    tw = Twin()
    deferring(tw)
    if how == "del":
        del tw.fn
        gc.collect()
        assert not _core.deferred_pending()
    elif how == "reset":
        tw.fn.reset()
        gc.collect()
        assert not _core.deferred_pending()
    else:
        model, opt = tw.c.model, tw.c.opt
        del tw.fn
        tw.c = None
        gc.collect()
        tw.c = SimpleNamespace(model=model, opt=opt)
    assert type(tw.first("c")) is nn.Parameter
    tw.check("after the compiled function was dropped")


def test_lazy_grad_read_after_compiled_function_dropped():
    """(Not the deferral: gradients gd.compile stores only when .grad is read, commit a619014.)
    .grad read after the compiled function is gone must still be the last step's gradient."""
    tw = Twin()
    tw.run(0, 4)
    del tw.fn
    gc.collect()
    tw.check("grads after the compiled function was dropped", grads=True)


def test_compiled_function_dropped_then_recompiled():
    tw = Twin()
    k = deferring(tw)
    tw.fn = None
    gc.collect()
    tw.fn = gd.compile(tw.c.step)
    k = tw.run(k, 5)
    tw.check(grads=True)


def test_model_in_reference_cycle_with_compiled_step():
    def build() -> Any:
        gd.manual_seed(0)
        m = mlp(LECTURE)
        opt = optim.SGD(m.parameters(), lr=0.05)
        m.step_fn = standard_step(m, opt, nn.CrossEntropyLoss())
        return m

    me, mc = build(), build()
    mc.compiled = gd.compile(mc.step_fn)  # model -> compiled -> closure -> model
    for i in range(5):
        x, y = make_data(i, 600, 10, "ce", None)
        assert_bitwise(me.step_fn(gd.tensor(x), gd.tensor(y)),
                       mc.compiled(gd.tensor(x), gd.tensor(y)), f"loss {i}")
    assert _core.deferred_pending()
    params = list(mc.parameters())
    del mc
    gc.collect()
    for pe, pc in zip(me.parameters(), params):
        assert_bitwise(pe, pc, "parameter of a collected cycle")


# ---- errors -------------------------------------------------------------------------------------
def test_step_raising_after_deferring_calls():
    tw = Twin()
    k = deferring(tw)
    x, _ = make_data(k, 600, 10, "ce", None)
    bad = np.array([10], dtype=np.int64)  # out of range for 10 classes
    errors = []
    for f in (tw.e.step, tw.fn):
        with pytest.raises(ValueError) as info:
            f(gd.tensor(x), gd.tensor(bad))
        errors.append(type(info.value))
    assert errors[0] == errors[1]
    tw.check("after the failing step", grads=True)
    k = tw.run(k + 1, 4)
    assert _core.deferred_pending()
    tw.check(grads=True)


def test_step_raising_without_reading_then_continuing():
    tw = Twin()
    k = deferring(tw)
    x, _ = make_data(k, 600, 10, "ce", None)
    for f in (tw.e.step, tw.fn):
        with pytest.raises(ValueError):
            f(gd.tensor(x), gd.tensor(np.array([-5], dtype=np.int64)))
    k = tw.run(k + 1, 4)  # nothing read in between
    tw.check(grads=True)


# ---- step shapes that must not defer wrongly --------------------------------------------------
def _custom_twin(make_model: Callable, step_body: Callable, sizes: tuple = (20, 10),
                 loss: str = "ce", **kw: Any) -> Twin:
    def make_step(m: Any, opt: Any, lf: Any) -> Callable:
        def step(x: gd.Tensor, y: gd.Tensor) -> Any:
            opt.zero_grad()
            return step_body(m, opt, lf, x, y)

        return step

    return Twin(sizes, loss=loss, make_model=make_model, make_step=make_step, **kw)


def _run_custom(tw: Twin, n: int = 10) -> None:
    tw.run(0, n // 2)
    tw.run(n // 2, n // 2, check=True)
    tw.check(grads=True)


def _loss_only(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
    loss = lf(m(x), y)
    loss.backward()
    opt.step()
    return loss


@pytest.mark.filterwarnings("ignore:graddesc.compile")  # (uncapturable: runs eagerly)
def test_step_returns_weight_derived_values():
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        loss = _loss_only(m, opt, lf, x, y)
        return loss, m[0].weight.sum(), m[0].weight.detach()

    tw = _custom_twin(lambda: mlp(LECTURE), body, LECTURE)
    tw.run(0, 8)
    tw.check(grads=True)


def test_step_returns_prediction_after_update():
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        loss = _loss_only(m, opt, lf, x, y)
        with gd.no_grad():
            after = m(x)
        return loss, after

    tw = _custom_twin(lambda: mlp(LECTURE), body, LECTURE)
    tw.run(0, 8)
    tw.check(grads=True)


def test_weight_read_by_linear_between_forward_and_update():
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        out = m(x)
        with gd.no_grad():
            probe = F.linear(x, m[0].weight)
        loss = lf(out, y)
        loss.backward()
        opt.step()
        return loss, probe

    tw = _custom_twin(lambda: mlp(LECTURE), body, LECTURE)
    tw.run(0, 4)
    assert _core.deferred_pending()
    tw.run(4, 6)
    tw.check(grads=True)


def test_no_grad_prediction_before_training_forward():
    """The first reader of the weight in the program is an evaluation forward."""
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        with gd.no_grad():
            before = m(x)
        return _loss_only(m, opt, lf, x, y), before

    tw = _custom_twin(lambda: mlp(LECTURE), body, LECTURE)
    tw.run(0, 4)
    tw.run(4, 6)
    tw.check(grads=True)


def test_two_updates_per_step():
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        first = _loss_only(m, opt, lf, x, y)
        opt.zero_grad()
        second = _loss_only(m, opt, lf, x, y)
        return first, second

    tw = _custom_twin(lambda: mlp(LECTURE), body, LECTURE)
    tw.run(0, 4)
    assert _core.deferred_pending()
    _run_custom(tw)


def test_two_updates_per_step_different_inputs():
    def make_step(m: Any, opt: Any, lf: Any) -> Callable:
        def step(x: gd.Tensor, y: gd.Tensor, x2: gd.Tensor, y2: gd.Tensor) -> Any:
            opt.zero_grad()
            a = _loss_only(m, opt, lf, x, y)
            opt.zero_grad()
            return a, _loss_only(m, opt, lf, x2, y2)

        return step

    tw = Twin(make_step=make_step)
    for i in range(10):
        x, y = make_data(i, 600, 10, "ce", None)
        x2, y2 = make_data(i + 50, 600, 10, "ce", None)
        out_e = tw.e.step(*(gd.tensor(a) for a in (x, y, x2, y2)))
        out_c = tw.fn(*(gd.tensor(a) for a in (x, y, x2, y2)))
        for a, b in zip(out_e, out_c):
            assert_bitwise(a, b, f"loss {i}")
    tw.check(grads=True)


@pytest.mark.filterwarnings("ignore:graddesc.compile")  # (uncapturable: runs eagerly)
def test_weight_clamped_after_update_in_step():
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        loss = _loss_only(m, opt, lf, x, y)
        with gd.no_grad():
            m[0].weight.clamp_(-0.04, 0.04)
        return loss

    _run_custom(_custom_twin(lambda: mlp(LECTURE), body, LECTURE))


def test_input_preprocessed_before_first_layer():
    def body(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
        return _loss_only(m, opt, lf, F.tanh(x) if hasattr(F, "tanh") else F.relu(x), y)

    tw = _custom_twin(lambda: mlp(LECTURE), body, LECTURE)
    tw.run(0, 4)
    assert _core.deferred_pending()
    _run_custom(tw)


def test_first_layer_after_activation_in_model():
    def make_model() -> nn.Module:
        return nn.Sequential(nn.Sigmoid(), *mlp(LECTURE))

    tw = Twin(make_model=make_model)
    tw.run(0, 4)
    assert _core.deferred_pending()
    assert type(tw.c.model[1].weight) is DeferredParameter
    tw.run(4, 6)
    tw.check(grads=True)


@pytest.mark.filterwarnings("ignore:graddesc.compile")  # (uncapturable: runs eagerly)
def test_step_uses_weight_by_matmul():
    """x @ W.t() + b instead of a Linear (gemm kernels, not linear_fwd)."""
    def make_step(m: Any, opt: Any, lf: Any) -> Callable:
        def step(x: gd.Tensor, y: gd.Tensor) -> gd.Tensor:
            opt.zero_grad()
            h = F.relu(x @ m[0].weight.t())
            loss = lf(m[2](h), y)
            loss.backward()
            opt.step()
            return loss

        return step

    tw = Twin(make_step=make_step)
    tw.run(0, 5)
    tw.run(5, 5, check=True)
    tw.check(grads=True)


class _Shared(nn.Module):
    """The same square Linear applied twice (its second use passes a gradient on)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(20, 20)
        self.act = nn.ReLU()
        self.head = nn.Linear(20, 5)

    def forward(self, x: gd.Tensor) -> gd.Tensor:
        return self.head(self.act(self.lin(self.act(self.lin(x)))))


class _TwoHeads(nn.Module):
    """Two first layers reading the same input, each with its own head and loss."""

    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        self.a = nn.Linear(30, 16)
        self.b = self.a if tied else nn.Linear(30, 16, bias=False)
        self.act = nn.ReLU()
        self.ha = nn.Linear(16, 4)
        self.hb = nn.Linear(16, 4)

    def forward(self, x: gd.Tensor) -> tuple:
        return self.ha(self.act(self.a(x))), self.hb(self.act(self.b(x)))


def _two_losses(m: Any, opt: Any, lf: Any, x: Any, y: Any) -> Any:
    oa, ob = m(x)
    la, lb = lf(oa, y), lf(ob, y)
    la.backward()
    lb.backward()
    opt.step()
    return la, lb


@pytest.mark.filterwarnings("ignore:graddesc.compile")  # (uncapturable: runs eagerly)
def test_weight_used_twice():
    tw = _custom_twin(_Shared, _loss_only, (20, 5))
    _run_custom(tw, 12)


@pytest.mark.filterwarnings("ignore:graddesc.compile")  # (tied: uncapturable, runs eagerly)
@pytest.mark.parametrize("tied", [False, True], ids=["two-layers", "tied"])
def test_two_first_layers(tied):
    tw = _custom_twin(lambda: _TwoHeads(tied), _two_losses, (30, 4))
    tw.run(0, 6)
    tw.check("two first layers", grads=True)
    tw.run(6, 8)
    tw.check(grads=True)


def test_two_first_layers_pending_and_reads():
    tw = _custom_twin(_TwoHeads, _two_losses, (30, 4))
    k = tw.run(0, 5)
    assert _core.deferred_pending()
    assert type(tw.c.model.a.weight) is DeferredParameter
    assert type(tw.c.model.b.weight) is DeferredParameter
    assert_bitwise(tw.e.model.b.weight, tw.c.model.b.weight, "b read first")
    assert type(tw.c.model.a.weight) is nn.Parameter  # (one flush applies both)
    k = tw.run(k, 3)
    assert_bitwise(tw.e.model.a.weight, tw.c.model.a.weight, "a read first")
    k = tw.run(k, 3)
    held = (tw.e.model.b.weight.detach().numpy(), tw.c.model.b.weight.detach().numpy())
    for _ in range(3):
        k = tw.run(k, 1)
        assert_bitwise(held[0], held[1], "held b while a may defer")
        assert_bitwise(tw.e.model.a.weight, tw.c.model.a.weight, "a")
    del held
    k = tw.run(k, 3)
    tw.check(grads=True)


# ---- parameters that are no nn.Parameter, or a subclass -----------------------------------------
class _MyParam(nn.Parameter):
    pass


def test_parameter_subclass_not_deferred():
    def make_model() -> nn.Module:
        m = mlp((50, 10, 3))
        m[0].weight = _MyParam(m[0].weight.detach().clone())
        return m

    tw = Twin((50, 10, 3), make_model=make_model)
    tw.run(0, 5)
    assert type(tw.first("c")) is _MyParam
    assert not _core.deferred_pending()
    tw.run(5, 3)
    tw.check(grads=True)


class _Raw:
    """A model made of plain Tensors that require grad (an optimizer over Tensors)."""

    def __init__(self, dtype: Any = None) -> None:
        t = np_dtype(dtype)
        self.w1 = gd.tensor((gd.randn(16, 40).numpy() * 0.1).astype(t), requires_grad=True)
        self.b1 = gd.tensor(np.zeros(16, t), requires_grad=True)
        self.w2 = gd.tensor((gd.randn(5, 16).numpy() * 0.1).astype(t), requires_grad=True)

    def __call__(self, x: gd.Tensor) -> gd.Tensor:
        return F.linear(F.linear(x, self.w1, self.b1).relu(), self.w2)

    def parameters(self) -> list:
        return [self.w1, self.b1, self.w2]

    def named_parameters(self) -> list:
        return [("w1", self.w1), ("b1", self.b1), ("w2", self.w2)]


@pytest.mark.parametrize("dtype", [None, gd.float64])
def test_plain_tensor_parameters(dtype):
    tw = Twin((40, 5), dtype=dtype, make_model=lambda: _Raw(dtype))
    k = tw.run(0, 5)
    assert _core.deferred_pending()
    assert type(tw.c.model.w1) is DeferredTensor
    assert isinstance(tw.c.model.w1, gd.Tensor)
    assert_bitwise(tw.e.model.w1, tw.c.model.w1, "w1")
    assert type(tw.c.model.w1) is gd.Tensor
    k = tw.run(k, 3)
    with gd.no_grad():
        tw.e.model.w1.mul_(0.9)
        tw.c.model.w1.mul_(0.9)
    k = tw.run(k, 3)
    v = (tw.e.model.w1.detach().numpy(), tw.c.model.w1.detach().numpy())
    for _ in range(3):
        k = tw.run(k, 1)
        assert_bitwise(v[0], v[1], "held w1")
    tw.check(grads=True)


def test_deferred_weight_passed_as_input():
    """A stale parameter handed to a compiled function as an argument is read up to date."""
    tw = Twin()

    def probe(w: gd.Tensor) -> gd.Tensor:
        return w.sum(dim=1)

    fp = gd.compile(probe)
    k = 0
    for _ in range(5):
        k = tw.run(k, 2)
        with gd.no_grad():
            we, wc = tw.first("e").detach(), tw.first("c")
            wc.requires_grad_(False)
            try:
                out_c = fp(wc)
            finally:
                wc.requires_grad_(True)
            assert_bitwise(probe(we), out_c, "probe of the weight")
    tw.check(grads=True)


# ---- gd.fit -------------------------------------------------------------------------------------
def test_fit_compile_matches_eager():
    def run(compile_: bool) -> tuple:
        gd.manual_seed(11)
        m = mlp((64, 20, 10))
        opt = optim.SGD(m.parameters(), lr=0.05)
        data = []
        for i in range(12):
            x, y = make_data(i, 64, 10, "ce", None)
            data.append((gd.tensor(x), gd.tensor(y)))
        h = gd.fit(m, nn.CrossEntropyLoss(), data, opt, epochs=2, progress=False,
                   compile=compile_)
        return m, h

    me, he = run(False)
    mc, hc = run(True)
    assert_same_params(me, mc, "fit", grads=True)
    le = getattr(he, "losses", getattr(he, "loss", None))
    lc = getattr(hc, "losses", getattr(hc, "loss", None))
    if le is not None:
        assert_bitwise(np.asarray(le), np.asarray(lc), "fit losses")


# ---- threads -------------------------------------------------------------------------------------
def test_reader_thread_does_not_crash_or_deadlock():
    tw = Twin()
    stop = threading.Event()
    errors: list = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                w = tw.first("c")
                float(w.detach().numpy()[0, 0])
                _ = w.shape
                _core.deferred_pending()
                reads[0] += 1
        except Exception as e:  # pragma: no cover (reported below)
            errors.append(e)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        for i in range(60):
            (_, _), (xc, yc) = tw.data(i)
            tw.fn(xc, yc)
    finally:
        stop.set()
        th.join(timeout=30)
    assert not th.is_alive(), "the reader thread hung"
    assert not errors, errors
    # the reader only read: the result is the eager one's
    for i in range(60):
        (xe, ye), _ = tw.data(i)
        tw.e.step(xe, ye)
    tw.check(grads=True)


def test_compiled_steps_in_two_threads_no_deadlock():
    a, b = Twin(seed=3), Twin((30, 12, 4), loss="mse", seed=4)
    errors: list = []

    def loop(tw: Twin) -> None:
        try:
            for i in range(40):
                (_, _), (xc, yc) = tw.data(i)
                tw.fn(xc, yc)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ths = [threading.Thread(target=loop, args=(t,), daemon=True) for t in (a, b)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in ths), "a training thread hung"
    assert not errors, errors
    # separate models: each thread's result is its eager twin's
    for tw in (a, b):
        for i in range(40):
            (xe, ye), _ = tw.data(i)
            tw.e.step(xe, ye)
        tw.check(grads=True)


# ---- Program hooks from Python -------------------------------------------------------------------
def test_program_run_from_python_flushes():
    tw = Twin()
    deferring(tw)
    entry = next(e for e in tw.fn._cache.values() if getattr(e, "program", None) is not None)
    entry.program.profile(1)  # any Program use from Python applies the pending update first
    assert not _core.deferred_pending()
    assert type(tw.first("c")) is nn.Parameter


def test_program_run_from_python_leaves_no_update_pending():
    """Program.run from Python cannot defer (an update pending there would have no owner:
    flush_deferred() and attribute access would not apply it)."""
    tw = Twin()
    deferring(tw)
    entry = next(e for e in tw.fn._cache.values() if getattr(e, "program", None) is not None)
    with pytest.raises(TypeError):
        entry.program.run(defer=True)
    entry.program.run()
    assert not entry.program.pending() and not _core.deferred_pending()


# ---- parameter memory owned by something that is not a NumPy array ------------------------------
def _buffer_backed(sizes: tuple = LECTURE) -> Callable:
    """A model whose first weight lives in a bytearray the caller keeps (gd.from_numpy of
    np.frombuffer shares that memory)."""

    def make_model() -> nn.Module:
        m = mlp(sizes)
        w0 = m[0].weight.detach().numpy()
        buf = bytearray(w0.tobytes())
        m[0].weight = nn.Parameter(gd.from_numpy(np.frombuffer(buf, dtype=np.float32)
                                                 .reshape(w0.shape)))
        m.raw = buf  # (a plain attribute: reading it does not touch the parameter)
        return m

    return make_model


def test_buffer_backed_parameter_read_through_buffer():
    tw = Twin(make_model=_buffer_backed())
    assert np.shares_memory(np.frombuffer(tw.c.model.raw, dtype=np.float32),
                            tw.first("c").detach().numpy())
    k = 0
    for _ in range(6):
        k = tw.run(k, 1)
        # the caller reads its own buffer, never the parameter
        assert_bitwise(np.frombuffer(tw.e.model.raw, dtype=np.float32),
                       np.frombuffer(tw.c.model.raw, dtype=np.float32),
                       f"weight read through the caller's buffer after call {k}")
    tw.check(grads=True)


def test_buffer_backed_parameter_written_through_buffer():
    tw = Twin(make_model=_buffer_backed())
    k = tw.run(0, 4)
    for m in (tw.e.model, tw.c.model):
        np.frombuffer(m.raw, dtype=np.float32)[:600] = 0.25  # row 0, behind graddesc's back
    k = tw.run(k, 3)
    tw.check("after a write through the caller's buffer", grads=True)


# ---- more ---------------------------------------------------------------------------------------
def test_step_raising_before_the_first_layer_reads_its_weight():
    """A failure in an instruction that runs before the deferred layer's forward."""
    def make_step(m: Any, opt: Any, lf: Any) -> Callable:
        def step(z: gd.Tensor, x: gd.Tensor, y: gd.Tensor) -> Any:
            opt.zero_grad()
            aux = lf(z, y)  # (fails first on a bad target)
            loss = lf(m(x), y)
            loss.backward()
            opt.step()
            return loss, aux

        return step

    tw = Twin(make_step=make_step)

    def args(i: int, bad: bool = False) -> list:
        x, y = make_data(i, 600, 10, "ce", None)
        z = np.random.default_rng(i).standard_normal((1, 10)).astype(np.float32)
        if bad:
            y = np.array([99], dtype=np.int64)
        return [gd.tensor(z), gd.tensor(x), gd.tensor(y)]

    for i in range(5):
        for a, b in zip(tw.e.step(*args(i)), tw.fn(*args(i))):
            assert_bitwise(a, b, f"call {i}")
    assert _core.deferred_pending()
    kinds = []
    for f in (tw.e.step, tw.fn):
        with pytest.raises(ValueError) as info:
            f(*args(5, bad=True))
        kinds.append(type(info.value))
    assert kinds[0] == kinds[1]
    for i in range(6, 10):
        for a, b in zip(tw.e.step(*args(i)), tw.fn(*args(i))):
            assert_bitwise(a, b, f"call {i}")
    tw.check(grads=True)


def test_model_converted_to_double_while_pending():
    tw = Twin()
    k = deferring(tw)
    tw.e.model.double()
    tw.c.model.double()
    tw.dtype = gd.float64
    k = tw.run(k, 5)
    tw.check(grads=True)


FUNCTION_READS: dict = {
    "cat": lambda p: as_np(gd.cat([p, p])),
    "stack": lambda p: as_np(gd.stack([p, p])),
    "where": lambda p: as_np(gd.where(p > 0, p, gd.zeros_like(p))),
    "linear": lambda p: as_np(F.linear(gd.ones(1, p.shape[1], dtype=p.dtype), p)),
    "tensor_of_detach": lambda p: as_np(gd.tensor(p.detach())),
    "as_tensor": lambda p: as_np(gd.as_tensor(p.detach()) * 1.0),
    "from_numpy_copy": lambda p: as_np(gd.from_numpy(p.detach().numpy().copy())),
    "np_ufunc": lambda p: np.add(p.detach(), 1.0),
    "relu": lambda p: as_np(F.relu(p)),
    "softmax": lambda p: as_np(p.softmax(1)),
    "gt_any": lambda p: bool((p > 10.0).detach().numpy().any()),
}


@pytest.mark.parametrize("name", sorted(FUNCTION_READS))
def test_read_through_functions(name):
    tw = Twin()
    k = deferring(tw)
    for _ in range(2):
        _compare_read(FUNCTION_READS[name](tw.first("e")), FUNCTION_READS[name](tw.first("c")),
                      name)
        k = deferring(tw, k, 3)
    tw.check(grads=True)


def test_two_threads_overlapping_replays_keep_every_pending_update():
    """Thread A replays a big step (its kernels run without the GIL) while thread B replays a
    small one and then reads its own model. B's pending update must not be lost when A's replay
    ends after B's (one global owner slot): B reads what its eager twin shows."""
    a = Twin((300, 30, 1200, 1200, 4), seed=5)
    b = Twin((40, 12, 4), loss="mse", seed=6)
    ready, done = threading.Event(), threading.Event()
    na = [0]
    errors: list = []

    def loop_a() -> None:
        try:
            extra = 0
            while extra < 3 and na[0] < 5000:
                (_, _), (xc, yc) = a.data(na[0])
                a.fn(xc, yc)
                na[0] += 1
                if na[0] == 4:
                    ready.set()
                if done.is_set():
                    extra += 1
        except Exception as e:  # pragma: no cover
            errors.append(e)
        finally:
            ready.set()

    def loop_b() -> None:
        try:
            ready.wait(60)
            for i in range(25):
                (xe, ye), (xc, yc) = b.data(i)
                b.e.step(xe, ye)
                b.fn(xc, yc)
                threading.Event().wait(0.002)  # (lets A's replay end meanwhile)
                b.check(f"B after call {i}")
        except BaseException as e:  # (pytest.fail's exception too)
            errors.append(e)
        finally:
            done.set()

    ths = [threading.Thread(target=loop_a, daemon=True), threading.Thread(target=loop_b,
                                                                          daemon=True)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ths), "a training thread hung"
    assert not errors, errors[0]
    b.check("B at the end", grads=True)
    for i in range(na[0]):
        (xe, ye), _ = a.data(i)
        a.e.step(xe, ye)
    a.check("A at the end", grads=True)
