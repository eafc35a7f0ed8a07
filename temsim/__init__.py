"""temsim: transmission-electron-microscope images from first principles, and CNNs that
denoise them.

Pipeline: atoms (ASE) -> projected potential -> multislice -> lens optics -> detector
noise. Units: lengths in Å, energies in eV, angles in mrad, dose in e/Å^2.
"""

from temsim.image import Image

__all__ = ["Image"]
__version__ = "0.1.0"
