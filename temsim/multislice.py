"""Multislice propagation of a plane wave through potential slices.

For each slice (thickness dz): transmit, band-limit, propagate,

    psi <- F^-1[ P(k) A(k) F[ t psi ] ],   t = exp(i sigma v_z),
    P(k) = exp(-i pi lambda dz k^2 - 2 pi i dz (kx tan theta_x + ky tan theta_y)),

with A the 2/3 anti-aliasing aperture, applied to t as well (Kirkland 2010, Ch. 6;
abTEM's FourierMultislice). The wave starts as a plane wave of
unit intensity per pixel; beam tilt (theta_x, theta_y) [mrad] enters through the
propagator, so the exit wave is expressed in the tilted frame.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from temsim.potential import Potential, numpy_cache, spatial_frequencies
from temsim.units import check_energy, sigma, wavelength

__all__ = [
    "antialias_aperture",
    "fresnel_propagator",
    "multislice",
    "transmission_function",
]

ANTIALIAS_CUTOFF = 2.0 / 3.0


def _check_tilt(tilt) -> tuple[float, float]:
    values = np.asarray(tilt, dtype=np.float64)
    if values.shape != (2,) or not np.all(np.isfinite(values)):
        raise ValueError(
            f"tilt must be a pair (tilt_x, tilt_y) of finite angles in mrad, "
            f"got {tilt!r}"
        )
    return float(values[0]), float(values[1])


@numpy_cache
def antialias_aperture(
    gpts: tuple[int, int],
    sampling: tuple[float, float],
    cutoff: float = ANTIALIAS_CUTOFF,
) -> np.ndarray:
    """(ny, nx) 0/1 aperture passing |k| < cutoff x k_Nyquist (numpy float64).

    k_Nyquist = 1 / (2 max(dy, dx)); the 2/3 cutoff keeps products of two band-limited
    functions alias-free (Kirkland 2010, Sec. 6.8).
    """
    ky, kx = spatial_frequencies(gpts, sampling)
    k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return (k < cutoff / (2 * max(sampling))).astype(np.float64)


def fresnel_propagator(
    gpts: tuple[int, int],
    sampling: tuple[float, float],
    *,
    energy: float,
    thickness: float,
    tilt: tuple[float, float] = (0.0, 0.0),
) -> Complex[Array, "ny nx"]:
    """Fresnel propagator over `thickness` [Å] on the FFT grid (tilt [mrad]).

    P(k) = exp(-i pi lambda dz k^2 - 2 pi i dz (kx tan tx + ky tan ty))
    (Kirkland 2010, Sec. 6.7; abTEM's sign: a tilt tx > 0 moves the wave towards +x by
    dz tan tx per slice).
    """
    tx, ty = _check_tilt(tilt)
    gpts, sampling = tuple(gpts), tuple(sampling)
    array = _propagator(gpts, sampling, wavelength(energy), float(thickness), tx, ty)
    dtype = jnp.complex128 if jnp.result_type(float) == jnp.float64 else jnp.complex64
    return jnp.asarray(array).astype(dtype)


@numpy_cache
def _propagator(gpts, sampling, lam, thickness, tx, ty) -> np.ndarray:
    ky, kx = spatial_frequencies(gpts, sampling)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    tilt_term = kx[None, :] * math.tan(tx * 1e-3) + ky[:, None] * math.tan(ty * 1e-3)
    phase = -np.pi * lam * thickness * k2 - 2 * np.pi * thickness * tilt_term
    return np.exp(1j * phase)


def transmission_function(
    potential_slice: Float[Array, "*batch ny nx"], *, energy: float
) -> Complex[Array, "*batch ny nx"]:
    """Phase-grating transmission t = exp(i sigma v_z), v_z [V Å].

    Kirkland 2010, Ch. 6.
    """
    phase = sigma(energy) * potential_slice
    return jax.lax.complex(jnp.cos(phase), jnp.sin(phase))


def multislice(
    potential: Potential,
    *,
    energy: float,
    tilt: tuple[float, float] = (0.0, 0.0),
    exit_planes: int | None = None,
    wave: Complex[Array, "ny nx"] | None = None,
) -> Complex[Array, "*batch ny nx"]:
    """Exit wave of a plane wave (or of `wave`) after the potential's slices.

    Units: energy [eV], tilt [mrad]. Shapes: potential.array (n_slices, ny, nx) ->
    (ny, nx) complex, or (n_slices // exit_planes, ny, nx) when `exit_planes` = m asks
    for the wave after every m-th slice (a thickness series). The incident wave is 1
    per pixel (unit intensity); with an empty potential the norm is kept exactly.
    An incident `wave` (ny, nx) replaces the plane wave if given (e.g. a probe).
    psi_{k+1} = F^-1[P A F[t_k psi_k]] (Kirkland 2010, Ch. 6).
    """
    if not isinstance(potential, Potential):
        raise ValueError(
            f"potential must be a temsim.Potential (from potential_slices), got "
            f"{type(potential).__name__}"
        )
    check_energy(energy)
    n_slices = potential.n_slices
    if exit_planes is not None and (
        not isinstance(exit_planes, int) or not 1 <= exit_planes <= n_slices
    ):
        raise ValueError(
            f"exit_planes must be None or an int in [1, n_slices={n_slices}], got "
            f"{exit_planes!r}"
        )
    gpts, pixel = potential.gpts, potential.sampling
    if wave is not None and jnp.shape(wave) != gpts:
        raise ValueError(
            f"wave must have the potential's grid shape {gpts}, got {jnp.shape(wave)}"
        )
    aperture = antialias_aperture(gpts, pixel)
    propagator = fresnel_propagator(
        gpts, pixel, energy=energy, thickness=potential.slice_thickness, tilt=tilt
    )
    slices = jnp.asarray(potential.array)
    if not jnp.issubdtype(slices.dtype, jnp.floating):
        slices = slices.astype(float)
    ctype = jnp.complex128 if slices.dtype == jnp.float64 else jnp.complex64
    aperture = jnp.asarray(aperture).astype(ctype)
    if wave is None:
        wave = jnp.ones(gpts, dtype=ctype)
    return _multislice(
        slices,
        propagator.astype(ctype) * aperture,
        aperture,
        jnp.asarray(sigma(energy), dtype=slices.dtype),
        jnp.asarray(wave).astype(ctype),
        exit_planes=exit_planes,
    )


@functools.partial(jax.jit, static_argnames=("exit_planes",))
def _multislice(slices, kernel, aperture, sigma_, wave0, *, exit_planes):
    """Scan the multislice step over slices (jitted once per shape); see multislice."""

    def transmit(v):
        phase = sigma_ * v
        t = jax.lax.complex(jnp.cos(phase), jnp.sin(phase))
        return jnp.fft.ifft2(jnp.fft.fft2(t) * aperture)

    def step(wave, v):
        wave = jnp.fft.ifft2(jnp.fft.fft2(transmit(v) * wave) * kernel)
        return wave, (wave if exit_planes is not None else None)

    wave, waves = jax.lax.scan(step, wave0, slices)
    if exit_planes is None:
        return wave
    return waves[exit_planes - 1 :: exit_planes]
