"""Physical constants and the relativistic electron: wavelength, interaction parameter.

Units throughout temsim: lengths [Å], energies [eV], potentials [V], angles [mrad]
unless a name ends in `_rad`. Constants are CODATA 2018 (exact SI values where defined).

References:
  E. J. Kirkland, Advanced Computing in Electron Microscopy, 2nd ed. (Springer 2010),
  Chs. 2 (wavelength) and 5 (interaction parameter sigma).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

# --- CODATA 2018 -------------------------------------------------------------------
PLANCK = 6.62607015e-34  # h [J s]
ELEMENTARY_CHARGE = 1.602176634e-19  # e [C]
ELECTRON_MASS = 9.1093837015e-31  # m0 [kg]
SPEED_OF_LIGHT = 299792458.0  # c [m/s]
BOHR_RADIUS = 0.529177210903  # a0 [Å]
ELECTRON_REST_ENERGY = (
    ELECTRON_MASS * SPEED_OF_LIGHT**2 / ELEMENTARY_CHARGE
)  # m0c^2 [eV]
HC = PLANCK * SPEED_OF_LIGHT / ELEMENTARY_CHARGE * 1e10  # h c [eV Å]
COULOMB = (
    ELEMENTARY_CHARGE / (4 * math.pi * 8.8541878128e-12) * 1e10
)  # e/(4 pi eps0) [V Å]

# Prefactor linking the electron scattering factor to the potential:
# V(q) = h^2 / (2 pi m0 e) f_e(q) = 2 pi a0 e f_e(q) [V Å^3]
# (Kirkland 2010, Ch. 5 and App. C).
POTENTIAL_PREFACTOR = 2 * math.pi * BOHR_RADIUS * COULOMB  # [V Å^2]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_energy(energy) -> None:
    """Raise ValueError unless each concrete `energy` value is finite and > 0 [eV]."""
    if not _is_concrete(energy):
        return
    values = np.asarray(energy, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            f"energy must be a positive, finite electron energy in eV (e.g. 200e3), "
            f"got {energy!r}"
        )


def energy2wavelength(energy: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """Relativistic de Broglie wavelength [Å] of an electron of kinetic energy [eV].

    lambda = h c / sqrt(E (2 m0 c^2 + E))  (Kirkland 2010, Ch. 2).
    """
    check_energy(energy)
    energy = jnp.asarray(energy, dtype=float)
    return HC / jnp.sqrt(energy * (2 * ELECTRON_REST_ENERGY + energy))


def energy2sigma(energy: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """Interaction parameter sigma [1/(V Å)] of the relativistic electron.

    sigma = 2 pi m e lambda / h^2 = 2 pi (m0c^2 + E) / (lambda E (2 m0c^2 + E))
    (Kirkland 2010, Ch. 5); the phase shift of a slice is sigma v_z.
    """
    check_energy(energy)
    energy = jnp.asarray(energy, dtype=float)
    wavelength = energy2wavelength(energy)
    mc2 = ELECTRON_REST_ENERGY
    return 2 * jnp.pi * (mc2 + energy) / (wavelength * energy * (2 * mc2 + energy))


def wavelength(energy: float) -> float:
    """`energy2wavelength` for a concrete energy, as a Python float [Å]."""
    check_energy(energy)
    energy = float(energy)
    return HC / math.sqrt(energy * (2 * ELECTRON_REST_ENERGY + energy))


def sigma(energy: float) -> float:
    """`energy2sigma` for a concrete energy, as a Python float [1/(V Å)]."""
    check_energy(energy)
    energy = float(energy)
    mc2 = ELECTRON_REST_ENERGY
    return (
        2
        * math.pi
        * (mc2 + energy)
        / (wavelength(energy) * energy * (2 * mc2 + energy))
    )
