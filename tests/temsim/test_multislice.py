"""Multislice propagation (temsim.multislice)."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import temsim
from temsim.multislice import antialias_aperture, fresnel_propagator, multislice
from temsim.potential import Potential


def _empty(n_slices=10, gpts=(48, 64), sampling=(0.1, 0.08), dz=2.0):
    return Potential(jnp.zeros((n_slices, *gpts)), sampling, dz)


def _bandlimited_wave(gpts, sampling, seed=0):
    rng = np.random.default_rng(seed)
    wave = rng.normal(size=gpts) + 1j * rng.normal(size=gpts)
    return np.fft.ifft2(np.fft.fft2(wave) * antialias_aperture(gpts, sampling))


@pytest.mark.parametrize("tilt", [(0.0, 0.0), (12.0, -7.0)])
def test_empty_potential_keeps_the_norm(tilt):
    empty = _empty()
    plane = multislice(empty, energy=200e3, tilt=tilt)
    np.testing.assert_allclose(jnp.abs(plane), 1.0, atol=1e-6)
    wave = _bandlimited_wave(empty.gpts, empty.sampling)
    out = multislice(empty, energy=200e3, tilt=tilt, wave=wave)
    norm_in, norm_out = np.sum(np.abs(wave) ** 2), float(jnp.sum(jnp.abs(out) ** 2))
    assert norm_out == pytest.approx(norm_in, rel=1e-6)


def test_propagators_compose_and_invert():
    gpts, sampling = (32, 40), (0.1, 0.1)
    p1 = fresnel_propagator(gpts, sampling, energy=80e3, thickness=1.5, tilt=(3, 4))
    p2 = fresnel_propagator(gpts, sampling, energy=80e3, thickness=2.5, tilt=(3, 4))
    p12 = fresnel_propagator(gpts, sampling, energy=80e3, thickness=4.0, tilt=(3, 4))
    back = fresnel_propagator(gpts, sampling, energy=80e3, thickness=-4.0, tilt=(3, 4))
    np.testing.assert_allclose(p1 * p2, p12, atol=1e-12)
    np.testing.assert_allclose(p12 * back, 1.0, atol=1e-12)


def test_constant_potential_is_a_pure_phase():
    v0 = 3.0  # [V Å]
    p = Potential(jnp.full((4, 16, 16), v0), (0.1, 0.1), 1.0)
    wave = multislice(p, energy=100e3)
    phase = 4 * v0 * float(temsim.energy2sigma(100e3))
    np.testing.assert_allclose(wave, np.exp(1j * phase), atol=1e-12)


def test_tilt_shifts_the_wave_by_depth_times_tan():
    """An object at the top, then 20 Å of vacuum: tilt (tx, 0) moves the exit wave by
    20 tan(tx) towards +x (abTEM's convention)."""
    rng = np.random.default_rng(1)
    gpts, sampling = (32, 64), (0.1, 0.1)
    top = rng.normal(0, 20.0, gpts)
    top = np.real(np.fft.ifft2(np.fft.fft2(top) * antialias_aperture(gpts, sampling)))
    slices = np.concatenate([top[None], np.zeros((19, *gpts))])
    p = Potential(jnp.asarray(slices), sampling, 1.0)
    tilt_x = math.atan(0.01) * 1e3  # 20 Å x 0.01 = 0.2 Å = 2 pixels
    straight = np.asarray(multislice(p, energy=200e3))
    tilted = np.asarray(multislice(p, energy=200e3, tilt=(tilt_x, 0.0)))
    np.testing.assert_allclose(tilted, np.roll(straight, 2, axis=1), atol=1e-10)


def test_exit_planes_thickness_series():
    rng = np.random.default_rng(2)
    p = Potential(jnp.asarray(rng.normal(0, 5, (6, 16, 16))), (0.1, 0.1), 1.0)
    series = multislice(p, energy=200e3, exit_planes=2)
    assert series.shape == (3, 16, 16)
    np.testing.assert_allclose(series[-1], multislice(p, energy=200e3), atol=1e-12)
    first = Potential(p.array[:2], p.sampling, 1.0)
    np.testing.assert_allclose(series[0], multislice(first, energy=200e3), atol=1e-12)


def test_jit_equals_eager_and_vmap_equals_loop():
    rng = np.random.default_rng(3)
    arrays = jnp.asarray(rng.normal(0, 5, (3, 4, 16, 16)))
    fn = lambda a: multislice(Potential(a, (0.1, 0.1), 1.0), energy=80e3)
    with jax.disable_jit():
        eager = fn(arrays[0])
    np.testing.assert_allclose(jax.jit(fn)(arrays[0]), eager, atol=1e-12)
    np.testing.assert_allclose(
        jax.vmap(fn)(arrays), np.stack([fn(a) for a in arrays]), atol=1e-12
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"energy": -1.0}, "energy must be a positive"),
        ({"energy": 80e3, "tilt": (1.0,)}, "tilt must be a pair"),
        ({"energy": 80e3, "exit_planes": 0}, "exit_planes must be"),
        ({"energy": 80e3, "exit_planes": 11}, "exit_planes must be"),
        ({"energy": 80e3, "wave": np.ones((3, 3))}, "wave must have"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        multislice(_empty(), **kwargs)


def test_not_a_potential_raises():
    with pytest.raises(ValueError, match="potential must be a temsim.Potential"):
        multislice(np.zeros((2, 8, 8)), energy=80e3)


def test_second_call_does_not_recompile():
    # the function temsim.multislice shadows the module's name on the package
    ms = importlib.import_module("temsim.multislice")

    p = Potential(jnp.zeros((3, 20, 24)), (0.1, 0.1), 1.0)
    multislice(p, energy=100e3)
    size = ms._multislice._cache_size()
    multislice(Potential(jnp.ones((3, 20, 24)), (0.1, 0.1), 1.0), energy=100e3)
    multislice(p, energy=300e3)  # energy enters as data, not as a constant
    assert ms._multislice._cache_size() == size


def test_skip_vacuum_and_exit_spectrum_match_the_full_scan():
    """Vacuum slices fold into the propagators exactly (P(a) P(b) = P(a + b)), with a
    plane wave (leading vacuum skipped) and with an incident wave (kept)."""
    ms = importlib.import_module("temsim.multislice")
    gpts, sampling = (24, 32), (0.1, 0.1)
    rng = np.random.default_rng(1)
    slices = np.zeros((7, *gpts))
    slices[[2, 3, 5]] = rng.uniform(0, 20, (3, *gpts))
    p = Potential(jnp.asarray(slices), sampling, 1.0)
    full = multislice(p, energy=200e3, tilt=(2.0, -1.0))
    kw = dict(energy=200e3, tilt=(2.0, -1.0), skip_vacuum=True)
    np.testing.assert_allclose(multislice(p, **kw), full, atol=1e-12)
    spectrum = ms.exit_spectrum(p, **kw)
    np.testing.assert_allclose(np.fft.ifft2(spectrum), full, atol=1e-12)
    wave = _bandlimited_wave(gpts, sampling)
    with_wave = multislice(p, energy=200e3, wave=wave)
    np.testing.assert_allclose(
        multislice(p, energy=200e3, wave=wave, skip_vacuum=True), with_wave, atol=1e-12
    )
    compact = Potential(p.array[np.array([2, 3, 5])], sampling, 1.0)
    direct = ms.exit_spectrum_compact(compact, [2, 3, 5], 7, energy=200e3,
                                      tilt=(2.0, -1.0))  # fmt: skip
    np.testing.assert_allclose(direct, spectrum, atol=1e-10)
