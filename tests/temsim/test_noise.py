"""Noise models: statistics on large arrays within sampling error; keys; transforms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from temsim import noise
from temsim.image import Image

N = 512  # 262144 pixels: relative sampling error of a variance ~ sqrt(2/N^2) = 0.3%


SPEC = noise.MixedSpec(types=noise.NOISE_TYPES)


def _flat(value=1.0, shape=(N, N)):
    return jnp.full(shape, value, jnp.float64)


def _within(estimate, expected, stderr, k=5.0):
    assert abs(estimate - expected) < k * stderr, (estimate, expected, stderr)


# ----------------------------------------------------------------- statistics


def test_gaussian_sigma_and_mean(key):
    x = jnp.linspace(0.0, 2.0, N * N).reshape(N, N)
    sigma = 0.2
    d = np.asarray(noise.gaussian(key, x, sigma) - x)
    n = d.size
    _within(d.mean(), 0.0, sigma / math.sqrt(n))
    _within(d.std(), sigma, sigma / math.sqrt(2 * n))


@pytest.mark.parametrize("level", [0.5, 3.0])
def test_poisson_variance_equals_mean(key, level):
    dose = 7.3  # e/pixel for a bare array
    counts = np.asarray(noise.poisson(key, _flat(level), dose, normalize=False))
    lam = level * dose
    np.testing.assert_array_equal(counts, np.round(counts))  # integer counts
    n = counts.size
    _within(counts.mean(), lam, math.sqrt(lam / n))
    # Var of a sample variance of Poisson(lam): (lam + 2 lam^2) / n
    _within(counts.var(), lam, math.sqrt((lam + 2 * lam**2) / n))


def test_poisson_dose_uses_image_sampling(key):
    image = Image(_flat(1.0), sampling=(0.5, 0.4))
    dose = 50.0  # e/Å^2 -> 50 * 0.2 = 10 e/pixel
    out = noise.poisson(key, image, dose)
    assert isinstance(out, Image) and out.sampling == (0.5, 0.4)
    assert out.metadata["noise"] == "poisson" and out.metadata["noise_level"] == dose
    y = np.asarray(out.array)  # normalised: mean 1, variance 1 / (D A)
    n = y.size
    _within(y.mean(), 1.0, math.sqrt(0.1 / n))
    _within(y.var(), 0.1, math.sqrt((0.1 / 10 + 2 * 0.01) / n))


def test_salt_and_pepper_fraction_and_ratio(key):
    x = jax.random.uniform(jax.random.key(1), (N, N), jnp.float64, 0.2, 0.8)
    amount, ratio = 0.1, 0.3
    y = np.asarray(noise.salt_and_pepper(key, x, amount, ratio, values=(0.0, 1.0)))
    salt, pepper = y == 1.0, y == 0.0
    hit = salt | pepper
    n = y.size
    _within(hit.mean(), amount, math.sqrt(amount * (1 - amount) / n))
    n_hit = hit.sum()
    _within(salt.sum() / n_hit, ratio, math.sqrt(ratio * (1 - ratio) / n_hit))
    np.testing.assert_array_equal(y[~hit], np.asarray(x)[~hit])


def test_salt_and_pepper_default_values_are_image_extremes(key):
    x = jax.random.uniform(jax.random.key(1), (3, 64, 64), jnp.float64)
    y = noise.salt_and_pepper(key, x, 0.2)
    lo = jnp.min(x, axis=(-2, -1), keepdims=True)
    hi = jnp.max(x, axis=(-2, -1), keepdims=True)
    changed = y != x
    assert bool(jnp.all(jnp.where(changed, (y == lo) | (y == hi), True)))


def test_speckle_variance(key):
    x = jnp.linspace(0.5, 2.0, N * N).reshape(N, N)
    variance = 0.04
    r = np.asarray(noise.speckle(key, x, variance) / x - 1)
    n = r.size
    _within(r.mean(), 0.0, math.sqrt(variance / n))
    _within(r.var(), variance, variance * math.sqrt(2 / n))


# -------------------------------------------------------------------- detector


@pytest.mark.parametrize("k", [5, 40, 100])
def test_mtf_attenuates_cosine_by_mtf_at_its_frequency(k):
    n = 256
    c = jnp.arange(n, dtype=jnp.float64)
    x = jnp.broadcast_to(1 + 0.5 * jnp.cos(2 * jnp.pi * k * c / n), (8, n))
    mtf = noise.MTF(a=1.0, b=0.1, c=0.3, d=2.5)
    y = noise.apply_mtf(x, mtf)
    nu = 2 * k / n  # Nyquist units
    expected = 1 + 0.5 * float(mtf(jnp.asarray(nu))) * jnp.cos(2 * jnp.pi * k * c / n)
    np.testing.assert_allclose(y, jnp.broadcast_to(expected, (8, n)), atol=1e-12)
    # the closed form itself: MTF(2c) = (a + b) / 2
    assert float(mtf(jnp.asarray(0.6))) == pytest.approx(0.55, rel=1e-12)


def test_mtf_as_sampled_array_is_the_optics_model():
    # the second detector model (temsim.optics.detector_mtf: pixel sinc x Gaussian
    # spread) goes through the same apply_mtf: a cosine of k cycles along x is scaled
    # by sinc(k / n) exp(-2 pi^2 s^2 (k / n)^2)
    from temsim import optics

    n, k, spread = 64, 10, 0.7
    c = jnp.arange(n, dtype=jnp.float64)
    x = jnp.broadcast_to(1 + 0.5 * jnp.cos(2 * jnp.pi * k * c / n), (n, n))
    grid = optics.detector_mtf((n, n), spread=spread)
    y = noise.apply_mtf(x, grid)
    f = k / n
    gain = np.sinc(f) * np.exp(-2 * np.pi**2 * spread**2 * f**2)
    np.testing.assert_allclose(y, 1 + 0.5 * gain * (x - 1) / 0.5, atol=1e-12)
    np.testing.assert_allclose(optics.apply_mtf(x, grid), y, atol=0)
    with pytest.raises(ValueError, match=r"mtf array must be sampled on .*\(64, 64\)"):
        noise.apply_mtf(x, optics.detector_mtf((32, 32)))


def test_detector_noise_power_follows_mtf_squared(key):
    dose, dqe = 20.0, 0.5
    mtf = noise.MTF()
    n = N // 2
    y = noise.detector(key, _flat(1.0, (n, n)), dose=dose, dqe=dqe, mtf=mtf)
    nps = np.abs(np.fft.fft2(np.asarray(y) - 1.0)) ** 2 / y.size
    nu = np.asarray(noise._nyquist_radius((n, n), jnp.float64))
    for lo, hi in [(0.05, 0.15), (0.45, 0.55), (0.9, 1.0)]:
        band = (nu >= lo) & (nu < hi)
        expected = np.mean(np.asarray(mtf(jnp.asarray(nu[band]))) ** 2) / (dqe * dose)
        # each |FFT|^2 bin is exponential: relative error 1/sqrt(bins) (Hermitian x2)
        _within(nps[band].mean() / expected, 1.0, math.sqrt(2 / band.sum()))


def test_detector_variance_dqe_gain_readout(key):
    dose, dqe, gain, read = 20.0, 0.5, 3.0, 2.0
    y = np.asarray(
        noise.detector(
            key, _flat(1.0), dose=dose, dqe=dqe, gain=gain, readout_noise=read
        )
    )
    expected = 1 / (dqe * dose) + (read / (gain * dqe * dose)) ** 2
    n = y.size
    _within(y.mean(), 1.0, math.sqrt(expected / n))
    _within(y.var(), expected, expected * math.sqrt(2 / n) * 1.5)
    adu = np.asarray(
        noise.detector(key, _flat(1.0), dose=dose, dqe=dqe, gain=gain, normalize=False)
    )
    _within(adu.mean(), gain * dqe * dose, gain * math.sqrt(dqe * dose / n))


def test_detector_bad_pixels_shared_by_the_batch(key):
    x = _flat(1.0, (3, 128, 128))
    y = np.asarray(
        noise.detector(
            key, x, dose=100.0, hot_pixels=0.01, dead_pixels=0.02, hot_value=1e4
        )
    )
    dead, hot = y == 0.0, y == 1e4 / 100.0
    n = 128 * 128
    _within(dead[0].mean(), 0.02, math.sqrt(0.02 * 0.98 / n))
    _within(hot[0].mean(), 0.01, math.sqrt(0.01 * 0.99 / n))
    assert (dead == dead[0]).all() and (hot == hot[0]).all()  # one detector


def test_pink_noise_spectrum_slope(key):
    n = 2**16
    s = noise.pink_noise(key, n, exponent=1.0)
    assert float(jnp.sqrt(jnp.mean(s**2))) == pytest.approx(1.0, rel=1e-12)
    psd = np.abs(np.fft.rfft(np.asarray(s))) ** 2
    f = np.fft.rfftfreq(n)
    # average in log-spaced bins, fit log S = a - slope log f
    edges = np.logspace(-4, np.log10(0.5), 20)
    centers, power = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (f >= lo) & (f < hi)
        centers.append(np.log(f[m].mean()))
        power.append(np.log(psd[m].mean()))
    slope = np.polyfit(centers, power, 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)


def test_scan_drift_shears_by_acquisition_time(key):
    ny, nx = 32, 64
    ramp = jnp.broadcast_to(jnp.arange(nx, dtype=jnp.float64), (ny, nx))
    vx = 4.0  # pixels per frame
    y = noise.scan_distortion(key, ramp, drift=(0.0, vx))
    t = (jnp.arange(ny)[:, None] * nx + jnp.arange(nx)[None, :]) / (ny * nx)
    inner = slice(2, nx - 8)  # away from the periodic wrap of the ramp
    np.testing.assert_allclose(y[:, inner], (ramp + vx * t)[:, inner], atol=1e-12)
    still = noise.scan_distortion(key, ramp)
    np.testing.assert_allclose(still, ramp, atol=1e-12)


def test_scan_jitter_rms(key):
    ny, nx = 64, 64
    ramp = jnp.broadcast_to(jnp.arange(nx, dtype=jnp.float64), (ny, nx))
    y = noise.scan_distortion(key, ramp, jitter=(0.0, 0.3))
    inner = (slice(None), slice(4, nx - 4))
    shift = np.asarray(y - ramp)[inner]
    assert np.sqrt(np.mean(shift**2)) == pytest.approx(0.3, rel=0.1)
    assert not np.allclose(shift, 0)


# ---------------------------------------------------------------------- mixed


def test_mixed_draws_every_type_with_levels_in_range(key):
    spec = SPEC
    x = jax.random.uniform(jax.random.key(2), (300, 16, 16), jnp.float64, 0.5, 1.5)
    y, params = noise.mixed(key, x, spec)
    kinds = np.asarray(params.kind)
    counts = np.bincount(kinds, minlength=5)
    p = 1 / 5
    for c in counts:
        _within(c / 300, p, math.sqrt(p * (1 - p) / 300))
    level = np.asarray(params.level)
    for i, name in enumerate(noise.NOISE_TYPES):
        lo, hi = getattr(spec, name)
        assert ((level[kinds == i] >= lo) & (level[kinds == i] <= hi)).all()
    # the gaussian images really carry noise of the drawn sigma
    g = kinds == 0
    ratio = np.std(np.asarray(y - x)[g], axis=(-2, -1)) / level[g]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)
    # speckle: relative residual variance matches the drawn variance
    s = kinds == 3
    rel = np.var(np.asarray(y / x - 1)[s], axis=(-2, -1)) / level[s]
    assert np.median(rel) == pytest.approx(1.0, abs=0.1)


def test_mixed_single_image_records_metadata(key):
    image = Image(_image(), sampling=0.2)
    out, params = noise.mixed(key, image, SPEC)
    assert params.kind.shape == () and params.level.shape == ()
    assert out.metadata["noise"] == noise.NOISE_TYPES[int(params.kind)]
    assert out.metadata["noise_level"] == float(params.level)


def test_mixed_spec_round_trip_and_validation():
    spec = noise.MixedSpec(types=("gaussian", "poisson"), weights=(1, 3))
    assert noise.MixedSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="types must be a non-empty subset"):
        noise.MixedSpec(types=("blur",))
    with pytest.raises(ValueError, match=r"gaussian range .* got \(0.3, 0.1\)"):
        noise.MixedSpec(gaussian=(0.3, 0.1))
    with pytest.raises(ValueError, match="unknown noise spec keys"):
        noise.MixedSpec.from_dict({"sigma": 1})


# ------------------------------------------------------- keys, types, transforms

MODELS = {
    "gaussian": lambda k, x: noise.gaussian(k, x, 0.1),
    "poisson": lambda k, x: noise.poisson(k, x, 30.0),
    "salt_and_pepper": lambda k, x: noise.salt_and_pepper(k, x, 0.1),
    "speckle": lambda k, x: noise.speckle(k, x, 0.01),
    "detector": lambda k, x: noise.detector(
        k, x, dose=30.0, mtf=noise.MTF(), readout_noise=1.0, hot_pixels=0.01
    ),
    "scan": lambda k, x: noise.scan_distortion(k, x, jitter=0.5),
    "mixed": lambda k, x: noise.mixed(k, x, SPEC)[0],
}
CHEAP = ["gaussian", "salt_and_pepper", "speckle"]  # no Poisson sampler to compile


def _image(shape=(16, 16)):
    """Every test below uses (16, 16) float64 frames, so compiled kernels are shared."""
    return jax.random.uniform(jax.random.key(3), shape, jnp.float64, 0.5, 1.5)


@pytest.mark.parametrize("name", MODELS)
def test_same_key_same_noise_different_key_different(name):
    f, x = MODELS[name], _image()
    a = f(jax.random.key(7), x)
    np.testing.assert_array_equal(a, f(jax.random.key(7), x))
    assert not np.array_equal(a, f(jax.random.key(8), x))
    assert a.shape == x.shape and a.dtype == x.dtype
    im = f(jax.random.key(7), Image(x, sampling=0.3, metadata={"energy": 8e4}))
    assert isinstance(im, Image) and im.sampling == (0.3, 0.3)
    assert im.metadata["energy"] == 8e4


@pytest.mark.parametrize("name", MODELS)
def test_jit_vmap_equals_eager_loop(name):
    f, x = MODELS[name], _image((3, 16, 16))
    keys = jax.random.split(jax.random.key(5), 3)
    eager = jnp.stack([f(k, xi) for k, xi in zip(keys, x, strict=True)])
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(keys, x), eager, rtol=1e-12)


@pytest.mark.parametrize("name", CHEAP)
def test_numpy_float32_any_batch_shape(name):
    x32 = np.asarray(_image((2, 3, 8, 8)), np.float32)
    y = MODELS[name](jax.random.key(0), x32)
    assert isinstance(y, jax.Array) and y.dtype == jnp.float32 and y.shape == x32.shape
    assert bool(jnp.all(jnp.isfinite(y)))


def test_image_through_jit_keeps_metadata(key):
    image = Image(_image(), sampling=0.1)
    out = jax.jit(lambda k, im: noise.gaussian(k, im, 0.05))(key, image)
    assert out.metadata["noise"] == "gaussian" and out.metadata["noise_level"] == 0.05
    # a traced level cannot be recorded (metadata is static): it is None
    out = jax.jit(noise.gaussian)(key, image, 0.05)
    assert out.metadata["noise_level"] is None


def test_no_recompilation_and_traced_invalid_level_gives_nan(key):
    f = jax.jit(noise.poisson)
    x = _image()
    f(key, x, 10.0)
    f(jax.random.key(9), x + 1, 20.0)
    # under jit the ValueError is impossible; a bad level poisons the output instead
    assert bool(jnp.all(jnp.isnan(f(key, x, -1.0))))
    assert f._cache_size() == 1
    assert bool(jnp.all(jnp.isnan(jax.jit(noise.gaussian)(key, x, -1.0))))
    assert bool(jnp.all(jnp.isnan(jax.jit(noise.salt_and_pepper)(key, x, 1.5))))


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda k, x: noise.gaussian(k, x, -0.1), r"sigma must be .*\[0.0, .* -0.1"),
        (lambda k, x: noise.gaussian(k, x, np.nan), r"sigma .* got nan"),
        (lambda k, x: noise.poisson(k, x, -5.0), r"dose must be .*\(0.0, .*-5.0"),
        (lambda k, x: noise.poisson(k, x, 0.0), r"dose must be .*\(0.0"),
        (lambda k, x: noise.salt_and_pepper(k, x, 1.2), r"amount .*\[0.0, 1.0\].*1.2"),
        (lambda k, x: noise.salt_and_pepper(k, x, -0.1), r"amount .* -0.1"),
        (lambda k, x: noise.salt_and_pepper(k, x, 0.1, 2.0), r"salt_ratio .* 2.0"),
        (lambda k, x: noise.speckle(k, x, -1.0), r"variance .* -1.0"),
        (lambda k, x: noise.detector(k, x, dose=-1.0), r"dose .* -1.0"),
        (lambda k, x: noise.detector(k, x, dose=1.0, dqe=1.5), r"dqe .*1.5"),
        (lambda k, x: noise.detector(k, x, dose=1.0, gain=0.0), r"gain .*0.0"),
        (
            lambda k, x: noise.gaussian(k, x, jnp.ones(3)),
            r"sigma must be a real scalar",
        ),
        (lambda k, x: noise.gaussian(k, x[0, 0], 0.1), r"shape \(\.\.\., ny, nx\)"),
        (
            lambda k, x: noise.gaussian(k, x.astype(jnp.complex128), 0.1),
            r"real intensity",
        ),
        (lambda k, x: noise.poisson(k, x - 2, 1.0), r"non-negative intensity"),
    ],
)
def test_bad_parameters_raise_naming_argument_and_value(key, call, match):
    with pytest.raises(ValueError, match=match):
        call(key, _image())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["gaussian", "poisson", "speckle", "detector"])
def test_nan_or_inf_in_image_raises(key, name, bad):
    x = np.ones((16, 16))
    x[3, 4] = bad
    with pytest.raises(ValueError, match="image contains 1 NaN or Inf"):
        MODELS[name](key, x)
