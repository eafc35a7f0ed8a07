"""Phase behaviour of the information gas: heat-capacity curves and their peaks.

A finite set of keys has no true phase transition; C(T) shows Schottky-like anomalies
where T matches gaps in the score spectrum. `schottky_heat_capacity` is the exact
two-level result the curves are checked against, and `heat_capacity_curve` locates the
peak of C(T) for every row (grid maximum refined by Newton steps on dC/dlog T, with
both derivatives from autodiff).

Reference: Kittel & Kroemer, *Thermal Physics* (1980), ch. 3 problem 6 (Schottky
anomaly); Pathria & Beale, *Statistical Mechanics* 3rd ed., sec. 3.9.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from physattn import _checks, thermo


def schottky_heat_capacity(
    gap: Float[ArrayLike, ...],
    temperature: Float[ArrayLike, ...],
    degeneracy: float | ArrayLike = 1,
) -> Float[Array, ...]:
    """Exact heat capacity of a ground state plus a g-fold excited level at `gap`.

    C(T) = g x^2 e^{-x} / (1 + g e^{-x})^2 with x = gap / T (k_B = 1). For g = 1 the
    maximum C = 0.4392 sits at T = 0.4168 gap. In attention terms: one key scores `gap`
    above g others.
    """
    d = _checks.float_array(gap, "gap")
    dtype = _checks.compute_dtype(d.dtype)
    t = _checks.temperature(temperature, dtype)
    g = jnp.asarray(degeneracy)
    if _checks.is_concrete(g) and not bool(jnp.all(g >= 1)):
        raise ValueError(f"degeneracy must be >= 1, got {degeneracy!r}")
    g = g.astype(dtype)
    x = d.astype(dtype) / t
    # g e^{-x} / (1 + g e^{-x})^2 written with e^{-|x|} so that neither sign overflows.
    a = jnp.log(g) - x
    frac = jnp.exp(a - 2.0 * jax.nn.softplus(a))
    return x * x * frac


class HeatCapacityCurve(NamedTuple):
    """C(T) of each row and the peak of each curve.

    Attributes:
      temperatures: (n_T,) the grid.
      heat_capacity: (..., n_T) C at each grid temperature.
      peak_temperature: (...) refined location of the largest maximum.
      peak_heat_capacity: (...) C at `peak_temperature`.
      interior: (...) bool, False where the maximum is at an end of the grid (the
        peak was not bracketed: widen the grid); then no refinement is done.
    """

    temperatures: Array
    heat_capacity: Array
    peak_temperature: Array
    peak_heat_capacity: Array
    interior: Array


def heat_capacity_curve(
    scores: Float[ArrayLike, "*rows n"],
    temperatures: Float[ArrayLike, " n_T"],
    mask: Bool[ArrayLike, "*rows n"] | None = None,
    *,
    newton_steps: int = 20,
) -> HeatCapacityCurve:
    """Heat capacity over a temperature grid, vmapped, with the peak of each row.

    `temperatures` must be strictly increasing and positive. The peak is refined with
    Newton's method on u = log T (dC/du and d2C/du2 by autodiff), kept inside the grid
    cell next to the maximum.
    """
    s = _checks.float_array(scores, "scores")
    _checks.at_least_1d(s, "scores")
    dtype = _checks.compute_dtype(s.dtype)
    ts = _checks.temperature(temperatures, dtype, "temperatures")
    if ts.ndim != 1 or ts.shape[0] < 3:
        raise ValueError(
            f"temperatures must be a 1-D grid of at least 3 values, got shape "
            f"{ts.shape}"
        )
    if _checks.is_concrete(ts) and not bool(jnp.all(jnp.diff(ts) > 0)):
        raise ValueError("temperatures must be strictly increasing")
    m = _checks.mask(mask, s.shape)
    s = s.astype(dtype)

    flat = s.reshape(-1, s.shape[-1])
    flat_mask = jnp.ones(flat.shape, bool) if m is None else m.reshape(flat.shape)
    curve, u_peak, c_peak, interior = _curve(flat, flat_mask, ts, int(newton_steps))
    rows = s.shape[:-1]
    return HeatCapacityCurve(
        temperatures=ts,
        heat_capacity=curve.reshape(rows + ts.shape),
        peak_temperature=jnp.exp(u_peak).reshape(rows),
        peak_heat_capacity=c_peak.reshape(rows),
        interior=interior.reshape(rows),
    )


def _c_row(row, row_mask, log_t):
    return thermo.observables(row, jnp.exp(log_t), row_mask).heat_capacity


@functools.partial(jax.jit, static_argnums=3)
def _curve(flat, flat_mask, ts, newton_steps):
    """C on the grid for (rows, n) scores, then Newton-refined peaks; jitted."""
    log_ts = jnp.log(ts)
    curve = jax.vmap(lambda row, rm: jax.vmap(lambda lt: _c_row(row, rm, lt))(log_ts))(
        flat, flat_mask
    )
    i_max = jnp.argmax(curve, axis=-1)
    interior = (i_max > 0) & (i_max < ts.shape[0] - 1)
    lo = log_ts[jnp.maximum(i_max - 1, 0)]
    hi = log_ts[jnp.minimum(i_max + 1, ts.shape[0] - 1)]
    dc = jax.grad(_c_row, argnums=2)
    d2c = jax.grad(dc, argnums=2)

    def refine(row, rm, u0, lo, hi, inner):
        def step(_, u):
            g, h = dc(row, rm, u), d2c(row, rm, u)
            # Newton towards a maximum (h < 0); otherwise stay.
            u_new = jnp.where(h < 0, u - g / jnp.where(h < 0, h, -1.0), u)
            return jnp.clip(u_new, lo, hi)

        u = jax.lax.fori_loop(0, newton_steps, step, u0)
        return jnp.where(inner, u, u0)

    u_peak = jax.vmap(refine)(flat, flat_mask, log_ts[i_max], lo, hi, interior)
    c_peak = jax.vmap(_c_row)(flat, flat_mask, u_peak)
    return curve, u_peak, c_peak, interior
