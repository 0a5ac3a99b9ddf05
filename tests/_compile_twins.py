"""The check most compile tests make: a step run eagerly and through gd.compile, from the same
seed on the same data, gives the same losses and parameters bit for bit, and the compiled run
replays without any fallback warning."""

import warnings

import numpy as np


def assert_compiled_equals_eager(run, min_replays=2):
    """run(compiled: bool) -> (losses, parameter arrays, the function called). Returns the
    compiled run's function."""
    l1, p1, _ = run(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        l2, p2, f = run(True)
    assert f.stats["eager"] == 0 and f.stats["replayed"] >= min_replays, f.stats
    np.testing.assert_array_equal(l1, l2)  # (NaN-safe)
    assert len(p1) == len(p2)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    return f


def sgd_like_step(opt, loss_of):
    """The step every such test compiles: zero_grad, loss_of(*args), backward, opt.step()."""
    def step(*args):
        opt.zero_grad()
        loss = loss_of(*args)
        loss.backward()
        opt.step()
        return loss

    return step
