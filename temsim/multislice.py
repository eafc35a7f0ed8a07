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

from temsim.potential import (
    Potential,
    device_cache,
    numpy_cache,
    spatial_frequencies,
)
from temsim.units import check_energy, sigma, wavelength

__all__ = [
    "antialias_aperture",
    "exit_spectrum",
    "exit_spectrum_compact",
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


def _complex_dtype(real_dtype) -> np.dtype:
    return np.dtype(np.complex128 if real_dtype == jnp.float64 else np.complex64)


@device_cache
def _kernels(gpts, sampling, lam, dz, tx, ty, gaps, ctype_name) -> np.ndarray:
    """(len(gaps), ny, nx) P(g dz) A in `ctype_name`: propagation over g slices.

    Vacuum slices transmit 1, so g - 1 empty slices after an occupied one fold into
    one propagator: P(dz)^g A^g = P(g dz) A exactly.
    """
    aperture = antialias_aperture(gpts, sampling)
    propagator = _propagator.__wrapped__  # uncached: only the product is kept
    return np.stack(
        [propagator(gpts, sampling, lam, g * dz, tx, ty) * aperture for g in gaps]
    ).astype(ctype_name)


@device_cache
def _aperture(gpts, sampling, ctype_name) -> np.ndarray:
    return antialias_aperture(gpts, sampling).astype(ctype_name)


def _plan(slices, n_slices: int, plane_wave: bool, skip_vacuum: bool):
    """(slices to transmit, their propagation gaps in slices) for a potential.

    With `skip_vacuum` and concrete slices, all-zero (vacuum) slices are skipped:
    their transmission is 1, so their propagators fold into the previous slice's
    (exact). Leading vacuum leaves a plane wave unchanged. The number of steps then
    depends on the content, so each vacuum pattern compiles once.
    """
    if not skip_vacuum or isinstance(slices, jax.core.Tracer):
        return None, (1,) * n_slices
    occupied = np.flatnonzero(np.asarray(jnp.any(slices != 0, axis=(-2, -1))))
    if not plane_wave or len(occupied) == 0:
        occupied = np.union1d([0], occupied)
    if len(occupied) == n_slices:
        return None, (1,) * n_slices
    gaps = np.diff(np.append(occupied, n_slices))
    return occupied, tuple(int(g) for g in gaps)


def _prepare(potential, energy, tilt, exit_planes, wave, skip_vacuum=False):
    """Validated, jit-ready arguments of `_multislice` (see `multislice`)."""
    if not isinstance(potential, Potential):
        raise ValueError(
            f"potential must be a temsim.Potential (from potential_slices), got "
            f"{type(potential).__name__}"
        )
    check_energy(energy)
    tx, ty = _check_tilt(tilt)
    n_slices = potential.n_slices
    if exit_planes is not None and (
        not isinstance(exit_planes, int) or not 1 <= exit_planes <= n_slices
    ):
        raise ValueError(
            f"exit_planes must be None or an int in [1, n_slices={n_slices}], got "
            f"{exit_planes!r}"
        )
    gpts = tuple(potential.gpts)
    if wave is not None and jnp.shape(wave) != gpts:
        raise ValueError(
            f"wave must have the potential's grid shape {gpts}, got {jnp.shape(wave)}"
        )
    slices = jnp.asarray(potential.array)
    if not jnp.issubdtype(slices.dtype, jnp.floating):
        slices = slices.astype(float)
    if exit_planes is not None:
        skip_vacuum = False
    occupied, gaps = _plan(slices, n_slices, wave is None, skip_vacuum)
    if occupied is not None:
        slices = slices[occupied]
    return _arguments(slices, gaps, potential, energy, (tx, ty), wave)


def _arguments(slices, gaps, potential, energy, tilt, wave):
    """(slices, kernels, steps, aperture, sigma, wave0) for `_multislice`."""
    gpts, pixel = tuple(potential.gpts), tuple(potential.sampling)
    tx, ty = tilt
    ctype = _complex_dtype(slices.dtype)
    distinct = tuple(sorted(set(gaps)))
    kernels = _kernels(
        gpts, pixel, wavelength(energy), float(potential.slice_thickness), tx, ty,
        distinct, ctype.name,
    )  # fmt: skip
    steps = np.searchsorted(distinct, gaps).astype(np.int32)
    wave0 = None if wave is None else jnp.asarray(wave).astype(ctype)
    return (
        slices,
        kernels,
        steps,
        _aperture(gpts, pixel, ctype.name),
        jnp.asarray(sigma(energy), dtype=slices.dtype),
        wave0,
    )


def multislice(
    potential: Potential,
    *,
    energy: float,
    tilt: tuple[float, float] = (0.0, 0.0),
    exit_planes: int | None = None,
    wave: Complex[Array, "ny nx"] | None = None,
    skip_vacuum: bool = False,
) -> Complex[Array, "*batch ny nx"]:
    """Exit wave of a plane wave (or of `wave`) after the potential's slices.

    Units: energy [eV], tilt [mrad]. Shapes: potential.array (n_slices, ny, nx) ->
    (ny, nx) complex, or (n_slices // exit_planes, ny, nx) when `exit_planes` = m asks
    for the wave after every m-th slice (a thickness series). The incident wave is 1
    per pixel (unit intensity); with an empty potential the norm is kept exactly.
    An incident `wave` (ny, nx) replaces the plane wave if given (e.g. a probe).
    psi_{k+1} = F^-1[P A F[t_k psi_k]] (Kirkland 2010, Ch. 6). With `skip_vacuum`
    (and no `exit_planes`), all-zero slices of a concrete potential fold into the
    propagators: the same result, fewer FFTs, one compilation per vacuum pattern.
    """
    args = _prepare(potential, energy, tilt, exit_planes, wave, skip_vacuum)
    return _multislice(*args, exit_planes=exit_planes, spectrum=False)


def exit_spectrum(
    potential: Potential,
    *,
    energy: float,
    tilt: tuple[float, float] = (0.0, 0.0),
    skip_vacuum: bool = False,
) -> Complex[Array, "ny nx"]:
    """F[psi_exit]: the exit wave's spectrum (FFT order), saving the final inverse FFT
    of `multislice` when the next step (imaging) works in Fourier space."""
    args = _prepare(potential, energy, tilt, None, None, skip_vacuum)
    return _multislice(*args, exit_planes=None, spectrum=True)


def exit_spectrum_compact(
    compact: Potential,
    occupied: np.ndarray,
    n_slices: int,
    *,
    energy: float,
    tilt: tuple[float, float] = (0.0, 0.0),
) -> Complex[Array, "ny nx"]:
    """`exit_spectrum` of a plane wave through n_slices slices of which only the
    `occupied` ones (compact.array, (K, ny, nx)) hold potential (the others are
    vacuum; see `temsim.potential.compact_slices`)."""
    check_energy(energy)
    tilt = _check_tilt(tilt)
    occupied = np.asarray(occupied)
    gaps = tuple(int(g) for g in np.diff(np.append(occupied, n_slices)))
    slices = jnp.asarray(compact.array)
    args = _arguments(slices, gaps, compact, energy, tilt, None)
    return _multislice(*args, exit_planes=None, spectrum=True)


BATCH_BYTES = 2**30


def _batch_fits(slices) -> bool:
    """Whether the band-limited transmissions of all slices fit in BATCH_BYTES."""
    itemsize = 2 * jnp.dtype(slices.dtype).itemsize
    return slices.shape[0] * slices.shape[1] * slices.shape[2] * itemsize <= BATCH_BYTES


@functools.partial(jax.jit, static_argnames=("exit_planes", "spectrum"))
def _multislice(slices, kernels, steps, aperture, sigma_, wave0, *, exit_planes,
                spectrum):  # fmt: skip
    """Scan the multislice step over slices (jitted once per shape); see multislice.

    steps[i] picks the propagator kernels[steps[i]] (P A) after slice i. With
    `spectrum`, the last step returns its Fourier-space wave (no inverse FFT).
    """
    ifft2 = jnp.fft.ifft2

    def exp_i(v):
        phase = sigma_ * v
        return jax.lax.complex(jnp.cos(phase), jnp.sin(phase))

    def bandlimit(t):  # A t, in Fourier space; batched over leading axes
        a = jnp.reshape(aperture, (1,) * (t.ndim - 2) + aperture.shape)
        return ifft2(jnp.fft.fft2(t) * a)

    def forward(wave, t_bl, k):  # P A F[t_bl psi]
        return jnp.fft.fft2(t_bl * wave) * kernels[k]

    def step(wave, inputs):
        v, k = inputs
        wave = ifft2(forward(wave, bandlimit(exp_i(v)), k))
        return wave, (wave if exit_planes is not None else None)

    if exit_planes is not None:
        if wave0 is None:
            wave0 = jnp.ones(slices.shape[-2:], dtype=aperture.dtype)
        _, waves = jax.lax.scan(step, wave0, (slices, steps))
        return waves[exit_planes - 1 :: exit_planes]

    if wave0 is None:  # a plane wave (1 per pixel): F[t_bl 1] = A F[t], one FFT
        first = jnp.fft.fft2(exp_i(slices[0])) * kernels[steps[0]]
    else:
        first = forward(wave0, bandlimit(exp_i(slices[0])), steps[0])
    rest, rest_steps = slices[1:], steps[1:]
    if rest.shape[0] == 0:
        return first if spectrum else ifft2(first)
    wave = ifft2(first)
    if _batch_fits(rest):
        # all band-limited transmissions in one batched FFT (parallel over slices)
        transmissions = bandlimit(exp_i(rest))

        def step_batched(wave, inputs):
            t_bl, k = inputs
            return ifft2(forward(wave, t_bl, k)), None

        last = transmissions[-1]
        inputs = (transmissions[:-1], rest_steps[:-1])
        wave, _ = jax.lax.scan(step_batched, wave, inputs)
    else:
        wave, _ = jax.lax.scan(step, wave, (rest[:-1], rest_steps[:-1]))
        last = bandlimit(exp_i(rest[-1]))
    out = forward(wave, last, rest_steps[-1])
    return out if spectrum else ifft2(out)
