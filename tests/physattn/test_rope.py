"""physattn.rope: rotations that make attention depend on relative position only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physattn import rope


def _x(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64)


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25])
def test_scores_depend_only_on_relative_position(fraction):
    q, k = _x(0, (16,)), _x(1, (16,))
    score = lambda m, n: (
        rope.apply_rope(q, m, fraction=fraction)
        @ rope.apply_rope(k, n, fraction=fraction)
    )
    for shift in [1.0, 7.0, 123.0]:
        np.testing.assert_allclose(
            score(3.0, 10.0), score(3.0 + shift, 10.0 + shift), rtol=1e-10
        )
    assert abs(float(score(3.0, 10.0) - score(3.0, 11.0))) > 1e-6


def test_rotation_preserves_norm_and_position_zero_is_identity():
    x = _x(2, (2, 5, 3, 8))  # (B, T, N, H)
    pos = jnp.arange(5)[None, :, None]  # (1, T, 1)
    y = rope.apply_rope(x, pos)
    np.testing.assert_allclose(
        jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-12
    )
    np.testing.assert_allclose(y[:, 0], x[:, 0], rtol=1e-15)


def test_partial_rope_leaves_low_frequency_features_alone():
    x = _x(3, (4, 8))
    y = rope.apply_rope(x, jnp.arange(4.0), fraction=0.5)  # rotates 2 of 4 pairs
    np.testing.assert_array_equal(y[:, 2:4], x[:, 2:4])
    np.testing.assert_array_equal(y[:, 6:8], x[:, 6:8])
    assert not np.allclose(y[1:, :2], x[1:, :2])
    np.testing.assert_array_equal(rope.apply_rope(x, jnp.arange(4.0), fraction=0.0), x)


def test_frequencies_and_pairs():
    om = rope.frequencies(8, base=100.0)
    np.testing.assert_allclose(om, 100.0 ** (-2 * np.arange(4) / 8))
    assert rope.rotated_pairs(8, 0.5) == 2 and rope.rotated_pairs(6, 0.5) == 2


def test_dtype_jit_vmap():
    x = _x(4, (3, 6, 8)).astype(jnp.bfloat16)
    pos = jnp.arange(6)
    y = rope.apply_rope(x, pos)
    assert y.dtype == jnp.bfloat16
    y_jit = jax.jit(rope.apply_rope)(x, pos)
    np.testing.assert_array_equal(
        np.asarray(y, np.float32), np.asarray(y_jit, np.float32)
    )
    y_vmap = jax.vmap(lambda xi: rope.apply_rope(xi, pos))(x)
    np.testing.assert_array_equal(
        np.asarray(y, np.float32), np.asarray(y_vmap, np.float32)
    )


def test_bad_input():
    with pytest.raises(ValueError, match="head_dim"):
        rope.apply_rope(jnp.ones((2, 5)), jnp.arange(2))
    with pytest.raises(ValueError, match="positions"):
        rope.apply_rope(jnp.ones((2, 3, 4)), jnp.arange(5))
    with pytest.raises(ValueError, match="fraction"):
        rope.apply_rope(jnp.ones((2, 4)), jnp.arange(2), fraction=1.5)
    with pytest.raises(ValueError, match="base"):
        rope.apply_rope(jnp.ones((2, 4)), jnp.arange(2), base=1.0)
    with pytest.raises(ValueError, match="x must be a floating"):
        rope.apply_rope(jnp.ones((2, 4), jnp.int32), jnp.arange(2))
