"""HRTEM image formation: atoms -> potential -> multislice -> objective lens -> |psi|^2.

    I(r) = |F^-1[ H(k) F[psi_exit](k) ]|^2,   H = A E_t E_s exp(-i chi)

with the partial-coherence envelopes applied to the wave (the quasi-coherent
approximation, Kirkland 2010, Ch. 3; as abTEM's CTF applied to exit waves). The
incident plane wave has unit intensity per pixel, so a vacuum image is 1 everywhere.
"""

from __future__ import annotations

import math

import ase
import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from temsim.image import Image
from temsim.multislice import multislice
from temsim.optics import ctf
from temsim.potential import Potential, potential_slices
from temsim.units import check_energy

__all__ = ["hrtem", "hrtem_from_potential", "image_wave"]


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
    h = ctf(jnp.shape(wave)[-2:], sampling, energy=energy, **optics)
    spectrum = jnp.fft.fft2(wave)
    image = jnp.fft.ifft2(spectrum * h.astype(spectrum.dtype))
    return jnp.real(image) ** 2 + jnp.imag(image) ** 2


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
    **optics,
) -> Image:
    """HRTEM image of precomputed potential slices (see `hrtem`)."""
    check_energy(energy)
    wave = multislice(potential, energy=energy, tilt=tilt)
    array = image_wave(wave, potential.sampling, energy=energy, **optics)
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
    potential = potential_slices(
        atoms,
        sampling=sampling,
        slice_thickness=slice_thickness,
        parametrization=parametrization,
    )
    image = hrtem_from_potential(
        potential,
        energy=energy,
        tilt=tilt,
        defocus=defocus,
        Cs=Cs,
        semiangle_cutoff=semiangle_cutoff,
        **optics,
    )
    return image.replace(metadata={"parametrization": parametrization})
