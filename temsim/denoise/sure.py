"""Known-noise refinement of a CNN denoiser by SURE-LET (Stein's unbiased risk).

A blind CNN does not know the noise level, and above the levels it was trained on it
under-smooths and invents contrast. When the noise model and level are known (BM3D is
given sigma for the same reason), Stein's lemma estimates the mean squared error of any
weakly differentiable estimate f(y) of x from y alone [Stein, Ann. Stat. 9, 1135
(1981)]: for y = x + n with independent zero-mean Gaussian n_i of variance v_i,

    SURE(f) = ||y - f(y)||^2 - sum_i v_i + 2 sum_i v_i df_i/dy_i,
    E[SURE(f)] = E ||f(y) - x||^2.

The weighted divergence of a black-box denoiser is estimated by Monte Carlo with
random +-1 probes b and a small step eps [Ramani, Blu & Unser, IEEE Trans. Image
Process. 17, 1540 (2008)]:

    sum_i v_i df_i/dy_i ~ mean_b <v b, f(y + eps b) - f(y)> / eps.

`sure_let` minimises SURE over linear combinations sum_k a_k phi_k(y) of elementary
estimates [Blu & Luisier, IEEE Trans. Image Process. 16, 593 (2007)]; SURE is
quadratic in a, so a solves one K x K system per image:

    M a = c,  M_kl = <phi_k, phi_l>,  c_k = <y, phi_k> - sum_i v_i dphi_k,i/dy_i.

`denoise_known` uses as elementary estimates a constant, the CNN output and Gaussian
smoothings of it (for Poisson also the Anscombe-domain CNN, `vst.denoise_poisson`), so
it can shrink invented contrast, restore attenuated detail (a combination
f + a (f - G f) is an unsharp mask) and smooth further where the noise exceeds what
the CNN was trained on.

Shot noise is not Gaussian. Its risk is estimated by binomial thinning (data fission;
Leiner, Duan, Wasserman & Ramdas, J. Am. Stat. Assoc. 2023): counts N ~ Poisson(D x)
split into N1 ~ Binomial(N, p) and N2 = N - N1 are independent Poisson counts of
doses pD and (1-p)D, so y2 = N2 / ((1-p) D) is an unbiased, independent target for
any estimate computed from y1 = N1 / (pD): E||g(y1) - y2||^2 = E||g(y1) - x||^2 +
const, with no Taylor expansion. The weights fitted on (y1, y2) are applied to the
bases of the full image. On validation images (benchmarks/denoise_sure.py) this beat
the first-order Poisson estimate (PURE, which puts the MSE 39 % low at 3 e/px) by
3.5 dB at 3 e/px and 0.3 dB at 20 e/px, and was within 0.03 dB of it at 100-3000
e/px. Speckle uses SURE with a pilot-weighted divergence (`noise_variance`), an
approximation. Salt-and-pepper uses impulse switching (`denoise_known`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float
from scipy import ndimage

from temsim.denoise.metrics import as_array, check_finite
from temsim.denoise.tiling import denoise_image
from temsim.denoise.vst import denoise_poisson
from temsim.image import Image

__all__ = [
    "KNOWN_NOISE",
    "SURE_NOISE",
    "denoise_known",
    "mc_divergence",
    "noise_variance",
    "sure",
    "sure_let",
]

KNOWN_NOISE = ("gaussian", "poisson", "salt_and_pepper", "speckle")
SURE_NOISE = ("gaussian", "poisson", "speckle")  # the rest: impulse switching
_LEVEL = {
    "gaussian": "sigma",
    "poisson": "dose [e/px]",
    "salt_and_pepper": "amount",
    "speckle": "variance",
}


def _check_noise(noise: Any, level: Any, allowed: tuple[str, ...] = KNOWN_NOISE):
    if noise not in allowed:
        raise ValueError(f"noise must be one of {allowed}, got {noise!r}")
    name = _LEVEL[noise]
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise TypeError(f"level ({name}) must be a number, got {level!r}")
    level = float(level)
    ok = {"poisson": level > 0, "salt_and_pepper": 0 <= level <= 1}.get(
        noise, level >= 0
    )
    if not (math.isfinite(level) and ok):
        rule = {"poisson": "> 0", "salt_and_pepper": "in [0, 1]"}.get(noise, ">= 0")
        raise ValueError(f"level ({name}) must be finite and {rule}, got {level!r}")
    return level


def _check_probes(n_probes: Any) -> None:
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be an int >= 1, got {n_probes!r}")


def noise_variance(
    y: Float[Array, "*batch ny nx"],
    noise: str,
    level: float,
    pilot: Float[Array, "*batch ny nx"] | None = None,
) -> Float[Array, "*batch ny nx"]:
    """Per-pixel noise variance v_i of the noisy image y.

    gaussian (level = sigma): sigma^2.  poisson (level = dose D [e/px per unit
    intensity], y = counts / D): y_i / D, unbiased for Var y_i = x_i / D, and with it
    the divergence term is the first-order Poisson unbiased risk estimate (PURE;
    Luisier, Vonesch, Blu & Unser, Signal Process. 90, 415 (2010)).  speckle (level =
    variance v, y = x (1 + n), Var y_i = v x_i^2): v p_i^2 with p a pilot estimate of x
    (the CNN output in `denoise_known`); without one, the unbiased v y_i^2 / (1 + v).
    The pilot matters: y_i^2 correlates with the local derivative the weights
    multiply, and on validation images at v = 0.12 the y-based weights lost 2.6 dB.
    """
    level = _check_noise(noise, level, SURE_NOISE)
    y = jnp.asarray(y, jnp.float32)
    if noise == "gaussian":
        return jnp.full_like(y, level**2)
    if noise == "poisson":
        return jnp.maximum(y, 0.0) / level
    if pilot is not None:
        return level * jnp.asarray(pilot, jnp.float32) ** 2
    return level * y**2 / (1.0 + level)


def mc_divergence(
    fn: Callable[[np.ndarray], np.ndarray],
    y: Float[Array, "batch ny nx"],
    variance: Float[Array, "batch ny nx"],
    key: jax.Array,
    *,
    n_probes: int = 2,
    eps: float | None = None,
    outputs: Sequence[Callable[[np.ndarray], np.ndarray]] = (lambda a: a,),
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Monte-Carlo weighted divergence sum_i v_i d(g o fn)_i/dy_i, shape (K, batch).

    fn maps (batch, ny, nx) -> (batch, ny, nx); each g in `outputs` post-processes
    fn's output (linear g, e.g. a filter), so one probe run serves all K of them.
    Probes b are +-1 (Rademacher, the lowest-variance choice [Hutchinson 1990]);
    eps defaults to 1e-2 times the rms noise std of each image. base: fn(y) if
    already computed.
    """
    _check_probes(n_probes)
    y = np.asarray(y, np.float32)
    v = np.asarray(variance, np.float32)
    if eps is None:
        e = 1e-2 * np.sqrt(np.maximum(v.mean(axis=(-2, -1)), 1e-20))
    elif isinstance(eps, int | float) and math.isfinite(eps) and eps > 0:
        e = np.full(y.shape[0], float(eps))
    else:
        raise ValueError(f"eps must be a finite number > 0 or None, got {eps!r}")
    e = e[:, None, None].astype(np.float32)
    base = np.asarray(fn(y) if base is None else base, np.float32)
    g0 = [np.asarray(g(base), np.float64) for g in outputs]
    div = np.zeros((len(outputs), y.shape[0]))
    for p in range(n_probes):
        b = np.asarray(
            jax.random.rademacher(jax.random.fold_in(key, p), y.shape, jnp.float32)
        )
        moved = np.asarray(fn(y + e * b), np.float32)
        for k, g in enumerate(outputs):
            d = (np.asarray(g(moved), np.float64) - g0[k]) / e
            div[k] += np.sum(v * b * d, axis=(-2, -1)) / n_probes
    return div


def sure(
    y: Float[Array, "*batch ny nx"],
    out: Float[Array, "*batch ny nx"],
    variance: Float[Array, "*batch ny nx"],
    divergence: Float[Array, "*batch"],
) -> np.ndarray:
    """SURE estimate of the per-image mean squared error of `out`, shape (*batch,).

    (||y - out||^2 - sum v + 2 div) / N with div = sum_i v_i dout_i/dy_i.
    """
    y, out, v = (np.asarray(a, np.float64) for a in (y, out, variance))
    n = y.shape[-1] * y.shape[-2]
    r = np.sum((y - out) ** 2, axis=(-2, -1)) - np.sum(v, axis=(-2, -1))
    return (r + 2.0 * np.asarray(divergence, np.float64)) / n


def sure_let(
    y: Float[Array, "batch ny nx"],
    bases: Float[Array, "K batch ny nx"],
    divergences: Float[Array, "K batch"],
) -> tuple[np.ndarray, np.ndarray]:
    """SURE-optimal combination sum_k a_k phi_k per image: (estimate, a (batch, K)).

    divergences[k] = sum_i v_i dphi_k,i/dy_i (0 for a constant basis). A ridge of
    1e-9 trace(M)/K keeps nearly collinear bases (phi and a slight smoothing of it)
    solvable.
    """
    y = np.asarray(y, np.float64)
    phi = np.asarray(bases, np.float64)
    d = np.asarray(divergences, np.float64)
    k = phi.shape[0]
    if phi.shape[1:] != y.shape or d.shape != (k, y.shape[0]):
        raise ValueError(
            f"bases must be (K, *y.shape) and divergences (K, batch); got y "
            f"{y.shape}, bases {phi.shape}, divergences {d.shape}"
        )
    m = np.einsum("kbij,lbij->bkl", phi, phi)
    c = np.einsum("bij,kbij->bk", y, phi) - d.T
    ridge = 1e-9 * np.trace(m, axis1=1, axis2=2)[:, None, None] / k
    a = np.linalg.solve(m + ridge * np.eye(k), c[..., None])[..., 0]
    return np.einsum("bk,kbij->bij", a, phi), a


def denoise_known(
    model: nnx.Module,
    image: Image | Float[Array, "*batch ny nx"] | Any,
    noise: str,
    level: float,
    *,
    widths: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    n_probes: int = 2,
    key: jax.Array | None = None,
    return_coefficients: bool = False,
    split: float | None = 0.65,
    n_splits: int = 2,
    **kwargs,
):
    """Denoise `image` with known noise: the CNN refined by SURE-LET.

    Poisson weights come from binomial thinning (module docstring) when y x dose
    are integer counts, else from the first-order Poisson estimate (PURE).

    For salt-and-pepper noise SURE does not apply; the known noise type says instead
    that pixels not at the image's min or max are uncorrupted, so only those at
    the extremes take the CNN's value (a switching filter, as the classical
    switching median filters do; level = amount is only checked).

    Args:
      model: a denoiser (e.g. `load_pretrained("blind")`).
      image: noisy intensity (..., ny, nx).
      noise: "gaussian" (level = sigma), "poisson" (level = dose, e/px per unit
        intensity; y = counts / dose), "speckle" (level = variance of n in
        y = x (1 + n)) or "salt_and_pepper" (level = amount); as in `temsim.noise`.
      widths: std [px] of the Gaussian smoothings of the CNN output in the basis.
      n_probes: Monte-Carlo probes for each divergence (each costs one CNN run).
      key: PRNG key of the probes (default key(0): deterministic).
      return_coefficients: also return a (*batch, K), the basis weights, in the
        order constant, CNN, smoothed CNN per width (, Anscombe CNN for poisson);
        K = 0 for salt_and_pepper.
      split: poisson only: the fraction p of the counts kept in the thinned image
        (0.65 measured best of 0.5-0.95 on validation images); None: first-order
        PURE instead of thinning.
      n_splits: poisson only: independent thinnings averaged (2 CNN runs each).
      **kwargs: passed to `denoise_image` (tile, overlap, self_ensemble, ...).
    Returns: the estimate, float32, same type and shape as `image` (and a).
    Cost: 1 + n_probes CNN runs; poisson 2 (1 + n_splits) with thinning; one for
    salt_and_pepper.
    """
    level = _check_noise(noise, level)
    _check_probes(n_probes)
    if split is not None and not (isinstance(split, float) and 0 < split < 1):
        raise ValueError(f"split must be a float in (0, 1) or None, got {split!r}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be an int >= 1, got {n_splits!r}")
    widths = tuple(float(w) for w in widths)
    if any(not (math.isfinite(w) and w > 0) for w in widths):
        raise ValueError(f"widths must be finite and > 0 [px], got {widths!r}")
    x = as_array(image, "image")
    check_finite(x, "image")
    lead = x.shape[:-2]
    y = np.asarray(x, np.float32).reshape((-1, *x.shape[-2:]))
    if noise == "salt_and_pepper":
        est = _switch(y, np.asarray(denoise_image(model, y, **kwargs), np.float32))
        a = np.zeros((y.shape[0], 0))
        return _wrap(image, est.reshape(x.shape), a, lead, return_coefficients)
    key = jax.random.key(0) if key is None else key
    counts = _integer_counts(y, level) if noise == "poisson" else None
    if counts is not None and split is not None:
        est, a = _thinned_let(
            model, y, counts, level, key, split, n_splits, widths, kwargs
        )
        return _wrap(image, est.reshape(x.shape), a, lead, return_coefficients)
    outputs = [lambda a: a] + [_smooth(w) for w in widths]
    paths = [lambda a: np.asarray(denoise_image(model, a, **kwargs))]
    if noise == "poisson":
        paths.append(
            lambda a: np.asarray(
                denoise_poisson(model, np.maximum(a, 0.0), level, **kwargs)
            )
        )
    first = np.asarray(paths[0](y), np.float32)
    v = np.asarray(noise_variance(y, noise, level, pilot=first))
    bases = [np.ones_like(y)]
    divs = [np.zeros(y.shape[0])]
    for j, fn in enumerate(paths):
        outs = outputs if j == 0 else outputs[:1]
        f = first if j == 0 else np.asarray(fn(y), np.float32)
        bases += [np.asarray(g(f), np.float32) for g in outs]
        divs += list(
            mc_divergence(fn, y, v, key, n_probes=n_probes, outputs=outs, base=f)
        )
    est, a = sure_let(y, np.stack(bases), np.stack(divs))
    return _wrap(image, est.reshape(x.shape), a, lead, return_coefficients)


def _smooth(w: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: ndimage.gaussian_filter(a, (0, w, w), mode="reflect")


def _integer_counts(y: np.ndarray, dose: float) -> np.ndarray | None:
    """y x dose as integer counts, or None if it is not (gain-scaled data)."""
    c = np.asarray(y, np.float64) * dose
    n = np.rint(c)
    if np.any(n < 0) or np.any(np.abs(c - n) > 1e-2 + 1e-5 * np.abs(c)):
        return None
    return n


def _poisson_bases(model, y, dose, widths, kwargs) -> np.ndarray:
    """(K, batch, ny, nx): 1, CNN, its smoothings, Anscombe-path CNN at `dose`."""
    f = np.asarray(denoise_image(model, y, **kwargs), np.float32)
    g = np.asarray(denoise_poisson(model, np.maximum(y, 0.0), dose, **kwargs))
    smooth = [_smooth(w)(f) for w in widths]
    return np.stack([np.ones_like(y), f, *smooth, g.astype(np.float32)])


def _thinned_let(model, y, counts, dose, key, p, n_splits, widths, kwargs):
    """LET weights fitted on binomially thinned copies; (estimate, a (batch, K))."""
    rows, targets = [], []
    for s in range(n_splits):
        n1 = np.asarray(
            jax.random.binomial(jax.random.fold_in(key, s), counts, p), np.float64
        )
        y1 = (n1 / (p * dose)).astype(np.float32)
        rows.append(_poisson_bases(model, y1, p * dose, widths, kwargs))
        targets.append((counts - n1) / ((1 - p) * dose))
    phi = np.concatenate(rows, axis=-2).astype(np.float64)  # splits stacked in y
    t = np.concatenate(targets, axis=-2)
    full = _poisson_bases(model, y, dose, widths, kwargs)
    k, b = phi.shape[:2]
    a = np.stack(
        [
            np.linalg.lstsq(phi[:, i].reshape(k, -1).T, t[i].ravel(), rcond=None)[0]
            for i in range(b)
        ]
    )
    return np.einsum("bk,kbij->bij", a, full.astype(np.float64)), a


def _switch(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Impulse switching: f where y is at its image's min or max, y elsewhere."""
    lo = y.min(axis=(-2, -1), keepdims=True)
    hi = y.max(axis=(-2, -1), keepdims=True)
    return np.where((y == lo) | (y == hi), f, y)


def _wrap(image, est, a, lead, return_coefficients):
    est = jnp.asarray(est, jnp.float32)
    out = image.replace(array=est) if isinstance(image, Image) else est
    if return_coefficients:
        return out, a.reshape((*lead, a.shape[-1]))
    return out
