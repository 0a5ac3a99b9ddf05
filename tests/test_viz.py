"""graddesc.viz: block diagrams in the lecture's notation and matplotlib plots."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import graddesc as gd
from graddesc import nn, viz


def _net_and_loss():
    gd.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    x = gd.randn(4, 3, 4)
    y = gd.tensor([0, 1, 2, 1])
    return model, nn.CrossEntropyLoss()(model(x), y)


def _labels(dot: str) -> list:
    return re.findall(r'label="([^"]*)", shape', dot)


def test_collapsed_graph_uses_lecture_notation():
    model, loss = _net_and_loss()
    dot = viz.draw_graph(loss, model=model).dot
    labels = _labels(dot)
    assert "cost C = CrossEntropyLoss" in labels            # scalar-valued cost box
    assert {"1: Linear", "2: ReLU", "3: Linear"} <= set(labels)  # one block per module
    assert "x (4, 12)" in labels and "y (4)" in labels        # observed variables
    assert {"1.weight (5, 12)", "1.bias (5)", "3.weight (3, 5)", "3.bias (3)"} <= set(labels)
    assert "z (4, 5)" in labels                               # computed variables
    assert 'fillcolor="#f4cccc"' in dot and 'fillcolor="#d9d9d9"' in dot
    # each parameter feeds exactly its own block
    ids = dict(re.findall(r'(n\d+) \[label="([^"]*)"', dot))
    inv = {v: k for k, v in ids.items()}
    assert f'{inv["1.weight (5, 12)"]} -> {inv["1: Linear"]}' in dot
    assert f'{inv["3.bias (3)"]} -> {inv["3: Linear"]}' in dot


def test_expanded_graph_shows_every_op_and_gradient_norms():
    model, loss = _net_and_loss()
    g = viz.draw_graph(loss, model=model, collapse=False, show_grads=True)
    labels = _labels(g.dot)
    assert "Linear" in labels and "Relu" in labels and "cost C = CrossEntropy" in labels
    norms = [float(v) for v in re.findall(r'label="\|g\|=([0-9.e+-]+)"', g.dot)]
    assert norms and all(v >= 0 for v in norms)
    # the gradient-norm pass leaves .grad alone and the graph usable
    assert all(p.grad is None for p in model.parameters())
    loss.backward()
    w = model[3].weight
    expect = float(np.linalg.norm(w.grad.numpy()))
    ids = dict(re.findall(r'(n\d+) \[label="([^"]*)"', g.dot))
    wid = {v: k for k, v in ids.items()}["3.weight (3, 5)"]
    m = re.search(wid + r' -> n\d+ \[label="\|g\|=([0-9.e+-]+)"\]', g.dot)
    assert m and abs(float(m.group(1)) - expect) <= 5e-3 * expect  # printed to 3 digits


def test_draw_graph_without_model_and_errors():
    x = gd.randn(3, requires_grad=True)
    out = (x.tanh() * 2).sum()
    dot = viz.draw_graph(out).dot
    assert "cost C = Sum" in dot and "Tanh" in dot
    with pytest.raises(ValueError, match="no grad_fn"):
        viz.draw_graph(gd.ones(2))
    with pytest.raises(TypeError):
        viz.draw_graph(np.ones(2))


def test_save_dot_and_render(tmp_path):
    _, loss = _net_and_loss()
    g = viz.draw_graph(loss)
    p = g.save(str(tmp_path / "g.dot"))
    with open(p, encoding="utf-8") as f:
        assert f.read() == g.dot
    with pytest.raises(ValueError, match="extension"):
        g.save(str(tmp_path / "g.xyz"))
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="graphviz"):
            g.svg()
        assert g._repr_svg_() is None
    else:
        svg = g.svg()
        assert svg.lstrip().startswith("<?xml") or "<svg" in svg
        g.save(str(tmp_path / "g.svg"))
        assert (tmp_path / "g.svg").stat().st_size > 0


def test_plots_write_files(tmp_path):
    pytest.importorskip("matplotlib")
    viz.plot_loss([3.0, 2.0, 1.0, 0.5], path=str(tmp_path / "loss.png"))
    assert (tmp_path / "loss.png").stat().st_size > 0

    def loss(a, b):
        return (a - 1) ** 2 + 3 * (b + 1) ** 2

    viz.plot_landscape(loss, (-2, 2, -2, 2), {"gd": np.array([[0, 0], [0.5, -0.5]])},
                       path=str(tmp_path / "land.png"))
    assert (tmp_path / "land.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"\(T, 2\)"):
        viz.plot_landscape(loss, (-2, 2, -2, 2), {"bad": np.zeros((3, 3))})
    import matplotlib.pyplot as plt

    plt.close("all")
