"""Shape fidelity of atom columns: are denoised columns still round and in place?

Columns are located in the clean image (local extrema after Gaussian smoothing); around
each, the background-subtracted intensity I_w >= 0 inside a disc of radius r gives the
centroid mu = sum I_w p / sum I_w and the second-moment tensor
M = sum I_w (p - mu)(p - mu)^T / sum I_w [px^2]. With eigenvalues l1 >= l2 of M the
ellipticity is e = (l1 - l2) / (l1 + l2), 0 for a round column and
(s_a^2 - s_b^2) / (s_a^2 + s_b^2) for a Gaussian with principal widths s_a >= s_b.

Positions are (row, col) pixel coordinates. Column finding runs on the host (a
variable number of columns); the moments are JAX (vmapped over columns).

Reference: the moment-based ellipticity is the weak-lensing convention (Bartelmann &
Schneider, Phys. Rep. 340, 291 (2001), eq. 4.7) applied to atom-column images.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from temsim.denoise.metrics import (
    _filter_valid,
    as_array,
    check_finite,
    gaussian_window,
)

__all__ = ["ColumnShapes", "ShapeFidelity", "column_shapes", "find_columns", "fidelity"]


class ColumnShapes(NamedTuple):
    """Moments of n columns.

    Attributes:
      centroid: (n, 2) intensity centroids (row, col) [px].
      moments: (n, 2, 2) second-moment tensors [px^2].
      ellipticity: (n,) (l1 - l2)/(l1 + l2), in [0, 1].
      angle: (n,) orientation of the major axis from the +col axis [rad].
    """

    centroid: Array
    moments: Array
    ellipticity: Array
    angle: Array


class ShapeFidelity(NamedTuple):
    """Column shapes of a denoised image against the clean one.

    Attributes:
      positions: (n, 2) integer column positions found in the clean image [px].
      clean, denoised: `ColumnShapes` of each image at those positions.
      ellipticity_error: (n,) |e_denoised - e_clean|.
      centroid_error: (n,) |mu_denoised - mu_clean| [px].
    """

    positions: Array
    clean: ColumnShapes
    denoised: ColumnShapes
    ellipticity_error: Array
    centroid_error: Array

    @property
    def mean_ellipticity_error(self) -> Array:
        return jnp.mean(self.ellipticity_error)

    @property
    def mean_centroid_error(self) -> Array:
        return jnp.mean(self.centroid_error)


def _smooth(x: Array, sigma: float) -> Array:
    if sigma <= 0:
        return x
    r = max(1, int(np.ceil(3 * sigma)))
    g = gaussian_window(2 * r + 1, sigma, x.dtype)
    xp = jnp.pad(x, r, mode="reflect")
    return _filter_valid(xp[None], g)[0]


def _sign(image: Array, polarity: str) -> float:
    if polarity == "bright":
        return 1.0
    if polarity == "dark":
        return -1.0
    if polarity == "auto":  # columns are the minority far from the median
        med = jnp.median(image)
        return (
            1.0 if float(jnp.max(image) - med) >= float(med - jnp.min(image)) else -1.0
        )
    raise ValueError(f"polarity must be 'bright', 'dark' or 'auto', got {polarity!r}")


def find_columns(
    clean: Float[ArrayLike, "ny nx"],
    *,
    sigma: float = 1.0,
    min_distance: int = 3,
    threshold: float = 0.5,
    polarity: Literal["bright", "dark", "auto"] = "auto",
    exclude_border: int | None = None,
) -> Int[Array, "n 2"]:
    """(row, col) of atom columns: local extrema of the Gaussian-smoothed image.

    A pixel is a column if it is the maximum of its (2 min_distance + 1)^2
    neighbourhood (of the sign-flipped image for dark columns) and its height above the
    median exceeds `threshold` x (max - median). Columns within `exclude_border` px
    (default min_distance) of the edge are dropped.
    """
    x = as_array(clean, "clean")
    if x.ndim != 2:
        raise ValueError(f"clean must be 2-D (ny, nx), got shape {x.shape}")
    check_finite(x, "clean")
    if min_distance < 1 or not 0 <= threshold < 1:
        raise ValueError(
            f"need min_distance >= 1 and 0 <= threshold < 1, got {min_distance}, "
            f"{threshold}"
        )
    s = _sign(x, polarity) * _smooth(x, sigma)
    k = 2 * min_distance + 1
    local_max = jax.lax.reduce_window(s, -jnp.inf, jax.lax.max, (k, k), (1, 1), "SAME")
    med = jnp.median(s)
    peak = (s == local_max) & (s - med > threshold * (jnp.max(s) - med))
    b = min_distance if exclude_border is None else exclude_border
    rows, cols = np.nonzero(np.asarray(peak))
    ny, nx = x.shape
    keep = (rows >= b) & (rows < ny - b) & (cols >= b) & (cols < nx - b)
    return jnp.asarray(np.stack([rows[keep], cols[keep]], axis=1), jnp.int32)


def column_shapes(
    image: Float[ArrayLike, "ny nx"],
    positions: Int[ArrayLike, "n 2"],
    *,
    radius: int,
    polarity: Literal["bright", "dark"] = "bright",
) -> ColumnShapes:
    """Centroid, second moments and ellipticity of the columns at `positions`.

    Inside the disc |p - position| <= radius [px] the weight is
    I_w = max(s (I - b), 0), with s = +1 (bright) or -1 (dark) and b the median of
    the disc's outer ring (the local background).
    """
    x = as_array(image, "image")
    if x.ndim != 2:
        raise ValueError(f"image must be 2-D (ny, nx), got shape {x.shape}")
    if polarity not in ("bright", "dark"):
        raise ValueError(f"polarity must be 'bright' or 'dark', got {polarity!r}")
    if int(radius) < 2:
        raise ValueError(f"radius must be >= 2 px, got {radius}")
    r = int(radius)
    dtype = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
    x = x.astype(dtype)
    pos = jnp.asarray(positions).astype(jnp.int32).reshape(-1, 2)
    return ColumnShapes(
        *_moments(x, pos, r=r, sign=1.0 if polarity == "bright" else -1.0)
    )


@functools.partial(jax.jit, static_argnames=("r", "sign"))
def _moments(x, pos, *, r, sign):
    dtype = x.dtype
    xp = jnp.pad(x, r, mode="reflect")
    d = jnp.arange(-r, r + 1).astype(dtype)
    dy_WxW, dx_WxW = jnp.meshgrid(d, d, indexing="ij")
    rho = jnp.sqrt(dy_WxW**2 + dx_WxW**2)
    disc = rho <= r
    ring = disc & (rho > r - 1)
    sign = jnp.asarray(sign, dtype)

    def one(p):
        w = jax.lax.dynamic_slice(xp, (p[0], p[1]), (2 * r + 1, 2 * r + 1))
        bg = jnp.nanmedian(jnp.where(ring, w, jnp.nan))
        I = jnp.where(disc, jnp.maximum(sign * (w - bg), 0.0), 0.0)
        m0 = jnp.sum(I)
        cy = jnp.sum(I * dy_WxW) / m0
        cx = jnp.sum(I * dx_WxW) / m0
        myy = jnp.sum(I * (dy_WxW - cy) ** 2) / m0
        mxx = jnp.sum(I * (dx_WxW - cx) ** 2) / m0
        mxy = jnp.sum(I * (dy_WxW - cy) * (dx_WxW - cx)) / m0
        centroid = jnp.stack([cy, cx]) + p.astype(dtype)
        moments = jnp.stack([jnp.stack([myy, mxy]), jnp.stack([mxy, mxx])])
        # eigenvalues of [[a, c], [c, b]]: (a+b)/2 +- sqrt(((a-b)/2)^2 + c^2)
        half_diff = jnp.sqrt(((mxx - myy) / 2) ** 2 + mxy**2)
        ell = 2 * half_diff / (mxx + myy)
        angle = 0.5 * jnp.arctan2(2 * mxy, mxx - myy)
        return centroid, moments, ell, angle

    return jax.vmap(one)(pos)


def fidelity(
    denoised: Float[ArrayLike, "ny nx"],
    clean: Float[ArrayLike, "ny nx"],
    *,
    radius: int = 4,
    sigma: float = 1.0,
    min_distance: int | None = None,
    threshold: float = 0.5,
    polarity: Literal["bright", "dark", "auto"] = "auto",
) -> ShapeFidelity:
    """Column shapes of `denoised` vs `clean` at the columns found in `clean`.

    Columns closer than `radius` px to the image edge are skipped. Returns per-column
    ellipticity error |e_d - e_c| and centroid error |mu_d - mu_c| [px].
    """
    c = as_array(clean, "clean")
    d = as_array(denoised, "denoised")
    if c.shape != d.shape or c.ndim != 2:
        raise ValueError(
            f"denoised and clean must be 2-D of the same shape, got {d.shape} and "
            f"{c.shape}"
        )
    check_finite(d, "denoised")
    pol = "bright" if _sign(c, polarity) > 0 else "dark"
    pos = find_columns(
        c,
        sigma=sigma,
        min_distance=radius if min_distance is None else min_distance,
        threshold=threshold,
        polarity=pol,
        exclude_border=radius,
    )
    if pos.shape[0] == 0:
        raise ValueError(
            "no atom columns found in clean; lower threshold or check polarity"
        )
    sc = column_shapes(c, pos, radius=radius, polarity=pol)
    sd = column_shapes(d, pos, radius=radius, polarity=pol)
    return ShapeFidelity(
        positions=pos,
        clean=sc,
        denoised=sd,
        ellipticity_error=jnp.abs(sd.ellipticity - sc.ellipticity),
        centroid_error=jnp.linalg.norm(sd.centroid - sc.centroid, axis=-1),
    )
