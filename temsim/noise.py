"""Noise models for TEM images: the four of the source study and a physical camera.

Every function is pure and takes an explicit PRNG key first. The image may be a
`temsim.Image` (returned as an `Image` whose metadata records the noise type and level)
or a numpy/JAX array of shape (..., ny, nx) (returned as a JAX array of the same shape
and floating dtype; integer input becomes the default float). A clean image is an
intensity normalised to ~1 per unit incident beam.

Validation: bad parameters (negative sigma or dose, an amount outside [0, 1], ...) and
NaN/Inf in the image raise `ValueError` whenever they are concrete, i.e. in eager code
and for Python numbers closed over by `jit`. Under `jit`/`vmap` with traced values no
Python error is possible: an invalid traced parameter then turns the whole output into
NaN (so it cannot pass silently), and NaN/Inf in a traced image propagates.

References: Thust, Phys. Rev. Lett. 102, 220801 (2009) (parametric MTF); McMullan et
al., Ultramicroscopy 109, 1126 (2009) (DQE, MTF of electron detectors).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates
from jaxtyping import Array, Float, Int, PRNGKeyArray

from temsim.image import Image

ImageLike = Image | Float[Array, "*batch ny nx"] | Float[np.ndarray, "*batch ny nx"]

NOISE_TYPES = ("gaussian", "poisson", "salt_and_pepper", "speckle", "detector")
"""Names understood by `mixed`; index = the `kind` it returns."""


# --------------------------------------------------------------------------- helpers


def _is_traced(value: Any) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(value))


def _unpack(image: ImageLike) -> tuple[Array, tuple[float, float] | None]:
    """(array, sampling or None) from an Image or array; validated when concrete."""
    if isinstance(image, Image):
        x, sampling = image.array, image.sampling
    else:
        x, sampling = image, None
    if isinstance(x, jax.core.Tracer):
        pass
    elif not isinstance(x, jax.Array):
        x = np.asarray(x)
        if x.dtype == object:
            raise ValueError(f"image must be a numeric array, got dtype {x.dtype}")
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        raise ValueError(
            f"image must be a real intensity, got dtype {x.dtype}; pass abs(wave)**2"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jax.dtypes.canonicalize_dtype(np.float64))
    if x.ndim < 2:
        raise ValueError(f"image must have shape (..., ny, nx), got shape {x.shape}")
    if not _is_traced(x) and not bool(jnp.all(jnp.isfinite(x))):
        n_bad = int(jnp.sum(~jnp.isfinite(x)))
        raise ValueError(
            f"image contains {n_bad} NaN or Inf values; only finite intensities are "
            "allowed (check the simulation or mask the bad pixels first)"
        )
    return x, sampling


def _pack(image: ImageLike, y: Array, meta: dict[str, Any]) -> ImageLike:
    if isinstance(image, Image):
        return image.replace(array=y, metadata=meta)
    return y


def _concrete_float(value: Any) -> float | None:
    """A float for metadata when `value` is concrete, else None."""
    if _is_traced(value):
        return None
    return float(np.asarray(value))


def _check_scalar(
    name: str, value: Any, *, low: float, high: float = math.inf, open_low=False
) -> None:
    """ValueError unless concrete `value` is a finite real scalar in [low, high]."""
    if _is_traced(value):
        return
    interval = (
        f"{'(' if open_low else '['}{low}, {high}{']' if high < math.inf else ')'}"
    )
    v = np.asarray(value)
    if v.ndim != 0 or not np.isrealobj(v) or v.dtype == bool:
        raise ValueError(
            f"{name} must be a real scalar in {interval}, got {value!r}; batch over "
            "levels with jax.vmap"
        )
    v = float(v)
    bad = not math.isfinite(v) or v < low or v > high or (open_low and v == low)
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")


def _guard(y: Array, ok: Any) -> Array:
    """y where `ok` (a traced validity flag) holds, all-NaN otherwise."""
    return jnp.where(ok, y, jnp.asarray(jnp.nan, y.dtype))


def _pixel_area(sampling: tuple[float, float] | None) -> float:
    return 1.0 if sampling is None else sampling[0] * sampling[1]


def _broadcast_to_batch(a: Array, shape: tuple[int, ...]) -> Array:
    """(ny, nx) -> shape (..., ny, nx), explicitly (rank promotion is strict)."""
    return jnp.broadcast_to(a.reshape((1,) * (len(shape) - a.ndim) + a.shape), shape)


# ------------------------------------------------------------------- raw kernels
# Kernels act on a float array x (..., ny, nx) with traced scalar levels of x.dtype and
# do no validation; the public functions validate, then call them.


@jax.jit
def _gaussian(key, x, sigma):
    return x + sigma * jax.random.normal(key, x.shape, x.dtype)


@jax.jit
def _shot(key, x, counts_per_unit):
    """Poisson counts N ~ Poisson(x c) (x >= 0), as x.dtype [electrons]."""
    lam = jnp.maximum(x, 0) * counts_per_unit
    return jax.random.poisson(key, lam, x.shape).astype(x.dtype)


@jax.jit
def _poisson(key, x, counts_per_unit):
    return _shot(key, x, counts_per_unit) / counts_per_unit


@jax.jit
def _salt_and_pepper(key, x, amount, salt_ratio, low=None, high=None):
    k_hit, k_salt = jax.random.split(key)
    if low is None:
        low = jnp.min(x, axis=(-2, -1), keepdims=True)
    if high is None:
        high = jnp.max(x, axis=(-2, -1), keepdims=True)
    hit = jax.random.uniform(k_hit, x.shape, x.dtype) < amount
    salt = jax.random.uniform(k_salt, x.shape, x.dtype) < salt_ratio
    return jnp.where(hit, jnp.where(salt, high, low), x)


@jax.jit
def _speckle(key, x, variance):
    return x * (1 + jnp.sqrt(variance) * jax.random.normal(key, x.shape, x.dtype))


# ------------------------------------------------------------- the four models


def gaussian(key: PRNGKeyArray, image: ImageLike, sigma: float) -> ImageLike:
    """Additive white Gaussian noise: y = x + sigma n, n ~ N(0, 1).

    sigma [image intensity units] >= 0.
    """
    x, _ = _unpack(image)
    _check_scalar("sigma", sigma, low=0.0)
    s = jnp.asarray(sigma, x.dtype)
    y = _guard(_gaussian(key, x, s), s >= 0)
    return _pack(image, y, {"noise": "gaussian", "noise_level": _concrete_float(sigma)})


def poisson(
    key: PRNGKeyArray, image: ImageLike, dose: float, *, normalize: bool = True
) -> ImageLike:
    """Shot noise: N ~ Poisson(x D A), y = N / (D A) (or N with normalize=False).

    dose D [e/Å^2] > 0 with A the pixel area [Å^2] from the Image's sampling; for a
    bare array A = 1, i.e. `dose` is in electrons per pixel (per unit intensity).
    Var(N) = <N> = x D A. The image must be a non-negative intensity.
    """
    x, sampling = _unpack(image)
    _check_scalar("dose", dose, low=0.0, open_low=True)
    if not _is_traced(x) and bool(jnp.any(x < 0)):
        raise ValueError(
            f"image must be a non-negative intensity for Poisson noise, got minimum "
            f"{float(jnp.min(x))}; apply poisson to the clean image"
        )
    c = jnp.asarray(dose, x.dtype) * _pixel_area(sampling)
    counts = _shot(key, x, c)
    y = counts / c if normalize else counts
    y = _guard(y, (c > 0) & jnp.isfinite(c))
    y = jnp.where(x < 0, jnp.asarray(jnp.nan, x.dtype), y)
    meta = {"noise": "poisson", "noise_level": _concrete_float(dose)}
    return _pack(image, y, meta)


def salt_and_pepper(
    key: PRNGKeyArray,
    image: ImageLike,
    amount: float,
    salt_ratio: float = 0.5,
    *,
    values: tuple[float, float] | None = None,
) -> ImageLike:
    """Impulse noise: a fraction `amount` of pixels set to high (salt) or low (pepper).

    Each pixel is hit with probability amount in [0, 1]; a hit is salt with probability
    salt_ratio in [0, 1]. values = (low, high); default the per-image min and max.
    """
    x, _ = _unpack(image)
    _check_scalar("amount", amount, low=0.0, high=1.0)
    _check_scalar("salt_ratio", salt_ratio, low=0.0, high=1.0)
    a = jnp.asarray(amount, x.dtype)
    r = jnp.asarray(salt_ratio, x.dtype)
    low = high = None
    if values is not None:
        if len(values) != 2:
            raise ValueError(f"values must be (low, high), got {values!r}")
        low, high = (jnp.asarray(v, x.dtype) for v in values)
    y = _salt_and_pepper(key, x, a, r, low, high)
    y = _guard(y, (a >= 0) & (a <= 1) & (r >= 0) & (r <= 1))
    meta = {
        "noise": "salt_and_pepper",
        "noise_level": _concrete_float(amount),
        "noise_salt_ratio": _concrete_float(salt_ratio),
    }
    return _pack(image, y, meta)


def speckle(key: PRNGKeyArray, image: ImageLike, variance: float) -> ImageLike:
    """Multiplicative noise: y = x (1 + n), n ~ N(0, variance), variance >= 0."""
    x, _ = _unpack(image)
    _check_scalar("variance", variance, low=0.0)
    v = jnp.asarray(variance, x.dtype)
    y = _guard(_speckle(key, x, jnp.maximum(v, 0)), v >= 0)
    meta = {"noise": "speckle", "noise_level": _concrete_float(variance)}
    return _pack(image, y, meta)


# ------------------------------------------------------------------- detector


class MTF(NamedTuple):
    """Parametric MTF(nu) = (a - b) / (1 + (nu / (2 c))^d) + b [Thust 2009, eq. 2].

    nu = spatial frequency / Nyquist frequency (radial; 1 at the edge of the FFT grid
    along an axis). Defaults are a typical scintillator-coupled camera.
    """

    a: float = 1.0
    b: float = 0.0
    c: float = 0.4
    d: float = 2.0

    def __call__(self, nu: Float[Array, "*s"]) -> Float[Array, "*s"]:
        """MTF at nu [Nyquist units]."""
        nu = jnp.asarray(nu)
        a, b, c, d = (jnp.asarray(p, nu.dtype) for p in self)
        return (a - b) / (1 + (nu / (2 * c)) ** d) + b


def _nyquist_radius(shape: tuple[int, int], dtype) -> Array:
    """|nu| on the FFT grid (ny, nx) [Nyquist units] (nu = 2 f, f in cycles/pixel)."""
    fy = jnp.fft.fftfreq(shape[0]).astype(dtype)
    fx = jnp.fft.fftfreq(shape[1]).astype(dtype)
    return 2 * jnp.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


@jax.jit
def _apply_mtf_grid(x, grid):
    """IFFT[FFT[x] grid] over the last two axes; grid (ny, nx) on the FFT grid."""
    X = jnp.fft.fft2(x)
    return jnp.fft.ifft2(X * _broadcast_to_batch(grid, X.shape).astype(X.dtype)).real


@jax.jit
def _apply_mtf(x, params: MTF):
    return _apply_mtf_grid(x, params(_nyquist_radius(x.shape[-2:], x.dtype)))


def apply_mtf(
    image: ImageLike, mtf: MTF | Sequence[float] | Float[Array, "ny nx"] = MTF()
) -> ImageLike:
    """Detector blur: y = IFFT[FFT[x] MTF] (periodic boundaries).

    mtf: either of the two detector models of temsim:
      - `MTF` or its (a, b, c, d): the parametric fit of Thust (2009), radial in nu
        (a cosine of frequency nu is scaled by MTF(nu));
      - an array (ny, nx) sampled on the image's FFT grid, e.g.
        `temsim.optics.detector_mtf` (pixel sinc x Gaussian charge spread).
    """
    x, _ = _unpack(image)
    if getattr(mtf, "ndim", 0) == 2 and not isinstance(mtf, MTF):
        grid = jnp.asarray(mtf)
        if grid.shape != x.shape[-2:]:
            raise ValueError(
                f"mtf array must be sampled on the image's FFT grid {x.shape[-2:]}, "
                f"got shape {grid.shape}"
            )
        y = _apply_mtf_grid(x, grid).astype(x.dtype)
        return _pack(image, y, {"mtf": f"array {grid.shape}"})
    params = _as_mtf(mtf)
    y = _apply_mtf(x, params).astype(x.dtype)
    return _pack(image, y, {"mtf": str(tuple(params))})


def _as_mtf(mtf) -> MTF:
    params = MTF(*mtf)
    for name, value in params._asdict().items():
        _check_scalar(f"mtf.{name}", value, low=-math.inf)
    if not _is_traced(params.c) and params.c <= 0:
        raise ValueError(f"mtf.c must be > 0 (a frequency in Nyquist units), got {mtf}")
    return params


@jax.jit
def _detector(
    key,
    x,
    counts_per_unit,
    *,
    gain,
    readout_noise,
    dqe,
    mtf,
    hot_pixels,
    dead_pixels,
    hot_value,
    normalize,
):
    k_shot, k_rest = jax.random.split(key)
    counts = _shot(k_shot, x, dqe * counts_per_unit)
    return _detector_readout(
        k_rest,
        counts,
        counts_per_unit,
        gain=gain,
        readout_noise=readout_noise,
        dqe=dqe,
        mtf=mtf,
        hot_pixels=hot_pixels,
        dead_pixels=dead_pixels,
        hot_value=hot_value,
        normalize=normalize,
    )


def _detector_readout(
    key,
    counts,
    counts_per_unit,
    *,
    gain,
    readout_noise,
    dqe,
    mtf,
    hot_pixels,
    dead_pixels,
    hot_value,
    normalize,
):
    """The camera after the shot noise: counts [e] -> ADU (or normalised)."""
    x = counts
    k_read, k_bad = jax.random.split(key)
    if mtf is not None:
        counts = _apply_mtf(counts, mtf).astype(x.dtype)
    adu = gain * counts + readout_noise * jax.random.normal(k_read, x.shape, x.dtype)
    # one bad-pixel map per detector, shared by all frames of the batch
    u = jax.random.uniform(k_bad, x.shape[-2:], x.dtype)
    dead = _broadcast_to_batch(u < dead_pixels, x.shape)
    hot = _broadcast_to_batch(
        (u >= dead_pixels) & (u < dead_pixels + hot_pixels), x.shape
    )
    if hot_value is None:
        hot_value = 10 * gain * dqe * counts_per_unit
    adu = jnp.where(hot, hot_value, jnp.where(dead, jnp.zeros_like(adu), adu))
    return jnp.where(normalize, adu / (gain * dqe * counts_per_unit), adu)


def detector(
    key: PRNGKeyArray,
    image: ImageLike,
    *,
    dose: float,
    gain: float = 1.0,
    readout_noise: float = 0.0,
    dqe: float = 1.0,
    mtf: MTF | Sequence[float] | None = None,
    hot_pixels: float = 0.0,
    dead_pixels: float = 0.0,
    hot_value: float | None = None,
    normalize: bool = True,
) -> ImageLike:
    """Electron camera: counts at DQE, MTF blur, gain, readout noise, bad pixels.

    N ~ Poisson(dqe x D A); adu = gain (MTF * N) + readout_noise n, n ~ N(0, 1);
    a fraction dead_pixels of pixels reads 0 and hot_pixels reads hot_value [ADU]
    (default 10 gain dqe D A); one bad-pixel map is shared by all frames of a batch.
    normalize=True returns adu / (gain dqe D A), with mean x and, without MTF,
    Var = x / (dqe D A) + (readout_noise / (gain dqe D A))^2.
    dose D [e/Å^2] (A = pixel area [Å^2]; for a bare array A = 1 and D is e/pixel),
    gain [ADU/e] > 0, readout_noise [ADU] >= 0, dqe (DQE at zero frequency) in (0, 1].
    The MTF blurs the shot noise as in an integrating (scintillator) camera, so the
    noise power spectrum is ~ MTF^2 [McMullan et al. 2009].
    """
    x, sampling = _unpack(image)
    _check_scalar("dose", dose, low=0.0, open_low=True)
    _check_scalar("gain", gain, low=0.0, open_low=True)
    _check_scalar("readout_noise", readout_noise, low=0.0)
    _check_scalar("dqe", dqe, low=0.0, high=1.0, open_low=True)
    _check_scalar("hot_pixels", hot_pixels, low=0.0, high=1.0)
    _check_scalar("dead_pixels", dead_pixels, low=0.0, high=1.0)
    if not _is_traced((hot_pixels, dead_pixels)) and hot_pixels + dead_pixels > 1:
        raise ValueError(
            f"hot_pixels + dead_pixels must be <= 1, got {hot_pixels} + {dead_pixels}"
        )
    if hot_value is not None:
        _check_scalar("hot_value", hot_value, low=-math.inf)
        hot_value = jnp.asarray(hot_value, x.dtype)
    if not _is_traced(x) and bool(jnp.any(x < 0)):
        raise ValueError(
            f"image must be a non-negative intensity for detector, got minimum "
            f"{float(jnp.min(x))}"
        )
    params = None if mtf is None else _as_mtf(mtf)
    p = {
        name: jnp.asarray(value, x.dtype)
        for name, value in dict(
            gain=gain,
            readout_noise=readout_noise,
            dqe=dqe,
            hot_pixels=hot_pixels,
            dead_pixels=dead_pixels,
        ).items()
    }
    c = jnp.asarray(dose, x.dtype) * _pixel_area(sampling)
    y = _detector(key, x, c, mtf=params, hot_value=hot_value, normalize=normalize, **p)
    ok = (c > 0) & (p["gain"] > 0) & (p["readout_noise"] >= 0)
    ok = ok & (p["dqe"] > 0) & (p["dqe"] <= 1)
    y = _guard(y, ok)
    meta = {
        "noise": "detector",
        "noise_level": _concrete_float(dose),
        "detector_gain": _concrete_float(gain),
        "detector_readout_noise": _concrete_float(readout_noise),
        "detector_dqe": _concrete_float(dqe),
        "detector_mtf": None if params is None else str(tuple(params)),
        "detector_hot_pixels": _concrete_float(hot_pixels),
        "detector_dead_pixels": _concrete_float(dead_pixels),
    }
    return _pack(image, y, meta)


# -------------------------------------------------------------- scan distortion


def pink_noise(
    key: PRNGKeyArray, n: int, exponent: float = 1.0, dtype=None
) -> Float[Array, " n"]:
    """A 1/f^exponent noise series of length n, zero mean and unit rms.

    Power spectrum S(f) ~ f^-exponent for f > 0, S(0) = 0 (white noise shaped in
    Fourier space).
    """
    if int(n) < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    dtype = jax.dtypes.canonicalize_dtype(np.float64) if dtype is None else dtype
    white = jax.random.normal(key, (n,), dtype)
    f = jnp.fft.rfftfreq(n).astype(dtype)
    safe_f = jnp.where(f > 0, f, jnp.ones_like(f))
    amplitude = jnp.where(f > 0, safe_f ** (-jnp.asarray(exponent, dtype) / 2), 0)
    spectrum = jnp.fft.rfft(white)
    series = jnp.fft.irfft(spectrum * amplitude.astype(spectrum.dtype), n)
    return series / jnp.sqrt(jnp.mean(series**2))


@jax.jit
def _scan_frames(keys, frames, jy, jx, vy, vx, exponent):
    """scan_distortion of frames (b, ny, nx), one key each; traced levels."""
    ny, nx = frames.shape[-2:]
    n = ny * nx
    dt = frames.dtype
    t = jnp.arange(n, dtype=dt) / n
    rows = jnp.repeat(jnp.arange(ny, dtype=dt), nx)
    cols = jnp.tile(jnp.arange(nx, dtype=dt), ny)

    def one(k, frame):
        k_y, k_x = jax.random.split(k)
        y_pos = rows + vy * t + jy * pink_noise(k_y, n, exponent, dt)
        x_pos = cols + vx * t + jx * pink_noise(k_x, n, exponent, dt)
        out = map_coordinates(frame, [y_pos, x_pos], order=1, mode="wrap")
        return out.reshape(ny, nx)

    return jax.vmap(one)(keys, frames)


def scan_distortion(
    key: PRNGKeyArray,
    image: ImageLike,
    *,
    jitter: float | tuple[float, float] = 0.0,
    drift: tuple[float, float] = (0.0, 0.0),
    exponent: float = 1.0,
) -> ImageLike:
    """Scanned-image distortion: 1/f probe jitter and linear drift, raster order.

    The pixel (r, c) is acquired at time t = (r nx + c) / (ny nx) of the frame, at the
    specimen position (r + drift_y t + j_y(t), c + drift_x t + j_x(t)) [pixels],
    with j 1/f^exponent noise of rms jitter (a number or (jitter_y, jitter_x))
    [pixels]; the image is sampled there by periodic linear interpolation. Each frame
    of a batch gets its own jitter.
    """
    x, _ = _unpack(image)
    jy, jx = (jitter, jitter) if np.ndim(jitter) == 0 else tuple(jitter)
    _check_scalar("jitter_y", jy, low=0.0)
    _check_scalar("jitter_x", jx, low=0.0)
    if len(drift) != 2:
        raise ValueError(f"drift must be (drift_y, drift_x) [pixels], got {drift!r}")
    _check_scalar("drift_y", drift[0], low=-math.inf)
    _check_scalar("drift_x", drift[1], low=-math.inf)
    frames = x.reshape((-1, *x.shape[-2:]))
    keys = jax.random.split(key, frames.shape[0])
    jy, jx, vy, vx = (jnp.asarray(v, x.dtype) for v in (jy, jx, *drift))
    y = _scan_frames(keys, frames, jy, jx, vy, vx, exponent).reshape(x.shape)
    y = _guard(y, (jy >= 0) & (jx >= 0))
    meta = {
        "scan_jitter": _concrete_float(jitter if np.ndim(jitter) == 0 else max(jitter)),
        "scan_drift": str(tuple(_concrete_float(v) for v in drift)),
    }
    return _pack(image, y, meta)


# ---------------------------------------------------------------------- mixed


@dataclasses.dataclass(frozen=True)
class MixedSpec:
    """Noise types and level ranges for blind training; levels are log-uniform.

    types: names from NOISE_TYPES; weights: their probabilities (default equal).
    Ranges (low, high), low > 0: gaussian sigma [intensity], poisson dose [e/Å^2]
    (e/pixel for bare arrays), salt_and_pepper amount, speckle variance, detector dose
    [e/Å^2] for a camera with detector_dqe, detector_readout [e/pixel at gain 1] and
    the default `MTF`.
    """

    types: tuple[str, ...] = ("gaussian", "poisson", "salt_and_pepper", "speckle")
    weights: tuple[float, ...] | None = None
    gaussian: tuple[float, float] = (0.01, 0.3)
    poisson: tuple[float, float] = (5.0, 5000.0)
    salt_and_pepper: tuple[float, float] = (0.001, 0.05)
    speckle: tuple[float, float] = (1e-4, 0.1)
    detector: tuple[float, float] = (5.0, 5000.0)
    detector_dqe: float = 0.8
    detector_readout: float = 1.0

    def __post_init__(self):
        types = tuple(self.types)
        object.__setattr__(self, "types", types)
        if not types or any(t not in NOISE_TYPES for t in types):
            raise ValueError(
                f"types must be a non-empty subset of {NOISE_TYPES}, got {types!r}"
            )
        if self.weights is not None:
            w = tuple(float(v) for v in self.weights)
            object.__setattr__(self, "weights", w)
            if len(w) != len(types) or min(w) < 0 or sum(w) <= 0:
                raise ValueError(
                    f"weights must be {len(types)} non-negative numbers with a "
                    f"positive sum, got {self.weights!r}"
                )
        for name in NOISE_TYPES:
            r = tuple(float(v) for v in getattr(self, name))
            object.__setattr__(self, name, r)
            if len(r) != 2 or not 0 < r[0] <= r[1] < math.inf:
                raise ValueError(
                    f"{name} range must be (low, high) with 0 < low <= high, got {r!r}"
                )
        for name in ("salt_and_pepper",):
            if getattr(self, name)[1] > 1:
                raise ValueError(f"{name} range must lie in (0, 1], got {self.speckle}")
        _check_scalar(
            "detector_dqe", self.detector_dqe, low=0.0, high=1.0, open_low=True
        )
        _check_scalar("detector_readout", self.detector_readout, low=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists for tuples)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MixedSpec:
        """Inverse of `to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown noise spec keys {sorted(unknown)}; known {sorted(known)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class NoiseParams(NamedTuple):
    """What `mixed` drew: kind (index into NOISE_TYPES) and level, per image."""

    kind: Int[Array, "*batch"]
    level: Float[Array, "*batch"]


def _mixed_one(key, x, spec: MixedSpec, area: float):
    """One image (ny, nx): draw (kind, level) and apply; all traced."""
    k_type, k_level, k_noise = jax.random.split(key, 3)
    dt = x.dtype
    if spec.weights is None:
        probs = np.full(len(spec.types), 1 / len(spec.types))
    else:
        probs = np.asarray(spec.weights) / sum(spec.weights)
    choice = jax.random.choice(k_type, len(spec.types), p=jnp.asarray(probs, dt))
    ranges = np.log(np.array([getattr(spec, t) for t in spec.types]))
    lo, hi = (
        jnp.asarray(ranges[:, 0], dt)[choice],
        jnp.asarray(ranges[:, 1], dt)[choice],
    )
    level = jnp.exp(lo + (hi - lo) * jax.random.uniform(k_level, (), dt))
    k_shot, k_noise = jax.random.split(k_noise)
    one = jnp.ones((), dt)
    dqe = jnp.asarray(spec.detector_dqe, dt)
    names = np.asarray(spec.types)
    is_poisson = jnp.asarray(names == "poisson")[choice]
    is_detector = jnp.asarray(names == "detector")[choice]
    # one Poisson sampler serves both shot-noise models (cheaper to compile and run)
    c = level * area
    c_shot = jnp.where(is_poisson, c, jnp.where(is_detector, dqe * c, one))
    if {"poisson", "detector"} & set(spec.types):
        counts = _shot(k_shot, x, c_shot)
    else:
        counts = x

    branches = {
        "gaussian": lambda k, x, v: _gaussian(k, x, v),
        "poisson": lambda k, x, v: counts / c_shot,
        "salt_and_pepper": lambda k, x, v: _salt_and_pepper(
            k, x, v, jnp.asarray(0.5, dt)
        ),
        "speckle": lambda k, x, v: _speckle(k, x, v),
        "detector": lambda k, x, v: _detector_readout(
            k,
            counts,
            c,
            gain=one,
            readout_noise=jnp.asarray(spec.detector_readout, dt),
            dqe=dqe,
            mtf=MTF(),
            hot_pixels=jnp.zeros((), dt),
            dead_pixels=jnp.zeros((), dt),
            hot_value=None,
            normalize=True,
        ),
    }
    fns = [lambda k, x, v, f=branches[t]: f(k, x, v).astype(dt) for t in spec.types]
    y = jax.lax.switch(choice, fns, k_noise, x, level)
    kind = jnp.asarray([NOISE_TYPES.index(t) for t in spec.types], jnp.int32)[choice]
    return y, kind, level


@functools.partial(jax.jit, static_argnames=("spec",))
def _mixed_frames(keys, frames, spec: MixedSpec, area):
    return jax.vmap(lambda k, f: _mixed_one(k, f, spec, area))(keys, frames)


def mixed(
    key: PRNGKeyArray, image: ImageLike, spec: MixedSpec = MixedSpec()
) -> tuple[ImageLike, NoiseParams]:
    """Blind-training noise: per image, a type drawn from spec.types and a log-uniform
    level, then that model applied. -> (noisy, NoiseParams(kind, level)).

    For a batch (..., ny, nx) every image gets its own draw (keys split from `key`);
    kind and level have shape (...). A single concrete Image records noise/noise_level
    in its metadata; a batch records noise="mixed" (the draws are in NoiseParams).
    """
    x, sampling = _unpack(image)
    if not isinstance(spec, MixedSpec):
        raise ValueError(f"spec must be a MixedSpec, got {type(spec).__name__}")
    if (
        not _is_traced(x)
        and bool(jnp.any(x < 0))
        and {"poisson", "detector"} & set(spec.types)
    ):
        raise ValueError(
            f"image must be a non-negative intensity for poisson/detector noise, got "
            f"minimum {float(jnp.min(x))}"
        )
    batch, (ny, nx) = x.shape[:-2], x.shape[-2:]
    frames = x.reshape((-1, ny, nx))
    keys = jax.random.split(key, frames.shape[0])
    area = jnp.asarray(_pixel_area(sampling), x.dtype)
    y, kind, level = _mixed_frames(keys, frames, spec, area)
    y, kind, level = y.reshape(x.shape), kind.reshape(batch), level.reshape(batch)
    params = NoiseParams(kind, level)
    if batch or _is_traced(level):
        meta = {"noise": "mixed"}
    else:
        meta = {"noise": NOISE_TYPES[int(kind)], "noise_level": float(level)}
    return _pack(image, y, meta), params
