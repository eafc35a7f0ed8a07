"""physattn.dynamics: the diffrax flow against exact solutions and conservation laws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import dynamics, lagrangian, thermo


def test_harmonic_oscillator_matches_exact_solution():
    w = 1.7
    L = lambda q, v: 0.5 * v @ v - 0.5 * w**2 * q @ q
    ts = jnp.linspace(0.0, 10.0, 21)
    sol = dynamics.integrate(L, jnp.array([1.0]), jnp.array([0.0]), 10.0, ts=ts)
    q, v = sol.ys
    np.testing.assert_allclose(q[:, 0], jnp.cos(w * ts), atol=1e-7)
    np.testing.assert_allclose(v[:, 0], -w * jnp.sin(w * ts), atol=1e-7)


def test_undamped_information_gas_conserves_energy():
    e = jnp.array([0.5, -1.0, 0.2, 1.5])
    L = lagrangian.information_gas(e, 0.7)
    ts = jnp.linspace(0.0, 20.0, 41)
    # Start near the minimum with an energy well below every face of the simplex, so
    # the orbit stays bound (the metric degenerates at the boundary).
    q0 = lagrangian.gibbs_logits(e, 0.7) + jnp.array([0.3, -0.2, 0.1])
    sol = dynamics.integrate(L, q0, jnp.array([0.1, -0.05, 0.05]), 20.0, ts=ts)
    h = dynamics.energy_along(L, sol)
    assert float(jnp.max(jnp.abs(h - h[0]))) < 1e-6 * float(jnp.abs(h[0]) + 1)
    # It oscillates: the distribution does not settle.
    p = jax.vmap(lambda th: jax.nn.softmax(lagrangian.gauge_logits(th)))(sol.ys[0])
    assert float(jnp.max(jnp.abs(p[-1] - thermo.gibbs(-e, 0.7)))) > 1e-3


def test_damped_flow_relaxes_to_softmax_and_energy_decreases():
    e = jnp.array([0.5, -1.0, 0.2, 1.5])
    t = 0.7
    L = lagrangian.information_gas(e, t)
    ts = jnp.linspace(0.0, 60.0, 61)
    sol = dynamics.integrate(
        L, jnp.array([2.0, -2.0, 1.0]), jnp.zeros(3), 60.0, ts=ts, damping=1.0
    )
    h = dynamics.energy_along(L, sol)
    assert bool(jnp.all(jnp.diff(h) <= 1e-10))
    p_end = jax.nn.softmax(lagrangian.gauge_logits(sol.ys[0][-1]))
    np.testing.assert_allclose(p_end, thermo.gibbs(-e, t), atol=1e-6)
    # The final energy is the Gibbs free energy (kinetic energy has decayed).
    np.testing.assert_allclose(h[-1], thermo.observables(-e, t).free_energy, atol=1e-8)


def test_bad_input():
    L = lambda q, v: 0.5 * v @ v
    with pytest.raises(ValueError, match="damping"):
        dynamics.integrate(L, jnp.ones(2), jnp.ones(2), 1.0, damping=-1.0)
    with pytest.raises(ValueError, match="t1"):
        dynamics.integrate(L, jnp.ones(2), jnp.ones(2), 0.0)
    with pytest.raises(ValueError, match="q0 and qdot0"):
        dynamics.integrate(L, jnp.ones(2), jnp.ones(3), 1.0)
