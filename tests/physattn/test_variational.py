"""physattn.variational: optimisation over the simplex finds the Gibbs distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import variational


def test_optax_minimisation_reaches_gibbs_from_random_starts():
    e = 2.0 * jax.random.normal(jax.random.key(7), (8,), jnp.float64)
    res = variational.minimise_free_energy(
        e, 0.9, key=jax.random.key(8), num_starts=6, steps=3000
    )
    assert bool(jnp.all(res.kl < 1e-4)), res.kl
    np.testing.assert_allclose(res.gap, 0.9 * res.kl, rtol=1e-6, atol=1e-12)
    # F decreases along the run (up to Adam's small overshoots) and ends at F[p].
    assert bool(jnp.all(res.free_energy[:, -1] <= res.free_energy[:, 0]))
    np.testing.assert_allclose(
        res.r, jnp.broadcast_to(res.gibbs, res.r.shape), atol=5e-3
    )


def test_bad_input():
    with pytest.raises(ValueError, match="energies"):
        variational.minimise_free_energy(jnp.ones((2, 3)), 1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="temperature"):
        variational.minimise_free_energy(jnp.ones(3), -1.0, key=jax.random.key(0))
