"""Question: how fast do the denoisers run on CPU, against what the CPU can do?

Measures (1) inference time of the shipped blind model on a 1024 x 1024 image (whole
image, tiled 256/32, and `denoise_known` with a known Gaussian sigma), (2) the
achieved FLOP/s of that call against a measured convolution peak (a large 3x3,
64 -> 64 channel `lax.conv` in float32, the best case for XLA:CPU), and (3) training
steps per second (batch 16 of 64 x 64 patches, the shipped model's training
setting). FLOPs come from XLA's cost analysis of the compiled call. Median after
warm-up with `jax.block_until_ready`; compile time reported separately.

Run:  .venv/bin/python benchmarks/denoise_speed.py [--size 1024] [--repeats 5]
Writes benchmarks/results/denoise_speed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _timed(fn, args, repeats):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), compile_s, flops


def _conv_peak(repeats):
    x = jax.random.normal(jax.random.key(0), (4, 256, 256, 64), jnp.float32)
    w = jax.random.normal(jax.random.key(1), (3, 3, 64, 64), jnp.float32)

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    t, _, flops = _timed(conv, (x, w), repeats)
    if not np.isfinite(flops):
        flops = 2.0 * 4 * 256 * 256 * 64 * 64 * 9
    return flops / t


def main(argv=None):
    from temsim.denoise import denoise_known, load_pretrained, tiling, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    peak = _conv_peak(args.repeats)
    model = load_pretrained("blind")
    graphdef, state = nnx.split(model)
    x = jax.random.uniform(jax.random.key(2), (1, args.size, args.size, 1), jnp.float32)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    rows = []
    t, c, flops = _timed(forward, (state, x), args.repeats)
    rows.append(("blind U-Net, whole image (model call)", t, c, flops))
    image = np.asarray(x[0, ..., 0])
    cases = {
        "denoise_image, whole": lambda: tiling.denoise_image(model, image),
        "denoise_image, tile 256": lambda: tiling.denoise_image(model, image, tile=256),
        "denoise_known, Gaussian (SURE-LET, 2 probes), whole": lambda: denoise_known(
            model, image, "gaussian", 0.1
        ),
    }
    for label, call in cases.items():
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times.append(time.perf_counter() - t0)
        rows.append((label, float(np.median(times)), first, float("nan")))

    spec = json.loads(
        (
            pathlib.Path(train.__file__).parent / "pretrained" / "blind" / "model.json"
        ).read_text()
    )
    fresh = train.build_model(spec, seed=0)
    config = train.TrainConfig(steps=1000, warmup_steps=10, progress=False)
    tx = train.make_optimizer(config)
    g, params, batch_stats, other = train.split_model(fresh)
    step = train.make_train_step(g, other, tx, train.loss_function("l1"))
    st = train.TrainState(
        jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params)
    )
    noisy = jax.random.uniform(jax.random.key(3), (16, 64, 64), jnp.float32)
    clean = jax.random.uniform(jax.random.key(4), (16, 64, 64), jnp.float32)
    t, c, flops = _timed(step, (st, noisy, clean), args.repeats)
    rows.append(("training step, batch 16 x 64^2", t, c, flops))

    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "conv_peak_gflops": peak / 1e9,
        "image": args.size,
    }
    results = [
        {"case": r[0], "median_s": r[1], "compile_or_first_s": r[2], "flops": r[3]}
        for r in rows
    ]
    out = pathlib.Path(__file__).parent / "results" / "denoise_speed.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"{meta['date']}, {meta['machine']}, JAX {meta['jax']} ({meta['backend']});"
          f" measured 3x3 conv peak {peak / 1e9:.1f} GFLOP/s")  # fmt: skip
    print("| case | median [s] | compile / first call [s] | GFLOP/s | % of conv peak |")
    print("| --- | --- | --- | --- | --- |")
    for name, t, c, flops in rows:
        rate = flops / t if np.isfinite(flops) else float("nan")
        pct = f"{100 * rate / peak:.0f}%" if np.isfinite(rate) else "-"
        gf = f"{rate / 1e9:.1f}" if np.isfinite(rate) else "-"
        print(f"| {name} | {t:.3f} | {c:.2f} | {gf} | {pct} |")
    print(f"training: {1 / rows[-1][1]:.2f} steps/s")


if __name__ == "__main__":
    main()
