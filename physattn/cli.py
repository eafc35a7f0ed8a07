"""`physattn` command line: one subcommand per study.

Example:
  physattn thermo --out results      # identities table + C(T) figure as Markdown
"""

from __future__ import annotations

import argparse
import pathlib
import sys


def _thermo(args: argparse.Namespace) -> int:
    from physattn.experiments import thermo_report

    out = pathlib.Path(args.out)
    section = thermo_report.run(out, seed=args.seed)
    (out / "thermo.md").write_text(section)
    print(section)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="physattn",
        description="Attention as a physical system: studies and reports.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  physattn thermo --out results",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "thermo",
        help="measure the canonical-ensemble identities and plot C(T)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  physattn thermo --out results --seed 0\n"
        "writes results/thermo.md and results/thermo_heat_capacity.png",
    )
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.set_defaults(func=_thermo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
