"""Devices, inference_mode, gd.compile(module), graddesc.utils.data and the nn additions made
for PyTorch ports (issue 16), against PyTorch's behaviour where it is installed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graddesc as gd
import graddesc.nn as nn
import graddesc.nn.functional as F
from graddesc.autograd import gradcheck, gradgradcheck
from graddesc.utils import data as udata


# ---- devices ------------------------------------------------------------------------------------
def test_cpu_device_like_torch():
    d = gd.device("cpu")
    assert d.type == "cpu" and d.index is None and str(d) == "cpu"
    assert repr(d) == "device(type='cpu')"
    assert gd.device("cpu:0") == gd.device("cpu", 0) != d
    assert repr(gd.device("cpu", 0)) == "device(type='cpu', index=0)"
    assert gd.ones(2).device == d and gd.device(d) == d
    assert gd.cuda.is_available() is False and gd.cuda.device_count() == 0
    assert gd.backends.mps.is_available() is False
    assert gd.backends.cudnn.is_available() is False


def test_reproducibility_switches_are_accepted():
    gd.backends.cudnn.deterministic = True
    gd.backends.cudnn.benchmark = False
    gd.use_deterministic_algorithms(True)
    assert gd.are_deterministic_algorithms_enabled()
    gd.use_deterministic_algorithms(False)
    assert not gd.are_deterministic_algorithms_enabled()
    with pytest.raises(TypeError, match="mode"):
        gd.use_deterministic_algorithms("on")


DEVICE_USES = {
    "device": lambda dev: gd.device(dev),
    "Tensor.to": lambda dev: gd.ones(2).to(dev),
    "Tensor.to(device=)": lambda dev: gd.ones(2).to(device=dev),
    "Module.to": lambda dev: nn.Linear(2, 2).to(dev),
    "zeros": lambda dev: gd.zeros(2, device=dev),
    "tensor": lambda dev: gd.tensor([1.0], device=dev),
    "randn": lambda dev: gd.randn(2, device=dev),
    "arange": lambda dev: gd.arange(3, device=dev),
    "zeros_like": lambda dev: gd.zeros_like(gd.ones(2), device=dev),
    "Linear": lambda dev: nn.Linear(2, 2, device=dev),
    "linspace": lambda dev: gd.linspace(0, 1, 3, device=dev),
    "randperm": lambda dev: gd.randperm(3, device=dev),
    "Generator": lambda dev: gd.Generator(device=dev),
    "rand_like": lambda dev: gd.rand_like(gd.ones(2), device=dev),
}


@pytest.mark.parametrize("use", sorted(DEVICE_USES))
@pytest.mark.parametrize("dev", ["cuda", "cuda:0", "mps"])
def test_other_devices_raise_the_same_error(use, dev):
    with pytest.raises(RuntimeError, match=f"device '{dev.split(':')[0]}' is not available: "
                                           "graddesc runs on the CPU only"):
        DEVICE_USES[use](dev)
    DEVICE_USES[use]("cpu")  # and the CPU works everywhere
    DEVICE_USES[use](gd.device("cpu"))


def test_device_object_for_cuda_is_refused_too():
    with pytest.raises(RuntimeError, match="CPU only"):
        gd.ones(2).cuda()
    with pytest.raises(RuntimeError, match="CPU only"):
        nn.Linear(1, 1).cuda()
    with pytest.raises(TypeError, match="device must be"):
        gd.zeros(2, device=3.0)


def test_to_device_and_dtype_together():
    t = gd.ones(2).to("cpu", gd.float64)
    assert t.dtype == gd.float64
    m = nn.Linear(2, 2).to(gd.device("cpu"), dtype=gd.float64)
    assert m.weight.dtype == gd.float64


# ---- inference_mode -----------------------------------------------------------------------------
def test_inference_mode_context_and_decorator():
    x = gd.ones(2, requires_grad=True)
    with gd.inference_mode():
        assert not gd.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert gd.is_grad_enabled()
    with gd.inference_mode(False):
        assert (x * 2).requires_grad

    @gd.inference_mode()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and gd.is_grad_enabled()
    with gd.no_grad(), gd.inference_mode(False):
        assert not gd.is_grad_enabled()  # False leaves the mode as it is, as in PyTorch
    with pytest.raises(TypeError, match="mode"):
        gd.inference_mode("yes")


def test_grad_modes_as_bare_decorators():
    x = gd.ones(2, requires_grad=True)

    @gd.inference_mode
    def f(t):
        return t * 2

    @gd.no_grad
    def g(t):
        return t * 2

    assert not f(x).requires_grad and not g(x).requires_grad and f.__name__ == "f"
    with gd.no_grad():
        assert gd.enable_grad(lambda t: t * 2)(x).requires_grad


# ---- compile(module) ----------------------------------------------------------------------------
def test_compile_of_a_module_keeps_autograd():
    m = nn.Linear(3, 2)
    cm = gd.compile(m)
    x = gd.ones(4, 3)
    out = cm(x)
    assert out.requires_grad
    out.sum().backward()
    np.testing.assert_allclose(m.weight.grad.numpy(), np.full((2, 3), 4.0))


# ---- utils.data ---------------------------------------------------------------------------------
def test_utils_data_is_gd_data():
    assert udata.DataLoader is gd.data.DataLoader
    assert udata.TensorDataset is gd.data.TensorDataset
    assert udata.random_split is gd.data.random_split


@pytest.mark.parametrize("lengths,sizes", [([7, 3], [7, 3]), ([0.7, 0.3], [7, 3]),
                                           ([0.5, 0.25, 0.25], [6, 2, 2]),
                                           ([1 / 3] * 3, [4, 3, 3])])
def test_random_split(lengths, sizes):
    ds = udata.TensorDataset(gd.arange(10))
    parts = udata.random_split(ds, lengths, generator=gd.Generator().manual_seed(1))
    assert [len(p) for p in parts] == sizes
    seen = sorted(int(p[i][0]) for p in parts for i in range(len(p)))
    assert seen == list(range(10))  # a partition
    again = udata.random_split(ds, lengths, generator=gd.Generator().manual_seed(1))
    assert [p.indices for p in again] == [p.indices for p in parts]
    pytest.importorskip("torch")
    from torch.utils.data import random_split as trs

    assert [len(p) for p in trs(range(10), lengths)] == sizes  # PyTorch's remainder rule


def test_random_split_errors():
    with pytest.raises(ValueError, match="sum of input lengths"):
        udata.random_split(range(10), [3, 3])
    with pytest.raises(TypeError, match="generator"):
        udata.random_split(range(10), [5, 5], generator=np.random.default_rng(0))


def test_samplers():
    g = gd.Generator().manual_seed(0)
    perm = list(udata.RandomSampler(range(6), generator=g))
    assert sorted(perm) == list(range(6))
    draws = list(udata.RandomSampler(range(3), replacement=True, num_samples=50, generator=g))
    assert len(draws) == 50 and set(draws) <= {0, 1, 2}
    bs = udata.BatchSampler(udata.SequentialSampler(range(7)), 3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5]] and len(bs) == 2
    w = udata.WeightedRandomSampler([0.0, 1.0, 3.0], num_samples=4000, generator=g)
    counts = np.bincount(list(w), minlength=3)
    assert counts[0] == 0 and 0.2 < counts[1] / 4000 < 0.3
    with pytest.raises(ValueError, match="weights"):
        udata.WeightedRandomSampler([-1.0, 1.0], 2)


def test_dataloader_options():
    ds = udata.TensorDataset(gd.arange(10).float(), gd.arange(10))
    sampler = udata.SubsetRandomSampler([1, 3, 5], generator=gd.Generator().manual_seed(0))
    got = [b[1].tolist() for b in udata.DataLoader(ds, batch_size=2, sampler=sampler)]
    assert sorted(sum(got, [])) == [1, 3, 5] and [len(b) for b in got] == [2, 1]
    loader = udata.DataLoader(ds, batch_size=4, pin_memory=True, num_workers=0)
    assert len(loader) == 3 and [len(b[0]) for b in loader] == [4, 4, 2]
    with pytest.raises(ValueError, match="mutually exclusive"):
        udata.DataLoader(ds, sampler=sampler, shuffle=True)
    unbatched = list(udata.DataLoader(ds, batch_size=None))
    assert len(unbatched) == 10 and unbatched[3][1].item() == 3


def test_iterable_and_concat_datasets():
    class Stream(udata.IterableDataset):
        def __iter__(self):
            return iter(range(5))

    batches = [b.tolist() for b in udata.DataLoader(Stream(), batch_size=2)]
    assert batches == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="shuffle"):
        udata.DataLoader(Stream(), shuffle=True)
    cat = udata.ConcatDataset([[1, 2], [3, 4, 5]])
    assert [cat[i] for i in range(len(cat))] == [1, 2, 3, 4, 5] and cat[-1] == 5
    with pytest.raises(IndexError):
        cat[5]


# ---- nn additions -------------------------------------------------------------------------------
def test_dropout_train_eval_and_scaling():
    gd.manual_seed(0)
    d = nn.Dropout(0.25)
    x = gd.ones(200, 100)
    y = d(x).numpy()
    kept = y != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    gd.manual_seed(0)
    np.testing.assert_array_equal(d(x).numpy(), y)  # seeded by graddesc's generator
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)
    xg = gd.ones(3, 4, dtype=gd.float64, requires_grad=True)
    gd.manual_seed(3)
    out = F.dropout(xg, 0.5)
    out.sum().backward()
    np.testing.assert_array_equal(xg.grad.numpy(), out.detach().numpy())  # mask / (1 - p)


def test_containers():
    md = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 1)})
    assert list(md.keys()) == ["a", "b"] and len(list(md.parameters())) == 4
    pl = nn.ParameterList([nn.Parameter(gd.ones(2)), gd.zeros(3)])
    assert len(pl) == 2 and [n for n, _ in pl.named_parameters()] == ["0", "1"]
    assert pl[1].requires_grad
    pd = nn.ParameterDict({"w": nn.Parameter(gd.ones(2))})
    assert "w" in pd and [n for n, _ in pd.named_parameters()] == ["w"]
    with pytest.raises(TypeError, match="Parameter or Tensor"):
        pl.append(3.0)


def _torch_pair(rng, shape):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal(shape) * 2, rng.standard_normal(shape) * 2
    return torch, a, b


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_huber_smooth_l1_against_torch(rng, reduction):
    torch, a, b = _torch_pair(rng, (5, 3))
    for gfn, tfn, kw in [(F.huber_loss, torch.nn.functional.huber_loss, {"delta": 0.7}),
                         (F.smooth_l1_loss, torch.nn.functional.smooth_l1_loss, {"beta": 1.3}),
                         (F.smooth_l1_loss, torch.nn.functional.smooth_l1_loss, {"beta": 0.0})]:
        x, t = gd.tensor(a, requires_grad=True), gd.tensor(b)
        tx = torch.tensor(a, requires_grad=True)
        y, ty = gfn(x, t, reduction=reduction, **kw), tfn(tx, torch.tensor(b), reduction=reduction,
                                                         **kw)
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
        y.sum().backward()
        ty.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    assert gradcheck(lambda u: F.huber_loss(u, gd.tensor(b), delta=0.7), (gd.tensor(a,
                     requires_grad=True),))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_against_torch(rng, reduction, log_target):
    torch = pytest.importorskip("torch")
    logp = np.log(rng.dirichlet(np.ones(4), size=3))
    q = rng.dirichlet(np.ones(4), size=3)
    q[0, 1] = 0.0  # a zero target contributes 0
    tgt = np.log(q + 1e-300) if log_target else q
    x = gd.tensor(logp, requires_grad=True)
    tx = torch.tensor(logp, requires_grad=True)
    y = nn.KLDivLoss(reduction=reduction, log_target=log_target)(x, gd.tensor(tgt))
    with warnings.catch_warnings():  # PyTorch warns that 'mean' is not the KL divergence
        warnings.simplefilter("ignore", UserWarning)
        ty = torch.nn.KLDivLoss(reduction=reduction, log_target=log_target)(tx,
                                                                           torch.tensor(tgt))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10)


def test_one_hot_normalize_silu(rng):
    y = gd.tensor([0, 2, 1, 2])
    np.testing.assert_array_equal(F.one_hot(y).numpy(), np.eye(3, dtype=np.int64)[[0, 2, 1, 2]])
    assert F.one_hot(y, num_classes=5).shape == (4, 5)
    with pytest.raises(RuntimeError, match="out of range"):
        F.one_hot(y, num_classes=2)
    a = rng.standard_normal((3, 4))
    x = gd.tensor(a, requires_grad=True)
    np.testing.assert_allclose(F.normalize(x, dim=1).detach().numpy(),
                               a / np.linalg.norm(a, axis=1, keepdims=True), rtol=1e-12)
    assert gradcheck(lambda t: F.normalize(t, dim=0), (x,))
    assert gradgradcheck(lambda t: F.normalize(t, p=3.0, dim=1), (x,))
    np.testing.assert_allclose(nn.SiLU()(x).detach().numpy(), a / (1 + np.exp(-a)), rtol=1e-12)
    assert gradcheck(F.silu, (x,))
