"""Electron scattering factors f_e(q) and atomic potentials for Z = 1-103.

Two parametrizations ship as data files in `parametrizations/data/` (provenance in the
README there): "lobato" (Lobato & Van Dyck, Acta Cryst. A 70, 636 (2014)) and
"kirkland" (Kirkland, Advanced Computing in Electron Microscopy, 2nd ed., App. C).

Units: f_e [Å], q [1/Å] with q = 2 sin(theta) / lambda (no 2 pi), V [V], v_z [V Å].
The sums are evaluated in float64 when JAX allows it (jax_enable_x64), since Lobato's
coefficients are large and of mixed sign.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from types import MappingProxyType

import jax.numpy as jnp
import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from jaxtyping import Array, ArrayLike, Float

from temsim.parametrizations import kirkland, lobato

__all__ = [
    "PARAMETRIZATIONS",
    "atomic_number",
    "coefficients",
    "potential",
    "projected_potential",
    "scattering_factor",
    "scattering_factor_q2",
]

_MODULES = MappingProxyType({"lobato": lobato, "kirkland": kirkland})
PARAMETRIZATIONS = tuple(_MODULES)
MAX_Z = 103


def check_parametrization(parametrization: str) -> str:
    """Return `parametrization` if it is known, else raise ValueError."""
    if parametrization not in _MODULES:
        raise ValueError(
            f"parametrization must be one of {PARAMETRIZATIONS}, "
            f"got {parametrization!r}"
        )
    return parametrization


def atomic_number(element: str | int) -> int:
    """Atomic number Z of an element given as a symbol ("Au") or a number (79)."""
    if isinstance(element, str):
        z = atomic_numbers.get(element, 0)
    elif isinstance(element, int | np.integer) and not isinstance(element, bool):
        z = int(element)
    else:
        z = 0
    if not 1 <= z <= MAX_Z:
        raise ValueError(
            f"element must be a chemical symbol or atomic number with Z = 1-{MAX_Z} "
            f"(e.g. 'C', 'Au' or 79), got {element!r}"
        )
    return z


@functools.cache
def _table(parametrization: str) -> dict:
    text = (
        resources.files("temsim.parametrizations")
        .joinpath("data", f"{parametrization}.json")
        .read_text()
    )
    return json.loads(text)


def coefficients(element: str | int, parametrization: str = "lobato") -> dict:
    """The published fitting coefficients of one element, as tuples of floats.

    Lobato: `a`, `b` (5 each); Kirkland: `a`, `b`, `c`, `d` (3 each); units such that
    f_e is in Å for q in 1/Å (see the module docstrings).
    """
    check_parametrization(parametrization)
    entry = _table(parametrization)[chemical_symbols[atomic_number(element)]]
    return {k: tuple(float(x) for x in v) for k, v in entry.items() if k != "Z"}


def _wide(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def scattering_factor_q2(element, q2, parametrization="lobato", xp=jnp):
    """f_e [Å] as a function of q^2 [1/Å^2]; numpy in, numpy out (float64) if xp=np."""
    module = _MODULES[check_parametrization(parametrization)]
    return module.scattering_factor(coefficients(element, parametrization), q2, xp=xp)


def scattering_factor(
    element: str | int, q: Float[ArrayLike, "*shape"], parametrization: str = "lobato"
) -> Float[Array, "*shape"]:
    """Electron scattering factor f_e(q) [Å] of a neutral atom; q [1/Å], no 2 pi.

    Shapes: q (...) -> (...). Lobato: f_e = sum_i a_i (2 + b_i q^2)/(1 + b_i q^2)^2
    (Lobato & Van Dyck 2014); Kirkland: f_e = sum_i a_i/(q^2 + b_i) + c_i exp(-d_i q^2)
    (Kirkland 2010, App. C).
    """
    q = _wide(q)
    return scattering_factor_q2(element, q * q, parametrization)


def potential(
    element: str | int, r: Float[ArrayLike, "*shape"], parametrization: str = "lobato"
) -> Float[Array, "*shape"]:
    """Real-space atomic electrostatic potential V(r) [V] at radius r > 0 [Å].

    V(r) = 2 pi a0 e int f_e(q) exp(2 pi i q.r) d^3q (Kirkland 2010, Ch. 5), in closed
    form
    for each parametrization (see `temsim.parametrizations.lobato` / `.kirkland`).
    """
    module = _MODULES[check_parametrization(parametrization)]
    return module.potential(coefficients(element, parametrization), _wide(r))


def projected_potential(
    element: str | int, r: Float[ArrayLike, "*shape"], parametrization: str = "lobato"
) -> Float[Array, "*shape"]:
    """Projected atomic potential v_z(R) = int V(sqrt(R^2 + z^2)) dz [V Å], R > 0 [Å].

    Its 2-D Fourier transform is 2 pi a0 e f_e(q) (Kirkland 2010, Ch. 5 and App. C).
    """
    module = _MODULES[check_parametrization(parametrization)]
    return module.projected_potential(coefficients(element, parametrization), _wide(r))
