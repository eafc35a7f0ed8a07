"""temsim: transmission-electron-microscope images from first principles, and CNNs that
denoise them.

Pipeline: atoms (ASE) -> projected potential -> multislice -> lens optics -> detector
noise. Units: lengths in Å, energies in eV, angles in mrad, dose in e/Å^2.
"""

from temsim.hrtem import hrtem
from temsim.image import Image
from temsim.multislice import multislice
from temsim.optics import ctf, point_resolution, scherzer_defocus
from temsim.parametrizations import scattering_factor
from temsim.phonons import frozen_phonons_hrtem
from temsim.potential import Potential, potential_slices
from temsim.units import energy2sigma, energy2wavelength

__all__ = [
    "Image",
    "Potential",
    "ctf",
    "energy2sigma",
    "energy2wavelength",
    "frozen_phonons_hrtem",
    "hrtem",
    "multislice",
    "point_resolution",
    "potential_slices",
    "scattering_factor",
    "scherzer_defocus",
]
__version__ = "0.1.0"
