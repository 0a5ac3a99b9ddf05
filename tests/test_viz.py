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
    nodes, edges = _parse_dot(g.dot)
    (wid,) = [i for i, lab in nodes.items() if lab[0] == "3.weight (3, 5)"]
    (label,) = [lab for (a, _), lab in edges.items() if a == wid]
    assert _close(_norm_of(label), expect)  # the weight's only use: its share is all of .grad
    assert _close(_norm_of(nodes[wid][1]), expect)


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
    # a dot in a folder name is no extension: a name without one gets the DOT text
    (tmp_path / "runs.v2").mkdir()
    g.save(str(tmp_path / "runs.v2" / "graph"))
    assert (tmp_path / "runs.v2" / "graph").read_text(encoding="utf-8") == g.dot
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


def _parse_dot(dot: str) -> tuple:
    """({node id: label lines}, {(a, b): edge label}) of a drawn graph."""
    nodes = {i: lab.split("\\n") for i, lab in re.findall(r'(n\d+) \[label="([^"]*)", ', dot)}
    edges = {(a, b): lab for a, b, lab in
             re.findall(r'(n\d+) -> (n\d+)(?: \[label="([^"]*)"\])?;', dot)}
    return nodes, edges


def _norm_of(label: str) -> float:
    m = re.fullmatch(r"\|g\|=([0-9.e+-]+)", label)
    assert m, label
    return float(m.group(1))


def _close(printed: float, exact: float) -> bool:
    return abs(printed - exact) <= 5e-3 * abs(exact)  # printed to 3 significant digits


def test_fan_out_edges_carry_their_own_share_and_the_variable_the_sum():
    # z = 2w feeds tanh and z * z: by the chain rule its consumers contribute 1 - tanh(z)^2 and
    # 2z to dC/dz, and the variable z gets their sum (the lecture's fan-out rule)
    w_np = np.array([0.3, -1.2, 2.0])
    w = gd.tensor(w_np, requires_grad=True)
    z = w * 2
    cost = z.tanh().sum() + (z * z).sum()
    nodes, edges = _parse_dot(viz.draw_graph(cost, show_grads=True).dot)
    z_np = 2 * w_np
    share_tanh, share_square = 1 - np.tanh(z_np) ** 2, 2 * z_np
    total = share_tanh + share_square
    tanh = next(i for i, lab in nodes.items() if lab == ["Tanh"])
    (zid,) = [a for a, b in edges if b == tanh]
    assert nodes[zid][0] == "z (3)"
    out = {b: lab for (a, b), lab in edges.items() if a == zid}
    assert len(out) == 2
    (square,) = set(out) - {tanh}
    assert nodes[square] == ["Mul"]
    assert _close(_norm_of(out[tanh]), np.linalg.norm(share_tanh))
    assert _close(_norm_of(out[square]), np.linalg.norm(share_square))
    assert _close(_norm_of(nodes[zid][1]), np.linalg.norm(total))
    # the norms differ enough that a share printed as the total would fail the checks above
    assert not _close(np.linalg.norm(total), np.linalg.norm(share_square))
    # the leaf w: one consumer (w * 2), whose share is the whole of dC/dw = 2 dC/dz
    (wid,) = [i for i, lab in nodes.items() if lab[0] == "w (3)"]
    (wedge,) = [lab for (a, _), lab in edges.items() if a == wid]
    assert _close(_norm_of(wedge), np.linalg.norm(2 * total))
    assert _close(_norm_of(nodes[wid][1]), np.linalg.norm(2 * total))


def test_tied_weight_edges_carry_each_blocks_share():
    # one Parameter used by two Linear blocks; the oracle is the same network with two separate
    # (equal) weights: their gradients are the two uses' contributions to dC/dW
    def net(tied: bool):
        gd.manual_seed(1)
        model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
        if tied:
            model[2].weight = model[0].weight
        else:
            with gd.no_grad():
                model[2].weight.copy_(model[0].weight)
        x = gd.randn(5, 3)
        y = gd.tensor([0, 2, 1, 1, 0])
        return model, nn.CrossEntropyLoss()(model(x), y)

    untied, loss = net(tied=False)
    loss.backward()
    share0, share2 = untied[0].weight.grad.numpy(), untied[2].weight.grad.numpy()
    model, loss = net(tied=True)
    nodes, edges = _parse_dot(viz.draw_graph(loss, model=model, show_grads=True).dot)
    inv = {lab[0]: i for i, lab in nodes.items()}
    wid = inv["0.weight (3, 3)"]
    assert _close(_norm_of(edges[(wid, inv["0: Linear"])]), np.linalg.norm(share0))
    assert _close(_norm_of(edges[(wid, inv["2: Linear"])]), np.linalg.norm(share2))
    assert _close(_norm_of(nodes[wid][1]), np.linalg.norm(share0 + share2))
    assert not _close(np.linalg.norm(share0 + share2), np.linalg.norm(share2))
    assert all(p.grad is None for p in model.parameters())


def test_plot_loss_draws_epoch_means_and_accuracy_beside_the_raw_loss():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    losses = rng.uniform(0.5, 2.0, 10)
    ends = [4, 7, 10]  # epochs of unequal length
    means = [losses[:4].mean(), losses[4:7].mean(), losses[7:].mean()]
    ax = viz.plot_loss(losses, epoch_loss=means, epoch_steps=ends,
                       train_accuracy=[0.5, 0.7, 0.9], test_accuracy=[0.4, 0.6, 0.8])
    raw, epoch = ax.lines
    np.testing.assert_array_equal(raw.get_xydata(), np.c_[np.arange(1, 11), losses])
    np.testing.assert_array_equal(epoch.get_xydata(), np.c_[ends, means])
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    acc = {line.get_label(): line.get_xydata() for line in twin.lines}
    np.testing.assert_array_equal(acc["train accuracy"], np.c_[ends, [0.5, 0.7, 0.9]])
    np.testing.assert_array_equal(acc["test accuracy"], np.c_[ends, [0.4, 0.6, 0.8]])
    assert twin.get_ylim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "loss per step", "epoch mean", "train accuracy", "test accuracy"]
    plt.close(ax.figure)


def test_plot_loss_takes_a_history_and_checks_lengths():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    gd.manual_seed(0)
    model = nn.Linear(2, 1)
    X, y = gd.randn(8, 2), gd.randn(8, 1)
    loader = gd.data.DataLoader(gd.data.TensorDataset(X, y), batch_size=4)
    h = gd.fit(model, nn.MSELoss(), loader, gd.optim.SGD(model.parameters(), lr=0.1), epochs=3,
               progress=False)
    ax = viz.plot_loss(h)
    # epoch means default to the History's, at the end of each epoch (2 steps per epoch)
    np.testing.assert_allclose(ax.lines[1].get_xydata(),
                               np.c_[[2, 4, 6], np.reshape(h.loss, (3, 2)).mean(1)])
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="test_accuracy has 2 values, expected one per epoch"):
        viz.plot_loss([1.0, 0.5, 0.2], epoch_loss=[0.9, 0.5, 0.2], test_accuracy=[0.1, 0.2])
    plt.close("all")
