"""The command line as a person runs it: the main job, train options, draw, demos, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import graddesc as gd


def run(*args: str, cwd: str, timeout: float = 300,
        env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graddesc", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, check=False, env=env)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one-line error a failed command must end with (and no Python traceback)."""
    assert "Traceback" not in res.stderr, res.stderr
    return res.stderr.strip().splitlines()[-1]


def test_main_job_trains_digits_and_reports_test_accuracy(tmp_path):
    res = run(cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    m = re.fullmatch(r"test accuracy: (\d\.\d\d)", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) >= 0.95
    epoch_lines = [ln for ln in lines if ln.startswith("epoch")]
    assert len(epoch_lines) >= 10 and "train accuracy" in epoch_lines[0]
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1
    folder = tmp_path / "runs" / runs[0]
    assert (folder / "checkpoint.npz").exists() and (folder / "network.dot").exists()
    ckpt = gd.load(str(folder / "checkpoint.npz"))
    assert set(ckpt) == {"model", "optimizer", "epoch"}


def test_checkpoint_restores_the_reported_accuracy(tmp_path):
    from graddesc import cli

    res = run("train", "--epochs", "5", "--quiet", "--out", str(tmp_path / "r"), cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    acc = float(res.stdout.strip().splitlines()[-1].split(":")[1])
    net = cli.make_network(64, (64, 32), 10)
    net.load_state_dict(gd.load(str(tmp_path / "r" / "checkpoint.npz"))["model"])
    _, _, Xte, yte = gd.data.datasets.digits()
    assert abs(cli._accuracy(net, Xte, yte) - acc) <= 0.005


@pytest.mark.parametrize("args", [
    ["train", "--optimizer", "adam", "--epochs", "3"],
    ["train", "--batch-size", "full", "--epochs", "3"],
    ["train", "--batch-size", "1", "--epochs", "1"],
    ["train", "--data", "spirals", "--hidden", "16,16", "--epochs", "2"],
    ["train", "--optimizer", "zeroth", "--epochs", "1", "--threads", "1"],
])
def test_train_options(tmp_path, args):
    res = run(*args, "--quiet", "--out", str(tmp_path / "r"), cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("test accuracy: ")


@pytest.mark.parametrize("args, msg", [
    (["train", "--batch-size", "0"], "positive integer"),
    (["train", "--lr", "-1"], "positive"),
    (["train", "--optimizer", "newton"], "invalid choice"),
    (["train", "--hidden", "a,b"], "comma-separated"),
    (["--nope"], "unrecognized arguments"),
    (["demo", "unknown"], "invalid choice"),
])
def test_bad_arguments_exit_2(tmp_path, args, msg):
    res = run(*args, cwd=str(tmp_path))
    assert res.returncode == 2
    assert msg in res.stderr


def test_config_and_draw(tmp_path):
    res = run("config", cwd=str(tmp_path))
    assert res.returncode == 0 and "isa:" in res.stdout
    res = run("draw", "--out", "g.dot", cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith("digraph") and "cost C" in dot


@pytest.mark.parametrize("name", ["sgd-vs-gd", "preconditioned", "zeroth-order", "actor-critic"])
def test_demos(tmp_path, name):
    res = run("demo", name, "--out", str(tmp_path / name), cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    if name == "preconditioned":
        assert summary["matrix eta = H^-1"]["steps_to_1e-8"] == 1
        assert summary["scalar eta = 0.019"]["steps_to_1e-8"] > 100
    if name == "zeroth-order":
        ev = summary["evaluations_to_reach_1e-3_of_initial_loss"]
        assert all(v["spsa_evaluations"] > v["backprop_evaluations"] for v in ev.values())
        assert ev["128"]["spsa_evaluations"] > ev["2"]["spsa_evaluations"]
    if name == "sgd-vs-gd":
        ls = summary["least_squares"]
        for r in summary["runs"].values():
            assert abs(r["w1"] - ls["w1"]) < 0.15 and abs(r["w2"] - ls["w2"]) < 0.15
    if name == "actor-critic":
        assert summary["actor_critic"]["final_cost"] <= summary["goal_cost"]
    try:
        import matplotlib  # noqa: F401

        pngs = [f for f in os.listdir(tmp_path / name) if f.endswith(".png")]
        assert pngs or name == "actor-critic"
    except ImportError:
        pass


@pytest.mark.parametrize("args, msg", [
    (["train", "--out", "afile"], "argument --out: 'afile' exists and is not a folder"),
    (["train", "--out", "afile/run"], "argument --out: cannot create the folder 'afile/run'"),
    (["train", "--out", ""], "argument --out: expected a folder path, got ''"),
    (["train", "--threads", "2147483648"],
     "argument --threads: expected a thread count from 1 to 2147483647, got 2147483648"),
    (["train", "--threads", "0"], "argument --threads: expected a positive integer, got 0"),
    (["train", "--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["train", "--epochs", "-3"], "argument --epochs: expected a positive integer, got -3"),
    (["train", "--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["train", "--hidden", "64,,32"], "argument --hidden: expected comma-separated sizes like "
                                      "64,32, got '64,,32' (an empty size)"),
    (["train", "--hidden", "64,"], "(an empty size)"),
    (["train", "--hidden", "64,0"], "argument --hidden: hidden sizes must be positive"),
    (["train", "--hidden", "1000000000000000000000"], "argument --hidden: the 64-"
                                                      "1000000000000000000000-10 network has"),
    (["train", "--seed", "-1"], "argument --seed: expected a seed from 0 to 2**64-1, got -1"),
    (["train", "--seed", str(2 ** 64)], "argument --seed: expected a seed from 0 to 2**64-1"),
    (["train", "--seed", "1.5"], "argument --seed: expected an integer seed, got '1.5'"),
    (["train", "--data", "mnist"], "argument --data: invalid choice: 'mnist'"),
    (["train", "--optimizer", "gd", "--batch-size", "8"],
     "argument --batch-size: --optimizer gd is full-batch gradient descent"),
    (["bench", "--threads", "2147483648"], "argument --threads: expected a thread count"),
    (["draw", "--out", "missing/g.dot"], "argument --out: the folder 'missing' does not exist"),
    (["draw", "--out", "adir"], "argument --out: 'adir' is a folder, not a file name"),
    (["draw", "--out", "g.txt"], "argument --out: unsupported extension .txt"),
    (["draw", "--hidden", "64,,32"], "(an empty size)"),
    (["demo", "sgd-vs-gd", "--out", "afile"], "argument --out: 'afile' exists and is not a "
                                              "folder"),
    (["demo", "sgd-vs-gd", "--seed", "-1"], "argument --seed: expected a seed from 0"),
])
def test_bad_arguments_end_with_one_error_line(tmp_path, args, msg):
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "adir").mkdir()
    res = run(*args, cwd=str(tmp_path), timeout=120)
    assert res.returncode == 2
    line = error_line(res)
    assert line.startswith(f"graddesc {args[0]}: error: ") and msg in line, line
    assert (tmp_path / "afile").read_text() == "keep me"
    # nothing was created: no run folder, no output file
    assert sorted(os.listdir(tmp_path)) == ["adir", "afile"]
    assert os.listdir(tmp_path / "adir") == []


def test_out_folder_with_missing_parents_is_created(tmp_path):
    res = run("train", "--data", "spirals", "--epochs", "1", "--quiet", "--out", "new/deep/run",
              "--seed", str(2 ** 64 - 1), cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "new" / "deep" / "run" / "checkpoint.npz").exists()


@pytest.mark.parametrize("optimizer", ["sgd", "zeroth"])
@pytest.mark.parametrize("existing", [False, True])
def test_divergence_in_the_first_epoch_saves_nothing(tmp_path, optimizer, existing):
    if existing:
        (tmp_path / "parent" / "run").mkdir(parents=True)
    res = run("train", "--optimizer", optimizer, "--lr", "1e300", "--epochs", "2", "--quiet",
              "--out", "parent/run", cwd=str(tmp_path))
    assert res.returncode == 1
    line = error_line(res)
    m = re.fullmatch(r"graddesc train: error: training diverged: the loss is (nan|inf) at step "
                     r"(\d+) \(epoch 1\); try a smaller --lr \(it was 1e\+300\); (.*)", line)
    assert m, line
    assert int(m.group(2)) >= 2  # the first loss is evaluated before any update: finite
    if existing:  # the user's folder stays, empty
        assert m.group(3) == "nothing was saved in parent/run"
        assert os.listdir(tmp_path / "parent" / "run") == []
    else:  # the folders the run created are gone
        assert m.group(3) == "nothing was saved, so the run folder parent/run was removed"
        assert not (tmp_path / "parent").exists()
    assert "test accuracy" not in res.stdout


def test_divergence_after_a_checkpoint_keeps_it(tmp_path):
    # Adam moves every weight by about lr in its first step: with lr 1e13 the loss after one
    # full-batch step overflows float32
    from graddesc import cli

    res = run("train", "--data", "spirals", "--hidden", "16,16", "--optimizer", "adam",
              "--batch-size", "full", "--lr", "1e13", "--epochs", "3", "--quiet", "--out", "r",
              cwd=str(tmp_path))
    assert res.returncode == 1
    line = error_line(res)
    m = re.fullmatch(r"graddesc train: error: training diverged: the loss is (nan|inf) at step 2 "
                     r"\(epoch 2\); try a smaller --lr \(it was 1e\+13\); r keeps the checkpoint "
                     r"of epoch 1 and the loss of step 1 \(loss\.txt\)", line)
    assert m, line
    Xtr, ytr, _, _ = cli._load_data("spirals", 0)
    ce = gd.nn.CrossEntropyLoss()
    # step 1's loss is that of the initial network (seed 0), on the whole training set
    gd.manual_seed(0)
    first = cli.make_network(2, (16, 16), 3)
    logged = np.loadtxt(tmp_path / "r" / "loss.txt", ndmin=1)
    assert logged.shape == (1,)
    with gd.no_grad():
        assert abs(logged[0] - ce(first(Xtr), ytr).item()) <= 1e-4 * logged[0]
        # the checkpoint holds the parameters after step 1, where the loss is not finite
        ckpt = gd.load(str(tmp_path / "r" / "checkpoint.npz"))
        assert int(ckpt["epoch"]) == 1
        net = cli.make_network(2, (16, 16), 3)
        net.load_state_dict(ckpt["model"])
        assert all(np.isfinite(p.detach().numpy()).all() for p in net.parameters())
        assert not np.isfinite(ce(net(Xtr), ytr).item())


def _without_dot(folder) -> dict:
    """An environment in which no `dot` program is found: each PATH folder that holds one is
    replaced by a copy made of links to everything else in it (the editable install still
    needs cmake and the compiler, which may live beside dot)."""
    folder.mkdir()
    path = []
    for k, d in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if d and os.path.isfile(os.path.join(d, "dot")):
            shadow = folder / str(k)
            shadow.mkdir()
            for name in os.listdir(d):
                if name != "dot":
                    (shadow / name).symlink_to(os.path.join(d, name))
            d = str(shadow)
        path.append(d)
    return {**os.environ, "PATH": os.pathsep.join(path)}


def _fake_dot(folder, script: str) -> dict:
    """An environment whose `dot` program is the shell script `script`."""
    folder.mkdir()
    exe = folder / "dot"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return {**os.environ, "PATH": str(folder) + os.pathsep + os.environ.get("PATH", "")}


def test_draw_svg_without_graphviz_writes_the_dot_text(tmp_path):
    res = run("draw", "--out", "g.dot", cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    expect = (tmp_path / "g.dot").read_text()
    (tmp_path / "g.dot").unlink()
    res = run("draw", "--out", "g.svg", cwd=str(tmp_path), env=_without_dot(tmp_path / "bin"))
    assert res.returncode == 1
    assert error_line(res) == (
        "graddesc draw: error: g.svg needs Graphviz's 'dot' program, which is not installed "
        "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); wrote the DOT "
        "text to g.dot instead")
    assert (tmp_path / "g.dot").read_text() == expect
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="a shell-script stand-in for dot")
def test_draw_svg_renders_with_dot_and_reports_its_failure(tmp_path):
    res = run("draw", "--out", "g.dot", cwd=str(tmp_path))
    expect = (tmp_path / "g.dot").read_text()
    # a stand-in dot that keeps its input and answers with fixed SVG: the file written is dot's
    # output for the same DOT text
    env = _fake_dot(tmp_path / "bin", f'cat > "{tmp_path}/dot-input"\necho "<svg>ok</svg>"\n')
    res = run("draw", "--out", "g.svg", cwd=str(tmp_path), env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "g.svg").read_text() == "<svg>ok</svg>\n"
    assert (tmp_path / "dot-input").read_text() == expect
    env = _fake_dot(tmp_path / "bin2", 'echo "syntax error in line 3" >&2\nexit 1\n')
    res = run("draw", "--out", "h.svg", cwd=str(tmp_path), env=env)
    assert res.returncode == 1
    assert error_line(res) == "graddesc draw: error: dot failed: syntax error in line 3"
    assert not (tmp_path / "h.svg").exists()


def test_overflowing_update_is_caught_before_the_checkpoint(tmp_path):
    # full batch: one step per epoch, and the step with lr 1e300 overflows the float32 weights.
    # No loss is ever evaluated at those weights within the epoch; the run must still stop
    # before saving them or reporting an accuracy computed from them
    from graddesc import cli

    res = run("train", "--batch-size", "full", "--lr", "1e300", "--epochs", "2", "--quiet",
              "--out", "r", cwd=str(tmp_path))
    assert res.returncode == 1
    line = error_line(res)
    m = re.fullmatch(r"graddesc train: error: training diverged: the parameters are not finite "
                     r"after step 1 \(epoch 1, last loss ([0-9.]+)\); try a smaller --lr \(it "
                     r"was 1e\+300\); nothing was saved, so the run folder r was removed", line)
    assert m, line
    assert not (tmp_path / "r").exists() and "test accuracy" not in res.stdout
    # the loss named is step 1's: the initial network's (seed 0) on the whole training set
    Xtr, ytr, _, _ = cli._load_data("digits", 0)
    gd.manual_seed(0)
    net = cli.make_network(64, (64, 32), 10)
    with gd.no_grad():
        expect = gd.nn.CrossEntropyLoss()(net(Xtr), ytr).item()
    assert abs(float(m.group(1)) - expect) <= 1e-5 * expect


def test_loss_figure_gets_epoch_means_and_accuracies(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from graddesc import cli, viz

    seen = {}

    def fake_plot_loss(history, path=None, **curves):
        seen.update(curves, losses=list(history), path=path)

    monkeypatch.setattr(viz, "plot_loss", fake_plot_loss)
    out = tmp_path / "r"
    assert cli.main(["train", "--epochs", "3", "--quiet", "--out", str(out)]) == 0
    losses = np.loadtxt(out / "loss.txt")
    steps_per_epoch = -(-1437 // 32)  # 1,437 training digits in batches of 32
    assert seen["epoch_steps"] == [steps_per_epoch * e for e in (1, 2, 3)]
    np.testing.assert_allclose(seen["epoch_loss"], losses.reshape(3, -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(seen["losses"], losses, rtol=1e-5)
    net = cli.make_network(64, (64, 32), 10)
    net.load_state_dict(gd.load(str(out / "checkpoint.npz"))["model"])
    X, y, Xte, yte = gd.data.datasets.digits()
    assert seen["train_accuracy"][-1] == cli._accuracy(net, X, y)
    assert seen["test_accuracy"][-1] == cli._accuracy(net, Xte, yte)
    assert len(seen["train_accuracy"]) == len(seen["test_accuracy"]) == 3
    assert seen["path"] == os.path.join(str(out), "loss.png")


@pytest.mark.parametrize("args,steps", [
    (["--epochs", "2"], 2 * -(-1437 // 32)),
    (["--epochs", "3", "--batch-size", "full"], 3),
    (["--epochs", "1", "--batch-size", "100"], 15),
])
def test_progress_bar_total_is_the_real_number_of_steps(tmp_path, args, steps):
    res = run("train", *args, "--out", str(tmp_path / "r"), cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    counts = re.findall(r"(\d+)/(\d+) \[", res.stderr)
    assert counts, res.stderr[-500:]
    totals = {int(t) for _, t in counts}
    assert totals == {steps}, totals
    done, total = map(int, counts[-1])
    assert done == total  # the bar's last state: every step done
    assert len(np.loadtxt(tmp_path / "r" / "loss.txt", ndmin=1)) == steps
