"""physattn.thermo: every identity of the canonical ensemble, checked by a second path.

float64 identities to 1e-10 or better; derivatives against autodiff and finite
differences; bounds property-based; numerics in low precision and extreme regimes.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from physattn import thermo

F64 = dict(rtol=1e-10, atol=1e-10)


def _scores(seed, shape, scale=2.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float64)


# --- the canonical relations ----------------------------------------------------------


@pytest.mark.parametrize("t", [0.05, 0.7, 1.0, 8.0])
def test_free_energy_is_u_minus_ts_and_matches_logsumexp(t):
    s = _scores(0, (4, 7))
    th = thermo.observables(s, t)
    np.testing.assert_allclose(th.free_energy, th.energy - t * th.entropy, **F64)
    np.testing.assert_allclose(th.log_partition, jax.nn.logsumexp(s / t, -1), **F64)
    p = jax.nn.softmax(s / t, axis=-1)
    np.testing.assert_allclose(thermo.gibbs(s, t), p, **F64)
    np.testing.assert_allclose(th.energy, -jnp.sum(p * s, -1), **F64)
    np.testing.assert_allclose(th.entropy, -jnp.sum(p * jnp.log(p), -1), **F64)
    assert bool(jnp.all(th.valid))


def test_entropy_is_minus_df_dt():
    s = _scores(1, (9,))
    f = lambda t: thermo.observables(s, t).free_energy
    for t in [0.3, 1.0, 3.0]:
        np.testing.assert_allclose(
            jax.grad(f)(t), -thermo.observables(s, t).entropy, **F64
        )


@pytest.mark.parametrize("t", [0.2, 1.0, 5.0])
def test_heat_capacity_four_ways(t):
    s = _scores(2, (11,))
    th = thermo.observables(s, t)
    p = jax.nn.softmax(s / t)
    var_e = jnp.sum(p * (s - jnp.sum(p * s)) ** 2) / t**2
    u = lambda t: thermo.observables(s, t).energy
    f = lambda t: thermo.observables(s, t).free_energy
    log_p = jnp.log(p)
    varentropy = jnp.sum(p * (log_p - jnp.sum(p * log_p)) ** 2)
    for other in [var_e, jax.grad(u)(t), -t * jax.grad(jax.grad(f))(t), varentropy]:
        np.testing.assert_allclose(th.heat_capacity, other, **F64)


def test_from_qk_default_temperature_is_sqrt_d():
    q = _scores(3, (2, 5, 16), 1.0)
    k = _scores(4, (2, 9, 16), 1.0)
    expected = thermo.observables(jnp.einsum("btd,bsd->bts", q, k), 4.0)
    got = thermo.from_qk(q, k)
    chex.assert_trees_all_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got.entropy.shape == (2, 5)


# --- variational principle ------------------------------------------------------------


def test_gibbs_minimises_free_energy_functional_with_kl_gap():
    s = _scores(5, (6,))
    t = 0.7
    p = thermo.gibbs(s, t)
    f_p = thermo.free_energy_functional(p, -s, t)
    np.testing.assert_allclose(f_p, thermo.observables(s, t).free_energy, **F64)
    r = jax.random.dirichlet(jax.random.key(6), jnp.ones(6), (50,), jnp.float64)
    gap = thermo.free_energy_functional(r, jnp.broadcast_to(-s, r.shape), t) - f_p
    kl = jnp.sum(jax.scipy.special.rel_entr(r, p[None, :]), -1)
    np.testing.assert_allclose(gap, t * kl, **F64)
    assert bool(jnp.all(gap > 0))


# --- field, dipole, Fisher metric -----------------------------------------------------


def _qk(seed, t_len=3, s_len=7, d=4):
    q = _scores(seed, (t_len, d), 1.0)
    k = _scores(seed + 1, (s_len, d), 1.0)
    return q, k


def _free_energy_of_q(qi, k, t):
    return thermo.from_qk(qi[None, :], k, t).free_energy[0]


def _log_z_of_q(qi, k, t):
    return thermo.from_qk(qi[None, :], k, t).log_partition[0]


@pytest.mark.parametrize("t", [None, 0.6])
def test_polarization_susceptibility_fisher_are_derivatives(t):
    q, k = _qk(10)
    tt = 2.0 if t is None else t
    pol = thermo.polarization(q, k, t)
    chi = thermo.susceptibility(q, k, t)
    g = thermo.fisher_metric(q, k, t)
    derivs = jax.jit(
        jax.vmap(
            lambda qi: (
                -jax.grad(_free_energy_of_q)(qi, k, tt),
                -jax.hessian(_free_energy_of_q)(qi, k, tt),
                jax.hessian(_log_z_of_q)(qi, k, tt),
            )
        )
    )
    pol_ad, chi_ad, g_ad = derivs(q)
    np.testing.assert_allclose(pol, pol_ad, **F64)
    np.testing.assert_allclose(chi, chi_ad, **F64)
    np.testing.assert_allclose(g, g_ad, **F64)
    # fluctuation-dissipation: the response dP/dq equals the fluctuation Cov(k)/T.
    jac = jax.jit(jax.jacobian(lambda qq: thermo.polarization(qq, k, t)))(q)
    for i in range(q.shape[0]):
        np.testing.assert_allclose(jac[i, :, i, :], chi[i], **F64)
    np.testing.assert_allclose(chi, g * tt, **F64)


def test_fisher_metric_is_positive_semidefinite_and_masked():
    q, k = _qk(12, d=5)
    mask = jnp.array([True, False, True, True, False, True, True])
    g = thermo.fisher_metric(q, k, 1.3, mask[None, :])
    g_drop = thermo.fisher_metric(q, k[mask], 1.3)
    np.testing.assert_allclose(g, g_drop, **F64)
    assert float(jnp.min(jnp.linalg.eigvalsh(g))) > -1e-12


# --- first law, chemical potential ----------------------------------------------------


def test_first_law_residual_is_higher_order_in_the_step():
    s0 = _scores(13, (5, 8))
    ds = _scores(14, (5, 8))
    t0, dt = 0.8, 0.3
    steps = np.array([0.2, 0.1, 0.05, 0.025])
    res = []
    for h in steps:
        fl = thermo.first_law(s0, s0 + h * ds, t0, t0 + h * dt)
        np.testing.assert_allclose(fl.d_energy, fl.heat + fl.work + fl.residual, **F64)
        res.append(float(jnp.max(jnp.abs(fl.residual))))
    order = np.polyfit(np.log(steps), np.log(res), 1)[0]
    # Midpoint rule: third order; the contract promises at least second.
    assert order > 2.0, (order, res)
    assert 2.7 < order < 3.3, (order, res)


def test_first_law_pure_work_and_pure_heat():
    s0 = _scores(15, (6,))
    h = 1e-4
    # Heating at fixed levels: no work, dU = T dS up to O(h^3).
    fl = thermo.first_law(s0, s0, 1.0, 1.0 + h)
    assert float(fl.work) == 0.0
    assert abs(float(fl.residual)) < 1e-6 * abs(float(fl.d_energy))
    # Shifting all levels by a constant: pure work, no entropy change.
    fl = thermo.first_law(s0, s0 + h, 1.0, 1.0)
    np.testing.assert_allclose(fl.heat, 0.0, atol=1e-14)
    np.testing.assert_allclose(fl.work, -h, rtol=1e-10)


def test_chemical_potential_is_free_energy_difference():
    s = _scores(16, (3, 6))
    new = _scores(17, (3,))
    t = 0.9
    f_n = thermo.observables(s, t).free_energy
    f_n1 = thermo.observables(jnp.concatenate([s, new[:, None]], -1), t).free_energy
    np.testing.assert_allclose(thermo.chemical_potential(s, new, t), f_n1 - f_n, **F64)
    assert bool(jnp.all(thermo.chemical_potential(s, new, t) < 0))


def test_quenched_heat_capacity():
    u = _scores(18, (200, 3))
    np.testing.assert_allclose(
        thermo.quenched_heat_capacity(u, 2.0),
        np.var(np.asarray(u), axis=0) / 4.0,
        **F64,
    )
    np.testing.assert_allclose(
        thermo.quenched_heat_capacity(u.T, 2.0, axis=-1),
        thermo.quenched_heat_capacity(u, 2.0),
        **F64,
    )


# --- masks and empty rows -------------------------------------------------------------


def test_mask_excludes_keys_exactly_and_empty_rows_are_flagged():
    s = _scores(19, (3, 6))
    mask = jnp.array([[True] * 6, [False] * 6, [True, False, True, False, False, True]])
    th = thermo.observables(s, 0.5, mask)
    kept = thermo.observables(s[2, mask[2]], 0.5)
    for field in thermo.Thermo._fields[:5]:
        np.testing.assert_allclose(getattr(th, field)[2], getattr(kept, field), **F64)
        assert float(getattr(th, field)[1]) == 0.0
    assert th.valid.tolist() == [True, False, True]
    assert float(jnp.sum(thermo.gibbs(s, 0.5, mask)[1])) == 0.0
    # -inf scores are the same as masked keys.
    s_inf = jnp.where(mask, s, -jnp.inf)
    chex.assert_trees_all_close(thermo.observables(s_inf, 0.5), th)

    def loss(s):
        o = thermo.observables(s, 0.5, mask)
        return jnp.sum(o.entropy + o.heat_capacity + o.free_energy + o.energy)

    g = jax.grad(loss)(s)
    assert bool(jnp.all(jnp.isfinite(g)))
    assert bool(jnp.all(g[1] == 0)) and bool(jnp.all(g[2][~mask[2]] == 0))
    g_inf = jax.grad(lambda s: jnp.sum(thermo.observables(s, 0.5).entropy))(s_inf)
    assert bool(jnp.all(jnp.isfinite(g_inf)))


def test_mask_broadcasts_over_rows():
    s = _scores(20, (2, 3, 5))
    mask = jnp.array([True, True, False, True, False])
    th = thermo.observables(s, 1.0, mask)
    chex.assert_trees_all_close(th, thermo.observables(s[..., mask], 1.0))


def test_per_row_temperature():
    s = _scores(21, (3, 5))
    t = jnp.array([0.5, 1.0, 2.0])
    th = thermo.observables(s, t)
    for i in range(3):
        np.testing.assert_allclose(
            th.entropy[i], thermo.observables(s[i], float(t[i])).entropy, **F64
        )


# --- bounds (property-based) ----------------------------------------------------------

_rows = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=12),
    elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
)


@given(s=_rows, t=st.floats(1e-3, 1e4))
def test_entropy_and_heat_capacity_bounds(s, t):
    th = thermo.observables(s, t)
    n = s.shape[-1]
    spread = (np.max(s, -1) - np.min(s, -1)) / t
    assert np.all(np.isfinite(np.asarray(th.heat_capacity)))
    assert np.all(np.asarray(th.entropy) >= 0)
    assert np.all(np.asarray(th.entropy) <= np.log(n) * (1 + 1e-12) + 1e-12)
    assert np.all(np.asarray(th.heat_capacity) >= 0)
    # Popoviciu: Var <= (range)^2 / 4.
    c_max = spread**2 / 4
    assert np.all(np.asarray(th.heat_capacity) <= c_max * (1 + 1e-9) + 1e-12)


# --- numerics across dtypes and extreme regimes ---------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_low_precision_inputs_reduce_in_float32(dtype):
    s = _scores(22, (4, 16))
    th = thermo.observables(s.astype(dtype), 1.3)
    assert th.entropy.dtype == jnp.float32
    ref = thermo.observables(s.astype(dtype).astype(jnp.float64), 1.3)
    for field in thermo.Thermo._fields[:5]:
        np.testing.assert_allclose(
            getattr(th, field), getattr(ref, field), rtol=2e-5, atol=2e-5
        )


@pytest.mark.parametrize("spread", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("t", [1e-3, 1.0, 1e4])
def test_float32_extreme_spreads_and_temperatures(spread, t):
    s64 = jnp.linspace(-spread / 2, spread / 2, 33, dtype=jnp.float64)
    s64 = jnp.stack([s64, jnp.roll(s64, 5) * 0.3])
    th = thermo.observables(s64.astype(jnp.float32), t)
    ref = thermo.observables(s64.astype(jnp.float32).astype(jnp.float64), t)
    for field in thermo.Thermo._fields[:5]:
        v = np.asarray(getattr(th, field))
        assert np.all(np.isfinite(v)), field
    assert np.all(np.asarray(th.entropy) >= 0)
    assert np.all(np.asarray(th.heat_capacity) >= 0)
    # Absolute errors scaled by the natural size of each quantity.
    scale_e = max(spread, t)
    np.testing.assert_allclose(th.energy, ref.energy, atol=1e-5 * scale_e)
    np.testing.assert_allclose(th.free_energy, ref.free_energy, atol=1e-5 * scale_e * 5)
    np.testing.assert_allclose(th.entropy, ref.entropy, atol=1e-5)
    np.testing.assert_allclose(
        th.heat_capacity, ref.heat_capacity, atol=1e-4, rtol=1e-4
    )


# --- transforms -----------------------------------------------------------------------


def test_jit_equals_eager_and_vmap_equals_loop():
    s = _scores(23, (5, 9))
    mask = jax.random.bernoulli(jax.random.key(24), 0.7, s.shape)
    eager = thermo.observables(s, 0.8, mask)
    jitted = jax.jit(thermo.observables)(s, 0.8, mask)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-13, atol=1e-13)
    vm = jax.vmap(thermo.observables, in_axes=(0, None, 0))(s, 0.8, mask)
    for i in range(5):
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], vm),
            thermo.observables(s[i], 0.8, mask[i]),
            rtol=1e-13,
            atol=1e-13,
        )


def test_no_recompilation_on_second_call():
    traces = []

    @jax.jit
    def f(s, t):
        traces.append(1)
        return thermo.observables(s, t)

    jax.block_until_ready(f(_scores(25, (3, 4)), 1.0))
    jax.block_until_ready(f(_scores(26, (3, 4)), 2.0))
    assert len(traces) == 1


def test_gradients_match_finite_differences():
    s = _scores(27, (6,))
    t = 0.9

    def fn(s, t):
        o = thermo.observables(s, t)
        return o.entropy + 0.3 * o.heat_capacity - 0.1 * o.free_energy

    g_s, g_t = jax.grad(fn, argnums=(0, 1))(s, t)
    eps = 1e-6
    fd_s = np.array(
        [
            (fn(s.at[i].add(eps), t) - fn(s.at[i].add(-eps), t)) / (2 * eps)
            for i in range(6)
        ]
    )
    np.testing.assert_allclose(g_s, fd_s, rtol=1e-7, atol=1e-8)
    fd_t = (fn(s, t + eps) - fn(s, t - eps)) / (2 * eps)
    np.testing.assert_allclose(g_t, fd_t, rtol=1e-7)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_is_named(t):
    with pytest.raises(ValueError, match="temperature"):
        thermo.observables(jnp.ones(3), t)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="scores.*floating"):
        thermo.observables(jnp.arange(3), 1.0)
    with pytest.raises(ValueError, match="mask.*shape"):
        thermo.observables(jnp.ones((2, 3)), 1.0, jnp.ones((4,), bool))
    with pytest.raises(ValueError, match="mask.*boolean"):
        thermo.observables(jnp.ones(3), 1.0, jnp.ones(3))
    with pytest.raises(ValueError, match="temperature.*shape"):
        thermo.observables(jnp.ones((2, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match="feature size"):
        thermo.from_qk(jnp.ones((2, 4)), jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="scores0 and scores1"):
        thermo.first_law(jnp.ones(3), jnp.ones(4), 1.0, 1.0)
    with pytest.raises(ValueError, match="r and energies"):
        thermo.free_energy_functional(jnp.ones(3), jnp.ones(4), 1.0)
    with pytest.raises(ValueError, match="at least one key"):
        thermo.observables(jnp.ones((2, 0)), 1.0)
