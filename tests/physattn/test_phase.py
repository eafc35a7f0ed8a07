"""physattn.phase: the Schottky anomaly (exact) and C(T) curves of attention rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import phase, thermo


def test_schottky_two_level_peak():
    ts = jnp.geomspace(0.05, 5.0, 61)
    # One key scoring `gap` above another: the attention row is a two-level system.
    curve = phase.heat_capacity_curve(jnp.array([1.0, 0.0]), ts)
    assert bool(curve.interior)
    np.testing.assert_allclose(curve.peak_temperature, 0.41678, atol=1e-4)
    np.testing.assert_allclose(curve.peak_heat_capacity, 0.43923, atol=1e-4)
    np.testing.assert_allclose(
        curve.heat_capacity,
        phase.schottky_heat_capacity(1.0, ts),
        rtol=1e-12,
        atol=1e-15,
    )


def test_schottky_peak_is_stationary_point_of_closed_form():
    # Independent of the curve code: dC/dT = 0 at T* = 0.41678 gap for g = 1.
    dc = jax.grad(lambda t: phase.schottky_heat_capacity(1.0, t))
    assert abs(float(dc(0.416778))) < 1e-5
    assert float(dc(0.40)) > 0 > float(dc(0.43))


@pytest.mark.parametrize("g", [1, 2, 5])
def test_degenerate_schottky_matches_attention_row(g):
    gap, ts = 1.7, jnp.geomspace(0.05, 20.0, 40)
    row = jnp.concatenate([jnp.array([gap]), jnp.zeros(g)])
    c_attn = jax.vmap(lambda t: thermo.observables(row, t).heat_capacity)(ts)
    np.testing.assert_allclose(
        phase.schottky_heat_capacity(gap, ts, g), c_attn, rtol=1e-10, atol=1e-14
    )


def test_schottky_is_finite_at_extreme_ratios():
    ts = jnp.array([1e-4, 1e-2, 1.0, 1e2, 1e4])
    c = phase.schottky_heat_capacity(50.0, ts, 3)
    assert bool(jnp.all(jnp.isfinite(c))) and bool(jnp.all(c >= 0))
    assert float(c[0]) == 0.0


def test_curve_shapes_mask_and_boundary_flag():
    s = 3.0 * jax.random.normal(jax.random.key(0), (2, 3, 8), jnp.float64)
    mask = jnp.arange(8) < 6
    ts = jnp.geomspace(0.1, 10.0, 25)
    curve = phase.heat_capacity_curve(s, ts, mask)
    assert curve.heat_capacity.shape == (2, 3, 25)
    assert curve.peak_temperature.shape == (2, 3)
    ref = phase.heat_capacity_curve(s[..., :6], ts)
    np.testing.assert_allclose(curve.heat_capacity, ref.heat_capacity, rtol=1e-12)
    # The refined peak is at least as high as every grid value.
    inner = np.asarray(curve.interior)
    assert np.all(
        np.asarray(curve.peak_heat_capacity)[inner]
        >= np.max(np.asarray(curve.heat_capacity), -1)[inner] - 1e-12
    )
    # A grid that stops before the peak is flagged, not extrapolated.
    edge = phase.heat_capacity_curve(jnp.array([1.0, 0.0]), jnp.geomspace(1, 5, 5))
    assert not bool(edge.interior)
    np.testing.assert_allclose(edge.peak_temperature, 1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="temperatures"):
        phase.heat_capacity_curve(jnp.ones(3), jnp.array([1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="temperatures"):
        phase.heat_capacity_curve(jnp.ones(3), jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="degeneracy"):
        phase.schottky_heat_capacity(1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        phase.schottky_heat_capacity(1.0, 0.0)
