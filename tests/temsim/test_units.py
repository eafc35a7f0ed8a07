"""Relativistic wavelength and interaction parameter (temsim.units)."""

import math

import jax
import numpy as np
import pytest

import temsim
from temsim import units


@pytest.mark.parametrize(
    "energy, expected", [(80e3, 0.041757), (200e3, 0.025079), (300e3, 0.019687)]
)
def test_wavelength_literature_values(energy, expected):
    # Kirkland 2010, Table 2.1 / Williams & Carter Table 1.1 (to the digits quoted).
    assert float(temsim.energy2wavelength(energy)) == pytest.approx(expected, abs=2e-6)


def test_wavelength_from_si_constants():
    """Second path: lambda = h / p, E = sqrt(p^2 c^2 + m^2 c^4) - m c^2, in SI."""
    energy = 200e3 * units.ELEMENTARY_CHARGE
    mc2 = units.ELECTRON_MASS * units.SPEED_OF_LIGHT**2
    p = math.sqrt(energy * (energy + 2 * mc2)) / units.SPEED_OF_LIGHT
    assert float(temsim.energy2wavelength(200e3)) == pytest.approx(
        units.PLANCK / p * 1e10, rel=1e-12
    )


def test_sigma_matches_2pi_m_e_lambda_over_h2():
    energy = np.array([60e3, 80e3, 200e3, 300e3])
    gamma = 1 + energy / units.ELECTRON_REST_ENERGY
    lam = np.asarray(temsim.energy2wavelength(energy)) * 1e-10
    si = (
        2
        * np.pi
        * gamma
        * units.ELECTRON_MASS
        * units.ELEMENTARY_CHARGE
        * lam
        / units.PLANCK**2
    )  # [1/(V m)]
    np.testing.assert_allclose(temsim.energy2sigma(energy), si * 1e-10, rtol=1e-12)
    # Kirkland 2010, Table 5.1 quotes sigma(200 keV) = 0.00072884 / (V Å).
    assert float(temsim.energy2sigma(200e3)) == pytest.approx(7.2884e-4, rel=1e-4)


def test_scalar_helpers_match_array_functions():
    assert units.wavelength(80e3) == pytest.approx(
        float(temsim.energy2wavelength(80e3))
    )
    assert units.sigma(80e3) == pytest.approx(float(temsim.energy2sigma(80e3)))


def test_potential_prefactor_is_h2_over_2pi_m0_e():
    h2_over = units.PLANCK**2 / (
        2 * math.pi * units.ELECTRON_MASS * units.ELEMENTARY_CHARGE
    )
    assert units.POTENTIAL_PREFACTOR == pytest.approx(h2_over * 1e20, rel=1e-9)
    assert units.POTENTIAL_PREFACTOR == pytest.approx(47.878, abs=1e-3)


def test_jit_equals_eager():
    energy = np.linspace(60e3, 300e3, 5)
    np.testing.assert_allclose(
        jax.jit(temsim.energy2sigma)(energy), temsim.energy2sigma(energy), rtol=1e-14
    )


@pytest.mark.parametrize("bad", [0.0, -80e3, float("nan"), float("inf"), [80e3, -1]])
@pytest.mark.parametrize("fn", [temsim.energy2wavelength, temsim.energy2sigma])
def test_bad_energy_raises(fn, bad):
    with pytest.raises(ValueError, match="energy must be a positive"):
        fn(bad)
