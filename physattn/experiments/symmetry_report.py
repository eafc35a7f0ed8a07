"""Demo section: RoPE breaks the GL(H) symmetry of the logits; Goldstone zero modes.

Closed-form symmetry dimensions are compared with the null space of the logits'
tangent map over the Lie algebra, and the zero modes of a loss Hessian at its minimum
are counted. Explicit breaking by RoPE turns would-be zero modes into soft modes whose
stiffness grows with the rotation frequency (pseudo-Goldstone modes). CLI:
`physattn symmetry --out DIR`.
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from physattn import symmetry

_CASES = [  # (head_dim, rope, fraction)
    (8, False, 1.0),
    (8, True, 1.0),
    (8, True, 0.5),
    (16, False, 1.0),
    (16, True, 1.0),
    (16, True, 0.25),
]


def run(out_dir: str | pathlib.Path = "results", seed: int = 0) -> str:
    """Measure the symmetry dimensions and Hessian zero modes; return Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    key = jax.random.key(seed)
    rows = []
    for h, rope, frac in _CASES:
        cells = []
        for group in ("GL", "O"):
            exact = symmetry.symmetry_dimension(
                h, rope=rope, group=group, fraction=frac
            )
            measured = symmetry.numerical_dimension(
                h, rope=rope, group=group, fraction=frac, key=key
            )
            cells += [str(exact), str(measured)]
        label = "none" if not rope else ("RoPE" if frac == 1.0 else f"p-RoPE {frac:g}")
        rows.append(f"| {h} | {label} | " + " | ".join(cells) + " |")

    fig, ax = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    spectra = []
    for rope, frac, label in [
        (False, 1.0, "no RoPE"),
        (True, 0.5, "p-RoPE 0.5"),
        (True, 1.0, "RoPE"),
    ]:
        ev = np.sort(
            np.abs(symmetry.loss_hessian_spectrum(8, rope=rope, fraction=frac, key=key))
        )
        zeros = symmetry.count_zero_modes(ev)
        ax.semilogy(
            np.arange(1, ev.size + 1),
            np.maximum(ev, 1e-16),
            ".-",
            ms=3,
            label=f"{label}: {zeros} zero modes",
        )
        spectra.append((label, zeros, ev[zeros] if zeros < ev.size else np.nan))
    ax.set(
        xlabel="eigenvalue index",
        ylabel="|eigenvalue| of loss Hessian",
        title="Goldstone modes at a minimum (H = 8, d_model = 10)",
    )
    ax.legend(fontsize=8)
    fig.savefig(out / "symmetry_hessian.png", dpi=120)
    plt.close(fig)

    lines = [
        "## Symmetry and Goldstone modes of the logits (physattn.symmetry)",
        "",
        "Dimension of the reparametrisation symmetry W_Q -> W_Q A, "
        "W_K -> W_K A^{-T}: closed form against the null space of the logits' tangent "
        "map over the group's Lie algebra (random weights, float64).",
        "",
        "| head dim | position encoding | GL closed form | GL measured | "
        "O closed form | O measured |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "At a minimum of a logits-matching loss, the Hessian has exactly as many zero "
        "eigenvalues as the symmetry has dimensions. RoPE lifts most of them; the "
        "smallest non-zero eigenvalue is the softest lifted mode. Under full RoPE the "
        "lowest frequencies rotate so slowly over the context that their pairs are "
        "almost symmetric (a pseudo-Goldstone mode, nearly zero); p-RoPE leaves those "
        "pairs unrotated, keeping their symmetry exact, so the remaining lifted modes "
        "are all stiff (Barbero et al., ICLR 2025):",
        "",
        "| encoding | zero modes | smallest non-zero eigenvalue |",
        "| --- | --- | --- |",
        *[f"| {lab} | {z} | {m:.3g} |" for lab, z, m in spectra],
        "",
        "![symmetry_hessian.png](symmetry_hessian.png)",
        "",
        f"_Computed in {time.perf_counter() - t_start:.1f} s._",
        "",
    ]
    return "\n".join(lines)
