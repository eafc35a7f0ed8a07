"""`physattn grok`: the interrupt-safe sweep, its summary, and the demo section.

Each run writes `<out>/runs/<name>.json` (+ png) as soon as it finishes; a run whose
json exists is loaded, not rerun, so an interrupted sweep loses nothing. The summary
(`<out>/grok_summary.md`, `.json`, `grok_finite_size.png`) is rebuilt from every json
in `<out>/runs` after each run:

- per observable (d_model 128, one layer): in how many grokked runs the smoothed peak
  precedes the onset (test accuracy >= 0.9 by default, `--onset`; the json has all
  three thresholds), the median lead, and whether it leads better than the baselines
  (weight norm, test loss);
- finite size: median peak height vs p, power law vs saturating fit by AIC;
- width: final losses and peak heights vs parameter count for each (p, d_model).

Example:
  physattn grok --out results/grok --p 19 23 31 47 59 --seeds 0 1 2
  physattn grok --out results/grok --p 31 --seeds 0 1 2 --widths 32 64
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from physattn.experiments import grokking_analysis as analysis

if TYPE_CHECKING:
    from physattn.experiments import grokking

# Observables whose peak height is followed across p (finite size) and width.
SIZE_OBSERVABLES = (
    "test.attn0.heat_capacity.mean",
    "test.attn0.heat_capacity.max",
    "test.attn0.quenched_heat_capacity.mean",
    "test.out.heat_capacity",
    "train.out.heat_capacity",
)


def sweep_configs(
    ps: Sequence[int],
    seeds: Sequence[int],
    *,
    widths: Sequence[int] = (128,),
    op: str = "+",
    n_layers: int = 1,
    train_fraction: float | None = None,
    steps: int | None = None,
    log_every: int = 100,
    runs_dir: str | pathlib.Path,
) -> list[grokking.Config]:
    """One `Config` per (width, p, seed); heads 4, MLP 4 d_model."""
    from physattn.experiments import grokking

    cfgs = []
    for d in widths:
        for p in ps:
            for s in seeds:
                kw: dict[str, Any] = {
                    "op": op,
                    "n_layers": n_layers,
                    "d_model": d,
                    "d_mlp": 4 * d,
                    "seed": s,
                    "log_every": log_every,
                    "out_dir": str(runs_dir),
                }
                if train_fraction is not None:
                    kw["train_fraction"] = train_fraction
                if steps is not None:
                    kw["steps"] = steps
                cfgs.append(grokking.config_for(p, **kw))
    return cfgs


def sweep(
    cfgs: Sequence[grokking.Config],
    out_dir,
    *,
    threshold: str = "0.9",
    verbose: bool = True,
) -> dict:
    """Run each config unless its json exists; rewrite the summary after each."""
    from physattn.experiments import grokking

    out = pathlib.Path(out_dir)
    runs = out / "runs"
    summary: dict = {}
    for i, cfg in enumerate(cfgs):
        path = runs / f"{cfg.name}.json"
        tag = f"[grok {i + 1}/{len(cfgs)}] {cfg.name}"
        if path.exists():
            if verbose:
                print(f"{tag}: done before, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        res = grokking.run(cfg, verbose=verbose)
        if verbose:
            on = res["analysis"]["onset"]
            print(
                f"{tag}: onset(0.5/0.9/0.95) {on['0.5']}/{on['0.9']}/{on['0.95']}, "
                f"{res['stopped_at']} steps, {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        summary = summarize_dir(out, threshold)
    return summary or summarize_dir(out, threshold)


def load_runs(out_dir) -> list[dict]:
    runs = pathlib.Path(out_dir) / "runs"
    return [json.loads(p.read_text()) for p in sorted(runs.glob("grok_*.json"))]


def _final(result: dict, name: str) -> float:
    return float(np.mean(result["curves"][name][-3:]))


def summarize_dir(out_dir, threshold: str = "0.9") -> dict:
    """Summary of every run json under `out_dir/runs`; writes md, json and png."""
    out = pathlib.Path(out_dir)
    results = load_runs(out)
    if not results:
        raise ValueError(f"no run json under {out / 'runs'}; run the sweep first")
    main = [
        r
        for r in results
        if r["config"]["d_model"] == 128 and r["config"]["n_layers"] == 1
    ] or results
    summary: dict[str, Any] = {
        "leads": analysis.summarize(main, threshold),
        "leads_all_thresholds": {
            f"{a:g}": analysis.summarize(main, f"{a:g}") for a in analysis.THRESHOLDS
        },
    }
    by_p: dict[int, list[dict]] = {}
    for r in main:
        if r["analysis"]["grokked"]:
            by_p.setdefault(r["config"]["p"], []).append(r)
    finite: dict[str, Any] = {}
    ps = sorted(by_p)
    for name in SIZE_OBSERVABLES:
        h = [
            float(np.median([r["analysis"]["peaks"][name]["height"] for r in by_p[p]]))
            for p in ps
            if all(name in r["analysis"]["peaks"] for r in by_p[p])
        ]
        entry: dict[str, Any] = {"p": ps, "height": h}
        if len(h) == len(ps) and len(ps) >= 3:
            entry["fit"] = analysis.fit_finite_size(ps, h)
        finite[name] = entry
    summary["finite_size"] = finite
    width: dict[str, Any] = {}
    for r in results:
        c = r["config"]
        key = f"p{c['p']}_d{c['d_model']}_L{c['n_layers']}"
        w = width.setdefault(
            key,
            {
                "p": c["p"],
                "d_model": c["d_model"],
                "n_layers": c["n_layers"],
                "n_params": r["n_params"],
                "runs": 0,
                "grokked": 0,
                "train_loss": [],
                "test_loss": [],
                "height": [],
            },
        )
        w["runs"] += 1
        w["grokked"] += int(r["analysis"]["grokked"])
        w["train_loss"].append(_final(r, "train.loss"))
        w["test_loss"].append(_final(r, "test.loss"))
        w["height"].append(r["analysis"]["peaks"][SIZE_OBSERVABLES[0]]["height"])
    for w in width.values():
        for k in ("train_loss", "test_loss", "height"):
            w[k] = float(np.median(w[k]))
    summary["width"] = width
    summary["runs"] = [
        {
            "name": r["name"],
            "p": r["config"]["p"],
            "train_fraction": r["config"]["train_fraction"],
            "d_model": r["config"]["d_model"],
            "seed": r["config"]["seed"],
            "onset": r["analysis"]["onset"],
            "stopped_at": r["stopped_at"],
            "wall_s": r["timings"]["wall_s"],
        }
        for r in results
    ]
    (out / "grok_summary.json").write_text(json.dumps(summary, indent=1))
    (out / "grok_summary.md").write_text(summary_markdown(summary))
    if ps:
        _plot_finite_size(finite, out / "grok_finite_size.png")
    return summary


def _fmt(v, nd=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def summary_markdown(summary: dict) -> str:
    lines = ["## Grokking sweep summary", ""]
    lines += [
        "| run | p | f | d | seed | onset 0.5 / 0.9 / 0.95 | steps | wall [s] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["runs"]:
        on = r["onset"]
        lines.append(
            f"| {r['name']} | {r['p']} | {r['train_fraction']} | {r['d_model']} | "
            f"{r['seed']} | {_fmt(on['0.5'])} / {_fmt(on['0.9'])} / "
            f"{_fmt(on['0.95'])} | {r['stopped_at']} | {r['wall_s']:.0f} |"
        )
    ld = summary["leads"]
    lines += [
        "",
        f"### Does the peak precede generalisation? (onset: test acc >= "
        f"{ld['threshold']}; {ld['grokked']} of {ld['runs']} runs grokked)",
        "",
        "lead = onset - smoothed peak step; log ratio = log(onset / peak step) "
        "(spread = IQR: smaller predicts the onset better). Baselines: "
        + ", ".join(analysis.BASELINES)
        + ".",
        "",
        "| observable | peak precedes onset | median lead [steps] | median log ratio |"
        " IQR log ratio | beats baselines |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in ld["observables"].items():
        lines.append(
            f"| {name} | {row['precedes']}/{row['runs']} | {_fmt(row['median_lead'])}"
            f" | {_fmt(row['median_log_ratio'])} | {_fmt(row['iqr_log_ratio'])} | "
            f"{'yes' if row['beats_baselines'] else 'no'} |"
        )
    lines += [
        "",
        "### Finite size: peak height vs p (median over seeds)",
        "",
        "| observable | p | height | power a p^b: b | saturating p0 | ΔAIC (pow - sat)"
        " | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in summary["finite_size"].items():
        fit = e.get("fit")
        lines.append(
            f"| {name} | {', '.join(map(str, e['p']))} | "
            f"{', '.join(_fmt(h) for h in e['height'])} | "
            + (
                f"{fit['power']['b']:.2f} | {fit['saturating']['p0']:.3g} | "
                f"{fit['delta_aic']:.2f} | {fit['verdict']} |"
                if fit
                else "- | - | - | needs >= 3 p |"
            )
        )
    lines += [
        "",
        "### Width: loss and peak height vs parameter count (medians)",
        "",
        "| p | d_model | layers | params | grokked | final train loss | "
        "final test loss | peak C (test, attn0 mean) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for w in sorted(
        summary["width"].values(), key=lambda w: (w["p"], w["n_layers"], w["d_model"])
    ):
        lines.append(
            f"| {w['p']} | {w['d_model']} | {w['n_layers']} | {w['n_params']} | "
            f"{w['grokked']}/{w['runs']} | {_fmt(w['train_loss'])} | "
            f"{_fmt(w['test_loss'])} | {_fmt(w['height'])} |"
        )
    return "\n".join(lines) + "\n"


def _plot_finite_size(finite: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, e) in enumerate(finite.items()):
        if len(e["height"]) != len(e["p"]) or not e["p"]:
            continue
        p = np.asarray(e["p"], dtype=np.float64)
        ax.plot(p, e["height"], "o", color=f"C{i}", label=name)
        fit = e.get("fit")
        if fit:
            xs = np.linspace(p.min(), p.max(), 100)
            ax.plot(xs, fit["power"]["a"] * xs ** fit["power"]["b"], "-", color=f"C{i}")
            sat = fit["saturating"]
            ax.plot(xs, sat["a"] * xs / (xs + sat["p0"]), ":", color=f"C{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("p")
    ax.set_ylabel("peak height")
    ax.set_title("finite size: power law (solid) vs saturating (dotted)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out_dir, *, p: int = 23, seed: int = 0) -> str:
    """Demo section: one quick grokking run with probes; figure + leads table."""
    from physattn.experiments import grokking

    out = pathlib.Path(out_dir)
    cfg = grokking.config_for(p, seed=seed, steps=8_000, out_dir=str(out / "grok"))
    res = grokking.run(cfg)
    a = res["analysis"]
    on = a["onset"]
    fig = pathlib.Path("grok") / f"{cfg.name}.png"
    rows = [
        "weight_norm",
        "test.loss",
        "test.attn0.heat_capacity.mean",
        "test.attn0.heat_capacity.max",
        "test.attn0.quenched_heat_capacity.mean",
        "test.attn0.entropy.mean",
        "test.attn0.logit_scale.mean",
        "test.out.heat_capacity",
        "train.out.heat_capacity",
        "test.out.entropy",
    ]
    t = res["timings"]
    lines = [
        "## physattn.experiments.grokking: does a heat-capacity peak announce "
        "generalisation?",
        "",
        f"(a + b) mod {p}, train fraction {cfg.train_fraction}, the one-layer "
        "transformer of Nanda et al. (2023) (d 128, 4 heads, MLP 512), full-batch "
        "AdamW (lr 1e-3, wd 1). Probes every "
        f"{cfg.log_every} steps through `physattn.attention.dot_product_attention` "
        f"(T = sqrt(32)); output softmax at T = 1. {res['stopped_at']} steps in "
        f"{t['train_s']:.0f} s ({t['steps_per_s']:.0f} steps/s, compile "
        f"{t['compile_s']:.1f} s).",
        "",
        f"Onset of generalisation (test accuracy >= 0.5 / 0.9 / 0.95): step "
        f"{_fmt(on['0.5'])} / {_fmt(on['0.9'])} / {_fmt(on['0.95'])}.",
        "",
        f"![grokking run]({fig.as_posix()})",
        "",
        "| observable | smoothed peak step | height | lead vs onset 0.5 / 0.9 "
        "[steps] |",
        "| --- | --- | --- | --- |",
    ]
    for name in rows:
        pk = a["peaks"][name]
        lines.append(
            f"| {name} | {pk['step']} | {pk['height']:.4g} | "
            f"{_fmt(pk['lead']['0.5'])} / {_fmt(pk['lead']['0.9'])} |"
        )
    lines += [
        "",
        "One seed at one p says little: the question is answered by the sweep "
        "(`physattn grok --p 19 23 31 47 59 --seeds 0 1 2`), which counts in how "
        "many runs each peak precedes the onset against the baselines. The sweep "
        "of 2026-12-04 (benchmarks/results/grokking_sweep.md, verdict in "
        "benchmarks/README.md) does not support the claim for the canonical heat "
        "capacity C (its peak precedes the 0.9 onset in 6 of 14 grokked runs); the "
        "quenched heat capacity C_q does it in 13 of 14, peaking at about half the "
        "onset step and collapsing at it.",
        "",
    ]
    return "\n".join(lines)


def _main(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    cfgs = sweep_configs(
        args.p,
        args.seeds,
        widths=args.widths,
        op=args.op,
        n_layers=args.layers,
        train_fraction=args.train_fraction,
        steps=args.steps,
        log_every=args.log_every,
        runs_dir=out / "runs",
    )
    sweep(cfgs, out, threshold=args.onset)
    print((out / "grok_summary.md").read_text())
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `grok` subcommand to a `physattn` subparsers object."""
    p = subparsers.add_parser(
        "grok",
        help="grokking sweep with thermodynamic probes (heat-capacity peaks)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="example:\n  physattn grok --out results/grok --p 19 23 31 47 59 "
        "--seeds 0 1 2\n"
        "writes results/grok/runs/*.json|png and results/grok/grok_summary.md; "
        "rerunning skips finished runs",
    )
    p.add_argument("--p", type=int, nargs="+", default=[23], help="moduli (primes)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds")
    p.add_argument(
        "--widths", type=int, nargs="+", default=[128], help="d_model values"
    )
    p.add_argument("--op", default="+", choices=["+", "-", "*", "/"])
    p.add_argument("--layers", type=int, default=1, help="1 (Nanda) or 2 (Power)")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="override the per-p default (grokking.DEFAULTS)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="override the per-p step budget"
    )
    p.add_argument("--log-every", type=int, default=100, help="probe cadence")
    p.add_argument(
        "--onset",
        default="0.9",
        choices=["0.5", "0.9", "0.95"],
        help="test accuracy that defines the onset in the lead table (default 0.9)",
    )
    p.add_argument("--out", default="results/grok", help="output folder")
    p.set_defaults(func=_main)
    return p
