"""The model zoo (benchmarks/zoo.py): every model's training step, compiled with gd.compile, is
captured (no fallback warning: pytest turns warnings into errors) and replays bitwise what the
eager step computes, over several steps whose data change scale between calls, so that
clipping, masks and max/argmax choices differ from the recorded ones. Host reads of tensor
values during a recording are poisoned: a captured step must have made none."""

from __future__ import annotations

import contextlib
import importlib.util
import pathlib
import sys
import warnings

import numpy as np
import pytest

import graddesc as gd
from graddesc import _compile_state

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "zoo.py"
_spec = importlib.util.spec_from_file_location("graddesc_bench_zoo", _PATH)
zoo = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = zoo  # (dataclasses look their module up there)
_spec.loader.exec_module(zoo)

# input scales per call: the first records, the others flip clipping (lecture's norm above or
# below 1), saturation and the distance ordering of the prototypes
SCALES = (1.0, 40.0, 0.01, 7.0, 1.0)

# NumPy functions that read array values into a host decision (or compute outside the kernels)
_READS = ("any", "all", "isnan", "isfinite", "isinf", "nonzero", "count_nonzero", "max", "min",
          "amax", "amin", "sum", "argmax", "argmin", "where", "maximum", "minimum", "abs",
          "greater", "less", "equal", "not_equal", "greater_equal", "less_equal")


@contextlib.contextmanager
def poisoned_host_reads(hits: list):
    """While a gd.compile recording runs, every call of the NumPy functions in _READS on a
    float array is logged in `hits` (those a recording must not make unless it falls back)."""
    saved = {n: getattr(np, n) for n in _READS}

    def wrap(name, real):
        def spy(*args, **kwargs):
            if _compile_state.active is not None and any(
                    isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in args):
                hits.append(name)
            return real(*args, **kwargs)
        return spy

    for n, f in saved.items():
        setattr(np, n, wrap(n, f))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(np, n, f)


def _bits(t) -> bytes:
    a = t.detach().numpy() if isinstance(t, gd.Tensor) else np.asarray(t)
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("batch", zoo.BATCHES)
@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_zoo_step_captured_and_bitwise_equal(name, batch):
    make = zoo.MODELS[name]
    eager, comp = make(gd, batch, seed=3), make(gd, batch, seed=3)
    step = gd.compile(comp.step)
    rng = np.random.default_rng(11)
    hits: list = []
    for k, scale in enumerate(SCALES):
        x, y = comp.data(rng, scale)
        loss_e = eager.step(gd.from_numpy(x.copy()), gd.from_numpy(y.copy()))
        with poisoned_host_reads(hits):
            loss_c = step(gd.from_numpy(x), gd.from_numpy(y))
        assert _bits(loss_c) == _bits(loss_e), f"call {k}: loss differs"
        for j, (pe, pc) in enumerate(zip(eager.params, comp.params)):
            assert _bits(pc) == _bits(pe), f"call {k}: parameter {j} differs"
            assert _bits(pc.grad) == _bits(pe.grad), f"call {k}: gradient {j} differs"
    assert hits == [], f"the recording read tensor values on the host: {hits}"
    stats = step.stats
    assert stats["eager"] == 0 and stats["replayed"] >= len(SCALES) - 2, stats


def test_zoo_steps_differ_between_scales():
    """The data really flip the recorded choices: lecture's clipping leaves the small gradients
    of one scale alone and scales the large ones of another down to norm 1 (else the bitwise
    test above would not test a replayed decision)."""
    m = zoo.lecture(gd, 32, seed=3)
    rng = np.random.default_rng(11)
    norms = []
    for scale in (0.01, 40.0):
        x, y = m.data(rng, scale)
        m.step(gd.from_numpy(x), gd.from_numpy(y))
        g = np.concatenate([p.grad.numpy().ravel().astype(np.float64) for p in m.params])
        norms.append(float(np.sqrt((g * g).sum())))
    assert norms[0] < 0.9 and abs(norms[1] - 1.0) < 1e-4, norms


def test_host_read_falls_back_once_not_stale():
    """A step whose Python code reads a value (a data-dependent branch) must not be replayed
    with the recorded branch: it falls back to eager with one warning and stays correct."""
    def make():
        w = gd.nn.Parameter(gd.from_numpy(np.ones(4, np.float32)))
        opt = gd.optim.SGD([w], lr=0.1)

        def step(x):
            opt.zero_grad()
            loss = (w * x).sum()
            if loss.item() > 0:  # host read: the branch depends on the data
                loss = loss * 2.0
            loss.backward()
            opt.step()
            return loss
        return w, step

    we, eager = make()
    wc, step = make()
    step = gd.compile(step)
    with pytest.warns(RuntimeWarning, match="reads a tensor's value"):
        step(gd.from_numpy(np.ones(4, np.float32)))
    eager(gd.from_numpy(np.ones(4, np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only
        for v in (-1.0, 1.0, -3.0):
            x = np.full(4, v, np.float32)
            assert _bits(step(gd.from_numpy(x))) == _bits(eager(gd.from_numpy(x)))
    assert _bits(wc) == _bits(we)
    assert step.stats["replayed"] == 0


def test_poison_sees_a_numpy_read():
    """The poison itself works: a NumPy read inside a recording is logged (and that step
    falls back, since its result is not kernel memory)."""
    w = gd.nn.Parameter(gd.from_numpy(np.ones(3, np.float32)))

    def step(x):
        y = gd.from_numpy(np.maximum(x.detach().numpy(), 0.0)) * w
        return y.sum()

    hits: list = []
    with poisoned_host_reads(hits), pytest.warns(RuntimeWarning):
        gd.compile(step)(gd.from_numpy(np.ones(3, np.float32)))
    assert "maximum" in hits
