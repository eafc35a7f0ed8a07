"""The `temsim` command line: a registry of subcommands.

Each subcommand is one `register_<name>(subparsers)` function that adds its parser and
sets `func` (called with the parsed namespace, returns an exit code). To add one, write
such a function and append it to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["COMMANDS", "build_parser", "main"]

SIMULATE_EXAMPLE = """example:
  temsim simulate --structure graphene --repeat 4 4 --energy 80e3 --sampling 0.05 \\
      --defocus=-50 --Cs=-1e5 --semiangle-cutoff 30 --out image.npy
writes image.npy (float array, intensity per pixel, 1 = vacuum) and image.png.
"""


def _simulate(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from temsim import structures
    from temsim.hrtem import hrtem

    builder = structures.STRUCTURES[args.structure]
    kwargs = {"seed": args.seed} if args.structure == "au_nanoparticle" else {}
    if args.repeat is not None and args.structure != "au_nanoparticle":
        n = 2 if args.structure in ("graphene", "hbn", "mos2") else 3
        kwargs["repeat"] = tuple(args.repeat[:n]) + (1,) * max(0, n - len(args.repeat))
    atoms = builder(**kwargs)
    image = hrtem(
        atoms,
        energy=args.energy,
        sampling=args.sampling,
        defocus=args.defocus,
        Cs=args.Cs,
        semiangle_cutoff=args.semiangle_cutoff,
        focal_spread=args.focal_spread,
        slice_thickness=args.slice_thickness,
        parametrization=args.parametrization,
    )
    array = np.asarray(image.array)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, array)
    png = out.with_suffix(".png")
    plt.imsave(png, array, cmap="gray", origin="lower")
    print(
        f"{args.structure}: {len(atoms)} atoms, image {array.shape} at "
        f"{image.sampling[0]:.4f} Å/pixel, intensity {array.min():.4f}-"
        f"{array.max():.4f}; wrote {out} and {png}"
    )
    return 0


def register_simulate(subparsers) -> None:
    """`temsim simulate`: an HRTEM image of a built-in structure."""
    from temsim.parametrizations import PARAMETRIZATIONS
    from temsim.structures import STRUCTURES

    p = subparsers.add_parser(
        "simulate",
        help="simulate an HRTEM image of a built-in structure",
        description="Plane-wave HRTEM image: potential slices, multislice, objective "
        "lens (units: Å, eV, mrad; defocus > 0 is underfocus).",
        epilog=SIMULATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--structure", choices=sorted(STRUCTURES), default="graphene")
    p.add_argument(
        "--repeat",
        type=int,
        nargs="+",
        default=None,
        help="unit-cell repetitions (x y [z])",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random structures")
    p.add_argument("--energy", type=float, default=80e3, help="electron energy [eV]")
    p.add_argument("--sampling", type=float, default=0.05, help="pixel size [Å]")
    p.add_argument("--defocus", type=float, default=0.0, help="defocus [Å]")
    p.add_argument("--Cs", type=float, default=0.0, help="spherical aberration [Å]")
    p.add_argument(
        "--semiangle-cutoff",
        type=float,
        default=math.inf,
        help="objective aperture [mrad]",
    )
    p.add_argument(
        "--focal-spread", type=float, default=0.0, help="focal spread, 1/e width [Å]"
    )
    p.add_argument("--slice-thickness", type=float, default=1.0, help="[Å]")
    p.add_argument("--parametrization", choices=PARAMETRIZATIONS, default="lobato")
    p.add_argument("--out", default="image.npy", help="output .npy (a .png is added)")
    p.set_defaults(func=_simulate)


def register_dataset(subparsers) -> None:
    from temsim.dataset_cli import register

    register(subparsers)


def register_denoising(subparsers) -> None:
    from temsim.denoise.cli import register_denoise, register_evaluate, register_train

    register_train(subparsers)
    register_denoise(subparsers)
    register_evaluate(subparsers)


COMMANDS: list[Callable] = [register_simulate, register_dataset, register_denoising]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="temsim",
        description="TEM image simulation and denoising.",
        epilog=SIMULATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `temsim`; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"temsim {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
