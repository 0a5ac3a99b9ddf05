"""Random tensors drawn inside a gd.compile'd step are captured: every replay makes the eager
step's draws (same generator, same order, same arguments) before the program runs, so a compiled
step is bitwise equal to the eager one from the same seed and leaves the generator where eager
leaves it. The oracle is the same step run eagerly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import nn
from graddesc.nn import functional as F


def _mlp(seed: int, dtype=gd.float32, dropout: float = 0.0) -> nn.Module:
    g = gd.Generator().manual_seed(seed)
    layers = [nn.Linear(5, 8, dtype=dtype), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(8, 3, dtype=dtype))
    model = nn.Sequential(*layers)
    with gd.no_grad():
        for p in model.parameters():
            p.copy_(gd.randn(*p.shape, generator=g, dtype=dtype) * 0.3)
    return model


# Step bodies: (model, x, gen) -> (loss, other returned tensors). `gen` is the generator the
# body's draws use (None: the global one).
def _randn_like(m, x, gen):
    h = m[1](m[0](x))
    h = h + 0.1 * gd.randn_like(h, generator=gen)  # noise injection
    for layer in list(m)[2:]:  # (a Dropout, if the model has one, then the last Linear)
        h = layer(h)
    return F.mse_loss(h, gd.zeros(x.shape[0], 3, dtype=x.dtype)), ()


def _randn(m, x, gen):  # the draw's shape follows the input's shape
    xn = x + gd.randn(*x.shape, generator=gen, dtype=x.dtype) * 0.5
    return m(xn).pow(2).mean(), ()


def _rand(m, x, gen):
    scale = gd.rand(x.shape[0], 1, generator=gen, dtype=x.dtype)
    return (m(x * scale) ** 2).mean(), ()


def _rand_like(m, x, gen):
    return (m(x + gd.rand_like(x, generator=gen)) ** 2).mean(), ()


def _normal(m, x, gen):
    return (m(x + gd.normal(1.0, 0.25, tuple(x.shape), generator=gen, dtype=x.dtype)) ** 2) \
        .mean(), ()


def _randint(m, x, gen):  # random indices: a bootstrap resample of the batch
    idx = gd.randint(0, x.shape[0], (x.shape[0],), generator=gen)
    return (m(x[idx]) ** 2).mean(), ()


def _randperm(m, x, gen):
    perm = gd.randperm(x.shape[0], generator=gen)
    out = m(x[perm])
    return (out - m(x)).pow(2).mean() + out.mean(), ()


def _normal_inplace(m, x, gen):
    noise = gd.empty(*x.shape, dtype=x.dtype)
    noise.normal_(0.0, 0.3, generator=gen)
    return (m(x + noise) ** 2).mean(), ()


def _uniform_inplace(m, x, gen):
    h = m[0](x)
    u = gd.zeros_like(h).uniform_(-0.5, 0.5, generator=gen)
    return (m[2](m[1](h) * u) ** 2).mean(), ()


def _inplace_on_a_computed_tensor(m, x, gen):
    h = m[0](x)
    with gd.no_grad():
        r = h.detach() * 2.0  # a kernel's result, then overwritten by the draw
        r.normal_(generator=gen)
    return (m[2](m[1](h) + r) ** 2).mean(), ()


def _unused_and_returned(m, x, gen):
    gd.randn(7, generator=gen)  # drawn, never used: the stream still moves on
    noise = gd.randn(x.shape[0], 3, generator=gen, dtype=x.dtype)
    out = m(x)
    return ((out - noise) ** 2).mean(), (noise,)


def _several(m, x, gen):
    a = gd.randn_like(x, generator=gen)
    b = gd.rand(x.shape[0], 1, generator=gen, dtype=x.dtype)
    c = gd.randn(3, generator=gen, dtype=x.dtype)
    out = m(x + a * b) + c
    return (out ** 2).mean(), (a,)


BODIES = {f.__name__[1:]: f for f in (
    _randn_like, _randn, _rand, _rand_like, _normal, _randint, _randperm, _normal_inplace,
    _uniform_inplace, _inplace_on_a_computed_tensor, _unused_and_returned, _several)}


def _make_step(body, model, opt, gen):
    def step(x):
        opt.zero_grad()
        loss, extra = body(model, x, gen)
        loss.backward()
        opt.step()
        return (loss, *extra)

    return step


def _seed(gen, seed):
    (gen if gen is not None else gd.default_generator).manual_seed(seed)


def _state(gen):
    return (gen if gen is not None else gd.default_generator).get_state()


def _run(body, compiled, data, gen=None, dtype=gd.float32, dropout=0.0, between=None,
         opt_cls=gd.optim.SGD):
    """Runs the step on `data`; returns (outputs, parameters, gradients, generator state) as
    bytes, and the compiled function (or None)."""
    gd.manual_seed(99)  # (nn.Linear's initialisation draws from the global generator)
    model = _mlp(0, dtype, dropout)
    opt = opt_cls(model.parameters(), lr=0.05)
    step = _make_step(body, model, opt, gen)
    if compiled:
        step = gd.compile(step)
    _seed(gen, 1234)
    outs = []
    for k, x in enumerate(data):
        if between is not None:
            between(k)
        outs.append([t.detach().numpy().tobytes() for t in step(x)])
    params = [p.detach().numpy().tobytes() for p in model.parameters()]
    grads = [p.grad.numpy().tobytes() for p in model.parameters()]
    state = _state(gen) if gen is None else (_state(gen), _state(None))
    return (outs, params, grads, state), (step if compiled else None)


def _data(n, batch=4, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    sizes = batch if isinstance(batch, list) else [batch] * n
    return [gd.tensor(rng.standard_normal((sizes[k], 5)).astype(dtype)) for k in range(n)]


def _check_same(body, n=6, **kw):
    data = _data(n, batch=kw.pop("batch", 4), dtype=kw.pop("np_dtype", np.float32))
    (e_outs, e_params, e_grads, e_state), _ = _run(body, False, data, **kw)
    (c_outs, c_params, c_grads, c_state), step = _run(body, True, data, **kw)
    for k, (a, b) in enumerate(zip(e_outs, c_outs)):
        assert a == b, f"call {k}: outputs differ"
    assert e_params == c_params
    assert e_grads == c_grads
    assert e_state == c_state
    assert step.stats["eager"] == 0, step.stats
    assert step.stats["replayed"] >= 1, step.stats
    # the draws differ from call to call (each replay draws anew)
    assert len({o[0] for o in c_outs}) == len(c_outs)
    return step


@pytest.mark.parametrize("name", sorted(BODIES))
def test_draw_captured_and_bitwise_equal_to_eager(name):
    step = _check_same(BODIES[name])
    assert step.stats["recorded"] <= 2
    # the later calls were one-call C++ replays, which make the draws before the run
    assert step._fast is not None and step._fast.hits >= 2, step.stats


@pytest.mark.parametrize("name", ["randn_like", "several", "normal_inplace", "randperm"])
def test_draw_from_an_explicit_generator(name):
    # (the state compared includes the global generator's: only `gen` is drawn from in the
    # step, by eager and compiled alike)
    _check_same(BODIES[name], gen=gd.Generator())


@pytest.mark.parametrize("name", ["randn_like", "several", "rand"])
def test_float64_draws(name):
    _check_same(BODIES[name], dtype=gd.float64, np_dtype=np.float64)


def test_manual_seed_between_calls_is_followed_by_the_next_replay():
    def between(k):
        if k in (2, 4, 5):
            gd.manual_seed(77 + k)
    _check_same(_several, n=8, between=between)


def test_set_state_between_calls_is_followed_by_the_next_replay():
    gen = gd.Generator()
    saved = []

    def between(k):
        if k == 1:
            saved.append(gen.get_state())
        if k == 4:  # back to the state after call 0: calls 4.. repeat calls 1..
            gen.set_state(saved[0])
    data = _data(7)
    data[4:7] = data[1:4]
    (e_outs, e_params, _, e_state), _ = _run(_randn_like, False, data, gen=gen, between=between)
    saved.clear()
    (c_outs, c_params, _, c_state), step = _run(_randn_like, True, data, gen=gen,
                                                between=between)
    assert e_outs == c_outs and e_params == c_params and e_state == c_state
    assert step.stats["eager"] == 0


def test_a_new_input_shape_records_again_with_draws_of_that_shape():
    step = _check_same(_randn, n=8, batch=[4, 4, 7, 7, 4, 7, 3, 4])
    assert step.stats["recorded"] >= 3 and step.stats["replayed"] >= 3, step.stats


def test_draws_with_dropout_use_both_streams_as_eager():
    _check_same(_randn_like, n=7, dropout=0.3)  # (the state compared includes both streams)
    state = gd.default_generator.get_state()
    assert state["graddesc_stream"][1] > 0  # the dropout kernel stream moved too


def test_a_step_falling_back_for_another_reason_draws_once_per_call():
    def body(m, x, gen):
        noise = gd.randn_like(x)
        loss = (m(x + noise) ** 2).mean()
        if loss.item() > 1e9:  # a value read in Python: uncapturable
            loss = loss * 0
        return loss, (noise,)

    data = _data(5)
    e, _ = _run(body, False, data)
    with pytest.warns(RuntimeWarning, match="eagerly"):
        c, step = _run(body, True, data)
    assert e == c
    assert step.stats["replayed"] == 0


def test_a_draw_that_requires_grad_falls_back_and_stays_equal():
    def body(m, x, gen):
        w = gd.randn(3, requires_grad=True)
        return (m(x) * w).pow(2).mean(), ()

    data = _data(4)
    e, _ = _run(body, False, data)
    with pytest.warns(RuntimeWarning, match="eagerly"):
        c, step = _run(body, True, data)
    assert e == c and step.stats["replayed"] == 0


def test_a_draw_in_the_step_of_a_compiled_step_called_inside_another():
    model = _mlp(0)
    opt = gd.optim.SGD(model.parameters(), lr=0.05)
    inner = gd.compile(_make_step(_randn_like, model, opt, None))
    outer = gd.compile(lambda x: inner(x))
    model2 = _mlp(0)
    opt2 = gd.optim.SGD(model2.parameters(), lr=0.05)
    eager = _make_step(_randn_like, model2, opt2, None)
    data = _data(5)
    gd.manual_seed(5)
    a = [eager(x)[0].item() for x in data]
    gd.manual_seed(5)
    b = [outer(x)[0].item() for x in data]
    assert a == b
    assert outer.stats["eager"] == 0


class _VAE(nn.Module):
    def __init__(self, d: int = 12, h: int = 16, z: int = 4) -> None:
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.mu = nn.Linear(h, z)
        self.logvar = nn.Linear(h, z)
        self.dec1 = nn.Linear(z, h)
        self.dec2 = nn.Linear(h, d)

    def forward(self, x):
        h = F.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + gd.exp(0.5 * logvar) * gd.randn_like(mu)  # reparameterisation
        return self.dec2(F.relu(self.dec1(z))), mu, logvar


def _vae_step(model, opt):
    def step(x):
        opt.zero_grad()
        recon, mu, logvar = model(x)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1).mean()
        loss = F.mse_loss(recon, x) + 0.1 * kl
        loss.backward()
        opt.step()
        return loss, recon

    return step


@pytest.mark.parametrize("batch", [1, 16])
def test_vae_training_loop_compiled_equals_eager(batch):
    rng = np.random.default_rng(3)
    data = [gd.tensor(rng.standard_normal((batch, 12)).astype(np.float32)) for _ in range(10)]
    results = []
    for compiled in (False, True):
        gd.manual_seed(0)
        model = _VAE()
        opt = gd.optim.Adam(model.parameters(), lr=1e-2)
        step = _vae_step(model, opt)
        if compiled:
            step = gd.compile(step)
        gd.manual_seed(42)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            outs = [[t.detach().numpy().tobytes() for t in step(x)] for x in data]
        results.append((outs, [p.detach().numpy().tobytes() for p in model.parameters()],
                        [p.grad.numpy().tobytes() for p in model.parameters()],
                        gd.default_generator.get_state()))
        if compiled:
            assert step.stats["eager"] == 0 and step.stats["replayed"] >= 8, step.stats
    assert results[0] == results[1]


def test_vae_loss_decreases_when_compiled():
    rng = np.random.default_rng(4)
    x = gd.tensor(rng.standard_normal((32, 12)).astype(np.float32))
    gd.manual_seed(0)
    model = _VAE()
    step = gd.compile(_vae_step(model, gd.optim.Adam(model.parameters(), lr=1e-2)))
    losses = [step(x)[0].item() for _ in range(60)]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_normal_into_a_created_constant_already_read_falls_back():
    """gd.zeros(...) read by an op, then overwritten by normal_(): the program would start the
    next replay from the drawn values, so the step runs eagerly (and stays equal)."""
    def body(m, x, gen):
        z = gd.zeros(*x.shape)
        y = x + z
        z.normal_()
        return (m(y + z) ** 2).mean(), ()

    data = _data(4)
    e, _ = _run(body, False, data)
    with pytest.warns(RuntimeWarning, match="writes in place into a tensor it creates"):
        c, step = _run(body, True, data)
    assert e == c and step.stats["replayed"] == 0
