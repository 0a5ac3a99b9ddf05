"""gd.compile: a recorded training step replays bitwise equal to eager, falls back to eager (with
one warning) when it cannot be captured, and records again for new shapes or storage."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd


def _model(sizes, seed, dtype=gd.float32):
    gd.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(gd.nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(gd.nn.Tanh() if i % 2 else gd.nn.ReLU())
    return gd.nn.Sequential(*layers)


def _step_fn(model, opt, loss_fn):
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _data(sizes, batch, loss, n, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    xs = [gd.tensor(rng.standard_normal((batch, sizes[0])).astype(dtype)) for _ in range(n)]
    if loss == "ce":
        ys = [gd.tensor(rng.integers(0, sizes[-1], batch)) for _ in range(n)]
    else:
        ys = [gd.tensor(rng.standard_normal((batch, sizes[-1])).astype(dtype)) for _ in range(n)]
    return xs, ys


@pytest.mark.parametrize("sizes, batch, loss, opt_kw, dtype", [
    ([600, 60, 40, 10], 1, "ce", {"lr": 0.05, "momentum": 0.9}, gd.float32),
    ([600, 60, 40, 10], 64, "mse", {"lr": 0.05}, gd.float32),
    ([20, 16, 16, 5], 7, "ce", {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                "weight_decay": 1e-3}, gd.float64),
    ([12, 9, 3], 32, "mse", {"lr": 0.02, "momentum": 0.5, "dampening": 0.1}, gd.float64),
])
def test_compiled_step_is_bitwise_equal_to_eager(sizes, batch, loss, opt_kw, dtype):
    np_dtype = np.float64 if dtype == gd.float64 else np.float32
    lf = gd.nn.CrossEntropyLoss() if loss == "ce" else gd.nn.MSELoss()
    m1, m2 = _model(sizes, 0, dtype), _model(sizes, 0, dtype)
    eager = _step_fn(m1, gd.optim.SGD(m1.parameters(), **opt_kw), lf)
    compiled = gd.compile(_step_fn(m2, gd.optim.SGD(m2.parameters(), **opt_kw), lf))
    xs, ys = _data(sizes, batch, loss, 6, dtype=np_dtype)
    for x, y in zip(xs, ys):
        l1, l2 = eager(x, y), compiled(x, y)
        assert isinstance(l2, gd.Tensor) and l2.shape == ()
        assert l1.item() == l2.item()
    assert compiled.stats["replayed"] >= 4
    for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy(), err_msg=n)
        np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy(), err_msg=n)


def test_new_shapes_record_again_and_old_ones_still_replay():
    sizes = [10, 8, 3]
    m1, m2 = _model(sizes, 0), _model(sizes, 0)
    lf = gd.nn.CrossEntropyLoss()
    eager = _step_fn(m1, gd.optim.SGD(m1.parameters(), lr=0.1), lf)
    compiled = gd.compile(_step_fn(m2, gd.optim.SGD(m2.parameters(), lr=0.1), lf))
    for batch in (4, 5, 4, 5, 4, 5):
        xs, ys = _data(sizes, batch, "ce", 1, seed=batch)
        assert eager(xs[0], ys[0]).item() == compiled(xs[0], ys[0]).item()
    assert compiled.stats["recorded"] >= 2 and compiled.stats["replayed"] >= 2


def test_ignore_index_count_is_recomputed_each_replay():
    sizes = [6, 4]
    m1, m2 = _model(sizes, 0), _model(sizes, 0)
    lf = gd.nn.CrossEntropyLoss(ignore_index=-100)
    eager = _step_fn(m1, gd.optim.SGD(m1.parameters(), lr=0.1), lf)
    compiled = gd.compile(_step_fn(m2, gd.optim.SGD(m2.parameters(), lr=0.1), lf))
    rng = np.random.default_rng(0)
    x = gd.tensor(rng.standard_normal((5, 6)).astype(np.float32))
    for targets in ([0, 1, 2, 3, 0], [0, 1, 2, 3, 0], [0, -100, -100, 3, 1], [-100] * 4 + [2]):
        y = gd.tensor(targets)
        assert np.array_equal(eager(x, y).detach().numpy(), compiled(x, y).detach().numpy(),
                              equal_nan=True)


def test_replayed_target_out_of_range_raises_not_crashes():
    m = _model([6, 4], 0)
    compiled = gd.compile(_step_fn(m, gd.optim.SGD(m.parameters(), lr=0.1),
                                   gd.nn.CrossEntropyLoss()))
    x = gd.zeros(3, 6)
    for _ in range(3):
        compiled(x, gd.tensor([0, 1, 2]))
    assert compiled._fast is not None  # (the one-call path raised it: _core.replay)
    with pytest.raises(ValueError, match="out of range"):
        compiled(x, gd.tensor([0, 9, 2]))


@pytest.mark.parametrize("args", [(), (1, (), True, 4), (None, (), True), (1, (), True),
                                  ("fast", [], True), ("fast", (), 1)])
def test_the_one_call_entry_checks_its_arguments(args):
    m = _model([6, 4], 0)
    compiled = gd.compile(_step_fn(m, gd.optim.SGD(m.parameters(), lr=0.1),
                                   gd.nn.CrossEntropyLoss()))
    for _ in range(3):
        compiled(gd.zeros(3, 6), gd.tensor([0, 1, 2]))
    args = tuple(compiled._fast if a == "fast" else a for a in args)
    with pytest.raises(TypeError, match="replay"):
        gd._core.replay(*args)


def test_item_inside_falls_back_with_one_warning():
    m1, m2 = _model([6, 4], 0), _model([6, 4], 0)
    lf = gd.nn.CrossEntropyLoss()
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)

    def step(model, opt, x, y):
        opt.zero_grad()
        loss = lf(model(x), y)
        if loss.item() > 100:  # value-dependent Python control flow
            return loss
        loss.backward()
        opt.step()
        return loss

    compiled = gd.compile(lambda x, y: step(m2, o2, x, y))
    x, y = gd.ones(2, 6), gd.tensor([1, 2])
    with pytest.warns(RuntimeWarning, match="item"):
        compiled(x, y)
    for _ in range(3):
        compiled(x, y)  # no second warning (filterwarnings=error would raise)
    for _ in range(4):
        step(m1, o1, x, y)
    assert compiled.stats["replayed"] == 0
    np.testing.assert_array_equal(m1[0].weight.detach().numpy(), m2[0].weight.detach().numpy())


@pytest.mark.parametrize("opt_cls, kw", [
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
])
def test_compiled_adam_state_matches_eager(opt_cls, kw):
    sizes = [12, 10, 4]
    m1, m2 = _model(sizes, 0, gd.float64), _model(sizes, 0, gd.float64)
    o1 = getattr(gd.optim, opt_cls)(m1.parameters(), **kw)
    o2 = getattr(gd.optim, opt_cls)(m2.parameters(), **kw)
    eager = _step_fn(m1, o1, gd.nn.CrossEntropyLoss())
    compiled = gd.compile(_step_fn(m2, o2, gd.nn.CrossEntropyLoss()))
    xs, ys = _data(sizes, 9, "ce", 7, dtype=np.float64)
    for x, y in zip(xs, ys):
        assert eager(x, y).item() == compiled(x, y).item()
    assert compiled.stats["replayed"] >= 5
    s1, s2 = o1.state_dict(), o2.state_dict()
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            other = s2["state"][k][name]
            np.testing.assert_array_equal(np.asarray(v.numpy()), np.asarray(other.numpy()),
                                          err_msg=name)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())


@pytest.mark.parametrize("kind", ["tensor_lr", "numpy_op", "requires_grad_input"])
def test_uncapturable_steps_fall_back_and_stay_correct(kind):
    m1, m2 = _model([6, 5, 4], 0), _model([6, 5, 4], 0)
    lf = gd.nn.CrossEntropyLoss()
    # (a one-element tensor lr is read on every step: a replay would not see it change)
    make_opt = (lambda p: gd.optim.SGD(p, lr=gd.tensor(0.1))) if kind == "tensor_lr" else \
        (lambda p: gd.optim.SGD(p, lr=0.1))
    o1, o2 = make_opt(m1.parameters()), make_opt(m2.parameters())

    def step(model, opt, x, y):
        opt.zero_grad()
        out = model(x)
        if kind == "numpy_op":
            out = out - out[out > 0].sum()  # a boolean mask: NumPy, a data-dependent shape
        loss = lf(out, y)
        loss.backward()
        opt.step()
        return loss

    compiled = gd.compile(lambda x, y: step(m2, o2, x, y))
    x, y = gd.ones(3, 6), gd.tensor([0, 1, 3])
    if kind == "requires_grad_input":
        x = gd.ones(3, 6, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="graddesc.compile"):
        for _ in range(4):
            compiled(x, y)
    for _ in range(4):
        step(m1, o1, x, y)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())


def test_storage_rebind_records_again():
    m1, m2 = _model([6, 4], 0), _model([6, 4], 0)
    eager = _step_fn(m1, gd.optim.SGD(m1.parameters(), lr=0.1), gd.nn.MSELoss())
    compiled = gd.compile(_step_fn(m2, gd.optim.SGD(m2.parameters(), lr=0.1), gd.nn.MSELoss()))
    x, y = gd.ones(2, 6), gd.zeros(2, 4)
    for _ in range(3):
        eager(x, y)
        compiled(x, y)
    recorded = compiled.stats["recorded"]
    for m in (m1, m2):  # new storage: the recorded pointers are stale
        m[0].weight.data = gd.full((4, 6), 0.5)
    for _ in range(3):
        assert eager(x, y).item() == compiled(x, y).item()
    assert compiled.stats["recorded"] >= recorded + 1
    np.testing.assert_array_equal(m1[0].weight.detach().numpy(), m2[0].weight.detach().numpy())


def test_fit_with_compile_matches_eager_fit():
    X, y = gd.data.datasets.spirals(n=40, classes=3, seed=0)
    hists = []
    models = []
    for compiled in (False, True):
        m = _model([2, 16, 3], 0)
        opt = gd.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        loader = gd.data.DataLoader(gd.data.TensorDataset(X, y), batch_size=16, shuffle=True,
                                    generator=gd.Generator().manual_seed(0), drop_last=True)
        hists.append(gd.fit(m, gd.nn.CrossEntropyLoss(), loader, opt, epochs=5, progress=False,
                            compile=compiled))
        models.append(m)
    assert hists[0].loss == hists[1].loss
    for p1, p2 in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())


def test_kernel_scale_count_scale_copy_array_against_numpy():
    from graddesc import _core

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = np.array(1.0 / 3.0)
    np.testing.assert_array_equal(_core.scale(x, f), x * np.float32(1.0 / 3.0))
    t = np.array([0, -100, 2, 3, -100], dtype=np.int64)
    assert _core.count_scale(t, -100) == 1.0 / 3.0
    assert np.isnan(_core.count_scale(np.full(3, -100, dtype=np.int64), -100))
    c = _core.copy_array(x.astype(np.float64))
    np.testing.assert_array_equal(c, x)
    assert c.dtype == np.float64 and not np.shares_memory(c, x)


@pytest.mark.parametrize("call, exc, match", [
    (lambda c: c.scale(np.ones(2, np.int32), np.array(1.0)), TypeError, "scale: argument 'x'"),
    (lambda c: c.scale(np.ones(2, np.float32), np.ones(2)), ValueError, "argument 'factor'"),
    (lambda c: c.scale(np.ones(2, np.float32), 2.0), TypeError, "argument 'factor'"),
    (lambda c: c.count_scale(np.ones(2, np.float64), -100), TypeError, "argument 'target'"),
    (lambda c: c.count_scale(np.ones((2, 2), np.int64), -100), ValueError, "1-d"),
    (lambda c: c.copy_array([1.0, 2.0]), TypeError, "copy_array: argument 'x'"),
    (lambda c: c.Program().add("nope", False, [], [], []), ValueError, "unknown program"),
    (lambda c: c.Program().profile(0), ValueError, "repeat must be >= 1"),
    (lambda c: c.Program().set_real(0, 0, 0.1), ValueError, "no real option 0 in instruction 0"),
    (lambda c: c.Program().set_lazy(3, True), ValueError, "instruction 3 is not a linear_bwd_sgd"),
    (lambda c: c.Program().materialize(0), ValueError, "instruction 0 is not a linear_bwd_sgd"),
    (lambda c: c.Program().grad_addr(1), ValueError, "instruction 1 is not a linear_bwd_sgd"),
    (lambda c: c.Program().param_addr(2), ValueError, "no instruction 2"),
])
def test_kernel_program_bindings_validate(call, exc, match):
    from graddesc import _core

    with pytest.raises(exc, match=match):
        call(_core)


def test_keyword_inputs_in_another_order_go_to_the_right_buffers():
    # same shapes for x and y: a mix-up would silently compute with swapped inputs
    gd.manual_seed(0)
    w = gd.nn.Parameter(gd.randn(3, 3))
    opt = gd.optim.SGD([w], lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = gd.nn.functional.mse_loss(gd.nn.functional.linear(x, w), y)
        loss.backward()
        opt.step()
        return loss

    fn = gd.compile(step)
    rng = np.random.default_rng(1)
    a, b = (gd.tensor(rng.standard_normal((2, 3)).astype(np.float32)) for _ in range(2))
    fn(x=a, y=b)
    fn(x=a, y=b)
    w_before = w.detach().numpy().copy()
    got = fn(y=b, x=a).item()
    with gd.no_grad():
        w.copy_(gd.tensor(w_before))
    want = step(x=a, y=b).item()
    assert got == want
    assert fn.stats["replayed"] >= 1


def _manual_update(w, x, y):
    w.grad = None
    loss = gd.nn.functional.mse_loss(gd.nn.functional.linear(x, w), y)
    loss.backward()
    with gd.no_grad():
        w.sub_(0.1 * w.grad)  # the lecture's update by hand: a kernel write, captured
        w[w.abs() > 10.0] = 0.0  # boolean-mask assignment: a NumPy write, a replay would skip
    return loss


# (two backwards accumulating into .grad, zero_grad(set_to_none=False) and hand-written updates
# write through the elementwise kernels now and are captured: tests/test_compile_optim.py,
# tests/test_compile_handwritten.py)
@pytest.mark.parametrize("body", [_manual_update])
def test_python_in_place_writes_fall_back_instead_of_being_skipped(body):
    # A replay runs kernels only: a write NumPy makes inside the step would be lost, so the
    # recording must refuse it (one warning) and every call must equal the eager step.
    def make():
        gd.manual_seed(0)
        return gd.nn.Parameter(gd.randn(4, 4) * 0.3)

    w_e, w_c = make(), make()
    fn = gd.compile(lambda x, y: body(w_c, x, y))
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match="writes into a tensor in Python"):
        for _ in range(4):
            x = gd.tensor(rng.standard_normal((3, 4)).astype(np.float32))
            y = gd.tensor(rng.standard_normal((3, 4)).astype(np.float32))
            want = body(w_e, x, y).item()
            assert fn(x, y).item() == want
            np.testing.assert_array_equal(w_c.detach().numpy(), w_e.detach().numpy())
    assert fn.stats["replayed"] == 0


def _ce_sgd_step(model, opt):
    """zero_grad, cross-entropy forward and backward, optimizer step; returns the loss."""

    def step(x, y):
        opt.zero_grad()
        loss = gd.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def test_a_grad_kept_by_the_caller_keeps_its_values_and_is_freed_when_dropped():
    import gc
    import weakref

    gd.manual_seed(0)
    model = gd.nn.Sequential(gd.nn.Linear(5, 4), gd.nn.ReLU(), gd.nn.Linear(4, 3))
    fn = gd.compile(_ce_sgd_step(model, gd.optim.SGD(model.parameters(), lr=0.1)))
    rng = np.random.default_rng(0)
    batches = [(gd.tensor(rng.standard_normal((6, 5)).astype(np.float32)),
                gd.tensor(rng.integers(0, 3, 6))) for _ in range(6)]
    for x, y in batches[:3]:
        fn(x, y)
    kept = model[0].weight.grad
    values = kept.numpy().copy()
    ref = weakref.ref(kept._data)
    fn(*batches[3])
    np.testing.assert_array_equal(kept.numpy(), values)  # eager gives a fresh .grad per step
    assert model[0].weight.grad is not kept
    del kept
    fn(*batches[4])
    gc.collect()
    assert ref() is None  # the replay no longer holds the array the caller dropped
    assert fn.stats == {"recorded": 1, "replayed": 4, "eager": 0}


def _linear_step_with_scheduler(after_step=None, momentum=0.0):
    """A Linear + MSE + SGD step with a StepLR; after_step(opt, sched) runs inside the step."""
    gd.manual_seed(0)
    model = gd.nn.Linear(4, 3)
    opt = gd.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    sched = gd.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)

    def step(x, y):
        opt.zero_grad()
        loss = gd.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(opt, sched)
        return loss

    return model, opt, sched, step


def _scale_lr(opt, sched):
    opt.param_groups[0]["lr"] *= 0.9


@pytest.mark.parametrize("after_step", [lambda opt, sched: sched.step(), _scale_lr],
                         ids=["scheduler", "setting_after_step"])
def test_settings_changed_inside_the_step_fall_back(after_step):
    # StepLR(step_size=3) changes nothing on the first calls: a replay would silently never
    # advance it. Both must run eagerly (one warning) and match eager exactly.
    m1, o1, _, eager = _linear_step_with_scheduler(after_step)
    m2, o2, _, step = _linear_step_with_scheduler(after_step)
    fn = gd.compile(step)
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match="replay would not repeat"):
        for _ in range(8):
            x = gd.tensor(rng.standard_normal((2, 4)).astype(np.float32))
            y = gd.tensor(rng.standard_normal((2, 3)).astype(np.float32))
            assert eager(x, y).item() == fn(x, y).item()
            np.testing.assert_array_equal(m1.weight.detach().numpy(), m2.weight.detach().numpy())
            assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"]
    assert fn.stats["replayed"] == 0


def test_scheduler_outside_the_step_is_followed_by_replays():
    m1, _, s1, eager = _linear_step_with_scheduler(momentum=0.5)
    m2, _, s2, step = _linear_step_with_scheduler(momentum=0.5)
    fn = gd.compile(step)
    rng = np.random.default_rng(0)
    for _ in range(8):
        x = gd.tensor(rng.standard_normal((1, 4)).astype(np.float32))
        y = gd.tensor(rng.standard_normal((1, 3)).astype(np.float32))
        assert eager(x, y).item() == fn(x, y).item()
        s1.step()
        s2.step()
        np.testing.assert_array_equal(m1.weight.detach().numpy(), m2.weight.detach().numpy())
    assert fn.stats["recorded"] <= 2 and fn.stats["replayed"] >= 6


def test_lazy_batch1_weight_gradients_read_late_or_accumulated_eagerly():
    # At batch 1 a replay stores dW only when .grad is read: reading it after several calls,
    # or letting an eager backward accumulate onto it, must give eager's exact values.
    def make():
        gd.manual_seed(0)
        model = gd.nn.Sequential(gd.nn.Linear(300, 20), gd.nn.Tanh(), gd.nn.Linear(20, 4))
        opt = gd.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, _ce_sgd_step(model, opt)

    m1, eager = make()
    m2, step = make()
    fn = gd.compile(step)
    rng = np.random.default_rng(0)
    data = [(gd.tensor(rng.standard_normal((1, 300)).astype(np.float32)),
             gd.tensor(rng.integers(0, 4, 1))) for _ in range(7)]
    for x, y in data[:6]:
        eager(x, y)
        fn(x, y)
    (prog,) = [e.program for e in fn._cache.values() if getattr(e, "program", None)]
    assert "linear_bwd_sgd" in prog.names()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
        np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy())
    x, y = data[6]
    eager(x, y)
    fn(x, y)
    for m in (m1, m2):  # an eager backward on top, without zero_grad: accumulates
        gd.nn.functional.cross_entropy(m(x), y).backward()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy())


def test_program_rebind_set_real_and_lazy_materialize_on_a_hand_built_program():
    # One fused batch-1 Linear backward + SGD instruction against a NumPy oracle: the update
    # W -= lr * outer(dy, x) with dW stored (eager layout) or only on materialize (lazy).
    from graddesc import _core

    def addr(a):
        return a.__array_interface__["data"][0]

    rng = np.random.default_rng(0)
    IN, OUT, lr = 37, 5, 0.25
    x = rng.standard_normal((1, IN)).astype(np.float32)
    dy = rng.standard_normal((1, OUT)).astype(np.float32)
    W0 = rng.standard_normal((OUT, IN)).astype(np.float32)
    outer = dy.T * x  # each element one rounded float32 product
    for lazy in (False, True):
        W, dW = W0.copy(), np.full((OUT, IN), np.nan, np.float32)
        prog = _core.Program()
        prog.add("linear_bwd_sgd", False, [0, addr(dW), 0, addr(dy), addr(x), addr(W), 0],
                 [1, IN, OUT], [0.5, 0, 0, 0, 0, 0], [[], []])
        assert prog.param_addr(0) == addr(W) and prog.grad_addr(0) == addr(dW)
        prog.set_real(0, 0, lr)  # a new learning rate, as gd.compile patches it
        prog.set_lazy(0, lazy)
        prog.run()
        np.testing.assert_array_equal(W, W0 - np.float32(lr) * outer)
        assert np.isnan(dW).all() == lazy
        prog.materialize(0)
        np.testing.assert_array_equal(dW, outer)
        # rebind: the update now lands in another buffer
        W2 = W0.copy()
        prog.rebind(addr(W), addr(W2), W.nbytes)
        prog.run()
        np.testing.assert_array_equal(W2, W0 - np.float32(lr) * outer)


# ---- the one-call replay (_core.FastReplay) -------------------------------------------------
def _eager_and_compiled(sizes, batch, loss, opt_kw, calls):
    """Runs `calls` (a list of (x, y) or callables(fn, model, opt) -> None) through an eager and
    a compiled copy of one step; returns both models, the compiled function, the losses."""
    out = []
    for compiled in (False, True):
        model = _model(sizes, seed=3)
        opt = gd.optim.SGD(model.parameters(), **opt_kw)
        loss_fn = gd.nn.CrossEntropyLoss() if loss == "ce" else gd.nn.MSELoss()
        fn = _step_fn(model, opt, loss_fn)
        if compiled:
            fn = gd.compile(fn)
        losses = []
        for c in calls:
            if callable(c):
                c(fn, model, opt)
            else:
                losses.append(fn(*c).detach().numpy().copy())
        out.append((model, fn, losses))
    return out


def _assert_same(a, b):
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(pa.detach().numpy(), pb.detach().numpy(), err_msg=na)
        ga, gb = pa.grad, pb.grad
        assert (ga is None) == (gb is None), na
        if ga is not None:
            np.testing.assert_array_equal(ga.numpy(), gb.numpy(), err_msg=na)


def test_steady_state_replays_take_the_one_call_path_and_equal_eager():
    sizes = [30, 12, 8, 4]
    xs, ys = _data(sizes, 1, "ce", 12)
    (em, _, el), (cm, fn, cl) = _eager_and_compiled(sizes, 1, "ce", {"lr": 0.1, "momentum": 0.9},
                                                     list(zip(xs, ys)))
    np.testing.assert_array_equal(np.array(el), np.array(cl))
    _assert_same(em, cm)
    assert fn.stats == {"recorded": 2, "replayed": 10, "eager": 0}
    # first call records (twice: grads were None), the next replays in Python and builds the
    # fast path, which then takes every later call
    assert fn._fast is not None and fn._fast.hits == 9


def test_one_call_path_hands_unusual_calls_to_python_and_stays_bitwise_equal():
    sizes = [10, 7, 3]
    rng = np.random.default_rng(5)
    xs, ys = _data(sizes, 4, "mse", 8)
    wide = gd.tensor(rng.standard_normal((4, 20)).astype(np.float32))
    calls = list(zip(xs[:3], ys[:3]))
    calls.append((wide[:, ::2], ys[3]))                        # non-contiguous input
    calls.append((gd.tensor(xs[4].numpy().astype(">f4")), ys[4]))  # other byte order: new key
    calls.append((xs[5], ys[5]))

    def lr(fn, model, opt):
        opt.param_groups[0]["lr"] = 0.05                        # patched into the program

    def hold(fn, model, opt):
        hold.kept = model[0].weight.grad                        # caller keeps a .grad

    def keywords(fn, model, opt):
        fn(x=xs[6], y=ys[6])                                    # keyword inputs: Python path

    held_arrays = []

    def hold_array(fn, model, opt):                             # caller keeps a .grad's array
        a = model[2].bias.grad.numpy()
        held_arrays.append((a, a.copy()))

    calls += [lr, (xs[6], ys[6]), hold, (xs[7], ys[7]), keywords, (xs[0], ys[0]), hold_array,
              (xs[1], ys[1])]
    (em, _, el), (cm, fn, cl) = _eager_and_compiled(sizes, 4, "mse", {"lr": 0.1}, calls)
    for a, before in held_arrays:  # (eager's and compiled's): both keep their values
        np.testing.assert_array_equal(a, before)
    for a, b in zip(el, cl):
        np.testing.assert_array_equal(a, b)
    _assert_same(em, cm)
    assert fn.stats["replayed"] >= 6


def test_a_compiled_step_called_inside_another_compiled_step_is_recorded_by_it():
    def run(nested):
        gd.manual_seed(0)
        m = gd.nn.Linear(4, 3)
        opt = gd.optim.SGD(m.parameters(), lr=0.1)

        def inner(x, t):  # returns nothing: only the recorded kernels carry its effect
            opt.zero_grad()
            gd.nn.functional.mse_loss(m(x), t).backward()
            opt.step()

        ci = gd.compile(inner)
        co = gd.compile(lambda x, t: ci(x, t))
        x = gd.tensor(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4))
        t = gd.zeros(2, 3)
        for _ in range(3):
            ci(x, t)  # the inner step now replays through its fast path
        for _ in range(4):
            (co if nested else inner)(x, t)
        return m.weight.detach().numpy().copy()

    np.testing.assert_array_equal(run(True), run(False))


def test_fast_replay_rejects_a_tensor_type_without_slots():
    class NoSlots:
        pass

    prog = gd._core.Program()
    with pytest.raises(RuntimeError, match="_data"):
        gd._core.FastReplay(prog, NoSlots, True, [0], 0, {"active": None}, [], [], [],
                            [], [], [], [], [], [], {}, [], None, gd._core.ReplayCount())


def test_a_compiled_evaluation_under_no_grad_replays_and_follows_weight_changes():
    gd.manual_seed(0)
    m = gd.nn.Sequential(gd.nn.Linear(6, 5), gd.nn.ReLU(), gd.nn.Linear(5, 3))

    @gd.compile
    def evaluate(x):
        with gd.no_grad():
            return m(x)

    rng = np.random.default_rng(0)
    xs = [gd.tensor(rng.standard_normal((4, 6)).astype(np.float32)) for _ in range(5)]
    # a graph built before the replays saved the weights: reads must not bump their versions
    kept = (m(xs[0]) ** 2).sum()
    for k, x in enumerate(xs):
        if k == 3:
            with gd.no_grad():
                m[0].weight.mul_(0.5)  # in place: the replay reads the new values
            kept = (m(xs[0]) ** 2).sum()
        np.testing.assert_array_equal(evaluate(x).numpy(), m(x).detach().numpy())
    kept.backward()  # no "modified by an inplace operation"
    assert evaluate.stats == {"recorded": 1, "replayed": 4, "eager": 0}


@pytest.mark.parametrize("how", ["replace_group", "replace_list", "unpickled_optimizer"])
def test_param_groups_replaced_between_calls_are_followed(how):
    import pickle

    def run(compiled):
        gd.manual_seed(0)
        m = gd.nn.Linear(4, 3)
        holder = {"opt": gd.optim.SGD(m.parameters(), lr=0.1)}

        def step(x, t):
            o = holder["opt"]
            o.zero_grad()
            gd.nn.functional.mse_loss(m(x), t).backward()
            o.step()

        fn = gd.compile(step) if compiled else step
        x = gd.tensor(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4))
        t = gd.zeros(2, 3)
        for i in range(6):
            o = holder["opt"]
            if i == 3 and how == "replace_group":
                o.param_groups[0] = dict(o.param_groups[0], lr=0.5)
            elif i == 3 and how == "replace_list":
                o.param_groups = [dict(o.param_groups[0], lr=0.5)]
            elif i == 3:  # a copy whose groups are the same parameters' (a new optimizer object)
                state = pickle.loads(pickle.dumps(o.state_dict()))
                o2 = gd.optim.SGD(m.parameters(), lr=0.5)
                o2.load_state_dict(state)
                o2.param_groups[0]["lr"] = 0.5
                holder["opt"] = o2
            fn(x, t)
        return m.weight.detach().numpy().copy()

    np.testing.assert_array_equal(run(True), run(False))


def test_batch1_fused_update_of_a_large_layer_is_bitwise_equal_on_two_threads():
    """2048 x 2048 at batch 1: the matrix-vector products and the fused SGD update run on both
    threads (above parallel.hpp's kMatrixParallelFlops); results equal eager and 1 thread."""
    if not gd._core.has_openmp:
        pytest.skip("built without OpenMP: one thread only")
    previous = gd.get_num_threads()
    results = []
    try:
        for threads, compiled in ((1, False), (2, False), (2, True)):
            gd.set_num_threads(threads)
            gd.manual_seed(0)
            model = gd.nn.Sequential(gd.nn.Linear(2048, 2048), gd.nn.ReLU(), gd.nn.Linear(2048, 3))
            opt = gd.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
            fn = _ce_sgd_step(model, opt)
            fn = gd.compile(fn) if compiled else fn
            rng = np.random.default_rng(1)
            for _ in range(4):
                fn(gd.tensor(rng.standard_normal((1, 2048)).astype(np.float32)),
                   gd.tensor(rng.integers(0, 3, 1)))
            results.append([p.detach().numpy().copy() for p in model.parameters()])
    finally:
        gd.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_modules_made_inside_the_step_replay_and_attributes_set_in_forward_fall_back():
    gd.manual_seed(0)
    model = gd.nn.Linear(4, 3)
    opt = gd.optim.SGD(model.parameters(), lr=0.1)

    def step(x, t):  # a loss module made (and configured) on every call: still capturable
        opt.zero_grad()
        loss_fn = gd.nn.MSELoss()
        loss_fn.reduction = "mean"
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return loss

    fn = gd.compile(step)
    x = gd.tensor(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4))
    t = gd.zeros(2, 3)
    for _ in range(5):
        fn(x, t)
    assert fn.stats == {"recorded": 1, "replayed": 4, "eager": 0}

    class Caching(gd.nn.Module):  # sets its own attribute in forward: a side effect
        def __init__(self):
            super().__init__()
            self.inner = gd.nn.Linear(4, 3)
            self.calls = 0

        def forward(self, x):
            self.calls = self.calls + 1
            return self.inner(x)

    gd.manual_seed(0)
    m2 = Caching()
    opt2 = gd.optim.SGD(m2.parameters(), lr=0.1)

    fn2 = gd.compile(_step_fn(m2, opt2, gd.nn.functional.mse_loss))
    with pytest.warns(RuntimeWarning, match="setting Caching.calls"):
        for _ in range(3):
            fn2(x, t)
    fn2(x, t)
    assert m2.calls == 4  # every call ran eagerly


def test_a_large_input_copied_by_two_threads_replays_bitwise_equal():
    """A 307,200-byte input (not a whole number of the 64 KiB copy chunks) on 2 threads."""
    if not gd._core.has_openmp:
        pytest.skip("built without OpenMP: one thread only")
    previous = gd.get_num_threads()
    gd.set_num_threads(2)
    try:
        sizes = [300, 16, 5]
        xs, ys = _data(sizes, 256, "ce", 5, seed=7)
        models = []
        for compiled in (False, True):
            model = _model(sizes, seed=2)
            opt = gd.optim.SGD(model.parameters(), lr=0.05)
            fn = _step_fn(model, opt, gd.nn.CrossEntropyLoss())
            fn = gd.compile(fn) if compiled else fn
            losses = [fn(x, y).detach().numpy().copy() for x, y in zip(xs, ys)]
            models.append((model, losses, fn))
        (m1, l1, _), (m2, l2, fn) = models
        np.testing.assert_array_equal(np.array(l1), np.array(l2))
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
        assert fn._fast is not None and fn._fast.hits >= 2
    finally:
        gd.set_num_threads(previous)


def test_large_inputs_are_read_in_place_unless_the_program_touches_them():
    """An input from 32 KiB on is read where the caller's array is (no copy) when the program
    only reads it during the run: new values in the caller's array between calls are seen, an
    input sharing memory with a parameter is copied (the step updates that parameter), and a
    batch-1 input that a lazy weight gradient reads after the run is copied too."""
    sizes = [300, 256, 5]
    xs, ys = _data(sizes, 256, "ce", 4, seed=3)
    m1, m2 = _model(sizes, seed=1), _model(sizes, seed=1)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.05), gd.optim.SGD(m2.parameters(), lr=0.05)
    lf = gd.nn.CrossEntropyLoss()
    eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
    x1, x2 = gd.tensor(xs[0].numpy().copy()), gd.tensor(xs[0].numpy().copy())
    for k in range(4):
        assert eager(x1, ys[k]).item() == compiled(x2, ys[k]).item()
        x1.numpy()[...] = xs[(k + 1) % 4].numpy()  # the caller's array changes in place
        x2.numpy()[...] = xs[(k + 1) % 4].numpy()
    fast = compiled._fast
    assert fast is not None and fast.hits >= 2 and fast.in_place_reads == fast.hits
    # an input that is the first layer's weight itself (256 x 300): the program writes it
    for _ in range(3):
        l1 = eager(m1[0].weight.detach(), ys[0])
        l2 = compiled(m2[0].weight.detach(), ys[0])
        assert l1.item() == l2.item()
    assert fast.hits >= 5 and fast.in_place_reads < fast.hits  # (copied)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())

    sizes = [16384, 4, 3]  # batch 1: a 64 KiB input that W1's lazy gradient reads when .grad is
    xs, ys = _data(sizes, 1, "ce", 3, seed=4)
    m1, m2 = _model(sizes, seed=2), _model(sizes, seed=2)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.05), gd.optim.SGD(m2.parameters(), lr=0.05)
    eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
    for x, y in zip(xs, ys):
        x1, x2 = gd.tensor(x.numpy().copy()), gd.tensor(x.numpy().copy())
        assert eager(x1, y).item() == compiled(x2, y).item()
        x1.numpy()[...] = 0
        x2.numpy()[...] = 0  # (after the step: .grad must still come from the old values)
    assert compiled._fast is not None and compiled._fast.hits >= 1
    assert compiled._fast.in_place_reads == 0
    np.testing.assert_array_equal(m1[0].weight.grad.numpy(), m2[0].weight.grad.numpy())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())


# ---- deferred batch-1 weight updates (graddesc/_deferred.py, Program::plan_defer) -------------
def _plain_sgd_twins(sizes, seed=0, dtype=gd.float32, **opt_kw):
    opt_kw.setdefault("lr", 0.05)
    m1, m2 = _model(sizes, seed, dtype), _model(sizes, seed, dtype)
    o1, o2 = gd.optim.SGD(m1.parameters(), **opt_kw), gd.optim.SGD(m2.parameters(), **opt_kw)
    lf = gd.nn.CrossEntropyLoss()
    return m1, m2, _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))


def _params_equal(m1, m2):
    return all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(m1.parameters(), m2.parameters()))


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_a_deferred_first_layer_update_is_invisible_and_bitwise_equal(isa, dtype):
    from graddesc import _core
    from graddesc._deferred import DeferredParameter

    sizes = [37, 9, 5]
    np_dtype = np.float64 if dtype == gd.float64 else np.float32
    m1, m2, eager, compiled = _plain_sgd_twins(sizes, dtype=dtype, weight_decay=0.01)
    xs, ys = _data(sizes, 1, "ce", 8, dtype=np_dtype)
    w = m2[0].weight
    for k, (x, y) in enumerate(zip(xs, ys)):
        assert eager(x, y).item() == compiled(x, y).item()
        if k >= 2:  # recorded, then replayed: the first layer's update waits for the next call
            assert _core.deferred_pending()
            assert type(w) is DeferredParameter and isinstance(w, gd.nn.Parameter)
    # any attribute access applies it first (and gives the parameter its own class back)
    np.testing.assert_array_equal(w.detach().numpy(), m1[0].weight.detach().numpy())
    assert not _core.deferred_pending() and type(w) is gd.nn.Parameter
    assert _params_equal(m1, m2)
    assert compiled.stats["eager"] == 0


def test_a_held_view_of_a_weight_stops_deferral_and_stays_current():
    from graddesc import _core

    sizes = [40, 6, 3]
    m1, m2, eager, compiled = _plain_sgd_twins(sizes)
    xs, ys = _data(sizes, 1, "ce", 10)
    for x, y in zip(xs[:3], ys[:3]):
        eager(x, y), compiled(x, y)
    view = m2[0].weight.detach().numpy()[1:]  # a view: counts on the base array
    for x, y in zip(xs[3:7], ys[3:7]):
        eager(x, y), compiled(x, y)
        assert not _core.deferred_pending()
        np.testing.assert_array_equal(view, m1[0].weight.detach().numpy()[1:])
    del view  # deferral resumes
    for x, y in zip(xs[7:], ys[7:]):
        eager(x, y), compiled(x, y)
    assert _core.deferred_pending()
    assert _params_equal(m1, m2)


def test_another_compiled_function_and_program_run_apply_a_pending_update_first():
    from graddesc import _core

    sizes = [50, 8, 4]
    m1, m2, eager, compiled = _plain_sgd_twins(sizes)
    xs, ys = _data(sizes, 1, "ce", 6)
    ev1 = lambda x: m1(x)  # noqa: E731
    ev2 = gd.compile(lambda x: m2(x))
    with gd.no_grad():
        for x, y in zip(xs, ys):
            with gd.enable_grad():
                eager(x, y), compiled(x, y)
            np.testing.assert_array_equal(ev1(x).numpy(), ev2(x).numpy())
        # the other entry of the same compiled step (batch 2) runs the Python path or its own
        # program: either applies the pending update before it reads the weight
        x2, y2 = _data(sizes, 2, "ce", 1, seed=5)
        with gd.enable_grad():
            for _ in range(3):
                for x, y in zip(xs[:2], ys[:2]):
                    eager(x, y), compiled(x, y)
                eager(x2[0], y2[0]), compiled(x2[0], y2[0])
    assert _params_equal(m1, m2)
    import gc

    # (ev2 and the batch-2 entry hold the weight arrays too: they count as graddesc's own)
    for x, y in zip(xs, ys):
        eager(x, y), compiled(x, y)
    assert _core.deferred_pending()
    del ev2
    gc.collect()
    for x, y in zip(xs, ys):
        eager(x, y), compiled(x, y)
    assert _core.deferred_pending()
    del compiled  # its FastReplay applies the update as it goes
    gc.collect()
    assert not _core.deferred_pending()
    assert _params_equal(m1, m2)


def test_a_setting_rewritten_with_its_own_value_between_calls_keeps_the_one_call_path():
    """A ParamGroup write bumps its _version, which the one-call path compares instead of every
    setting: rewriting lr with the very object it holds (a scheduler that changes nothing) sends
    one call to the Python path, which rebuilds the one-call path; results stay eager's."""
    m1, m2 = _model([8, 5, 3], 0), _model([8, 5, 3], 0)
    o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.1), gd.optim.SGD(m2.parameters(), lr=0.1)
    lf = gd.nn.CrossEntropyLoss()
    eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
    xs, ys = _data([8, 5, 3], 2, "ce", 12)
    for k, (x, y) in enumerate(zip(xs, ys)):
        if k % 3 == 2:
            for o in (o1, o2):
                o.param_groups[0]["lr"] = o.param_groups[0]["lr"]
        if k == 7:
            for o in (o1, o2):
                o.param_groups[0]["lr"] = 0.05
        assert eager(x, y).item() == compiled(x, y).item()
    _assert_same(m1, m2)
    hits = compiled._fast.hits
    for x, y in zip(xs[:3], ys[:3]):
        eager(x, y), compiled(x, y)
    assert compiled._fast.hits == hits + 3  # (the one-call path again)


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [2, 33, 256])
def test_linear_relu_fused_at_batch_above_1_is_bitwise_equal(isa, threads, batch, dtype):
    """A ReLU after a Linear (batch > 1) becomes the product's epilogue (no act_fwd left); NaN
    and negative inputs come out as the separate ReLU writes them, on every instruction set."""
    if threads > 1 and not gd._core.has_openmp:
        pytest.skip("built without OpenMP: one thread only")
    previous = gd.get_num_threads()
    gd.set_num_threads(threads)
    try:
        sizes = [300, 256, 64, 5]

        def make():
            gd.manual_seed(3)
            return gd.nn.Sequential(gd.nn.Linear(300, 256, dtype=dtype), gd.nn.ReLU(),
                                    gd.nn.Linear(256, 64, dtype=dtype), gd.nn.ReLU(),
                                    gd.nn.Linear(64, 5, dtype=dtype))

        m1, m2 = make(), make()
        o1, o2 = gd.optim.SGD(m1.parameters(), lr=0.05), gd.optim.SGD(m2.parameters(), lr=0.05)
        lf = gd.nn.CrossEntropyLoss()
        eager, compiled = _step_fn(m1, o1, lf), gd.compile(_step_fn(m2, o2, lf))
        np_dtype = np.float64 if dtype == gd.float64 else np.float32
        xs, ys = _data(sizes, batch, "ce", 5, seed=9, dtype=np_dtype)
        xs[3].numpy()[0, :] = np.nan  # a NaN row: NaN through the ReLU, as eager
        for x, y in zip(xs, ys):
            l1, l2 = eager(x, y), compiled(x, y)
            np.testing.assert_array_equal(l1.detach().numpy(), l2.detach().numpy())
        (prog,) = [e.program for e in compiled._cache.values() if getattr(e, "program", None)]
        assert "act_fwd" not in prog.names()
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
    finally:
        gd.set_num_threads(previous)


def test_a_relu_whose_input_is_also_read_elsewhere_is_not_fused():
    """The pre-activation returned by the step (pinned) keeps its own ReLU pass."""
    def make():
        gd.manual_seed(4)
        return gd.nn.Linear(20, 16), gd.nn.Linear(16, 3)

    (a1, b1), (a2, b2) = make(), make()
    o1 = gd.optim.SGD(list(a1.parameters()) + list(b1.parameters()), lr=0.1)
    o2 = gd.optim.SGD(list(a2.parameters()) + list(b2.parameters()), lr=0.1)

    def step_fn(a, b, opt):
        def step(x, y):
            opt.zero_grad()
            pre = a(x)
            loss = gd.nn.functional.cross_entropy(b(gd.relu(pre)), y)
            loss.backward()
            opt.step()
            return loss, pre

        return step

    eager, compiled = step_fn(a1, b1, o1), gd.compile(step_fn(a2, b2, o2))
    xs, ys = _data([20, 16, 3], 8, "ce", 4)
    for x, y in zip(xs, ys):
        (l1, p1), (l2, p2) = eager(x, y), compiled(x, y)
        assert l1.item() == l2.item()
        np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())
    (prog,) = [e.program for e in compiled._cache.values() if getattr(e, "program", None)]
    assert "act_fwd" in prog.names()


def test_recorded_activation_alpha_defaults_are_the_bindings():
    # A call without alpha is recorded with the alpha the binding used (softplus's threshold is
    # 20, leaky_relu's slope 0.01): one table in the binding, read by gd.compile.
    from graddesc import _compile, _core

    x = np.linspace(-30, 30, 61)
    for name, (act_id, default) in _core.ACTIVATIONS.items():
        if name == "log":
            continue
        got_id, alpha = _compile._act({"name": name, "alpha": None})
        assert got_id == act_id
        np.testing.assert_array_equal(_core.activation_forward(name, x),
                                      _core.activation_forward(name, x, alpha))
    assert _compile._act({"name": "softplus", "alpha": None})[1] == 20.0
    assert _compile._act({"name": "leaky_relu", "alpha": 0.2})[1] == 0.2
