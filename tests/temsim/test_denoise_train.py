"""Training: losses, schedule, pure jitted step, SIGKILL-resume, 8-device sharding."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from temsim.denoise import metrics, models, train

ROOT = Path(__file__).resolve().parents[2]


def _tiny():
    return models.DnCNN(depth=3, features=4, rngs=nnx.Rngs(0))


def test_losses_match_their_definitions(key):
    k1, k2 = jax.random.split(key)
    p = jax.random.uniform(k1, (2, 32, 32), jnp.float32)
    c = jax.random.uniform(k2, (2, 32, 32), jnp.float32)
    l1 = train.loss_function("l1")(p, c)
    l2 = train.loss_function("l2")(p, c)
    ms = train.loss_function("ms_ssim")(p, c)
    np.testing.assert_allclose(l1, jnp.mean(jnp.abs(p - c)), rtol=1e-6)
    np.testing.assert_allclose(l2, jnp.mean((p - c) ** 2), rtol=1e-6)
    np.testing.assert_allclose(ms, 1 - jnp.mean(metrics.ms_ssim(p, c)), rtol=1e-5)
    mix = train.loss_function({"l1": 0.84, "ms_ssim": 0.16})(p, c)
    np.testing.assert_allclose(mix, 0.84 * l1 + 0.16 * ms, rtol=1e-5)
    with pytest.raises(ValueError, match="loss must be one of"):
        train.loss_function("l3")


def test_schedule_warms_up_then_decays():
    cfg = train.TrainConfig(steps=100, warmup_steps=10, learning_rate=1e-2)
    lr = np.array([float(train.make_optimizer_schedule(cfg)(s)) for s in range(101)])
    assert lr[0] == 0.0 and abs(lr[10] - 1e-2) < 1e-9
    assert np.all(np.diff(lr[:11]) > 0) and np.all(np.diff(lr[10:]) <= 0)
    np.testing.assert_allclose(lr[100], 1e-4, rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps"):
        train.TrainConfig(steps=10, warmup_steps=10)


def test_train_step_is_pure_and_traced_once():
    model = _tiny()
    traces = []

    def loss(p, c):
        traces.append(1)
        return jnp.mean(jnp.abs(p - c))

    tx = optax.adamw(1e-3)
    graphdef, params, stats, other = train.split_model(model)
    state = train.TrainState(jnp.zeros((), jnp.int32), params, stats, tx.init(params))
    step = jax.jit(train.make_train_step(graphdef, other, tx, loss))
    noisy, clean = train.synthetic_data(batch_size=2, size=16)(0)
    s1, m1 = step(state, noisy, clean)
    s1b, m1b = step(state, noisy, clean)  # same input -> same output (pure)
    s2, _ = step(s1, noisy, clean)
    assert len(traces) == 1
    assert float(m1["loss"]) == float(m1b["loss"])
    assert int(s2.step) == 2
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), s1.params, state.params)
    assert all(jax.tree.leaves(changed))
    # the caller's model is untouched by training
    for a, b in zip(
        jax.tree.leaves(nnx.state(model, nnx.Param)),
        jax.tree.leaves(params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_fit_reduces_loss_and_writes_metrics(tmp_path):
    data = train.synthetic_data(batch_size=4, size=16, sigma=(0.05, 0.2))
    cfg = train.TrainConfig(
        steps=15,
        warmup_steps=2,
        learning_rate=3e-3,
        loss={"l1": 0.84, "ms_ssim": 0.16},
        metrics_path=str(tmp_path / "m.jsonl"),
        progress=False,
    )
    res = train.fit(_tiny(), data, cfg)
    assert res.start_step == 0 and res.losses.shape == (15,)
    assert res.losses[-3:].mean() < 0.7 * res.losses[:3].mean()
    records = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 16))
    assert records[0]["loss"] == res.losses[0]
    noisy, _ = data(99)
    assert res.model(jnp.asarray(noisy)[..., None]).shape == noisy.shape + (1,)


SCRIPT = """
import sys, time
from flax import nnx
from temsim.denoise import models, train

out, delay = sys.argv[1], float(sys.argv[2])
data = train.synthetic_data(batch_size=4, size=16, sigma=0.1, seed=1)
def slow(step):
    time.sleep(delay)
    return data(step)
cfg = train.TrainConfig(
    steps=12, warmup_steps=2, learning_rate=3e-3, checkpoint_every=3,
    checkpoint_dir=out + "/ckpt", metrics_path=out + "/metrics.jsonl", progress=False,
)
res = train.fit(models.DnCNN(depth=3, features=4, rngs=nnx.Rngs(0)), slow, cfg)
print("start", res.start_step)
"""


def _losses(path):
    return {
        r["step"]: r["loss"]
        for r in map(json.loads, Path(path).read_text().splitlines())
    }


def test_sigkill_then_rerun_resumes_with_identical_losses(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(script)]
    ref = subprocess.Popen(cmd + [str(tmp_path / "ref"), "0"], env=env)
    killed = subprocess.Popen(cmd + [str(tmp_path / "run"), "0.25"], env=env)
    metrics_file = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and killed.poll() is None:
        if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert killed.poll() is None, "training finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert ref.wait(timeout=120) == 0
    before = _losses(metrics_file)
    rerun = subprocess.run(
        cmd + [str(tmp_path / "run"), "0"], env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    start = int(rerun.stdout.split()[-1])
    assert start in (3, 6, 9) and start <= max(before)  # resumed, not restarted
    after, expected = _losses(metrics_file), _losses(tmp_path / "ref" / "metrics.jsonl")
    assert sorted(after) == list(range(1, 13))
    assert after == expected  # bit-identical losses after the resume


SHARD_SCRIPT = """
import json, jax
from flax import nnx
from temsim.denoise import models, train

assert jax.local_device_count() == 8
data = train.synthetic_data(batch_size=8, size=16, sigma=0.1, seed=2)
cfg = train.TrainConfig(steps=6, warmup_steps=1, learning_rate=3e-3, progress=False)
out = {}
for n in (1, 8):
    model = models.DnCNN(depth=3, features=4, rngs=nnx.Rngs(0))
    res = train.fit(model, data, cfg, devices=jax.local_devices()[:n])
    out[n] = res.losses.tolist()
print(json.dumps(out))
"""


def test_eight_devices_give_the_one_device_loss_curve(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    curves = json.loads(proc.stdout.splitlines()[-1])
    one, eight = np.array(curves["1"]), np.array(curves["8"])
    print("1 device", one, "\n8 devices", eight)
    np.testing.assert_allclose(eight, one, rtol=1e-4)
    assert eight[-1] < eight[0]


def test_cli_train_denoise_evaluate(tmp_path, capsys):
    import argparse

    from temsim.denoise import cli

    parser = argparse.ArgumentParser(prog="temsim")
    cli.register(parser.add_subparsers(required=True))
    for name in ("train", "denoise", "evaluate"):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        assert "example:" in capsys.readouterr().out

    def run(*argv):
        args = parser.parse_args([str(a) for a in argv])
        return args.func(args)

    ckpt = tmp_path / "run"
    assert run("train", "--depth", 3, "--features", 4, "--steps", 3, "--warmup", 1,
               "--batch-size", 2, "--patch", 16, "--checkpoint-dir", ckpt,
               "--checkpoint-every", 2, "--quiet") == 0  # fmt: skip
    noisy, clean = train.synthetic_data(batch_size=1, size=40, seed=3)(0)
    np.save(tmp_path / "noisy.npy", noisy[0])
    np.save(tmp_path / "clean.npy", clean[0])
    out = tmp_path / "den.npy"
    assert run("denoise", tmp_path / "noisy.npy", "--checkpoint-dir", ckpt,
               "--tile", 24, "--overlap", 8, "--out", out) == 0  # fmt: skip
    assert np.load(out).shape == (40, 40)
    capsys.readouterr()
    assert run("evaluate", out, tmp_path / "clean.npy", "--tile", 24) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"psnr_db", "ssim", "ms_ssim", "seam_score", "columns"} <= set(report)
