"""physattn: softmax attention as the Gibbs distribution of an information gas.

Energies E_i = -q.k_i at temperature T (default sqrt(d_k)); from log Z follow the free
energy, entropy, heat capacity, Fisher metric and susceptibility (`physattn.thermo`) and
the phase behaviour (`physattn.phase`).
"""

from physattn import phase, thermo
from physattn.thermo import Thermo

__all__ = ["Thermo", "phase", "thermo"]
__version__ = "0.1.0"
