"""How many (clean, noisy) HRTEM training samples per second does one CPU host make?

For 256x256 and 1024x1024 images (graphene/MoS2/hBN, 1-2 layers, 0.05 Å/pixel):
compile time (first chunk minus a steady chunk), steady compute rate (simulation +
noise, `jax.block_until_ready`), end-to-end rate of `temsim.dataset.generate` with zarr
writes, and their ratio (the storage overhead). Writes benchmarks/results/dataset.json
and prints a markdown table.

    python benchmarks/dataset.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from temsim import dataset  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "dataset.json"


def _compute_chunk(config, c, mesh):
    s = dataset._chunk_slice(config, c)
    out = dataset._compute(config, np.arange(s.start, s.stop), mesh, config.chunk)
    return jax.block_until_ready(out)


def bench(size: int, chunk: int, n_chunks: int) -> dict:
    config = dataset.DatasetConfig(
        n_samples=chunk * (n_chunks + 1), shape=(size, size), chunk=chunk, seed=1
    )
    mesh = dataset._local_mesh()
    t0 = time.perf_counter()
    _compute_chunk(config, 0, mesh)  # compiles (per family bucket: some stay)
    first = time.perf_counter() - t0
    times = []
    for c in range(1, n_chunks + 1):
        t0 = time.perf_counter()
        _compute_chunk(config, c, mesh)
        times.append(time.perf_counter() - t0)
    steady = float(np.median(times)) / chunk  # s per sample
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.zarr"
        dataset.generate(config, path, max_chunks=1)  # warm (already compiled)
        t0 = time.perf_counter()
        dataset.generate(config, path)
        end_to_end = (time.perf_counter() - t0) / (n_chunks * chunk)
    return {
        "size": size,
        "samples_timed": n_chunks * chunk,
        "compile_s": max(0.0, first - steady * chunk),
        "compute_samples_per_s": 1 / steady,
        "end_to_end_samples_per_s": 1 / end_to_end,
        "storage_overhead_ratio": end_to_end / steady,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    plan = [(256, 4, 1 if args.quick else 3), (1024, 1, 1 if args.quick else 2)]
    rows = [bench(*p) for p in plan]
    result = {
        "question": "samples per second of temsim.dataset on CPU",
        "device": str(jax.devices()[0]),
        "n_devices": len(jax.local_devices()),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print("| size | compile [s] | compute [samples/s] | end-to-end [samples/s] |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['size']}x{r['size']} | {r['compile_s']:.1f} | "
            f"{r['compute_samples_per_s']:.3f} | {r['end_to_end_samples_per_s']:.3f} |"
        )


if __name__ == "__main__":
    main()
