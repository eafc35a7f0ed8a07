"""Aberrations, aperture, envelopes and the CTF (temsim.optics)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import temsim
from temsim import optics

ENERGY = 200e3
CS = 1e-3 * 1e10  # 1 mm [Å]


def test_point_resolution_is_the_first_zero_of_the_phase_ctf():
    """abTEM's test_point_resolution idea: at Scherzer defocus, the second sign change
    of Im(exp(-i chi)) along a radial line (the first is at alpha = 0) is at
    k = 1 / point_resolution."""
    gpts, sampling = (1, 4096), (0.05, 0.05)
    h = temsim.ctf(
        gpts,
        sampling,
        energy=ENERGY,
        Cs=CS,
        defocus=temsim.scherzer_defocus(CS, ENERGY),
    )
    kx = np.fft.fftfreq(gpts[1], sampling[1])[: gpts[1] // 2]
    imag = np.asarray(h.imag)[0, : gpts[1] // 2]
    crossings = np.where(np.diff(np.sign(imag)))[0]
    numerical = 1 / kx[crossings[1]]
    assert numerical == pytest.approx(temsim.point_resolution(CS, ENERGY), abs=0.1)
    assert temsim.point_resolution(CS, ENERGY) == pytest.approx(2.264, abs=1e-3)


def test_scherzer_defocus_value_and_sign():
    assert temsim.scherzer_defocus(CS, ENERGY) == pytest.approx(613.3, abs=0.1)
    assert temsim.scherzer_defocus(-CS, ENERGY) == pytest.approx(-613.3, abs=0.1)


def test_scherzer_passband_has_negative_sin_chi():
    """Positive defocus is underfocus: at Scherzer, sin(chi) <= 0 up to the first zero,
    so a weak-phase atom images dark."""
    d = temsim.point_resolution(CS, ENERGY)
    lam = float(temsim.energy2wavelength(ENERGY))
    alpha = np.linspace(1e-5, 0.98 * lam / d, 200)
    chi = optics.chi(
        alpha,
        0.0 * alpha,
        energy=ENERGY,
        defocus=temsim.scherzer_defocus(CS, ENERGY),
        Cs=CS,
    )
    assert np.all(np.sin(np.asarray(chi)) < 0)


def test_aliases_match_polar_symbols():
    kw = dict(energy=80e3)
    np.testing.assert_allclose(
        temsim.ctf(32, 0.1, defocus=50.0, Cs=1e5, C5=1e7, **kw),
        temsim.ctf(32, 0.1, C10=-50.0, C30=1e5, C50=1e7, **kw),
        atol=1e-14,
    )
    np.testing.assert_allclose(
        temsim.ctf(32, 0.1, astigmatism=20.0, astigmatism_angle=0.3, coma=300.0, **kw),
        temsim.ctf(32, 0.1, C12=20.0, phi12=0.3, C21=300.0, **kw),
        atol=1e-14,
    )


def test_chi_gradient_matches_autodiff():
    aberrations = dict(
        C10=-40.0, C12=15.0, phi12=0.4, C21=200.0, phi21=1.1, C23=90.0, phi23=-0.5,
        C30=2e5, C32=1e4, phi32=0.2, C34=5e3, phi34=2.0, C41=3e6, phi41=0.7,
        C43=1e6, phi43=-1.0, C45=2e6, phi45=0.1, C50=1e8, C52=3e7, phi52=0.9,
        C54=2e7, phi54=0.3, C56=1e7, phi56=-0.4,
    )  # fmt: skip

    def chi_xy(ax, ay):
        alpha = jnp.sqrt(ax**2 + ay**2)
        return optics.chi(alpha, jnp.arctan2(ay, ax), energy=ENERGY, **aberrations)

    grad = jax.jit(jax.vmap(jax.grad(chi_xy, argnums=(0, 1))))
    rng = np.random.default_rng(0)
    ax, ay = rng.uniform(-0.03, 0.03, (2, 50))
    gx, gy = grad(jnp.asarray(ax), jnp.asarray(ay))
    alpha, phi = np.hypot(ax, ay), np.arctan2(ay, ax)
    radial, azimuthal = optics.chi_gradient(alpha, phi, energy=ENERGY, **aberrations)
    # rotate (d/d alpha, (1/alpha) d/d phi) to Cartesian
    np.testing.assert_allclose(
        radial * np.cos(phi) - azimuthal * np.sin(phi), gx, rtol=1e-9
    )
    np.testing.assert_allclose(
        radial * np.sin(phi) + azimuthal * np.cos(phi), gy, rtol=1e-9
    )


def test_ctf_derivative_wrt_defocus_matches_finite_difference():
    fn = lambda d: jnp.sum(
        jnp.real(
            temsim.ctf((16, 16), 0.2, energy=80e3, defocus=d, Cs=1e5, focal_spread=20.0)
        )
    )
    h = 1e-3
    fd = (fn(50.0 + h) - fn(50.0 - h)) / (2 * h)
    assert float(jax.jit(jax.grad(fn))(50.0)) == pytest.approx(float(fd), rel=1e-6)


def test_envelopes_and_aperture():
    gpts, sampling = (64, 64), (0.05, 0.05)
    alpha, phi = optics.angular_grid(gpts, sampling, energy=ENERGY)
    lam = float(temsim.energy2wavelength(ENERGY))
    pure = temsim.ctf(gpts, sampling, energy=ENERGY, defocus=100.0, Cs=CS)
    np.testing.assert_allclose(jnp.abs(pure), 1.0, atol=1e-14)  # unitary
    cut = temsim.ctf(gpts, sampling, energy=ENERGY, semiangle_cutoff=20.0)
    np.testing.assert_array_equal(np.abs(np.asarray(cut)) > 0.5, alpha <= 20e-3)
    # focal_spread is the 1/e width: E_t = 1/e where pi spread alpha^2 / (2 lambda) = 1
    spread = 50.0
    a_e = math.sqrt(2 * lam / (math.pi * spread))
    e_t = optics.temporal_envelope(np.array([a_e]), energy=ENERGY, focal_spread=spread)
    assert float(e_t[0]) == pytest.approx(math.exp(-1), rel=1e-12)
    # spatial envelope: exp(-(theta/2)^2 |grad chi|^2), from the autodiff gradient
    theta = 0.5
    e_s = optics.spatial_envelope(
        alpha, phi, energy=ENERGY, angular_spread=theta, defocus=100.0, Cs=CS
    )
    dchi = 2 * np.pi / lam * (-100.0 * alpha + CS * alpha**3)
    np.testing.assert_allclose(
        e_s, np.exp(-((theta * 1e-3 / 2) ** 2) * dchi**2), rtol=1e-10, atol=1e-300
    )
    full = temsim.ctf(
        gpts,
        sampling,
        energy=ENERGY,
        defocus=100.0,
        Cs=CS,
        focal_spread=spread,
        angular_spread=theta,
    )
    e_t = optics.temporal_envelope(alpha, energy=ENERGY, focal_spread=spread)
    np.testing.assert_allclose(jnp.abs(full), e_t * e_s, rtol=1e-12)


def test_detector_mtf():
    mtf = optics.detector_mtf((32, 32), spread=0.7)
    assert float(mtf[0, 0]) == 1.0
    nyq = optics.detector_mtf((32, 32))[0, 16]
    assert float(nyq) == pytest.approx(2 / np.pi, rel=1e-12)
    image = np.random.default_rng(0).uniform(size=(32, 32))
    blurred = optics.apply_mtf(image, mtf)
    assert float(blurred.mean()) == pytest.approx(image.mean(), rel=1e-12)
    assert float(blurred.std()) < image.std()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"C99": 1.0}, "unknown aberration 'C99'; allowed"),
        ({"defocus": 1.0, "C10": 2.0}, "given twice"),
        ({"semiangle_cutoff": 0.0}, "semiangle_cutoff must be > 0"),
        ({"focal_spread": -1.0}, "focal_spread must be"),
        ({"angular_spread": float("nan")}, "angular_spread must be"),
        ({"Cs": float("inf")}, "aberration Cs must be finite"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        temsim.ctf(16, 0.1, energy=80e3, **kwargs)


def test_bad_energy_raises():
    with pytest.raises(ValueError, match="energy must be a positive"):
        temsim.ctf(16, 0.1, energy=-5.0)
