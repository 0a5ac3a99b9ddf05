"""Hand-written parameter updates inside a gd.compile step: `p -= lr * p.grad` under no_grad
(the lecture's own loop), `p.add_(g, alpha=-lr)`, `p.data -= ...`, `p.grad.zero_()` after the
update, weight clipping with `clamp_`, gradients that accumulate across calls. The in-place
tensor methods write through the elementwise kernel, so a recording sees them and a replay
repeats them; every case is checked bitwise against the same step run eagerly, with data that
change between calls. The kernel path of each in-place method is checked against NumPy."""

import warnings

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F


def _model(dtype, seed=0):
    gd.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _sgd_zero_first(m, x, y):
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p -= 0.1 * p.grad
    return loss


def _sgd_zero_after(m, x, y):  # the lecture's order: the gradient is cleared after the update
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p -= 0.1 * p.grad
            p.grad.zero_()
    return loss


def _add_alpha(m, x, y):
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p.add_(p.grad, alpha=-0.1)
    return loss


def _data_update(m, x, y):  # the old idiom: no no_grad, through .data
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    for p in m.parameters():
        p.data -= 0.1 * p.grad
    return loss


def _grad_to_none(m, x, y):
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p.sub_(0.1 * p.grad)
            p.grad = None
    return loss


def _clipped(m, x, y):  # a WGAN-style critic: SGD, then every weight clipped to [-c, c]
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p.sub_(p.grad * 0.5)
            p.clamp_(-0.3, 0.3)
    return loss


def _buffer_momentum(m, x, y):  # momentum kept in module buffers, updated in place
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for name, p in m.named_parameters():
            b = m.get_buffer("mom_" + name.replace(".", "_"))
            b.mul_(0.9).add_(p.grad)
            p.sub_(b * 0.05)
    return loss


def _no_clear(m, x, y):  # never clears .grad: eager accumulates across calls, so does a replay
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p.sub_(0.01 * p.grad)
    return loss


def _fill_then_copy(m, x, y):  # fill_ and copy_ of a whole parameter inside the step
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        w, b = m[2].weight, m[2].bias
        w.copy_(w - 0.1 * w.grad)
        b.fill_(0.25)
        m[0].bias.copy_(m[0].bias * 0.5)  # (from an expression of itself)
    return loss


STEPS = {"zero_first": _sgd_zero_first, "zero_after": _sgd_zero_after,
         "add_alpha": _add_alpha, "data": _data_update, "grad_none": _grad_to_none,
         "clipped": _clipped, "buffer_momentum": _buffer_momentum, "no_clear": _no_clear,
         "fill_copy": _fill_then_copy}


def _with_buffers(m):
    for name, p in list(m.named_parameters()):
        m.register_buffer("mom_" + name.replace(".", "_"), gd.zeros_like(p))
    return m


def _run(step, dtype, compiled, calls=7):
    m = _with_buffers(_model(dtype))
    def f(x, y):
        return step(m, x, y)

    if compiled:
        f = gd.compile(f)
    rng = np.random.default_rng(3)
    losses = []
    npdt = np.float32 if dtype == gd.float32 else np.float64
    for k in range(calls):
        scale = 1.0 if k % 2 else 40.0  # large inputs make the clipping bind, then not
        x = gd.tensor((scale * rng.standard_normal((5, 4))).astype(npdt))
        y = gd.tensor(rng.standard_normal((5, 3)).astype(npdt))
        losses.append(f(x, y).item())
    return m, losses, f


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
@pytest.mark.parametrize("name", list(STEPS))
def test_handwritten_update_is_captured_and_equals_eager(name, dtype):
    step = STEPS[name]
    m1, l1, _ = _run(step, dtype, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        m2, l2, f = _run(step, dtype, True)
    assert f.stats["eager"] == 0
    assert f.stats["replayed"] >= 5, f.stats
    assert l1 == l2
    for (n, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert (p1.grad is None) == (p2.grad is None)
        if p1.grad is not None:
            np.testing.assert_array_equal(p1.grad.numpy(), p2.grad.numpy())


def test_clipping_binds_on_replay():
    """The clamp_ bound is reached on some calls and not on others (an oracle in NumPy)."""
    m, _, f = _run(_clipped, gd.float64, True)
    w = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert np.abs(w).max() <= 0.3
    assert (np.abs(w) == 0.3).any()  # some weight was clipped by a replay


def test_replay_bumps_the_version_of_updated_parameters():
    m = _model(gd.float32)
    f = gd.compile(lambda x, y: _sgd_zero_first(m, x, y))
    x, y = gd.ones(5, 4), gd.zeros(5, 3)
    for _ in range(3):
        f(x, y)
    assert f.stats["replayed"] >= 1
    w = m[0].weight
    # a graph that saved w before a replay updated it: backward must refuse, as in eager
    out = (w * w).sum()
    v = w._version
    f(x, y)
    assert w._version > v
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_a_tensor_outside_the_step_written_in_place_falls_back_and_stays_right():
    """Momentum in a dict of plain tensors the step closes over: a replay could not see the
    dict's entries replaced, so the step runs eagerly (one warning), with eager's results."""
    results = []
    for compiled in (False, True):
        m = _model(gd.float32)
        bufs = {p: gd.zeros_like(p) for p in m.parameters()}

        def step(x, y, m=m, bufs=bufs):
            m.zero_grad()
            loss = F.mse_loss(m(x), y)
            loss.backward()
            with gd.no_grad():
                for p in m.parameters():
                    bufs[p].mul_(0.9).add_(p.grad)
                    p.sub_(bufs[p] * 0.1)
            return loss

        f = gd.compile(step) if compiled else step
        x, y = gd.ones(5, 4), gd.zeros(5, 3)
        if compiled:
            with pytest.warns(RuntimeWarning, match="outside the recorded kernels"):
                for _ in range(4):
                    f(x, y)
        else:
            for _ in range(4):
                f(x, y)
        results.append([p.detach().numpy().copy() for p in m.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_grad_held_by_the_caller_sees_the_in_place_writes():
    """zero_after: .grad is one tensor across calls, written in place; a reference the caller
    keeps sees what eager shows it (accumulated, then zeroed)."""
    m = _model(gd.float64)
    f = gd.compile(lambda x, y: _sgd_zero_after(m, x, y))
    x, y = gd.ones(5, 4, dtype=gd.float64), gd.zeros(5, 3, dtype=gd.float64)
    for _ in range(4):
        f(x, y)
    g = m[0].weight.grad
    f(x, y)
    assert m[0].weight.grad is g
    np.testing.assert_array_equal(g.numpy(), np.zeros_like(g.numpy()))


# ---- the kernel path of the in-place methods against NumPy --------------------------------
def _np(t):
    return t.numpy().copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, ufunc", [("add_", np.add), ("sub_", np.subtract),
                                       ("mul_", np.multiply), ("div_", np.divide)])
def test_inplace_arithmetic_matches_numpy(op, ufunc, dtype):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 6)).astype(dtype)
    base[0, 0], base[0, 1], base[1, 2] = np.nan, np.inf, 0.0
    others = [0.1, 3, True, -2.5e-3, rng.standard_normal(6).astype(dtype),
              rng.standard_normal((4, 1)).astype(dtype), np.zeros((4, 6), dtype),
              rng.standard_normal((4, 6)).astype(dtype)]
    for other in others:
        t = gd.tensor(base.copy())
        getattr(t, op)(gd.tensor(other) if isinstance(other, np.ndarray) else other)
        expect = base.copy()
        with np.errstate(all="ignore"):
            ufunc(expect, other, out=expect)
        np.testing.assert_array_equal(_np(t), expect, err_msg=repr(other))
    # a strided (transposed, sliced) target, and the tensor with itself
    t = gd.tensor(base.copy())
    view = t.t()[::2]
    getattr(view, op)(gd.tensor(np.full(4, 0.5, dtype)))
    expect = base.copy()
    ev = expect.T[::2]
    with np.errstate(all="ignore"):
        ufunc(ev, np.full(4, 0.5, dtype), out=ev)
    np.testing.assert_array_equal(_np(t), expect)
    t = gd.tensor(base.copy())
    getattr(t, op)(t)
    expect = base.copy()
    with np.errstate(all="ignore"):
        ufunc(expect, base, out=expect)
    np.testing.assert_array_equal(_np(t), expect)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_overlapping_shifted_view_keeps_numpy_semantics(dtype):
    a = np.arange(10, dtype=dtype)
    t = gd.tensor(a.copy())
    t[1:].add_(t[:-1])  # NumPy buffers the overlapping operand
    expect = a.copy()
    np.add(expect[1:], expect[:-1], out=expect[1:])
    np.testing.assert_array_equal(_np(t), expect)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_alpha_fill_copy_clamp_match_numpy(dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal((3, 5)).astype(dtype)
    t = gd.tensor(a.copy())
    t.add_(gd.tensor(b), alpha=-0.3)
    np.testing.assert_array_equal(_np(t), a + b * dtype(-0.3))
    t.fill_(1.5)
    np.testing.assert_array_equal(_np(t), np.full_like(a, 1.5))
    t.zero_()
    np.testing.assert_array_equal(_np(t), np.zeros_like(a))
    t.fill_(gd.tensor(np.array(2.0, dtype)))  # a 0-d tensor value
    np.testing.assert_array_equal(_np(t), np.full_like(a, 2.0))
    t.copy_(gd.tensor(b[0]))  # broadcast along the rows
    np.testing.assert_array_equal(_np(t), np.broadcast_to(b[0], a.shape))
    t.copy_(gd.tensor(a))
    t.clamp_(-0.5, 0.25)
    np.testing.assert_array_equal(_np(t), np.clip(a, -0.5, 0.25))
    t.copy_(gd.tensor(a))
    t.clamp_(max=0.0)
    np.testing.assert_array_equal(_np(t), np.minimum(a, 0.0))
    t.copy_(gd.tensor(a))
    lo = rng.standard_normal(5).astype(dtype)
    t.clamp_(min=gd.tensor(lo))
    np.testing.assert_array_equal(_np(t), np.maximum(a, lo))
    # another dtype: NumPy's cast, as before
    t.copy_(gd.tensor(b.astype(np.float64 if dtype == np.float32 else np.float32)))
    np.testing.assert_array_equal(_np(t), b.astype(np.float64 if dtype == np.float32
                                                   else np.float32).astype(dtype))


def test_inplace_kernel_path_bumps_versions_and_checks_saved_tensors():
    w = gd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = w * 2
    out = (h * h).sum()  # saves h
    v = h._version
    with gd.no_grad():
        h.add_(1.0)
    assert h._version == v + 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_inplace_on_integer_and_read_only_tensors_keep_their_errors():
    t = gd.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="div_"):
        t.div_(2)
    t.add_(2)
    np.testing.assert_array_equal(t.numpy(), [3, 4, 5])
    e = gd.tensor([1.0, 2.0]).expand(3, 2)
    with pytest.raises(RuntimeError, match="read-only"):
        e.add_(1.0)


# ---- hand-written plain SGD folded into sgd instructions (and fused with the backward) ------
def _program_names(f):
    entries = [e for e in f._cache.values() if getattr(e, "program", None) is not None]
    assert len(entries) == 1
    return entries[0].program.names()


@pytest.mark.parametrize("name", ["zero_first", "add_alpha", "data", "grad_none"])
@pytest.mark.parametrize("batch", [1, 4])
def test_plain_updates_become_the_fused_backward_update(name, batch):
    m = _model(gd.float32)
    f = gd.compile(lambda x, y: STEPS[name](m, x, y))
    rng = np.random.default_rng(0)
    for _ in range(3):
        f(gd.tensor(rng.standard_normal((batch, 4)).astype(np.float32)),
          gd.tensor(rng.standard_normal((batch, 3)).astype(np.float32)))
    names = _program_names(f)
    assert names.count("linear_bwd_sgd") == 2, names
    assert "ew" not in names and "ew_fused" not in names, names


def _reused_product(m, x, y):
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    steps = []
    with gd.no_grad():
        for p in m.parameters():
            u = 0.1 * p.grad
            p -= u
            steps.append(u.abs().sum())
    return loss, gd.stack(steps)


def test_a_product_read_again_stays_an_instruction_and_equals_eager():
    out = []
    for compiled in (False, True):
        m = _model(gd.float64)
        f = gd.compile(lambda x, y, m=m: _reused_product(m, x, y)) if compiled else \
            (lambda x, y, m=m: _reused_product(m, x, y))
        rng = np.random.default_rng(2)
        res = []
        for _ in range(5):
            x = gd.tensor(rng.standard_normal((3, 4)))
            y = gd.tensor(rng.standard_normal((3, 3)))
            loss, s = f(x, y)
            res.append((loss.item(), s.numpy().copy()))
        out.append((res, [p.detach().numpy().copy() for p in m.parameters()]))
        if compiled:
            assert f.stats["replayed"] >= 3
            assert "ew" in _program_names(f) or "ew_fused" in _program_names(f)
    (r1, p1), (r2, p2) = out
    for (l1, s1), (l2, s2) in zip(r1, r2):
        assert l1 == l2
        np.testing.assert_array_equal(s1, s2)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


def _sgd_linear(extra):
    """A Linear(4, 3) with optim.SGD and a step returning (loss, weight.grad.sum()), with a
    hand-written extra update of every parameter after opt.step() when `extra`."""
    gd.manual_seed(0)
    m = nn.Linear(4, 3)
    opt = gd.optim.SGD(m.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        if extra:
            with gd.no_grad():
                for p in m.parameters():
                    p -= 0.01 * p.grad
        return loss, m.weight.grad.sum()

    return m, opt, step


def _eager_and_compiled(extra, batch, new_lr_at=None):
    """Per run (eager, then compiled): [(loss, grad sum)] over six calls, the parameters, and
    the compiled function."""
    runs = []
    for compiled in (False, True):
        m, opt, step = _sgd_linear(extra)
        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(0)
        res = []
        for k in range(6):
            if k == new_lr_at:
                opt.param_groups[0]["lr"] = 0.05
            x = gd.tensor(rng.standard_normal((batch, 4)).astype(np.float32))
            y = gd.tensor(rng.standard_normal((batch, 3)).astype(np.float32))
            loss, gsum = f(x, y)
            res.append((loss.item(), gsum.item()))
        runs.append((res, [p.detach().numpy().copy() for p in m.parameters()], f))
    return runs


def test_an_extra_update_of_an_optimizer_parameter_keeps_its_own_rate():
    """The optimizer's lr changes between calls (patched into the replay); the hand-written
    extra step on the same parameters must keep its constant 0.01."""
    (r1, p1, _), (r2, p2, f) = _eager_and_compiled(True, 2, new_lr_at=3)
    assert f.stats["replayed"] >= 3
    assert r1 == r2
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch", [1, 8])
def test_a_gradient_read_by_a_kernel_after_the_fused_update_is_stored(batch):
    """Regression: a batch <= 32 backward fused with its SGD update stores dW only when Python
    reads .grad; a kernel of the same step reading .grad after the update (here its sum) read a
    stale dW on every replay."""
    (r1, p1, _), (r2, p2, f) = _eager_and_compiled(False, batch)
    assert f.stats["replayed"] >= 3
    assert "linear_bwd_sgd" in _program_names(f)
    assert r1 == r2
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


# ---- item assignment with basic indices, relu_ under no_grad: kernel writes, captured ------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_basic_index_assignment_matches_numpy(dtype):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((4, 5, 3)).astype(dtype)
    cases = [((0,), 1.5), ((slice(None), 2), -2.0), ((Ellipsis, 1), 0.25),
             ((1, slice(1, 4), 0), rng.standard_normal(3).astype(dtype)),
             ((slice(None, None, 2),), rng.standard_normal((5, 3)).astype(dtype)),
             ((2, 3, 1), 7.0), ((None, 0), 3.0), ((-1, -2), rng.standard_normal(1).astype(dtype))]
    for idx, v in cases:
        t = gd.tensor(a.copy())
        vv = gd.tensor(v) if isinstance(v, np.ndarray) else v
        t[idx] = vv
        expect = a.copy()
        expect[idx] = v
        np.testing.assert_array_equal(t.numpy(), expect, err_msg=repr(idx))
    t = gd.tensor(a.copy())
    with pytest.raises(IndexError):
        t[4] = 0.0
    v = t._version
    t[0] = 1.0
    assert t._version == v + 1


def _zero_row_and_relu(m, x, y):
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p -= 0.1 * p.grad
        m[0].weight[0] = 0.0  # a pruned unit, kept at zero
        m[2].bias[1:] = m[2].bias[:-1]  # a shift within itself: overlapping, NumPy copies first
        m[0].bias.relu_()
    return loss


def test_item_assignment_and_relu_in_place_are_captured():
    """w[0] = 0 and relu_ write through kernels (captured); the overlapping slice copy keeps
    NumPy (it falls back), so the step runs eagerly with eager's results."""
    STEPS["zero_row"] = _zero_row_and_relu
    try:
        m1, l1, _ = _run(_zero_row_and_relu, gd.float32, False)
        with pytest.warns(RuntimeWarning, match="graddesc.compile"):
            m2, l2, f = _run(_zero_row_and_relu, gd.float32, True)
    finally:
        del STEPS["zero_row"]
    assert l1 == l2
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def _zero_row_only(m, x, y):
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for p in m.parameters():
            p -= 0.1 * p.grad
        m[0].weight[0] = 0.0
        m[2].bias[1:] = 0.5
        m[0].bias.relu_()
    return loss


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_basic_item_assignment_in_a_step_is_captured(dtype):
    m1, l1, _ = _run(_zero_row_only, dtype, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m2, l2, f = _run(_zero_row_only, dtype, True)
    assert f.stats["eager"] == 0 and f.stats["replayed"] >= 5
    assert l1 == l2
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    assert (m2[0].weight.detach().numpy()[0] == 0).all()
