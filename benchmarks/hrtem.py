"""Question: how long does a graphene HRTEM simulation take in temsim, relative to abTEM
on the same grid, slices, parametrization and CTF?

Peer: abTEM (`Potential(projection="infinite")` -> `PlaneWave.multislice` ->
`apply_ctf` -> `intensity`), float32 in both (JAX's and abTEM's default precision),
CPU. Both are warmed up first (JAX compiles, abTEM's numba kernels compile); we report
the median of repeats of the whole atoms -> image call, with `jax.block_until_ready`,
and the first-call overhead (compilation) separately. Quality is asserted in the same
run: Pearson >= 0.999 between the two images. If abTEM is not installed, our timings
are reported alone.

Run:  .venv/bin/python benchmarks/hrtem.py [--repeat 12 7] [--sampling 0.05]
Writes benchmarks/results/hrtem.json and prints a summary.
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
import numpy as np

import temsim
from temsim import structures

OPTICS = dict(defocus=-60.0, Cs=-2e5, semiangle_cutoff=35.0)
ENERGY = 80e3


def _timed(fn, repeats):
    t0 = time.perf_counter()
    first = np.asarray(jax.block_until_ready(fn()))
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return first, median, first_s - median


def _ours(atoms, sampling, slice_thickness):
    def run():
        return temsim.hrtem(
            atoms,
            energy=ENERGY,
            sampling=sampling,
            slice_thickness=slice_thickness,
            parametrization="lobato",
            **OPTICS,
        ).array

    return run


def _abtem(atoms, sampling, slice_thickness):
    import abtem

    abtem.config.set({"precision": "float32", "device": "cpu"})

    def run():
        potential = abtem.Potential(
            atoms,
            sampling=sampling,
            slice_thickness=slice_thickness,
            parametrization="lobato",
            projection="infinite",
        )
        waves = abtem.PlaneWave(energy=ENERGY).multislice(potential)
        ctf = abtem.CTF(energy=ENERGY, soft=False, **OPTICS)
        image = waves.apply_ctf(ctf).intensity().compute(progress_bar=False)
        return np.asarray(image.array).T  # abTEM arrays are (x, y)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, nargs=2, default=[12, 7])
    parser.add_argument("--sampling", type=float, default=0.05)
    parser.add_argument("--slice-thickness", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/hrtem.json")
    args = parser.parse_args(argv)

    atoms = structures.graphene(repeat=tuple(args.repeat))
    potential = temsim.potential_slices(
        atoms, sampling=args.sampling, slice_thickness=args.slice_thickness
    )
    ours, ours_s, ours_compile_s = _timed(
        _ours(atoms, args.sampling, args.slice_thickness), args.repeats
    )
    result = {
        "question": "graphene HRTEM (atoms -> image) wall time, temsim vs abTEM",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "dtype": str(ours.dtype),
        "atoms": len(atoms),
        "gpts": list(potential.gpts),
        "n_slices": potential.n_slices,
        "energy_eV": ENERGY,
        "optics": OPTICS,
        "temsim": {"median_s": ours_s, "first_call_overhead_s": ours_compile_s},
    }
    try:
        import abtem
    except ImportError:
        abtem = None
        result["abtem"] = "not installed: temsim timings only"
    if abtem is not None:
        theirs, theirs_s, theirs_compile_s = _timed(
            _abtem(atoms, args.sampling, args.slice_thickness), args.repeats
        )
        a, b = ours / ours.mean(), theirs / theirs.mean()
        pearson = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        result["abtem"] = {
            "version": abtem.__version__,
            "median_s": theirs_s,
            "first_call_overhead_s": theirs_compile_s,
        }
        result["speedup_abtem_over_temsim"] = theirs_s / ours_s
        result["pearson"] = pearson
        result["relative_rms"] = float(np.sqrt(np.mean((a - b) ** 2)))
        if pearson < 0.999:
            raise SystemExit(f"quality check failed: Pearson {pearson:.6f} < 0.999")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
