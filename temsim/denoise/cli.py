"""`temsim train`, `temsim denoise`, `temsim evaluate`: denoising on the command line.

Each `register_<name>(subparsers)` adds one subcommand whose `func(args)` returns an
exit code; `register(subparsers)` adds all three.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

TRAIN_EXAMPLE = """example:
  temsim train --model dncnn --depth 8 --features 32 --synthetic 0.02 0.2 \\
      --steps 2000 --batch-size 16 --patch 64 --loss l1=0.84,ms_ssim=0.16 \\
      --checkpoint-dir runs/blind
rerun the same command after an interruption to resume from the last checkpoint;
metrics go to runs/blind/metrics.jsonl. Use --data DIR for a temsim dataset.
"""

DENOISE_EXAMPLE = """example:
  temsim denoise noisy.tif denoised.tif          # the shipped blind model, offline
  temsim denoise noisy.npy denoised.npy --checkpoint-dir runs/blind --tile 256
  temsim denoise counts.tif denoised.tif --dose 1   # raw electron counts (Anscombe)
  temsim denoise noisy.tif denoised.tif --noise gaussian --level 0.4   # known noise
.npy always; .tif/.tiff with tifffile installed (float32 output).
"""

EVALUATE_EXAMPLE = """example:
  temsim evaluate denoised.npy clean.npy --tile 256
prints PSNR [dB], SSIM, MS-SSIM, seam score and atom-column shape errors as JSON.
"""


TIFF_SUFFIXES = (".tif", ".tiff")


def _tifffile(path: str):
    try:
        import tifffile
    except ImportError as e:
        raise SystemExit(
            f"reading/writing {path} needs tifffile (pip install tifffile); or use .npy"
        ) from e
    return tifffile


def _load_array(path: str):
    import numpy as np

    try:
        from temsim.io import read_image  # written in parallel; optional here

        return np.asarray(read_image(path).array, np.float32)
    except ImportError:
        pass
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        return np.asarray(_tifffile(path).imread(path), np.float32)
    return np.load(path).astype(np.float32)


def _save_array(path: str, array) -> None:
    import numpy as np

    try:
        from temsim.io import write_image  # written in parallel; optional here

        write_image(path, np.asarray(array, np.float32))
        return
    except ImportError:
        pass
    suffix = Path(path).suffix.lower()
    if suffix not in (*TIFF_SUFFIXES, ".npy"):
        raise SystemExit(f"output must be .npy or .tif/.tiff, got {path!r}")
    # Write next to the target and rename: a failure leaves no partial output file.
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial{suffix}")
    try:
        if suffix in TIFF_SUFFIXES:
            _tifffile(path).imwrite(tmp, np.asarray(array, np.float32))
        else:
            np.save(tmp, np.asarray(array, np.float32))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _loss_spec(text: str):
    if "=" not in text:
        return text
    return {k: float(v) for k, v in (kv.split("=") for kv in text.split(","))}


def _train(args: argparse.Namespace) -> int:
    from temsim.denoise import train

    spec = {"kind": args.model, "depth": args.depth, "features": args.features}
    if args.bias_free:
        spec["bias_free"] = True
    if args.model == "dncnn" and args.no_batch_norm:
        spec["batch_norm"] = False
    config = train.TrainConfig(
        steps=args.steps,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        loss=_loss_spec(args.loss),
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        metrics_path=str(Path(args.checkpoint_dir) / "metrics.jsonl"),
        progress=not args.quiet,
    )
    if args.data is not None:
        from temsim import dataset

        data = train.pairs_data(
            dataset.open(args.data),
            batch_size=args.batch_size,
            patch=args.patch,
            seed=args.seed,
        )
    else:
        lo, hi = args.synthetic
        data = train.synthetic_data(
            batch_size=args.batch_size, size=args.patch, sigma=(lo, hi), seed=args.seed
        )
    train.save_specs(args.checkpoint_dir, spec, config)
    result = train.fit(train.build_model(spec, seed=args.seed), data, config)
    tail = result.losses[-10:]
    if tail.size:
        print(
            f"trained steps {result.start_step}-{args.steps}; final loss "
            f"{tail.mean():.4g}; checkpoints in {args.checkpoint_dir}"
        )
    else:
        print(f"already trained to {args.steps} steps in {args.checkpoint_dir}")
    return 0


def register_train(subparsers) -> None:
    """`temsim train`: train a DnCNN/U-Net denoiser (resumable)."""
    p = subparsers.add_parser(
        "train",
        help="train a CNN denoiser (resumable)",
        description="Train a DnCNN or U-Net on (noisy, clean) patches with AdamW "
        "(warm-up + cosine), data-parallel over local devices, orbax checkpoints.",
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", choices=("dncnn", "unet"), default="dncnn")
    p.add_argument("--depth", type=int, default=17)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--bias-free", action="store_true", help="Mohan et al. 2020")
    p.add_argument("--no-batch-norm", action="store_true", help="DnCNN only")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="temsim dataset directory (temsim.dataset)")
    src.add_argument(
        "--synthetic",
        type=float,
        nargs=2,
        metavar=("SIGMA_LO", "SIGMA_HI"),
        default=(0.05, 0.2),
        help="synthetic lattices with Gaussian noise of sigma in [lo, hi] (default)",
    )
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=64, help="patch size [px]")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument(
        "--loss", default="l1", help="l1, l2, ms_ssim or l1=0.84,ms_ssim=0.16"
    )
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _denoise(args: argparse.Namespace) -> int:
    import numpy as np

    from temsim.denoise import train
    from temsim.denoise.tiling import denoise_image

    if args.checkpoint_dir is not None:
        model, source = train.load_model(args.checkpoint_dir), args.checkpoint_dir
    else:
        from temsim.denoise.pretrained import load_pretrained

        model, source = load_pretrained(args.model), f"pretrained {args.model!r}"
    x = _load_array(args.image)
    kw = {
        "tile": args.tile,
        "overlap": args.overlap,
        "self_ensemble": args.self_ensemble,
    }
    if (args.noise is None) != (args.level is None):
        raise ValueError(
            "--noise and --level go together (e.g. --noise gaussian --level 0.1)"
        )
    if args.noise is not None and args.dose is not None:
        raise ValueError(
            "give --dose or --noise/--level, not both (--noise poisson --level D "
            "combines the direct and Anscombe paths)"
        )
    if args.noise is not None:
        from temsim.denoise.sure import denoise_known

        y = denoise_known(model, x, args.noise, args.level, **kw)
    elif args.dose is None:
        y = denoise_image(model, x, **kw)
    else:
        from temsim.denoise.vst import denoise_poisson

        y = denoise_poisson(model, x, args.dose, **kw)
    y = np.asarray(y)
    out = Path(args.output or args.out or "denoised.npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_array(str(out), y)
    print(f"denoised {args.image} {x.shape} with {source} -> {out}")
    return 0


def register_denoise(subparsers) -> None:
    """`temsim denoise IN [OUT]`: denoise an image (shipped model by default)."""
    p = subparsers.add_parser(
        "denoise",
        help="denoise an image with a trained model",
        description="Whole-image or seamlessly tiled inference with the blind model "
        "shipped in the package (default) or a checkpoint written by `temsim train`.",
        epilog=DENOISE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help=".npy or .tif (or any format temsim.io reads)")
    p.add_argument("output", nargs="?", default=None, help="default denoised.npy")
    p.add_argument(
        "--checkpoint-dir", default=None, help="a `temsim train` run (default: shipped)"
    )
    p.add_argument("--model", default="blind", help="shipped model name (blind)")
    p.add_argument("--tile", type=int, default=None, help="tile size [px]")
    p.add_argument("--overlap", type=int, default=None, help="even overlap [px]")
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average over the 8 rotations/flips (D4): 8x slower, ~0.2-0.4 dB better",
    )
    p.add_argument(
        "--dose",
        type=float,
        default=None,
        help="known dose [e/px per unit image intensity] of shot-noise-limited data: "
        "denoise in the Anscombe domain (better only below the model's trained doses, "
        "10 e/px for the shipped model)",
    )
    p.add_argument(
        "--noise",
        choices=("gaussian", "poisson", "salt_and_pepper", "speckle"),
        default=None,
        help="known noise type (with --level): refine the CNN by SURE-LET, or for "
        "salt_and_pepper replace only the pixels at the image's extremes "
        "(temsim.denoise.denoise_known); up to 3 dB better above the model's "
        "trained noise levels",
    )
    p.add_argument(
        "--level",
        type=float,
        default=None,
        help="known noise level: sigma (gaussian), dose [e/px per unit intensity] "
        "(poisson), amount (salt_and_pepper) or variance (speckle), as in "
        "temsim.noise",
    )
    p.add_argument("--out", default=None, help="same as OUTPUT (kept for scripts)")
    p.set_defaults(func=_denoise)


def _evaluate(args: argparse.Namespace) -> int:
    from temsim.denoise import metrics, shape

    x, ref = _load_array(args.image), _load_array(args.reference)
    report = {
        "psnr_db": float(metrics.psnr(x, ref)),
        "ssim": float(metrics.ssim(x, ref)),
        "ms_ssim": float(metrics.ms_ssim(x, ref)),
    }
    if args.tile:
        report["seam_score"] = float(metrics.seam_score(x, ref, tile=args.tile))
    try:
        fid = shape.fidelity(x, ref, radius=args.column_radius)
        report["columns"] = int(fid.positions.shape[0])
        report["ellipticity_error"] = float(fid.mean_ellipticity_error)
        report["centroid_error_px"] = float(fid.mean_centroid_error)
    except ValueError as e:  # no columns in the reference
        report["columns"] = 0
        report["shape_note"] = str(e)
    print(json.dumps(report, indent=1))
    return 0


def register_evaluate(subparsers) -> None:
    """`temsim evaluate`: image-quality metrics of a denoised image vs the clean one."""
    p = subparsers.add_parser(
        "evaluate",
        help="PSNR/SSIM/MS-SSIM/seam/shape metrics against a clean image",
        description="Compare a denoised image with its clean reference.",
        epilog=EVALUATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help=".npy or .tif")
    p.add_argument("reference", help=".npy or .tif")
    p.add_argument("--tile", type=int, default=None, help="tile grid for seam score")
    p.add_argument("--column-radius", type=int, default=4, help="[px]")
    p.set_defaults(func=_evaluate)


def register(subparsers) -> None:
    """Add `train`, `denoise` and `evaluate`."""
    register_train(subparsers)
    register_denoise(subparsers)
    register_evaluate(subparsers)
