"""Module.get_submodule / get_parameter / get_buffer: dotted paths and PyTorch's errors."""

import pytest

import graddesc as gd
import graddesc.nn as nn


def _net(lib):
    return lib.nn.Sequential(lib.nn.Linear(2, 3), lib.nn.Sequential(lib.nn.BatchNorm1d(3),
                                                                    lib.nn.Linear(3, 1)))


def test_paths_reach_the_objects():
    net = _net(gd)
    assert net.get_submodule("") is net
    assert net.get_submodule("1") is net[1]
    assert net.get_submodule("1.1") is net[1][1]
    assert net.get_parameter("1.1.weight") is net[1][1].weight
    assert net.get_parameter("0.bias") is net[0].bias
    assert net.get_buffer("1.0.running_mean") is net[1][0].running_mean


@pytest.mark.parametrize("call, target", [
    ("get_submodule", "2"), ("get_submodule", "0.weight"), ("get_submodule", "1.0.x"),
    ("get_parameter", "0.nope"), ("get_parameter", "1.0.running_mean"), ("get_parameter", "1"),
    ("get_buffer", "1.0.weight"), ("get_buffer", "0.nope"), ("get_buffer", "5.running_mean"),
])
def test_errors_match_pytorch(call, target):
    with pytest.raises(AttributeError) as ours:
        getattr(_net(gd), call)(target)
    torch = pytest.importorskip("torch")
    with pytest.raises(AttributeError) as theirs:
        getattr(_net(torch), call)(target)
    assert str(ours.value) == str(theirs.value)


def test_target_must_be_a_string():
    with pytest.raises(TypeError, match="target must be a str"):
        nn.Linear(2, 2).get_parameter(0)
