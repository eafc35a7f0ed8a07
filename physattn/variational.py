"""Gibbs variational principle, checked by optimisation.

Softmax is the unique minimiser over the probability simplex of the free-energy
functional F[r] = sum r E + T sum r log r (`thermo.free_energy_functional`), with
F[r] - F[p] = T KL(r || p). This module minimises F numerically with optax from random
starts, parametrising the simplex by r = softmax(theta), and reports how close each
start ends to the Gibbs distribution. It is a demonstration and a test oracle, not a
way to compute softmax.

Reference: Callen, *Thermodynamics* (1985) sec. 16.10; Cover & Thomas (2006) eq. 2.92.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from physattn import _checks, thermo


class Minimisation(NamedTuple):
    """Result of `minimise_free_energy` for `num_starts` random starts.

    Attributes:
      r: (num_starts, n) final distributions.
      free_energy: (num_starts, steps) F[r] along each run.
      gibbs: (n,) the exact minimiser softmax(-E/T).
      kl: (num_starts,) KL(r || gibbs) at the end.
      gap: (num_starts,) F[r] - F[gibbs] at the end (= T * kl).
    """

    r: Array
    free_energy: Array
    gibbs: Array
    kl: Array
    gap: Array


def minimise_free_energy(
    energies: Float[ArrayLike, " n"],
    temperature: float,
    *,
    key: PRNGKeyArray,
    num_starts: int = 8,
    steps: int = 2000,
    learning_rate: float = 0.05,
    init_scale: float = 3.0,
) -> Minimisation:
    """Minimise F[r] over the simplex with Adam from `num_starts` random logits.

    Args:
      energies: (n,) energies E_i = -s_i [score units].
      temperature: T > 0.
      key: PRNG key for the random starts theta ~ N(0, init_scale^2).
    """
    e = _checks.float_array(energies, "energies")
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"energies must be 1-D with >= 2 states, got shape {e.shape}")
    if int(steps) < 1 or int(num_starts) < 1:
        raise ValueError(
            f"steps and num_starts must be >= 1, got {steps} and {num_starts}"
        )
    dtype = _checks.compute_dtype(e.dtype)
    e = e.astype(dtype)
    t = _checks.temperature(temperature, dtype)
    opt = optax.adam(learning_rate)

    def objective(theta):
        return thermo.free_energy_functional(jax.nn.softmax(theta), e, t)

    def run(theta0):
        def step(carry, _):
            theta, state = carry
            f, g = jax.value_and_grad(objective)(theta)
            updates, state = opt.update(g, state, theta)
            return (optax.apply_updates(theta, updates), state), f

        (theta, _), history = jax.lax.scan(
            step, (theta0, opt.init(theta0)), length=int(steps)
        )
        return jax.nn.softmax(theta), history

    theta0 = init_scale * jax.random.normal(key, (int(num_starts),) + e.shape, dtype)
    # optax's bias correction computes `decay ** count` (python float ** int32), which
    # strict dtype promotion (used by our tests) refuses; the promotion is harmless.
    with jax.numpy_dtype_promotion("standard"):
        r, history = jax.jit(jax.vmap(run))(theta0)
    p = thermo.gibbs(-e, t)
    kl = jnp.sum(jax.scipy.special.rel_entr(r, p[None, :]), axis=-1)
    f_r = thermo.free_energy_functional(r, jnp.broadcast_to(e, r.shape), t)
    gap = f_r - thermo.free_energy_functional(p, e, t)
    return Minimisation(r=r, free_energy=history, gibbs=p, kl=kl, gap=gap)
