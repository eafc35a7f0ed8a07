"""temsim.Image: a pytree through jit/vmap that keeps its pixel size and metadata."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from temsim import Image


def test_image_is_a_pytree_that_keeps_sampling():
    img = Image(jnp.ones((2, 4, 6)), 0.05, {"energy": 80e3, "structure": "graphene"})
    assert img.sampling == (0.05, 0.05)
    np.testing.assert_allclose(img.extent, (0.2, 0.3), rtol=1e-15)
    out = jax.jit(lambda im: im.replace(array=2 * im.array))(img)
    assert isinstance(out, Image) and out.sampling == img.sampling
    assert out.metadata == img.metadata
    np.testing.assert_array_equal(out.array, 2 * np.ones((2, 4, 6)))
    per = jax.vmap(lambda im: im.replace(array=im.array.sum() * im.array))(img)
    assert per.shape == (2, 4, 6)


def test_replace_merges_metadata():
    img = Image(np.zeros((3, 3)), (0.1, 0.2), {"a": 1})
    assert img.replace(metadata={"b": 2}).metadata == {"a": 1, "b": 2}


@pytest.mark.parametrize("sampling", [0.0, -1.0, float("nan"), (0.1, -0.1)])
def test_bad_sampling(sampling):
    with pytest.raises(ValueError, match="sampling"):
        Image(np.zeros((3, 3)), sampling)


def test_bad_metadata():
    with pytest.raises(TypeError, match="metadata"):
        Image(np.zeros((3, 3)), 0.1, {"a": [1, 2]})
