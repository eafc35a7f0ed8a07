"""Denoising metrics (metrics.py) and atom-column shape fidelity (shape.py): oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from temsim.denoise import metrics, shape
from temsim.image import Image


def _pair(key, shape=(2, 48, 48), sigma=0.1):
    k1, k2 = jax.random.split(key)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    clean = np.broadcast_to(np.sin(yy / 3.0) * np.cos(xx / 5.0), shape)
    clean = jnp.asarray(clean, jnp.float64)
    noisy = clean + sigma * jax.random.normal(k1, shape, jnp.float64)
    return noisy, clean


# ----------------------------------------------------------------- PSNR / SSIM


def test_psnr_of_known_mse():
    ref = jnp.zeros((16, 16), jnp.float64).at[0, 0].set(2.0)  # data range 2
    x = ref + 0.1  # MSE = 0.01
    expected = 10 * math.log10(4.0 / 0.01)
    np.testing.assert_allclose(metrics.psnr(x, ref), expected, rtol=1e-12)
    np.testing.assert_allclose(
        metrics.psnr(x, ref, data_range=1.0), 10 * math.log10(1 / 0.01), rtol=1e-12
    )


def test_ssim_and_ms_ssim_of_identical_images_is_one(key):
    noisy, _ = _pair(key, (3, 64, 64))
    np.testing.assert_allclose(metrics.ssim(noisy, noisy), 1.0, atol=1e-12)
    np.testing.assert_allclose(metrics.ms_ssim(noisy, noisy), 1.0, atol=1e-12)


def test_ssim_matches_skimage(key):
    skm = pytest.importorskip("skimage.metrics")
    noisy, clean = _pair(key, (2, 48, 40), sigma=0.3)
    ours = metrics.ssim(noisy, clean)
    for i in range(2):
        L = float(clean[i].max() - clean[i].min())
        theirs = skm.structural_similarity(
            np.asarray(noisy[i]),
            np.asarray(clean[i]),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=L,
        )
        # same windows and moments: agreement to rounding (contract: 1e-4)
        assert abs(float(ours[i]) - theirs) < 1e-10, (float(ours[i]), theirs)


def test_ssim_decreases_with_noise(key):
    _, clean = _pair(key)
    values = [
        float(metrics.ssim(_pair(key, sigma=s)[0], clean)[0]) for s in (0.05, 0.3)
    ]
    assert values[0] > values[1]


def test_ms_ssim_scales_auto_and_errors(key):
    noisy, clean = _pair(key, (48, 48))
    assert metrics.max_scales((48, 48)) == 3  # 48 -> 24 -> 12 >= 11
    auto = metrics.ms_ssim(noisy, clean)
    w = metrics.MS_SSIM_WEIGHTS[:3]
    explicit = metrics.ms_ssim(noisy, clean, weights=[v / sum(w) for v in w])
    np.testing.assert_allclose(auto, explicit, rtol=1e-12)
    with pytest.raises(ValueError, match="scales must be in"):
        metrics.ms_ssim(noisy, clean, scales=5)
    with pytest.raises(ValueError, match="smaller than win_size"):
        metrics.ms_ssim(noisy[:8, :8], clean[:8, :8])
    # one scale is SSIM
    np.testing.assert_allclose(
        metrics.ms_ssim(noisy, clean, scales=1), metrics.ssim(noisy, clean), rtol=1e-12
    )


def test_ms_ssim_differentiable_and_jittable(key):
    noisy, clean = _pair(key, (1, 32, 32))
    f = lambda x: metrics.ms_ssim(x, clean)[0]
    g = jax.grad(f)(noisy)
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(jax.jit(f)(noisy), f(noisy), rtol=1e-12)


def test_metrics_accept_image_and_validate(key):
    noisy, clean = _pair(key, (32, 32))
    a = metrics.psnr(Image(noisy, 0.1), Image(clean, 0.1))
    np.testing.assert_allclose(a, metrics.psnr(noisy, clean))
    with pytest.raises(ValueError, match="same shape"):
        metrics.ssim(noisy, clean[:-1])


# ----------------------------------------------------------------- seam score


def test_seam_score_detects_tile_borders(key):
    n, t = 64, 16
    err = 0.1 * jax.random.normal(key, (n, n), jnp.float64)
    clean = jnp.zeros((n, n), jnp.float64)
    seamless = metrics.seam_score(err, clean, tile=t)
    assert abs(float(seamless) - 1.0) < 0.1
    bump = jnp.asarray(metrics.border_mask((n, n), t, band=1), jnp.float64)
    seamy = metrics.seam_score(err + 0.3 * bump, clean, tile=t)
    assert float(seamy) > 2.0
    with pytest.raises(ValueError, match="band"):
        metrics.seam_score(err, clean, tile=2, band=2)


def test_border_mask_geometry():
    m = metrics.border_mask((10, 10), 4, band=1)  # borders at 4 and 8
    np.testing.assert_array_equal(np.nonzero(m[:, 2])[0], [3, 4, 7, 8])
    np.testing.assert_array_equal(np.nonzero(m[0])[0], [3, 4, 7, 8])
    m2 = metrics.border_mask((10, 10), 4, band=1, origin=1)  # borders at 1, 5, 9
    np.testing.assert_array_equal(np.nonzero(m2[:, 3])[0], [0, 1, 4, 5, 8, 9])


# ----------------------------------------------------------------- column shapes


def _gaussian(n, centre, sy, sx, theta=0.0, amplitude=1.0):
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = math.cos(theta), math.sin(theta)
    u = c * dx + s * dy  # major axis along theta from +col
    v = -s * dx + c * dy
    return amplitude * np.exp(-(u**2) / (2 * sx**2) - v**2 / (2 * sy**2))


def test_round_column_has_zero_ellipticity():
    img = _gaussian(41, (20.3, 19.6), 2.0, 2.0)
    res = shape.column_shapes(jnp.asarray(img), [[20, 20]], radius=12)
    assert float(res.ellipticity[0]) < 1e-6
    np.testing.assert_allclose(res.centroid[0], [20.3, 19.6], atol=1e-6)
    np.testing.assert_allclose(np.diag(res.moments[0]), [4.0, 4.0], rtol=1e-4)


@pytest.mark.parametrize("theta", [0.0, 0.6])
def test_elongated_column_matches_analytic_ellipticity(theta):
    sa, sb = 3.0, 1.5
    img = _gaussian(61, (30.0, 30.0), sb, sa, theta)
    res = shape.column_shapes(jnp.asarray(img), [[30, 30]], radius=18)
    expected = (sa**2 - sb**2) / (sa**2 + sb**2)  # 0.6
    np.testing.assert_allclose(res.ellipticity[0], expected, atol=1e-4)
    np.testing.assert_allclose(res.angle[0], theta, atol=1e-4)


def test_fidelity_on_lattice_finds_columns_and_errors(key):
    n, a = 64, 12
    img = sum(
        _gaussian(n, (i, j), 1.8, 1.8) for i in range(6, n, a) for j in range(6, n, a)
    )
    clean = jnp.asarray(img)
    res = shape.fidelity(clean, clean, radius=5)
    assert res.positions.shape[0] == 25  # the 5x5 inner columns, edges excluded
    assert float(res.mean_ellipticity_error) == 0.0
    assert float(res.mean_centroid_error) == 0.0
    # a horizontally smeared copy is elongated and its columns stay centred
    smeared = (clean + jnp.roll(clean, 1, axis=1) + jnp.roll(clean, -1, axis=1)) / 3
    res2 = shape.fidelity(smeared, clean, radius=5)
    assert float(jnp.min(res2.denoised.ellipticity)) > 0.1
    assert float(res2.mean_centroid_error) < 1e-3  # neighbours' tails
    # dark columns (HRTEM phase contrast) are found too
    res3 = shape.fidelity(1.0 - clean, 1.0 - clean, radius=5)
    assert res3.positions.shape[0] == 25
