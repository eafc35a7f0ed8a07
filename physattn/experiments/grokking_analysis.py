"""Does a heat-capacity peak announce grokking? Onsets, peaks, leads, fits, figures.

Everything here is numpy on logged curves: `steps` (L,) and `curves` {name: (L,) or
(L, N)}. Onset of generalisation at threshold a: the first logged step with test
accuracy >= a (a in 0.5, 0.9, 0.95). Peak of an observable: argmax of its centred
moving average (window `smooth` points, shrinking at the ends) of the curve without
its step-0 point; lead = onset - peak step (> 0: the peak announces the onset).
Baselines for the comparison: the weight norm and the test loss (its memorisation
peak), analysed the same way. Finite size: peak height h(p) fitted by a power law
a p^b (a transition: grows without bound) and by a saturating a p / (p + p0) (a
crossover), compared by AIC.

References: Power et al. (2022); Nanda et al. (ICLR 2023); Akaike (1974) for AIC.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLDS = (0.5, 0.9, 0.95)
BASELINES = ("weight_norm", "test.loss")


def onsets(steps, acc, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """{str(a): first step with acc >= a, or None} for each threshold a."""
    steps, acc = np.asarray(steps), np.asarray(acc, dtype=np.float64)
    out = {}
    for a in thresholds:
        hit = np.nonzero(acc >= a)[0]
        out[f"{a:g}"] = int(steps[hit[0]]) if hit.size else None
    return out


def smooth(y, window: int) -> np.ndarray:
    """Centred moving average over `window` (odd) points, shrinking at the ends."""
    y = np.asarray(y, dtype=np.float64)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive int, got {window!r}")
    h = window // 2
    c = np.concatenate([[0.0], np.cumsum(y)])
    i = np.arange(y.size)
    lo, hi = np.maximum(i - h, 0), np.minimum(i + h + 1, y.size)
    return (c[hi] - c[lo]) / (hi - lo)


def find_peak(steps, y, window: int, skip_first: bool = True) -> tuple[int, float]:
    """(step, height) of the maximum of the smoothed curve; the step-0 point (the
    initialisation) is dropped before smoothing."""
    steps, y = np.asarray(steps), np.asarray(y, dtype=np.float64)
    start = 1 if skip_first and y.size > 1 else 0
    if not np.all(np.isfinite(y[start:])):
        raise ValueError("curve has non-finite values; the run diverged")
    ys = smooth(y[start:], window)
    i = int(np.argmax(ys))
    return int(steps[start + i]), float(ys[i])


def scalar_observables(curves: dict[str, Any]) -> dict[str, np.ndarray]:
    """The scalar curves analysed: baselines, output probes, per-layer head means
    ('<split>.attn<l>.<q>.mean') and the largest head heat capacity ('... .max')."""
    out: dict[str, np.ndarray] = {}
    for name, v in curves.items():
        a = np.asarray(v, dtype=np.float64)
        if name in ("train.acc", "test.acc"):
            continue
        if a.ndim == 1:
            out[name] = a
        elif a.ndim == 2:
            out[f"{name}.mean"] = a.mean(axis=1)
            if name.endswith("heat_capacity"):
                out[f"{name}.max"] = a.max(axis=1)
    return out


def analyze(steps, curves: dict[str, Any], window: int) -> dict[str, Any]:
    """Onsets and, for each scalar observable, its peak step, height and leads."""
    on = onsets(steps, curves["test.acc"])
    peaks = {}
    for name, y in scalar_observables(curves).items():
        step, height = find_peak(steps, y, window)
        lead = {a: (None if s is None else s - step) for a, s in on.items()}
        peaks[name] = {"step": step, "height": height, "lead": lead}
    return {"onset": on, "grokked": on["0.95"] is not None, "peaks": peaks}


def _stats(leads: list[float], onset: list[float]) -> dict[str, Any]:
    lead = np.asarray(leads, dtype=np.float64)
    ons = np.asarray(onset, dtype=np.float64)
    peak = ons - lead
    # log(onset / peak) > 0 when the peak comes first; its spread says how well the
    # peak predicts the onset up to a constant factor.
    ratio = np.log(np.maximum(ons, 1.0) / np.maximum(peak, 1.0))
    q1, q3 = np.percentile(ratio, [25, 75]) if ratio.size else (np.nan, np.nan)
    return {
        "runs": int(lead.size),
        "precedes": int(np.sum(lead > 0)),
        "median_lead": float(np.median(lead)) if lead.size else None,
        "median_log_ratio": float(np.median(ratio)) if ratio.size else None,
        "iqr_log_ratio": float(q3 - q1) if ratio.size else None,
    }


def _leads_better(row: dict, base: dict) -> bool:
    """Precedes the onset in at least as many runs, with a smaller log-ratio IQR."""
    iqr, biqr = row["iqr_log_ratio"], base["iqr_log_ratio"]
    return (
        row["precedes"] >= base["precedes"]
        and iqr is not None
        and biqr is not None
        and iqr <= biqr
    )


def summarize(results: Sequence[dict], threshold: str = "0.9") -> dict[str, Any]:
    """Across runs that reach `threshold` (test accuracy), per observable: how
    many peak before the onset, the median lead [steps], the median and IQR of
    log(onset / peak), and whether it leads better than both baselines (precedes
    in at least as many runs, with a smaller IQR)."""
    grokked = [r for r in results if r["analysis"]["onset"][threshold] is not None]
    rows: dict[str, dict] = {}
    names = sorted({n for r in grokked for n in r["analysis"]["peaks"]})
    for name in names:
        leads, ons = [], []
        for r in grokked:
            pk = r["analysis"]["peaks"].get(name)
            if pk is not None:
                leads.append(pk["lead"][threshold])
                ons.append(r["analysis"]["onset"][threshold])
        rows[name] = _stats(leads, ons)
    bases = [rows.get(b) for b in BASELINES]
    for name, row in rows.items():
        row["beats_baselines"] = name not in BASELINES and all(
            base is not None and _leads_better(row, base) for base in bases
        )
    return {
        "threshold": threshold,
        "runs": len(results),
        "grokked": len(grokked),
        "observables": rows,
    }


def _aic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + 2 * k


def _grid_fit(x, y, basis, grid):
    """Best (rss, a, g) of y = a * basis(x, g) over g in grid (a by least squares)."""
    best = (np.inf, np.nan, np.nan)
    for g in grid:
        f = basis(x, g)
        denom = float(f @ f)
        if denom <= 0:
            continue
        a = float(f @ y) / denom
        rss = float(np.sum((y - a * f) ** 2))
        if rss < best[0]:
            best = (rss, a, float(g))
    return best


def fit_finite_size(p, height) -> dict[str, Any]:
    """Power law h = a p^b versus saturating h = a p / (p + p0), by AIC.

    Both have two parameters (a by least squares, the other on a fine grid), so the
    AIC difference is n log(RSS_power / RSS_sat). 'transition' when the power law
    wins with b > 0, else 'crossover'. Needs >= 3 distinct p.
    """
    x = np.asarray(p, dtype=np.float64)
    y = np.asarray(height, dtype=np.float64)
    if x.size != y.size or np.unique(x).size < 3:
        raise ValueError(
            f"fit_finite_size needs >= 3 distinct p with one height each, got p={p}"
        )
    n = x.size
    rss_pow, a_pow, b = _grid_fit(x, y, lambda x, g: x**g, np.linspace(-3, 3, 1201))
    p0_grid = np.geomspace(1e-2, 1e5, 1401) * x.min()
    rss_sat, a_sat, p0 = _grid_fit(x, y, lambda x, g: x / (x + g), p0_grid)
    aic_pow, aic_sat = _aic(rss_pow, n, 2), _aic(rss_sat, n, 2)
    verdict = "transition" if aic_pow < aic_sat and b > 0 else "crossover"
    return {
        "power": {"a": a_pow, "b": b, "rss": rss_pow, "aic": aic_pow},
        "saturating": {"a": a_sat, "p0": p0, "rss": rss_sat, "aic": aic_sat},
        "delta_aic": aic_pow - aic_sat,
        "verdict": verdict,
    }


def plot_run(result: dict, path: str | pathlib.Path) -> None:
    """Accuracy/loss and the observables against step (log x), onsets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(result["steps"], dtype=np.float64)
    cv = {k: np.asarray(v, dtype=np.float64) for k, v in result["curves"].items()}
    keep = steps > 0
    x = steps[keep]
    on = result["analysis"]["onset"]
    n_layers = result["config"]["n_layers"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    ax = axes[0, 0]
    ax.plot(x, cv["train.acc"][keep], label="train acc")
    ax.plot(x, cv["test.acc"][keep], label="test acc")
    ax2 = ax.twinx()
    ax2.plot(x, cv["train.loss"][keep], "C0:", label="train loss")
    ax2.plot(x, cv["test.loss"][keep], "C1:", label="test loss")
    ax2.set_yscale("log")
    ax2.set_ylabel("loss (dotted)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="center left", fontsize=8)
    panels = [
        (axes[0, 1], "heat_capacity", "C = <Var_p(E)>/T² (test)"),
        (axes[1, 0], "entropy", "entropy S [nats] (test)"),
        (axes[1, 1], "quenched_heat_capacity", "C_q = Var(U)/T² (test)"),
    ]
    for axp, q, title in panels:
        for l in range(n_layers):
            heads = cv[f"test.attn{l}.{q}"][keep]
            for h in range(heads.shape[1]):
                axp.plot(x, heads[:, h], color=f"C{l}", alpha=0.3, lw=0.8)
            axp.plot(x, heads.mean(axis=1), color=f"C{l}", label=f"layer {l} (heads)")
        axo = axp.twinx()
        axo.plot(x, cv[f"test.out.{q}"][keep], "k--", lw=1, label="output (T=1)")
        axo.set_ylabel("output softmax (dashed)")
        axp.set_title(title, fontsize=10)
        axp.legend(loc="upper left", fontsize=8)
    wn = cv["weight_norm"][keep]
    axes[0, 0].plot(x, wn / wn.max(), "k-.", lw=1, label="weight norm / max")
    for axp in axes.ravel():
        axp.set_xscale("log")
        for a, ls in zip(("0.5", "0.9", "0.95"), (":", "--", "-"), strict=True):
            if on[a] is not None:
                axp.axvline(on[a], color="grey", ls=ls, lw=0.8)
    for axp in axes[1]:
        axp.set_xlabel("step")
    c = result["config"]
    fig.suptitle(
        f"grokking (a {c['op']} b) mod {c['p']}, f = {c['train_fraction']}, "
        f"d = {c['d_model']}, L = {n_layers}, seed {c['seed']}; grey: onsets "
        "(acc >= 0.5, 0.9, 0.95)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
