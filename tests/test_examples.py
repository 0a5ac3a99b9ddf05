"""The example scripts run as a newcomer would run them."""

from __future__ import annotations

import pathlib
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name, expect", [
    ("lecture_listing.py", "output:"),
    ("lecture.py", "equal to eager bit for bit: True"),
    ("convnet.py", "test accuracy:"),
])
def test_example_runs(name, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert expect in out
    if name == "lecture.py":
        assert "-> True" in out and (tmp_path / "lecture_graph.dot").exists()
