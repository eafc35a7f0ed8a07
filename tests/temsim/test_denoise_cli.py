"""temsim.denoise.cli: output files appear whole or not at all."""

import numpy as np
import pytest

from temsim.denoise import cli


def test_output_is_written_atomically(tmp_path):
    out = tmp_path / "den.npy"
    cli._save_array(str(out), np.ones((4, 4)))
    np.testing.assert_array_equal(np.load(out), np.ones((4, 4), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["den.npy"]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_save(path, array):
        with open(path, "wb") as f:
            f.write(b"half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cli._save_array(str(tmp_path / "den.npy"), np.ones((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_format_is_refused_before_writing(tmp_path):
    with pytest.raises(SystemExit, match=".npy or .tif"):
        cli._save_array(str(tmp_path / "den.png"), np.ones((4, 4)))
    assert list(tmp_path.iterdir()) == []
