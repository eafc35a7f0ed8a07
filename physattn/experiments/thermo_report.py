"""The thermodynamics section of the demo report: identities measured, C(T) figures.

`run(out_dir)` checks every identity of `physattn.thermo` in float64 on random
attention rows by an independent path (autodiff, closed form, optimisation), writes the
figures as PNG and returns the Markdown section. CLI: `physattn thermo --out DIR`.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from physattn import phase, thermo, variational


def _max_err(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def _identities(key) -> list[tuple[str, str, float, str]]:
    """(identity, second path, measured error, tolerance) on random rows, float64."""
    k1, k2, k3, k4, k5, k6 = jax.random.split(key, 6)
    s = 2.0 * jax.random.normal(k1, (16, 24), jnp.float64)
    t = 0.8
    th = thermo.observables(s, t)
    p = thermo.gibbs(s, t)
    rows: list[tuple[str, str, float, str]] = []
    add = lambda name, path, err, tol="1e-10": rows.append((name, path, err, tol))

    add(
        "F = U - T S",
        "closed forms",
        _max_err(th.free_energy, th.energy - t * th.entropy),
    )
    u_t = lambda tt: thermo.observables(s, tt).energy
    add(
        "S = -dF/dT",
        "jax.grad",
        _max_err(
            jax.jacfwd(lambda tt: thermo.observables(s, tt).free_energy)(t), -th.entropy
        ),
    )
    var_e = jnp.sum(p * (s - jnp.sum(p * s, -1, keepdims=True)) ** 2, -1) / t**2
    add("C = Var_p(E)/T^2", "explicit sum", _max_err(th.heat_capacity, var_e))
    add("C = dU/dT", "jax.jacfwd", _max_err(th.heat_capacity, jax.jacfwd(u_t)(t)))
    f_row = lambda tt: thermo.observables(s, tt).free_energy
    add(
        "C = -T d2F/dT2",
        "jax.jacfwd twice",
        _max_err(th.heat_capacity, -t * jax.jacfwd(jax.jacfwd(f_row))(t)),
    )
    lp = jnp.log(p)
    vent = jnp.sum(p * (lp - jnp.sum(p * lp, -1, keepdims=True)) ** 2, -1)
    add(
        "C = Var_p(log p) (varentropy)",
        "explicit sum",
        _max_err(th.heat_capacity, vent),
    )
    add(
        "F[p] = -T log Z",
        "free_energy_functional",
        _max_err(thermo.free_energy_functional(p, -s, t), th.free_energy),
    )
    r = jax.random.dirichlet(k2, jnp.ones(24), (16,), jnp.float64)
    gap = thermo.free_energy_functional(r, -s, t) - th.free_energy
    kl = jnp.sum(jax.scipy.special.rel_entr(r, p), -1)
    add(
        "F[r] - F[p] = T KL(r ‖ p)", "16 random r on the simplex", _max_err(gap, t * kl)
    )
    res = variational.minimise_free_energy(-s[0], t, key=k3, num_starts=8, steps=3000)
    add(
        "argmin_r F[r] = softmax(s/T)",
        "optax Adam, 8 random starts",
        float(jnp.max(res.kl)),
        "KL < 1e-4",
    )

    q = jax.random.normal(k4, (4, 8), jnp.float64)
    k = jax.random.normal(k5, (24, 8), jnp.float64)
    tq = 1.1
    f_q = lambda qi: thermo.from_qk(qi[None], k, tq).free_energy[0]
    lz_q = lambda qi: thermo.from_qk(qi[None], k, tq).log_partition[0]
    pol, chi = thermo.polarization(q, k, tq), thermo.susceptibility(q, k, tq)
    fis = thermo.fisher_metric(q, k, tq)
    add("P = <k> = -dF/dq", "jax.grad", _max_err(pol, -jax.vmap(jax.grad(f_q))(q)))
    add(
        "chi = Cov(k)/T = -d2F/dq2",
        "jax.hessian",
        _max_err(chi, -jax.vmap(jax.hessian(f_q))(q)),
    )
    add(
        "g = Cov(k)/T^2 = Hess_q log Z",
        "jax.hessian",
        _max_err(fis, jax.vmap(jax.hessian(lz_q))(q)),
    )
    jac = jax.vmap(jax.jacfwd(lambda qi: thermo.polarization(qi[None], k, tq)[0]))(q)
    add("FDT: dP/dq = Cov(k)/T", "jax.jacfwd", _max_err(jac, chi))

    ds = jax.random.normal(k6, s.shape, jnp.float64)
    hs = np.array([0.2, 0.1, 0.05, 0.025])
    resid = [
        float(
            jnp.max(jnp.abs(thermo.first_law(s, s + h * ds, t, t + 0.3 * h).residual))
        )
        for h in hs
    ]
    order = float(np.polyfit(np.log(hs), np.log(resid), 1)[0])
    add(
        "dU = T dS + <dE> (first law)",
        f"residual order in step: {order:.2f}",
        resid[-1],
        "order >= 2",
    )
    new = s[:, 0] + 0.5
    f1 = thermo.observables(jnp.concatenate([s, new[:, None]], -1), t).free_energy
    add(
        "mu = F(N+1) - F(N)",
        "direct",
        _max_err(thermo.chemical_potential(s, new, t), f1 - th.free_energy),
    )
    curve = phase.heat_capacity_curve(jnp.array([1.0, 0.0]), jnp.geomspace(0.05, 5, 61))
    add(
        "Schottky T*/gap = 0.41678",
        "Newton on dC/dlogT",
        abs(float(curve.peak_temperature) - 0.41678),
        "1e-4",
    )
    add(
        "Schottky C_max = 0.43923",
        "Newton on dC/dlogT",
        abs(float(curve.peak_heat_capacity) - 0.43923),
        "1e-4",
    )
    return rows


def _figures(out: pathlib.Path, key) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = jnp.geomspace(0.02, 50.0, 200)
    two = phase.heat_capacity_curve(jnp.array([1.0, 0.0]), ts)
    kq, kk = jax.random.split(key)
    d = 64
    q = jax.random.normal(kq, (1, d), jnp.float64)
    k = jax.random.normal(kk, (128, d), jnp.float64)
    row = (q @ k.T)[0]
    rnd = phase.heat_capacity_curve(row, ts)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.semilogx(ts, two.heat_capacity, lw=2, label="attention row s = (1, 0)")
    ax.semilogx(
        ts, phase.schottky_heat_capacity(1.0, ts), "k--", lw=1, label="Schottky, exact"
    )
    ax.plot(
        two.peak_temperature,
        two.peak_heat_capacity,
        "ro",
        label=f"peak T*={float(two.peak_temperature):.4f}",
    )
    ax.set(
        xlabel="temperature T / gap", ylabel="heat capacity C", title="two-level system"
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.semilogx(ts, rnd.heat_capacity, lw=2, label="C(T)")
    ax.axvline(np.sqrt(d), color="gray", ls=":", label=r"$T=\sqrt{d_k}$")
    ax.plot(
        rnd.peak_temperature,
        rnd.peak_heat_capacity,
        "ro",
        label=f"peak T*={float(rnd.peak_temperature):.2f}",
    )
    entropy = jax.vmap(lambda tt: thermo.observables(row, tt).entropy)(ts)
    ax2 = ax.twinx()
    ax2.semilogx(ts, entropy / np.log(128), color="C2", lw=1)
    ax2.set_ylabel("S / log n", color="C2")
    ax.set(
        xlabel="temperature T",
        ylabel="heat capacity C",
        title=f"random row: q, k ~ N(0, 1), d={d}, n=128",
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.savefig(out / "thermo_heat_capacity.png", dpi=120)
    plt.close(fig)
    return ["thermo_heat_capacity.png"]


def run(out_dir: str | pathlib.Path = "results", seed: int = 0) -> str:
    """Measure the identities, write figures into `out_dir`; return Markdown."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        key = jax.random.key(seed)
        rows = _identities(key)
        figs = _figures(out, jax.random.fold_in(key, 1))
    lines = [
        "## Attention as a canonical ensemble (physattn.thermo)",
        "",
        "Each identity is evaluated in float64 on random attention rows "
        "(16 rows x 24 keys, T = 0.8; q, k ~ N(0,1) with d = 8 for the field "
        "derivatives) and compared with a second, independent path.",
        "",
        "| identity | second path | max abs error | tolerance |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {n} | {p} | {e:.2e} | {t} |" for n, p, e, t in rows]
    lines += [
        "",
        "Heat capacity C(T): left, one key scoring a gap above another is exactly the "
        "Schottky two-level system; right, a random attention row with its peak "
        "(Newton-refined) and the conventional temperature sqrt(d_k).",
        "",
    ]
    lines += [f"![{f}]({f})" for f in figs]
    lines += ["", f"_Computed in {time.perf_counter() - t0:.1f} s._", ""]
    return "\n".join(lines)
