"""physattn command line: every subcommand has --help with an example and runs."""

import pytest

from physattn import cli


@pytest.mark.parametrize("command", ["thermo", "dynamics", "symmetry", "grok"])
def test_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    assert f"physattn {command} --out" in capsys.readouterr().out


def test_missing_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2
