"""Automatic differentiation: backward, grad, Function, gradcheck, functional Jacobians.

`graddesc.autograd.functional` (jacobian, hessian, vjp, jvp, ...) is built on the ops, which sit
above this package: the package `graddesc` imports it, so after `import graddesc` it is
`graddesc.autograd.functional` as usual (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from graddesc.autograd import engine
from graddesc.autograd.engine import backward, grad
from graddesc.autograd.function import Function, detect_anomaly
from graddesc.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from graddesc.autograd.gradcheck import gradcheck, gradgradcheck

__all__ = ["Function", "backward", "detect_anomaly", "enable_grad", "functional", "grad",
           "gradcheck", "gradgradcheck", "inference_mode", "is_grad_enabled", "no_grad",
           "set_grad_enabled"]
