"""Question: how long does an HRTEM simulation (atoms -> image) take in temsim,
relative to abTEM on the same CPU, grid, slices, parametrization and CTF, for grids
from 512^2 to 4096^2?

Cases: graphene (12 x 7 rectangular cells, 29.5 x 29.8 Å, 336 atoms, 4 slices) and
2H-MoS2 (16 x 9 cells, 50.9 x 49.6 Å, 864 atoms, 9 slices), each on n x n grids with
n in {512, 1024, 2048, 4096}: the cell is fixed and the sampling varies (graphene
0.058 to 0.0073 Å, MoS2 0.099 to 0.012 Å; 0.05 Å is n ~ 600 and ~ 1000).
Peer: abTEM (`Potential(gpts=n, projection="infinite")` -> `PlaneWave.multislice` ->
`apply_ctf` -> `intensity().compute()`), Lobato parametrization, 1 Å slices (abTEM's
slicing: ceil(Lz / 1 Å) equal slices), 80 kV, the same hard-aperture CTF, float32 in
both (JAX's and abTEM's default precision), CPU.

Each (case, code) runs in its own child process, so that its peak resident memory
(VmHWM, the high-water resident set) belongs to that case alone. In the child: one
first call (JAX compiles, abTEM's numba kernels compile, grid constants are built),
then the median of repeats
of the whole atoms -> image call (`jax.block_until_ready` / `.compute()`); the
first-call overhead (first - median) is reported separately. Quality is asserted in
the same run: Pearson >= 0.999 between the two images.

Run:  .venv/bin/python benchmarks/hrtem.py [--quick] [--cases graphene-512 mos2-1024]
Writes benchmarks/results/hrtem.json and hrtem.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

OPTICS = dict(defocus=-60.0, Cs=-2e5, semiangle_cutoff=35.0)
ENERGY = 80e3
SLICE_THICKNESS = 1.0
GRIDS = (512, 1024, 2048, 4096)
REPEATS = {512: 7, 1024: 5, 2048: 3, 4096: 2}
STRUCTURES = ("graphene", "mos2")
CASES = tuple(f"{s}-{n}" for s in STRUCTURES for n in GRIDS)
QUICK = ("graphene-512", "mos2-512")
FIGURE_CASE = "graphene-1024"


def _atoms(structure):
    from temsim import structures

    if structure == "graphene":
        return structures.graphene(repeat=(12, 7))
    # 2.5 Å vacuum: no atom on a slice boundary (with 2.0, Mo sits at z = 4 dz)
    return structures.mos2(repeat=(16, 9), vacuum=2.5)


def _ours(atoms, n):
    import jax

    import temsim

    lx, ly, _ = atoms.cell.lengths()
    sampling = (ly / n, lx / n)  # exactly n x n pixels

    def run():
        return jax.block_until_ready(
            temsim.hrtem(
                atoms,
                energy=ENERGY,
                sampling=sampling,
                slice_thickness=SLICE_THICKNESS,
                parametrization="lobato",
                **OPTICS,
            ).array
        )

    return run


def _abtem(atoms, n):
    import abtem

    abtem.config.set({"precision": "float32", "device": "cpu"})

    def run():
        potential = abtem.Potential(
            atoms,
            gpts=n,
            slice_thickness=SLICE_THICKNESS,
            parametrization="lobato",
            projection="infinite",
        )
        waves = abtem.PlaneWave(energy=ENERGY).multislice(potential)
        ctf = abtem.CTF(energy=ENERGY, soft=False, **OPTICS)
        image = waves.apply_ctf(ctf).intensity().compute(progress_bar=False)
        return np.asarray(image.array).T  # abTEM arrays are (x, y)

    return run


def _rss_mib():
    """Peak resident memory of this process [MiB]: VmHWM (reset by exec, unlike
    ru_maxrss, which on Linux also counts the parent's pages at fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def worker(case, code, repeats, image_path):
    """Time one case with one code in this (fresh) process; print a JSON line."""
    structure, n = case.rsplit("-", 1)
    atoms = _atoms(structure)
    fn = (_ours if code == "temsim" else _abtem)(atoms, int(n))
    baseline = _rss_mib()
    t0 = time.perf_counter()
    image = np.asarray(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    np.save(image_path, image.astype(np.float32))
    out = {
        "median_s": median,
        "times_s": times,
        "first_call_s": first,
        "first_call_overhead_s": first - median,
        "peak_rss_mib": _rss_mib(),
        "rss_after_imports_mib": baseline,
        "dtype": str(image.dtype),
        "shape": list(image.shape),
    }
    print(json.dumps(out))


def _run_child(case, code, repeats, image_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, __file__, "--worker", case, code, str(repeats)]
    proc = subprocess.run(
        [*cmd, str(image_path)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"{code} {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _agreement(ours, theirs):
    a, b = ours / ours.mean(), theirs / theirs.mean()
    pearson = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    relative_rms = float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))
    return pearson, relative_rms


def _table(cases):
    head = (
        "| case | grid | pixel [Å] | slices | temsim [s] | abTEM [s] | abTEM / temsim "
        "| temsim first-call overhead [s] | abTEM first-call overhead [s] "
        "| temsim peak RSS [MiB] | abTEM peak RSS [MiB] | Pearson | rel. RMS |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in cases:
        t, a = c["temsim"], c.get("abtem")
        if a is None:
            a = {"median_s": float("nan"), "first_call_overhead_s": float("nan")}
            a["peak_rss_mib"] = float("nan")
        rows.append(
            f"| {c['case']} | {c['gpts'][0]}x{c['gpts'][1]} | {c['pixel_A']:.4f} | "
            f"{c['n_slices']} | {t['median_s']:.3f} | {a['median_s']:.3f} | "
            f"{c.get('ratio_abtem_over_temsim', float('nan')):.2f} | "
            f"{t['first_call_overhead_s']:.2f} | {a['first_call_overhead_s']:.2f} | "
            f"{t['peak_rss_mib']:.0f} | {a['peak_rss_mib']:.0f} | "
            f"{c.get('pearson', float('nan')):.6f} | "
            f"{c.get('relative_rms', float('nan')):.1e} |"
        )
    return "\n".join(rows)


def _figure(result, images, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    if images is not None:
        ours, theirs, case = images
        a, b = ours / ours.mean(), theirs / theirs.mean()
        lo, hi = np.percentile(np.concatenate([a.ravel(), b.ravel()]), [0.5, 99.5])
        for ax, img, title in ((axes[0], a, "temsim"), (axes[1], b, "abTEM")):
            im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(f"{title}: {case} (I / <I>)")
            fig.colorbar(im, ax=ax, fraction=0.046)
        diff = a - b
        lim = float(np.abs(diff).max())
        im = axes[2].imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[2].set_title("temsim - abTEM")
        fig.colorbar(im, ax=axes[2], fraction=0.046)
        for ax in axes[:3]:
            ax.set_xticks([])
            ax.set_yticks([])
    ax = axes[3]
    for structure, marker in zip(STRUCTURES, "os", strict=True):
        rows = [c for c in result["cases"] if c["structure"] == structure]
        if not rows:
            continue
        n = [c["gpts"][0] for c in rows]
        ax.plot(n, [c["temsim"]["median_s"] for c in rows], f"-{marker}",
                color="C0", label=f"temsim {structure}")  # fmt: skip
        if all("abtem" in c for c in rows):
            ax.plot(n, [c["abtem"]["median_s"] for c in rows], f"--{marker}",
                    color="C3", label=f"abTEM {structure}")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("grid n (n x n)")
    ax.set_ylabel("wall time after warm-up [s]")
    ax.set_title("HRTEM atoms -> image, CPU, float32")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], argv[2], int(argv[3]), argv[4])
        return None
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK}")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="override")
    parser.add_argument("--no-abtem", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/hrtem.json")
    args = parser.parse_args(argv)
    cases = args.cases or (QUICK if args.quick else CASES)

    import jax

    try:
        import abtem
    except ImportError:
        abtem = None
    use_abtem = abtem is not None and not args.no_abtem
    result = {
        "question": "HRTEM (atoms -> image) wall time, temsim vs abTEM, 512^2-4096^2",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{platform.processor() or platform.system()}",
        "load_average_start": list(os.getloadavg()),
        "jax": jax.__version__,
        "abtem": abtem.__version__ if abtem else "not installed",
        "backend": "cpu",
        "dtype": "float32",
        "energy_eV": ENERGY,
        "optics": OPTICS,
        "slice_thickness_A": SLICE_THICKNESS,
        "parametrization": "lobato",
        "grids": "n x n on a fixed cell (the sampling varies)",
        "command": "python benchmarks/hrtem.py " + " ".join(argv),
        "cases": [],
    }
    figure_images = None
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            structure, n = case.rsplit("-", 1)
            n = int(n)
            atoms = _atoms(structure)
            lx, ly, lz = atoms.cell.lengths()
            repeats = args.repeats or REPEATS[n]
            row = {
                "case": case,
                "structure": structure,
                "atoms": len(atoms),
                "cell_A": [round(float(lx), 3), round(float(ly), 3)],
                "gpts": [n, n],
                "pixel_A": float(max(lx, ly) / n),
                "n_slices": int(np.ceil(lz / SLICE_THICKNESS - 1e-9)),
                "repeats": repeats,
            }
            ours_path = pathlib.Path(tmp, f"{case}-temsim.npy")
            row["temsim"] = _run_child(case, "temsim", repeats, ours_path)
            print(f"{case}: temsim {row['temsim']['median_s']:.3f} s", flush=True)
            if use_abtem:
                theirs_path = pathlib.Path(tmp, f"{case}-abtem.npy")
                row["abtem"] = _run_child(case, "abtem", repeats, theirs_path)
                ours, theirs = np.load(ours_path), np.load(theirs_path)
                pearson, relative_rms = _agreement(ours, theirs)
                ratio = row["abtem"]["median_s"] / row["temsim"]["median_s"]
                row["ratio_abtem_over_temsim"] = ratio
                row["goal_met_temsim_at_most_half"] = bool(ratio >= 2.0)
                row["pearson"] = pearson
                row["relative_rms"] = relative_rms
                print(f"{case}: abTEM {row['abtem']['median_s']:.3f} s, ratio "
                      f"{ratio:.2f}, Pearson {pearson:.6f}", flush=True)  # fmt: skip
                if case == FIGURE_CASE or figure_images is None:
                    figure_images = (ours, theirs, case)
            result["cases"].append(row)
    result["load_average_end"] = list(os.getloadavg())
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _figure(result, figure_images, out.with_suffix(".png"))
    table = _table(result["cases"])
    print(table)
    bad = [c["case"] for c in result["cases"] if c.get("pearson", 1.0) < 0.999]
    if bad:
        raise SystemExit(f"quality check failed (Pearson < 0.999): {bad}")
    return result


if __name__ == "__main__":
    main()
