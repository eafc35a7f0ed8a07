"""The `temsim` command line (temsim.cli)."""

import numpy as np
import pytest

from temsim import cli


def test_simulate_writes_npy_and_png(tmp_path, capsys):
    out = tmp_path / "sub" / "graphene.npy"
    code = cli.main(
        ["simulate", "--structure", "graphene", "--repeat", "2", "1", "--energy",
         "80e3", "--sampling", "0.1", "--defocus=-50", "--Cs=-1e5",
         "--semiangle-cutoff", "30", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    image = np.load(out)
    assert image.shape == (43, 50) and np.all(np.isfinite(image))
    assert 0.8 < image.mean() <= 1.0 + 1e-9
    assert out.with_suffix(".png").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "--help"]])
def test_help_shows_an_example(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and "temsim simulate --structure graphene" in text


def test_bad_value_is_reported_not_raised(tmp_path, capsys):
    code = cli.main(["simulate", "--energy", "-1", "--out", str(tmp_path / "x.npy")])
    assert code == 2
    assert "energy must be a positive" in capsys.readouterr().err


def test_registry_builds_the_simulate_subcommand():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "simulate" in sub.choices and cli.register_simulate in cli.COMMANDS
