"""gd.compile captures what users put in a training step (issue 15, item 3): every optimizer and
its options, a diagonal or matrix learning rate, clip_grad_norm_ / clip_grad_value_,
zero_grad(set_to_none=False), micro-batches accumulated inside the step, a shared weight, a
frozen parameter, the nearest-neighbour model and an explicit weight penalty.

Each case runs one step eagerly and compiled, side by side, over data whose scale changes
between calls (so that clipping switches on and off), and asserts: the compiled step records
and replays with no fallback (pytest turns the fallback warning into an error; stats["eager"]
stays 0) and every loss, parameter, gradient and optimizer state is bitwise equal to eager.
With torch installed, the compiled trajectories are checked against PyTorch's too."""

from __future__ import annotations


import numpy as np
import pytest

import graddesc as gd

SIZES = [6, 5, 4]
STEPS = 7
# the input scale per call: clipping switches on and off (and so does the branch in the kernel)
SCALES = [1.0, 1.0, 40.0, 0.01, 40.0, 1.0, 0.01]


def _mlp(seed, dtype):
    gd.manual_seed(seed)
    return gd.nn.Sequential(gd.nn.Linear(SIZES[0], SIZES[1], dtype=dtype), gd.nn.Tanh(),
                            gd.nn.Linear(SIZES[1], SIZES[2], dtype=dtype))


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _spd(n, seed, dtype):
    """A symmetric positive definite (n, n) learning rate of moderate size."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n))
    return (0.02 * (b @ b.T) / n + 0.05 * np.eye(n)).astype(dtype)


def _data(n, batch, dtype, seed=7):
    rng = np.random.default_rng(seed)
    xs = [gd.tensor((s * rng.standard_normal((batch, SIZES[0]))).astype(dtype))
          for s in SCALES[:n]]
    ys = [gd.tensor(rng.integers(0, SIZES[-1], batch)) for _ in range(n)]
    return xs, ys


# ---- the cases: each builds (model, optimizer, step(x, y) -> loss) from a seed ---------------
def _plain(opt_name, **kw):
    def build(dtype):
        model = _mlp(0, dtype)
        opt = getattr(gd.optim, opt_name)(model.parameters(), **kw)
        lf = gd.nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad()
            loss = lf(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return model, opt, step

    return build


def _lr_array(kind):
    def build(dtype):
        model = _mlp(0, dtype)
        n = _n_params(model)
        np_dtype = np.float64 if dtype == gd.float64 else np.float32
        lr = np.linspace(0.01, 0.2, n) if kind == "diag" else _spd(n, 3, np.float64)
        opt = gd.optim.SGD(model.parameters(), lr=lr.astype(np_dtype), momentum=0.5)
        lf = gd.nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad()
            loss = lf(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return model, opt, step

    return build


def _clip(kind, arg, opt_name="SGD", **kw):
    def build(dtype):
        model = _mlp(0, dtype)
        opt = getattr(gd.optim, opt_name)(model.parameters(), lr=0.1, **kw)
        lf = gd.nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad()
            loss = lf(model(x), y)
            loss.backward()
            if kind == "norm":
                gd.nn.utils.clip_grad_norm_(model.parameters(), 0.5, norm_type=arg)
            else:
                gd.nn.utils.clip_grad_value_(model.parameters(), arg)
            opt.step()
            return loss

        return model, opt, step

    return build


def _zero_grad(set_to_none, on_module=False, opt_name="SGD", **kw):
    def build(dtype):
        model = _mlp(0, dtype)
        opt = getattr(gd.optim, opt_name)(model.parameters(), lr=0.05, **kw)
        lf = gd.nn.CrossEntropyLoss()

        def step(x, y):
            if on_module:
                model.zero_grad(set_to_none=set_to_none)
            else:
                opt.zero_grad(set_to_none=set_to_none)
            loss = lf(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return model, opt, step

    return build


def _micro_batches(set_to_none, opt_name="SGD", **kw):
    """Two halves of the batch backpropagated one after the other, then one step."""
    def build(dtype):
        model = _mlp(0, dtype)
        opt = getattr(gd.optim, opt_name)(model.parameters(), lr=0.05, **kw)
        lf = gd.nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad(set_to_none=set_to_none)
            half = x.shape[0] // 2
            total = None
            for part in (slice(0, half), slice(half, None)):
                loss = lf(model(x[part]), y[part]) * 0.5
                loss.backward()
                total = loss if total is None else total + loss
            opt.step()
            return total

        return model, opt, step

    return build


def _shared(dtype):
    """One (5, 5) weight used by two layers (its gradient sums two contributions)."""
    gd.manual_seed(0)
    first = gd.nn.Linear(SIZES[0], 5, dtype=dtype)
    a = gd.nn.Linear(5, 5, dtype=dtype)
    b = gd.nn.Linear(5, 5, dtype=dtype)
    b.weight = a.weight
    head = gd.nn.Linear(5, SIZES[-1], dtype=dtype)
    model = gd.nn.Sequential(first, gd.nn.Tanh(), a, gd.nn.Tanh(), b, gd.nn.Tanh(), head)
    assert sum(1 for _ in model.parameters()) == 7  # (the shared weight once)
    opt = gd.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lf = gd.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = lf(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def _frozen(all_params):
    def build(dtype):
        model = _mlp(0, dtype)
        model[0].weight.requires_grad_(False)
        params = model.parameters() if all_params else \
            [p for p in model.parameters() if p.requires_grad]
        opt = gd.optim.Adam(params, lr=0.01)
        lf = gd.nn.CrossEntropyLoss()

        def step(x, y):
            opt.zero_grad()
            loss = lf(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return model, opt, step

    return build


def _nearest(dtype):
    gd.manual_seed(0)
    model = gd.nn.NearestNeighbor(3, SIZES[0], dtype=dtype)
    opt = gd.optim.SGD(model.parameters(), lr=0.05)

    def step(x, y):
        opt.zero_grad()
        loss = model.distances(x).min(dim=1).values.mean()
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def _penalty(opt_name="SGD", **kw):
    def build(dtype):
        model = _mlp(0, dtype)
        opt = getattr(gd.optim, opt_name)(model.parameters(), lr=0.05, **kw)
        lf = gd.nn.CrossEntropyLoss()
        lam = 1e-2

        def step(x, y):
            opt.zero_grad()
            W = model[0].weight
            loss = lf(model(x), y) + lam * (W * W).sum()
            loss.backward()
            opt.step()
            return loss

        return model, opt, step

    return build


CASES = {
    "sgd": _plain("SGD", lr=0.1),
    "sgd-momentum": _plain("SGD", lr=0.1, momentum=0.9),
    "sgd-nesterov-wd": _plain("SGD", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "sgd-dampening-maximize": _plain("SGD", lr=0.01, momentum=0.5, dampening=0.3,
                                     maximize=True),
    "sgd-diagonal-lr": _lr_array("diag"),
    "sgd-matrix-lr": _lr_array("matrix"),
    "adam": _plain("Adam", lr=0.01),
    "adam-amsgrad-wd": _plain("Adam", lr=0.01, amsgrad=True, weight_decay=1e-2),
    "adam-maximize": _plain("Adam", lr=0.01, maximize=True),
    "adamw": _plain("AdamW", lr=0.01, weight_decay=0.1),
    "adamw-amsgrad": _plain("AdamW", lr=0.01, amsgrad=True),
    "rmsprop": _plain("RMSprop", lr=0.01),
    "rmsprop-momentum": _plain("RMSprop", lr=0.01, momentum=0.9),
    "rmsprop-centered": _plain("RMSprop", lr=0.01, centered=True),
    "rmsprop-centered-momentum-wd": _plain("RMSprop", lr=0.01, centered=True, momentum=0.5,
                                           weight_decay=1e-2, alpha=0.9),
    "rmsprop-maximize": _plain("RMSprop", lr=0.01, maximize=True),
    "adagrad": _plain("Adagrad", lr=0.1),
    "adagrad-lr-decay-wd": _plain("Adagrad", lr=0.1, lr_decay=0.01, weight_decay=1e-2),
    "adagrad-initial-accumulator": _plain("Adagrad", lr=0.1, initial_accumulator_value=0.5,
                                          eps=1e-6),
    "adagrad-maximize": _plain("Adagrad", lr=0.1, maximize=True),
    "clip-norm-2": _clip("norm", 2.0, momentum=0.9),
    "clip-norm-1": _clip("norm", 1.0),
    "clip-norm-inf-adam": _clip("norm", float("inf"), "Adam"),
    "clip-value": _clip("value", 0.05, momentum=0.9),
    "clip-value-rmsprop": _clip("value", 0.02, "RMSprop"),
    "zero-grad-to-zeros": _zero_grad(False),
    "zero-grad-to-zeros-momentum": _zero_grad(False, momentum=0.9),
    "zero-grad-to-none": _zero_grad(True),
    "module-zero-grad-to-zeros": _zero_grad(False, on_module=True, opt_name="Adam"),
    "micro-batches": _micro_batches(True),
    "micro-batches-to-zeros-adagrad": _micro_batches(False, "Adagrad"),
    "shared-weight": _shared,
    "frozen-in-optimizer": _frozen(True),
    "frozen-left-out": _frozen(False),
    "nearest-neighbour": _nearest,
    "penalty": _penalty(),
    "penalty-rmsprop": _penalty("RMSprop", momentum=0.5),
}


def _state_arrays(opt):
    out = []
    for p in (p for g in opt.param_groups for p in g["params"]):
        for name, v in sorted(opt.state[p].items()):
            if isinstance(v, gd.Tensor):
                out.append((name, v.numpy()))
    return out


def _assert_bits(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: max |diff| {np.max(np.abs(a - b))}"


def _run_side_by_side(case, dtype):
    np_dtype = np.float64 if dtype == gd.float64 else np.float32
    m1, o1, eager = CASES[case](dtype)
    m2, o2, fn = CASES[case](dtype)
    compiled = gd.compile(fn)
    xs, ys = _data(STEPS, 8, np_dtype)
    for k, (x, y) in enumerate(zip(xs, ys)):
        l1, l2 = eager(x, y), compiled(x, y)
        _assert_bits(l1.detach().numpy(), l2.detach().numpy(), f"loss of call {k}")
        for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
            _assert_bits(p1.detach().numpy(), p2.detach().numpy(), f"{n} after call {k}")
            assert (p1.grad is None) == (p2.grad is None), n
            if p1.grad is not None:
                _assert_bits(p1.grad.numpy(), p2.grad.numpy(), f"{n}.grad after call {k}")
        for (name, a), (_, b) in zip(_state_arrays(o1), _state_arrays(o2)):
            _assert_bits(a, b, f"optimizer state {name} after call {k}")
    return compiled.stats


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_step_captures_and_equals_eager_bitwise(case, dtype):
    stats = _run_side_by_side(case, dtype)
    assert stats["eager"] == 0, stats
    assert stats["replayed"] >= STEPS - 2, stats


def test_clipping_switches_on_and_off_across_these_calls():
    """The scales in SCALES really make clip_grad_norm_ scale some calls and not others (so
    the cases above check that a replay repeats the test, not its recorded outcome)."""
    model, opt, _ = _clip("norm", 2.0)(gd.float32)
    lf = gd.nn.CrossEntropyLoss()
    xs, ys = _data(STEPS, 8, np.float32)
    clipped = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        lf(model(x), y).backward()
        clipped.append(gd.nn.utils.clip_grad_norm_(model.parameters(), 0.5).item() > 0.5)
    assert any(clipped) and not all(clipped)


def test_clip_grad_value_clamps_every_gradient_in_place():
    rng = np.random.default_rng(0)
    ps = [gd.tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 4), (5,))]
    grads = [rng.standard_normal(p.shape) * 3 for p in ps]
    grads[1][2] = np.nan
    for p, g in zip(ps, grads):
        p.grad = gd.tensor(g.copy())
    held = ps[0].grad
    assert gd.nn.utils.clip_grad_value_(ps, 1.5) is None
    assert ps[0].grad is held  # in place
    for p, g in zip(ps, grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -1.5, 1.5))
    one = gd.tensor([1.0, -4.0], requires_grad=True)
    one.grad = gd.tensor([3.0, -3.0])
    gd.nn.utils.clip_grad_value_(one, 2)  # a single tensor, an int clip value
    np.testing.assert_array_equal(one.grad.numpy(), [2.0, -2.0])
    with pytest.raises(ValueError, match="clip_value"):
        gd.nn.utils.clip_grad_value_(ps, -1.0)


def test_zero_grad_to_zeros_keeps_the_gradient_tensor_and_a_held_one_sees_the_new_values():
    """set_to_none=False writes zeros into the same .grad tensor each call (eager and compiled
    alike), so a .grad held across calls sees the next call's gradient."""
    m1, o1, eager = _zero_grad(False)(gd.float32)
    m2, o2, fn = _zero_grad(False)(gd.float32)
    compiled = gd.compile(fn)
    xs, ys = _data(STEPS, 8, np.float32)
    held1 = held2 = None
    for x, y in zip(xs, ys):
        eager(x, y)
        compiled(x, y)
        p1, p2 = m1[0].weight, m2[0].weight
        if held1 is None:
            held1, held2 = p1.grad, p2.grad
        assert p1.grad is held1 and p2.grad is held2
        _assert_bits(held1.numpy(), held2.numpy(), "held .grad")
    assert compiled.stats["eager"] == 0 and compiled.stats["replayed"] >= STEPS - 2
    # the steady state takes the one-call path, which checks those .grad tensors itself
    assert compiled._fast is not None and compiled._fast.hits >= STEPS - 4


def test_a_gradient_replaced_between_calls_records_again_and_stays_equal():
    """With set_to_none=False the program writes into the .grad it recorded; a caller who sets
    .grad to None or to another tensor between calls gets a new recording, as eager would."""
    m1, o1, eager = _zero_grad(False, momentum=0.9)(gd.float64)
    m2, o2, fn = _zero_grad(False, momentum=0.9)(gd.float64)
    compiled = gd.compile(fn)
    xs, ys = _data(STEPS, 8, np.float64)
    for k, (x, y) in enumerate(zip(xs, ys)):
        if k == 3:
            for m in (m1, m2):
                m[0].weight.grad = None
        if k == 5:
            for m in (m1, m2):
                m[2].bias.grad = gd.ones(SIZES[-1], dtype=gd.float64)
        _assert_bits(eager(x, y).detach().numpy(), compiled(x, y).detach().numpy(), f"loss {k}")
        for (n, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
            _assert_bits(p1.detach().numpy(), p2.detach().numpy(), n)
            _assert_bits(p1.grad.numpy(), p2.grad.numpy(), n + ".grad")
    assert compiled.stats["eager"] == 0
    assert compiled.stats["recorded"] >= 3  # the first two calls, then after each change


def test_a_new_learning_rate_for_an_array_lr_group_records_again():
    m1, o1, eager = _lr_array("diag")(gd.float64)
    m2, o2, fn = _lr_array("diag")(gd.float64)
    compiled = gd.compile(fn)
    xs, ys = _data(STEPS, 8, np.float64)
    for k, (x, y) in enumerate(zip(xs, ys)):
        if k == 3:  # a new array, then a plain number: neither may reuse the old program
            for o in (o1, o2):
                o.param_groups[0]["lr"] = np.full(_n_params(m1), 0.03)
        if k == 5:
            for o in (o1, o2):
                o.param_groups[0]["lr"] = 0.07
        _assert_bits(eager(x, y).detach().numpy(), compiled(x, y).detach().numpy(), f"loss {k}")
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            _assert_bits(p1.detach().numpy(), p2.detach().numpy(), "param")
    assert compiled.stats["eager"] == 0


def test_steps_that_still_cannot_be_captured_fall_back_with_one_warning():
    """error_if_nonfinite decides in Python: one warning, then eager results."""
    m1, o1, _ = _plain("SGD", lr=0.1)(gd.float32)
    m2, o2, _ = _plain("SGD", lr=0.1)(gd.float32)
    lf = gd.nn.CrossEntropyLoss()

    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = lf(model(x), y)
            loss.backward()
            gd.nn.utils.clip_grad_norm_(model.parameters(), 0.5, error_if_nonfinite=True)
            opt.step()
            return loss
        return step

    eager, compiled = make(m1, o1), gd.compile(make(m2, o2))
    xs, ys = _data(STEPS, 8, np.float32)
    with pytest.warns(RuntimeWarning, match="graddesc.compile"):
        out = [compiled(x, y) for x, y in zip(xs, ys)]
    for (x, y), l2 in zip(zip(xs, ys), out):
        _assert_bits(eager(x, y).detach().numpy(), l2.detach().numpy(), "loss")
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        _assert_bits(p1.detach().numpy(), p2.detach().numpy(), "param")
    assert compiled.stats["replayed"] == 0


def test_a_grad_assigned_inside_the_step_falls_back_with_one_warning():
    """`w.grad = zeros` inside the step, then zeroed in place and accumulated into: eager makes a
    new .grad tensor each call, which a replay would not, so the step runs eagerly."""
    def body(w, x, y):
        w.grad = gd.zeros_like(w)
        m = gd.nn.Module()
        m.w = w
        m.zero_grad(set_to_none=False)
        loss = gd.nn.functional.mse_loss(gd.nn.functional.linear(x, w), y)
        loss.backward()
        gd.nn.utils.clip_grad_value_([w], 0.1)
        return loss

    def make():
        gd.manual_seed(0)
        return gd.nn.Parameter(gd.randn(4, 4) * 0.3)

    w_e, w_c = make(), make()
    fn = gd.compile(lambda x, y: body(w_c, x, y))
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match="assigning a tensor to .grad"):
        for _ in range(4):
            x = gd.tensor(rng.standard_normal((3, 4)).astype(np.float32))
            y = gd.tensor(rng.standard_normal((3, 4)).astype(np.float32))
            held = w_c.grad
            _assert_bits(body(w_e, x, y).detach().numpy(), fn(x, y).detach().numpy(), "loss")
            assert w_c.grad is not held
            _assert_bits(w_e.grad.numpy(), w_c.grad.numpy(), "grad")
    assert fn.stats["replayed"] == 0


# ---- PyTorch as the oracle of the compiled trajectories --------------------------------------
TORCH_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}, None),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 1e-2}, None),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}, None),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 1e-2}, None),
    ("RMSprop", {"lr": 0.01}, ("value", 0.05)),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, ("norm", 0.5)),
]


@pytest.mark.parametrize("opt_name, kw, clip", TORCH_CASES)
def test_compiled_trajectory_matches_torch(opt_name, kw, clip):
    torch = pytest.importorskip("torch")
    model = _mlp(0, gd.float64)
    tmodel = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.Tanh(),
                                 torch.nn.Linear(SIZES[1], SIZES[2])).double()
    with torch.no_grad():
        for tp, p in zip(tmodel.parameters(), model.parameters()):
            tp.copy_(torch.tensor(p.detach().numpy()))
    opt = getattr(gd.optim, opt_name)(model.parameters(), **kw)
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), **kw)
    lf, tlf = gd.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()

    def clip_gd():
        if clip and clip[0] == "norm":
            gd.nn.utils.clip_grad_norm_(model.parameters(), clip[1])
        elif clip:
            gd.nn.utils.clip_grad_value_(model.parameters(), clip[1])

    @gd.compile
    def step(x, y):
        opt.zero_grad()
        loss = lf(model(x), y)
        loss.backward()
        clip_gd()
        opt.step()
        return loss

    xs, ys = _data(STEPS, 8, np.float64)
    for x, y in zip(xs, ys):
        loss = step(x, y)
        topt.zero_grad()
        tloss = tlf(tmodel(torch.tensor(x.numpy())), torch.tensor(y.numpy()))
        tloss.backward()
        if clip and clip[0] == "norm":
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip[1])
        elif clip:
            torch.nn.utils.clip_grad_value_(tmodel.parameters(), clip[1])
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-9, atol=1e-12)
    for p, tp in zip(model.parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
    assert step.stats["eager"] == 0 and step.stats["replayed"] >= STEPS - 2
