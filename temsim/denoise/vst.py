"""Known-dose Poisson denoising through the Anscombe variance-stabilising transform.

Shot noise at dose D [e/px per unit intensity] gives counts X ~ Poisson(D I). The
Anscombe transform A(X) = 2 sqrt(X + 3/8) makes its variance close to 1 for any mean
(Anscombe, Biometrika 35, 246 (1948)), so a denoiser trained on signal-independent,
Gaussian-like noise sees noise of a known, fixed strength. The denoised A-image is an
estimate of E[A(X)], not of A(E[X]); the algebraic inverse is biased at low counts,
so it is mapped back with the closed-form approximation of the exact unbiased inverse
(Mäkitalo & Foi, IEEE Trans. Image Process. 20, 99 (2011)):

    I(d) = d^2/4 + sqrt(3/2)/(4 d) - 11/(8 d^2) + 5 sqrt(3/2)/(8 d^3) - 1/8,

which is 0 at d = 2 sqrt(3/8), E[A(X)] for a zero mean, where it is clamped.

Use it when the dose is known and below the doses a model was trained on: for the
shipped blind model at 3 e/px it is 1.9 dB better than denoising the image directly
(and above BM3D with the same Anscombe treatment), while at the trained doses (10-1000
e/px) the direct path is 0.3-0.5 dB better, and at 3000 e/px 4 dB better: the
stabilised noise is then weaker than any the model saw (`benchmarks/results/
denoise.md`, columns `*_vst`).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from temsim.denoise.metrics import as_array, check_finite
from temsim.denoise.tiling import denoise_image
from temsim.image import Image

__all__ = ["anscombe", "denoise_poisson", "inverse_anscombe"]

_D0 = 2.0 * math.sqrt(3.0 / 8.0)  # E[A(X)] for X ~ Poisson(0)


def anscombe(counts: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """A(x) = 2 sqrt(x + 3/8) of counts x >= 0 (variance ~1 for Poisson counts)."""
    return 2.0 * jnp.sqrt(jnp.maximum(counts, 0.0) + 0.375)


def inverse_anscombe(d: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """Closed-form unbiased inverse: the Poisson mean whose E[A(X)] is d (>= 0)."""
    d = jnp.maximum(d, _D0)
    s = math.sqrt(1.5)
    return 0.25 * d**2 + 0.25 * s / d - 1.375 / d**2 + 0.625 * s / d**3 - 0.125


def denoise_poisson(
    model: nnx.Module,
    image: Image | Float[Array, "*batch ny nx"] | Any,
    dose: float,
    **kwargs,
) -> Image | Float[Array, "*batch ny nx"]:
    """Denoise shot-noise-limited `image` [intensity] recorded at a known `dose`.

    Args:
      model: a denoiser for Gaussian-like noise (e.g. `load_pretrained("blind")`).
      image: intensity (..., ny, nx) with counts = image * dose; >= 0.
      dose: electrons per pixel per unit intensity, > 0 (for an `Image` in e/Å^2,
        multiply by the pixel area).
      **kwargs: passed to `denoise_image` (tile, overlap, self_ensemble, ...).
    Returns: the denoised intensity, float32, same type and shape as `image`.
    """
    if isinstance(dose, bool) or not isinstance(dose, int | float):
        raise TypeError(f"dose must be a number [e/px], got {dose!r}")
    if not (math.isfinite(dose) and dose > 0):
        raise ValueError(f"dose must be finite and > 0 [e/px], got {dose!r}")
    x = as_array(image, "image")
    check_finite(x, "image")
    if bool(jnp.any(x < 0)):
        raise ValueError(
            f"image must be >= 0 (Poisson counts / dose), got minimum "
            f"{float(jnp.min(x)):.4g}; subtract no dark level below zero"
        )
    a = anscombe(x * dose).astype(jnp.float32)
    y = (inverse_anscombe(denoise_image(model, a, **kwargs)) / dose).astype(jnp.float32)
    return image.replace(array=y) if isinstance(image, Image) else y
