"""addcmul, addcdiv, lerp (functional/combine.py): NumPy oracles in PyTorch's order of
operations, PyTorch itself when installed, float64 gradcheck, broadcasting, in-place forms,
errors; and a hand-written Adam made of them, compiled, bitwise equal to eager."""

import warnings

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F

SHAPES = [((3, 4), (3, 4), (3, 4)), ((3, 4), (4,), (3, 1)), ((1, 4), (3, 1), (4,))]


def _arrays(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("value", [1, 0.5, -3.25])
def test_addcmul_addcdiv_match_numpy(shapes, dtype, value):
    a, b, c = _arrays(shapes, dtype)
    c = np.where(np.abs(c) < 0.1, 0.5, c).astype(dtype)
    v = dtype(value)
    got = gd.addcmul(gd.tensor(a), gd.tensor(b), gd.tensor(c), value=value).numpy()
    np.testing.assert_array_equal(got, a + (v * b) * c)
    got = gd.addcdiv(gd.tensor(a), gd.tensor(b), gd.tensor(c), value=value).numpy()
    np.testing.assert_array_equal(got, a + (v * b) / c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight", [0.0, 0.25, 0.4999, 0.5, 0.75, 1.0, -0.7, 1.5])
def test_lerp_number_weight_matches_numpy(weight, dtype):
    a, b = _arrays([(5, 3), (3,)], dtype)
    w = dtype(weight)
    expect = a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (dtype(1) - w)
    got = gd.lerp(gd.tensor(a), gd.tensor(b), weight).numpy()
    np.testing.assert_array_equal(got, expect.astype(dtype))
    if weight == 1.0:
        np.testing.assert_array_equal(got, np.broadcast_to(b, a.shape))  # exactly end


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lerp_tensor_weight_matches_numpy(dtype):
    a, b = _arrays([(4, 6), (4, 6)], dtype)
    w = np.linspace(-1, 2, 6).astype(dtype)
    expect = np.where(np.abs(w) < 0.5, a + w * (b - a), b - (b - a) * (dtype(1) - w))
    got = gd.lerp(gd.tensor(a), gd.tensor(b), gd.tensor(w)).numpy()
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("shapes", SHAPES)
def test_against_pytorch(shapes):
    torch = pytest.importorskip("torch")
    a, b, c = _arrays(shapes, np.float32, seed=1)
    c = np.where(np.abs(c) < 0.1, 0.5, c).astype(np.float32)
    ta, tb, tc = (torch.from_numpy(x) for x in (a, b, c))
    ga, gb, gc = (gd.tensor(x) for x in (a, b, c))
    for name, kw in (("addcmul", {"value": 0.3}), ("addcdiv", {"value": -2.0})):
        want = getattr(torch, name)(ta, tb, tc, **kw).numpy()
        np.testing.assert_allclose(getattr(gd, name)(ga, gb, gc, **kw).numpy(), want,
                                   rtol=1e-6, atol=1e-6)
    for w in (0.3, 0.8):
        want = torch.lerp(ta, tb, w).numpy()
        np.testing.assert_allclose(gd.lerp(ga, gb, w).numpy(), want, rtol=1e-6, atol=1e-6)
    tw = np.linspace(-1, 2, a.shape[-1]).astype(np.float32)
    want = torch.lerp(ta, tb, torch.from_numpy(tw)).numpy()
    np.testing.assert_allclose(gd.lerp(ga, gb, gd.tensor(tw)).numpy(), want, rtol=1e-6,
                               atol=1e-6)


def test_gradients_float64():
    rng = np.random.default_rng(2)
    a, b, c = (gd.tensor(rng.standard_normal((3, 4)), requires_grad=True) for _ in range(3))
    c2 = gd.tensor(rng.uniform(0.5, 2.0, (3, 4)), requires_grad=True)
    w = gd.tensor(np.linspace(-1, 2, 4), requires_grad=True)
    assert gd.autograd.gradcheck(lambda x, y, z: gd.addcmul(x, y, z, value=0.7), (a, b, c))
    assert gd.autograd.gradcheck(lambda x, y, z: gd.addcdiv(x, y, z, value=-1.5), (a, b, c2))
    assert gd.autograd.gradcheck(lambda x, y: gd.lerp(x, y, 0.3), (a, b))
    assert gd.autograd.gradcheck(lambda x, y: gd.lerp(x, y, 0.8), (a, b))
    w_far = gd.tensor(np.array([-0.9, 0.2, 0.7, 1.4]), requires_grad=True)  # away from 0.5
    assert gd.autograd.gradcheck(lambda x, y, z: gd.lerp(x, y, z), (a, b, w_far))
    del w


def test_in_place_forms_and_methods():
    a, b, c = _arrays([(2, 3), (2, 3), (3,)], np.float32, seed=3)
    t = gd.tensor(a.copy())
    assert t.addcmul_(gd.tensor(b), gd.tensor(c), value=2) is t
    np.testing.assert_array_equal(t.numpy(), a + (np.float32(2) * b) * c)
    t = gd.tensor(a.copy())
    t.addcdiv_(gd.tensor(b), gd.tensor(c + 3))
    np.testing.assert_array_equal(t.numpy(), a + b / (c + 3))
    t = gd.tensor(a.copy())
    t.lerp_(gd.tensor(b), 0.25)
    np.testing.assert_array_equal(t.numpy(), a + np.float32(0.25) * (b - a))
    np.testing.assert_array_equal(gd.tensor(a).lerp(gd.tensor(b), 0.25).numpy(), t.numpy())
    np.testing.assert_array_equal(gd.tensor(a).addcmul(gd.tensor(b), gd.tensor(c)).numpy(),
                                  a + b * c)


def test_errors():
    x = gd.ones(3)
    with pytest.raises(TypeError, match="addcmul: argument 'tensor1' must be a Tensor"):
        gd.addcmul(x, [1.0, 2.0, 3.0], x)
    with pytest.raises(TypeError, match="addcdiv: argument 'value' must be a number"):
        gd.addcdiv(x, x, x, value=gd.tensor(1.0))
    with pytest.raises(RuntimeError, match="integer division"):
        gd.addcdiv(x, gd.tensor([1, 2, 3]), gd.tensor([1, 1, 1]))
    with pytest.raises(TypeError, match="lerp: weight must be a number or a Tensor"):
        gd.lerp(x, x, "0.5")
    with pytest.raises(TypeError, match="lerp: expected floating point"):
        gd.lerp(gd.tensor([1, 2]), gd.tensor([3, 4]), 0.5)
    with pytest.raises((ValueError, RuntimeError)):
        gd.addcmul(x, gd.ones(4), x)  # shapes that do not broadcast


def _adam_by_hand(m, x, y, t):
    m.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    with gd.no_grad():
        for i, p in enumerate(m.parameters()):
            ea, eas = m.get_buffer(f"m{i}"), m.get_buffer(f"v{i}")
            ea.lerp_(p.grad, 0.1)
            eas.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
            p.addcdiv_(ea, eas.sqrt().add_(1e-8), value=-0.01)
    return loss


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_hand_written_adam_is_captured_and_equals_eager(dtype):
    runs = []
    for compiled in (False, True):
        gd.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).to(dtype)
        for i, p in enumerate(list(m.parameters())):
            m.register_buffer(f"m{i}", gd.zeros_like(p))
            m.register_buffer(f"v{i}", gd.zeros_like(p))

        def step(x, y, m=m):
            return _adam_by_hand(m, x, y, None)

        f = gd.compile(step) if compiled else step
        rng = np.random.default_rng(0)
        npdt = np.float32 if dtype == gd.float32 else np.float64
        losses = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(6):
                losses.append(f(gd.tensor(rng.standard_normal((5, 4)).astype(npdt)),
                                gd.tensor(rng.standard_normal((5, 3)).astype(npdt))).item())
        if compiled:
            assert f.stats["replayed"] >= 4 and f.stats["eager"] == 0
        runs.append((losses, {k: v.numpy().copy() for k, v in m.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k], err_msg=k)


@pytest.mark.parametrize("dtype", [gd.float32, gd.float64])
def test_pytorch_adam_loop_written_with_them_equals_optim_adam_bitwise(dtype):
    """torch.optim.Adam's single-tensor update written out with lerp_, addcmul_ and addcdiv_
    gives optim.Adam's bits: the fused kernel and these ops round the same operations."""
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    rng = np.random.default_rng(7)
    npdt = np.float32 if dtype == gd.float32 else np.float64
    w0 = rng.standard_normal((6, 5)).astype(npdt)
    a = gd.tensor(w0.copy(), requires_grad=True)
    b = gd.tensor(w0.copy(), requires_grad=True)
    opt = gd.optim.Adam([b], lr=lr, betas=(b1, b2), eps=eps)
    m, v = gd.zeros_like(a), gd.zeros_like(a)
    for step in range(1, 8):
        g = gd.tensor(rng.standard_normal((6, 5)).astype(npdt))
        a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        with gd.no_grad():
            m.lerp_(a.grad, 1 - b1)
            v.mul_(b2).addcmul_(a.grad, a.grad, value=1 - b2)
            step_size = lr / (1 - b1 ** step)
            denom = (v.sqrt() / (1 - b2 ** step) ** 0.5).add_(eps)
            a.addcdiv_(m, denom, value=-step_size)
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_bitwise_the_same_on_1_2_and_3_threads():
    """Large enough for the elementwise kernels to split the work across threads."""
    a, b, c = _arrays([(600, 700), (600, 700), (700,)], np.float32, seed=9)
    c = c + np.float32(3)
    w = gd.tensor(np.linspace(-1, 2, 700).astype(np.float32))
    n0 = gd.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            gd.set_num_threads(n)
            ga, gb, gc = gd.tensor(a), gd.tensor(b), gd.tensor(c)
            outs.append([gd.addcmul(ga, gb, gc, value=0.3).numpy(),
                         gd.addcdiv(ga, gb, gc, value=-2).numpy(),
                         gd.lerp(ga, gb, 0.7).numpy(), gd.lerp(ga, gb, w).numpy()])
    finally:
        gd.set_num_threads(n0)
    for other in outs[1:]:
        for x, y in zip(outs[0], other):
            np.testing.assert_array_equal(x, y)
