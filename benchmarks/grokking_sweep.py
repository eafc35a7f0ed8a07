"""Does a heat-capacity peak announce grokking? The sweep, recorded.

Runs (or resumes) the sweep of issue 7 with `physattn grok` settings
(`physattn.experiments.grokking.DEFAULTS`: one train fraction and step budget per p),
then writes to benchmarks/results/:

- grokking_sweep.md: the sweep's summary table (`grokking_cli.summarize_dir`);
- grokking_sweep.json: per run its config, onsets and the peaks/leads of every
  observable (no curves: the full run jsons stay in the output folder);
- grokking_sweep_collapse.png: canonical heat capacity C and quenched heat capacity
  C_q (test set, attention layer 0, mean over heads, smoothed, scaled to their
  maximum) against step / onset for every run that grokked: a precursor peaks left
  of 1, at the same place in every run;
- grokking_finite_size.png: peak heights against p.

Run: .venv/bin/python benchmarks/grokking_sweep.py [--out results/grok]
         [--analyze-only]
The sweep (p = 19 23 31 47 59, seeds 0 1 2, then d_model 32 and 64 at p = 31) takes
about 2 hours on one CPU core; rerunning resumes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from physattn.experiments import grokking_analysis as analysis
from physattn.experiments import grokking_cli

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PS = (19, 23, 31, 47, 59)
SEEDS = (0, 1, 2)
WIDTHS = (32, 64)  # at p = 31, besides 128
SHOWN = ("test.attn0.heat_capacity", "test.attn0.quenched_heat_capacity")


def run_sweep(out: Path) -> None:
    runs = out / "runs"
    cfgs = grokking_cli.sweep_configs(PS, SEEDS, runs_dir=runs)
    cfgs += grokking_cli.sweep_configs((31,), SEEDS, widths=WIDTHS, runs_dir=runs)
    grokking_cli.sweep(cfgs, out)


def collapse_figure(results: list[dict], path: Path, threshold: str = "0.9") -> int:
    """C and C_q against step / onset for every grokked d_model-128 run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    cmap = plt.get_cmap("viridis")
    n = 0
    for r in results:
        onset = r["analysis"]["onset"][threshold]
        if onset is None or r["config"]["d_model"] != 128:
            continue
        n += 1
        steps = np.asarray(r["steps"], float)
        colour = cmap((r["config"]["p"] - 19) / 40)
        for ax, name in zip(axes, SHOWN, strict=True):
            y = np.asarray(r["curves"][name], float).mean(axis=-1)
            y = analysis.smooth(y, r["config"]["smooth"])
            keep = steps > 0
            ax.plot(steps[keep] / onset, y[keep] / y.max(), color=colour, lw=0.9)
    for ax, title in zip(
        axes, ("canonical C = <Var_p(E)>/T²", "quenched C_q = Var(U)/T²"), strict=True
    ):
        ax.axvline(1.0, color="k", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(f"step / onset (test acc >= {threshold})")
        ax.set_title(f"{title} (test, layer 0)", fontsize=9)
    axes[0].set_ylabel("smoothed, / max")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(19, 59))
    fig.colorbar(sm, ax=axes, label="p", fraction=0.03)
    fig.suptitle(f"{n} grokked runs, d_model 128: where do the fluctuations peak?")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return n


def record(out: Path, dest: Path = RESULTS) -> None:
    grokking_cli.summarize_dir(out)
    results = grokking_cli.load_runs(out)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "grok_summary.md", dest / "grokking_sweep.md")
    shutil.copy(out / "grok_finite_size.png", dest / "grokking_finite_size.png")
    runs = {
        r["name"]: {
            "config": r["config"],
            "n_params": r["n_params"],
            "stopped_at": r["stopped_at"],
            "timings": r["timings"],
            "analysis": r["analysis"],
        }
        for r in results
    }
    summary = json.loads((out / "grok_summary.json").read_text())
    (dest / "grokking_sweep.json").write_text(
        json.dumps({"summary": summary, "runs": runs}, indent=1, default=float)
    )
    n = collapse_figure(results, dest / "grokking_sweep_collapse.png")
    print(f"recorded {len(results)} runs ({n} grokked at d 128) in {dest}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "results" / "grok"))
    p.add_argument("--analyze-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.analyze_only:
        run_sweep(out)
    record(out)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
