"""Kirkland's parametrization: three Lorentzians plus three Gaussians.

f_e(q) = sum_i a_i / (q^2 + b_i) + sum_i c_i exp(-d_i q^2)       [Å], q [1/Å]

and its closed-form real-space and projected potentials, with P = 2 pi a0 e [V Å^2]:

V(r)   = P sum_i [pi a_i/r exp(-2 pi r sqrt(b_i)) + c_i (pi/d_i)^1.5 exp(-pi^2 r^2/d_i)]
v_z(R) = P sum_i [2 pi a_i K0(2 pi R sqrt(b_i)) + pi c_i / d_i exp(-pi^2 R^2 / d_i)]

Reference: E. J. Kirkland, Advanced Computing in Electron Microscopy, 2nd ed. (2010),
App. C (parametrized f_e, its real-space and projected potentials, coefficient table).
Each function takes the coefficient table of one element (`a, b, c, d`, 3 each) and
is written with array operators only, so it works on numpy and JAX arrays alike.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from temsim.parametrizations.bessel import k0
from temsim.units import POTENTIAL_PREFACTOR

PI = math.pi


def scattering_factor(coefficients, q2, xp=jnp):
    """f_e [Å] at squared spatial frequency q2 [1/Å^2] (Kirkland 2010, App. C)."""
    a, b, c, d = (coefficients[k] for k in "abcd")
    out = 0.0 * q2
    for i in range(3):
        out = out + a[i] / (q2 + b[i]) + c[i] * xp.exp(-d[i] * q2)
    return out


def potential(coefficients, r):
    """Real-space atomic potential V(r) [V] at r > 0 [Å] (Kirkland 2010, App. C)."""
    a, b, c, d = (coefficients[k] for k in "abcd")
    out = 0.0 * r
    for i in range(3):
        out = out + PI * a[i] / r * jnp.exp(-2 * PI * r * math.sqrt(b[i]))
        out = out + c[i] * (PI / d[i]) ** 1.5 * jnp.exp(-(PI**2) * r**2 / d[i])
    return POTENTIAL_PREFACTOR * out


def projected_potential(coefficients, r):
    """Projected potential v_z(R) [V Å] at radius R > 0 [Å] (Kirkland 2010, App. C)."""
    a, b, c, d = (coefficients[k] for k in "abcd")
    out = 0.0 * r
    for i in range(3):
        out = out + 2 * PI * a[i] * k0(2 * PI * r * math.sqrt(b[i]))
        out = out + PI * c[i] / d[i] * jnp.exp(-(PI**2) * r**2 / d[i])
    return POTENTIAL_PREFACTOR * out
