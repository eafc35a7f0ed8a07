"""Tiled inference: partition of unity, tiled == whole, no seams, input types."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from temsim.denoise import metrics, models, tiling
from temsim.image import Image


class Pointwise(nnx.Module):
    """y = 2x + 1 per pixel: no spatial context."""

    size_multiple = 1

    def __call__(self, x):
        return 2.0 * x + 1.0


def _lattice(n, a=8.0, width=1.5):
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    img = np.zeros((n, n))
    for cy in np.arange(a / 2, n, a):
        for cx in np.arange(a / 2, n, a):
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    return img.astype(np.float32)


def _dncnn(seed=0):
    return models.DnCNN(depth=3, features=8, batch_norm=False, rngs=nnx.Rngs(seed))


@pytest.mark.parametrize("n,tile,overlap", [(64, 16, 8), (61, 20, 8), (50, 24, 4)])
def test_windows_sum_to_one(n, tile, overlap):
    starts, windows = tiling.tile_windows((n, n), tile, overlap)
    total = np.zeros((n, n))
    for (a, b), w in zip(starts, windows, strict=True):
        total[a : a + tile, b : b + tile] += w
    assert total.min() > 0  # every pixel covered
    if (n - tile) % (tile - overlap) == 0:  # regular grid: exactly one, unnormalised
        np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_window_ramp_is_squared_cosine():
    w = tiling.window_1d(16, 8, left=True, right=False)
    np.testing.assert_array_equal(w[:2], 0.0)
    np.testing.assert_array_equal(w[6:], 1.0)
    np.testing.assert_allclose(w[2:6] + w[2:6][::-1], 1.0, atol=1e-15)


def test_pointwise_model_tiled_equals_whole_exactly():
    x = np.random.default_rng(0).normal(size=(45, 38)).astype(np.float32)
    whole = tiling.denoise_image(Pointwise(), x)
    tiled = tiling.denoise_image(Pointwise(), x, tile=16, overlap=4)
    np.testing.assert_array_equal(np.asarray(whole), 2 * x + 1)
    np.testing.assert_array_equal(np.asarray(tiled), np.asarray(whole))


def test_cnn_tiled_matches_whole_when_receptive_field_fits():
    model = _dncnn()  # receptive radius 3 < overlap / 4
    x = _lattice(64) + np.random.default_rng(1).normal(0, 0.1, (64, 64)).astype(
        np.float32
    )
    whole = tiling.denoise_image(model, x, pad=8)
    for tile in (32, 40):  # the result must not depend on where the borders fall
        tiled = tiling.denoise_image(model, x, tile=tile, overlap=16, pad=8)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("gate", [0.0, 1e-3])
def test_impulse_mask_model_tiled_matches_whole(gate):
    """Each tile is marked with its whole image's extremes and gate, not its own."""
    model = models.DnCNN(
        depth=3,
        features=4,
        batch_norm=False,
        impulse_mask=True,
        impulse_gate=gate,
        rngs=nnx.Rngs(0),
    )
    rng = np.random.default_rng(3)
    x = _lattice(64) + rng.normal(0, 0.05, (64, 64)).astype(np.float32)
    hit = rng.random((64, 64)) < 0.02
    x = np.where(hit, np.where(rng.random((64, 64)) < 0.5, x.max(), x.min()), x)
    x[:32, :32] = np.clip(x[:32, :32], x.min() + 0.01, x.max() - 0.01)  # no impulses
    whole = tiling.denoise_image(model, x, pad=8)
    tiled = tiling.denoise_image(model, x, tile=32, overlap=16, pad=8)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # marking a tile by its own extremes would change the impulse-free corner
    own = np.asarray(model(jnp.asarray(x[None, :32, :32, None]), extremes=None))
    ext = models.image_extremes(jnp.asarray(x[None, ..., None]), gate)
    full = np.asarray(model(jnp.asarray(x[None, :32, :32, None]), extremes=ext))
    assert np.abs(own - full)[0, 8:24, 8:24].max() > 1e-3


def _box_dncnn():
    """A 2-layer DnCNN set by hand to a 3x3 box filter: y = x - (h - box(h)) - b,
    h = x + 10 (ReLU inactive). Zero padding at a tile edge drops the +10 offset of
    the missing pixels: a strong, known seam for naive tiling."""
    model = models.DnCNN(depth=2, features=1, batch_norm=False, rngs=nnx.Rngs(0))
    delta = np.zeros((3, 3, 1, 1), np.float32)
    delta[1, 1] = 1.0
    model.first.kernel[...] = jnp.asarray(delta)
    model.first.bias[...] = jnp.full((1,), 10.0, jnp.float32)
    model.last.kernel[...] = jnp.asarray(delta - 1.0 / 9.0)
    model.last.bias[...] = jnp.zeros((1,), jnp.float32)
    return model


def test_blending_removes_the_seams_of_naive_tiling():
    n, t = 192, 32
    rng = np.random.default_rng(2)
    clean = 1.0 - 0.3 * _lattice(n, a=7.3)  # dark columns, incommensurate with t
    noisy = clean + rng.normal(0, 0.2, (n, n)).astype(np.float32)
    model = _box_dncnn()
    whole = tiling.denoise_image(model, noisy)
    np.testing.assert_allclose(  # interior: a box filter
        whole[1:-1, 1:-1],
        sum(
            noisy[1 + i : n - 1 + i, 1 + j : n - 1 + j]
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
        )
        / 9,
        atol=1e-4,
    )
    naive = tiling.denoise_image(model, noisy, tile=t, overlap=0, pad=0)
    blended = tiling.denoise_image(model, noisy, tile=t + 16, overlap=16)
    s_naive = float(metrics.seam_score(naive, clean, tile=t))
    s_blend = float(metrics.seam_score(blended, clean, tile=t))
    s_own = float(metrics.seam_score(blended, clean, tile=t, origin=8))
    print(f"seam score naive {s_naive:.3f}, blended {s_blend:.4f} / {s_own:.4f}")
    assert s_naive > 2.0
    assert s_blend <= 1.02 and s_own <= 1.02


@pytest.mark.parametrize("tile", [None, (24, 32)])
def test_self_ensemble_is_d4_equivariant_and_the_mean_of_8(tile):
    # a random DnCNN is not equivariant; its D4 self-ensemble is, exactly (up to
    # float32 rounding), also on a non-square image with non-square tiles
    model = _dncnn(1)
    x = np.random.default_rng(0).normal(size=(2, 40, 56)).astype(np.float32)
    y = np.asarray(tiling.denoise_image(model, x, tile=tile, self_ensemble=True))
    swap = None if tile is None else tile[::-1]
    for k in range(4):
        t = tile if k % 2 == 0 else swap
        for flip in (False, True):
            v = np.rot90(x, k, axes=(-2, -1))
            v = np.ascontiguousarray(v[..., ::-1] if flip else v)
            w = np.rot90(y, k, axes=(-2, -1))
            w = w[..., ::-1] if flip else w
            yv = tiling.denoise_image(model, v, tile=t, self_ensemble=True)
            np.testing.assert_allclose(yv, w, atol=2e-6)
    plain = [
        np.rot90(
            np.asarray(
                tiling.denoise_image(model, np.rot90(x, k, axes=(1, 2)), tile=t)
            ),
            -k,
            axes=(1, 2),
        )
        for k, t in zip(range(4), (tile, swap, tile, swap), strict=True)
    ]
    single = np.asarray(tiling.denoise_image(model, x, tile=tile))
    assert np.abs(plain[1] - single).max() > 1e-3  # the model itself is not
    flipped = [
        np.rot90(
            np.asarray(
                tiling.denoise_image(
                    model,
                    np.ascontiguousarray(np.rot90(x, k, axes=(1, 2))[..., ::-1]),
                    tile=t,
                )
            )[..., ::-1],
            -k,
            axes=(1, 2),
        )
        for k, t in zip(range(4), (tile, swap, tile, swap), strict=True)
    ]
    np.testing.assert_allclose(y, np.mean(plain + flipped, axis=0), atol=2e-6)
    with pytest.raises(TypeError, match="self_ensemble must be a bool"):
        tiling.denoise_image(model, x, self_ensemble=1)


def test_input_types_and_batches():
    x = _lattice(32)
    model = _dncnn()
    ref = np.asarray(tiling.denoise_image(model, x))
    img = tiling.denoise_image(model, Image(x, 0.05, {"dose": 100.0}))
    assert isinstance(img, Image) and img.sampling == (0.05, 0.05)
    assert img.metadata["dose"] == 100.0
    np.testing.assert_array_equal(img.array, ref)
    batch = tiling.denoise_image(model, jnp.stack([x, x[::-1]]), tile=16, overlap=4)
    assert batch.shape == (2, 32, 32) and batch.dtype == jnp.float32
    single = tiling.denoise_image(model, x[::-1], tile=16, overlap=4)
    np.testing.assert_allclose(batch[1], single, atol=1e-6)
    # a U-Net needs sizes that are multiples of 2^depth: padded internally
    unet = models.UNet(depth=2, features=4, rngs=nnx.Rngs(0))
    assert tiling.denoise_image(unet, x[:30, :27]).shape == (30, 27)
    # tiles must cover the receptive field (2 * 23 + 1 = 47 px for this U-Net)
    assert tiling.denoise_image(unet, x[:30, :27], tile=48, overlap=8).shape == (30, 27)
    assert tiling.denoise_image(unet, x[:30, :27], tile=52).shape == (30, 27)


def test_validation():
    x = _lattice(32)
    model = _dncnn()
    with pytest.raises(ValueError, match="receptive field"):
        unet = models.UNet(depth=2, features=4, rngs=nnx.Rngs(0))
        tiling.denoise_image(unet, x, tile=16, overlap=4)
    with pytest.raises(ValueError, match="constant"):
        tiling.denoise_image(model, jnp.stack([x, jnp.full_like(x, 0.7)]))
    with pytest.raises(ValueError, match="even"):
        tiling.denoise_image(model, x, tile=16, overlap=3)
    with pytest.raises(ValueError, match="even and >= 0"):
        tiling.denoise_image(model, x, tile=16, overlap=-2)
    with pytest.raises(ValueError, match="tile must be >= 2 \\* overlap"):
        tiling.denoise_image(model, x, tile=8, overlap=6)
    with pytest.raises(ValueError, match="NaN"):
        tiling.denoise_image(model, np.full((16, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\(\.\.\., ny, nx\)"):
        tiling.denoise_image(model, np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="size_multiple=4"):
        unet = models.UNet(depth=2, features=4, rngs=nnx.Rngs(0))
        tiling.denoise_image(unet, x, tile=50, overlap=4)
