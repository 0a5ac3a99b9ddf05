"""The command line as a person runs it: the main job, train options, draw, demos, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import graddesc as gd


def run(*args: str, cwd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graddesc", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, check=False)


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
