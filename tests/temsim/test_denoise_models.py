"""DnCNN and U-Net: shapes, residual form, bias-free homogeneity, modes, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from temsim.denoise import models


def _x(key, shape=(2, 16, 16, 1)):
    return jax.random.normal(key, shape, jnp.float32)


def _small(kind, **kw):
    if kind == "dncnn":
        return models.DnCNN(depth=3, features=4, rngs=nnx.Rngs(0), **kw)
    return models.UNet(depth=1, features=4, rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize("kind", ["dncnn", "unet"])
def test_shape_dtype_and_residual_form(kind, key):
    model = _small(kind)
    x = _x(key)
    y = model(x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    # zero output layer -> zero noise estimate -> identity
    last = model.last if kind == "dncnn" else model.out
    last.kernel[...] = jnp.zeros_like(last.kernel[...])
    last.bias[...] = jnp.zeros_like(last.bias[...])
    np.testing.assert_array_equal(model(x), x)


@pytest.mark.parametrize(
    ("kind", "impulse"),
    [("dncnn", False), ("unet", False), ("dncnn", True), ("unet", True)],
)
def test_bias_free_is_positively_homogeneous(kind, impulse, key):
    model = _small(kind, bias_free=True, impulse_mask=impulse)
    x = _x(key)
    model(x)  # one training-mode call populates the running statistics
    model.eval()
    y1, y3 = model(x), model(3.0 * x)
    np.testing.assert_allclose(y3, 3.0 * y1, rtol=1e-5, atol=1e-5)
    assert not any(
        "bias" in "/".join(map(str, path))
        for path, _ in nnx.to_flat_state(nnx.state(model))
    )


def test_batch_norm_train_updates_stats_eval_does_not(key):
    model = _small("dncnn")
    x = _x(key) + 2.0
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.BatchStat))
    model(x)
    after = nnx.state(model, nnx.BatchStat)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    )
    model.eval()
    frozen = jax.tree.map(jnp.copy, nnx.state(model, nnx.BatchStat))
    model(x)
    for a, b in zip(
        jax.tree.leaves(frozen),
        jax.tree.leaves(nnx.state(model, nnx.BatchStat)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    no_bn = _small("dncnn", batch_norm=False)
    assert len(jax.tree.leaves(nnx.state(no_bn, nnx.BatchStat))) == 0


def test_dncnn_receptive_radius_is_exact(key):
    model = models.DnCNN(depth=3, features=4, batch_norm=False, rngs=nnx.Rngs(1))
    assert model.receptive_radius == 3
    x = jax.random.normal(key, (1, 15, 15, 1), jnp.float32)
    grad = jax.grad(lambda x: model(x)[0, 7, 7, 0])(x)[0, :, :, 0]
    rows, cols = np.nonzero(np.asarray(grad))
    assert rows.min() == 4 and rows.max() == 10 and cols.min() == 4 and cols.max() == 10


@pytest.mark.parametrize("kind", ["dncnn", "unet"])
def test_jit_matches_eager_through_split_merge(kind, key):
    model = _small(kind)
    model.eval()
    x = _x(key)
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    np.testing.assert_allclose(f(state, x), model(x), rtol=1e-5, atol=1e-6)


def test_validation_errors(key):
    with pytest.raises(ValueError, match="depth"):
        models.DnCNN(depth=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="kernel_size"):
        models.DnCNN(kernel_size=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="NHWC"):
        _small("dncnn")(jnp.zeros((16, 16), jnp.float32))
    with pytest.raises(ValueError, match="multiples of 2"):
        _small("unet")(jnp.zeros((1, 17, 16, 1), jnp.float32))


def test_unet_attention_bottleneck(key):
    try:
        import physattn.nn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="attention_heads=0"):
            _small("unet", attention_heads=2)
        return
    model = _small("unet", attention_heads=2)
    x = _x(key)
    assert model(x).shape == x.shape


def test_impulse_features_mark_the_extreme_pixels(key):
    x = np.array(jax.random.uniform(key, (2, 8, 8, 1), jnp.float32, 0.5, 1.5))
    x[0, 1, 2, 0] = x[0, 5, 5, 0] = 0.1  # two pepper pixels in image 0
    x[1, 7, 0, 0] = 2.0  # one salt pixel in image 1
    f = np.asarray(models.impulse_features(jnp.asarray(x)))
    assert f.shape == (2, 8, 8, 2)
    s = np.abs(x).mean(axis=(1, 2, 3))
    for b in range(2):
        pepper, salt = x[b, ..., 0] == x[b].min(), x[b, ..., 0] == x[b].max()
        np.testing.assert_allclose(f[b, ..., 0], np.where(pepper, s[b], 0), rtol=1e-6)
        np.testing.assert_allclose(f[b, ..., 1], np.where(salt, s[b], 0), rtol=1e-6)
    assert (f[0, ..., 0] > 0).sum() == 2 and (f[1, ..., 1] > 0).sum() == 1
    with pytest.raises(ValueError, match=r"extremes must have shape \(B, 3, C\)"):
        models.impulse_features(jnp.asarray(x), jnp.zeros((2, 2, 1)))
    # degree-1 homogeneous for a > 0 (the masks are scale invariant)
    np.testing.assert_allclose(
        models.impulse_features(jnp.asarray(2.5 * x)), 2.5 * f, rtol=1e-6
    )


@pytest.mark.parametrize("kind", ["dncnn", "unet"])
def test_impulse_mask_model_sees_the_global_extremes(kind, key):
    """With impulse_mask the first layer takes 3C channels, and the output at a pixel
    changes when a pixel outside its receptive field becomes the image's max."""
    plain, masked = _small(kind), _small(kind, impulse_mask=True)
    plain.eval()  # training-mode batch norm would mix in the batch statistics
    masked.eval()
    first = masked.first if kind == "dncnn" else masked.down[0].a
    assert first.kernel.shape[-2] == 3
    x = _x(key, (1, 32, 32, 1)).at[0, 1, 1, 0].set(5.0)  # the max, near (0, 0)
    far = x.at[0, 31, 31, 0].set(10.0)  # a new max far away: (1, 1) is no longer salt
    r = masked.receptive_radius
    assert r < 31
    np.testing.assert_array_equal(plain(x)[0, 0, 0], plain(far)[0, 0, 0])
    assert not np.array_equal(masked(x)[0, 0, 0], masked(far)[0, 0, 0])


def test_impulse_gate_marks_only_impulse_corrupted_images(key):
    """gate > 0: marks only where both extremes are shared by >= max(3, gate H W)
    pixels; shot noise with many zero counts but a unique max stays unmarked."""
    x = np.array(jax.random.uniform(key, (3, 32, 32, 1), jnp.float32, 0.5, 1.5))
    x[0].flat[:20] = 0.0  # 20 pepper ...
    x[0].flat[-20:] = 2.0  # ... and 20 salt pixels: impulse noise
    x[1].flat[:100] = 0.0  # many zeros, one max: low-dose counts, not impulses
    x[2].flat[:3] = 0.0  # three of each: below the 1 % gate of 10.24 pixels
    x[2].flat[-3:] = 2.0
    s = np.abs(x).mean(axis=(1, 2, 3))
    e = np.asarray(models.image_extremes(jnp.asarray(x), gate=0.01))
    np.testing.assert_allclose(e[:, 2, 0], [s[0], 0.0, 0.0], rtol=1e-6)
    e = np.asarray(models.image_extremes(jnp.asarray(x), gate=1e-3))  # need 3
    np.testing.assert_allclose(e[:, 2, 0], [s[0], 0.0, s[2]], rtol=1e-6)
    np.testing.assert_allclose(  # gate 0 marks every image, as before
        models.image_extremes(jnp.asarray(x))[:, 2, 0], s, rtol=1e-6
    )
    f = np.asarray(models.impulse_features(jnp.asarray(x), gate=0.01))
    assert (f[0] > 0).sum() == 40 and not f[1:].any()
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="impulse gate must be a pixel fraction"):
            models.image_extremes(jnp.asarray(x), gate=bad)
        with pytest.raises(ValueError, match="impulse gate must be a pixel fraction"):
            _small("unet", impulse_mask=True, impulse_gate=bad)
    with pytest.raises(ValueError, match="needs impulse_mask=True"):
        _small("dncnn", impulse_gate=0.01)
    model = _small("unet", bias_free=True, impulse_mask=True, impulse_gate=0.01)
    model.eval()
    y = jnp.asarray(x)
    np.testing.assert_allclose(model(2.5 * y), 2.5 * model(y), rtol=1e-5, atol=1e-6)
