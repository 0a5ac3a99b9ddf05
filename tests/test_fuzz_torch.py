"""Differential fuzzer against PyTorch (issue 21, "No wrong result, ever").

Hypothesis generates small random programs (tests/_fuzz_programs.py: leaves from NumPy data,
elementwise ops with scalars and broadcasting, reductions, matmul and F.linear, views and slices,
in-place ops and setitem, softmax, losses, then backward or autograd.grad with create_graph and a
second backward, sometimes SGD/Adam steps), runs each on graddesc and on PyTorch, and requires
equal values (after every line and at the end), gradients of every leaf and requires_grad flags,
within per-dtype tolerances, or the same class of error at the same line.

The default run is a fixed budget (3000 programs, about a minute on 2 cores) with a fixed seed
(derandomize=True), for CI:

    pytest tests/test_fuzz_torch.py

A release runs a larger budget, optionally from another seed (then not derandomized):

    GRADDESC_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_torch.py
    GRADDESC_FUZZ_EXAMPLES=20000 GRADDESC_FUZZ_SEED=7 pytest tests/test_fuzz_torch.py

Until the view bug of issue 21 is fixed, the random run fails on it (the regressions below
too); GRADDESC_FUZZ_SKIP_VIEW_BUG=1 leaves that pattern out of the generator so that a long run
can look for other bugs. Bugs found besides it are strict xfail tests (test_known_bug_*) and left
out of the generator where tests/_fuzz_programs.py names them.

A failure prints the shrunk program as Python source over `m` (the library) and `F`; paste it
into REGRESSIONS below to keep it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, seed, settings

import graddesc as gd
from _fuzz_programs import Line, Program, RejectedError, compare, programs, run

torch = pytest.importorskip("torch")

EXAMPLES = int(os.environ.get("GRADDESC_FUZZ_EXAMPLES", "3000"))
SEED = os.environ.get("GRADDESC_FUZZ_SEED")


def check(program: Program) -> None:
    """Runs `program` on both libraries; fails with the program and every difference."""
    try:
        ref = run(program, torch, torch.nn.functional, check_guards=True)
    except RejectedError as why:
        assume(False)  # not meaningful: see the module docstring of _fuzz_programs
        raise AssertionError("unreachable") from why
    got = run(program, gd, gd.nn.functional)
    diffs = compare(program, got, ref)
    assert not diffs, ("graddesc differs from PyTorch on\n" + program.source() + "\n"
                       + "\n".join(diffs))


def _fuzz_settings(f):
    f = settings(max_examples=EXAMPLES, derandomize=SEED is None, deadline=None,
                 database=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.filter_too_much])(f)
    return seed(int(SEED))(f) if SEED is not None else f


@_fuzz_settings
@given(programs())
def test_random_programs_match_torch(program: Program) -> None:
    check(program)


def _program(dtype: str, source: str) -> Program:
    return Program(dtype, [Line(code) for code in source.strip().splitlines()])


_X = "t0 = m.tensor([[1., 2., 3.], [4., 5., 6.]], dtype=m.float64, requires_grad=True)\n"

# Programs the fuzzer found (shrunk, verbatim) and the variants of the same bugs listed in the
# issues, replayed on every run whatever the random run draws.
REGRESSIONS = {
    # Issue 21's view bug as the default run finds it from scratch (3000 examples, float32,
    # seed fixed by derandomize), shrunk: the view t2 of t1 taken before t1.add_ keeps the graph
    # of t1's old value, so t0.grad is -1 (graddesc) instead of 0 (PyTorch).
    "view_found_by_fuzzer": ("float32", """
t0 = m.tensor(1.5, dtype=m.float32, requires_grad=True)
t1 = t0.neg()
t2 = t1.unsqueeze(0)
t1.add_(t0)
loss = t2.sum()
loss.backward()
"""),
    # The same bug as issue 21 states it: x.grad row 1 is [16, 20, 24], PyTorch [32, 40, 48].
    "view_row_mul_": ("float64", _X + "t1 = t0 * 1\nt2 = t1[1]\nt1.mul_(2)\n"
                      "loss = (t2 * t2).sum()\nloss.backward()"),
    "view_t_mul_": ("float64", _X + "t1 = t0 * 1\nt2 = t1.t()\nt1.mul_(3)\n"
                    "loss = (t2 * t2).sum()\nloss.backward()"),
    "view_row_sub_": ("float64", _X + "t1 = t0 * 1\nt2 = t1[1]\nt1.sub_(t0 * t0)\n"
                      "loss = (t2 * t2).sum()\nloss.backward()"),
    "view_row_setitem": ("float64", _X + "t1 = t0 * 1\nt2 = t1[1]\nt1[1] = t0[0] * 5\n"
                         "loss = (t2 * t2).sum()\nloss.backward()"),
    "view_column_mul_": ("float64", _X + "t1 = t0 * 1\nt2 = t1[:, 0]\nt1.mul_(2)\n"
                         "loss = (t2 * t2).sum()\nloss.backward()"),
    "view_sum": ("float64", _X + "t1 = t0 * 1\nt2 = t1[1]\nt1.mul_(2)\n"
                 "loss = t2.sum()\nloss.backward()"),
    "view_linear": ("float64", _X + "t1 = t0 * 1\nt2 = t1[1]\nt1.mul_(2)\n"
                    "t8 = m.tensor([[1., -1., 2.], [0.5, 0.25, -2.]], dtype=m.float64, "
                    "requires_grad=True)\n"
                    "loss = (F.linear(t2, t8) ** 2).sum()\nloss.backward()"),
    # Found by a long run (GRADDESC_FUZZ_SEED=1): the same bug with a constant base; after
    # t1.add_(t0) the view t2 requires grad in PyTorch, in graddesc it stays a constant.
    "view_of_constant_base": ("float64", _X + "t1 = m.tensor([[1., 0.5, 2.], [0.25, 1., -1.]], "
                              "dtype=m.float64)\nt2 = t1.t()\nt1.add_(t0)\n"
                              "loss = (t2 * t2).sum()\nloss.backward()"),
    # h = layer(x); skip = h[:, :k]; h.mul_(mask): the residual block of the issue (a mask of
    # zeros and ones hides the bug: scaling by m twice or once is the same)
    "view_skip_mask": ("float64", _X + "t8 = m.tensor([[1., -1., 2.], [0.5, 0.25, -2.], "
                       "[1., 1., 1.]], dtype=m.float64, requires_grad=True)\n"
                       "t1 = F.linear(t0, t8)\nt2 = t1[:, :2]\n"
                       "t1.mul_(m.tensor([1., 0.5, 2.], dtype=m.float64))\n"
                       "loss = (t2 * t2).sum() + t1.sum()\nloss.backward()"),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    dtype, source = REGRESSIONS[name]
    check(_program(dtype, source))


_A = "t0 = m.tensor([1.5, -0.5], dtype=m.float64, requires_grad=True)\nt1 = t0 * 1.0\n"
_END = "loss = (t1 * t1).sum()\nloss.backward()"

# Other bugs the fuzzer found, shrunk by hand to their core. The random run's generator leaves
# each one out (tests/_fuzz_programs.py names it where it does) so that it can look for more;
# strict xfail: once a bug is fixed its test passes, fails as XPASS, and both its marker here
# and its exclusion in the generator go.
# Bugs the fuzzer found that are fixed now, kept as regressions (shrunk by hand to their core).
FIXED_BUGS = {
    # A: fill_/zero_ on a non-leaf dropped requires_grad and the graph (graddesc raised "element
    # 0 of tensors does not require grad"; PyTorch gives t0.grad = [0, 0]).
    "A_fill_detaches": _A + "t1.fill_(2.0)\n" + _END,
    "A_zero_detaches": _A + "t1.zero_()\nloss = t1.sum()\nloss.backward()",
    # B: in-place ops saved the tensor they overwrite, so backward raised "modified by an
    # inplace operation" where PyTorch gives the gradient.
    "B_clamp_": _A + "t1.clamp_(-1.0, 0.5)\n" + _END,
    "B_div_scalar": _A + "t1.div_(2.0)\n" + _END,
    "B_div_tensor": _A + "t1.div_(m.tensor([2.0, 3.0], dtype=m.float64))\n" + _END,
    "B_mul_grad_tensor": _A + "t1.mul_(t0)\n" + _END,
    "B_divided_then_add_": _A + "t2 = t1 / -1.5\nt1.add_(-1.5)\n"
    "loss = (t1 + t2).sum()\nloss.backward()",
    "B_divided_by_constant_tensor_then_add_": _A + "t2 = t1 / m.tensor([2.0, -4.0], "
    "dtype=m.float64)\nt1.add_(-1.5)\nloss = (t1 + t2).sum()\nloss.backward()",
    # (found under GRADDESC_ISA=avx2: Linear saved its input even with the weight frozen)
    "B_linear_frozen_weight_then_add_": _A + "t2 = F.linear(t1, m.tensor([[1.5, -2.0]], "
    "dtype=m.float64))\nt1.add_(-1.5)\nloss = t2.sum()\nloss.backward()",
    "B_linear_frozen_weight_3d_then_mul_": "t0 = m.tensor([[[1.5, -0.5]]], dtype=m.float64, "
    "requires_grad=True)\nt1 = t0 * 1.0\nt2 = F.linear(t1, m.tensor([[1.5, -2.0]], "
    "dtype=m.float64))\nt1.mul_(2.0)\nloss = (t2 * t2).sum()\nloss.backward()",
    "B_const_mul_grad_tensor": _A + "t2 = m.tensor([2.0, 3.0], dtype=m.float64)\n"
    "t2.mul_(t0)\nt1 = t1 + t2\n" + _END,
    # C: copy_ of a constant into a non-leaf kept the old graph: t0.grad = [4, 6] where PyTorch
    # gives [0, 0]. A wrong result.
    "C_copy_constant": _A + "t1.copy_(m.tensor([2.0, 3.0], dtype=m.float64))\n" + _END,
    # F: an in-place op on cross_entropy(reduction='none')'s result (a view) raised.
    "F_cross_entropy_none_inplace": (
        "t0 = m.tensor([[1.5, -0.5]], dtype=m.float64, requires_grad=True)\n"
        "t1 = F.cross_entropy(t0, m.tensor([0]), reduction='none')\n"
        "t1.mul_(2.0)\nloss = t1.sum()\nloss.backward()"),
    # G: softmax/log_softmax over a dim other than the last returned a non-contiguous tensor,
    # so view(-1) raised where PyTorch's result is contiguous (and reshape copied).
    "G_softmax_dim0_view": (
        "t0 = m.tensor([[1.5, 0.75], [0.25, -1.0]], dtype=m.float64, requires_grad=True)\n"
        "t1 = t0.softmax(dim=0)\nt2 = t1.view(-1)\n"
        "loss = (t2 * t2).sum()\nloss.backward()"),
    "G_softmax_dim0_reshape_then_zero_": (
        "t0 = m.tensor([[1.5, 0.75], [0.25, -1.0]], dtype=m.float64, requires_grad=True)\n"
        "t1 = t0.softmax(dim=0)\nt2 = t1.reshape(-1)\nt1.zero_()\n"
        "loss = (t2 * t2).sum() + t0.sum()\nloss.backward()"),
    # B: c / a (c a number) saved a, so an in-place op on a afterwards made backward raise
    # "modified by an inplace operation" where PyTorch (reciprocal(a) * c: it saves 1 / a)
    # gives the gradient.
    "B_constant_divided_by_then_add_": _A + "t2 = -1.5 / t1\nt1.add_(-1.5)\n"
    "loss = (t1 + t2).sum()\nloss.backward()",
}


@pytest.mark.parametrize("name", sorted(FIXED_BUGS))
def test_fixed_bug(name: str) -> None:
    check(_program("float64", FIXED_BUGS[name]))


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="graddesc bug E")
def test_known_bug_E_zero_grad_is_none() -> None:
    """E: copy_ over a non-leaf drops the edge to the old value's inputs: t0.grad stays None in
    graddesc where PyTorch gives zeros (compare() treats the two as equal, so that the random
    run looks past it; this test does not)."""
    grads = []
    for m in (gd, torch):
        t0 = m.tensor([1.5, -0.5], dtype=m.float64, requires_grad=True)
        t1 = -t0
        t1.copy_(m.tensor([2.0, 3.0], dtype=m.float64, requires_grad=True) * 1.0)
        t1.sum().backward()
        grads.append(None if t0.grad is None else t0.grad.tolist())
    assert grads[0] == grads[1] == [0.0, 0.0]
