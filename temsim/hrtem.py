"""HRTEM image formation: atoms -> potential -> multislice -> objective lens -> |psi|^2.

    I(r) = |F^-1[ H(k) F[psi_exit](k) ]|^2,   H = A E_t E_s exp(-i chi)

with the partial-coherence envelopes applied to the wave (the quasi-coherent
approximation, Kirkland 2010, Ch. 3; as abTEM's CTF applied to exit waves). The
incident plane wave has unit intensity per pixel, so a vacuum image is 1 everywhere.
"""

from __future__ import annotations

import functools
import math

import ase
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from temsim.image import Image
from temsim.multislice import (
    ANTIALIAS_CUTOFF,
    exit_spectrum,
    exit_spectrum_compact,
)
from temsim.optics import ctf
from temsim.potential import Potential, compact_slices, grid, orthogonal_extent
from temsim.units import check_energy, wavelength

__all__ = [
    "check_aperture_sampling",
    "hrtem",
    "hrtem_from_potential",
    "image_wave",
]


def check_aperture_sampling(
    sampling, *, energy: float, semiangle_cutoff, requested=None
) -> None:
    """Raise ValueError if the grid cannot carry the objective aperture.

    The multislice wave holds spatial frequencies up to 2/3 of the Nyquist frequency,
    k_max = (2/3) / (2 max(dy, dx)) (the anti-aliasing aperture), i.e. scattering
    angles up to lambda k_max; an objective aperture wider than that is cut by the
    grid. Allowed: max(dy, dx) <= (2/3) lambda / (2 alpha) [Å], alpha [rad].
    `requested` is the sampling the caller asked for, if the grid rounded it.
    """
    if isinstance(semiangle_cutoff, jax.core.Tracer) or isinstance(
        energy, jax.core.Tracer
    ):
        return
    cutoff = float(semiangle_cutoff)
    if not math.isfinite(cutoff) or cutoff <= 0:
        return  # no aperture; a non-positive one is rejected by `ctf`
    pixel = max(float(x) for x in np.broadcast_to(np.asarray(sampling), (2,)))
    lam = wavelength(energy)
    largest = ANTIALIAS_CUTOFF * lam / (2 * cutoff * 1e-3)
    if pixel > largest * (1 + 1e-9):
        carried = 1e3 * ANTIALIAS_CUTOFF * lam / (2 * pixel)
        received = f"{pixel:.4g} Å"
        if requested is not None:
            received = f"{requested!r} Å (pixel {pixel:.4g} Å on the grid)"
        raise ValueError(
            f"sampling {received} is too coarse for semiangle_cutoff={cutoff:g} "
            f"mrad at energy={float(energy):g} eV: the wave carries scattering angles "
            f"up to {carried:.4g} mrad only (2/3 of the Nyquist frequency), so the "
            f"aperture would be cut by the grid; use sampling <= {largest:.4g} Å (or "
            f"semiangle_cutoff <= {carried:.4g} mrad)"
        )


def _split_optics(optics: dict) -> tuple[dict, tuple]:
    """Validate `ctf` optics; (traced values, static items) for the jitted imaging.

    Exact zeros are dropped (as `ctf` does), semiangle_cutoff is static (a shape-free
    switch); everything else is data, so a defocus series does not recompile.
    """
    optics = dict(optics)
    cutoff = optics.pop("semiangle_cutoff", math.inf)
    ctf((1, 1), 1.0, energy=1e3, semiangle_cutoff=cutoff, **optics)  # validates
    traced = {
        name: value
        for name, value in optics.items()
        if isinstance(value, jax.core.Tracer) or np.any(np.asarray(value) != 0)
    }
    return traced, (("semiangle_cutoff", cutoff),)


@functools.partial(jax.jit, static_argnames=("sampling", "energy", "static"))
def _image(spectrum, optics, *, sampling, energy, static):
    """|F^-1[H spectrum]|^2 with H = ctf(...) built in the same compiled function."""
    h = ctf(spectrum.shape[-2:], sampling, energy=energy, **optics, **dict(static))
    image = jnp.fft.ifft2(spectrum * h.astype(spectrum.dtype))
    return jnp.real(image) ** 2 + jnp.imag(image) ** 2


def _image_spectrum(spectrum, sampling, *, energy, optics):
    check_energy(energy)
    traced, static = _split_optics(optics)
    sampling = tuple(float(x) for x in np.broadcast_to(np.asarray(sampling), (2,)))
    return _image(
        spectrum, traced, sampling=sampling, energy=float(energy), static=static
    )


def image_wave(
    wave: Complex[Array, "*batch ny nx"],
    sampling: tuple[float, float],
    *,
    energy: float,
    **optics,
) -> Float[Array, "*batch ny nx"]:
    """Intensity [incident units] of exit wave(s) imaged by the objective lens.

    Units: sampling [Å]; `optics` as `temsim.ctf` (defocus, Cs [Å], semiangle_cutoff
    [mrad], ...). Shapes: (..., ny, nx) -> (..., ny, nx). I = |F^-1[H F[psi]]|^2.
    """
    spectrum = jnp.fft.fft2(wave)
    return _image_spectrum(spectrum, sampling, energy=energy, optics=optics)


def _metadata(energy, optics, extra):
    meta = {"kind": "hrtem", "energy": float(energy)}
    for name, value in {**optics, **extra}.items():
        meta[name] = value if isinstance(value, str) else float(value)
    return meta


def hrtem_from_potential(
    potential: Potential,
    *,
    energy: float,
    tilt: tuple[float, float] = (0.0, 0.0),
    skip_vacuum: bool = False,
    **optics,
) -> Image:
    """HRTEM image of precomputed potential slices (see `hrtem`).

    `skip_vacuum` folds all-zero slices into the propagators (same image, fewer FFTs,
    one compilation per vacuum pattern; see `temsim.multislice.multislice`).
    """
    check_energy(energy)
    check_aperture_sampling(
        potential.sampling,
        energy=energy,
        semiangle_cutoff=optics.get("semiangle_cutoff", math.inf),
    )
    spectrum = exit_spectrum(
        potential, energy=energy, tilt=tilt, skip_vacuum=skip_vacuum
    )
    array = _image_spectrum(spectrum, potential.sampling, energy=energy, optics=optics)
    meta = _metadata(
        energy,
        optics,
        {
            "slice_thickness": potential.slice_thickness,
            "tilt_x": tilt[0],
            "tilt_y": tilt[1],
        },
    )
    return Image(array, potential.sampling, meta)


def hrtem(
    atoms: ase.Atoms,
    *,
    energy: float,
    sampling: float | tuple[float, float],
    defocus: float = 0.0,
    Cs: float = 0.0,
    semiangle_cutoff: float = math.inf,
    slice_thickness: float = 1.0,
    parametrization: str = "lobato",
    tilt: tuple[float, float] = (0.0, 0.0),
    **optics,
) -> Image:
    """Plane-wave HRTEM image of `atoms` (orthogonal periodic cell).

    Units: energy [eV]; sampling, defocus, Cs, slice_thickness [Å] (defocus > 0 is
    underfocus); semiangle_cutoff, tilt [mrad]; `optics` are further `temsim.ctf`
    arguments (focal_spread [Å], angular_spread [mrad], C12, phi12, ...).
    Returns an Image of shape (ny, nx), intensity in units of the incident beam, with
    the actual pixel size (the cell is divided into ceil(L / sampling) pixels).
    I = |F^-1[H F[psi_exit]]|^2 (Kirkland 2010, Ch. 3 and 6).
    """
    check_energy(energy)
    lx, ly, _ = orthogonal_extent(atoms)
    _, pixel = grid((ly, lx), sampling=sampling)
    check_aperture_sampling(
        pixel, energy=energy, semiangle_cutoff=semiangle_cutoff, requested=sampling
    )
    optics = dict(defocus=defocus, Cs=Cs, semiangle_cutoff=semiangle_cutoff, **optics)
    _split_optics(optics)  # validate before the expensive part
    compact, occupied, n_slices = compact_slices(
        atoms,
        sampling=sampling,
        slice_thickness=slice_thickness,
        parametrization=parametrization,
    )
    spectrum = exit_spectrum_compact(
        compact, occupied, n_slices, energy=energy, tilt=tilt
    )
    array = _image_spectrum(spectrum, compact.sampling, energy=energy, optics=optics)
    extra = {
        "slice_thickness": compact.slice_thickness,
        "tilt_x": tilt[0],
        "tilt_y": tilt[1],
    }
    image = Image(array, compact.sampling, _metadata(energy, optics, extra))
    return image.replace(metadata={"parametrization": parametrization})
