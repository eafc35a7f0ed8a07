"""Question: what does measuring the thermodynamics of attention rows cost, relative to
the softmax itself?

Peer: `jax.nn.softmax` on the same (rows, keys) float32 scores. We time
`physattn.thermo.observables` (log Z, F, U, S, C per row) and `gibbs` + `observables`
together (what a layer that also returns probabilities pays), each jitted, after
warm-up, median of repeats with `jax.block_until_ready`; compile time separately.

Run:  .venv/bin/python benchmarks/thermo.py [--rows 4096] [--keys 128 1024 8192]
Writes benchmarks/results/thermo.json and prints a Markdown table.
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

from physattn import thermo


def _time(fn, x, repeats):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(x).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(x))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), compile_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--keys", type=int, nargs="+", default=[128, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    cases = {
        "softmax (peer)": lambda s: jax.nn.softmax(s, axis=-1),
        "observables": lambda s: thermo.observables(s, 1.0),
        "gibbs + observables": lambda s: (thermo.gibbs(s, 1.0), thermo.observables(s)),
    }
    results = []
    for n_keys in args.keys:
        s = 3.0 * jax.random.normal(jax.random.key(0), (args.rows, n_keys), jnp.float32)
        row = {"rows": args.rows, "keys": n_keys}
        for name, fn in cases.items():
            median, compile_s = _time(fn, s, args.repeats)
            row[name] = {"median_s": median, "compile_s": compile_s}
        peer = row["softmax (peer)"]["median_s"]
        for name in cases:
            row[name]["ratio_to_softmax"] = row[name]["median_s"] / peer
        results.append(row)
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "command": "python benchmarks/thermo.py " + " ".join(argv or []),
    }
    out = pathlib.Path(__file__).parent / "results" / "thermo.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"{meta['date']}, {meta['machine']}, JAX {meta['jax']} ({meta['backend']})")
    print("| rows x keys | " + " | ".join(cases) + " |")
    print("| --- |" + " --- |" * len(cases))
    for row in results:
        cells = [
            f"{1e3 * row[n]['median_s']:.2f} ms ({row[n]['ratio_to_softmax']:.2f}x)"
            for n in cases
        ]
        print(f"| {row['rows']} x {row['keys']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
