"""Least-action dynamics: the Euler-Lagrange flow of any L(q, qdot), with diffrax.

State y = (q, qdot); dy/dt = (qdot, a(q, qdot) - gamma qdot), where a comes from
`lagrangian.euler_lagrange` and gamma >= 0 is a Rayleigh damping (friction force
-gamma M qdot, so the energy H decays at the rate gamma qdot^T M qdot). With gamma = 0
the flow conserves H; with gamma > 0 it relaxes to a minimum of the potential, e.g.
softmax attention for `lagrangian.information_gas`.

Reference: Kidger, *On Neural Differential Equations* (2021) for diffrax; Goldstein
et al. sec. 1.5 (Rayleigh dissipation function).
"""

from __future__ import annotations

from typing import Any

import diffrax
import jax
from jaxtyping import Array, ArrayLike, Float

from physattn import _checks
from physattn.lagrangian import Lagrangian, euler_lagrange, hamiltonian


def integrate(
    lagrangian: Lagrangian,
    q0: Float[ArrayLike, " n"],
    qdot0: Float[ArrayLike, " n"],
    t1: float,
    *,
    damping: float = 0.0,
    t0: float = 0.0,
    ts: Float[ArrayLike, " n_t"] | None = None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    dt0: float | None = None,
    max_steps: int = 100_000,
) -> diffrax.Solution:
    """Solve the damped Euler-Lagrange flow from (q0, qdot0) on [t0, t1].

    Returns a `diffrax.Solution` whose `ys` is the tuple (q, qdot), each of shape
    (n_t, n), saved at `ts` (default: t1 only). Adaptive Tsit5 with a PID controller by
    default; pass `solver` to change it.
    """
    q0 = _checks.float_array(q0, "q0")
    qdot0 = _checks.float_array(qdot0, "qdot0")
    if q0.ndim != 1 or q0.shape != qdot0.shape:
        raise ValueError(
            f"q0 and qdot0 must be 1-D of the same shape, got {q0.shape} and "
            f"{qdot0.shape}"
        )
    if not damping >= 0:
        raise ValueError(f"damping must be >= 0, got {damping!r}")
    if not t1 > t0:
        raise ValueError(f"t1 must be > t0, got t0={t0!r}, t1={t1!r}")
    dtype = _checks.compute_dtype(q0.dtype, qdot0.dtype)
    accel = euler_lagrange(lagrangian)

    def vector_field(t: Any, y: tuple, args: Any) -> tuple:
        del t, args
        q, qdot = y
        return qdot, accel(q, qdot) - damping * qdot

    saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5() if solver is None else solver,
        t0,
        t1,
        dt0,
        (q0.astype(dtype), qdot0.astype(dtype)),
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )


def energy_along(lagrangian: Lagrangian, solution: diffrax.Solution) -> Array:
    """H(q(t), qdot(t)) at the saved times of `solution`, shape (n_t,)."""
    q, qdot = solution.ys
    return jax.vmap(hamiltonian(lagrangian))(q, qdot)
