"""Seamless inference: whole images, or overlapping tiles blended to sum to one.

Tiles of size T start every T - O pixels (O = overlap; the last tile is flush with the
image end). Each tile's output is weighted by a separable window that, along an axis
where a neighbouring tile overlaps, is 0 over the first O/4 pixels, rises as
sin^2 over the next O/2 and is 1 beyond; the blended image is
sum_t w_t y_t / sum_t w_t. On a regular grid the windows already sum to one
(sin^2 + cos^2 = 1), and a model whose receptive radius is below O/4 gives exactly the
whole-image result: the zero-padding artefacts at tile edges get zero weight, so the
output does not depend on where tile borders fall.

Geometric self-ensemble (`self_ensemble=True`; Lim et al., "Enhanced deep residual
networks for single image super-resolution", CVPRW 2017): the image is denoised in
each of the 8 orientations of the square's symmetry group D4 (4 rotations, each with
and without a flip), each output is mapped back, and the 8 are averaged. The result is
exactly D4-equivariant, which the lattice images it is meant for are, at 8x the cost.

Models with `impulse_mask` mark the pixels at their input's min and max; here every
tile is marked with the extremes of its whole image (`models.image_extremes`), so
tiling stays exact for them too.

Image edges: the image is reflect-padded by `pad` pixels per side (and up to a multiple
of the model's `size_multiple`, 2^depth for a U-Net) before inference; the padding is
cropped afterwards.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from temsim.denoise import models
from temsim.denoise.metrics import as_array, check_finite
from temsim.image import Image

__all__ = ["denoise_image", "tile_starts", "tile_windows", "window_1d"]


def _pair(value: Any, name: str) -> tuple[int, int]:
    v = np.broadcast_to(np.asarray(value), (2,))
    if v.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(v[0]), int(v[1])


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start indices of tiles of size `tile` covering [0, n), stride tile - overlap."""
    if tile >= n:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return starts


def window_1d(tile: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    """(tile,) blending weights: 0 for O/4, sin^2 ramp over O/2, then 1 (per side).

    left/right: whether a neighbouring tile overlaps on that side (else weight 1).
    """
    w = np.ones(tile, np.float64)
    if overlap == 0:
        return w
    m = overlap // 4
    L = overlap - 2 * m
    i = np.arange(overlap, dtype=np.float64)
    ramp = np.where(
        i < m,
        0.0,
        np.where(i >= m + L, 1.0, np.sin(np.pi / 2 * (i - m + 0.5) / L) ** 2),
    )
    if left:
        w[:overlap] *= ramp
    if right:
        w[tile - overlap :] *= ramp[::-1]
    return w


def tile_windows(
    shape: Sequence[int], tile: int | Sequence[int], overlap: int | Sequence[int]
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Tile starts [(y0, x0), ...] and their (n_tiles, ty, tx) unnormalised windows."""
    (ny, nx), (ty, tx), (oy, ox) = (
        shape[-2:],
        _pair(tile, "tile"),
        _pair(overlap, "overlap"),
    )
    ty, tx = min(ty, ny), min(tx, nx)
    sy, sx = tile_starts(ny, ty, oy), tile_starts(nx, tx, ox)
    wy = [window_1d(ty, oy, s > 0, s + ty < ny) for s in sy]
    wx = [window_1d(tx, ox, s > 0, s + tx < nx) for s in sx]
    starts = [(a, b) for a in sy for b in sx]
    windows = np.stack([u[:, None] * v[None, :] for u in wy for v in wx])
    return starts, windows


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x_BxHxWxC, extremes_Bx3xC):
    model = nnx.merge(graphdef, state)
    model.eval()  # the merged copy only; the caller's model keeps its mode
    if extremes_Bx3xC is None:
        return model(x_BxHxWxC)
    return model(x_BxHxWxC, extremes=extremes_Bx3xC)


def _pad_batch(a: np.ndarray, b: int) -> np.ndarray:
    """a with zeros appended along axis 0 up to length b (same shape: no recompile)."""
    return np.concatenate([a, np.zeros((b - a.shape[0],) + a.shape[1:], a.dtype)])


def _run(
    model: nnx.Module,
    x_BxHxW: np.ndarray,
    batch_size: int,
    extremes_Bx3x1: np.ndarray | None = None,
) -> np.ndarray:
    """Model over a stack of equal-size images in fixed-size batches (one compile).

    extremes_Bx3x1: per image (min, max, mean |x|) of the full image each tile came
    from, for models with `impulse_mask` (see `models.impulse_features`).
    """
    graphdef, state = nnx.split(model)
    n = x_BxHxW.shape[0]
    b = min(batch_size, n)
    out = []
    for i in range(0, n, b):
        chunk = _pad_batch(x_BxHxW[i : i + b], b)
        ext = None
        if extremes_Bx3x1 is not None:
            ext = jnp.asarray(_pad_batch(extremes_Bx3x1[i : i + b], b))
        y = _apply(graphdef, state, jnp.asarray(chunk[..., None]), ext)
        out.append(np.asarray(y[: min(b, n - i), ..., 0]))
    return np.concatenate(out)


def denoise_image(
    model: nnx.Module,
    image: Image | Float[Array, "*batch ny nx"] | Float[np.ndarray, "*batch ny nx"],
    *,
    tile: int | Sequence[int] | None = None,
    overlap: int | Sequence[int] | None = None,
    pad: int | None = None,
    batch_size: int = 16,
    self_ensemble: bool = False,
) -> Image | Float[Array, "*batch ny nx"]:
    """Denoise one image or a batch, whole or in seamlessly blended tiles.

    Args:
      model: an NNX denoiser taking NHWC (B, H, W, 1) float32 (DnCNN, UNet, ...); run
        in eval mode on a copy.
      image: `Image`, numpy or JAX array (..., ny, nx), single channel.
      tile: tile size [px] (int or (ty, tx)); None for whole-image inference.
      overlap: even overlap [px] between tiles, 0 <= overlap <= tile/2; default
        tile // 4 rounded down to a multiple of max(2, model.size_multiple). A
        receptive radius < overlap/4 gives the whole-image result exactly.
      pad: reflect padding [px] per side; default overlap // 2 when tiled, else 0.
      batch_size: tiles (or images) per jitted model call.
      self_ensemble: average over the 8 D4 orientations (module docstring); 8x cost.
    Returns: the denoised image, float32, same type and shape as `image`.
    """
    if not isinstance(self_ensemble, bool):
        raise TypeError(f"self_ensemble must be a bool, got {self_ensemble!r}")
    if self_ensemble:
        x = as_array(image, "image")
        kw = {"pad": pad, "batch_size": batch_size}
        total = 0.0
        for k in range(4):
            t = tile if tile is None or k % 2 == 0 else _pair(tile, "tile")[::-1]
            o = overlap if overlap is None or k % 2 == 0 else _pair(overlap, "overlap")
            for flip in (False, True):
                v = jnp.rot90(x, k, axes=(-2, -1))
                v = jnp.flip(v, axis=-1) if flip else v
                y = denoise_image(model, v, tile=t, overlap=o, **kw)
                y = jnp.flip(y, axis=-1) if flip else y
                total = total + jnp.rot90(y, -k, axes=(-2, -1))
        y = (total / 8).astype(jnp.float32)
        return image.replace(array=y) if isinstance(image, Image) else y
    x = as_array(image, "image")
    if x.ndim < 2:
        raise ValueError(f"image must be (..., ny, nx), got shape {x.shape}")
    check_finite(x, "image")
    if not isinstance(x, jax.core.Tracer):
        flat = x.reshape((-1, x.shape[-2] * x.shape[-1]))
        if bool(jnp.any(jnp.max(flat, axis=-1) == jnp.min(flat, axis=-1))):
            raise ValueError(
                "image is constant (every pixel of an image has the same value): "
                "there is no signal or noise to separate; check the file or the "
                "detector's gain reference"
            )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch, (ny, nx) = x.shape[:-2], x.shape[-2:]
    multiple = int(getattr(model, "size_multiple", 1))
    if tile is None:
        if overlap is not None:
            raise ValueError(f"overlap={overlap!r} needs a tile size (tile=None)")
        oy = ox = 0
    else:
        ty, tx = _pair(tile, "tile")
        if overlap is None:  # ~tile/4, even and a multiple of size_multiple
            q = max(2, multiple)
            overlap = (ty // 4 // q * q, tx // 4 // q * q)
        oy, ox = _pair(overlap, "overlap")
        for t, o in ((ty, oy), (tx, ox)):
            if o < 0 or o % 2:
                raise ValueError(f"overlap must be even and >= 0, got {overlap!r}")
            if t < 1 or t < 2 * o:
                raise ValueError(
                    f"tile must be >= 2 * overlap, got tile={tile!r}, "
                    f"overlap={overlap!r}"
                )
            radius = int(getattr(model, "receptive_radius", 0))
            if t < 2 * radius + 1:
                raise ValueError(
                    f"tile={tile!r} is smaller than the model's receptive field "
                    f"(2 * receptive_radius + 1 = {2 * radius + 1} px): every output "
                    f"pixel would see past the tile border; use tile >= "
                    f"{2 * radius + 1} or tile=None"
                )
            if t % multiple or (t - o) % multiple:
                raise ValueError(
                    f"tile and tile - overlap must be multiples of the model's "
                    f"size_multiple={multiple}, got tile={tile!r}, overlap={overlap!r}"
                )
    if pad is None:
        pad = max(oy, ox) // 2
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    # reflect-pad: `pad` per side, then up to a multiple of size_multiple (and of a
    # tile, when the image is smaller than one)
    hy, hx = ny + 2 * pad, nx + 2 * pad
    if tile is not None:
        hy, hx = max(hy, ty), max(hx, tx)
    hy, hx = math.ceil(hy / multiple) * multiple, math.ceil(hx / multiple) * multiple
    arr = np.asarray(x, np.float32).reshape((-1, ny, nx))
    widths = ((0, 0), (pad, hy - ny - pad), (pad, hx - nx - pad))
    xp = np.pad(arr, widths, mode="reflect")
    extremes = None
    if getattr(model, "impulse_mask", False):  # tiles see their image's extremes
        gate = getattr(model, "impulse_gate", 0.0)
        extremes = np.asarray(models.image_extremes(jnp.asarray(arr[..., None]), gate))
    if tile is None:
        yp = _run(model, xp, batch_size, extremes)
    else:
        starts, windows = tile_windows((hy, hx), (ty, tx), (oy, ox))
        ty, tx = windows.shape[-2:]
        tiles = np.stack(
            [xp[:, a : a + ty, b : b + tx] for a, b in starts], axis=1
        ).reshape((-1, ty, tx))
        if extremes is not None:
            extremes = np.repeat(extremes, len(starts), axis=0)
        out = _run(model, tiles, batch_size, extremes)
        out = out.reshape((xp.shape[0], len(starts), ty, tx))
        acc = np.zeros(xp.shape, np.float64)
        norm = np.zeros((hy, hx), np.float64)
        for i, (a, b) in enumerate(starts):
            acc[:, a : a + ty, b : b + tx] += windows[i] * out[:, i]
            norm[a : a + ty, b : b + tx] += windows[i]
        yp = acc / norm
    y = jnp.asarray(yp[:, pad : pad + ny, pad : pad + nx].astype(np.float32))
    y = y.reshape(batch + (ny, nx))
    if isinstance(image, Image):
        return image.replace(array=y)
    return y
