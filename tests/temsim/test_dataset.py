"""Datasets: per-sample determinism, resume after SIGKILL, device-count invariance."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from temsim import dataset, noise

ROOT = Path(__file__).resolve().parents[2]
CHEAP_NOISE = noise.MixedSpec(types=("gaussian", "salt_and_pepper", "speckle"))
CONFIG = dataset.DatasetConfig(
    n_samples=16,
    shape=(32, 32),
    sampling=0.1,
    seed=3,
    chunk=2,
    simulator="synthetic",
    noise=CHEAP_NOISE,
)
HRTEM = dataset.DatasetConfig(
    n_samples=2,
    shape=(32, 32),
    sampling=0.2,
    margin=4,
    chunk=2,
    layers=(1, 2),
    simulator="hrtem",
    noise=CHEAP_NOISE,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """CONFIG generated in this process on one device, in one go."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    return dataset.generate(CONFIG, path)


def _assert_same_store(a: dataset.Dataset, b: dataset.Dataset):
    assert a.complete and b.complete
    sa, sb = a[:], b[:]
    np.testing.assert_array_equal(sa.clean, sb.clean)
    np.testing.assert_array_equal(sa.noisy, sb.noisy)
    for name in dataset.PARAM_NAMES:
        np.testing.assert_array_equal(sa.params[name], sb.params[name])


def _run(script: str, *args, devices: int = 1, **popen):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": str(ROOT),
    }
    code = "import jax; jax.config.update('jax_enable_x64', True)\n"
    code += textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


# ----------------------------------------------------------------- config


def test_config_json_round_trip_and_validation(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(HRTEM.to_dict()))
    assert dataset.DatasetConfig.load(path) == HRTEM
    with pytest.raises(ValueError, match=r"families must be .* got \('graphite',\)"):
        dataset.DatasetConfig(families=("graphite",))
    with pytest.raises(ValueError, match=r"defocus must be a range .* got \(5, 1\)"):
        dataset.DatasetConfig(defocus=(5, 1))
    with pytest.raises(ValueError, match=r"unknown config keys \['dose'\]"):
        dataset.DatasetConfig.from_dict({"dose": 3})


# ------------------------------------------------------- content, determinism


def test_samples_are_pure_functions_of_config_and_index(reference):
    assert len(reference) == 16 and reference.config == CONFIG
    for i in (0, 7, 15):
        s, r = reference[i], dataset.sample(CONFIG, i)
        np.testing.assert_array_equal(s.clean, r.clean)
        np.testing.assert_array_equal(s.noisy, r.noisy)
        assert s.params == r.params
    p = reference[:].params
    kinds = {noise.NOISE_TYPES[int(k)] for k in p["noise_kind"]}
    assert kinds <= set(CHEAP_NOISE.types) and len(kinds) >= 2
    for i, k in enumerate(p["noise_kind"]):
        lo, hi = getattr(CHEAP_NOISE, noise.NOISE_TYPES[int(k)])
        assert lo <= p["noise_level"][i] <= hi
    assert len(np.unique(p["defocus"])) == 16  # every sample its own draw
    assert np.all((p["defocus"] >= -100) & (p["defocus"] <= 100))


def dataclass_replace(config, **changes):
    return dataset.DatasetConfig.from_dict({**config.to_dict(), **changes})


def test_partial_store_is_readable_and_resumes(tmp_path, reference):
    path = tmp_path / "p.zarr"
    ds = dataset.generate(CONFIG, path, max_chunks=3)
    assert not ds.complete
    np.testing.assert_array_equal(ds.ready(), np.arange(6))
    np.testing.assert_array_equal(ds[5].noisy, reference[5].noisy)
    with pytest.raises(IndexError, match=r"samples \[6\] are not written yet"):
        ds[6]
    # a crash mid-chunk leaves data without its done flag: it must be rewritten
    import zarr

    zarr.open_group(str(path), mode="r+")["clean"][6:8] = -1.0
    ds = dataset.generate(CONFIG, path)
    _assert_same_store(ds, reference)


def test_resume_after_sigkill(tmp_path, reference):
    path = tmp_path / "k.zarr"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(CONFIG.to_dict()))
    # the writer reports each finished chunk and then, from the second on, pauses
    # 2 s, so the kill lands before the last chunk however fast the chunks are (a
    # loaded machine once let all 8 finish before the kill); a crash in the middle
    # of a chunk is covered by test_partial_store_is_readable_and_resumes above
    script = """
    import sys, time
    from temsim import dataset
    def report(done, total):
        print(done, flush=True)
        if done >= 4:
            time.sleep(2.0)
    cfg = dataset.DatasetConfig.load(sys.argv[1])
    dataset.generate(cfg, sys.argv[2], progress=report)
    """
    proc = _run(script, cfg, path)
    seen = 0
    while seen < 4:  # two chunks of two samples are flagged done
        line = proc.stdout.readline()
        if not line:
            pytest.fail(proc.communicate()[1])
        seen = int(line)
    live = dataset.open(path)  # readable while the writer runs
    np.testing.assert_array_equal(live[0:4].noisy, reference[0:4].noisy)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = dataset.open(path)
    n_done = int(partial.done_chunks().sum())
    assert 2 <= n_done < CONFIG.n_chunks
    _assert_same_store(dataset.generate(CONFIG, path), reference)


@pytest.mark.slow
def test_eight_devices_give_bit_identical_samples(tmp_path, reference):
    cfg, cfg_hrtem = tmp_path / "c.json", tmp_path / "h.json"
    cfg.write_text(json.dumps(CONFIG.to_dict()))
    cfg_hrtem.write_text(json.dumps(HRTEM.to_dict()))
    script = """
    import sys, jax
    from temsim import dataset
    assert len(jax.local_devices()) == 8, jax.local_devices()
    for c, out in zip(sys.argv[1::2], sys.argv[2::2]):
        dataset.generate(dataset.DatasetConfig.load(c), out)
    from temsim.loader import Loader
    with Loader(sys.argv[2], patch=8, batch_size=8, epochs=1) as loader:
        batch = next(iter(loader))
    assert len(batch.noisy.sharding.device_set) == 8, batch.noisy.sharding
    """
    args = (cfg, tmp_path / "8.zarr", cfg_hrtem, tmp_path / "h8.zarr")
    proc = _run(script, *args, devices=8)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _assert_same_store(dataset.open(tmp_path / "8.zarr"), reference)
    single = dataset.generate(HRTEM, tmp_path / "h1.zarr")
    _assert_same_store(dataset.open(tmp_path / "h8.zarr"), single)


# --------------------------------------------------------------- simulator


def test_hrtem_samples_are_physical(tmp_path):
    ds = dataset.generate(HRTEM, tmp_path / "h.zarr")
    s = ds[:]
    assert s.clean.shape == (2, 32, 32) and s.clean.dtype == np.float32
    # intensity per unit incident beam: mean ~1 (little lost outside the aperture),
    # with lattice contrast
    mean = s.clean.mean(axis=(1, 2))
    assert np.all((mean > 0.8) & (mean < 1.05)), mean
    assert np.all(s.clean.std(axis=(1, 2)) > 0.01)
    assert np.all(s.clean > 0)
    r = dataset.sample(HRTEM, 1)
    np.testing.assert_array_equal(r.clean, s.clean[1])
    np.testing.assert_array_equal(r.noisy, s.noisy[1])


# --------------------------------------------------------------- bad input


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_path_holding_something_else_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("precious")
    with pytest.raises(ValueError, match="exists and is a file"):
        dataset.generate(CONFIG, f)
    assert f.read_text() == "precious"
    d = tmp_path / "dir"
    d.mkdir()
    (d / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="non-empty directory that is not a temsim"):
        dataset.generate(CONFIG, d)
    assert [p.name for p in d.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="not a temsim dataset"):
        dataset.open(d)


def test_resume_with_another_config_is_refused_and_nothing_lost(tmp_path):
    path = tmp_path / "r.zarr"
    dataset.generate(CONFIG, path, max_chunks=1)
    before = _snapshot(path)
    changed = dataclass_replace(CONFIG, seed=99, n_samples=20)
    with pytest.raises(ValueError, match=r"n_samples: stored 16, given 20; seed"):
        dataset.generate(changed, path)
    assert _snapshot(path) == before


def test_cli_help_shows_example_and_run_matches_api(tmp_path, capsys, reference):
    import argparse

    from temsim.dataset_cli import register

    parser = argparse.ArgumentParser(prog="temsim")
    register(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["dataset", "--help"])
    assert "temsim dataset --config config.json --out" in capsys.readouterr().out
    args = parser.parse_args(["dataset", "--print-config"])
    assert args.func(args) == 0
    assert dataset.DatasetConfig.from_dict(json.loads(capsys.readouterr().out))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(CONFIG.to_dict()))
    out = tmp_path / "o.zarr"
    args = parser.parse_args(["dataset", "--config", str(cfg), "--out", str(out)])
    assert args.func(args) == 0
    _assert_same_store(dataset.open(out), reference)
