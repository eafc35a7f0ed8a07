"""A short Markdown section on the shipped blind denoiser, for the demo report.

`report(out_dir)` denoises the example clean HRTEM images shipped with the model
(temsim/denoise/pretrained/blind/examples.npz: one image per structure family, the
family held out of training included, 128 x 128 at 0.15 Å/px) after adding each of
the four noise types of the source study at one mid-range level, and compares the
blind CNN with a Gaussian filter, a median filter and (if the `bm3d` package is
installed) BM3D. Runs in well under a minute on 2 CPU cores; the full benchmark is
benchmarks/denoise.py.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

__all__ = ["EXAMPLE_LEVELS", "example_images", "report"]

EXAMPLE_LEVELS = {
    "gaussian": 0.1,  # sigma
    "poisson": 100.0,  # dose [e/px per unit intensity]
    "salt_and_pepper": 0.03,  # fraction of pixels
    "speckle": 0.01,  # variance
}
FIGURE = "denoise_crops.png"
# one sentence from benchmarks/results/denoise.md, updated when the model is retrained
BENCHMARK_SUMMARY = (
    "2026-12-05, in-range levels, mean over four families: the blind CNN is +1.1 dB "
    "above BM3D on Gaussian, Poisson and speckle noise (+0.3 to +0.6 dB on the "
    "unseen phosphorene), and +1.8 dB given the noise level (BM3D is given it too), "
    "short of the 2 dB goal; +29 dB on salt-and-pepper, where it also beats the "
    "median filter by 18 dB. Given the noise type and level it is within 0.05 dB of "
    "specialists fine-tuned per noise type, and at least 2 dB above BM3D at every "
    "untrained level."
)


def example_images(name: str = "blind") -> dict[str, np.ndarray]:
    """{family: clean (128, 128) float32} shipped next to the pretrained model."""
    from temsim.denoise.pretrained import _root, available

    if name not in available():
        raise ValueError(f"name must be one of {available()}, got {name!r}")
    with np.load(_root() / name / "examples.npz") as z:
        return {k: z[k].astype(np.float32) for k in z.files if k != "sampling"}


def _noisy(kind: str, level: float, clean: np.ndarray, seed: int) -> np.ndarray:
    from temsim import noise

    fn = {
        "gaussian": noise.gaussian,
        "poisson": noise.poisson,
        "salt_and_pepper": noise.salt_and_pepper,
        "speckle": noise.speckle,
    }[kind]
    return np.asarray(fn(jax.random.key(seed), clean, level), np.float32)


def _best_filter(noisy: np.ndarray, clean: np.ndarray):
    """Best (by PSNR) Gaussian filter and median filter over small width grids."""
    from scipy import ndimage

    from temsim.denoise.metrics import psnr

    gauss = [ndimage.gaussian_filter(noisy, (0, s, s)) for s in (0.75, 1.0, 1.5, 2.0)]
    med = [ndimage.median_filter(noisy, (1, m, m)) for m in (3, 5)]
    pick = lambda ys: max(ys, key=lambda y: float(np.mean(psnr(y, clean))))
    return pick(gauss), pick(med)


def _bm3d(kind: str, level: float, noisy: np.ndarray) -> np.ndarray:
    import bm3d

    if kind == "gaussian":
        sigma = level
    elif kind == "poisson":
        sigma = float(np.sqrt(max(noisy.mean(), 1e-6) / level))
    elif kind == "speckle":
        sigma = float(np.sqrt(level * np.mean(noisy.astype(np.float64) ** 2)))
    else:
        from skimage.restoration import estimate_sigma

        sigma = float(estimate_sigma(noisy.astype(np.float64)))
    return bm3d.bm3d(noisy.astype(np.float64), sigma).astype(np.float32)


def report(out_dir: str | Path, *, use_bm3d: bool | None = None) -> str:
    """Markdown section (table + crops figure written to out_dir/denoise_crops.png).

    Args:
      out_dir: directory for the figure (created).
      use_bm3d: include BM3D in the figure; None: if the `bm3d` package imports.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from temsim.denoise.metrics import psnr
    from temsim.denoise.pretrained import load_pretrained
    from temsim.denoise.sure import denoise_known
    from temsim.denoise.tiling import denoise_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if use_bm3d is None:
        try:
            import bm3d  # noqa: F401

            use_bm3d = True
        except ImportError:
            use_bm3d = False
    import json

    from temsim.denoise.pretrained import _root

    model = load_pretrained("blind")
    info = json.loads((_root() / "blind" / "training.json").read_text())
    trained = list(info["train_data"]["families"])
    images = example_images("blind")
    families = list(images)
    clean = np.stack([images[f] for f in families])
    rows, crops = [], []
    for seed, (kind, level) in enumerate(EXAMPLE_LEVELS.items()):
        noisy = _noisy(kind, level, clean, seed)
        cnn = np.asarray(denoise_image(model, noisy))
        gauss, med = _best_filter(noisy, clean)
        known = np.asarray(denoise_known(model, noisy, kind, level))
        vals = [float(np.mean(psnr(y, clean))) for y in (noisy, gauss, med, cnn, known)]
        rows.append((kind, level, *vals))
        if kind in ("gaussian", "poisson", "speckle"):
            show = {"gaussian": "graphene", "poisson": "mos2"}
            i = families.index(show.get(kind, info["held_out_family"]))
            b = _bm3d(kind, level, noisy[i]) if use_bm3d else None
            crops.append((f"{families[i]}, {kind} {level:g}", noisy[i], b, cnn[i]))
            crops[-1] += (clean[i],)

    fig, axes = plt.subplots(len(crops), 4, figsize=(7.2, 1.9 * len(crops)))
    for row, (label, *imgs) in zip(axes, crops, strict=True):
        ref = imgs[-1][:64, :64]
        for ax, name, img in zip(
            row, ("noisy", "BM3D", "blind CNN", "clean"), imgs, strict=True
        ):
            ax.axis("off")
            if img is None:
                ax.set_title(f"{name}: not installed", fontsize=7)
                continue
            ax.imshow(img[:64, :64], cmap="gray", vmin=ref.min(), vmax=ref.max())
            t = name if name == "clean" else f"{name} {float(psnr(img, imgs[-1])):.1f}"
            ax.set_title(t + (" dB" if name != "clean" else ""), fontsize=7)
        row[0].set_title(f"{label}\n{row[0].get_title()}", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / FIGURE, dpi=100)
    plt.close(fig)

    lines = [
        "## Denoising with the shipped blind model",
        "",
        '`temsim.denoise.load_pretrained("blind")`: a bias-free U-Net trained on '
        f"{', '.join(trained)} HRTEM simulations with Gaussian, Poisson, "
        "salt-and-pepper and speckle noise (one model for all). Mean PSNR [dB] over "
        f"one clean image each of {', '.join(families)} "
        f"({info['held_out_family']} unseen in training); filter widths chosen by "
        "the best PSNR (oracle). Full benchmark with NLM, BM3D, specialist CNNs, "
        "SSIM, MS-SSIM and column shapes: benchmarks/results/denoise.md. Last "
        "column: the same CNN given the noise type and level "
        "(`temsim.denoise.denoise_known`: SURE-LET; for salt-and-pepper only the "
        "pixels at the image's extremes are replaced). " + BENCHMARK_SUMMARY,
        "",
        "| noise | level | noisy | Gaussian filter | median | blind CNN | blind CNN, "
        "known level |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, level, *vals in rows:
        lines.append(
            f"| {kind} | {level:g} | " + " | ".join(f"{v:.2f}" for v in vals) + " |"
        )
    lines += ["", f"![noisy / BM3D / blind CNN / clean]({FIGURE})", ""]
    return "\n".join(lines)
