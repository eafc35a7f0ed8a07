"""Every tutorial in notebooks/ runs end to end at small size (SMOKE_TEST=1)."""

import os
import pathlib
import runpy

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.py"))


def test_there_are_tutorials():
    assert NOTEBOOKS, "notebooks/ holds no tutorial"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, capsys):
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert os.environ["SMOKE_TEST"] == "1"
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out  # a tutorial that prints nothing taught nothing
