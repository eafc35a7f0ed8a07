"""Image-quality metrics for denoising: PSNR, SSIM, MS-SSIM and a tiling seam score.

All metrics compare an estimate `x` with a `reference` of the same shape (..., ny, nx)
(leading axes are a batch; a `temsim.Image` is accepted for either) and return one value
per image, shape (...). They are pure JAX functions: differentiable (MS-SSIM and SSIM
serve as training losses), jit- and vmap-safe. They compute in float32, or float64 when
an input is float64.

`data_range` is the dynamic range L of the reference (max - min possible value); by
default it is taken per image from the reference, max(ref) - min(ref).

References: Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 13, 600 (2004) (SSIM, eqs. 6-13);
Wang, Simoncelli & Bovik, Asilomar (2003) (MS-SSIM, eq. 7 and its weights).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from temsim.image import Image

__all__ = ["MS_SSIM_WEIGHTS", "ms_ssim", "psnr", "seam_score", "ssim"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Exponents of the 5 scales of MS-SSIM, finest first (Wang et al. 2003, sec. 3.2)."""


# --------------------------------------------------------------------------- helpers


def as_array(image: Any, name: str) -> Array:
    """The array of an `Image`/numpy/JAX input, as a floating JAX array."""
    x = image.array if isinstance(image, Image) else image
    if not isinstance(x, jax.Array | jax.core.Tracer):
        x = np.asarray(x)
        if x.dtype == object or np.iscomplexobj(x):
            raise ValueError(
                f"{name} must be a real numeric array, got dtype {x.dtype}"
            )
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {x.dtype}; take abs() first")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def check_finite(x: Array, name: str) -> None:
    """ValueError if a concrete `x` holds NaN or Inf (skipped under tracing)."""
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or Inf; clean the input first")


def _pair(x: Array, reference: Array) -> tuple[Array, Array]:
    x = as_array(x, "x")
    ref = as_array(reference, "reference")
    if x.shape != ref.shape or x.ndim < 2:
        raise ValueError(
            f"x and reference must have the same shape (..., ny, nx), got {x.shape} "
            f"and {ref.shape}"
        )
    dtype = jnp.float64 if jnp.float64 in (x.dtype, ref.dtype) else jnp.float32
    return x.astype(dtype), ref.astype(dtype)


def _data_range(ref: Array, data_range: float | ArrayLike | None) -> Array:
    if data_range is None:
        return jnp.max(ref, axis=(-2, -1)) - jnp.min(ref, axis=(-2, -1))
    if not isinstance(data_range, jax.core.Tracer) and not np.all(
        np.asarray(data_range) > 0
    ):
        raise ValueError(f"data_range must be > 0, got {data_range!r}")
    return jnp.asarray(data_range).astype(ref.dtype)


def gaussian_window(size: int, sigma: float, dtype=jnp.float32) -> Array:
    """(size,) normalised Gaussian taps exp(-t^2 / 2 sigma^2), t centred."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    return jnp.asarray(g / g.sum(), dtype=dtype)


def _filter_valid(x_NxHxW: Array, g: Array) -> Array:
    """Separable 'valid' filtering of a stack of images with 1-D taps g."""
    k = g.shape[0]
    lhs = x_NxHxW[:, None]
    rows = jax.lax.conv_general_dilated(lhs, g.reshape(1, 1, k, 1), (1, 1), "VALID")
    out = jax.lax.conv_general_dilated(rows, g.reshape(1, 1, 1, k), (1, 1), "VALID")
    return out[:, 0]


def _ssim_terms(x, ref, L, *, win_size, sigma, k1, k2):
    """Mean luminance term l and mean contrast-structure term cs, each (...)."""
    batch = x.shape[:-2]
    ny, nx = x.shape[-2:]
    if min(ny, nx) < win_size:
        raise ValueError(
            f"images must be at least win_size={win_size} pixels on each side, got "
            f"{(ny, nx)}"
        )
    g = gaussian_window(win_size, sigma, x.dtype)
    stack = jnp.stack([x, ref, x * x, ref * ref, x * ref], axis=-3)
    f = _filter_valid(stack.reshape((-1, ny, nx)), g)
    f = f.reshape(batch + (5,) + f.shape[-2:])
    mu_x, mu_y, xx, yy, xy = (f[..., i, :, :] for i in range(5))
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    c1 = ((k1 * L) ** 2)[..., None, None]
    c2 = ((k2 * L) ** 2)[..., None, None]
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return lum, cs


# --------------------------------------------------------------------------- metrics


def psnr(
    x: Float[ArrayLike, "*batch ny nx"],
    reference: Float[ArrayLike, "*batch ny nx"],
    *,
    data_range: float | None = None,
) -> Float[Array, "*batch"]:
    """Peak signal-to-noise ratio [dB]: 10 log10(L^2 / MSE(x, reference)).

    Identical images give +inf.
    """
    x, ref = _pair(x, reference)
    L = _data_range(ref, data_range)
    mse = jnp.mean((x - ref) ** 2, axis=(-2, -1))
    return 10.0 * jnp.log10(L * L / mse)


def ssim(
    x: Float[ArrayLike, "*batch ny nx"],
    reference: Float[ArrayLike, "*batch ny nx"],
    *,
    data_range: float | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Float[Array, "*batch"]:
    """Structural similarity (Wang et al. 2004, eq. 13), mean over valid windows.

    SSIM = mean[(2 mu_x mu_y + C1)(2 sigma_xy + C2) /
    ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))], with C_i = (K_i L)^2 and
    local moments from an 11x11 Gaussian window (sigma 1.5 px), population
    (not sample) covariances; windows lie entirely inside the image. Equals
    skimage `structural_similarity(..., gaussian_weights=True,
    use_sample_covariance=False, data_range=L)`.
    """
    x, ref = _pair(x, reference)
    L = _data_range(ref, data_range)
    return _ssim(x, ref, L, win_size=win_size, sigma=sigma, k1=k1, k2=k2)


@functools.partial(jax.jit, static_argnames=("win_size", "sigma", "k1", "k2"))
def _ssim(x, ref, L, *, win_size, sigma, k1, k2):
    lum, cs = _ssim_terms(x, ref, L, win_size=win_size, sigma=sigma, k1=k1, k2=k2)
    return jnp.mean(lum * cs, axis=(-2, -1))


def _avg_pool2(x: Array) -> Array:
    ny, nx = x.shape[-2:]
    x = x[..., : ny - ny % 2, : nx - nx % 2]
    s = x.shape
    return x.reshape(s[:-2] + (s[-2] // 2, 2, s[-1] // 2, 2)).mean(axis=(-3, -1))


def max_scales(shape: Sequence[int], win_size: int = 11) -> int:
    """Largest number of MS-SSIM scales for an image of `shape` (ny, nx)."""
    n = min(shape[-2:])
    return max(0, int(math.floor(math.log2(n / win_size))) + 1) if n >= win_size else 0


def ms_ssim(
    x: Float[ArrayLike, "*batch ny nx"],
    reference: Float[ArrayLike, "*batch ny nx"],
    *,
    data_range: float | None = None,
    scales: int | None = None,
    weights: Sequence[float] | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Float[Array, "*batch"]:
    """Multi-scale SSIM (Wang et al. 2003, eq. 7): l_M^w_M prod_j cs_j^w_j.

    Scales j = 1..M halve the image by 2x2 averaging; the standard M = 5 weights are
    `MS_SSIM_WEIGHTS`. The coarsest scale needs >= `win_size` pixels per side, so a
    5-scale MS-SSIM needs 176 px images. `scales=None` uses min(5, what fits) scales
    with the first weights renormalised to sum to 1; an explicit `scales` that does not
    fit raises ValueError. Negative cs/l terms (anti-correlated images) are clamped to
    1e-6 before the fractional power, as in TensorFlow's `ssim_multiscale` (keeps
    gradients finite).
    """
    x, ref = _pair(x, reference)
    fit = max_scales(x.shape, win_size)
    if fit == 0:
        raise ValueError(
            f"images of shape {x.shape[-2:]} are smaller than win_size={win_size}; "
            "MS-SSIM needs at least one full window"
        )
    if weights is not None:
        w = tuple(float(v) for v in weights)
        if scales is not None and scales != len(w):
            raise ValueError(f"scales={scales} but {len(w)} weights were given")
        scales = len(w)
    if scales is None:
        scales = min(len(MS_SSIM_WEIGHTS), fit)
    if not 1 <= scales <= fit:
        raise ValueError(
            f"scales must be in [1, {fit}] for images of shape {x.shape[-2:]} "
            f"(coarsest scale >= win_size={win_size} px), got {scales}; pass "
            "scales=None to choose automatically"
        )
    if weights is None:
        if scales > len(MS_SSIM_WEIGHTS):
            raise ValueError(
                f"scales={scales} > {len(MS_SSIM_WEIGHTS)} needs explicit weights"
            )
        w = MS_SSIM_WEIGHTS[:scales]
        w = tuple(v / sum(w) for v in w)
    L = _data_range(ref, data_range)
    return _ms_ssim(
        x, ref, L, weights=tuple(w), win_size=win_size, sigma=sigma, k1=k1, k2=k2
    )


@functools.partial(
    jax.jit, static_argnames=("weights", "win_size", "sigma", "k1", "k2")
)
def _ms_ssim(x, ref, L, *, weights, win_size, sigma, k1, k2):
    w, scales = weights, len(weights)
    eps = 1e-6
    out = jnp.ones(x.shape[:-2], x.dtype)
    for j in range(scales):
        lum, cs = _ssim_terms(x, ref, L, win_size=win_size, sigma=sigma, k1=k1, k2=k2)
        if j == scales - 1:
            term = jnp.mean(lum * cs, axis=(-2, -1))
        else:
            term = jnp.mean(cs, axis=(-2, -1))
            x, ref = _avg_pool2(x), _avg_pool2(ref)
        out = out * jnp.maximum(term, eps) ** jnp.asarray(w[j], x.dtype)
    return out


def _pair_int(value: Any, name: str) -> tuple[int, int]:
    v = np.broadcast_to(np.asarray(value), (2,))
    if v.dtype.kind not in "iu" and not np.all(v == np.round(v)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(v[0]), int(v[1])


def border_mask(
    shape: Sequence[int], tile: int | Sequence[int], *, band: int = 2, origin: Any = 0
) -> np.ndarray:
    """(ny, nx) bool: pixels within `band` px of an interior tile border.

    Borders lie between pixels origin + k*tile - 1 and origin + k*tile (k integer),
    per axis; the image's own edges are not borders.
    """
    ty, tx = _pair_int(tile, "tile")
    oy, ox = _pair_int(origin, "origin")
    if ty < 1 or tx < 1 or band < 1 or 2 * band > min(ty, tx):
        raise ValueError(
            f"need tile >= 1 and 1 <= band <= tile/2, got tile={tile!r}, band={band}"
        )
    ny, nx = shape[-2:]

    def near(n, t, o):
        m = np.zeros(n, bool)
        for b in range(o % t, n, t):
            if 0 < b < n:
                m[max(0, b - band) : b + band] = True
        return m

    return near(ny, ty, oy)[:, None] | near(nx, tx, ox)[None, :]


def seam_score(
    x: Float[ArrayLike, "*batch ny nx"],
    reference: Float[ArrayLike, "*batch ny nx"],
    *,
    tile: int | Sequence[int],
    band: int = 2,
    origin: int | Sequence[int] = 0,
) -> Float[Array, "*batch"]:
    """Tiling seam score: MAE in bands along tile borders / MAE in tile interiors.

    score = mean_{border band} |x - ref| / mean_{interior} |x - ref|, with borders at
    origin + k*tile along each axis and bands `band` px wide on each side of a border.
    A seamless result scores ~1; visible tile seams score > 1. Pixels within `band`
    of the image's outer edge are excluded from both sets.
    """
    x, ref = _pair(x, reference)
    ny, nx = x.shape[-2:]
    seam = border_mask((ny, nx), tile, band=band, origin=origin)
    edge = np.zeros((ny, nx), bool)
    edge[band:-band, band:-band] = True
    interior = edge & ~seam
    seam = edge & seam
    if not seam.any() or not interior.any():
        raise ValueError(
            f"tile={tile!r} with band={band} leaves no border band or no interior in a "
            f"{(ny, nx)} image"
        )
    err = jnp.abs(x - ref)
    n_seam, n_in = float(seam.sum()), float(interior.sum())
    mae_seam = jnp.sum(jnp.where(seam, err, 0.0), axis=(-2, -1)) / n_seam
    mae_in = jnp.sum(jnp.where(interior, err, 0.0), axis=(-2, -1)) / n_in
    return mae_seam / mae_in
