"""A zoo of small models written the way users write them, each defined once for a library
module `lib` (graddesc or torch): the same code builds the model, its optimizer and one
training step on either library. Used by benchmarks/bench_models.py (timings) and
tests/test_zoo.py (every step must be captured by gd.compile, bitwise equal to eager).

Every model: `make(lib, batch, seed)` returns a Model with `step(x, y)` (zero_grad, forward,
loss, backward, update; returns the loss), `params` (the parameters, in order) and
`data(rng, scale)` (a float32 batch as NumPy arrays: x, y). Weights come from a NumPy generator,
so both libraries start from the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass
class Model:
    step: Callable[[Any, Any], Any]
    params: list
    data: Callable[[np.random.Generator, float], tuple]


def _linear(lib: Any, rng: np.random.Generator, n_in: int, n_out: int) -> Any:
    layer = lib.nn.Linear(n_in, n_out)
    bound = 1.0 / np.sqrt(n_in)
    with lib.no_grad():
        layer.weight.copy_(lib.from_numpy(rng.uniform(-bound, bound, (n_out, n_in))
                                          .astype(np.float32)))
        layer.bias.copy_(lib.from_numpy(rng.uniform(-bound, bound, n_out).astype(np.float32)))
    return layer


def _param(lib: Any, a: np.ndarray) -> Any:
    return lib.nn.Parameter(lib.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))


def _classes(rng: np.random.Generator, batch: int, n_in: int, n_cls: int, scale: float) -> tuple:
    x = (scale * rng.standard_normal((batch, n_in))).astype(np.float32)
    return x, rng.integers(0, n_cls, batch).astype(np.int64)


def _norm(h: Any) -> Any:
    """Normalisation over features, written by hand."""
    h = h - h.mean(1, keepdim=True)
    return h / ((h * h).mean(1, keepdim=True) + 1e-5) ** 0.5


def resmlp(lib: Any, batch: int, seed: int = 0) -> Model:
    """(a) 64 -> 256 -> 2 residual blocks of 256 (hand-written norm, tanh) -> 10, Adam, CE."""
    rng = np.random.default_rng(seed)
    inp = _linear(lib, rng, 64, 256)
    blocks = [_linear(lib, rng, 256, 256) for _ in range(2)]
    head = _linear(lib, rng, 256, 10)
    layers = [inp, *blocks, head]
    params = [p for m in layers for p in m.parameters()]
    opt = lib.optim.Adam(params, lr=1e-3)
    F = lib.nn.functional

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        h = inp(x)
        for blk in blocks:
            h = h + lib.tanh(blk(_norm(h)))
        loss = F.cross_entropy(head(_norm(h)), y)
        loss.backward()
        opt.step()
        return loss

    return Model(step, params, lambda r, s: _classes(r, batch, 64, 10, s))


def autoencoder(lib: Any, batch: int, seed: int = 0) -> Model:
    """(b) 784-128-32-128-784 with sigmoid, MSE, SGD with momentum."""
    rng = np.random.default_rng(seed)
    sizes = [784, 128, 32, 128, 784]
    layers = [_linear(lib, rng, i, o) for i, o in zip(sizes[:-1], sizes[1:])]
    params = [p for m in layers for p in m.parameters()]
    opt = lib.optim.SGD(params, lr=0.05, momentum=0.9)
    F = lib.nn.functional

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        h = x
        for layer in layers:
            h = lib.sigmoid(layer(h))
        loss = F.mse_loss(h, y)
        loss.backward()
        opt.step()
        return loss

    def data(r: np.random.Generator, s: float) -> tuple:
        x = (s * r.random((batch, 784))).astype(np.float32)
        return x, x.copy()

    return Model(step, params, data)


def logreg(lib: Any, batch: int, seed: int = 0) -> Model:
    """(c) logistic regression 784 -> 10 with an explicit L2 penalty 1e-4 * (W*W).sum()."""
    rng = np.random.default_rng(seed)
    lin = _linear(lib, rng, 784, 10)
    params = list(lin.parameters())
    opt = lib.optim.SGD(params, lr=0.1)
    F = lib.nn.functional

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        W = lin.weight
        loss = F.cross_entropy(lin(x), y) + 1e-4 * (W * W).sum()
        loss.backward()
        opt.step()
        return loss

    return Model(step, params, lambda r, s: _classes(r, batch, 784, 10, s))


def lecture(lib: Any, batch: int, seed: int = 0) -> Model:
    """(d) the MLP 784-256-128-10 with ReLU (graddesc._bench's), Adam, clip_grad_norm_."""
    rng = np.random.default_rng(seed)
    sizes = [784, 256, 128, 10]
    layers = [_linear(lib, rng, i, o) for i, o in zip(sizes[:-1], sizes[1:])]
    params = [p for m in layers for p in m.parameters()]
    opt = lib.optim.Adam(params, lr=1e-3)
    F = lib.nn.functional

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        h = x
        for layer in layers[:-1]:
            h = lib.relu(layer(h))
        loss = F.cross_entropy(layers[-1](h), y)
        loss.backward()
        lib.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    return Model(step, params, lambda r, s: _classes(r, batch, 784, 10, s))


def prototypes(lib: Any, batch: int, seed: int = 0) -> Model:
    """(e) a prototype (RBF / nearest-neighbour) classifier: a 784 -> 32 embedding, 10
    prototypes, logits = -squared distance written as x2 - 2 x P^T + p2; SGD."""
    rng = np.random.default_rng(seed)
    embed = _linear(lib, rng, 784, 32)
    P = _param(lib, rng.standard_normal((10, 32)))
    params = [*embed.parameters(), P]
    opt = lib.optim.SGD(params, lr=0.01)
    F = lib.nn.functional

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        z = embed(x)
        x2 = (z * z).sum(1, keepdim=True)
        p2 = (P * P).sum(1)
        d = x2 - 2 * (z @ P.t()) + p2
        loss = F.cross_entropy(-d, y)
        loss.backward()
        opt.step()
        return loss

    return Model(step, params, lambda r, s: _classes(r, batch, 784, 10, s))


def polyreg(lib: Any, batch: int, seed: int = 0) -> Model:
    """(f) polynomial regression on features x, x**2, x**3 with a hand-written MSE; SGD."""
    rng = np.random.default_rng(seed)
    w = _param(lib, 0.1 * rng.standard_normal((3, 1)))
    b = _param(lib, np.zeros(1))
    params = [w, b]
    opt = lib.optim.SGD(params, lr=0.01)

    def step(x: Any, y: Any) -> Any:
        opt.zero_grad()
        feats = lib.cat([x, x ** 2, x ** 3], 1)
        pred = feats @ w + b
        loss = ((pred - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    def data(r: np.random.Generator, s: float) -> tuple:
        x = (s * r.uniform(-1, 1, (batch, 1))).astype(np.float32)
        y = (0.5 * x - x ** 3 + 0.1 * r.standard_normal((batch, 1))).astype(np.float32)
        return x, y

    return Model(step, params, data)


MODELS = {"resmlp": resmlp, "autoencoder": autoencoder, "logreg": logreg, "lecture": lecture,
          "prototypes": prototypes, "polyreg": polyreg}
BATCHES = (1, 32, 256)
