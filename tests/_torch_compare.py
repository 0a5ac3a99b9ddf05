"""Shared helpers of the PyTorch-parity tests of the ported functions (test_port_linalg.py,
test_port_shape_math.py): forward and input gradients against PyTorch when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import graddesc as gd

try:
    import torch
except ImportError:  # the PyTorch comparisons skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def _g(a, grad=False):
    return gd.tensor(np.asarray(a), requires_grad=grad)


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


def _tol(dt):
    return dict(rtol=1e-6, atol=1e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _vs_torch(gfn, tfn, arrays, dt=np.float64, grad=True, tol=None):
    """Forward and input gradients (of sum(out * w), w fixed) equal PyTorch's; float arrays are
    cast to dt (and differentiated), integer ones (indices) are passed as they are."""
    arrays = [np.asarray(a, dtype=dt) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in arrays]
    gi = [_g(a, grad and a.dtype.kind == "f") for a in arrays]
    ti = [_t(a, grad and a.dtype.kind == "f") for a in arrays]
    go, to = gfn(*gi), tfn(*ti)
    tol = tol or _tol(dt)
    assert tuple(go.shape) == tuple(to.shape)
    np.testing.assert_allclose(go.detach().numpy(), to.detach().numpy(), **tol)
    if grad and go.numel() and go.dtype in (gd.float32, gd.float64):
        w = np.random.default_rng(1).standard_normal(tuple(go.shape)).astype(dt)
        (go * _g(w)).sum().backward()
        (to * _t(w)).sum().backward()
        for a, b in zip(gi, ti):
            if b.grad is not None:
                np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **tol)
    return go
