"""Lagrangian mechanics by autodiff, and the information gas on its Fisher manifold.

For any L(q, qdot) the Euler-Lagrange equations d/dt dL/dqdot = dL/dq give

    M qddot = dL/dq - (d2L/dqdot dq) qdot,    M = d2L/dqdot2,

solved here with `jnp.linalg.solve`; the conserved energy is the Legendre transform
H = qdot . dL/dqdot - L. Both come from `jax.grad`/`jax.jacfwd` of L alone.

The information gas: logits theta parametrise p = softmax((theta, 0)) (the last logit
is fixed to 0, a gauge choice that removes the zero mode theta -> theta + c and makes
the metric positive definite). Its Lagrangian is kinetic energy in the Fisher metric
minus the free-energy functional as potential,

    L(theta, thetadot) = (m/2) thetadot^T g(theta) thetadot - F[p(theta)],
    g = J^T (diag p - p p^T) J  (Fisher metric of the softmax family),
    F[p] = sum p E + T sum p log p,

so dV/dtheta = 0 exactly at p = softmax(-E/T): softmax attention is the stationary
state, reached by damped least-action flow (`physattn.dynamics.integrate`).

Reference: Goldstein, Poole & Safko, *Classical Mechanics* 3rd ed., eq. 1.57 and
sec. 8.1; Amari, *Information Geometry and Its Applications* (2016) sec. 2.3.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from physattn import _checks, thermo

Lagrangian = Callable[[Array, Array], Array]
AccelFn = Callable[[Array, Array], Array]
EnergyFn = Callable[[Array, Array], Array]


def euler_lagrange(lagrangian: Lagrangian) -> AccelFn:
    """Return accel_fn(q, qdot) -> qddot solving the Euler-Lagrange equations of L.

    q and qdot are 1-D arrays of the same shape; L returns a scalar. The mass matrix
    d2L/dqdot2 must be invertible at the points where accel_fn is called.
    """

    def accel_fn(q: Array, qdot: Array) -> Array:
        if jnp.ndim(q) != 1 or jnp.shape(q) != jnp.shape(qdot):
            raise ValueError(
                f"q and qdot must be 1-D of the same shape, got {jnp.shape(q)} and "
                f"{jnp.shape(qdot)}"
            )
        dl_dq = jax.grad(lagrangian, argnums=0)(q, qdot)
        dl_dv = lambda q, v: jax.grad(lagrangian, argnums=1)(q, v)
        mass = jax.jacfwd(dl_dv, argnums=1)(q, qdot)
        mixed = jax.jacfwd(dl_dv, argnums=0)(q, qdot)  # d2L / dqdot dq
        return jnp.linalg.solve(mass, dl_dq - mixed @ qdot)

    return accel_fn


def hamiltonian(lagrangian: Lagrangian) -> EnergyFn:
    """Return energy_fn(q, qdot) = qdot . dL/dqdot - L, conserved by the flow."""

    def energy_fn(q: Array, qdot: Array) -> Array:
        momentum = jax.grad(lagrangian, argnums=1)(q, qdot)
        return jnp.vdot(qdot, momentum) - lagrangian(q, qdot)

    return energy_fn


def gauge_logits(theta: Float[ArrayLike, " n_minus_1"]) -> Float[Array, " n"]:
    """Logits (theta, 0): the chart of the simplex used by the information gas."""
    theta = jnp.asarray(theta)
    return jnp.concatenate([theta, jnp.zeros((1,), theta.dtype)])


def softmax_fisher_metric(theta: Float[ArrayLike, " n_minus_1"]) -> Float[Array, "a a"]:
    """Fisher metric of p = softmax((theta, 0)) in theta: g = (diag p - p p^T)[:-1,:-1].

    Equal to the Hessian of log Z(theta) (exponential family), positive definite.
    """
    p = jax.nn.softmax(gauge_logits(theta))[:-1]
    return jnp.diag(p) - jnp.outer(p, p)


def information_gas(
    energies: Float[ArrayLike, " n"], temperature: float, *, mass: float = 1.0
) -> Lagrangian:
    """L(theta, thetadot) = (m/2) thetadot^T g(theta) thetadot - F[softmax(theta, 0)].

    energies: (n,) E_i = -s_i [score units]; theta has n - 1 components. The potential
    is minimised, with zero force, at softmax(-E/T), the attention distribution.
    """
    e = _checks.float_array(energies, "energies")
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"energies must be 1-D with >= 2 states, got shape {e.shape}")
    dtype = _checks.compute_dtype(e.dtype)
    e = e.astype(dtype)
    t = _checks.temperature(temperature, dtype)
    if not mass > 0:
        raise ValueError(f"mass must be > 0, got {mass!r}")

    def lagrangian(theta: Array, theta_dot: Array) -> Array:
        p = jax.nn.softmax(gauge_logits(theta))
        kinetic = 0.5 * mass * theta_dot @ softmax_fisher_metric(theta) @ theta_dot
        return kinetic - thermo.free_energy_functional(p, e, t)

    return lagrangian


def gibbs_logits(energies: Float[ArrayLike, " n"], temperature: float) -> Array:
    """The stationary point of `information_gas`: theta_i = -(E_i - E_n)/T."""
    e = jnp.asarray(energies)
    return -(e[:-1] - e[-1]) / temperature
