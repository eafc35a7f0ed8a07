"""physattn.lagrangian: Euler-Lagrange by autodiff against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import lagrangian, thermo

F64 = dict(rtol=1e-12, atol=1e-12)


def test_harmonic_oscillator_acceleration_and_energy():
    m, k = 2.0, 3.0
    L = lambda q, v: 0.5 * m * v @ v - 0.5 * k * q @ q
    q, v = jnp.array([0.3, -1.2]), jnp.array([0.5, 0.1])
    np.testing.assert_allclose(lagrangian.euler_lagrange(L)(q, v), -k / m * q, **F64)
    np.testing.assert_allclose(
        lagrangian.hamiltonian(L)(q, v), 0.5 * m * v @ v + 0.5 * k * q @ q, **F64
    )


def test_position_dependent_mass_matches_hand_derivation():
    # L = (1/2) (1 + q^2) v^2 - q^4 / 4  =>  (1 + q^2) a = -q v^2 - q^3.
    L = lambda q, v: 0.5 * (1 + q[0] ** 2) * v[0] ** 2 - q[0] ** 4 / 4
    q, v = jnp.array([0.7]), jnp.array([-1.3])
    expected = (-q * v**2 - q**3) / (1 + q**2)
    np.testing.assert_allclose(lagrangian.euler_lagrange(L)(q, v), expected, **F64)


def test_fisher_metric_of_gauge_chart_is_hessian_of_log_z():
    theta = jnp.array([0.4, -1.0, 2.0])
    log_z = lambda th: jax.nn.logsumexp(lagrangian.gauge_logits(th))
    g = lagrangian.softmax_fisher_metric(theta)
    np.testing.assert_allclose(g, jax.jit(jax.hessian(log_z))(theta), **F64)
    assert float(jnp.min(jnp.linalg.eigvalsh(g))) > 0


def test_softmax_is_the_stationary_state_of_the_information_gas():
    e = jnp.array([0.5, -1.0, 0.2, 1.5])
    t = 0.7
    L = lagrangian.information_gas(e, t)
    theta_star = lagrangian.gibbs_logits(e, t)
    p_star = jax.nn.softmax(lagrangian.gauge_logits(theta_star))
    np.testing.assert_allclose(p_star, thermo.gibbs(-e, t), **F64)
    zero = jnp.zeros(3)
    accel = jax.jit(lagrangian.euler_lagrange(L))
    np.testing.assert_allclose(accel(theta_star, zero), zero, atol=1e-12)
    # Elsewhere the force is not zero.
    a = accel(theta_star + 0.3, zero)
    assert float(jnp.max(jnp.abs(a))) > 1e-2


def test_bad_input():
    with pytest.raises(ValueError, match="energies"):
        lagrangian.information_gas(jnp.ones(1), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        lagrangian.information_gas(jnp.ones(3), 0.0)
    with pytest.raises(ValueError, match="q and qdot"):
        lagrangian.euler_lagrange(lambda q, v: v @ v)(jnp.ones(2), jnp.ones(3))
