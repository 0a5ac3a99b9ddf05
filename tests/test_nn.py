"""nn: Module bookkeeping, Linear (layout, init, 1-d input), containers, NearestNeighbor trained by
gradient descent, loss modules, state dicts (incl. a converted PyTorch state dict), the lecture's
listing."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import graddesc as gd
from graddesc import nn
from graddesc.nn import functional as F


class MyNet(nn.Module):
    """The lecture's listing, verbatim apart from the import."""

    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(600, 60)
        self.fc1 = nn.Linear(60, 40)
        self.fc2 = nn.Linear(40, 10)

    def forward(self, x):
        x = x.view(-1)
        x = F.relu(self.fc0(x))
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


def test_lecture_listing_runs_and_matches_numpy():
    gd.manual_seed(0)
    net = MyNet()
    img = gd.randn(3, 10, 20)
    out = net(img)
    assert out.shape == (10,)
    p = {k: v.numpy() for k, v in net.state_dict().items()}
    h = np.maximum(p["fc0.weight"] @ img.numpy().reshape(-1) + p["fc0.bias"], 0)
    h = np.maximum(p["fc1.weight"] @ h + p["fc1.bias"], 0)
    ref = p["fc2.weight"] @ h + p["fc2.bias"]
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert all(q.grad is not None for q in net.parameters())


def test_named_parameters_order_children_modules():
    net = MyNet()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc0.weight", "fc0.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [type(m).__name__ for m in net.children()] == ["Linear"] * 3
    assert len(list(net.modules())) == 4
    assert sum(p.numel() for p in net.parameters()) == 600 * 60 + 60 + 60 * 40 + 40 + 40 * 10 + 10


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2


def test_linear_layout_and_default_init_bounds():
    gd.manual_seed(1)
    lin = nn.Linear(100, 7)
    assert lin.weight.shape == (7, 100) and lin.bias.shape == (7,)
    bound = 1 / math.sqrt(100)
    w = lin.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    assert np.abs(lin.bias.detach().numpy()).max() <= bound
    assert isinstance(lin.weight, nn.Parameter) and lin.weight.requires_grad
    assert nn.Linear(3, 2, bias=False).bias is None


def test_linear_accepts_1d_2d_3d_and_validates():
    lin = nn.Linear(4, 2).double()
    x = gd.randn(5, 3, 4, dtype=gd.float64)
    y3 = lin(x)
    assert y3.shape == (5, 3, 2)
    np.testing.assert_allclose(lin(x[1, 2]).detach().numpy(), y3[1, 2].detach().numpy(),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        lin(gd.randn(3, 5, dtype=gd.float64))
    with pytest.raises(TypeError, match="dtype"):
        lin(gd.randn(3, 4))


def test_zero_grad_train_eval_to():
    net = MyNet()
    net(gd.randn(3, 10, 20)).sum().backward()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    assert not net.training and not net.fc0.training
    net.train()
    assert net.fc1.training
    net.double()
    assert net.fc0.weight.dtype == gd.float64
    assert net(gd.randn(3, 10, 20, dtype=gd.float64)).dtype == gd.float64


def test_state_dict_round_trip_and_errors():
    a, b = MyNet(), MyNet()
    sd = a.state_dict()
    assert list(sd) == [n for n, _ in a.named_parameters()]
    b.load_state_dict({k: v.numpy() for k, v in sd.items()})
    x = gd.randn(3, 10, 20)
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    bad = dict(sd)
    bad["fc0.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(RuntimeError, match="size mismatch for fc0.weight"):
        b.load_state_dict(bad)
    missing = dict(sd)
    del missing["fc2.bias"]
    with pytest.raises(RuntimeError, match='Missing key.*"fc2.bias"'):
        b.load_state_dict(missing)
    res = b.load_state_dict(missing, strict=False)
    assert res.missing_keys == ["fc2.bias"]
    extra = dict(sd, extra=np.zeros(1))
    with pytest.raises(RuntimeError, match='Unexpected key.*"extra"'):
        b.load_state_dict(extra)


def test_pytorch_state_dict_loads_and_outputs_match():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc0 = torch.nn.Linear(600, 60)
            self.fc1 = torch.nn.Linear(60, 40)
            self.fc2 = torch.nn.Linear(40, 10)

        def forward(self, x):
            x = x.view(-1)
            x = torch.nn.functional.relu(self.fc0(x))
            x = torch.nn.functional.relu(self.fc1(x))
            return self.fc2(x)

    tnet = TorchNet().double()
    net = MyNet().double()
    net.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    img = np.random.default_rng(0).standard_normal((3, 10, 20))
    ti = torch.tensor(img, requires_grad=True)
    gi = gd.tensor(img, requires_grad=True)
    tout, gout = tnet(ti), net(gi)
    np.testing.assert_allclose(gout.detach().numpy(), tout.detach().numpy(), rtol=1e-9)
    (tout ** 2).sum().backward()
    (gout ** 2).sum().backward()
    np.testing.assert_allclose(gi.grad.numpy(), ti.grad.numpy(), rtol=1e-9, atol=1e-12)
    for (n, p), (tn, tp) in zip(net.named_parameters(), tnet.named_parameters()):
        assert n == tn
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_sequential_ordereddict_indexing_modulelist():
    seq = nn.Sequential(OrderedDict([("lin", nn.Linear(2, 3)), ("act", nn.Tanh())]))
    assert isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Tanh)
    assert len(seq) == 2 and [n for n, _ in seq.named_parameters()] == ["lin.weight", "lin.bias"]
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(list(ml.parameters())) == 6
    assert "(lin): Linear(in_features=2, out_features=3, bias=True)" in repr(seq)


def test_module_assignment_errors():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(gd.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Early()
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.weight = gd.zeros(2, 2)


@pytest.mark.parametrize("cls, fn", [
    (nn.ReLU, lambda x: np.maximum(x, 0)),
    (nn.Tanh, np.tanh),
    (nn.Sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    (nn.Softplus, lambda x: np.log1p(np.exp(x))),
    (nn.LeakyReLU, lambda x: np.where(x > 0, x, 0.01 * x)),
    (nn.Identity, lambda x: x),
])
def test_pointwise_modules(cls, fn):
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(cls()(gd.tensor(x)).numpy(), fn(x), rtol=1e-12)


def test_softmax_and_flatten_modules():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(nn.Softmax(dim=-1)(gd.tensor(x)).numpy(),
                               e / e.sum(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(nn.LogSoftmax(dim=-1)(gd.tensor(x)).numpy(),
                               np.log(e / e.sum(-1, keepdims=True)), rtol=1e-12)
    assert nn.Flatten()(gd.tensor(x)).shape == (2, 12)


def test_nearest_neighbor_predicts_argmin_and_trains_by_gradient_descent():
    gd.manual_seed(0)
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    X = np.concatenate([c + 0.3 * rng.standard_normal((50, 2)) for c in centers])
    model = nn.NearestNeighbor(3, 2).double()
    with gd.no_grad():
        model.weight.copy_(gd.tensor(X[[0, 50, 100]] + 1.0))
    Xt = gd.tensor(X)
    d = ((X[:, None, :] - model.weight.detach().numpy()[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(model(Xt).numpy(), d.argmin(1))
    np.testing.assert_allclose(model.distances(Xt).detach().numpy(), d, rtol=1e-12)
    assert model(Xt).dtype == gd.int64
    losses = []
    for _ in range(200):
        model.zero_grad()
        loss = model.distances(Xt).min(dim=1).values.mean()
        loss.backward()
        losses.append(loss.item())
        with gd.no_grad():
            model.weight.sub_(model.weight.grad * 0.1)
    assert losses[-1] < 0.25 * losses[0]
    found = model.weight.detach().numpy()
    for c in centers:
        assert np.min(np.linalg.norm(found - c, axis=1)) < 0.2
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        model(gd.zeros(4, 3, dtype=gd.float64))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_modules_reductions_against_numpy(reduction):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4))
    y = rng.standard_normal((6, 4))
    t = rng.integers(0, 4, 6)
    red = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction]
    np.testing.assert_allclose(nn.MSELoss(reduction=reduction)(gd.tensor(x), gd.tensor(y)).numpy(),
                               red((x - y) ** 2), rtol=1e-12)
    np.testing.assert_allclose(nn.L1Loss(reduction=reduction)(gd.tensor(x), gd.tensor(y)).numpy(),
                               red(np.abs(x - y)), rtol=1e-12)
    lse = np.log(np.exp(x).sum(1))
    ce = lse - x[np.arange(6), t]
    np.testing.assert_allclose(
        nn.CrossEntropyLoss(reduction=reduction)(gd.tensor(x), gd.tensor(t)).numpy(), red(ce),
        rtol=1e-12)
    logp = x - lse[:, None]
    np.testing.assert_allclose(
        nn.NLLLoss(reduction=reduction)(gd.tensor(logp), gd.tensor(t)).numpy(), red(ce),
        rtol=1e-12)
    p = 1 / (1 + np.exp(-x))
    yb = (y > 0).astype(float)
    bce = -(yb * np.log(p) + (1 - yb) * np.log(1 - p))
    np.testing.assert_allclose(
        nn.BCELoss(reduction=reduction)(gd.tensor(p), gd.tensor(yb)).numpy(), red(bce), rtol=1e-10)
    np.testing.assert_allclose(
        nn.BCEWithLogitsLoss(reduction=reduction)(gd.tensor(x), gd.tensor(yb)).numpy(), red(bce),
        rtol=1e-10)
    ys = np.where(y > 0, 1.0, -1.0)
    hinge = np.where(ys == 1, x, np.maximum(0, 1 - x))
    np.testing.assert_allclose(
        nn.HingeEmbeddingLoss(reduction=reduction)(gd.tensor(x), gd.tensor(ys)).numpy(),
        red(hinge), rtol=1e-12)


def test_loss_validation():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="out of bounds"):
        nn.CrossEntropyLoss()(gd.zeros(2, 3), gd.tensor([0, 3]))
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.BCELoss()(gd.tensor([1.5]), gd.tensor([1.0]))


def test_cross_entropy_stable_for_huge_logits():
    x = gd.tensor([[1e4, -1e4, 0.0], [3e4, 3e4, 3e4]], dtype=gd.float64, requires_grad=True)
    loss = F.cross_entropy(x, gd.tensor([0, 2]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), (0 + math.log(3)) / 2, rtol=1e-12)
    assert np.isfinite(x.grad.numpy()).all()


def test_clip_grad_norm():
    p = nn.Parameter(gd.zeros(4, dtype=gd.float64))
    p.grad = gd.tensor([3.0, 4.0, 0.0, 0.0], dtype=gd.float64)
    total = nn.utils.clip_grad_norm_([p], 1.0)
    assert abs(total.item() - 5.0) < 1e-12
    np.testing.assert_allclose(np.linalg.norm(p.grad.numpy()), 1.0, rtol=1e-5)
    p.grad = gd.tensor([np.inf, 0, 0, 0], dtype=gd.float64)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def test_init_functions():
    w = nn.Parameter(gd.empty(64, 32, dtype=gd.float64))
    nn.init.xavier_uniform_(w)
    a = math.sqrt(6 / (64 + 32))
    assert np.abs(w.detach().numpy()).max() <= a
    nn.init.constant_(w, 0.5)
    assert (w.detach().numpy() == 0.5).all()
    nn.init.zeros_(w)
    assert (w.detach().numpy() == 0).all()
    nn.init.normal_(w, 2.0, 0.1)
    assert abs(w.detach().numpy().mean() - 2.0) < 0.02
    with pytest.raises(ValueError, match="fewer than 2"):
        nn.init.xavier_uniform_(nn.Parameter(gd.zeros(3)))


def test_parameters_and_optimizer_state_are_64_byte_aligned_and_behave_like_plain_arrays():
    import pickle

    from graddesc import _aligned

    gd.manual_seed(0)
    m = gd.nn.Linear(300, 70)  # weight 84,000 bytes, bias 280 (below the threshold)
    w = m.weight._data
    assert w.ctypes.data % 64 == 0 and w.flags.c_contiguous and w.flags.writeable
    assert w.shape == (70, 300) and w.dtype == np.float32
    opt = gd.optim.Adam(m.parameters(), lr=1e-3)
    m(gd.ones(2, 300)).sum().backward()
    opt.step()
    assert opt.state[m.weight]["exp_avg"]._data.ctypes.data % 64 == 0
    m.to(gd.float64)
    assert m.weight._data.ctypes.data % 64 == 0 and m.weight.dtype == gd.float64
    # pickling, state_dict round trip and in-place writes see an ordinary array
    state = pickle.loads(pickle.dumps(m.state_dict()))
    np.testing.assert_array_equal(np.asarray(state["weight"]), m.weight.detach().numpy())
    for shape, dtype in [((3,), np.float32), ((256, 5), np.float64), ((0, 7), np.float32),
                         ((17, 33), np.int64)]:
        a = _aligned.full(shape, 2, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert (a == 2).all()
        if a.nbytes >= _aligned.MIN_BYTES:
            assert a.ctypes.data % 64 == 0
        c = _aligned.copy(np.arange(a.size).reshape(shape)[..., ::1], np.float32)
        np.testing.assert_array_equal(c, np.arange(a.size, dtype=np.float32).reshape(shape))
