"""`temsim dataset`: generate or resume a (clean, noisy) training set.

Hook into temsim/cli.py with `from temsim.dataset_cli import register as
register_dataset` and `COMMANDS.append(register_dataset)`.
"""

from __future__ import annotations

import argparse
import json

EXAMPLE = """example:
  temsim dataset --print-config > config.json     # the defaults; edit as needed
  temsim dataset --config config.json --out train.zarr
Rerunning the same command resumes an interrupted run (also after kill -9) with no
sample lost or duplicated. The store is readable while it is written:
  python -c "import temsim.dataset as d; print(d.open('train.zarr'))"
On several hosts run the same command on each after jax.distributed.initialize()
(see temsim.dataset); chunks are split by process index.
"""


def _run(args: argparse.Namespace) -> int:
    import jax

    from temsim import dataset

    if args.print_config:
        print(json.dumps(dataset.DatasetConfig().to_dict(), indent=2))
        return 0
    if args.config is None or args.out is None:
        raise ValueError("--config CONFIG.json and --out PATH are both required")
    jax.config.update("jax_enable_x64", True)  # physics in float64, stored float32
    config = dataset.DatasetConfig.load(args.config)
    ds = dataset.generate(config, args.out, progress=not args.quiet)
    print(ds)
    return 0


def register(subparsers) -> None:
    """Add the `dataset` subcommand (sets `func`, returning an exit code)."""
    p = subparsers.add_parser(
        "dataset",
        help="generate a reproducible, resumable (clean, noisy) training set",
        description="N (clean, noisy) HRTEM image pairs of random 2-D materials "
        "with random optics and noise, written to a zarr store; sample i depends "
        "only on (config, i).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="DatasetConfig as JSON (see --print-config)")
    p.add_argument("--out", help="zarr store directory (created or resumed)")
    p.add_argument(
        "--print-config", action="store_true", help="print the default config JSON"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
