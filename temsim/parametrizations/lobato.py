"""Lobato & Van Dyck's parametrization: five terms that obey the physical constraints.

f_e(q) = sum_i a_i (2 + b_i q^2) / (1 + b_i q^2)^2                 [Å], q [1/Å]

Since (2 + b q^2)/(1 + b q^2)^2 = 1/(1 + b q^2) + 1/(1 + b q^2)^2, the inverse Fourier
transforms are closed forms (P = 2 pi a0 e [V Å^2], beta_i = 2 pi / sqrt(b_i)):

V(r)   = P sum_i a_i [pi / (b_i r) + pi^2 / b_i^(3/2)] exp(-beta_i r)
v_z(R) = P sum_i a_i [2 pi / b_i K0(beta_i R) + 2 pi^2 R / b_i^(3/2) K1(beta_i R)]

Reference: I. Lobato and D. Van Dyck, Acta Cryst. A 70, 636-649 (2014), Sec. 2 (the
f_e form and its real-space and projected potentials). The coefficients are large and
of mixed sign, so callers pass float64 arrays (the module never downcasts).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from temsim.parametrizations.bessel import k0, k1
from temsim.units import POTENTIAL_PREFACTOR

PI = math.pi


def scattering_factor(coefficients, q2, xp=jnp):
    """f_e [Å] at squared spatial frequency q2 [1/Å^2] (Lobato & Van Dyck 2014)."""
    del xp  # rational function: array operators only
    a, b = coefficients["a"], coefficients["b"]
    out = 0.0 * q2
    for i in range(5):
        denominator = 1.0 + b[i] * q2
        out = out + a[i] * (2.0 + b[i] * q2) / (denominator * denominator)
    return out


def potential(coefficients, r):
    """Real-space atomic potential V(r) [V] at radius r > 0 [Å]."""
    a, b = coefficients["a"], coefficients["b"]
    out = 0.0 * r
    for i in range(5):
        beta = 2 * PI / math.sqrt(b[i])
        shape = PI / (b[i] * r) + PI**2 / b[i] ** 1.5
        out = out + a[i] * shape * jnp.exp(-beta * r)
    return POTENTIAL_PREFACTOR * out


def projected_potential(coefficients, r):
    """Projected potential v_z(R) [V Å] at radius R > 0 [Å]."""
    a, b = coefficients["a"], coefficients["b"]
    out = 0.0 * r
    for i in range(5):
        beta = 2 * PI / math.sqrt(b[i])
        out = out + a[i] * 2 * PI / b[i] * k0(beta * r)
        out = out + a[i] * 2 * PI**2 * r / b[i] ** 1.5 * k1(beta * r)
    return POTENTIAL_PREFACTOR * out
