"""graddesc.optim: the optimizers, their fused C++ kernels (graddesc._core.*_step), LBFGS,
ZerothOrder and the learning-rate schedulers.

Two independent oracles for every update rule:
- hand-written NumPy references below (ref_sgd, ref_adam, ...), written from the textbook form of
  each rule (Adam with m_hat / v_hat, not PyTorch's order of operations), so the tests keep their
  meaning without PyTorch;
- PyTorch itself (float64, same initial values, same gradients, several steps, rtol 1e-10), in
  the tests that call _torch() (skipped when torch is not installed; the others still run).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import graddesc as gd
import numpy as np
import pytest
from graddesc import _core, optim
from graddesc.optim import lr_scheduler

SHAPES = [(3, 4), (4,), ()]  # a matrix, a vector and a 0-d parameter
N_STEPS = 4


def _torch() -> Any:
    return pytest.importorskip("torch")


# ---- NumPy references, one update rule each ------------------------------------------------
def ref_sgd(ws, grads_seq, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
            maximize=False):
    ws = [np.array(w, dtype=np.float64) for w in ws]
    bufs = [None] * len(ws)
    for grads in grads_seq:
        for i, g in enumerate(grads):
            if g is None:
                continue
            d = -g if maximize else np.array(g, dtype=np.float64)
            d = d + weight_decay * ws[i]
            if momentum != 0:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ws[i] = ws[i] - lr * d
    return ws


def ref_adam(ws, grads_seq, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             amsgrad=False, maximize=False, decoupled=False):
    b1, b2 = betas
    ws = [np.array(w, dtype=np.float64) for w in ws]
    m = [np.zeros_like(w) for w in ws]
    v = [np.zeros_like(w) for w in ws]
    vmax = [np.zeros_like(w) for w in ws]
    t = [0] * len(ws)
    for grads in grads_seq:
        for i, g in enumerate(grads):
            if g is None:
                continue
            t[i] += 1
            g = -g if maximize else g
            if decoupled:
                ws[i] = ws[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * ws[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** t[i])
            vmax[i] = np.maximum(vmax[i], v[i])
            v_hat = (vmax[i] if amsgrad else v[i]) / (1 - b2 ** t[i])
            ws[i] = ws[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return ws


def ref_rmsprop(ws, grads_seq, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False, maximize=False):
    ws = [np.array(w, dtype=np.float64) for w in ws]
    sq = [np.zeros_like(w) for w in ws]
    ga = [np.zeros_like(w) for w in ws]
    buf = [np.zeros_like(w) for w in ws]
    for grads in grads_seq:
        for i, g in enumerate(grads):
            if g is None:
                continue
            g = -g if maximize else g
            g = g + weight_decay * ws[i]
            sq[i] = alpha * sq[i] + (1 - alpha) * g ** 2
            if centered:
                ga[i] = alpha * ga[i] + (1 - alpha) * g
                denom = np.sqrt(sq[i] - ga[i] ** 2) + eps
            else:
                denom = np.sqrt(sq[i]) + eps
            if momentum > 0:
                buf[i] = momentum * buf[i] + g / denom
                ws[i] = ws[i] - lr * buf[i]
            else:
                ws[i] = ws[i] - lr * g / denom
    return ws


def ref_adagrad(ws, grads_seq, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                initial_accumulator_value=0.0, eps=1e-10, maximize=False):
    ws = [np.array(w, dtype=np.float64) for w in ws]
    s = [np.full_like(w, initial_accumulator_value) for w in ws]
    t = [0] * len(ws)
    for grads in grads_seq:
        for i, g in enumerate(grads):
            if g is None:
                continue
            t[i] += 1
            g = -g if maximize else g
            g = g + weight_decay * ws[i]
            s[i] = s[i] + g * g
            ws[i] = ws[i] - lr / (1 + (t[i] - 1) * lr_decay) * g / (np.sqrt(s[i]) + eps)
    return ws


# (optimizer name, kwargs, reference)
CASES = [
    ("SGD", {"lr": 0.1}, ref_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, ref_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.25, "weight_decay": 0.1}, ref_sgd),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "maximize": True}, ref_sgd),
    ("Adam", {"lr": 0.01}, ref_adam),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.9), "weight_decay": 0.1, "amsgrad": True}, ref_adam),
    ("Adam", {"lr": 0.01, "maximize": True, "eps": 1e-3}, ref_adam),
    ("AdamW", {"lr": 0.01}, ref_adam),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True}, ref_adam),
    ("RMSprop", {"lr": 0.01}, ref_rmsprop),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1},
     ref_rmsprop),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "momentum": 0.3, "maximize": True}, ref_rmsprop),
    ("Adagrad", {"lr": 0.1}, ref_adagrad),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1,
                 "initial_accumulator_value": 0.2, "maximize": True}, ref_adagrad),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw, _ in CASES]


def _ref_kwargs(name: str, kw: dict) -> dict:
    kw = dict(kw)
    if name == "AdamW":
        kw.setdefault("weight_decay", 1e-2)
        kw["decoupled"] = True
    return kw


def _problem(rng: np.random.Generator, shapes=SHAPES, steps=N_STEPS, none_at=()):
    """Initial values and a sequence of gradients (None at the given (step, index) pairs)."""
    w0 = [rng.standard_normal(s) for s in shapes]
    grads = [[None if (k, i) in none_at else rng.standard_normal(s)
              for i, s in enumerate(shapes)] for k in range(steps)]
    return w0, grads


def _run_gd(name: str, kw: dict, w0: list, grads_seq: list, dtype: Any = np.float64,
            groups: Any = None) -> list:
    params = [gd.nn.Parameter(gd.tensor(np.asarray(w, dtype=dtype))) for w in w0]
    opt = getattr(optim, name)(params if groups is None else groups(params), **kw)
    for grads in grads_seq:
        for p, g in zip(params, grads):
            p.grad = None if g is None else gd.tensor(np.asarray(g, dtype=dtype))
        opt.step()
    return [p.detach().numpy().copy() for p in params]


def _run_torch(name: str, kw: dict, w0: list, grads_seq: list) -> list:
    torch = _torch()
    params = [torch.nn.Parameter(torch.tensor(w, dtype=torch.float64)) for w in w0]
    opt = getattr(torch.optim, name)(params, **kw)
    for grads in grads_seq:
        for p, g in zip(params, grads):
            p.grad = None if g is None else torch.tensor(g, dtype=torch.float64)
        opt.step()
    return [p.detach().numpy().copy() for p in params]


def _assert_all_close(got: list, want: list, rtol: float, atol: float = 0.0) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# ---- update rules -------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_update_rule_matches_numpy_reference(case, rng, isa) -> None:
    name, kw, ref = case
    w0, grads = _problem(rng)
    got = _run_gd(name, kw, w0, grads)
    want = ref(w0, grads, **_ref_kwargs(name, kw))
    _assert_all_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_update_rule_matches_torch(case, rng) -> None:
    name, kw, _ = case
    _torch()
    w0, grads = _problem(rng, none_at={(1, 2)})  # a gradient missing at step 1 too
    _assert_all_close(_run_gd(name, kw, w0, grads), _run_torch(name, kw, w0, grads), rtol=1e-10,
                      atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float32_fused_path(case, rng) -> None:
    """float32 parameters go through the float kernels and stay float32."""
    name, kw, ref = case
    w0, grads = _problem(rng)
    w0 = [np.asarray(w, np.float32) for w in w0]
    grads = [[np.asarray(g, np.float32) for g in gs] for gs in grads]
    got = _run_gd(name, kw, w0, grads, dtype=np.float32)
    assert all(g.dtype == np.float32 for g in got)
    want = ref(w0, grads, **_ref_kwargs(name, kw))
    _assert_all_close(got, want, rtol=2e-5, atol=2e-6)


def test_training_a_linear_model_matches_torch(rng) -> None:
    """Real gradients from backward: Linear + MSE, SGD with momentum and Adam, vs PyTorch."""
    torch = _torch()
    X, Y = rng.standard_normal((16, 5)), rng.standard_normal((16, 3))
    W, b = rng.standard_normal((3, 5)) * 0.3, rng.standard_normal(3) * 0.1
    for name, kw in [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.05})]:
        gm = gd.nn.Linear(5, 3).double()
        tm = torch.nn.Linear(5, 3).double()
        gm.load_state_dict({"weight": W, "bias": b})
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(W))
            tm.bias.copy_(torch.tensor(b))
        gopt, topt = getattr(optim, name)(gm.parameters(), **kw), \
            getattr(torch.optim, name)(tm.parameters(), **kw)
        for _ in range(5):
            gopt.zero_grad()
            gd.nn.MSELoss()(gm(gd.tensor(X)), gd.tensor(Y)).backward()
            gopt.step()
            topt.zero_grad()
            torch.nn.MSELoss()(tm(torch.tensor(X)), torch.tensor(Y)).backward()
            topt.step()
        np.testing.assert_allclose(gm.weight.detach().numpy(), tm.weight.detach().numpy(),
                                   rtol=1e-10)
        np.testing.assert_allclose(gm.bias.detach().numpy(), tm.bias.detach().numpy(),
                                   rtol=1e-10)


def test_training_reduces_a_classification_loss() -> None:
    gd.manual_seed(0)
    X = gd.randn(64, 4)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    model = gd.nn.Sequential(gd.nn.Linear(4, 16), gd.nn.Tanh(), gd.nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.05)
    loss_fn = gd.nn.CrossEntropyLoss()
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.3 * first


# ---- groups, skipped parameters, fusion -------------------------------------------------------
def test_multiple_param_groups_use_their_own_hyperparameters(rng) -> None:
    w0, grads = _problem(rng)

    def groups(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.5, "momentum": 0.5}]

    got = _run_gd("SGD", {"lr": 0.1, "momentum": 0.9}, w0, grads, groups=groups)
    want0 = ref_sgd(w0[:1], [g[:1] for g in grads], lr=0.1, momentum=0.9)
    want1 = ref_sgd(w0[1:], [g[1:] for g in grads], lr=0.5, momentum=0.5)
    _assert_all_close(got, want0 + want1, rtol=1e-12)


def test_mixed_dtypes_in_one_group(rng) -> None:
    w32 = gd.nn.Parameter(gd.tensor(rng.standard_normal(5), dtype=gd.float32))
    w64 = gd.nn.Parameter(gd.tensor(rng.standard_normal(5), dtype=gd.float64))
    start = [w32.detach().numpy().copy(), w64.detach().numpy().copy()]
    opt = optim.Adam([w32, w64], lr=0.1)
    g = rng.standard_normal(5)
    w32.grad, w64.grad = gd.tensor(g, dtype=gd.float32), gd.tensor(g, dtype=gd.float64)
    opt.step()
    assert w32.dtype == gd.float32 and w64.dtype == gd.float64
    want = ref_adam(start, [[g.astype(np.float32), g]], lr=0.1)
    np.testing.assert_allclose(w32.detach().numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(w64.detach().numpy(), want[1], rtol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_params_without_grad_are_skipped(name, rng) -> None:
    a = gd.nn.Parameter(gd.tensor(rng.standard_normal(3), dtype=gd.float64))
    b = gd.nn.Parameter(gd.tensor(rng.standard_normal(3), dtype=gd.float64))
    kw = {"lr": 0.1, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 0.1}
    opt = getattr(optim, name)([a, b], **kw)
    b_before, version = b.detach().numpy().copy(), b._version
    a.grad = gd.ones(3, dtype=gd.float64)
    opt.step()
    np.testing.assert_array_equal(b.detach().numpy(), b_before)
    assert b._version == version
    assert a._version > 0
    if name != "Adagrad":  # Adagrad, like PyTorch, creates its state up front
        assert b not in opt.state or len(opt.state[b]) == 0


@pytest.mark.parametrize("name", ["sgd_step", "adam_step"])
def test_one_kernel_call_per_group(name, monkeypatch, rng) -> None:
    calls = []
    real = getattr(_core, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, name, counting)
    ps = [gd.nn.Parameter(gd.tensor(rng.standard_normal(s))) for s in [(4, 3), (3,), (2, 2)]]
    groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.01}]
    opt = optim.SGD(groups, lr=0.1, momentum=0.9) if name == "sgd_step" else \
        optim.Adam(groups, lr=0.1)
    for p in ps:
        p.grad = gd.ones(*p.shape, dtype=p.dtype)
    opt.step()
    assert calls == [2, 1]


def test_step_returns_closure_loss_and_bumps_versions(rng) -> None:
    w = gd.nn.Parameter(gd.tensor(rng.standard_normal(4)))
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    v = w._version
    loss = opt.step(closure)
    assert isinstance(loss, gd.Tensor) and w._version > v


def test_non_contiguous_and_0d_parameters(rng) -> None:
    base = rng.standard_normal((4, 3)).astype(np.float32)
    w = gd.nn.Parameter(gd.tensor(base).t())  # a transposed, non-contiguous parameter
    assert not w.is_contiguous()
    s = gd.nn.Parameter(gd.tensor(1.5))
    opt = optim.SGD([w, s], lr=0.5, momentum=0.9)
    g = rng.standard_normal((3, 4)).astype(np.float32)
    for _ in range(2):
        w.grad, s.grad = gd.tensor(g), gd.tensor(2.0)
        opt.step()
    want = ref_sgd([base.T.astype(np.float32), np.float32(1.5)], [[g, 2.0]] * 2, lr=0.5,
                   momentum=0.9)
    np.testing.assert_allclose(w.detach().numpy(), want[0], rtol=1e-6)
    np.testing.assert_allclose(s.detach().numpy(), want[1], rtol=1e-6)
    assert s.shape == ()


def test_grad_with_other_layout(rng) -> None:
    """A Fortran-ordered gradient (as backward may produce) is read correctly."""
    w = gd.nn.Parameter(gd.tensor(rng.standard_normal((3, 4)), dtype=gd.float32))
    w0 = w.detach().numpy().copy()
    g = np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32))
    w.grad = gd.Tensor._make(g)
    optim.SGD([w], lr=0.1).step()
    np.testing.assert_allclose(w.detach().numpy(), w0 - np.float32(0.1) * g, rtol=1e-6)


def test_threads_give_identical_results(threads, rng) -> None:
    w0 = rng.standard_normal(100_000)
    g = rng.standard_normal(100_000)
    out = []
    for n in (1, 2):
        threads(n)
        w = gd.nn.Parameter(gd.tensor(w0))
        opt = optim.Adam([w], lr=0.01, amsgrad=True)
        for _ in range(2):
            w.grad = gd.tensor(g)
            opt.step()
        out.append(w.detach().numpy().copy())
    np.testing.assert_array_equal(out[0], out[1])


# Above the parallel threshold each thread updates its share of every tensor of the group: the
# shares must cover every element exactly once, for tensors much smaller than a share, sizes that
# are no multiple of a block (256) and 3 threads, giving the 1-thread bits; plain SGD also
# against NumPy's w - lr * g.
_SIZES = [200_704, 256, 32_768, 129, 1_281, 10, 1, 70_001]
_OPTIMS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1}),
]


@pytest.mark.parametrize(("name", "kw"), _OPTIMS, ids=[f"{n}{i}" for i, (n, _) in
                                                       enumerate(_OPTIMS)])
def test_threads_share_every_tensor_of_a_group(threads, rng, name, kw) -> None:
    w0 = [rng.standard_normal(n).astype(np.float32) for n in _SIZES]
    gs = [[rng.standard_normal(n).astype(np.float32) for n in _SIZES] for _ in range(3)]
    out = []
    for n in (1, 2, 3):
        threads(n)
        ws = [gd.nn.Parameter(gd.tensor(w)) for w in w0]
        opt = getattr(optim, name)(ws, **kw)
        for g in gs:
            for w, gi in zip(ws, g):
                w.grad = gd.tensor(gi)
            opt.step()
        out.append([w.detach().numpy().copy() for w in ws])
    for run in out[1:]:
        for a, b in zip(run, out[0]):
            np.testing.assert_array_equal(a, b)
    if name == "SGD" and kw == {"lr": 0.1}:
        for k, (w, ref) in enumerate(zip(out[1], w0)):
            for g in gs:
                ref = ref - np.float32(0.1) * g[k]
            np.testing.assert_array_equal(w, ref)


def test_zero_grad(rng) -> None:
    w = gd.nn.Parameter(gd.tensor(rng.standard_normal(3), dtype=gd.float32))
    opt = optim.SGD([w], lr=0.1)
    w.grad = gd.ones(3)
    opt.zero_grad(set_to_none=False)
    assert w.grad is not None
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros(3))
    opt.zero_grad()
    assert w.grad is None
    w.grad = gd.Tensor._make(np.broadcast_to(np.float32(1), (3,)))  # read-only memory
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros(3))


# ---- matrix and diagonal learning rates ---------------------------------------------------------
def _sgd_with_lr(lr: Any, w0: list, grads_seq: list, dtype: Any = np.float64, **kw: Any) -> list:
    return _run_gd("SGD", {"lr": lr, **kw}, w0, grads_seq, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9, "weight_decay": 0.1},
                                {"momentum": 0.5, "nesterov": True}])
def test_identity_matrix_lr_equals_scalar_lr(dtype, kw, rng, isa) -> None:
    w0, grads = _problem(rng)
    n = sum(int(np.prod(s)) for s in SHAPES)
    eta = 0.1
    scalar = _sgd_with_lr(eta, w0, grads, dtype, **kw)
    matrix = _sgd_with_lr(eta * np.eye(n), w0, grads, dtype, **kw)
    diagonal = _sgd_with_lr(np.full(n, eta), w0, grads, dtype, **kw)
    for s, m, d in zip(scalar, matrix, diagonal):
        np.testing.assert_array_equal(m, s)  # bit for bit
        np.testing.assert_array_equal(d, s)


def test_diagonal_lr_is_elementwise(rng) -> None:
    w0, grads = _problem(rng)
    sizes = [int(np.prod(s)) for s in SHAPES]
    diag = rng.uniform(0.0, 0.5, sum(sizes))
    got = _sgd_with_lr(gd.tensor(diag, dtype=gd.float64), w0, grads, momentum=0.9)
    parts = np.split(diag, np.cumsum(sizes)[:-1])
    want = [np.array(w, dtype=np.float64) for w in w0]
    bufs = [None] * 3
    for gs in grads:
        for i, g in enumerate(gs):
            bufs[i] = g.copy() if bufs[i] is None else 0.9 * bufs[i] + g
            want[i] = want[i] - parts[i].reshape(want[i].shape) * bufs[i]
    _assert_all_close(got, want, rtol=1e-13, atol=1e-15)


def _spd(rng: np.random.Generator, n: int, rank: int | None = None) -> np.ndarray:
    A = rng.standard_normal((n, rank or n))
    return A @ A.T / n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_matrix_lr_matches_numpy(dtype, rng) -> None:
    w0, grads = _problem(rng)
    n = sum(int(np.prod(s)) for s in SHAPES)
    eta = _spd(rng, n, rank=n - 3) * 0.1  # positive semi-definite, singular
    got = _sgd_with_lr(eta, w0, grads, dtype, momentum=0.9, weight_decay=0.01)
    # w <- w - eta @ d with d the usual momentum direction, on the flattened concatenation
    w = np.concatenate([np.asarray(x, np.float64).ravel() for x in w0])
    buf = None
    for gs in grads:
        g = np.concatenate([np.ravel(x) for x in gs]) + 0.01 * w
        buf = g.copy() if buf is None else 0.9 * buf + g
        w = w - eta @ buf
    got_flat = np.concatenate([x.ravel() for x in got])
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got_flat, w, rtol=tol, atol=tol)


def test_inverse_hessian_lr_converges_in_one_step(rng) -> None:
    """Newton's method as SGD with eta = H^-1: one step lands on the minimum of a quadratic."""
    n = 6
    H = _spd(rng, n) + np.eye(n)
    b = rng.standard_normal(n)
    x_star = np.linalg.solve(H, -b)
    x = gd.nn.Parameter(gd.tensor(rng.standard_normal(n), dtype=gd.float64))
    Ht, bt = gd.tensor(H, dtype=gd.float64), gd.tensor(b, dtype=gd.float64)
    opt = optim.SGD([x], lr=np.linalg.inv(H))
    loss = 0.5 * (x @ (Ht @ x)) + (bt * x).sum()
    loss.backward()
    opt.step()
    np.testing.assert_allclose(x.detach().numpy(), x_star, rtol=1e-10, atol=1e-12)


def test_matrix_lr_with_missing_grad_uses_the_principal_submatrix(rng) -> None:
    a = gd.nn.Parameter(gd.tensor(rng.standard_normal(2), dtype=gd.float64))
    b = gd.nn.Parameter(gd.tensor(rng.standard_normal(3), dtype=gd.float64))
    eta = _spd(rng, 5)
    a0, b0 = a.detach().numpy().copy(), b.detach().numpy().copy()
    opt = optim.SGD([a, b], lr=eta)
    g = rng.standard_normal(3)
    b.grad = gd.tensor(g, dtype=gd.float64)
    opt.step()
    np.testing.assert_array_equal(a.detach().numpy(), a0)
    np.testing.assert_allclose(b.detach().numpy(), b0 - eta[2:, 2:] @ g, rtol=1e-13)


@pytest.mark.parametrize("lr, err, match", [
    (np.array([[1.0, 0.5], [0.0, 1.0]]), ValueError, "must be symmetric"),
    (np.array([[1.0, 0.0], [0.0, -1e-3]]), ValueError, "positive semi-definite.*smallest"),
    (np.eye(3), ValueError, r"shape \(2, 2\)"),
    (np.ones(3), ValueError, "expected length 2"),
    (np.array([0.1, -0.1]), ValueError, r"non-negative.*lr\[1\]"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), ValueError, "NaN or Inf"),
    (np.array([0.1, np.inf]), ValueError, "NaN or Inf"),
    (np.ones((2, 2, 2)), ValueError, "1-d array.*2-d matrix"),
    (np.array([1 + 1j, 1]), TypeError, "real numbers"),
    (-0.1, ValueError, "Invalid learning rate: -0.1"),
    (float("nan"), ValueError, "Invalid learning rate: nan"),
    ("0.1", TypeError, "lr must be a real number"),
])
def test_sgd_lr_validation(lr, err, match) -> None:
    w = gd.nn.Parameter(gd.zeros(2, dtype=gd.float64))
    with pytest.raises(err, match=match):
        optim.SGD([w], lr=lr)


def test_matrix_lr_tolerances() -> None:
    w = gd.nn.Parameter(gd.zeros(2, dtype=gd.float64))
    optim.SGD([w], lr=np.array([[1.0, 1e-10], [0.0, 1.0]]))  # asymmetry within 1e-8 relative
    optim.SGD([w], lr=np.array([[1.0, 0.0], [0.0, -1e-12]]))  # -1e-12 >= -1e-10 * 1
    optim.SGD([w], lr=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="symmetric"):
        optim.SGD([w], lr=np.array([[1.0, 1e-7], [0.0, 1.0]]))


def test_matrix_lr_checked_again_when_changed() -> None:
    w = gd.nn.Parameter(gd.zeros(2, dtype=gd.float64))
    opt = optim.SGD([w], lr=np.eye(2))
    opt.param_groups[0]["lr"] = -np.eye(2)
    w.grad = gd.ones(2, dtype=gd.float64)
    with pytest.raises(ValueError, match="positive semi-definite"):
        opt.step()
    np.testing.assert_array_equal(w.detach().numpy(), np.zeros(2))


def test_matrix_lr_needs_one_dtype() -> None:
    a = gd.nn.Parameter(gd.zeros(1, dtype=gd.float32))
    b = gd.nn.Parameter(gd.zeros(1, dtype=gd.float64))
    with pytest.raises(ValueError, match="same dtype"):
        optim.SGD([a, b], lr=np.eye(2))


# ---- constructor validation ----------------------------------------------------------------
def _w() -> gd.Tensor:
    return gd.nn.Parameter(gd.zeros(3))


def _twice(params_of: Callable) -> Any:
    """SGD over params_of(w), which uses one parameter w twice."""
    return optim.SGD(params_of(_w()), lr=0.1)


@pytest.mark.parametrize("make, err, match", [
    (lambda: optim.SGD([_w()], lr=0.1, momentum=-0.1), ValueError, "Invalid momentum value"),
    (lambda: optim.SGD([_w()], lr=0.1, weight_decay=-1), ValueError, "Invalid weight_decay"),
    (lambda: optim.SGD([_w()], lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
    (lambda: optim.SGD([_w()], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "zero dampening"),
    (lambda: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda: optim.SGD(_w(), lr=0.1), TypeError, "iterable of Tensors or dicts"),
    (lambda: optim.SGD([np.zeros(3)], lr=0.1), TypeError, "can only optimize Tensors.*ndarray"),
    (lambda: optim.SGD([1.0], lr=0.1), TypeError, "can only optimize Tensors.*float"),
    (lambda: optim.SGD([gd.zeros(3, dtype=gd.int64)], lr=0.1), TypeError, "floating-point"),
    (lambda: optim.SGD([_w() * 2], lr=0.1), ValueError, "non-leaf"),
    (lambda: optim.SGD({_w()}, lr=0.1), TypeError, "ordered collections"),
    (lambda: optim.SGD([{"lr": 0.1}], lr=0.1), ValueError, "'params'"),
    (lambda: _twice(lambda w: [w, w]), ValueError, "duplicate"),
    (lambda: _twice(lambda w: [{"params": [w]}, {"params": [w]}]), ValueError,
     "more than one parameter group"),
    (lambda: optim.SGD([_w()], lr=0.1, momentum="x"), TypeError, "momentum must be a real"),
    (lambda: optim.Adam([_w()], lr=-1), ValueError, "Invalid learning rate"),
    (lambda: optim.Adam([_w()], eps=-1), ValueError, "Invalid epsilon value"),
    (lambda: optim.Adam([_w()], betas=(1.0, 0.9)), ValueError, "beta parameter at index 0"),
    (lambda: optim.Adam([_w()], betas=(0.9, -0.1)), ValueError, "beta parameter at index 1"),
    (lambda: optim.Adam([_w()], betas=0.9), TypeError, "pair of numbers"),
    (lambda: optim.AdamW([_w()], weight_decay=-0.1), ValueError, "Invalid weight_decay"),
    (lambda: optim.Adam([_w()], lr=gd.ones(2)), ValueError, "Tensor lr must be 1-element"),
    (lambda: optim.RMSprop([_w()], alpha=-0.1), ValueError, "Invalid alpha value"),
    (lambda: optim.RMSprop([_w()], momentum=-0.1), ValueError, "Invalid momentum value"),
    (lambda: optim.Adagrad([_w()], lr_decay=-0.1), ValueError, "Invalid lr_decay value"),
    (lambda: optim.Adagrad([_w()], initial_accumulator_value=-1), ValueError,
     "Invalid initial_accumulator_value"),
    (lambda: optim.LBFGS([_w()], history_size=0), ValueError, "history_size must be >= 1"),
    (lambda: optim.LBFGS([_w()], lr=-1), ValueError, "Invalid learning rate"),
    (lambda: optim.LBFGS([_w()], max_iter=2.5), TypeError, "max_iter must be an int"),
    (lambda: optim.RMSprop([_w()], eps=-1), ValueError, "Invalid epsilon value"),
    (lambda: optim.Adagrad([_w()], eps=-1), ValueError, "Invalid epsilon value"),
    (lambda: optim.ZerothOrder([_w()], num_samples=1.5), TypeError, "num_samples must be an int"),
    (lambda: optim.ZerothOrder([_w()], lr=-0.1), ValueError, "Invalid learning rate"),
    (lambda: optim.LBFGS([_w()], line_search_fn="armijo"), ValueError, "strong_wolfe"),
    (lambda: optim.LBFGS([{"params": [_w()]}, {"params": [_w()]}]), ValueError,
     "parameter groups"),
    (lambda: optim.ZerothOrder([_w()], estimator="adjoint"), ValueError, "estimator must be"),
    (lambda: optim.ZerothOrder([_w()], num_samples=0), ValueError, "num_samples must be >= 1"),
    (lambda: optim.ZerothOrder([_w()], eps=0.0), ValueError, "eps must be positive"),
    (lambda: optim.ZerothOrder([_w()], generator=np.random.default_rng()), TypeError,
     "graddesc.Generator"),
])
def test_constructor_validation(make: Callable, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        make()


def test_plain_tensors_and_named_params_are_accepted() -> None:
    w = gd.zeros(3, requires_grad=True)
    opt = optim.SGD([("w", w)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w"]
    opt.add_param_group({"params": [("v", gd.nn.Parameter(gd.zeros(2)))], "lr": 0.5})
    with pytest.raises(ValueError, match="with/without names"):
        opt.add_param_group({"params": [gd.nn.Parameter(gd.zeros(2))]})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert "SGD (" in repr(opt) and "Parameter Group 1" in repr(opt)


# ---- the kernels' own argument checks (graddesc._core) ---------------------------------------
def _arr(*shape: int, dtype: Any = np.float64) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def _read_only(n: int) -> np.ndarray:
    a = np.zeros(n)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("call, err, match", [
    (lambda: _core.sgd_step([_arr(3)], [_arr(3, dtype=np.float32)], None, 0.1), TypeError,
     r"sgd_step: argument 'grads\[0\]' must have dtype float64"),
    (lambda: _core.sgd_step([_arr(3), _arr(2)], [_arr(3), _arr(3)], None, 0.1), ValueError,
     r"'grads\[1\]' expected shape \(2,\), got \(3,\)"),
    (lambda: _core.sgd_step([_arr(3)], [_arr(3), _arr(3)], None, 0.1), ValueError,
     "'grads' must have 1 arrays"),
    (lambda: _core.sgd_step([_arr(4, 4)[:, ::2]], [_arr(4, 2)], None, 0.1), ValueError,
     r"'params\[0\]' must be C-contiguous"),
    (lambda: _core.sgd_step([_read_only(3)], [_arr(3)], None, 0.1), ValueError,
     r"'params\[0\]' is read-only"),
    (lambda: _core.sgd_step(_arr(3), [_arr(3)], None, 0.1), TypeError, "must be a list"),
    (lambda: _core.sgd_step([[0.0]], [_arr(1)], None, 0.1), TypeError, "numpy.ndarray"),
    (lambda: _core.sgd_step([_arr(3)], [_arr(3)], [], 0.1, 0.9), ValueError,
     "'momentum_buffers' must have 1 entries"),
    (lambda: _core.sgd_step([_arr(3)], [_arr(3)], [_arr(2)], 0.1, 0.9), ValueError,
     r"'momentum_buffers\[0\]' expected shape"),
    (lambda: _core.sgd_step([_arr(3)], [_arr(3)], None, _arr(2)), ValueError,
     r"'lr' expected shape \(3,\)"),
    (lambda: _core.sgd_step([_arr(3)], [_arr(3)], None, _arr(3, 3, dtype=np.float32)),
     TypeError, "'lr' must have dtype float64"),
    (lambda: _core.sgd_step([_arr(3, dtype=np.int64)], [_arr(3)], None, 0.1), TypeError,
     "float32 or float64"),
    (lambda: _core.adam_step([_arr(3)], [_arr(3)], [_arr(3)], [_arr(3)], [], [0], 0.1, 0.9,
                             0.99, 1e-8, 0.0), ValueError, "step counts >= 1"),
    (lambda: _core.adam_step([_arr(3)], [_arr(3)], [_arr(3)], [_arr(3)], [], [1], 0.1, 0.9,
                             0.99, 1e-8, 0.0, True), ValueError, "'max_exp_avg_sqs' must have"),
    (lambda: _core.rmsprop_step([_arr(3)], [_arr(3)], [_arr(3)], [], [], 0.1, 0.9, 1e-8, 0.0,
                                0.0, True), ValueError, "'grad_avgs' must have 1"),
    (lambda: _core.adagrad_step([_arr(3)], [_arr(3)], [_arr(3, dtype=np.float32)], [1], 0.1,
                                0.0, 1e-10, 0.0), TypeError, r"'state_sums\[0\]'"),
])
def test_kernel_argument_checks(call: Callable, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        call()


def test_kernel_failure_leaves_parameters_untouched() -> None:
    p = [np.ones(3), np.ones(2)]
    with pytest.raises(ValueError):
        _core.sgd_step(p, [np.ones(3), np.ones(3)], None, 0.1)
    np.testing.assert_array_equal(p[0], np.ones(3))


def test_kernel_allows_grad_aliasing_param() -> None:
    p = np.array([1.0, 2.0, -4.0])
    _core.sgd_step([p], [p], None, 0.25)
    np.testing.assert_array_equal(p, [0.75, 1.5, -3.0])


def test_kernel_returns_new_momentum_buffers() -> None:
    p, g = np.ones(3), np.full(3, 2.0)
    bufs = _core.sgd_step([p], [g], [None], 0.1, 0.9)
    np.testing.assert_array_equal(bufs[0], g)
    again = _core.sgd_step([p], [g], bufs, 0.1, 0.9)
    assert again[0] is bufs[0]
    np.testing.assert_allclose(bufs[0], 0.9 * 2.0 + 2.0)
    assert _core.sgd_step([], [], None, 0.1) is None


# ---- state dicts ---------------------------------------------------------------------------------
OPTIMIZERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("AdamW", {"lr": 0.05}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.1}),
]


@pytest.mark.parametrize("name, kw", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_state_dict_round_trip_continues_identically(name, kw, rng) -> None:
    w0, grads = _problem(rng, steps=6)
    params = [gd.nn.Parameter(gd.tensor(w)) for w in w0]
    opt = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}],
                               **kw)

    def steps(opt, params, seq):
        for gs in seq:
            for p, g in zip(params, gs):
                p.grad = gd.tensor(g)
            opt.step()

    steps(opt, params, grads[:3])
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 1, 2]
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert all(isinstance(v, gd.Tensor) for st in sd["state"].values() for v in st.values())
    # a copy: further steps don't change it
    frozen = {k: {n: v.numpy().copy() for n, v in st.items()} for k, st in sd["state"].items()}
    clones = [gd.nn.Parameter(gd.tensor(p.detach().numpy())) for p in params]
    other = getattr(optim, name)([{"params": clones[:2]}, {"params": clones[2:]}], lr=1.0)
    other.load_state_dict(sd)
    assert other.param_groups[1]["lr"] == 0.02
    steps(opt, params, grads[3:])
    steps(other, clones, grads[3:])
    for a, b in zip(params, clones):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    for k, st in sd["state"].items():
        for n, v in st.items():
            np.testing.assert_array_equal(v.numpy(), frozen[k][n])


def test_load_state_dict_from_torch(rng) -> None:
    """A PyTorch Adam state dict converted with .numpy() loads and continues like PyTorch."""
    torch = _torch()
    w0, grads = _problem(rng, steps=5)
    tp = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    topt = torch.optim.Adam(tp, lr=0.05)
    for gs in grads[:2]:
        for p, g in zip(tp, gs):
            p.grad = torch.tensor(g)
        topt.step()
    tsd = topt.state_dict()
    sd = {"state": {k: {n: v.numpy() for n, v in st.items()} for k, st in tsd["state"].items()},
          "param_groups": tsd["param_groups"]}
    gp = [gd.nn.Parameter(gd.tensor(p.detach().numpy())) for p in tp]
    gopt = optim.Adam(gp)
    gopt.load_state_dict(sd)
    for gs in grads[2:]:
        for p, q, g in zip(tp, gp, gs):
            p.grad, q.grad = torch.tensor(g), gd.tensor(g)
        topt.step()
        gopt.step()
    for p, q in zip(tp, gp):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-10)


def test_load_state_dict_validation(rng) -> None:
    a, b = gd.nn.Parameter(gd.zeros(3)), gd.nn.Parameter(gd.zeros(2))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = gd.ones(3), gd.ones(2)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": sd["param_groups"] * 2})
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict({"state": {}, "param_groups": [{**sd["param_groups"][0],
                                                             "params": [0]}]})
    bad = {"state": {0: {"momentum_buffer": np.zeros(5)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\] has shape \(5,\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="keys 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    with pytest.raises(TypeError, match="expected a dict, got list"):
        opt.load_state_dict([])
    bad_lr = {"state": {}, "param_groups": [{**sd["param_groups"][0], "lr": -1.0}]}
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.load_state_dict(bad_lr)
    # float64 state arrays load as the parameter's dtype
    opt.load_state_dict({"state": {0: {"momentum_buffer": np.ones(3)}, 1: {}},
                         "param_groups": sd["param_groups"]})
    assert opt.state[a]["momentum_buffer"].dtype == gd.float32


# ---- LBFGS ------------------------------------------------------------------------------------------
def _rosenbrock(x: gd.Tensor) -> gd.Tensor:
    return ((1 - x[:-1]) ** 2).sum() + (100 * (x[1:] - x[:-1] ** 2) ** 2).sum()


def test_lbfgs_minimises_rosenbrock() -> None:
    x = gd.nn.Parameter(gd.tensor([-1.2, 1.0], dtype=gd.float64))
    opt = optim.LBFGS([x], lr=1, max_iter=100, history_size=10, line_search_fn="strong_wolfe",
                      tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = _rosenbrock(x)
        loss.backward()
        return loss

    first = opt.step(closure)
    assert first.item() == pytest.approx(24.2)
    for _ in range(3):
        opt.step(closure)
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 1.0], atol=1e-6)
    assert opt.state[x]["func_evals"] < 200


def _numpy_problem(rng: np.random.Generator, n: int = 6) -> tuple:
    """A smooth, strongly convex test function (quadratic + quartic), loss and gradient in NumPy,
    so graddesc and PyTorch get bitwise the same values at the same point."""
    A = _spd(rng, n) + 0.5 * np.eye(n)
    b = rng.standard_normal(n)

    def f(x: np.ndarray) -> tuple:
        return float(0.5 * x @ A @ x + b @ x + 0.25 * np.sum(x ** 4)), A @ x + b + x ** 3

    return f


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_matches_torch(line_search_fn, rng) -> None:
    torch = _torch()
    f = _numpy_problem(rng)
    x0 = rng.standard_normal(6)
    xg = gd.nn.Parameter(gd.tensor(x0[:4]))
    yg = gd.nn.Parameter(gd.tensor(x0[4:]))
    xt = torch.nn.Parameter(torch.tensor(x0[:4]))
    yt = torch.nn.Parameter(torch.tensor(x0[4:]))
    kw = {"lr": 1 if line_search_fn else 0.2, "max_iter": 7, "history_size": 3,
          "line_search_fn": line_search_fn}
    og, ot = optim.LBFGS([xg, yg], **kw), torch.optim.LBFGS([xt, yt], **kw)

    def closure_gd():
        v = np.concatenate([xg.detach().numpy(), yg.detach().numpy()])
        loss, g = f(v)
        xg.grad, yg.grad = gd.tensor(g[:4]), gd.tensor(g[4:])
        return loss

    def closure_torch():
        v = np.concatenate([xt.detach().numpy(), yt.detach().numpy()])
        loss, g = f(v)
        xt.grad, yt.grad = torch.tensor(g[:4]), torch.tensor(g[4:])
        return loss

    for _ in range(3):
        assert og.step(closure_gd) == pytest.approx(ot.step(closure_torch), rel=1e-10)
    np.testing.assert_allclose(xg.detach().numpy(), xt.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(yg.detach().numpy(), yt.detach().numpy(), rtol=1e-10)
    assert og.state[xg]["func_evals"] == ot.state[xt]["func_evals"]
    assert og.state[xg]["n_iter"] == ot.state[xt]["n_iter"]


def test_lbfgs_reaches_the_minimum_of_a_quadratic_without_line_search(rng) -> None:
    n = 5
    A = _spd(rng, n) + np.eye(n)
    b = rng.standard_normal(n)
    x = gd.nn.Parameter(gd.zeros(n, dtype=gd.float64))
    At, bt = gd.tensor(A, dtype=gd.float64), gd.tensor(b, dtype=gd.float64)
    opt = optim.LBFGS([x], lr=0.5, max_iter=200, tolerance_grad=1e-12, tolerance_change=0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (x @ (At @ x)) + (bt * x).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(A, -b), atol=1e-8)


def test_lbfgs_state_dict_round_trip(rng) -> None:
    f = _numpy_problem(rng)
    x0 = rng.standard_normal(6)

    def closure_for(x: gd.Tensor) -> Callable:
        def closure():
            loss, g = f(x.detach().numpy())
            x.grad = gd.tensor(g)
            return loss
        return closure

    def make(x: gd.Tensor) -> Any:
        return optim.LBFGS([x], max_iter=3, history_size=4, line_search_fn="strong_wolfe")

    x = gd.nn.Parameter(gd.tensor(x0))
    opt = make(x)
    opt.step(closure_for(x))
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["d"], gd.Tensor)
    assert all(isinstance(t, gd.Tensor) for t in sd["state"][0]["old_dirs"])
    x2 = gd.nn.Parameter(gd.tensor(x.detach().numpy()))
    opt2 = make(x2)
    opt2.load_state_dict(sd)
    opt.step(closure_for(x))
    opt2.step(closure_for(x2))
    np.testing.assert_array_equal(x.detach().numpy(), x2.detach().numpy())


def test_lbfgs_needs_a_closure() -> None:
    opt = optim.LBFGS([gd.nn.Parameter(gd.zeros(2))])
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()


# ---- ZerothOrder ----------------------------------------------------------------------------------
def _quadratic(rng: np.random.Generator, n: int) -> tuple:
    A = _spd(rng, n) + np.eye(n)
    b = rng.standard_normal(n)
    return A, b


def _zo_setup(rng, estimator, n=5, **kw):
    A, b = _quadratic(rng, n)
    x = gd.nn.Parameter(gd.tensor(rng.standard_normal(n), dtype=gd.float64))
    At, bt = gd.tensor(A, dtype=gd.float64), gd.tensor(b, dtype=gd.float64)

    def closure():
        return 0.5 * (x @ (At @ x)) + (bt * x).sum()

    opt = optim.ZerothOrder([x], estimator=estimator, **kw)
    return x, A, b, closure, opt


@pytest.mark.parametrize("estimator", ["spsa", "forward", "central", "gaussian"])
def test_zeroth_order_reduces_a_quadratic(estimator, rng) -> None:
    _x, A, b, closure, opt = _zo_setup(rng, estimator, lr=0.05, num_samples=4, eps=1e-4,
                                      generator=gd.Generator().manual_seed(1))
    first = closure().item()
    for _ in range(150):
        opt.step(closure)
    assert closure().item() < first
    f_min = -0.5 * b @ np.linalg.solve(A, b)
    assert closure().item() - f_min < 0.05 * (first - f_min)


@pytest.mark.parametrize("estimator, per_step", [("spsa", 1 + 2 * 3), ("gaussian", 1 + 3),
                                                 ("forward", 1 + 5), ("central", 1 + 2 * 5)])
def test_zeroth_order_counts_evaluations(estimator, per_step, rng) -> None:
    _x, _, _, closure, opt = _zo_setup(rng, estimator, lr=0.01, num_samples=3)
    calls = []

    def counted():
        calls.append(1)
        return closure()

    opt.step(counted)
    opt.step(counted)
    assert opt.num_evaluations == len(calls) == 2 * per_step


def test_zeroth_order_central_matches_true_gradient(rng) -> None:
    x, A, b, closure, opt = _zo_setup(rng, "central", lr=1.0, eps=1e-3)
    x0 = x.detach().numpy().copy()
    loss = opt.step(closure)
    assert loss.item() == pytest.approx(0.5 * x0 @ A @ x0 + b @ x0, rel=1e-12)
    estimate = x0 - x.detach().numpy()  # lr = 1: the step is the estimated gradient
    np.testing.assert_allclose(estimate, A @ x0 + b, atol=1e-6)


def test_zeroth_order_spsa_is_unbiased_on_average(rng) -> None:
    """SPSA's estimate averages to the true gradient (exactly so on a quadratic)."""
    x, A, b, closure, opt = _zo_setup(rng, "spsa", lr=1.0, num_samples=2000, eps=1e-3,
                                      generator=gd.Generator().manual_seed(3))
    x0 = x.detach().numpy().copy()
    opt.step(closure)
    g = A @ x0 + b
    err = np.linalg.norm((x0 - x.detach().numpy()) - g) / np.linalg.norm(g)
    assert err < 0.15


def test_zeroth_order_is_deterministic_with_a_generator() -> None:
    def run() -> np.ndarray:
        x, _, _, closure, opt = _zo_setup(np.random.default_rng(5), "spsa", lr=0.05,
                                          generator=gd.Generator().manual_seed(7))
        for _ in range(5):
            opt.step(lambda: closure().item())  # a float loss works too
        return x.detach().numpy().copy()

    np.testing.assert_array_equal(run(), run())


def test_zeroth_order_param_groups_and_float32(rng) -> None:
    a = gd.nn.Parameter(gd.tensor([1.0, -2.0], dtype=gd.float32))
    b = gd.nn.Parameter(gd.tensor([[3.0]], dtype=gd.float64))
    opt = optim.ZerothOrder([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1,
                            estimator="central", eps=1e-2)
    a0, b0 = a.detach().numpy().copy(), b.detach().numpy().copy()
    loss = opt.step(lambda: (a * a).sum() + (b * b).sum())
    assert loss.item() == pytest.approx(14.0)
    np.testing.assert_allclose(a.detach().numpy(), a0 - 0.1 * 2 * a0, rtol=1e-4)
    np.testing.assert_allclose(b.detach().numpy(), b0 - 0.2 * 2 * b0, rtol=1e-10)
    assert a.dtype == gd.float32 and b.shape == (1, 1)


def test_zeroth_order_needs_no_backward_and_restores_on_error(rng) -> None:
    x = gd.nn.Parameter(gd.tensor([1.0, 2.0]))
    opt = optim.ZerothOrder([x], lr=0.1)
    n = [0]

    def closure():
        n[0] += 1
        if n[0] == 2:
            raise RuntimeError("simulator crashed")
        assert not gd.is_grad_enabled()
        return (x * x).sum()

    with pytest.raises(RuntimeError, match="simulator crashed"):
        opt.step(closure)
    np.testing.assert_array_equal(x.detach().numpy(), [1.0, 2.0])
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()


@pytest.mark.parametrize("estimator", ["spsa", "forward", "central", "gaussian"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("at_call", [1, 2, 3])
def test_zeroth_order_non_finite_loss_raises_and_keeps_parameters(estimator, bad, at_call,
                                                                 rng) -> None:
    # a simulator that fails at one perturbed point (or at x itself, call 1): the step used to
    # write NaN into the parameters and return the finite loss at x
    x, _, _, closure, opt = _zo_setup(rng, estimator, lr=0.1, num_samples=2)
    before = x.detach().numpy().copy()
    n = [0]

    def failing():
        n[0] += 1
        return bad if n[0] == at_call else closure()

    with pytest.raises(RuntimeError, match=rf"non-finite loss \({bad}\) at .*evaluation "
                                           rf"{at_call}\)"):
        opt.step(failing)
    np.testing.assert_array_equal(x.detach().numpy(), before)
    assert np.array_equal(x.detach().numpy(), before, equal_nan=False)
    opt.step(closure)  # the optimizer still works afterwards
    assert np.all(np.isfinite(x.detach().numpy()))


@pytest.mark.parametrize("value, named", [
    ("3.5", "str"), (True, "bool"), (np.bool_(False), "bool"), (None, "NoneType"),
    (np.array([1.0, 2.0]), "ndarray"), ([1.0], "list"), (1 + 2j, "complex"),
])
def test_zeroth_order_closure_must_return_a_real_number(value, named, rng) -> None:
    x, _, _, _, opt = _zo_setup(rng, "central", lr=0.1)
    before = x.detach().numpy().copy()
    with pytest.raises(TypeError, match=f"must return a real number.*got {named}"):
        opt.step(lambda: value)
    np.testing.assert_array_equal(x.detach().numpy(), before)


@pytest.mark.parametrize("bad", [gd.tensor([1.0, 2.0]), gd.tensor([3], dtype=gd.int64),
                                 gd.tensor(True)])
def test_zeroth_order_closure_tensor_must_be_one_float_element(bad, rng) -> None:
    x, _, _, _, opt = _zo_setup(rng, "spsa", lr=0.1)
    with pytest.raises(TypeError, match="must return a real number, got a .* Tensor of shape"):
        opt.step(lambda: bad)


def test_zeroth_order_accepts_real_scalars_of_every_kind(rng) -> None:
    # float, NumPy floating scalars and one-element float Tensors give the quadratic's step
    results = []
    for convert in (lambda t: t, lambda t: t.item(), lambda t: np.float32(t.item()),
                    lambda t: np.float64(t.item()), lambda t: t.reshape(1, 1)):
        x, _, _, closure, opt = _zo_setup(np.random.default_rng(11), "central", lr=0.1,
                                          eps=0.5)
        opt.step(lambda c=closure, f=convert: f(c()))
        results.append(x.detach().numpy().copy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[4])
    np.testing.assert_allclose(results[2], results[0], rtol=1e-5)
    np.testing.assert_allclose(results[3], results[0], rtol=1e-15)
    # an int (Python or NumPy) is a real number too: a constant loss leaves x where it was
    for value in (7, np.int64(7)):
        x, _, _, _, opt = _zo_setup(rng, "spsa", lr=0.1)
        before = x.detach().numpy().copy()
        assert opt.step(lambda v=value: v) == 7
        np.testing.assert_array_equal(x.detach().numpy(), before)


# ---- learning-rate schedulers ---------------------------------------------------------------------
def _lrs(sched: Any, opt: Any, epochs: int) -> list:
    out = []
    for _ in range(epochs):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def _sgd(lr: float = 0.5) -> Any:
    return optim.SGD([gd.nn.Parameter(gd.zeros(2))], lr=lr)


SCHEDULERS = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}, lambda e: 0.5 * 0.5 ** (e // 3)),
    ("ExponentialLR", {"gamma": 0.9}, lambda e: 0.5 * 0.9 ** e),
    ("CosineAnnealingLR", {"T_max": 10, "eta_min": 0.01},
     lambda e: 0.01 + (0.5 - 0.01) * (1 + math.cos(math.pi * e / 10)) / 2),
    ("LambdaLR", {"lr_lambda": lambda e: 1 / (1 + e)}, lambda e: 0.5 / (1 + e)),
]
SCHED_IDS = [s[0] for s in SCHEDULERS]


@pytest.mark.parametrize("name, kw, closed", SCHEDULERS, ids=SCHED_IDS)
def test_scheduler_matches_closed_form(name, kw, closed) -> None:
    opt = _sgd()
    sched = getattr(lr_scheduler, name)(opt, **kw)
    got = _lrs(sched, opt, 15)
    np.testing.assert_allclose(got, [closed(e) for e in range(15)], rtol=1e-12)
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]
    assert opt.param_groups[0]["initial_lr"] == 0.5


@pytest.mark.parametrize("name, kw, closed", SCHEDULERS, ids=SCHED_IDS)
def test_scheduler_matches_torch(name, kw, closed) -> None:
    torch = _torch()
    opt = _sgd()
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)
    got = _lrs(getattr(lr_scheduler, name)(opt, **kw), opt, 25)
    want = _lrs(getattr(torch.optim.lr_scheduler, name)(topt, **kw), topt, 25)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_scheduler_state_dict_round_trip() -> None:
    opt = _sgd()
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=8)
    _lrs(sched, opt, 3)
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 3
    rest = _lrs(sched, opt, 4)
    opt2 = _sgd()
    opt2.param_groups[0]["lr"] = sd["_last_lr"][0]
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=8)
    sched2.load_state_dict(sd)
    assert _lrs(sched2, opt2, 4) == rest
    lam = lr_scheduler.LambdaLR(_sgd(), lambda e: 1.0)
    assert lam.state_dict()["lr_lambdas"] == [None]


def test_scheduler_with_groups_and_matrix_lr() -> None:
    a, b = gd.nn.Parameter(gd.zeros(2, dtype=gd.float64)), gd.nn.Parameter(gd.zeros(1))
    opt = optim.SGD([{"params": [a], "lr": np.eye(2)}, {"params": [b], "lr": 0.2}], lr=0.1)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 0.5 ** e, lambda e: 1.0 + e])
    a.grad, b.grad = gd.ones(2, dtype=gd.float64), gd.ones(1)
    opt.step()
    sched.step()
    np.testing.assert_array_equal(opt.param_groups[0]["lr"], 0.5 * np.eye(2))
    assert opt.param_groups[1]["lr"] == 0.4
    opt.step()
    np.testing.assert_allclose(a.detach().numpy(), [-1.5, -1.5])
    np.testing.assert_allclose(b.detach().numpy(), [-0.6], rtol=1e-6)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0])


def test_scheduler_warnings_and_errors() -> None:
    opt = _sgd()
    sched = lr_scheduler.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size must be a positive int"):
        lr_scheduler.StepLR(_sgd(), step_size=0)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.ExponentialLR(_sgd(), gamma=0.9, last_epoch=3)
    opt = _sgd()
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched.step(epoch=3)  # deprecated: the closed form
    assert sched.get_last_lr() == [0.5 * 0.5 ** 3]


# ---- Adam's one-pass update, bit for bit ---------------------------------------------------------
def _adam_numpy_bits(p, m, v, g, lr, b1, b2, eps, t, dtype):
    """The one-pass update's operations, each rounded in `dtype` as optim.cpp writes them (one
    NumPy operation each): m + (1 - b1)(d - m), v b2 + ((1 - b2) d) d, sqrt(v) / bc2 + eps,
    p + (-lr / (1 - b1^t)) m / den, the two constants rounded from Python floats."""
    T = np.dtype(dtype).type
    w1, w2 = T(1 - b1), T(1 - b2)
    neg_step = T(-(lr / (1 - b1 ** t)))
    bc2 = T((1 - b2 ** t) ** 0.5)
    with np.errstate(all="ignore"):
        m = m + w1 * (g - m)
        v = v * T(b2) + w2 * g * g
        den = np.sqrt(v) / bc2 + T(eps)
        p = p + neg_step * m / den
    return p, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.8, 0.99999), (0.9, 0.0)])
def test_adam_update_bits_match_numpy_at_every_magnitude(dtype, betas, isa) -> None:
    # Gradients from 1e-30 to beyond sqrt(max) (v overflows to inf: the update is then 0 or
    # NaN exactly as the division gives), zeros, inf and NaN, over several steps: the kernel's
    # sqrt(v) / bc2 (a division-free exact quotient on FMA machines) must give the division's
    # bits everywhere, in blocks that hold only ordinary values and in blocks that do not.
    rng = np.random.default_rng(5)
    n = 3000
    big = 3e37 if dtype == np.float32 else 1e300
    lr, eps = 1e-3, 1e-8
    p0 = rng.standard_normal(n).astype(dtype)
    w = gd.nn.Parameter(gd.tensor(p0.copy()))
    opt = optim.Adam([w], lr=lr, betas=betas, eps=eps)
    p, m, v = p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
    for t in range(1, 5):
        g = (rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 18, n)).astype(dtype)
        g[:1024] = rng.standard_normal(1024).astype(dtype)  # ordinary blocks only
        g[1500:1510] = 0
        if t == 2:
            g[2000:2004] = [np.inf, -np.inf, np.nan, big]
            g[2100] = -big
        w.grad = gd.tensor(g.copy())
        opt.step()
        p, m, v = _adam_numpy_bits(p, m, v, g, lr, betas[0], betas[1], eps, t, dtype)
        got = w.detach().numpy()
        nan = np.isnan(p)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(got[~nan], p[~nan])
        state = opt.state[w]
        np.testing.assert_array_equal(state["exp_avg"].numpy(), m)
        np.testing.assert_array_equal(state["exp_avg_sq"].numpy(), v)
