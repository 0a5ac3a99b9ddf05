"""Differential fuzzer against PyTorch (issue 21, "No wrong result, ever").

Hypothesis generates small random programs (tests/_fuzz_programs.py: leaves from NumPy data,
elementwise ops with scalars and broadcasting, reductions, matmul and F.linear, views and slices,
in-place ops and setitem, softmax, losses, then backward or autograd.grad with create_graph and a
second backward, sometimes SGD/Adam steps), runs each on graddesc and on PyTorch, and requires
equal values (after every line and at the end), gradients of every leaf and requires_grad flags,
within per-dtype tolerances, or the same class of error at the same line.

The default run is a fixed budget with a fixed seed (derandomize=True), short enough for CI:

    pytest tests/test_fuzz_torch.py

A release runs a larger budget, optionally from another seed (then not derandomized):

    GRADDESC_FUZZ_EXAMPLES=3000 pytest tests/test_fuzz_torch.py
    GRADDESC_FUZZ_EXAMPLES=3000 GRADDESC_FUZZ_SEED=7 pytest tests/test_fuzz_torch.py

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

EXAMPLES = int(os.environ.get("GRADDESC_FUZZ_EXAMPLES", "300"))
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


# Programs the fuzzer found, shrunk, replayed on every run.
REGRESSIONS = {}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    dtype, source = REGRESSIONS[name]
    check(_program(dtype, source))
