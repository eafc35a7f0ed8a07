"""Question: how much does knowing the noise level add to the blind CNN, and why these
defaults of `temsim.denoise.denoise_known` (SURE-LET)?

Validation images only (seed 10000 + family index, 2 per family of graphene, hBN, MoS2,
phosphorene; `benchmarks/denoise.py` keeps its test images, seed 1000, for the final
table), the benchmark's Gaussian, Poisson and speckle levels (three inside the training
range of the shipped model, two outside). Per cell, mean PSNR [dB] over the images of:
the blind CNN alone; `denoise_known` with its defaults (Gaussian smoothings of widths
0.5/1/2/4 px, 2 probes; Poisson weights from binomial thinning, p = 0.65, 2 splits);
with widths 0.5/1/2; with 4 probes (no effect on Poisson, which uses no probes); for
Poisson with the first-order PURE instead of thinning (split=None) and the Anscombe
path alone (`denoise_poisson`); for speckle with
the divergence weighted by the unbiased v y^2 / (1 + v) instead of the CNN pilot v f^2;
and BM3D with the known level (as in benchmarks/denoise.py). Also the accuracy of
SURE itself: the SURE (Poisson: first-order PURE) estimate of the plain CNN's MSE
divided by its true MSE.

Run:  .venv/bin/python benchmarks/denoise_sure.py [--per-family 2]
Writes benchmarks/results/denoise_sure.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import denoise as bench  # noqa: E402

from temsim.denoise import metrics, pretrained  # noqa: E402
from temsim.denoise import sure as sure_mod  # noqa: E402
from temsim.denoise.tiling import denoise_image  # noqa: E402
from temsim.denoise.vst import denoise_poisson  # noqa: E402

RESULTS = Path(__file__).parent / "results"
VALIDATION_SEED = 10000
VARIANTS = {
    "default": {},
    "widths 0.5/1/2": {"widths": (0.5, 1.0, 2.0)},
    "4 probes": {"n_probes": 4},
}


@contextlib.contextmanager
def image_weighted_speckle():
    """denoise_known with the y-based speckle variance (the pilot ignored)."""
    original = sure_mod.noise_variance

    def no_pilot(y, noise, level, pilot=None):
        return original(y, noise, level)

    sure_mod.noise_variance = no_pilot
    try:
        yield
    finally:
        sure_mod.noise_variance = original


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-family", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    clean, _ = bench.clean_test_set(args.per_family, seed=VALIDATION_SEED)
    model = pretrained.load_pretrained("blind")

    def psnr(y):
        return float(np.mean(metrics.psnr(np.asarray(y), clean)))

    rows = []
    key = jax.random.key(VALIDATION_SEED)
    for ki, kind in enumerate(sure_mod.SURE_NOISE):
        for li, level in enumerate(bench.LEVELS[kind]):
            t = time.perf_counter()
            y = bench.add_noise(
                kind, level, clean, jax.random.fold_in(key, 10 * ki + li)
            )
            f = np.asarray(denoise_image(model, y))
            v = np.asarray(sure_mod.noise_variance(y, kind, level, pilot=f))
            div = sure_mod.mc_divergence(
                lambda a: np.asarray(denoise_image(model, a)),
                y,
                v,
                jax.random.key(1),
                base=f,
            )[0]
            est = sure_mod.sure(y, f, v, div)
            mse = np.mean((f.astype(np.float64) - clean) ** 2, axis=(1, 2))
            row = {
                "noise": kind,
                "level": level,
                "in_training_range": 1 <= li <= 3,
                "noisy": psnr(y),
                "cnn": psnr(f),
                "sure_over_mse_cnn": float(est.mean() / mse.mean()),
            }
            for name, kw in VARIANTS.items():
                if kind == "poisson" and set(kw) == {"n_probes"}:
                    row[name] = row["default"]  # thinning uses no probes: same output
                    continue
                row[name] = psnr(sure_mod.denoise_known(model, y, kind, level, **kw))
            if kind == "poisson":
                row["poisson: first-order PURE"] = psnr(
                    sure_mod.denoise_known(model, y, kind, level, split=None)
                )
                row["poisson: Anscombe path"] = psnr(
                    denoise_poisson(model, y, float(level))
                )
            if kind == "speckle":
                with image_weighted_speckle():
                    row["speckle y-weights"] = psnr(
                        sure_mod.denoise_known(model, y, kind, level)
                    )
            row["bm3d"] = psnr(
                np.stack([bench.bm3d_denoise(kind, level, im) for im in y])
            )
            rows.append(row)
            print(
                f"{kind} {level:g}: CNN {row['cnn']:.2f}, SURE-LET "
                f"{row['default']:.2f}, BM3D {row['bm3d']:.2f} dB "
                f"({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    cols = [
        "noisy",
        "cnn",
        *VARIANTS,
        "poisson: first-order PURE",
        "poisson: Anscombe path",
        "speckle y-weights",
        "bm3d",
    ]
    lines = [
        "# Known noise level: the blind CNN refined by SURE-LET (validation images)",
        "",
        f"`.venv/bin/python benchmarks/denoise_sure.py`; "
        f"{datetime.date.today().isoformat()}, {platform.machine()}, jax "
        f"{jax.__version__}; {time.perf_counter() - t0:.0f} s. {len(clean)} "
        "validation images (seed 10000), mean PSNR [dB]; * = outside the shipped "
        "model's training range. Last column: SURE estimate / true MSE of the plain "
        "CNN (1 = exact).",
        "",
        "| noise | level | " + " | ".join(cols) + " | SURE/MSE |",
        "| --- | --- | " + " | ".join("---" for _ in cols) + " | --- |",
    ]
    for r in rows:
        star = "" if r["in_training_range"] else "*"
        vals = [bench._fmt(r.get(c)) for c in cols]
        lines.append(
            f"| {r['noise']} | {r['level']:g}{star} | "
            + " | ".join(vals)
            + f" | {r['sure_over_mse_cnn']:.3f} |"
        )
    means = {c: float(np.mean([r[c] for r in rows])) for c in ("cnn", *VARIANTS)}
    lines += [
        "",
        "Mean over all 15 cells: "
        + ", ".join(f"{c} {v:.2f}" for c, v in means.items())
        + " dB.",
        "",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "question": __doc__.splitlines()[0],
        "command": " ".join(
            [".venv/bin/python benchmarks/denoise_sure.py", *(argv or [])]
        ),
        "date": datetime.date.today().isoformat(),
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
        "means": means,
    }
    (out / "denoise_sure.json").write_text(json.dumps(result, indent=1))
    (out / "denoise_sure.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
