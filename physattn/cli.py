"""`physattn` command line: one subcommand per study.

Examples:
  physattn thermo --out results      # identities table + C(T) figure as Markdown
  physattn dynamics --out results    # least-action relaxation to softmax
  physattn symmetry --out results    # RoPE symmetry breaking, Goldstone modes
  physattn grok --p 19 23 31 --seeds 0 1 2 --out results/grok   # grokking sweep
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

# subcommand -> (module with run(out_dir, seed) -> Markdown, help, files written)
_REPORTS = {
    "thermo": (
        "physattn.experiments.thermo_report",
        "measure the canonical-ensemble identities and plot C(T)",
        "thermo.md, thermo_heat_capacity.png",
    ),
    "dynamics": (
        "physattn.experiments.dynamics_report",
        "integrate the Euler-Lagrange flow of the information gas (Fisher metric)",
        "dynamics.md, dynamics_relaxation.png",
    ),
    "symmetry": (
        "physattn.experiments.symmetry_report",
        "count the logits' symmetry dimensions and the Goldstone modes RoPE breaks",
        "symmetry.md, symmetry_hessian.png",
    ),
}


def _run_report(args: argparse.Namespace) -> int:
    module = importlib.import_module(_REPORTS[args.command][0])
    out = pathlib.Path(args.out)
    section = module.run(out, seed=args.seed)
    (out / f"{args.command}.md").write_text(section)
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
    for name, (_, help_text, files) in _REPORTS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=f"example:\n  physattn {name} --out results --seed 0\n"
            f"writes into results/: {files}",
        )
        p.add_argument("--out", default="results", help="output folder")
        p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
        p.set_defaults(func=_run_report)
    from physattn.experiments import grokking_cli

    grokking_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
