"""Train the shipped blind denoiser (temsim.denoise.load_pretrained("blind")).

Question: one small bias-free U-Net for all four noise types of the source study
(Gaussian, Poisson, salt-and-pepper, speckle) at a range of levels, trained on
multislice HRTEM images of graphene and hBN (MoS2 is held out for the benchmark).

Pipeline: `temsim.dataset.generate` makes N clean 128 x 128 images (0.15 Å/px,
80 kV, random defocus/Cs/astigmatism/rotation/layers); each training step cuts
random 64 x 64 patches, applies a random D4 symmetry and fresh noise drawn by
`temsim.noise.mixed` (type uniform, level log-uniform in TRAIN_NOISE), so every
step depends only on (seed, step) and a killed run resumes exactly. Loss L1, AdamW
with warm-up + cosine decay (`temsim.denoise.train.fit`, orbax checkpoints).

Run (about 30 min on a loaded 2-core CPU; rerun the same command to resume):
  .venv/bin/python benchmarks/train_blind.py --steps 1200
  .venv/bin/python benchmarks/train_blind.py --export-only   # ship latest checkpoint
Writes runs/blind/ (dataset, checkpoints, metrics.jsonl) and ships model.json,
weights.npz and training.json to temsim/denoise/pretrained/blind/.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from temsim import dataset, noise
from temsim.denoise import metrics, pretrained, train
from temsim.denoise.tiling import denoise_image

ROOT = Path(__file__).resolve().parents[1]
SHIP = ROOT / "temsim" / "denoise" / "pretrained" / "blind"
MODEL_SPEC = {"kind": "unet", "depth": 3, "features": 24, "bias_free": True}
NOISE_TYPES = ("gaussian", "poisson", "salt_and_pepper", "speckle")
TRAIN_FAMILIES = ("graphene", "hbn", "mos2")
HELD_OUT_FAMILY = "phosphorene"
SHAPE = (128, 128)
SAMPLING = 0.15  # Å/px
# levels in image units for a clean intensity ~1: Gaussian sigma, Poisson dose
# [e/px per unit intensity], salt-and-pepper fraction, speckle variance
TRAIN_NOISE = noise.MixedSpec(
    types=NOISE_TYPES,
    gaussian=(0.02, 0.3),
    poisson=(10.0, 1000.0),
    salt_and_pepper=(0.005, 0.1),
    speckle=(1e-3, 0.05),
)


def train_config(n: int, seed: int) -> dataset.DatasetConfig:
    """Clean training images (the stored noisy copies are not used)."""
    return dataset.DatasetConfig(
        n_samples=n,
        shape=SHAPE,
        sampling=SAMPLING,
        seed=seed,
        families=TRAIN_FAMILIES,
        chunk=16,
    )


def clean_stack(ds) -> np.ndarray:
    """(N, ny, nx) float32 clean images of a finished dataset."""
    return np.stack(
        [np.asarray(getattr(s.clean, "array", s.clean), np.float32) for s in ds]
    )


def online_data(clean_NxHxW, *, batch_size, patch, seed, spec=TRAIN_NOISE):
    """data(step) -> (noisy, clean) (B, patch, patch): crop, D4, fresh mixed noise."""
    n, ny, nx = clean_NxHxW.shape
    key = jax.random.key(seed)

    def data(step: int):
        rng = np.random.default_rng([seed, step])
        out = []
        for i in rng.integers(0, n, batch_size):
            a, b = rng.integers(0, ny - patch + 1), rng.integers(0, nx - patch + 1)
            p = np.rot90(clean_NxHxW[i, a : a + patch, b : b + patch], rng.integers(4))
            out.append(p[:, ::-1] if rng.integers(2) else p)
        clean = np.ascontiguousarray(np.stack(out), np.float32)
        noisy, _ = noise.mixed(jax.random.fold_in(key, step), clean, spec)
        return np.asarray(noisy, np.float32), clean

    return data


def validate(model, clean_NxHxW, seed=123, spec=TRAIN_NOISE) -> dict[str, float]:
    """Mean PSNR [dB] of noisy and denoised over fresh mixed noise (whole images)."""
    noisy, _ = noise.mixed(jax.random.key(seed), clean_NxHxW, spec)
    noisy = np.asarray(noisy, np.float32)
    den = np.asarray(denoise_image(model, noisy))
    p_in = [float(metrics.psnr(y, c)) for y, c in zip(noisy, clean_NxHxW, strict=True)]
    p_out = [float(metrics.psnr(d, c)) for d, c in zip(den, clean_NxHxW, strict=True)]
    return {"psnr_noisy_db": float(np.mean(p_in)), "psnr_denoised_db": np.mean(p_out)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--n-train", type=int, default=160, help="clean training images")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--loss", default="l1", help="l1, l2, or l1=0.84,ms_ssim=0.16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "blind"))
    p.add_argument("--ship", default=str(SHIP), help="'' to not ship")
    p.add_argument("--export-only", action="store_true", help="ship last checkpoint")
    p.add_argument(
        "--noise",
        choices=NOISE_TYPES,
        default=None,
        help="train a specialist on this noise type only (default: all, blind)",
    )
    p.add_argument(
        "--noise-weights",
        default=None,
        help="probabilities of the blind model's noise types, comma-separated in the "
        f"order {','.join(NOISE_TYPES)} (default: equal)",
    )
    p.add_argument(
        "--impulse-mask",
        action="store_true",
        help="feed the U-Net two extra channels marking pixels at the image's min and "
        "max (temsim.denoise.models.impulse_features)",
    )
    p.add_argument(
        "--impulse-gate",
        type=float,
        default=0.0,
        help="with --impulse-mask: mark the extremes only where both are shared by at "
        "least this fraction of the pixels (models.image_extremes; 0: always)",
    )
    p.add_argument(
        "--init",
        default=None,
        help="start from the model in this folder (e.g. the shipped blind model: "
        "a specialist fine-tuned from it)",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    spec = TRAIN_NOISE
    if args.noise is not None and args.noise_weights is not None:
        p.error("--noise-weights applies to the blind model only, not with --noise")
    if args.noise is not None:
        spec = dataclasses.replace(TRAIN_NOISE, types=(args.noise,))
    if args.noise_weights is not None:
        try:
            weights = tuple(float(w) for w in args.noise_weights.split(","))
            spec = dataclasses.replace(TRAIN_NOISE, weights=weights)
        except ValueError as e:
            p.error(f"--noise-weights {args.noise_weights!r}: {e}")
    if args.impulse_gate and not args.impulse_mask:
        p.error("--impulse-gate needs --impulse-mask")
    model_spec = MODEL_SPEC
    if args.impulse_mask:
        model_spec = dict(MODEL_SPEC, impulse_mask=True)
        if args.impulse_gate:
            model_spec["impulse_gate"] = args.impulse_gate
    if args.init:
        init_spec = json.loads((Path(args.init) / pretrained.MODEL_FILE).read_text())
        if args.impulse_mask and not init_spec.get("impulse_mask"):
            p.error(
                f"--impulse-mask: the --init model in {args.init} has no impulse mask"
            )
        gate = float(init_spec.get("impulse_gate", 0.0))
        if args.impulse_gate and args.impulse_gate != gate:
            p.error(
                f"--impulse-gate {args.impulse_gate:g}: the model spec comes from "
                f"--init, whose gate is {gate:g}; drop --impulse-gate or match it"
            )
        model_spec = init_spec
    t_start = time.perf_counter()

    ds = dataset.generate(train_config(args.n_train, args.seed), out / "train.zarr")
    clean = clean_stack(ds)
    t_data = time.perf_counter() - t_start
    print(f"{len(clean)} clean images {clean.shape[1:]} in {t_data:.0f} s", flush=True)
    loss = args.loss
    if "=" in loss:
        loss = {k: float(v) for k, v in (kv.split("=") for kv in loss.split(","))}
    config = train.TrainConfig(
        steps=args.steps,
        learning_rate=args.lr,
        warmup_steps=min(100, args.steps // 10),
        loss=loss,
        checkpoint_dir=str(out / "ckpt"),
        checkpoint_every=100,
        metrics_path=str(out / "ckpt" / "metrics.jsonl"),
        progress=True,
    )
    if args.export_only:
        model = train.load_model(config.checkpoint_dir)
    else:
        train.save_specs(config.checkpoint_dir, model_spec, config)
        data = online_data(
            clean,
            batch_size=args.batch_size,
            patch=args.patch,
            seed=args.seed,
            spec=spec,
        )
        if args.init:
            start = pretrained.load_directory(args.init)
        else:
            start = train.build_model(model_spec, seed=args.seed)
        result = train.fit(start, data, config)
        model = result.model
    model.eval()
    t_train = time.perf_counter() - t_start - t_data
    val_cfg = dataclasses.replace(
        train_config(8, args.seed + 10_000), families=dataset.FAMILIES
    )
    val_clean = clean_stack(dataset.generate(val_cfg, out / "val.zarr"))
    val = validate(model, val_clean, spec=spec)
    records = [
        json.loads(x) for x in (out / "ckpt" / "metrics.jsonl").read_text().splitlines()
    ]
    info = {
        "model": model_spec,
        "parameters": int(sum(a.size for a in pretrained.state_arrays(model).values())),
        "train_data": train_config(args.n_train, args.seed).to_dict(),
        "train_noise": spec.to_dict(),
        "init": args.init,
        "held_out_family": HELD_OUT_FAMILY,
        "train_config": dataclasses.asdict(config),
        "batch_size": args.batch_size,
        "patch": args.patch,
        "steps_done": records[-1]["step"] if records else 0,
        "final_loss_mean_last_50": float(np.mean([r["loss"] for r in records[-50:]])),
        "data_s": round(t_data, 1),
        "train_s_this_call": round(t_train, 1),
        "train_s_logged": records[-1]["time"] if records else 0.0,
        "validation_all_families": val,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {jax.device_count()} {jax.default_backend()}"
        f" device(s), jax {jax.__version__}",
        # the training command (an --export-only call ships what it trained)
        "command": "python benchmarks/train_blind.py "
        + " ".join(a for a in argv or [] if a != "--export-only"),
    }
    print(json.dumps(info["validation_all_families"]), flush=True)
    if args.ship:
        d = pretrained.save_pretrained(model, model_spec, args.ship)
        (d / "training.json").write_text(json.dumps(info, indent=1, default=float))
        print(f"shipped to {d}", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
