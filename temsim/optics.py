"""Objective-lens optics: aberrations, aperture, partial coherence, detector MTF.

Conventions follow abTEM (Krivanek's polar notation): the aberration phase is

    chi(alpha, phi) = 2 pi/lambda sum_nm C_nm alpha^(n+1)/(n+1) cos(m (phi - phi_nm))

with alpha the scattering angle [rad], C_nm [Å], phi_nm [rad] (azimuths are in radians,
as in abTEM), and the wave is multiplied by exp(-i chi). Aliases: defocus = -C10 (so
positive defocus is underfocus), astigmatism = C12, astigmatism_angle = phi12,
coma = C21, coma_angle = phi21, Cs = C30, C5 = C50.
References: O. L. Krivanek et al., Ultramicroscopy 78, 1 (1999); Kirkland 2010, Ch. 3
(aberration function, aperture and the partial-coherence envelopes).
"""

from __future__ import annotations

import math
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from temsim.potential import numpy_cache, spatial_frequencies
from temsim.units import wavelength

__all__ = [
    "ALIASES",
    "POLAR_SYMBOLS",
    "aberration_coefficients",
    "angular_grid",
    "aperture",
    "apply_mtf",
    "chi",
    "chi_gradient",
    "ctf",
    "detector_mtf",
    "point_resolution",
    "scherzer_defocus",
    "spatial_envelope",
    "temporal_envelope",
]

# (n, m) orders of the polar expansion up to fifth order.
ORDERS = (
    (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2), (3, 4),
    (4, 1), (4, 3), (4, 5), (5, 0), (5, 2), (5, 4), (5, 6),
)  # fmt: skip
POLAR_SYMBOLS = tuple(
    s for n, m in ORDERS for s in ((f"C{n}{m}", f"phi{n}{m}") if m else (f"C{n}{m}",))
)
ALIASES = MappingProxyType(
    {
        "defocus": ("C10", -1.0),
        "astigmatism": ("C12", 1.0),
        "astigmatism_angle": ("phi12", 1.0),
        "coma": ("C21", 1.0),
        "coma_angle": ("phi21", 1.0),
        "Cs": ("C30", 1.0),
        "C5": ("C50", 1.0),
    }
)


def aberration_coefficients(**aberrations) -> dict:
    """Polar coefficients {C_nm [Å], phi_nm [rad]} from symbols and aliases.

    Unknown names raise ValueError; an alias and its symbol together (defocus and C10)
    too. Values may be JAX tracers (for gradients of an image w.r.t. defocus, ...).
    """
    out = {}
    for name, value in aberrations.items():
        if name in ALIASES:
            symbol, sign = ALIASES[name]
        elif name in POLAR_SYMBOLS:
            symbol, sign = name, 1.0
        else:
            raise ValueError(
                f"unknown aberration {name!r}; allowed: {POLAR_SYMBOLS} and aliases "
                f"{tuple(ALIASES)}"
            )
        if symbol in out:
            raise ValueError(f"aberration {symbol} given twice (as {name!r} and alias)")
        if not isinstance(value, jax.core.Tracer) and not np.all(
            np.isfinite(np.asarray(value, dtype=np.float64))
        ):
            raise ValueError(f"aberration {name} must be finite, got {value!r}")
        if not isinstance(value, jax.core.Tracer):
            value = float(value)
        out[symbol] = value if sign == 1.0 else -value
    return out


@numpy_cache
def angular_grid(
    gpts: tuple[int, int], sampling: tuple[float, float], *, energy: float
) -> tuple[np.ndarray, np.ndarray]:
    """(alpha [rad], phi [rad]) of each FFT pixel, shape (ny, nx); alpha = lambda k."""
    ky, kx = spatial_frequencies(gpts, sampling)
    lam = wavelength(energy)
    alpha = lam * np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    phi = np.arctan2(ky[:, None] + 0.0 * kx[None, :], kx[None, :] + 0.0 * ky[:, None])
    return alpha, phi


def _terms(coefficients):
    for n, m in ORDERS:
        c = coefficients.get(f"C{n}{m}", 0.0)
        p = coefficients.get(f"phi{n}{m}", 0.0)
        if not isinstance(c, jax.core.Tracer) and np.all(np.asarray(c) == 0):
            continue
        yield n, m, c, p


def chi(
    alpha: Float[ArrayLike, "*shape"],
    phi: Float[ArrayLike, "*shape"],
    *,
    energy: float,
    **aberrations,
) -> Float[Array, "*shape"]:
    """Aberration phase chi [rad] at angles alpha, phi [rad].

    chi = 2 pi / lambda sum C_nm alpha^(n+1)/(n+1) cos(m (phi - phi_nm))
    (Krivanek et al. 1999; abTEM `Aberrations`).
    """
    coefficients = aberration_coefficients(**aberrations)
    alpha = jnp.asarray(alpha, dtype=float)
    phi = jnp.asarray(phi, dtype=float)
    out = jnp.zeros(jnp.broadcast_shapes(alpha.shape, phi.shape), dtype=alpha.dtype)
    for n, m, c, p in _terms(coefficients):
        out = out + c * alpha ** (n + 1) / (n + 1) * jnp.cos(m * (phi - p))
    return 2 * jnp.pi / wavelength(energy) * out


def chi_gradient(
    alpha: Float[ArrayLike, "*shape"],
    phi: Float[ArrayLike, "*shape"],
    *,
    energy: float,
    **aberrations,
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    """(d chi / d alpha, (1/alpha) d chi / d phi) [1/rad], the angular gradient of chi.

    d chi/d alpha = 2 pi/lambda sum C_nm alpha^n cos(m (phi - phi_nm));
    (1/alpha) d chi/d phi = -2 pi/lambda sum m C_nm alpha^n/(n+1) sin(m (phi - phi_nm)).
    """
    coefficients = aberration_coefficients(**aberrations)
    alpha = jnp.asarray(alpha, dtype=float)
    phi = jnp.asarray(phi, dtype=float)
    shape = jnp.broadcast_shapes(alpha.shape, phi.shape)
    radial = jnp.zeros(shape, dtype=alpha.dtype)
    azimuthal = jnp.zeros(shape, dtype=alpha.dtype)
    for n, m, c, p in _terms(coefficients):
        radial = radial + c * alpha**n * jnp.cos(m * (phi - p))
        azimuthal = azimuthal - m * c * alpha**n / (n + 1) * jnp.sin(m * (phi - p))
    scale = 2 * jnp.pi / wavelength(energy)
    return scale * radial, scale * azimuthal


def aperture(alpha: Float[ArrayLike, "*shape"], semiangle_cutoff: float) -> Array:
    """Hard objective aperture: 1 where alpha <= cutoff; alpha [rad], cutoff [mrad]."""
    alpha = jnp.asarray(alpha, dtype=float)
    return (alpha <= semiangle_cutoff * 1e-3).astype(alpha.dtype)


def temporal_envelope(
    alpha: Float[ArrayLike, "*shape"], *, energy: float, focal_spread: float
) -> Float[Array, "*shape"]:
    """Temporal-coherence envelope; focal_spread [Å] is the 1/e width (not the std).

    E_t = exp(-(pi focal_spread alpha^2 / (2 lambda))^2), i.e. Kirkland's
    exp(-(pi lambda sigma k^2)^2 / 2) with focal_spread = sqrt(2) sigma (Kirkland 2010,
    Ch. 3; abTEM `TemporalEnvelope`).
    """
    alpha = jnp.asarray(alpha, dtype=float)
    x = 0.5 * jnp.pi / wavelength(energy) * focal_spread * alpha**2
    return jnp.exp(-(x**2))


def spatial_envelope(
    alpha: Float[ArrayLike, "*shape"],
    phi: Float[ArrayLike, "*shape"],
    *,
    energy: float,
    angular_spread: float,
    **aberrations,
) -> Float[Array, "*shape"]:
    """Spatial-coherence envelope for a source of angular spread [mrad].

    E_s = exp(-(theta/2)^2 |grad_alpha chi|^2), theta = angular_spread [rad]
    (Kirkland 2010, Ch. 3; abTEM `SpatialEnvelope`).
    """
    radial, azimuthal = chi_gradient(alpha, phi, energy=energy, **aberrations)
    theta = angular_spread * 1e-3
    return jnp.exp(-((theta / 2) ** 2) * (radial**2 + azimuthal**2))


def _check_nonnegative(name, value):
    if not isinstance(value, jax.core.Tracer) and not (
        np.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def ctf(
    gpts: int | tuple[int, int],
    sampling: float | tuple[float, float],
    *,
    energy: float,
    defocus: float = 0.0,
    Cs: float = 0.0,
    semiangle_cutoff: float = math.inf,
    focal_spread: float = 0.0,
    angular_spread: float = 0.0,
    **aberrations,
) -> Complex[Array, "ny nx"]:
    """Contrast transfer function on the FFT grid (multiplies the wave's spectrum).

    Units: sampling, defocus, Cs, focal_spread [Å]; semiangle_cutoff, angular_spread
    [mrad]; energy [eV]. Shape (ny, nx), FFT order.
    H = A(alpha) E_t(alpha) E_s(alpha, phi) exp(-i chi(alpha, phi))
    (Kirkland 2010, Ch. 3; abTEM `CTF`).
    """
    gpts = tuple(int(n) for n in np.broadcast_to(np.asarray(gpts), (2,)))
    sampling = tuple(float(s) for s in np.broadcast_to(np.asarray(sampling), (2,)))
    if min(gpts) < 1 or min(sampling) <= 0:
        raise ValueError(
            f"gpts must be >= 1 and sampling > 0 [Å], got {gpts!r} and {sampling!r}"
        )
    if not isinstance(semiangle_cutoff, jax.core.Tracer) and not semiangle_cutoff > 0:
        raise ValueError(
            f"semiangle_cutoff must be > 0 mrad (inf for none), "
            f"got {semiangle_cutoff!r}"
        )
    _check_nonnegative("focal_spread", focal_spread)
    _check_nonnegative("angular_spread", angular_spread)
    for name, value in (("defocus", defocus), ("Cs", Cs)):
        if isinstance(value, jax.core.Tracer) or value != 0:
            aberrations[name] = value  # zero defaults leave room for C10 / C30
    alpha, phi = angular_grid(gpts, sampling, energy=energy)
    phase = chi(alpha, phi, energy=energy, **aberrations)
    h = jax.lax.complex(jnp.cos(phase), -jnp.sin(phase))
    damping = jnp.ones(gpts, dtype=phase.dtype)
    if semiangle_cutoff != math.inf:
        damping = damping * aperture(alpha, semiangle_cutoff)
    if isinstance(focal_spread, jax.core.Tracer) or focal_spread != 0:
        damping = damping * temporal_envelope(
            alpha, energy=energy, focal_spread=focal_spread
        )
    if isinstance(angular_spread, jax.core.Tracer) or angular_spread != 0:
        damping = damping * spatial_envelope(
            alpha, phi, energy=energy, angular_spread=angular_spread, **aberrations
        )
    return h * damping.astype(h.dtype)


def scherzer_defocus(Cs: float, energy: float) -> float:
    """Scherzer defocus [Å] (underfocus > 0): sqrt(3/2 Cs lambda) sign(Cs); Cs [Å].

    The choice used by abTEM (Kirkland 2010, Sec. 3.3; Scherzer, J. Appl. Phys. 20, 20
    (1949)).
    """
    return math.copysign(math.sqrt(1.5 * abs(Cs) * wavelength(energy)), Cs)


def point_resolution(Cs: float, energy: float) -> float:
    """Point resolution [Å]: first zero of sin(chi) at Scherzer defocus; Cs [Å].

    d = (Cs lambda^3 / 6)^(1/4) ~ 0.64 Cs^(1/4) lambda^(3/4) (abTEM
    `point_resolution`; Kirkland 2010, Sec. 3.3).
    """
    return (wavelength(energy) ** 3 * abs(Cs) / 6) ** 0.25


def detector_mtf(
    gpts: int | tuple[int, int], *, spread: float = 0.0
) -> Float[Array, "ny nx"]:
    """Detector modulation transfer function on the FFT grid (pixel units).

    MTF(f) = sinc(f_x) sinc(f_y) exp(-2 pi^2 spread^2 |f|^2), f [cycles/pixel]: square
    pixel integration times a Gaussian point spread of `spread` pixels (std), e.g. the
    scintillator of a CCD (G. McMullan et al., Ultramicroscopy 109, 1126 (2009)).
    """
    gpts = tuple(int(n) for n in np.broadcast_to(np.asarray(gpts), (2,)))
    _check_nonnegative("spread", spread)
    fy, fx = np.fft.fftfreq(gpts[0]), np.fft.fftfreq(gpts[1])
    pixel = np.sinc(fy)[:, None] * np.sinc(fx)[None, :]
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    dtype = jnp.result_type(float)
    return jnp.asarray(pixel, dtype=dtype) * jnp.exp(
        -2 * jnp.pi**2 * spread**2 * jnp.asarray(f2, dtype=dtype)
    )


def apply_mtf(
    image: Float[ArrayLike, "*batch ny nx"], mtf: Float[Array, "ny nx"]
) -> Float[Array, "*batch ny nx"]:
    """Blur an intensity image by a detector MTF (Fourier-space multiplication).

    One code path with `temsim.noise.apply_mtf`, which also takes the parametric
    `temsim.noise.MTF` (Thust 2009); this form takes the sampled `detector_mtf`.
    """
    from temsim import noise

    return noise.apply_mtf(jnp.asarray(image), mtf)
